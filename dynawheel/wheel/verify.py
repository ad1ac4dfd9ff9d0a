"""Check members of a wheel against the hashes its RECORD lists, fast and in the background.

Repairing a large wheel copies almost every member as raw compressed bytes, so its RECORD hash
is carried over unverified unless someone inflates the member once.  This does that on worker
threads while the caller goes on (analysis, patching, writing): each member's raw deflate data
is read with ``os.pread`` (no shared file position, no locks), inflated with ISA-L when the
``isal`` package is installed (about twice zlib's speed) and hashed; zlib and hashlib release
the GIL on large buffers, so the work runs on the cores the caller leaves idle.

Members someone else inflates anyway (repair's analysis reads every binary of the wheel) are
hashed there, on the same bytes, and handed over through :class:`SharedDigests`: the check
leaves them alone and compares the digest it is given, so every member is inflated for the
check once in total.  Big binaries (sniffed by their magic bytes) are held back until the
reader is done (:meth:`RecordCheck.reader_done`): by then it has hashed them, or they are
rewritten and need no check.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..errors import WheelFormatError
from ..magic import BINARY_MAGIC
from .inflate import errors, inflate_whole, inflater
from .localheader import pread_data_offset
from .record import encode_digest
from .zipread import stored_name

log = logging.getLogger(__name__)

BLOCK = 1 << 20  # compressed bytes read at a time
OUT_MAX = 8 << 20  # inflated bytes per call at most
T = TypeVar("T")
WHOLE_MAX = 1 << 20  # inflated bytes up to which a member is inflated in one call (libdeflate)


def read_errors() -> tuple[type[Exception], ...]:
    """What reading a member may raise (evaluated in ``except`` clauses only: see inflate.py)."""
    return (OSError, EOFError, ValueError, *errors())


DEFLATED, STORED = 8, 0
ALGORITHM = "sha256"  # the digest SharedDigests holds


class Stopped(Exception):
    """The check was closed before this member was done."""


def member_digest(fd: int, header_offset: int, method: int, compressed: int, algorithm: str,
                  stop: threading.Event | None = None, size: int = 0, name: bytes | None = None) -> str:
    """'<algorithm>=<urlsafe-b64-nopad>' of one member's content, as RECORD writes it; `size`, the
    inflated size the zip gives, lets a small deflated member be inflated in one call; `name`, the
    member's name as the central directory stores it, is checked against its local header."""
    offset = pread_data_offset(fd, header_offset, name)
    if method == DEFLATED and 0 < size <= WHOLE_MAX:  # performance: one call (most members are small)
        data = inflate_whole(os.pread(fd, compressed, offset), size)
        return encode_digest(hashlib.new(algorithm, data).digest(), algorithm)
    digest = hashlib.new(algorithm)
    inflate = inflater() if method == DEFLATED else None
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
    return encode_digest(digest.digest(), algorithm)


