"""`dynawheel check`: validate wheels and find files that several wheels would install."""

from __future__ import annotations

import hashlib
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from ..errors import DynawheelError
from .archive import check_member_name
from .assemble import SCHEMES
from .record import RecordRow, encode_digest, parse_record
from .tags import WheelTags, canonicalize_name, dist_info_dirs, find_dist_info, parse_filename, parse_tags
from .text import MAX_METADATA, MAX_RECORD, MAX_WHEEL, HeaderFields, parse_metadata, parse_wheel_file
from .zipread import READ_ERRORS, open_zip, read_member

_UNLISTED = ("RECORD", "RECORD.jws", "RECORD.p7s")


@dataclass(frozen=True)
class WheelCheck:
    path: Path
    problems: tuple[str, ...]
    installs: tuple[str, ...] = ()  # where each member lands: 'site-packages/a/b.py', 'scripts/x', ...

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Conflict:
    path: str  # installed path, e.g. 'site-packages/anamespace/__init__.py'
    wheels: tuple[str, ...]


@dataclass(frozen=True)
class CheckReport:
    wheels: tuple[WheelCheck, ...]
    conflicts: tuple[Conflict, ...]

    @property
    def ok(self) -> bool:
        return not self.conflicts and all(w.ok for w in self.wheels)


class _Problems(list[str]):
    def add(self, text: str) -> None:
        self.append(text)


def _read(zf: zipfile.ZipFile, name: str, limit: int, problems: _Problems) -> bytes | None:
    if name not in zf.NameToInfo:
        problems.add(f"missing {name}")
        return None
    try:
        return read_member(zf, name, Path(str(zf.filename)).name, limit)
    except DynawheelError as exc:
        problems.add(str(exc))
    return None


def _check_names(names: list[str], problems: _Problems) -> list[str]:
    seen: set[str] = set()
    good = []
    for name in names:
        if name.endswith("/"):
            continue
        try:
            check_member_name(name)
        except DynawheelError as exc:
            problems.add(str(exc))
            continue
        if name in seen:
            problems.add(f"duplicate member {name!r}")
        seen.add(name)
        good.append(name)
    return good


def _check_wheel_file(data: bytes, tags: WheelTags, problems: _Problems) -> bool:
    try:
        msg = parse_wheel_file(data, "WHEEL")
    except DynawheelError as exc:
        problems.add(str(exc))
        return False
    version = msg.get("Wheel-Version", "")
    if not version.startswith("1."):
        problems.add(f"WHEEL: unsupported Wheel-Version {version!r}")
    purelib = (msg.get("Root-Is-Purelib") or "").strip().lower()
    if purelib not in ("true", "false"):
        problems.add(f"WHEEL: Root-Is-Purelib must be true or false, not {purelib!r}")
    listed = set()
    for tag in msg.get_all("Tag") or []:
        try:
            listed.update(parse_tags(tag.strip()).expanded_text())
        except DynawheelError as exc:
            problems.add(f"WHEEL: {exc}")
    if listed != set(tags.expanded_text()):
        problems.add(f"WHEEL Tag lines {sorted(map(str, listed))} disagree with the file name's {tags}")
    return purelib == "true"


def _check_license_files(msg: HeaderFields, names: set[str], dist_info: str, problems: _Problems) -> None:
    """Metadata >= 2.4 (PEP 639): every License-File is a member below .dist-info/licenses/."""
    try:
        if Version(msg.get("Metadata-Version", "")) < Version("2.4"):
            return
    except InvalidVersion:
        problems.add(f"METADATA Metadata-Version {msg.get('Metadata-Version')!r} is not a version")
        return
    for entry in msg.get_all("License-File") or []:
        if f"{dist_info}/licenses/{entry}" not in names:
            problems.add(f"METADATA License-File {entry!r}: no member {dist_info}/licenses/{entry} (PEP 639)")


def _check_metadata(data: bytes, name: str, version: str, problems: _Problems, names: set[str],
                    dist_info: str) -> None:
    try:
        msg = parse_metadata(data, "METADATA")
    except DynawheelError as exc:
        problems.add(str(exc))
        return
    if canonicalize_name(msg.get("Name", "")) != canonicalize_name(name):
        problems.add(f"METADATA Name {msg.get('Name')!r} does not match the file name's {name!r}")
    if (msg.get("Version") or "").strip().replace("-", "_") != version:
        problems.add(f"METADATA Version {msg.get('Version')!r} does not match the file name's {version!r}")
    _check_license_files(msg, names, dist_info, problems)


