"""Faults an operator meets: a killed step, a restarted daemon, a flood of job folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from astro_assets.defs.transients import sensors as transients_sensors
from astro_assets.defs.transients.sensors import (
    MAX_FOLDERS_PER_TICK,
    RESERVED_FOR_REGISTERED,
    jids_sensor,
)
from astro_assets.io import discovery
from astro_assets.io.atomic import STALE_PARTIAL_SECONDS, partial_files
from astro_assets.io.fits import JOB_FILES
from astro_assets.io.paths import DataLayout
from astro_assets.materialize import materialize_selection
from astro_assets.resources.dust_eye import DustEye
from astro_assets.resources.gemini import GeminiImageModel
from astro_assets.resources.storage import DataStore
from astro_assets.samples import SolarVideoParams, write_sample_video

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKING_CLI = Path(__file__).with_name("_fault_blocking_cli.py")
TINY_VIDEO = SolarVideoParams(width=32, height=24, n_frames=4, seed=1)
HOUR_S = 3600.0


def _wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def _set_age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def _project_home(tmp_path: Path, *, max_concurrent_runs: int | None = None) -> Path:
    """A DAGSTER_HOME holding a copy of the project's dagster.yaml."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    settings = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    if max_concurrent_runs is not None:
        settings["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    return home


def _environment(home: Path, data_root: Path) -> dict[str, str]:
    return {**os.environ, "DAGSTER_HOME": str(home), "ASTRO_ASSETS_DATA": str(data_root)}


# --- a step killed while writing its product ---------------------------------------------------


def _materialize_ser_median(instance: dg.DagsterInstance, data_root: Path, key: str) -> None:
    outcome = materialize_selection(
        instance,
        selection="ser_median",
        partition=key,
        resources={
            "data_store": DataStore(root=str(data_root)),
            "dust_eye": DustEye(backend="classical", gemini=GeminiImageModel()),
        },
        log_level="WARNING",
    )
    assert outcome.succeeded, outcome.lines()


def _killed_cli_run(tmp_path: Path, home: Path, data_root: Path, key: str, name: str) -> Path:
    """Run ``astro-assets materialize`` in a subprocess and SIGKILL it inside the rename of
    ``name``; return the temporary file it was committing."""
    signal_file = tmp_path / f"blocked-{time.monotonic_ns()}"
    with (tmp_path / "cli.log").open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(BLOCKING_CLI),
                str(signal_file),
                name,
                "materialize",
                "--select",
                "ser_median",
                "--partition",
                key,
            ],
            cwd=REPO_ROOT,
            env=_environment(home, data_root),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(
                lambda: signal_file.exists() and signal_file.read_text().endswith("\n"),
                timeout_s=180,
                what=f"the CLI to reach the rename of {name} (log: {tmp_path / 'cli.log'})",
            )
        finally:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return Path(signal_file.read_text().strip())


def test_killed_write_leaves_no_product_and_a_rerun_is_identical(tmp_path: Path):
    key = "sun"
    reference_root, data_root = tmp_path / "reference", tmp_path / "data"
    for root in (reference_root, data_root):
        write_sample_video(DataLayout(root).incoming_ser / f"{key}.ser", TINY_VIDEO)
    with dg.instance_for_test() as reference_instance:
        reference_instance.add_dynamic_partitions("ser_files", [key])
        _materialize_ser_median(reference_instance, reference_root, key)
    reference = DataLayout(reference_root).flatfield_file(key, "ser_median.tiff").read_bytes()

    home = _project_home(tmp_path)
    instance = dg.DagsterInstance.from_config(str(home))
    instance.add_dynamic_partitions("ser_files", [key])
    product = DataLayout(data_root).flatfield_file(key, "ser_median.tiff")

    # First materialization killed while committing: no product, only its temporary file.
    partial = _killed_cli_run(tmp_path, home, data_root, key, product.name)
    assert not product.exists()
    assert partial_files(product) == [partial]
    assert partial.stat().st_size == len(reference)

    # The re-run, once the leftover is past the grace period, writes the same bytes and
    # removes the leftover.
    _set_age(partial, STALE_PARTIAL_SECONDS + 60)
    _materialize_ser_median(instance, data_root, key)
    assert product.read_bytes() == reference
    assert partial_files(product) == []

    # Killed while replacing an existing product: the previous version is intact.
    before = product.stat()
    partial = _killed_cli_run(tmp_path, home, data_root, key, product.name)
    assert product.read_bytes() == reference
    assert (product.stat().st_ino, product.stat().st_mtime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
    )
    assert partial_files(product) == [partial]

    _set_age(partial, STALE_PARTIAL_SECONDS + 60)
    _materialize_ser_median(instance, data_root, key)
    assert product.read_bytes() == reference
    assert partial_files(product) == []
    assert [p.name for p in product.parent.iterdir() if p.name.startswith(".")] == []
    instance.dispose()


