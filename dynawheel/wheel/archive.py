"""The one wheel writer: reproducible, streaming, atomic.

Members are sorted, the ``.dist-info`` directory comes last and RECORD last of all; every
input byte is read once (the sha256 for RECORD and the compressed output come from one
pass); times come from SOURCE_DATE_EPOCH (clamped to 1980) or a fixed 1980 date; modes are
0644, or 0755 for executables.  The wheel is written to a temporary file beside its final
name and renamed into place, so a reader never sees half a wheel.
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import re
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputError, WheelFormatError
from .record import RecordRow, encode_digest, format_record

log = logging.getLogger(__name__)

CHUNK = 1 << 20
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
class Entry:
    """A member to write: from a file on disk, or from bytes."""

    arcname: str
    source: Path | bytes
    executable: bool = False


def _sort_key(dist_info: str) -> Callable[[Entry], tuple[int, str]]:
    prefix = dist_info + "/"

    def key(entry: Entry) -> tuple[int, str]:
        return (1 if entry.arcname.startswith(prefix) else 0, entry.arcname)

    return key


def is_executable(path: Path) -> bool:
    return bool(path.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))


class _Zip:
    def __init__(self, fp: BinaryIO, level: int, date_time: tuple[int, ...]) -> None:
        method = zipfile.ZIP_DEFLATED if level > 0 else zipfile.ZIP_STORED
        self.zf = zipfile.ZipFile(fp, "w", compression=method, compresslevel=level or None)
        self.method = method
        self.level = level
        self.date_time = date_time

    def info(self, name: str, executable: bool) -> zipfile.ZipInfo:
        zinfo = zipfile.ZipInfo(name, date_time=self.date_time)  # type: ignore[arg-type]
        mode = 0o755 if executable else 0o644
        zinfo.external_attr = (stat.S_IFREG | mode) << 16
        zinfo.compress_type = self.method
        zinfo.create_system = 3
        if self.level:
            zinfo._compresslevel = self.level  # type: ignore[attr-defined]
        return zinfo

    def write(self, entry: Entry) -> RecordRow:
        zinfo = self.info(entry.arcname, entry.executable)
        digest = hashlib.sha256()
        size = 0
        if isinstance(entry.source, bytes):
            digest.update(entry.source)
            size = len(entry.source)
            self.zf.writestr(zinfo, entry.source)
        else:
            zinfo.file_size = entry.source.stat().st_size
            with open(entry.source, "rb") as src, self.zf.open(zinfo, "w", force_zip64=True) as dst:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    dst.write(chunk)
                    size += len(chunk)
        return RecordRow(entry.arcname, encode_digest(digest.digest()), size)


@contextmanager
def atomic_output(final: Path) -> Iterator[BinaryIO]:
    """Write to a temporary file beside `final`, then rename it into place."""
    directory = final.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OutputError(f"cannot write to {str(directory)!r}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fp:
            yield fp
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_wheel(
    path: Path,
    entries: list[Entry],
    dist_info: str,
    *,
    compression_level: int = 6,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """Write `entries` plus a generated RECORD as the wheel `path`; return `path`."""
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
        with atomic_output(path) as fp:
            out = _Zip(fp, compression_level, date_time)
            rows = [out.write(entry) for entry in ordered]
            rows.append(RecordRow(record_name, "", None))
            out.write(Entry(record_name, format_record(rows)))
            out.zf.close()
    except OSError as exc:
        raise OutputError(f"cannot write wheel {str(path)!r}: {exc.strerror or exc}") from None
    log.info("wrote %s (%d members)", path, len(rows))
    return path


def dist_info_of(names: list[str]) -> str:
    """The single top-level '*.dist-info' directory among member names."""
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    found = sorted(t for t in tops if t.endswith(".dist-info"))
    if len(found) != 1:
        raise WheelFormatError(f"expected one .dist-info directory, found {found!r}")
    return found[0]


def member_parent(name: str) -> str:
    return posixpath.dirname(name)
