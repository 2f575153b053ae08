from pathlib import Path

import pytest

from astro_assets.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text


def test_atomic_write_creates_parents_and_content(tmp_path: Path):
    target = tmp_path / "a" / "b" / "out.bin"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_failure_keeps_previous_file_and_leaves_no_temporary(tmp_path: Path):
    target = tmp_path / "product.tiff"
    target.write_bytes(b"previous complete product")
    with pytest.raises(RuntimeError, match="crash"), atomic_path(target) as tmp:
        tmp.write_bytes(b"half written")
        raise RuntimeError("crash in the middle of a write")
    assert target.read_bytes() == b"previous complete product"
    assert [p.name for p in tmp_path.iterdir()] == ["product.tiff"]


def test_temporary_path_keeps_the_suffix_and_lives_beside_the_target(tmp_path: Path):
    target = tmp_path / "x.fits"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".fits"
        tmp.write_bytes(b"ok")
    assert target.read_bytes() == b"ok"


def test_files_get_ordinary_permissions_not_private_temporary_ones(tmp_path: Path):
    import os

    mask = os.umask(0o022)
    try:
        target = atomic_write_bytes(tmp_path / "shared.bin", b"x")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o644