# --- a tick over thousands of job folders ----------------------------------------------------


def _job_folders(jobs_root: Path, template: Path, count: int) -> list[str]:
    """``count`` complete job folders, hard links to the five files in ``template``."""
    keys = [f"jid{index:04d}" for index in range(1, count + 1)]
    for key in keys:
        folder = jobs_root / key
        folder.mkdir(parents=True)
        for name in JOB_FILES.values():
            os.link(template / name, folder / name)
    return keys


@pytest.fixture
def job_template(tmp_path: Path) -> Path:
    template = tmp_path / "template"
    template.mkdir()
    for name in JOB_FILES.values():
        (template / name).write_bytes(b"x" * 32)
    return template


@pytest.fixture
def observed(monkeypatch) -> list[str]:
    """The job folders the sensor examines (stats the files of), new or registered, in order."""
    names: list[str] = []
    real = discovery.job_folder_state

    def counting(folder: Path):
        names.append(folder.name)
        return real(folder)

    monkeypatch.setattr(discovery, "job_folder_state", counting)
    monkeypatch.setattr(transients_sensors, "job_folder_state", counting)
    return names


def _ticks(instance, data_store, count: int) -> Iterator[tuple[dg.SensorResult, str]]:
    """Evaluate the sensor ``count`` times, applying its partition requests as the daemon does."""
    cursor = None
    for _ in range(count):
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"data_store": data_store}
        )
        result = jids_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        cursor = result.cursor
        yield result, cursor


def test_a_tick_over_2000_settled_folders_examines_at_most_500(
    instance, data_store, layout, job_template, observed
):
    for name in JOB_FILES.values():
        _set_age(job_template / name, HOUR_S)
    keys = _job_folders(layout.incoming_jobs, job_template, 2000)
    assert (MAX_FOLDERS_PER_TICK, RESERVED_FOR_REGISTERED) == (500, 100)

    def span(first: int, last: int) -> list[str]:
        return keys[first - 1 : last]

    # 500 in all: new folders first, in turn, then registered ones in turn, 100 of them at least
    # once there are so many, and all the 500 once no new folder is left.
    expected = [
        (span(1, 500), []),
        (span(501, 900), span(1, 100)),
        (span(901, 1300), span(101, 200)),
        (span(1301, 1700), span(201, 300)),
        (span(1701, 2000), span(301, 500)),
        ([], span(501, 1000)),
    ]
    for (result, cursor), (batch, registered) in zip(
        _ticks(instance, data_store, len(expected)), expected, strict=True
    ):
        assert observed == batch + registered
        assert json.loads(cursor)["pending"] == {}
        if batch:
            (run,) = result.run_requests
            assert run.tags["dagster/asset_partition_range_start"] == batch[0]
            assert run.tags["dagster/asset_partition_range_end"] == batch[-1]
            assert list(result.dynamic_partitions_requests[0].partition_keys) == batch
        else:
            assert result.run_requests == []
        observed.clear()
    assert instance.get_dynamic_partitions("jids") == keys


def test_folders_just_copied_wait_one_tick_and_the_cursor_stays_bounded(
    instance, data_store, layout, job_template, observed
):
    # Modified "in the future", no folder settles by age however slow the machine: each needs
    # two equal observations, as a folder copied moments ago does.
    for name in JOB_FILES.values():
        _set_age(job_template / name, -HOUR_S)
    keys = _job_folders(layout.incoming_jobs, job_template, 2000)
    # A batch is looked at once, then again first on the next tick, which registers it; with
    # 100 examinations kept for registered jobs from the second batch on.
    batches = [keys[0:500], keys[500:900], keys[900:1300], keys[1300:1700], keys[1700:2000]]
    registered: list[str] = []
    for tick, (result, cursor) in enumerate(_ticks(instance, data_store, 2 * len(batches))):
        batch = batches[tick // 2]
        assert [key for key in observed if key not in registered] == batch
        assert len(observed) <= MAX_FOLDERS_PER_TICK
        pending = json.loads(cursor)["pending"]
        if tick % 2 == 0:
            assert sorted(pending) == batch
            assert result.run_requests == []
        else:
            assert pending == {}
            assert list(result.dynamic_partitions_requests[0].partition_keys) == batch
            registered.extend(batch)
        observed.clear()
    assert instance.get_dynamic_partitions("jids") == keys


# --- the daemon killed and restarted -----------------------------------------------------------


class Daemon:
    """``dagster-daemon run`` in its own process group; ``kill`` ends the group with SIGKILL."""

    def __init__(self, home: Path, data_root: Path, log: Path):
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("dagster-daemon")),
                "run",
                "-w",
                "workspace.yaml",
            ],
            cwd=REPO_ROOT,
            env=_environment(home, data_root),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()


