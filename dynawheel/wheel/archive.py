"""The one wheel writer: reproducible, streaming, atomic.

Members are sorted, the ``.dist-info`` directory comes last and RECORD last of all; every
input byte is read once (the sha256 for RECORD and the compressed output come from one
pass); times come from SOURCE_DATE_EPOCH (clamped to 1980) or a fixed 1980 date; modes are
0644, or 0755 for executables.  The wheel is written to a temporary file beside its final
name and renamed into place, so a reader never sees half a wheel.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import mmap
import os
import re
import stat
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TypeVar

from ..errors import OutputError, WheelFormatError
from ..fsutil import atomic_output
from .localheader import raw_data_offset
from .pool import RankedPool
from .record import RecordRow, encode_digest, format_record
from .zipwriter import DEFLATED, STORED, ZipWriter, compress_whole, crc32, whole_limit

if TYPE_CHECKING:
    from typing_extensions import Buffer

log = logging.getLogger(__name__)

ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")


def zip_date_time(environ: Mapping[str, str] | None = None) -> tuple[int, int, int, int, int, int]:
    env = os.environ if environ is None else environ
    raw = env.get("SOURCE_DATE_EPOCH", "")
    epoch = ZIP_EPOCH
    if raw.strip():
        try:
            epoch = max(int(raw), ZIP_EPOCH)
        except ValueError:
            raise OutputError(f"SOURCE_DATE_EPOCH {raw!r} is not an integer") from None
    return time.gmtime(epoch)[:6]


def check_member_name(name: str) -> str:
    """Reject names that are unsafe or invalid in a wheel; return the name."""
    if not name or name.startswith("/") or _BAD_CHARS.search(name):
        raise WheelFormatError(f"invalid path in wheel: {name!r} (absolute, empty, backslash or control character)")
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts) or re.match(r"^[A-Za-z]:", name):
        raise WheelFormatError(f"invalid path in wheel: {name!r} (empty, '.' or '..' component, or drive)")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise WheelFormatError(f"invalid path in wheel: {name!r} is not valid UTF-8") from None
    return name


# records: NamedTuples, not frozen dataclasses (as immutable and typed, ~5x cheaper to define at import)
class RawSource(NamedTuple):
    """A member of another zip, copied as its compressed bytes; its hash comes from that RECORD."""

    fp: BinaryIO
    info: zipfile.ZipInfo
    record_hash: str


class Later:  # the writer's plumbing: a plain class (a NamedTuple costs ~1 M instructions to create at import)
    """A member's bytes, asked for when the writer reaches it (made on another thread meanwhile: repair's
    SBOM, whose library takes longer to load than the members before it take to write)."""

    __slots__ = ("get",)

    def __init__(self, get: Callable[[], bytes]) -> None:
        self.get = get


class Entry(NamedTuple):
    """A member to write: from a file on disk, from bytes, raw from another zip, or bytes made later."""

    arcname: str
    source: Path | bytes | RawSource | Later
    executable: bool = False


def _sort_key(dist_info: str) -> Callable[[Entry], tuple[int, str]]:
    prefix = dist_info + "/"

    def key(entry: Entry) -> tuple[int, str]:
        return (1 if entry.arcname.startswith(prefix) else 0, entry.arcname)

    return key


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


class _Packed:
    """A member compressed whole by a worker thread (a private record: a plain class, no NamedTuple or dataclass
    to create at import)."""

    __slots__ = ("crc", "data", "method", "sha256", "size")

    def __init__(self, data: bytes | bytearray, method: int, crc: int, size: int, sha256: bytes) -> None:
        self.data, self.method, self.crc, self.size, self.sha256 = data, method, crc, size, sha256


MMAP_MIN = 1 << 20  # files at least this large are mapped, not read into a buffer
DIGESTS_APART_MIN = 256 << 10  # members at least this large are hashed apart from their compression
DIGEST_SPEED = 8  # sha256 + CRC-32 of a member take about an eighth of its compression (its rank in the pool)
T = TypeVar("T")


def _deflated(data: Buffer, level: int, backend: str) -> tuple[bytes | bytearray, int]:
    """(compressed bytes, method): stored when `level` is 0 or the member is empty."""
    if level and memoryview(data).nbytes:
        return compress_whole(data, level, backend), DEFLATED
    return bytes(data), STORED


def _digests(data: Buffer, backend: str) -> tuple[int, int, bytes]:
    """(CRC-32, size, sha256) of a member's content."""
    return crc32(data, 0, backend), memoryview(data).nbytes, hashlib.sha256(data).digest()


