"""A real ``dagster dev`` on 127.0.0.1 with one small sample video, and headless Chromium.

The server runs against a temporary ``$DAGSTER_HOME`` (holding a copy of the project's
``dagster.yaml``) and a temporary ``$ASTRO_ASSETS_DATA``; it is always stopped with its whole
process group. Screenshots and the server's log are written to ``test-artifacts/ui/``.

The browser tests need Playwright (dev extra) and Chromium (``scripts/install_browser.sh``).
Without them they are skipped with the reason, except when running as root (as CI does), where
they fail instead: there the browser can be installed, so a skip would hide a broken setup.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from assets_tests.ui.graphql import DagsterGraphQL, GraphQLError
from astro_assets.defs.resources import GEMINI_KEY_ENV, GEMINI_URL_ENV
from astro_assets.ingest import SER_PARTITIONS, register_new_inputs
from astro_assets.io.paths import DATA_ROOT_ENV, DataLayout
from astro_assets.resources.dust_eye import BACKEND_ENV
from astro_assets.samples import SolarVideoParams, write_sample_video

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ui"
LOCATION = "astro_assets"
PARTITION_KEY = "ui_sample"
SAMPLE_VIDEO = SolarVideoParams(width=160, height=120, n_frames=8, seed=7)

CHROMIUM_ENV = "CHROMIUM"
DEFAULT_CHROMIUM = "/usr/bin/chromium"
# Playwright adds --headless and a fresh temporary --user-data-dir itself. The tests need only
# 127.0.0.1, so Chromium's own network services (updates, sync, QUIC, proxies) are switched off;
# on a machine without internet they would otherwise retry connections all the time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
VIEWPORT = {"width": 1600, "height": 1000}
UI_TIMEOUT_MS = 30_000
SERVER_START_TIMEOUT_S = 180.0
SERVER_STOP_TIMEOUT_S = 20.0
# The webserver shows a newsletter dialog on first visit; a browser that has seen it once stores
# this key. The locator handler in `page` dismisses the dialog should the key ever change.
SKIP_COMMUNITY_DIALOG = "window.localStorage.setItem('communityNux', JSON.stringify('1'));"


CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@dataclass(frozen=True)
class DagsterUI:
    """A running ``dagster dev`` and what it was started with."""

    base_url: str
    graphql: DagsterGraphQL
    partition: str
    data_root: Path
    dagster_home: Path
    log_path: Path


def _missing_browser_part(chromium: str) -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (pip install -e '.[dev]')"
    if not (Path(chromium).is_file() and os.access(chromium, os.X_OK)):
        return (
            f"no Chromium at {chromium}: run scripts/install_browser.sh as root "
            f"(apt-get install chromium chromium-driver) or set ${CHROMIUM_ENV}"
        )
    return None


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Chromium's path; skips the test (fails it when root) if it or Playwright is missing."""
    chromium = os.environ.get(CHROMIUM_ENV, DEFAULT_CHROMIUM)
    missing = _missing_browser_part(chromium)
    if missing is None:
        return chromium
    if os.geteuid() == 0:
        pytest.fail(
            f"browser test cannot run: {missing}. Running as root, as CI does, the browser "
            "can be installed, so this is an error rather than a skip.",
            pytrace=False,
        )
    pytest.skip(f"browser test skipped: {missing}")


@pytest.fixture(scope="session")
def expect(chromium_executable: str):
    """Playwright's ``expect``, waiting up to ``UI_TIMEOUT_MS`` for each assertion.

    A fixture rather than a module import so that a missing Playwright skips or fails the
    tests (see ``chromium_executable``) instead of breaking the collection of the whole suite.
    """
    from playwright.sync_api import expect as playwright_expect

    playwright_expect.set_options(timeout=UI_TIMEOUT_MS)
    return playwright_expect


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dagster_command() -> str:
    beside_python = Path(sys.executable).with_name("dagster")
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which("dagster")
    if found is None:
        raise FileNotFoundError("the dagster command is not installed beside this Python")
    return found