def _sensor_state(instance: dg.DagsterInstance, name: str):
    states = [s for s in instance.all_instigator_state() if s.name == name]
    return states[0] if states else None


def _cursor(instance: dg.DagsterInstance, name: str) -> dict:
    state = _sensor_state(instance, name)
    cursor = state.instigator_data.cursor if state and state.instigator_data else None
    return json.loads(cursor or "{}")


def _ser_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(dg.RunsFilter(tags={"dagster/sensor_name": "ser_files_sensor"})))


def _video(folder: Path, name: str, *, age_s: float) -> Path:
    path, _ = write_sample_video(folder / f"{name}.ser", TINY_VIDEO)
    _set_age(path, age_s)
    return path


def test_a_restarted_daemon_resumes_from_the_cursor_without_duplicate_runs(tmp_path: Path):
    # Runs are kept in the queue (no run is launched): what is checked is the sensor's
    # bookkeeping, and the test stays light on CPU.
    home = _project_home(tmp_path, max_concurrent_runs=0)
    data_root = tmp_path / "data"
    incoming = DataLayout(data_root).incoming_ser
    incoming.mkdir(parents=True)
    videos = {name: _video(incoming, name, age_s=HOUR_S) for name in ("alpha", "beta")}
    # Modified "in the future", a file never settles by age: only two equal observations make
    # it ready, so it is registered right after the restart only if the cursor was kept.
    videos["copying"] = _video(incoming, "copying", age_s=-HOUR_S * 24)
    instance = dg.DagsterInstance.from_config(str(home))
    log = tmp_path / "daemon.log"

    daemon = Daemon(home, data_root, log)
    try:
        _wait_for(
            lambda: (
                len(_ser_runs(instance)) == 2
                and "copying" in _cursor(instance, "ser_files_sensor").get("pending", {})
            ),
            timeout_s=240,
            what=f"the first tick to request two runs (log: {log})",
        )
    finally:
        daemon.kill()
    observation = discovery.observe_file(videos["copying"]).to_json()
    assert _cursor(instance, "ser_files_sensor")["pending"] == {"copying": observation}
    assert sorted(instance.get_dynamic_partitions("ser_files")) == ["alpha", "beta"]

    videos["gamma"] = _video(incoming, "gamma", age_s=HOUR_S)
    restarted_at = time.time()
    daemon = Daemon(home, data_root, log)
    try:
        _wait_for(
            lambda: len(_ser_runs(instance)) >= 4,
            timeout_s=240,
            what=f"the restarted daemon to request the two new runs (log: {log})",
        )
        time.sleep(2)  # a duplicate request would show up in the same tick
    finally:
        daemon.kill()

    runs = _ser_runs(instance)
    by_partition = Counter(run.tags["dagster/partition"] for run in runs)
    assert by_partition == {"alpha": 1, "beta": 1, "copying": 1, "gamma": 1}
    run_keys = [run.tags["dagster/run_key"] for run in runs]
    assert len(set(run_keys)) == len(runs)
    for run in runs:
        key = run.tags["dagster/partition"]
        expected = discovery.Candidate(key, videos[key], discovery.observe_file(videos[key]))
        assert run.tags["dagster/run_key"] == expected.run_key
    assert sorted(instance.get_dynamic_partitions("ser_files")) == sorted(videos)

    state = _sensor_state(instance, "ser_files_sensor")
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
    first_after_restart = min(
        (tick for tick in ticks if tick.timestamp >= restarted_at), key=lambda t: t.timestamp
    )
    assert sorted(first_after_restart.run_keys) == sorted(
        run.tags["dagster/run_key"]
        for run in runs
        if run.tags["dagster/partition"] in {"copying", "gamma"}
    )
    assert _cursor(instance, "ser_files_sensor")["pending"] == {}
    instance.dispose()
