"""The writer's worker threads: a thread pool whose queue is ordered by rank, not by arrival.

The wheel writer compresses members whole, one per worker.  With a first-in first-out queue the
last big member of a wheel may start when the other workers have nothing left: on the big graft
(two ~115 MB libraries and three of 23-31 MB, 2 cores) one core idled for ~0.2-0.4 s at the end.
Queued by rank, the longest jobs start first (longest-processing-time order) and the short ones
fill the gaps.  Work submitted with :meth:`RankedPool.submit` (the zip writer's parallel chunks,
which the writer waits for in turn) runs before anything ranked.  What runs when never changes
what is written: each job's result is the same whenever it runs.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")
_FIRST = float("inf")  # the rank of plain submit(): before every ranked job


class RankedPool(Executor):
    """`workers` threads, started on the first job, taking the highest-ranked job first (ties: the
    earliest).  shutdown() as :class:`concurrent.futures.ThreadPoolExecutor`'s."""

    def __init__(self, workers: int) -> None:
        self._max_workers = max(1, workers)  # the name ThreadPoolExecutor uses (the zip writer reads it)
        self._queue: list[tuple[float, int, Future[Any], Callable[[], Any]]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run `fn(*args, **kwargs)` before every ranked job."""
        return self.submit_ranked(_FIRST, fn, *args, **kwargs)

    def submit_ranked(self, rank: float, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Run `fn(*args, **kwargs)` after the jobs of higher rank already queued (a longer job: a higher
        rank)."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that was shut down")
            heapq.heappush(self._queue, (-rank, next(self._order), future, lambda: fn(*args, **kwargs)))
            if len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, name=f"dynawheel-pack-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
            else:
                self._cond.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                _, _, future, job = heapq.heappop(self._queue)
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = job()
            except BaseException as exc:  # the caller of result() gets it, as from ThreadPoolExecutor
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._cond:
            self._closed = True
            if cancel_futures:
                for _, _, future, _ in self._queue:
                    future.cancel()
                self._queue.clear()
            self._cond.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()
