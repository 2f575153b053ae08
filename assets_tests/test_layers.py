"""The science layer is pure: importing it must not import Dagster."""

import subprocess
import sys
from pathlib import Path

import astro_assets.science

SCIENCE = Path(astro_assets.science.__file__).parent


def _science_modules() -> list[str]:
    return sorted(
        "astro_assets." + ".".join(p.relative_to(SCIENCE.parent).with_suffix("").parts)
        for p in SCIENCE.rglob("*.py")
        if p.name != "__init__.py"
    )


def _imported_after(modules: list[str], watched: set[str]) -> list[str]:
    """The ``watched`` packages (or their submodules) in ``sys.modules`` of a fresh
    interpreter once ``modules`` are imported."""
    code = (
        "import importlib, sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"watched = {sorted(watched)!r}\n"
        "print(','.join(sorted(w for w in watched if any(\n"
        "    m == w or m.startswith(w + '.') for m in sys.modules))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return [name for name in result.stdout.strip().split(",") if name]


def test_science_imports_no_dagster_and_no_network_clients():
    modules = _science_modules()
    assert modules, "no science modules found"
    assert _imported_after(modules, {"dagster", "google.genai", "httpx"}) == []


def test_science_source_does_not_read_the_environment():
    offenders = [
        str(p.relative_to(SCIENCE))
        for p in SCIENCE.rglob("*.py")
        if "os.environ" in p.read_text() or "getenv" in p.read_text()
    ]
    assert offenders == []


def test_loading_the_code_location_imports_no_heavy_optional_clients():
    # Every step process of a run loads the code location; the Gemini client, pandas and
    # astropy (0.2-0.3 s each to import) and PyTorch are imported only by the code that uses
    # them.
    heavy = {"astropy", "google.genai", "pandas", "torch"}
    assert _imported_after(["astro_assets.definitions"], heavy) == []
