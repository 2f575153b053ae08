"""Shared fixtures: a temporary data root and a temporary Dagster instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from astro_assets.io.paths import DataLayout
from astro_assets.resources.storage import DataStore


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    root.mkdir()
    return root


@pytest.fixture
def layout(data_root: Path) -> DataLayout:
    return DataLayout(data_root)


@pytest.fixture
def data_store(data_root: Path) -> DataStore:
    return DataStore(root=str(data_root))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance
