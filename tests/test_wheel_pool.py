"""wheel/pool.py: the writer's workers take the highest-ranked job first, plain submit() before all."""

from __future__ import annotations

import threading

import pytest

from dynawheel.wheel.pool import RankedPool


def _blocked(pool: RankedPool) -> threading.Event:
    """Occupy the pool's one worker until the event returned is set."""
    release = threading.Event()
    started = threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    pool.submit(hold)
    assert started.wait(10)
    return release


def test_jobs_run_by_rank_then_by_arrival() -> None:
    pool = RankedPool(1)
    ran: list[str] = []
    release = _blocked(pool)
    futures = [pool.submit_ranked(rank, ran.append, name)
               for rank, name in ((10, "small"), (300, "big"), (50, "mid"), (300, "big-later"))]
    futures.append(pool.submit(ran.append, "plain"))  # the zip writer's chunks: before any ranked job
    release.set()
    for future in futures:
        future.result(10)
    pool.shutdown()
    assert ran == ["plain", "big", "big-later", "mid", "small"]


def test_results_and_exceptions_reach_the_caller() -> None:
    with RankedPool(2) as pool:
        assert pool.submit_ranked(1, pow, 2, 10).result(10) == 1024
        assert list(pool.map(len, ["a", "bb"])) == [1, 2]
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 // 0).result(10)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(len, "x")


def test_shutdown_cancels_what_has_not_started() -> None:
    pool = RankedPool(1)
    release = _blocked(pool)
    waiting = pool.submit_ranked(5, len, "never")
    release.set()
    pool.shutdown(wait=True, cancel_futures=True)
    assert waiting.cancelled() or waiting.result(10) == 5  # it may have started before the shutdown


def test_workers_start_on_demand_up_to_the_limit() -> None:
    pool = RankedPool(3)
    assert pool._threads == []
    for _ in range(10):
        pool.submit(len, "x").result(10)
    assert 1 <= len(pool._threads) <= 3
    pool.shutdown()
    assert all(not t.is_alive() for t in pool._threads)