def _server_environment(dagster_home: Path, data_root: Path) -> dict[str, str]:
    """This process's environment, offline: the classical dust eye and no Gemini key."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {GEMINI_KEY_ENV, GEMINI_URL_ENV}
    }
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            DATA_ROOT_ENV: str(data_root),
            BACKEND_ENV: "classical",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _log_tail(log_path: Path, lines: int = 40) -> str:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_until_loaded(process: subprocess.Popen, client: DagsterGraphQL, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"dagster dev exited with {process.returncode} before serving:\n"
                f"{_log_tail(log_path)}",
                pytrace=False,
            )
        try:
            if client.location_loaded(LOCATION):
                return
        except GraphQLError as error:
            pytest.fail(f"{error}\n{_log_tail(log_path)}", pytrace=False)
        time.sleep(0.5)
    pytest.fail(
        f"dagster dev did not load {LOCATION!r} within {SERVER_START_TIMEOUT_S:.0f} s:\n"
        f"{_log_tail(log_path)}",
        pytrace=False,
    )


def _leader_exited(pid: int) -> bool:
    """True once the process has exited; it is left unreaped, so its id stays reserved."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left of it.

    The leader is reaped only at the end, so the group's id cannot be reused meanwhile; an
    already empty group (ProcessLookupError) is what a clean shutdown leaves.
    """
    if process.returncode is None:
        group = process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + SERVER_STOP_TIMEOUT_S
        while time.monotonic() < deadline and not _leader_exited(process.pid):
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    process.wait(timeout=SERVER_STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def dagster_ui(
    tmp_path_factory: pytest.TempPathFactory, chromium_executable: str
) -> Iterator[DagsterUI]:
    """``dagster dev`` on a free port of 127.0.0.1 with one registered sample partition.

    Depends on ``chromium_executable`` so that a missing browser skips before the server starts.
    """
    workdir = tmp_path_factory.mktemp("dagster_ui")
    dagster_home = workdir / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    data_root = workdir / "data"
    layout = DataLayout(data_root)
    layout.incoming_ser.mkdir(parents=True)
    write_sample_video(layout.incoming_ser / f"{PARTITION_KEY}.ser", SAMPLE_VIDEO)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        report = register_new_inputs(instance, layout, watch_seconds=0.0)
    assert report.added[SER_PARTITIONS] == [PARTITION_KEY], report.lines()

    base_url = f"http://127.0.0.1:{_free_port()}"
    port = base_url.rsplit(":", 1)[1]
    log_path = workdir / "dagster-dev.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_dagster_command(), "dev", "-h", "127.0.0.1", "-p", port, "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env=_server_environment(dagster_home, data_root),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        client = DagsterGraphQL(base_url)
        _wait_until_loaded(process, client, log_path)
        yield DagsterUI(
            base_url=base_url,
            graphql=client,
            partition=PARTITION_KEY,
            data_root=data_root,
            dagster_home=dagster_home,
            log_path=log_path,
        )
    finally:
        _stop_process_group(process)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log_path, ARTIFACTS / "dagster-dev.log")


@pytest.fixture(scope="module")
def browser(chromium_executable: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=chromium_executable, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, dagster_ui: DagsterUI, request: pytest.FixtureRequest):
    """A fresh browser context on the server; a screenshot is kept if the test fails."""
    context = browser.new_context(base_url=dagster_ui.base_url, viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    context.add_init_script(SKIP_COMMUNITY_DIALOG)
    tab = context.new_page()
    tab.add_locator_handler(
        tab.get_by_role("dialog").filter(has_text="Join the Dagster community"),
        lambda dialog: dialog.get_by_role("button", name="Skip").click(),
    )
    yield tab
    if request.node.stash.get(CALL_FAILED, False):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=ARTIFACTS / f"{request.node.name}-FAILED.png")
    context.close()


@pytest.fixture
def screenshot(page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``screenshot(step)`` saves ``test-artifacts/ui/<test>-<nn>-<step>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    test_name = request.node.name
    for stale in ARTIFACTS.glob(f"{test_name}-*.png"):
        stale.unlink()
    taken: list[Path] = []

    def take(step: str) -> Path:
        path = ARTIFACTS / f"{test_name}-{len(taken) + 1:02d}-{step}.png"
        page.screenshot(path=path)
        taken.append(path)
        return path

    return take
