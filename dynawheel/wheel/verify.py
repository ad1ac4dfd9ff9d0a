"""Check members of a wheel against the hashes its RECORD lists, fast and in the background.

Repairing a large wheel copies almost every member as raw compressed bytes, so its RECORD hash
is carried over unverified unless someone inflates the member once.  This does that on worker
threads while the caller goes on (analysis, patching, writing): each member's raw deflate data
is read with ``os.pread`` (no shared file position, no locks), inflated with ISA-L when the
``isal`` package is installed (about twice zlib's speed) and hashed; zlib and hashlib release
the GIL on large buffers, so the work runs on the cores the caller leaves idle.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from ..errors import WheelFormatError

BLOCK = 1 << 20  # compressed bytes read at a time
OUT_MAX = 8 << 20  # inflated bytes per call at most
T = TypeVar("T")


class _Inflater(Protocol):
    @property
    def unconsumed_tail(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...
    def flush(self) -> bytes: ...


def _isal() -> tuple[Any, tuple[type[Exception], ...]]:
    try:
        from isal import isal_zlib
    except ImportError:
        return None, (zlib.error,)
    isal_error = cast("type[Exception]", isal_zlib.error)
    return isal_zlib, (zlib.error, isal_error)


_ISAL, INFLATE_ERRORS = _isal()
READ_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, ValueError, *INFLATE_ERRORS)
DEFLATED, STORED = 8, 0


def _inflater() -> _Inflater:
    if _ISAL is None:
        return zlib.decompressobj(-15)
    return cast(_Inflater, _ISAL.decompressobj(-15))


def _data_offset(fd: int, header_offset: int) -> int:
    head = os.pread(fd, 30, header_offset)
    if len(head) != 30 or head[:4] != b"PK\x03\x04":
        raise EOFError(f"no local file header at offset {header_offset}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return header_offset + 30 + int(name_len) + int(extra_len)


class Stopped(Exception):
    """The check was closed before this member was done."""


def member_digest(fd: int, header_offset: int, method: int, compressed: int, algorithm: str,
                  stop: threading.Event | None = None) -> str:
    """'<algorithm>=<urlsafe-b64-nopad>' of one member's content, as RECORD writes it."""
    offset = _data_offset(fd, header_offset)
    digest = hashlib.new(algorithm)
    inflate = _inflater() if method == DEFLATED else None
    left = compressed
    while left:
        if stop is not None and stop.is_set():
            raise Stopped
        block = os.pread(fd, min(BLOCK, left), offset)
        if not block:
            raise EOFError("truncated member data")
        offset += len(block)
        left -= len(block)
        if inflate is None:
            digest.update(block)
            continue
        while True:  # bounded output per call: a small block of zeros can inflate to gigabytes
            out = inflate.decompress(block, OUT_MAX)
            digest.update(out)
            block = inflate.unconsumed_tail
            if not block and len(out) < OUT_MAX:
                break
    if inflate is not None:
        digest.update(inflate.flush())
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")


INLINE_MAX = 4 << 20  # compressed bytes below which the check runs in the calling thread


class _Inline(Executor):
    """Runs each call at once, in the calling thread."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        done: Future[T] = Future()
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller by result(), as a pool would
            done.set_exception(exc)
        return done


BATCH = 4 << 20  # compressed bytes per task: small members are checked in groups (one future per group)


def _check_batch(fd: int, batch: list[tuple[str, int, int, int, str]], skip: set[str],
                 stop: threading.Event) -> list[tuple[str, str]]:
    """[(name, digest)] of a group of members: (name, header offset, method, compressed size, algorithm);
    names in `skip` (which the caller may fill meanwhile) are left out; nothing more once `stop` is set."""
    out = []
    for name, offset, method, size, algo in batch:
        if name not in skip:
            try:
                out.append((name, member_digest(fd, offset, method, size, algo, stop)))
            except Stopped:
                break
    return out


class RecordCheck:
    """Starts checking `members` ((ZipInfo, 'algo=digest') pairs) of `wheel` on creation;
    :meth:`wait` raises WheelFormatError for the first mismatch in name order."""

    def __init__(self, wheel: Path, members: Iterable[tuple[Any, str]], workers: int | None = None) -> None:
        self.wheel = wheel
        members = list(members)
        self.expected = {info.filename: expected for info, expected in members}
        todo = sorted(members, key=lambda m: -int(m[0].compress_size))  # the big ones first: better packing
        for info, _ in todo:
            if info.compress_type not in (DEFLATED, STORED):
                raise WheelFormatError(f"cannot read {info.filename!r} from {wheel.name!r}: compression method "
                                       f"{info.compress_type} (only stored and deflated are allowed in wheels)")
        if workers is None:
            workers = os.cpu_count() or 1
        if sum(int(m[0].compress_size) for m in todo) < INLINE_MAX:
            workers = 0  # a small wheel: starting threads costs more than the check (done here, now)
        self.fd = os.open(wheel, os.O_RDONLY)
        self.closed = False
        self.skipped: set[str] = set()
        self.stop = threading.Event()
        self.pool: Executor = ThreadPoolExecutor(workers, thread_name_prefix="record-check") if workers else _Inline()
        self.futures: list[tuple[list[str], Future[list[tuple[str, str]]]]] = []
        batch: list[tuple[str, int, int, int, str]] = []
        size = 0
        for info, expected in todo:
            batch.append((info.filename, info.header_offset, info.compress_type, info.compress_size,
                          expected.partition("=")[0] or "sha256"))
            size += info.compress_size
            if size >= BATCH:
                self._submit(batch)
                batch, size = [], 0
        if batch:
            self._submit(batch)

    def _submit(self, batch: list[tuple[str, int, int, int, str]]) -> None:
        self.futures.append(([b[0] for b in batch], self.pool.submit(_check_batch, self.fd, batch, self.skipped,
                                                                      self.stop)))

    def skip(self, names: Iterable[str]) -> None:
        """Members the caller does not copy (it rewrites them): not checked from now on."""
        self.skipped.update(names)

    def wait(self) -> None:
        try:
            got: dict[str, str] = {}
            failed: dict[str, Exception] = {}
            for names, fut in self.futures:
                try:
                    got.update(fut.result())
                except READ_ERRORS as exc:
                    failed.update(dict.fromkeys(names, exc))
            for name in sorted(self.expected.keys() - self.skipped):
                if name in got and got[name] == self.expected[name]:
                    continue
                if name in failed:
                    raise WheelFormatError(f"cannot read {name!r} from {self.wheel.name!r}: {failed[name]}")
                raise WheelFormatError(f"broken RECORD in {self.wheel.name!r}: the hash of {name!r} does not match "
                                       f"{self.expected[name]!r}")
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop.set()  # a member being checked stops at its next block: closing does not wait for it
        for _, fut in self.futures:
            fut.cancel()
        self.pool.shutdown(wait=True)
        os.close(self.fd)
