"""Numba compilation shared by the science kernels."""

from __future__ import annotations

from collections.abc import Callable

import numba

__all__ = ["compiled"]


def compiled(function: Callable) -> Callable:
    """``function`` compiled by numba on first call, releasing the GIL, without bounds checks.

    The machine code is cached on disk (next to the defining module, or in numba's user-wide
    cache directory) so that later processes load it instead of compiling again. Where numba
    finds no writable cache directory (a read-only installation without a writable home),
    numba refuses ``cache=True``; the kernels are then compiled in every process instead.
    """
    try:
        return numba.njit(nogil=True, cache=True, boundscheck=False)(function)
    except RuntimeError as error:
        if "no locator available" not in str(error):
            raise
    return numba.njit(nogil=True, boundscheck=False)(function)
