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


def test_science_imports_no_dagster_and_no_network_clients():
    modules = _science_modules()
    assert modules, "no science modules found"
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "banned = {'dagster', 'google.genai', 'httpx'}\n"
        "bad = sorted(m for m in sys.modules if m in banned or m.split('.')[0] in banned)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_science_source_does_not_read_the_environment():
    offenders = [
        str(p.relative_to(SCIENCE))
        for p in SCIENCE.rglob("*.py")
        if "os.environ" in p.read_text() or "getenv" in p.read_text()
    ]
    assert offenders == []


def test_loading_the_code_location_imports_no_heavy_optional_clients():
    # Every step process of a run loads the code location; the Gemini client (a third of a
    # second to import) and PyTorch are imported only by the code that uses them.
    code = (
        "import sys, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "import astro_assets.definitions\n"
        "heavy = {'google.genai', 'torch'}\n"
        "print(','.join(sorted(m for m in heavy if m in sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