def _pack(data: Buffer, level: int, backend: str) -> _Packed:
    (out, method), (crc, size, sha256) = _deflated(data, level, backend), _digests(data, backend)
    return _Packed(out, method, crc, size, sha256)


def _on_whole(source: Path | bytes, work: Callable[[Buffer], T]) -> T:
    """`work` applied to all of a member's content at once (a file of MMAP_MIN or more is mapped)."""
    if isinstance(source, bytes):
        return work(source)
    with source.open("rb") as fp:
        if os.fstat(fp.fileno()).st_size < MMAP_MIN:
            return work(fp.read())
        with mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return work(view)


def _pack_whole(source: Path | bytes, level: int, backend: str = "auto") -> _Packed:
    """Hash, CRC and compress a whole member (libdeflate's one-shot API needs all of it at once)."""
    return _on_whole(source, functools.partial(_pack, level=level, backend=backend))


def _whole_size(entry: Entry, limit: int) -> int | None:
    """The size of a member to compress whole (below `limit`), or None to stream or copy it."""
    src = entry.source
    if isinstance(src, (RawSource, Later)):
        return None
    size = len(src) if isinstance(src, bytes) else src.stat().st_size
    return size if size < limit else None


class Packer:
    """Compresses whole members (below the whole-member limit) on worker threads, for write_wheel.

    :meth:`pack_soon` starts on a file before write_wheel is called: repair hands each binary
    over as soon as it is patched, so the biggest one compresses while the others are still being
    patched (performance: that compression is the critical path of a small repair).  The workers take
    the longest jobs first (wheel/pool.py: a member's compression ranks by its size, its digests by an
    eighth of it; members below DIGESTS_APART_MIN first of all, in the order given).  The output is the
    same whenever a member is compressed."""

    def __init__(self, level: int = 6, backend: str = "auto") -> None:
        self.level = level
        self.backend = backend
        self.pool = RankedPool(os.cpu_count() or 1)
        self.limit = whole_limit(level, backend)
        self.budget = 2 * self.limit  # input bytes compressed ahead of the writer, at most
        self._lock = threading.Lock()
        self._soon: dict[Path, tuple[int, Callable[[], _Packed]]] = {}
        self._soon_bytes = 0

    def __enter__(self) -> Packer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def pack_soon(self, path: Path) -> None:
        """Start compressing the file `path` now (thread-safe); write_wheel takes the result for the
        entry whose source is `path`.  Skipped when it is too big or the budget is spent: all of it, since
        the writer counts these in its own (the big graft's two ~115 MB libraries both start as soon as
        they are patched, not the second when the writer reaches it after every other edit)."""
        size = path.stat().st_size
        with self._lock:
            if size >= self.limit or self._soon_bytes + size > self.budget or path in self._soon:
                return
            self._soon_bytes += size
            self._soon[path] = (size, self.submit(path, size))

    def take(self, source: Path | bytes | RawSource | Later) -> tuple[int, Callable[[], _Packed]] | None:
        """(size, result) of a pack_soon() of `source`, if any."""
        if not isinstance(source, Path):
            return None
        with self._lock:
            return self._soon.pop(source, None)

    def submit(self, source: Path | bytes, size: int) -> Callable[[], _Packed]:
        """Start packing a member on the workers; the call returns it when done.  A big member's
        digests run on a worker of their own, beside its compression (performance: a lone big
        member is not hashed after it is compressed, on the same core)."""
        if size < DIGESTS_APART_MIN:
            return self.pool.submit(_pack_whole, source, self.level, self.backend).result
        deflated = self.pool.submit_ranked(size, _on_whole, source, functools.partial(
            _deflated, level=self.level, backend=self.backend))
        digests = self.pool.submit_ranked(size / DIGEST_SPEED, _on_whole, source,
                                          functools.partial(_digests, backend=self.backend))

        def done() -> _Packed:
            (data, method), (crc, size, sha256) = deflated.result(), digests.result()
            return _Packed(data, method, crc, size, sha256)

        return done


