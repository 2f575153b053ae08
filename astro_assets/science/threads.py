"""Independent pieces of work spread over the machine's cores in threads.

numpy's copies, sorts and reductions, scipy's filters and FFTs and the numba kernels
(:func:`~astro_assets.science.compiled.compiled`) release the GIL, so threads running them
use separate cores without the cost of processes (no pickling of frames or images).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["computed_ahead", "in_threads", "worker_count"]

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def in_threads(function: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
    """``[function(item) for item in items]``, in order, computed in up to
    :func:`worker_count` threads; in the calling thread when there is one item or one core.
    The first exception raised by a call is raised here."""
    items = list(items)
    workers = min(worker_count(), len(items))
    if workers <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items))


def computed_ahead(
    function: Callable[[Item], Result], items: Iterable[Item], ahead: int = 4
) -> Iterator[Result]:
    """``function(item)`` for each of ``items``, in order, computed in one background thread
    up to ``ahead`` results before the consumer takes them, so that computing and consuming
    (writing a file) overlap while memory stays bounded. ``function`` runs on one item at a
    time, in order, so it may keep state (counters). The first exception raised by a call is
    raised where its result is taken."""
    if ahead < 1:
        raise ValueError(f"ahead must be >= 1, got {ahead}.")
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(function, item))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()
