"""The one wheel writer: reproducible, streaming, atomic.

Members are sorted, the ``.dist-info`` directory comes last and RECORD last of all; every
input byte is read once (the sha256 for RECORD and the compressed output come from one
pass); times come from SOURCE_DATE_EPOCH (clamped to 1980) or a fixed 1980 date; modes are
0644, or 0755 for executables.  The wheel is written to a temporary file beside its final
name and renamed into place, so a reader never sees half a wheel.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import time
import zipfile
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputError, WheelFormatError
from ..fsutil import atomic_output
from .record import RecordRow, encode_digest, format_record
from .zipwriter import DEFLATED, PARALLEL_MIN, STORED, ZipWriter, compressobj, crc32, raw_data_offset

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


@dataclass(frozen=True)
class RawSource:
    """A member of another zip, copied as its compressed bytes; its hash comes from that RECORD."""

    fp: BinaryIO
    info: zipfile.ZipInfo
    record_hash: str


@dataclass(frozen=True)
class Entry:
    """A member to write: from a file on disk, from bytes, or raw from another zip."""

    arcname: str
    source: Path | bytes | RawSource
    executable: bool = False


def _sort_key(dist_info: str) -> Callable[[Entry], tuple[int, str]]:
    prefix = dist_info + "/"

    def key(entry: Entry) -> tuple[int, str]:
        return (1 if entry.arcname.startswith(prefix) else 0, entry.arcname)

    return key


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


@dataclass(frozen=True)
class _Packed:
    """A small member compressed by a worker thread."""

    data: bytes
    method: int
    crc: int
    size: int
    sha256: bytes


def _pack_small(source: Path | bytes, level: int, backend: str = "auto") -> _Packed:
    data = source if isinstance(source, bytes) else source.read_bytes()
    method = DEFLATED if level and data else STORED
    out = data
    if method == DEFLATED:
        comp = compressobj(level, backend=backend)
        out = comp.compress(data) + comp.flush()
    return _Packed(out, method, crc32(data, 0, backend), len(data), hashlib.sha256(data).digest())


def _is_small(entry: Entry) -> bool:
    src = entry.source
    if isinstance(src, RawSource):
        return False
    return isinstance(src, bytes) or src.stat().st_size < PARALLEL_MIN


class _Writer:
    """Writes entries in order; small ones are compressed ahead by worker threads."""

    def __init__(self, fp: BinaryIO, level: int, date_time: tuple[int, ...], pool: ThreadPoolExecutor,
                 backend: str = "auto") -> None:
        self.zw = ZipWriter(fp, level=level, executor=pool, backend=backend)
        self.level = level
        self.backend = backend
        self.date_time = date_time
        self.pool = pool
        self.window = 4 * (os.cpu_count() or 1) + 8

    def write_all(self, entries: list[Entry]) -> list[RecordRow]:
        ahead: dict[int, Future[_Packed]] = {}
        queue = iter([i for i, e in enumerate(entries) if _is_small(e)])
        rows = []
        for i, entry in enumerate(entries):
            while len(ahead) < self.window and (nxt := next(queue, None)) is not None:
                src = entries[nxt].source
                assert not isinstance(src, RawSource)
                ahead[nxt] = self.pool.submit(_pack_small, src, self.level, self.backend)
            rows.append(self.write(entry, ahead.pop(i).result() if i in ahead else None))
        return rows

    def write(self, entry: Entry, packed: _Packed | None) -> RecordRow:
        mode = 0o755 if entry.executable else 0o644
        src = entry.source
        if isinstance(src, RawSource):
            offset = raw_data_offset(src.fp, src.info.header_offset)
            self.zw.add_raw(entry.arcname, src.fp, offset, method=src.info.compress_type, crc=src.info.CRC,
                            compressed=src.info.compress_size, size=src.info.file_size, mode=mode,
                            date_time=self.date_time)
            return RecordRow(entry.arcname, src.record_hash, src.info.file_size)
        if packed is None and isinstance(src, bytes):
            packed = _pack_small(src, self.level, self.backend)
        if packed is not None:
            self.zw.add_raw(entry.arcname, io.BytesIO(packed.data), 0, method=packed.method, crc=packed.crc,
                            compressed=len(packed.data), size=packed.size, mode=mode, date_time=self.date_time)
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
) -> Path:
    """Write `entries` plus a generated RECORD as the wheel `path`; return `path`.

    `before_commit` runs after the last byte is written and before the wheel is renamed into
    place: when it raises, no wheel appears (repair uses it to wait for a background check)."""
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
        with atomic_output(path) as fp, ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
            writer = _Writer(fp, compression_level, date_time, pool, deflate)
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
