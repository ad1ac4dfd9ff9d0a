"""Turn collected files + metadata + tags into a wheel: .dist-info, .data schemes, RECORD."""

from __future__ import annotations

import email.parser
import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import StageError
from .archive import Entry, Packer, is_executable, write_wheel
from .layout import REPAIR_LICENSES, REPAIR_MANIFEST, REPAIR_SBOM
from .metadata import ProjectMetadata
from .record import encode_digest, parse_record
from .tags import WheelTags, filename_component, parse_tags, version_component, wheel_filename
from .text import with_license_files

log = logging.getLogger(__name__)

SCHEMES = ("purelib", "platlib", "headers", "scripts", "data")
_DROP_FROM_DIST_INFO = ("RECORD", "WHEEL", "INSTALLER", "REQUESTED", "direct_url.json", "RECORD.jws", "RECORD.p7s")
_PY_SHEBANG = re.compile(rb"^#!.*\bpython[0-9.]*w?(?P<args>[ \t].*)?$")


@dataclass(frozen=True)
class WheelSpec:
    meta: ProjectMetadata
    tags: WheelTags
    root_is_purelib: bool
    build: str | None = None
    compression_level: int = 6
    deflate: str = "auto"  # 'auto' (zlib-ng when installed), 'zlib' or 'zlib-ng'


@dataclass
class Assembly:
    """Files split into payload, .data and an existing .dist-info, plus notes for the user."""

    entries: list[Entry] = field(default_factory=list)
    dist_info_files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    license_files: list[str] = field(default_factory=list)  # License-File entries a repair left in the stage


def dist_info_name(meta: ProjectMetadata) -> str:
    return f"{filename_component(meta.name)}-{version_component(meta.version)}.dist-info"


def data_dir_name(meta: ProjectMetadata) -> str:
    return f"{filename_component(meta.name)}-{version_component(meta.version)}.data"


def top_dirs(files: Mapping[str, Path], suffix: str) -> list[str]:
    return sorted({name.split("/", 1)[0] for name in files if "/" in name and name.split("/", 1)[0].endswith(suffix)})


def existing_dist_info(files: Mapping[str, Path]) -> str | None:
    found = top_dirs(files, ".dist-info")
    if len(found) > 1:
        raise StageError(f"the stage holds {len(found)} .dist-info directories {found!r}; a wheel has one")
    return found[0] if found else None


def read_existing_metadata(files: Mapping[str, Path]) -> tuple[str, str] | None:
    """(METADATA text, where) from an existing .dist-info in the stage."""
    top = existing_dist_info(files)
    if top and f"{top}/METADATA" in files:
        path = files[f"{top}/METADATA"]
        return path.read_text(encoding="utf-8"), str(path)
    return None


def existing_wheel_file(files: Mapping[str, Path]) -> tuple[WheelTags | None, bool | None]:
    """Tags and Root-Is-Purelib of a WHEEL file in the stage's .dist-info, if any."""
    top = existing_dist_info(files)
    if not top or f"{top}/WHEEL" not in files:
        return None, None
    msg = email.parser.Parser().parsestr(files[f"{top}/WHEEL"].read_text(encoding="utf-8"))
    tags = [parse_tags(t) for t in msg.get_all("Tag") or []]
    purelib = msg.get("Root-Is-Purelib")
    merged = _merge_tags(tags) if tags else None
    return merged, None if purelib is None else purelib.strip().lower() == "true"


def _merge_tags(tags: list[WheelTags]) -> WheelTags:
    def join(values: set[str]) -> str:
        return ".".join(sorted(values))

    return WheelTags(join({t.python for t in tags}), join({t.abi for t in tags}), join({t.platform for t in tags}))


def _check_record(files: Mapping[str, Path], top: str) -> None:
    """A RECORD in the stage must agree with the files it lists."""
    rows = parse_record(files[f"{top}/RECORD"].read_bytes(), f"{top}/RECORD in the stage")
    for row in rows:
        if not row.hash or row.path.startswith(top + "/"):
            continue
        source = files.get(row.path)
        if source is None:
            raise StageError(f"RECORD in the stage lists {row.path!r}, which is not in the stage")
        digest = encode_digest(hashlib.sha256(source.read_bytes()).digest())
        if row.hash.startswith("sha256=") and digest != row.hash:
            raise StageError(f"RECORD in the stage disagrees for {row.path!r}: {row.hash} != file's {digest}")


