"""The executor chosen by the environment: the default, Celery, and wrong choices."""

import sys

import dagster as dg
import pytest

from astro_assets.defs.executor import (
    BACKEND_ENV,
    BROKER_ENV,
    CELERY_APP_SETTINGS,
    DEFAULT_BROKER,
    EXECUTOR_ENV,
    ExecutorConfigError,
    celery_executor_config,
    executor_from_env,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in (EXECUTOR_ENV, BROKER_ENV, BACKEND_ENV):
        monkeypatch.delenv(name, raising=False)


@dg.asset
def one() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@pytest.mark.parametrize("value", [None, "", "multiprocess", " Multiprocess "])
def test_the_default_is_dagsters_multiprocess_executor(monkeypatch, value):
    if value is not None:
        monkeypatch.setenv(EXECUTOR_ENV, value)
    assert executor_from_env() is None
    job = dg.Definitions(
        assets=[one], executor=executor_from_env()
    ).resolve_implicit_global_asset_job_def()
    assert job.executor_def.name == "multi_or_in_process_executor"


def test_celery_defaults_to_a_local_redis_broker_that_is_also_the_backend():
    assert celery_executor_config() == {
        "broker": DEFAULT_BROKER,
        "backend": DEFAULT_BROKER,
        "config_source": CELERY_APP_SETTINGS,
    }


def test_urls_set_in_the_environment_stay_references_to_it(monkeypatch):
    monkeypatch.setenv(BROKER_ENV, "redis://:secret@broker:6379/0")
    config = celery_executor_config()
    assert config["broker"] == {"env": BROKER_ENV}
    assert config["backend"] == {"env": BROKER_ENV}
    assert "secret" not in repr(config)
    monkeypatch.setenv(BACKEND_ENV, "redis://:secret@backend:6379/1")
    assert celery_executor_config()["backend"] == {"env": BACKEND_ENV}


def test_celery_executor_is_configured_and_validates(monkeypatch):
    pytest.importorskip("dagster_celery")
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    monkeypatch.setenv(BROKER_ENV, "redis://127.0.0.1:6390/0")
    executor = executor_from_env()
    assert isinstance(executor, dg.ExecutorDefinition)
    assert executor.name == "celery"
    job = dg.Definitions(assets=[one], executor=executor).resolve_implicit_global_asset_job_def()
    assert job.executor_def is executor
    # The URLs are read from the environment when the run's config is resolved.
    resolved = dg.validate_run_config(job, {})["execution"]["celery"]
    assert resolved["broker"] == resolved["backend"] == "redis://127.0.0.1:6390/0"
    assert resolved["config_source"] == CELERY_APP_SETTINGS


def test_an_unknown_executor_is_refused(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "dask")
    with pytest.raises(ExecutorConfigError, match=r"'dask' is not an executor: set it to one of"):
        executor_from_env()


def test_celery_without_dagster_celery_says_what_to_install(monkeypatch):
    monkeypatch.setenv(EXECUTOR_ENV, "celery")
    monkeypatch.setitem(sys.modules, "dagster_celery", None)
    with pytest.raises(ExecutorConfigError, match=r"needs dagster-celery: install it"):
        executor_from_env()
