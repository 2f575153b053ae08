"""Independent work spread over threads: results in order, errors raised, memory bounded."""

import threading

import pytest

from astro_assets.science import threads
from astro_assets.science.threads import computed_ahead, in_threads, worker_count


def test_worker_count_is_the_cores_this_process_may_use():
    assert worker_count() >= 1
    if hasattr(threads.os, "sched_getaffinity"):
        assert worker_count() == len(threads.os.sched_getaffinity(0))


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_in_threads_returns_every_result_in_order(monkeypatch, workers):
    monkeypatch.setattr(threads, "worker_count", lambda: workers)
    names = set()

    def square(value):
        names.add(threading.current_thread().name)
        return value * value

    assert in_threads(square, range(20)) == [value * value for value in range(20)]
    assert in_threads(square, []) == []
    on_the_caller = names == {threading.current_thread().name}
    assert on_the_caller == (workers == 1)


def test_in_threads_raises_the_first_error(monkeypatch):
    monkeypatch.setattr(threads, "worker_count", lambda: 2)

    def fails_on_three(value):
        if value == 3:
            raise ValueError("three")
        return value

    with pytest.raises(ValueError, match="three"):
        in_threads(fails_on_three, range(6))


def test_computed_ahead_yields_in_order_and_stays_at_most_ahead():
    computed = []
    taken = []

    def record(value):
        computed.append(value)
        return 10 * value

    for result in computed_ahead(record, range(12), ahead=3):
        # The result taken, and at most `ahead` more submitted behind it.
        assert len(computed) <= len(taken) + 1 + 3
        taken.append(result)
    assert taken == [10 * value for value in range(12)]
    # One background thread, so a stateful function sees the items in order.
    assert computed == list(range(12))


def test_computed_ahead_raises_where_the_failed_result_is_taken():
    def fails_on_two(value):
        if value == 2:
            raise OSError("unreadable frame 2")
        return value

    taken = []
    with pytest.raises(OSError, match="unreadable frame 2"):
        for result in computed_ahead(fails_on_two, range(5), ahead=2):
            taken.append(result)
    assert taken == [0, 1]


def test_computed_ahead_stops_computing_when_the_consumer_stops():
    computed = []
    results = computed_ahead(computed.append, range(100), ahead=2)
    next(results)
    results.close()
    assert len(computed) <= 4


def test_computed_ahead_needs_a_positive_lead():
    with pytest.raises(ValueError, match="ahead must be >= 1"):
        list(computed_ahead(abs, [1], ahead=0))