class _Writer:
    """Writes entries in order; members below the whole-member limit are compressed ahead by
    the packer's workers, within a budget of input bytes in flight."""

    def __init__(self, fp: BinaryIO, date_time: tuple[int, ...], packer: Packer) -> None:
        self.zw = ZipWriter(fp, level=packer.level, executor=packer.pool, backend=packer.backend)
        self.packer = packer
        self.date_time = date_time
        self.window = 4 * (os.cpu_count() or 1) + 8

    def write_all(self, entries: list[Entry]) -> list[RecordRow]:
        packer = self.packer
        sizes = [_whole_size(e, packer.limit) for e in entries]
        ahead: dict[int, Callable[[], _Packed]] = {}
        in_flight = 0
        for i, entry in enumerate(entries):  # started by pack_soon(): in flight already
            started = packer.take(entry.source)
            if started is not None:
                sizes[i], ahead[i] = started
                in_flight += started[0]
        queue = deque(i for i, size in enumerate(sizes) if size is not None and i not in ahead)
        rows = []
        for i, entry in enumerate(entries):
            if queue and queue[0] == i:  # its turn came before there was room for it: compressed whole all the
                queue.popleft()  # same (the output does not depend on what was compressed ahead)
                ahead[i] = self._submit(entries[i], sizes[i] or 0)
                in_flight += sizes[i] or 0
            while queue and self._room(len(ahead), in_flight, sizes[queue[0]] or 0):
                nxt = queue.popleft()
                ahead[nxt] = self._submit(entries[nxt], sizes[nxt] or 0)
                in_flight += sizes[nxt] or 0
            packed = None
            if i in ahead:
                packed = ahead.pop(i)()
                in_flight -= sizes[i] or 0
            rows.append(self.write(entry, packed))
        return rows

    def _submit(self, entry: Entry, size: int) -> Callable[[], _Packed]:
        src = entry.source
        assert not isinstance(src, (RawSource, Later))
        return self.packer.submit(src, size)

    def _room(self, count: int, in_flight: int, size: int) -> bool:
        """May one more member of `size` bytes be compressed ahead?  (Always, when none is.)"""
        return count == 0 or (count < self.window and in_flight + size <= self.packer.budget)

    def write(self, entry: Entry, packed: _Packed | None) -> RecordRow:
        mode = 0o755 if entry.executable else 0o644
        src = entry.source.get() if isinstance(entry.source, Later) else entry.source
        if isinstance(src, RawSource):
            offset = raw_data_offset(src.fp, src.info.header_offset)
            self.zw.add_raw(entry.arcname, src.fp, offset, method=src.info.compress_type, crc=src.info.CRC,
                            compressed=src.info.compress_size, size=src.info.file_size, mode=mode,
                            date_time=self.date_time)
            return RecordRow(entry.arcname, src.record_hash, src.info.file_size)
        if packed is None and isinstance(src, bytes):
            packed = _pack_whole(src, self.packer.level, self.packer.backend)
        if packed is not None:
            self.zw.add_packed(entry.arcname, packed.data, method=packed.method, crc=packed.crc, size=packed.size,
                               sha256=packed.sha256, mode=mode, date_time=self.date_time)
            return RecordRow(entry.arcname, encode_digest(packed.sha256), packed.size)
        assert isinstance(src, Path)
        with src.open("rb") as fp:
            member = self.zw.add_stream(entry.arcname, fp, src.stat().st_size, mode=mode, date_time=self.date_time)
        assert member.sha256 is not None
        return RecordRow(entry.arcname, encode_digest(member.sha256), member.size)


def write_wheel(
    path: Path,
    entries: list[Entry],
    dist_info: str,
    *,
    compression_level: int = 6,
    deflate: str = "auto",
    environ: Mapping[str, str] | None = None,
    before_commit: Callable[[], None] | None = None,
    packer: Packer | None = None,
) -> Path:
    """Write `entries` plus a generated RECORD as the wheel `path`; return `path`.

    `before_commit` runs after the last byte is written and before the wheel is renamed into
    place: when it raises, no wheel appears (repair uses it to wait for a background check).
    With a `packer` (already compressing some of the files), its level and backend are used."""
    record_name = f"{dist_info}/RECORD"
    seen: set[str] = set()
    for entry in entries:
        check_member_name(entry.arcname)
        if entry.arcname in seen or entry.arcname == record_name:
            raise WheelFormatError(f"duplicate member {entry.arcname!r} in wheel {path.name!r}")
        seen.add(entry.arcname)
    ordered = sorted(entries, key=_sort_key(dist_info))
    date_time = zip_date_time(environ)
    try:
        with atomic_output(path) as fp, ExitStack() as stack:
            if packer is None:
                packer = stack.enter_context(Packer(compression_level, deflate))
            writer = _Writer(fp, date_time, packer)
            rows = writer.write_all(ordered)
            rows.append(RecordRow(record_name, "", None))
            writer.write(Entry(record_name, format_record(rows)), None)
            writer.zw.close()
            if before_commit is not None:
                before_commit()
    except OSError as exc:
        raise OutputError(f"cannot write wheel {str(path)!r}: {exc.strerror or exc}") from None
    log.info("wrote %s (%d members)", path, len(rows))
    return path
