"""The executor of the code location: one process per step here, or Celery workers elsewhere.

``ASTRO_ASSETS_EXECUTOR`` chooses it. Unset (or ``multiprocess``), Dagster's default
multiprocess executor runs every step of a run in its own process on the run's machine. With
``celery``, each step is sent to a Celery queue on a Redis broker and executed by whichever
``dagster-celery`` worker takes it, on any machine that imports this code location and sees
the same Dagster instance (PostgreSQL, ``deploy/dagster.yaml``) and the same data root
(``$ASTRO_ASSETS_DATA`` on shared storage). Start workers with::

    dagster-celery worker start -A dagster_celery.app -y deploy/celery-worker.yaml \\
        -i astro_assets.definitions -n worker-1 -- --concurrency=2

The settings of :data:`CELERY_APP_SETTINGS` are repeated in ``deploy/celery-worker.yaml``
because a worker reads its own configuration; the two must agree.
"""

import os

import dagster as dg

EXECUTOR_ENV = "ASTRO_ASSETS_EXECUTOR"
BROKER_ENV = "ASTRO_ASSETS_CELERY_BROKER"
BACKEND_ENV = "ASTRO_ASSETS_CELERY_BACKEND"
DEFAULT_BROKER = "redis://127.0.0.1:6379/0"

EXECUTORS = ("multiprocess", "celery")

# One step per worker process at a time, acknowledged when it ends: a worker busy with a long
# median does not hold a second step back while another worker is idle.
CELERY_APP_SETTINGS = {
    "task_acks_late": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
}


class ExecutorConfigError(ValueError):
    """The executor named in the environment is unknown or not installed."""


def _env_or_default(variable: str, default: str | dict[str, str]) -> str | dict[str, str]:
    """``{"env": variable}`` when it is set, so the URL (and any password in it) is read
    where the run executes and never stored with the job; else ``default``."""
    return {"env": variable} if os.environ.get(variable) else default


def celery_executor_config() -> dict[str, object]:
    """The ``dagster_celery.celery_executor`` config this code location runs with.

    The broker is ``$ASTRO_ASSETS_CELERY_BROKER`` (default ``redis://127.0.0.1:6379/0``), the
    result backend ``$ASTRO_ASSETS_CELERY_BACKEND`` (default: the broker); a variable that is set
    appears as an ``{"env": ...}`` reference, resolved by the process that runs the job.
    """
    broker = _env_or_default(BROKER_ENV, DEFAULT_BROKER)
    return {
        "broker": broker,
        "backend": _env_or_default(BACKEND_ENV, broker),
        "config_source": dict(CELERY_APP_SETTINGS),
    }


def executor_from_env() -> dg.ExecutorDefinition | None:
    """The executor chosen by ``$ASTRO_ASSETS_EXECUTOR``.

    Returns
    -------
    dagster.ExecutorDefinition or None
        ``None`` (Dagster's default multiprocess executor) when the variable is unset, empty
        or ``multiprocess``; for ``celery``, ``dagster_celery.celery_executor`` configured by
        :func:`celery_executor_config`.

    Raises
    ------
    ExecutorConfigError
        If the variable names another executor, or ``celery`` without dagster-celery installed.
    """
    choice = os.environ.get(EXECUTOR_ENV, "").strip().lower() or "multiprocess"
    if choice not in EXECUTORS:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}={os.environ[EXECUTOR_ENV]!r} is not an executor: "
            f"set it to one of {', '.join(EXECUTORS)} or leave it unset"
        )
    if choice == "multiprocess":
        return None
    # Imported here: dagster-celery is needed only by deployments that choose it.
    try:
        from dagster_celery import celery_executor
    except ModuleNotFoundError as error:
        raise ExecutorConfigError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: install it with "
            "`pip install 'dagster-celery[redis]'` (or the project's `deploy` extra)"
        ) from error
    return celery_executor.configured(celery_executor_config(), name="celery")
