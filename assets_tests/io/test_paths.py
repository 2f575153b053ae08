import os
from pathlib import Path

import pytest

from astro_assets.io.atomic import atomic_path
from astro_assets.io.paths import (
    MAX_KEY_BYTES,
    NAME_MAX_BYTES,
    DataLayout,
    UnsafePathError,
    check_key,
    derived_names,
    sanitize_key,
)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Sun_2026-05-01 12h30", "Sun_2026-05-01_12h30"),
        ("jupiter.v2", "jupiter.v2"),
        ("..hidden", "hidden"),
        ("a/b\\c", "a_b_c"),
        ("Mond éclipse", "Mond_clipse"),
        ("-rf", "rf"),
        (".-.-moon-1", "moon-1"),
    ],
)
def test_sanitize_key_keeps_only_portable_characters(name, key):
    assert sanitize_key(name) == key


@pytest.mark.parametrize("name", ["", "...", "///", "ééé", "--", ".-"])
def test_sanitize_key_refuses_names_with_nothing_usable(name):
    with pytest.raises(UnsafePathError, match="cannot derive a partition key"):
        sanitize_key(name)


@pytest.mark.parametrize("key", ["..", ".", "../x", "a/b", ".hidden", "a b", ""])
def test_check_key_refuses_unsafe_components(key):
    with pytest.raises(UnsafePathError, match="not a safe path component"):
        check_key(key)


def test_check_key_refuses_a_leading_dash_for_a_new_key_only(tmp_path: Path):
    with pytest.raises(UnsafePathError, match="reads as an option"):
        check_key("-rf", new=True)
    assert check_key("a-b", new=True) == "a-b"
    # A partition registered before the rule still resolves to its files.
    assert check_key("-rf") == "-rf"
    assert DataLayout(tmp_path).job_dir("-rf") == tmp_path / "incoming" / "jobs" / "-rf"


def test_layout_paths_follow_the_contract(tmp_path: Path):
    layout = DataLayout(tmp_path)
    assert layout.incoming_ser == tmp_path / "incoming" / "ser"
    assert layout.incoming_jobs == tmp_path / "incoming" / "jobs"
    assert layout.flatfield_file("sun1", "ser_median.tiff") == (
        tmp_path / "flatfield" / "sun1" / "ser_median.tiff"
    )
    assert layout.job_tensor_file("jid001") == tmp_path / "dataset" / "images" / "jid001.npy"
    assert layout.models_dir == tmp_path / "models"


def test_layout_refuses_keys_and_paths_escaping_the_root(tmp_path: Path):
    layout = DataLayout(tmp_path / "root")
    with pytest.raises(UnsafePathError):
        layout.flatfield_dir("..")
    with pytest.raises(UnsafePathError, match="escapes the data root"):
        layout.resolve("..", "elsewhere")
    with pytest.raises(UnsafePathError, match="escapes the data root"):
        layout.resolve("/etc/passwd")


def test_layout_refuses_symlink_escape(tmp_path: Path):
    root = tmp_path / "root"
    (root / "flatfield").mkdir(parents=True)
    (root / "flatfield" / "evil").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="escapes the data root"):
        DataLayout(root).resolve("flatfield", "evil", "x")


def test_a_new_key_is_refused_when_a_file_named_after_it_would_not_fit(tmp_path: Path):
    longest = "k" * MAX_KEY_BYTES
    assert check_key(longest, new=True) == longest
    with pytest.raises(UnsafePathError, match=r"is 222 bytes long, more than the 221 a key may"):
        check_key(longest + "k", new=True)
    # A partition registered before the rule still resolves to its files.
    assert check_key(longest + "k") == longest + "k"


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_the_key_limit_is_the_one_the_file_system_sets_on_atomic_writes(tmp_path: Path, suffix):
    # The longest name a key makes is the temporary file of an atomic write: written for real,
    # it fits for the longest key allowed and is refused one byte further.
    assert os.pathconf(tmp_path, "PC_NAME_MAX") == NAME_MAX_BYTES
    for key in ("k" * MAX_KEY_BYTES, "k" * (MAX_KEY_BYTES + 1)):
        fits = len(key) <= MAX_KEY_BYTES
        target = tmp_path / f"{key}{suffix}"
        if fits:
            with atomic_path(target) as tmp:
                assert len(tmp.name) == len(derived_names(key)[-1]) == NAME_MAX_BYTES
                tmp.write_bytes(b"x")
            assert target.read_bytes() == b"x"
        else:
            with pytest.raises(OSError, match="File name too long"), atomic_path(target) as tmp:
                tmp.write_bytes(b"x")
    assert derived_names("jid001") == (
        "jid001",
        "jid001.npy",
        "jid001.csv",
        ".jid001.npy.0000000000000000.partial.npy",
        ".jid001.csv.0000000000000000.partial.csv",
    )
