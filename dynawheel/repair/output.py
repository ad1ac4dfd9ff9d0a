"""Output: the files a repair adds (shim, manifest, METADATA's Requires-Dist), the entries of the
repaired wheel, and atomic writes into a directory."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .. import fsutil
from ..errors import OutputError, RepairError
from ..wheel.archive import Entry, Later, RawSource, is_executable
from ..wheel.layout import REPAIR_MANIFEST
from ..wheel.text import parse_metadata
from .plan import Job
from .shim import add_shim, pth_shim


def manifest(job: Job) -> bytes:
    doc = {
        "version": 1,
        "generator": "dynawheel",
        "vendored": [{"name": v.name, "path": v.dest, "requested_as": list(v.requests), "source": v.source,
                      "sha256": v.sha256, "needed_by": list(v.consumers)} for v in job.collection.vendored],
        "provided_by_other_wheels": [{"needed_by": d, "request": r, "path": p} for d, r, p in job.collection.provided],
        "requires": list(job.requires),
    }
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


def shim_files(job: Job, read: Callable[[str], bytes], dist: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for init, dirs in job.shim.init_files.items():
        try:
            text = read(init).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RepairError(f"cannot add the DLL shim to {init!r}: not UTF-8 ({exc.reason} at byte {exc.start})") \
                from None
        files[init] = add_shim(text, dirs, init, job.shim.preload.get(init, ())).encode("utf-8")
    if job.shim.pth_dirs or job.shim.pth_preload:
        files.update({k: v.encode() for k, v in pth_shim(dist, job.shim.pth_dirs, job.shim.pth_preload).items()})
    return files


def with_requires(text: bytes, requires: tuple[str, ...]) -> bytes:
    if not requires:
        return text
    msg = parse_metadata(text, "METADATA")
    have = {r.split(";")[0].replace(" ", "") for r in msg.get_all("Requires-Dist") or []}
    extra = [r for r in requires if r.replace(" ", "") not in have]
    head, sep, body = text.partition(b"\n\n")
    lines = b"".join(f"Requires-Dist: {r}\n".encode() for r in extra)
    return head.rstrip(b"\n") + b"\n" + lines.rstrip(b"\n") + (sep or b"\n") + body


def workdir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(out_dir)!r}: {exc.strerror}") from None
    return out_dir


def copy_atomic(src: Path, dest: Path) -> None:
    with fsutil.atomic_output(dest) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def wheel_entries(zf: zipfile.ZipFile, fp: BinaryIO, hashes: Mapping[str, str], edited: Mapping[str, Path],
                   extra: Mapping[str, bytes | Later], dist_info: str) -> list[Entry]:
    entries: list[Entry] = []
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or name == f"{dist_info}/RECORD" or name in edited or name in extra:
            continue
        executable = bool((info.external_attr >> 16) & 0o111)
        entries.append(Entry(name, RawSource(fp, info, hashes[name]), executable))
    entries += [Entry(rel, path, True) for rel, path in edited.items()]
    entries += [Entry(rel, data) for rel, data in extra.items()]
    return entries


@contextmanager
def output_dir(target: Path, out: Path | None, in_place: bool) -> Iterator[Path]:
    """A directory to write into; renamed to `out` when all went well."""
    if in_place:
        try:
            yield target
        except OSError as exc:
            raise OutputError(f"cannot write into {str(target)!r}: {exc.strerror or exc}") from None
        return
    assert out is not None
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"output directory {str(out)!r} exists and is not empty")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=workdir(out.parent)))
    except OSError as exc:
        raise OutputError(f"cannot write to {str(out.parent)!r}: {exc.strerror}") from None
    try:
        shutil.copytree(target, tmp, dirs_exist_ok=True, symlinks=False)
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def manifest_path(dest: Path, files: list[str]) -> Path:
    """Inside the stage's .dist-info when it has one; else at its root (build moves it into .dist-info)."""
    for name in files:
        top = name.split("/", 1)[0]
        if top.endswith(".dist-info"):
            return dest / top / REPAIR_MANIFEST
    return dest / REPAIR_MANIFEST


def replace_file(src: Path, dest: Path) -> None:
    """`dest` becomes a copy of `src` (executable unless `dest` was a non-executable file)."""
    mode = 0o755 if not dest.exists() or is_executable(dest) else 0o644
    with fsutil.atomic_output(dest, mode) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def write_file(dest: Path, data: bytes) -> None:
    fsutil.write_atomic(dest, data, mode=None)
