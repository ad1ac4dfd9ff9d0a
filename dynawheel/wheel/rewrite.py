"""A built wheel read without inflating it, and a new wheel written from its members.

`dynawheel tags` and `dynawheel merge` start here: every member is copied as its compressed bytes
(no inflate, no deflate); its RECORD row (hash and size) is taken from the input's RECORD, which must
list every member with a size that agrees with the zip's own.  Only WHEEL (new tags, build number)
and RECORD are regenerated, plus whatever members the caller replaces.  The output goes through the
one wheel writer (:func:`~dynawheel.wheel.archive.write_wheel`: sorted, ``.dist-info`` last, fixed
times, atomic rename), so the same input and tags give the same bytes.

This module knows nothing of binaries: the caller judges whether the content meets the tags.
"""

from __future__ import annotations

import email.parser
import os
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputError, TagError, WheelFormatError
from .archive import Entry, RawSource, check_member_name, write_wheel
from .record import MAX_RECORD, RecordRow, parse_record
from .tags import WheelTags, parse_filename, wheel_filename
from .text import MAX_WHEEL
from .zipread import READ_ERRORS, data_offset, open_zip, read_member

_SIGNATURES = ("RECORD.jws", "RECORD.p7s")  # signatures of the old RECORD: wrong once it changes


@dataclass(frozen=True)
class Member:
    """A member of a wheel: its zip entry and its RECORD row."""

    info: zipfile.ZipInfo
    row: RecordRow

    @property
    def executable(self) -> bool:
        return bool((self.info.external_attr >> 16) & 0o111)


@dataclass(frozen=True)
class OpenWheel:
    """A wheel opened for copying: names from the file name, members with their RECORD rows."""

    path: Path
    fp: BinaryIO
    zf: zipfile.ZipFile
    name: str  # as in the file name ('pillow')
    version: str
    build: str | None
    tags: WheelTags
    dist_info: str  # 'pillow-11.0.0.dist-info'
    members: Mapping[str, Member] = field(repr=False)  # every member but RECORD and its signatures
    wheel_text: str  # the WHEEL file

    def read(self, name: str) -> bytes:
        """One member's bytes (inflated: only for the few members a caller changes); CRC checked."""
        return self.head(name, -1)

    def head(self, name: str, size: int) -> bytes:
        """The first `size` bytes of a member (-1: all of them); a member that does not inflate, or whose
        CRC is wrong when read whole, is a WheelFormatError naming the wheel and the member."""
        try:
            with self.zf.open(self.members[name].info) as fp:
                return fp.read(size)
        except READ_ERRORS as exc:
            raise WheelFormatError(f"{self.path.name}: cannot read member {name!r} ({exc})") from None

    def raw(self, name: str) -> RawSource:
        """A member as compressed bytes to copy, with its RECORD hash."""
        m = self.members[name]
        return RawSource(self.fp, m.info, m.row.hash)


@contextmanager
def open_wheel(path: Path) -> Iterator[OpenWheel]:
    """Open `path` for copying; WheelFormatError when its RECORD does not describe its members."""
    name, version, build, tags = parse_filename(path.name)
    try:
        fp = path.open("rb")
    except OSError as exc:
        raise WheelFormatError(f"cannot read wheel {str(path)!r}: {exc.strerror or exc}") from None
    try:
        with open_zip(path) as zf:  # every zip-level check of the one reader (methods, flags, names, sizes)
            dist_info, members, wheel_text = _read_members(path.name, zf)
            length = os.fstat(fp.fileno()).st_size
            for member in members.values():  # copied raw: each local header must be there and agree
                data_offset(fp.fileno(), member.info, path.name, length)
            yield OpenWheel(path, fp, zf, name, version, build, tags, dist_info, members, wheel_text)
    finally:
        fp.close()


def _dist_info(where: str, names: list[str]) -> str:
    tops = sorted({n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")
                   and f"{n.split('/', 1)[0]}/RECORD" in names})
    if len(tops) != 1:
        raise WheelFormatError(f"{where}: expected one .dist-info directory with a RECORD, found {tops or 'none'}")
    return tops[0]