class SharedDigests:
    """Digests of wheel members that a reader (repair's analysis) computed on bytes it inflated
    anyway, and who has taken each member on, so that a member is inflated for the RECORD check
    by one side only.  Names are zip member names; digests are ``ALGORITHM`` in RECORD form.
    Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._digests: dict[str, str] = {}
        self._pending: dict[str, Future[str]] = {}  # put_soon(): being hashed
        self._owner: dict[str, str] = {}  # name -> 'reader' or 'check'
        self._pool: ThreadPoolExecutor | None = None

    @property
    def digests(self) -> dict[str, str]:
        """Every digest the reader gave (waits for those still being computed)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for name, future in pending.items():
            self.put(name, future.result())
        with self._lock:
            return dict(self._digests)

    def claim(self, name: str, who: str) -> bool:
        """True when `who` ('reader' or 'check') takes `name` on: not hashed yet, not taken by the other."""
        with self._lock:
            return (name not in self._digests and name not in self._pending
                    and self._owner.setdefault(name, who) == who)

    def put(self, name: str, digest: str) -> None:
        """The reader's digest of a member it claimed."""
        with self._lock:
            self._digests.setdefault(name, digest)

    def put_soon(self, name: str, data: bytes) -> None:
        """The reader's bytes of a member it claimed, hashed on a thread of this object's (hashlib
        releases the GIL) while the reader goes on."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="shared-digests")
            self._pending[name] = self._pool.submit(_sha256, data)

    def release(self, name: str) -> None:
        """The reader gives back a member it will not finish (the check hashes it); nothing once put."""
        with self._lock:
            if name not in self._digests and name not in self._pending and self._owner.get(name) == "reader":
                del self._owner[name]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _sha256(data: bytes) -> str:
    return encode_digest(hashlib.sha256(data).digest())


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


HOLD_MIN = 1 << 20  # compressed bytes from which a binary is left for the reader to hash (RecordCheck)
BATCH = 4 << 20  # compressed bytes per task: small members are checked in groups (one future per group)


# name, header offset, method, compressed size, algorithm, size, stored name
_Member = tuple[str, int, int, int, str, int, bytes]


def _check_batch(fd: int, batch: list[_Member], skip: set[str], stop: threading.Event,
                 shared: SharedDigests | None) -> list[tuple[str, str | Exception]]:
    """[(name, digest or read error)] of a group of members; names in `skip` (which the caller may
    fill meanwhile) and members the reader of `shared` hashes are left out; nothing more once
    `stop` is set."""
    out: list[tuple[str, str | Exception]] = []
    for name, offset, method, compressed, algo, size, raw_name in batch:
        if name in skip or (shared is not None and algo == ALGORITHM and not shared.claim(name, "check")):
            continue
        try:
            out.append((name, member_digest(fd, offset, method, compressed, algo, stop, size, raw_name)))
        except Stopped:
            break
        except read_errors() as exc:
            out.append((name, exc))
    return out


class RecordCheck:
    """Starts checking `members` ((ZipInfo, 'algo=digest') pairs) of `wheel` on creation;
    :meth:`wait` raises WheelFormatError for the first mismatch in name order.  Members whose
    digest a reader puts into `shared` are compared with that digest instead of inflated again;
    with a reader, the big binaries (or with `hold_all` every member: when the reader keeps the
    cores busy) wait for :meth:`reader_done`."""

    def __init__(self, wheel: Path, members: Iterable[tuple[Any, str]], workers: int | None = None,
                 shared: SharedDigests | None = None, hold_all: bool = False) -> None:
        self.wheel = wheel
        self.shared = shared
        members = list(members)
        self.expected = {info.filename: expected for info, expected in members}
        self.infos = {info.filename: info for info, _ in members}
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
        self.futures: list[Future[list[tuple[str, str | Exception]]]] = []
        self.checked: list[str] = []  # members this check inflated (the others: skipped, or hashed by the reader)
        self.held: list[tuple[Any, str]] = []  # big binaries left for the reader until reader_done()
        if shared is not None:
            self.held = [m for m in todo if hold_all or (m[0].compress_size >= HOLD_MIN and self._binary(m[0]))]
            held = {id(m[0]) for m in self.held}
            todo = [m for m in todo if id(m[0]) not in held]
        self._submit_all(todo, shared)

    def _binary(self, info: Any) -> bool:
        """Whether a member starts like an ELF, PE or Mach-O file (unreadable: False, the check says why)."""
        try:
            raw = os.pread(self.fd, 4096, pread_data_offset(self.fd, info.header_offset))  # the first block's tables
            head = zlib.decompressobj(-15).decompress(raw, 4) if info.compress_type == DEFLATED else raw[:4]
        except read_errors():
            return False
        return head.startswith(BINARY_MAGIC)

    def reader_done(self, rewritten: Iterable[str] = ()) -> None:
        """The reader of the shared digests is done: members in `rewritten` need no check (the caller
        writes new content), the held-back binaries it did not hash are checked now."""
        self.skip(rewritten)
        held, self.held = self.held, []
        self._submit_all(held, self.shared)

    def _submit_all(self, todo: list[tuple[Any, str]], shared: SharedDigests | None) -> None:
        batch: list[_Member] = []
        size = 0
        for info, expected in todo:
            batch.append((info.filename, info.header_offset, info.compress_type, info.compress_size,
                          expected.partition("=")[0] or ALGORITHM, info.file_size, stored_name(info)))
            size += info.compress_size
            if size >= BATCH:
                self.futures.append(self.pool.submit(_check_batch, self.fd, batch, self.skipped, self.stop, shared))
                batch, size = [], 0
        if batch:
            self.futures.append(self.pool.submit(_check_batch, self.fd, batch, self.skipped, self.stop, shared))

    def skip(self, names: Iterable[str]) -> None:
        """Members the caller does not copy (it rewrites them): not checked from now on."""
        self.skipped.update(names)

    def _results(self) -> dict[str, str | Exception]:
        got: dict[str, str | Exception] = {}
        for fut in self.futures:
            got.update(fut.result())
        self.futures = []
        return got

    def wait(self) -> None:
        try:
            self.reader_done()
            got = self._results()
            self.checked = list(got)
            names = sorted(self.expected.keys() - self.skipped)
            shared = self.shared.digests if self.shared is not None else {}
            for name in names:
                if name not in got and name in shared and self.expected[name].startswith(f"{ALGORITHM}="):
                    got[name] = shared[name]
            left = [name for name in names if name not in got]
            if left:  # taken by the reader but not finished (it stopped early): inflated here, now
                log.debug("RECORD check: %d member(s) left by the reader", len(left))
                self._submit_all([(self.infos[name], self.expected[name]) for name in left], None)
                more = self._results()
                self.checked += list(more)
                got.update(more)
            for name in names:
                value = got.get(name)
                if isinstance(value, Exception):
                    raise WheelFormatError(f"cannot read {name!r} from {self.wheel.name!r}: {value}")
                if value != self.expected[name]:
                    raise WheelFormatError(f"broken RECORD in {self.wheel.name!r}: the hash of {name!r} does not "
                                           f"match {self.expected[name]!r}")
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop.set()  # a member being checked stops at its next block: closing does not wait for it
        for fut in self.futures:
            fut.cancel()
        self.pool.shutdown(wait=True)
        os.close(self.fd)
