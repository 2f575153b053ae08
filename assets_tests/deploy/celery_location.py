"""The code location with the executor chosen by the environment, as Celery workers load it.

Runs started by the tests point their steps here (module and function names travel with each
Celery task), so each worker process rebuilds the same jobs from its own environment.
"""

import functools

import dagster as dg

from astro_assets.defs.executor import executor_from_env


@functools.cache
def location_defs() -> dg.Definitions:
    """``astro_assets.definitions.defs`` with ``executor_from_env()`` when it has no executor."""
    from astro_assets.definitions import defs

    if defs.executor is not None:
        return defs
    return dg.Definitions.merge(defs, dg.Definitions(executor=executor_from_env()))


def location_job(job_name: str) -> dg.JobDefinition:
    """The job ``job_name`` of :func:`location_defs`, resolved with its executor."""
    return location_defs().resolve_job_def(job_name)