def _digest(zf: zipfile.ZipFile, name: str, algorithm: str) -> tuple[str, int]:
    h = hashlib.new(algorithm)
    size = 0
    with zf.open(name) as fp:
        while chunk := fp.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return encode_digest(h.digest(), algorithm), size


def _check_record(zf: zipfile.ZipFile, rows: list[RecordRow], names: list[str], dist_info: str,
                  problems: _Problems) -> None:
    by_path = {row.path: row for row in rows}
    for name in names:
        row = by_path.get(name)
        if row is None:
            if name.rsplit("/", 1)[-1] not in _UNLISTED or not name.startswith(dist_info + "/"):
                problems.add(f"{name!r} is not listed in RECORD")
            continue
        if not row.hash:
            if name != f"{dist_info}/RECORD":
                problems.add(f"RECORD has no hash for {name!r}")
            continue
        try:
            digest, size = _digest(zf, name, row.hash.split("=", 1)[0])
        except READ_ERRORS as exc:
            problems.add(f"cannot read member {name!r}: {exc}")
            continue
        if digest != row.hash:
            problems.add(f"RECORD hash mismatch for {name!r}: RECORD {row.hash}, member {digest}")
        if row.size is not None and row.size != size:
            problems.add(f"RECORD size mismatch for {name!r}: RECORD {row.size}, member {size}")
    for path in sorted(set(by_path) - set(names)):
        problems.add(f"RECORD lists {path!r}, which is not in the wheel")


def _installs(names: Iterable[str], dist_info: str, data_dir: str, name: str, problems: _Problems) -> Iterator[str]:
    for member in names:
        top, _, rest = member.partition("/")
        if top == dist_info:
            continue
        if top.endswith(".data") and rest:
            if top != data_dir:
                problems.add(f".data directory {top!r} should be named {data_dir!r}")
            scheme, _, sub = rest.partition("/")
            if scheme not in SCHEMES or not sub:
                problems.add(f"{member!r}: unknown .data scheme {scheme!r}; allowed: {', '.join(SCHEMES)}")
            elif scheme in ("purelib", "platlib"):
                yield f"site-packages/{sub}"
            elif scheme == "headers":
                yield f"headers/{canonicalize_name(name)}/{sub}"
            else:
                yield f"{scheme}/{sub}"
        else:
            yield f"site-packages/{member}"


def check_wheel(path: Path) -> WheelCheck:
    problems = _Problems()
    try:
        name, version, _build, tags = parse_filename(path.name)
    except DynawheelError as exc:
        return WheelCheck(path, (str(exc),))
    try:
        with open_zip(path) as zf:
            installs = _check_zip(zf, name, version, tags, problems)
    except DynawheelError as exc:
        return WheelCheck(path, (str(exc),))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        return WheelCheck(path, (f"not a valid zip file: {exc}",))
    return WheelCheck(path, tuple(problems), tuple(installs))


def _check_zip(zf: zipfile.ZipFile, name: str, version: str, tags: WheelTags, problems: _Problems) -> list[str]:
    names = _check_names(zf.namelist(), problems)
    found = find_dist_info(names, name, version)
    if found is None:
        problems.add(f"expected exactly one .dist-info directory {name}-{version}.dist-info (name and version "
                     f"compared normalized), found {dist_info_dirs(names)!r}")
        return []
    dist_info = found
    wheel_text = _read(zf, f"{dist_info}/WHEEL", MAX_WHEEL, problems)
    if wheel_text is not None:
        _check_wheel_file(wheel_text, tags, problems)
    meta_text = _read(zf, f"{dist_info}/METADATA", MAX_METADATA, problems)
    if meta_text is not None:
        _check_metadata(meta_text, name, version, problems, set(names), dist_info)
    record = _read(zf, f"{dist_info}/RECORD", MAX_RECORD, problems)
    if record is not None:
        try:
            _check_record(zf, parse_record(record, "RECORD"), names, dist_info, problems)
        except DynawheelError as exc:
            problems.add(str(exc))
    return list(_installs(names, dist_info, dist_info[: -len(".dist-info")] + ".data", name, problems))


def check_wheels(paths: Iterable[str | Path]) -> CheckReport:
    """Validate each wheel; report installed paths that two or more of them would write."""
    checks = tuple(check_wheel(Path(p)) for p in paths)
    owners: dict[str, list[str]] = defaultdict(list)
    for check in checks:
        for installed in set(check.installs):
            owners[installed].append(check.path.name)
    conflicts = tuple(Conflict(p, tuple(sorted(w))) for p, w in sorted(owners.items()) if len(w) > 1)
    return CheckReport(checks, conflicts)
