"""Work split over forked processes: the parses of a big directory's binaries on every core.

:func:`in_forks` runs ``work`` on each chunk, the first in this process and the others in children made
with ``fork`` (no interpreter to start, no module to import again: a child has this process's memory),
each sending its pickled result back through a pipe.  The results come back in chunk order, so what a
caller builds from them does not depend on the number of processes.  A child that fails in any way (an
exception, a signal, a result that does not unpickle) has its chunk done again in this process, where the
same failure is raised as it would be without children; a caller never sees a difference but the time.

Forking is only safe in a process with one thread (a lock another thread holds stays held in the child):
:func:`fork_workers` is 1 otherwise, as it is where ``os.fork`` does not exist.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from ..log import get_logger

log = get_logger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

MAX_WORKERS = 8  # processes at most, whatever the number of cores


def fork_safe() -> bool:
    """Whether this process may fork workers: ``os.fork`` exists and no other thread runs."""
    return hasattr(os, "fork") and threading.active_count() == 1


def fork_workers(items: int, least: int) -> int:
    """How many processes to split `items` pieces of work over: one per core (at most MAX_WORKERS), each
    with at least `least` pieces; 1 (no child) when fewer, on one core, with threads running, or no fork."""
    if not fork_safe():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS, items // max(1, least)))


def in_forks(work: Callable[[Sequence[_T]], _R], chunks: Sequence[Sequence[_T]]) -> list[_R]:
    """``[work(chunk) for chunk in chunks]``, the chunks after the first each in a forked child."""
    children: list[tuple[int, int]] = []  # (pid, read end of its pipe), the children not reaped yet
    try:
        for chunk in chunks[1:]:
            children.append(_fork(work, chunk))
        out = [work(chunks[0])] if chunks else []
        for chunk in chunks[1:]:
            pid, fd = children.pop(0)
            try:
                out.append(_collect(pid, fd, work, chunk))
            finally:
                _close(fd)
        return out
    finally:
        for pid, fd in children:  # on an exception: a child still writing gets EPIPE and exits
            _close(fd)
            _reap(pid)


def _fork(work: Callable[[Sequence[_T]], _R], chunk: Sequence[_T]) -> tuple[int, int]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, send, and leave without running anything of the parent's exit
        code = 1
        try:
            os.close(read)
            with open(write, "wb") as out:
                pickle.dump(work(chunk), out, protocol=pickle.HIGHEST_PROTOCOL)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    return pid, read


def _collect(pid: int, fd: int, work: Callable[[Sequence[_T]], _R], chunk: Sequence[_T]) -> _R:
    """The child's result (the child reaped); its chunk done here when the child did not deliver one."""
    try:
        with open(fd, "rb", closefd=False) as pipe:
            data = pipe.read()
    except OSError as exc:
        data = b""
        log.debug("worker %d: %s", pid, exc)
    status = _reap(pid)
    if status == 0 and data:
        collecting = gc.isenabled()
        gc.disable()  # performance: unpickling makes many objects that live on: no collection in between
        try:
            result: _R = pickle.loads(data)
            return result
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
            log.debug("worker %d sent no result: %s", pid, exc)
        finally:
            if collecting:
                gc.enable()
    log.debug("worker %d ended with status %s: its %d pieces of work are done here", pid, status, len(chunk))
    return work(chunk)


def _reap(pid: int) -> int | None:
    """The child's exit status (0: it exited with 0); 0 also when the kernel reaped it already (SIGCHLD
    ignored): what it sent then decides (a child that died sent nothing, or a truncated pickle)."""
    try:
        _pid, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return 0
    return os.waitstatus_to_exitcode(status)


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


_A = TypeVar("_A")
_B = TypeVar("_B")


def beside(here: Callable[[], _A], there: Callable[[], _B]) -> tuple[_A, _B]:
    """``(here(), there())``, `there` in a forked child while this process runs `here` (both here when
    forking is not safe, or on one core).  Neither may depend on what the other does."""
    if fork_workers(2, 1) < 2:
        return here(), there()

    def work(_chunk: Sequence[None]) -> _B:
        return there()

    pid, fd = _fork(work, ())
    log.debug("worker %d runs beside this process", pid)
    try:
        first = here()
        return first, _collect(pid, fd, work, ())
    finally:
        _close(fd)
        _reap(pid)