def _read_members(where: str, zf: zipfile.ZipFile) -> tuple[str, dict[str, Member], str]:
    infos: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        if info.filename.endswith("/"):
            continue
        check_member_name(info.filename)
        if info.filename in infos:
            raise WheelFormatError(f"{where}: duplicate member {info.filename!r}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise WheelFormatError(f"{where}: member {info.filename!r} uses compression method "
                                   f"{info.compress_type}, not stored or deflate")
        infos[info.filename] = info
    dist_info = _dist_info(where, list(infos))
    record_name = f"{dist_info}/RECORD"
    rows = {r.path: r for r in parse_record(read_member(zf, record_name, where, MAX_RECORD), where)}
    unlisted = {record_name, *(f"{dist_info}/{s}" for s in _SIGNATURES)}
    members: dict[str, Member] = {}
    for name, info in infos.items():
        if name in unlisted:
            continue
        row = rows.get(name)
        if row is None or not row.hash:
            raise WheelFormatError(f"{where}: {name!r} is not in RECORD with a hash")
        if row.size is not None and row.size != info.file_size:
            raise WheelFormatError(f"{where}: RECORD says {name!r} has {row.size} bytes, the zip {info.file_size}")
        members[name] = Member(info, RecordRow(name, row.hash, info.file_size))
    extra = sorted(set(rows) - set(infos) - unlisted)
    if extra:
        raise WheelFormatError(f"{where}: RECORD lists files the wheel does not hold: {extra[:5]}")
    if f"{dist_info}/WHEEL" not in members:
        raise WheelFormatError(f"{where}: missing {dist_info}/WHEEL")
    try:
        wheel_text = read_member(zf, f"{dist_info}/WHEEL", where, MAX_WHEEL).decode("utf-8")
    except UnicodeDecodeError:
        raise WheelFormatError(f"{where}: WHEEL is not UTF-8") from None
    return dist_info, members, wheel_text


def wheel_file_text(text: str, tags: WheelTags, build: str | None) -> bytes:
    """The WHEEL file `text` with its Tag lines (and Build line) replaced; other lines kept in order."""
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("Tag:", "Build:"))]
    lines += [f"Tag: {t}" for t in tags.expanded_text()]
    if build:
        lines.append(f"Build: {build}")
    return ("\n".join(lines) + "\n").encode("utf-8")


def root_is_purelib(text: str) -> bool:
    msg = email.parser.Parser().parsestr(text)
    return (msg.get("Root-Is-Purelib") or "").strip().lower() == "true"


def output_path(wheel: OpenWheel, out_dir: Path, tags: WheelTags, build: str | None) -> Path:
    """Where the rewritten wheel goes: `out_dir` / the name for these tags and build number."""
    if build is not None and build != "" and not build[:1].isdigit():
        raise TagError(f"invalid build number {build!r}: must start with a digit")
    return out_dir / wheel_filename(wheel.name, wheel.version, tags, build or None)


def write_from(
    wheel: OpenWheel,
    dest: Path,
    tags: WheelTags,
    build: str | None,
    *,
    replace: Mapping[str, tuple[bytes, bool]] | None = None,
    raw_from: Mapping[str, RawSource | tuple[RawSource, bool]] | None = None,
    compression_level: int = 6,
) -> Path:
    """Write `dest`: every member of `wheel` copied raw, WHEEL rewritten for `tags`/`build`, RECORD
    regenerated.  `replace`: arcname -> (bytes, executable) written instead of (or beside) a member;
    `raw_from`: arcname -> a member of another open wheel to copy raw instead (merge)."""
    replace = dict(replace or {})
    raw_from = dict(raw_from or {})
    entries: list[Entry] = []
    wheel_name = f"{wheel.dist_info}/WHEEL"
    for name, member in wheel.members.items():
        if name == wheel_name or name in replace or name in raw_from:
            continue
        entries.append(Entry(name, wheel.raw(name), member.executable))
    for name, (data, executable) in sorted(replace.items()):
        entries.append(Entry(name, data, executable))
    for name, src in sorted(raw_from.items()):
        source, executable = (src, bool((src.info.external_attr >> 16) & 0o111)) if isinstance(src, RawSource) else src
        entries.append(Entry(name, source, executable))
    entries.append(Entry(wheel_name, wheel_file_text(wheel.wheel_text, tags, build)))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(dest.parent)!r}: {exc.strerror or exc}") from None
    return write_wheel(dest, entries, wheel.dist_info, compression_level=compression_level)
