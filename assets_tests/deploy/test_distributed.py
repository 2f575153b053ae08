"""The production profile end to end on loopback: PostgreSQL storage, Redis, two Celery workers.

One deployment starts the services, copies ``deploy/dagster.yaml`` into a temporary
``DAGSTER_HOME`` and materializes both graphs with the Celery executor: one flat-field
partition, then ``job_tensors`` (one run over three jobs) and ``master_index ->
croissant_metadata``. The test reads what happened from the PostgreSQL-backed instance.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from assets_tests.deploy.services import (
    Postgres,
    Redis,
    Service,
    missing_services,
    start_celery_worker,
    stop_all,
    wait_for_workers,
)
from astro_assets.io.paths import DataLayout
from astro_assets.samples import DustSpec, SolarVideoParams, generate_jobs, write_sample_video

pytestmark = [
    pytest.mark.slow,
    # dagster-celery registers its step task again for every step it submits; Celery 5.7 warns
    # about it once per process. Harmless: the callable is the same code.
    pytest.mark.filterwarnings("ignore:Task name 'execute_plan' is already registered:UserWarning"),
]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
WORKERS = ("worker-a", "worker-b")
VIDEO_KEY = "dusty"
N_JOBS = 3
VIDEO = SolarVideoParams(
    width=160,
    height=120,
    n_frames=8,
    drift_px=14.0,
    n_sunspots=0,
    dust=(DustSpec(x=60.0, y=50.0, diameter_px=12.0, depth=0.3, kind="disc"),),
    seed=7,
)
FLATFIELD_FILES = (
    "ser_median.tiff",
    "dust_mask.tiff",
    "inpainted.tiff",
    "matched_inpaint.tiff",
    "final_flatfield.tiff",
    "final_flatfield.fits",
    "calibrated.ser",
)


@dataclass
class Deployment:
    instance: dg.DagsterInstance
    postgres: Postgres
    workers: dict[str, Service]
    layout: DataLayout
    runs: dict[str, str]
    jids: list[str]


def _execute(instance: dg.DagsterInstance, job_name: str, tags: dict[str, str]) -> str:
    job = dg.build_reconstructable_job(
        "assets_tests.deploy.celery_location", "location_job", reconstructable_args=(job_name,)
    )
    with dg.execute_job(job, instance=instance, tags=tags, raise_on_error=False) as result:
        return result.run_id


@pytest.fixture
def deployment() -> Iterator[Deployment]:
    reason = missing_services()
    if reason is not None:
        pytest.skip(reason)
    for module in ("dagster_celery", "dagster_postgres", "redis", "psycopg2"):
        pytest.importorskip(module, reason=f"{module} is not installed (the `deploy` extra)")
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="astro-assets-deploy-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        logs = scratch / "logs"
        home = scratch / "dagster_home"
        data = scratch / "data"
        for folder in (logs, home, data, scratch / "redis"):
            folder.mkdir()
        shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")

        postgres = Postgres.start(logs)
        stack.callback(postgres.stop)
        redis = Redis.start(scratch / "redis", logs)
        stack.callback(redis.stop)

        settings = {
            **postgres.env(),
            "DAGSTER_HOME": str(home),
            "ASTRO_ASSETS_DATA": str(data),
            "ASTRO_ASSETS_DUST_BACKEND": "classical",
            "ASTRO_ASSETS_EXECUTOR": "celery",
            "ASTRO_ASSETS_CELERY_BROKER": redis.url(0),
            "ASTRO_ASSETS_CELERY_BACKEND": redis.url(1),
        }
        environment = stack.enter_context(pytest.MonkeyPatch.context())
        for name, value in settings.items():
            environment.setenv(name, value)
        for name in ("GEMINI_API_KEY", "GEMINI_BASE_URL"):
            environment.delenv(name, raising=False)
        worker_env = dict(os.environ)
        worker_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p
        )
        worker_env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), os.environ["PATH"]))

        started: list[Service] = []
        stack.callback(stop_all, started)
        for name in WORKERS:
            started.append(
                start_celery_worker(
                    name, DEPLOY / "celery-worker.yaml", worker_env, REPO_ROOT, logs
                )
            )
        workers = dict(zip(WORKERS, started, strict=True))

        layout = DataLayout(data)
        layout.incoming_ser.mkdir(parents=True)
        write_sample_video(layout.incoming_ser / f"{VIDEO_KEY}.ser", VIDEO)
        jids = [folder.name for folder in generate_jobs(layout.incoming_jobs, N_JOBS, size=128)]
        wait_for_workers(redis.url(0), WORKERS, started)

        instance = stack.enter_context(dg.DagsterInstance.get())
        instance.add_dynamic_partitions("ser_files", [VIDEO_KEY])
        instance.add_dynamic_partitions("jids", jids)
        runs = {
            "flatfield": _execute(instance, "flatfield_job", {"dagster/partition": VIDEO_KEY}),
            "job_tensors": _execute(
                instance,
                "job_tensors_job",
                {
                    "dagster/asset_partition_range_start": jids[0],
                    "dagster/asset_partition_range_end": jids[-1],
                },
            ),
            "dataset": _execute(instance, "dataset_job", {}),
        }
        yield Deployment(instance, postgres, workers, layout, runs, jids)


def _events(instance: dg.DagsterInstance, run_id: str, event_type: str) -> list:
    return [
        entry
        for entry in instance.all_logs(run_id)
        if entry.dagster_event is not None and entry.dagster_event.event_type_value == event_type
    ]


def _failures(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """The messages and errors of the failure events of a run, for assertion messages."""
    lines = []
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.event_type_value in {"STEP_FAILURE", "RUN_FAILURE"}:
            error = getattr(event.event_specific_data, "error", None)
            lines.append(
                f"{entry.step_key}: {entry.user_message}\n{error.to_string() if error else ''}"
            )
        elif event is not None and event.event_type_value == "ENGINE_EVENT":
            error = event.engine_event_data.error
            if error is not None:
                lines.append(f"{entry.step_key}: {entry.user_message}\n{error.to_string()}")
    return lines


def _worker_of(pid: int, workers: dict[str, Service]) -> str | None:
    """The worker whose process group holds ``pid`` (its pool process stays alive)."""
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return None
    return next((name for name, service in workers.items() if service.process.pid == group), None)


def _assert_the_instance_is_the_deploy_profile(instance: dg.DagsterInstance) -> None:
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.run_monitoring_enabled
    assert instance.run_retries_enabled
    assert instance.run_retries_max_retries == 1
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert not instance.telemetry_enabled
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def _assert_every_run_succeeded(deployment: Deployment) -> None:
    for label, run_id in deployment.runs.items():
        run = deployment.instance.get_run_by_id(run_id)
        assert run is not None, label
        assert run.status == dg.DagsterRunStatus.SUCCESS, (
            label,
            run.status,
            _failures(deployment.instance, run_id),
        )


def _assert_every_step_ran_in_a_worker_and_both_took_steps(deployment: Deployment) -> None:
    instance = deployment.instance
    host = os.uname().nodename
    taken_by: dict[str, list[str]] = defaultdict(list)
    for label, run_id in deployment.runs.items():
        starts = _events(instance, run_id, "STEP_START")
        assert starts, label
        handed_over = {
            entry.step_key: entry.dagster_event.engine_event_data.metadata["Celery worker"].value
            for entry in _events(instance, run_id, "ENGINE_EVENT")
            if "Celery worker" in entry.dagster_event.engine_event_data.metadata
        }
        for entry in starts:
            pid = entry.dagster_event.pid
            assert pid != os.getpid(), (label, entry.step_key)
            worker = _worker_of(pid, deployment.workers)
            assert worker is not None, f"{label}: {entry.step_key} ran in pid {pid}, no worker's"
            assert handed_over[entry.step_key] == f"{worker}@{host}"
            taken_by[worker].append(entry.step_key)
    assert set(taken_by) == set(WORKERS), dict(taken_by)


def _assert_the_event_log_is_stored_in_postgres(deployment: Deployment) -> None:
    run_ids = list(deployment.runs.values())
    connection = deployment.postgres.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT run_id, COUNT(*) FROM event_logs "
                "WHERE dagster_event_type = 'STEP_START' AND run_id = ANY(%s) GROUP BY run_id",
                (run_ids,),
            )
            stored = dict(cursor.fetchall())
    finally:
        connection.close()
    for run_id in run_ids:
        assert stored[run_id] == len(_events(deployment.instance, run_id, "STEP_START"))


def _assert_the_products_exist_and_every_check_passed(deployment: Deployment) -> None:
    layout = deployment.layout
    for name in FLATFIELD_FILES:
        assert (layout.flatfield_dir(VIDEO_KEY) / name).is_file(), name
    for jid in deployment.jids:
        tensor = np.load(layout.dataset_dir / "images" / f"{jid}.npy", mmap_mode="r")
        assert tensor.shape == (128, 128, 4)
    index = pd.read_csv(layout.dataset_dir / "master_index.csv")
    assert sorted(index["jid"].unique()) == deployment.jids
    assert (layout.dataset_dir / "croissant.json").is_file()
    checks = {}
    for run_id in deployment.runs.values():
        for entry in _events(deployment.instance, run_id, "ASSET_CHECK_EVALUATION"):
            evaluation = entry.dagster_event.event_specific_data
            checks[evaluation.check_name] = evaluation.passed
    assert {
        "final_flatfield_clean_area_is_unity",
        "job_tensors_in_unit_range",
        "master_index_schema",
        "croissant_valid",
    } <= set(checks)
    assert all(checks.values()), checks


def test_both_graphs_run_on_two_celery_workers_against_postgres(deployment):
    # One test, so that a parallel test runner never starts the deployment twice.
    _assert_the_instance_is_the_deploy_profile(deployment.instance)
    _assert_every_run_succeeded(deployment)
    _assert_every_step_ran_in_a_worker_and_both_took_steps(deployment)
    _assert_the_event_log_is_stored_in_postgres(deployment)
    _assert_the_products_exist_and_every_check_passed(deployment)
