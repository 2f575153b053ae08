"""The numba compilation shared by the science kernels."""

import numba
import numpy as np
import pytest

from astro_assets.science.compiled import compiled


def add_one(values):
    return values + 1


def test_kernels_compile_without_a_writable_cache_directory(monkeypatch):
    # A read-only installation and no writable home: numba refuses cache=True, and the
    # kernels are compiled in every process instead of failing at import.
    def refuse(locator):
        raise OSError("read-only file system")

    monkeypatch.setattr(numba.core.caching._CacheLocator, "ensure_cache_path", refuse)
    with pytest.raises(RuntimeError, match="no locator available"):
        numba.njit(cache=True)(add_one)
    np.testing.assert_array_equal(compiled(add_one)(np.arange(3)), [1, 2, 3])