def split_files(files: Mapping[str, Path], spec: WheelSpec, out: Assembly) -> None:
    """Sort stage files into payload entries, .data entries and .dist-info files."""
    top = existing_dist_info(files)
    if top and f"{top}/RECORD" in files:
        _check_record(files, top)
    data_dirs = top_dirs(files, ".data")
    if len(data_dirs) > 1:
        raise StageError(f"the stage holds {len(data_dirs)} .data directories {data_dirs!r}; a wheel has one")
    want = data_dir_name(spec.meta)
    if data_dirs and data_dirs[0] != want:
        out.notes.append(f"packed {data_dirs[0]}/ as {want}/ (the name of distribution {spec.meta.name!r})")
    for name, source in sorted(files.items()):
        head = name.split("/", 1)[0]
        if name == REPAIR_MANIFEST:  # left at the stage root by `dynawheel repair`
            out.dist_info_files[name] = source
        elif name == REPAIR_SBOM:
            out.dist_info_files[f"sboms/{name}"] = source
        elif name.startswith(REPAIR_LICENSES):
            out.dist_info_files[f"licenses/{name[len(REPAIR_LICENSES):]}"] = source
            out.license_files.append(name[len(REPAIR_LICENSES):])
        elif head == top:
            _dist_info_member(name[len(head) + 1:], source, out)
        elif data_dirs and head == data_dirs[0]:
            out.entries.append(_data_entry(name[len(head) + 1:], source, want, out))
        else:
            out.entries.append(Entry(name, source, is_executable(source)))


def _dist_info_member(rel: str, source: Path, out: Assembly) -> None:
    if rel in _DROP_FROM_DIST_INFO:
        if rel not in ("RECORD", "WHEEL"):
            out.notes.append(f"left out .dist-info/{rel}: installers write it, wheels do not carry it")
        return
    out.dist_info_files[rel] = source


def _data_entry(rel: str, source: Path, data_dir: str, out: Assembly) -> Entry:
    scheme, _, rest = rel.partition("/")
    if scheme not in SCHEMES or not rest:
        raise StageError(
            f"{data_dir}/{rel!s}: unknown .data scheme {scheme!r}; allowed: {', '.join(SCHEMES)}"
        )
    if scheme != "scripts":
        return Entry(f"{data_dir}/{rel}", source, is_executable(source))
    return _script_entry(f"{data_dir}/{rel}", source, out)


def _script_entry(arcname: str, source: Path, out: Assembly) -> Entry:
    with source.open("rb") as fp:
        first = fp.readline(4096)
    match = _PY_SHEBANG.match(first.rstrip(b"\r\n"))
    if not match or first.startswith(b"#!python"):
        return Entry(arcname, source, True)
    args = match.group("args") or b""
    out.notes.append(f"{arcname}: shebang {first.strip().decode(errors='replace')!r} -> '#!python' "
                     "(installers point it at the target interpreter)")
    return Entry(arcname, b"#!python" + args + b"\n" + source.read_bytes()[len(first):], True)


def wheel_file_text(spec: WheelSpec) -> bytes:
    lines = [
        "Wheel-Version: 1.0",
        f"Generator: dynawheel {__version__}",
        f"Root-Is-Purelib: {'true' if spec.root_is_purelib else 'false'}",
        *(f"Tag: {tag}" for tag in spec.tags.expanded_text()),
    ]
    if spec.build:
        lines.append(f"Build: {spec.build}")
    return ("\n".join(lines) + "\n").encode("ascii")


def assemble(files: Mapping[str, Path], spec: WheelSpec, out_dir: Path,
             packer: Packer | None = None) -> tuple[Path, list[str]]:
    """Write the wheel into `out_dir`; return its path and notes for the user.  `packer`: one that has
    been compressing files of the stage already (its level and backend are the spec's)."""
    out = Assembly()
    split_files(files, spec, out)
    if not out.entries and not spec.meta.requires_dist:
        raise StageError("nothing to install: the stage has no files and the metadata no Requires-Dist")
    dist_info = dist_info_name(spec.meta)
    metadata = with_license_files(spec.meta.metadata, out.license_files) if out.license_files else spec.meta.metadata
    generated: dict[str, bytes] = {"METADATA": metadata, "WHEEL": wheel_file_text(spec)}
    if spec.meta.entry_points is not None:
        generated["entry_points.txt"] = spec.meta.entry_points
    for rel, source in out.dist_info_files.items():
        if rel in generated:
            continue
        out.entries.append(Entry(f"{dist_info}/{rel}", source, False))
    for rel, source in spec.meta.license_files:
        out.entries.append(Entry(f"{dist_info}/licenses/{rel}", source, False))
    out.entries.extend(Entry(f"{dist_info}/{rel}", data) for rel, data in generated.items())
    name = wheel_filename(spec.meta.name, spec.meta.version, spec.tags, spec.build)
    path = write_wheel(out_dir / name, out.entries, dist_info, compression_level=spec.compression_level,
                       deflate=spec.deflate, packer=packer)
    return path, out.notes
