"""Fuzz targets: one function per input kind, fed arbitrary bytes, that may raise only the errors
dynawheel raises on purpose (:class:`dynawheel.DynawheelError`; for the upload parser also the
server's 4xx answers).  Anything else that escapes is a finding (see run.py).

Seeds are real inputs: the committed PE and Mach-O fixtures, ELF files built with gcc, and small
wheels built with dynawheel itself (pure, and with an extension that needs a library).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


@dataclass(frozen=True)
class Kind:
    name: str
    run: Callable[[bytes, Path], None]  # (input, a fresh empty work directory)
    seeds: Callable[[Path], list[bytes]]  # (a directory for build products) -> seed inputs
    wheel: bool = False  # the input is a wheel: the structure-aware mutator applies


# ---------------------------------------------------------------- allowed outcomes


def allowed() -> tuple[type[BaseException], ...]:
    from dynawheel.errors import DynawheelError

    return (DynawheelError,)


# ---------------------------------------------------------------- targets


def _parse_binary(data: bytes, work: Path) -> None:
    from dynawheel.platforms import backend_for

    backend = backend_for(data[:8])
    if backend is None:
        return
    backend.parse(io.BytesIO(data), "fuzz/input")


def _parse_binary_file(data: bytes, work: Path) -> None:
    """Through a real file too: the readers map or seek files differently from buffers."""
    _parse_binary(data, work)
    path = work / "input.bin"
    path.write_bytes(data)
    from dynawheel.platforms import backend_for

    backend = backend_for(data[:8])
    if backend is not None:
        with open(path, "rb") as fp:
            backend.parse(fp, str(path))


def _wheel_path(data: bytes, work: Path) -> Path:
    path = work / "fuzz-1.0-cp311-cp311-linux_x86_64.whl"
    path.write_bytes(data)
    return path


def _zip(data: bytes, work: Path) -> None:
    from dynawheel.tree import WheelTree

    tree = WheelTree(_wheel_path(data, work))
    try:
        for rel in tree.files():
            tree.head(rel, 64)
            with tree.open(rel) as fp:
                fp.read()
    finally:
        tree.close()


def _text(data: bytes, work: Path) -> None:
    """METADATA, WHEEL and RECORD parsing, each on the same bytes."""
    from dynawheel.wheel import text

    text.parse_record(data, "fuzz RECORD")
    text.parse_metadata(data, "fuzz METADATA")
    text.parse_wheel_file(data, "fuzz WHEEL")


def _check(data: bytes, work: Path) -> None:
    from dynawheel.wheel.check import check_wheels

    check_wheels([_wheel_path(data, work)])


def _show(data: bytes, work: Path) -> None:
    from dynawheel.audit import audit
    from dynawheel.search import SearchPaths

    audit(_wheel_path(data, work), SearchPaths(use_system=False, extra=(str(work / "libs"),)))


def _repair(data: bytes, work: Path) -> None:
    from dynawheel.collect import Choices
    from dynawheel.repair import RepairOptions, repair_wheel
    from dynawheel.search import SearchPaths

    libs = work.parent / "libs"  # seeds' libraries, when the runner made them
    out = work / "out"
    opts = RepairOptions(choices=Choices(allow_missing=True), search=SearchPaths(use_system=False, extra=(str(libs),)),
                         compression_level=1)
    repair_wheel(_wheel_path(data, work), out, opts)


def _index(data: bytes, work: Path) -> None:
    from dynawheel.index import build_index

    house = work / "house"
    house.mkdir()
    (house / "fuzz-1.0-py3-none-any.whl").write_bytes(data)
    (house / "other-1.0-py3-none-any.whl").write_bytes(_pure_wheel(work, "other"))
    build_index(house, work / "site")


def _upload(data: bytes, work: Path) -> None:
    """The serve request parser: the first line of the input is the Content-Type, the rest the body."""
    from dynawheel import serve

    head, _, body = data.partition(b"\n")
    content_type = head.decode("latin-1")
    try:
        parts = serve.parse_multipart(body, content_type)
        content = parts["content"].data if "content" in parts else b""
        serve.check_upload_filename(parts["content"].filename if "content" in parts else None,
                                    serve._field(parts, "name"), serve._field(parts, "version"))
        serve.check_digests(parts, content)
    except serve.HTTPError as exc:
        if not 400 <= exc.status < 500:
            raise AssertionError(f"upload parser answered {exc.status}") from exc


# ---------------------------------------------------------------- seeds


def _files(*globs: str) -> list[bytes]:
    out = []
    for pattern in globs:
        for path in sorted(FIXTURES.glob(pattern)):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 1 << 20:
                out.append(path.read_bytes())
    return out


def _gcc(tmp: Path) -> list[Path]:
    """Small ELF files built here: a library, an extension needing it, an executable."""
    if shutil.which("gcc") is None:
        return []
    sys.path.insert(0, str(ROOT))
    from tests import elfbuild

    libs = tmp / "libs"
    lib = elfbuild.shared_lib(libs / "libfuzzdep.so", soname="libfuzzdep.so")
    ext = elfbuild.extension(tmp / "stage" / "fuzzpkg", "_ext", needs=[lib], runpath=["/nonexistent"])
    exe = elfbuild.executable(tmp / "exe" / "prog", needs=[lib])
    for src in libs.glob("*.c"):
        src.unlink()
    subprocess.run(["strip", "-s", str(exe)], check=False)
    return [lib, ext, exe]


def _elf_seeds(tmp: Path) -> list[bytes]:
    return [p.read_bytes() for p in _gcc(tmp)]


def _pure_wheel(tmp: Path, name: str = "fuzz", extra: dict[str, bytes] | None = None) -> bytes:
    """A real wheel built by dynawheel from a staged tree (cached per name: index builds one per case)."""
    cache = _PURE.get((name, tuple(sorted(extra or {}))))
    if cache is not None:
        return cache
    from dynawheel.build import BuildOptions, build
    from dynawheel.wheel.metadata import MetadataOptions
    from dynawheel.wheel.tags import make_tags

    with tempfile.TemporaryDirectory(dir=tmp) as d:
        stage = Path(d) / "stage"
        (stage / name).mkdir(parents=True)
        (stage / name / "__init__.py").write_text("VALUE = 1\n")
        for rel, content in (extra or {}).items():
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            (stage / rel).write_bytes(content)
        tags = make_tags("py3", "none", "any") if not extra else make_tags("cp311", "cp311", "linux_x86_64")
        result = build(BuildOptions(stage=stage, metadata=MetadataOptions(name=name, version="1.0",
                                                                           requires=("dep>=1",)), tags=tags),
                       Path(d) / "dist")
        data = result.path.read_bytes()
    _PURE[(name, tuple(sorted(extra or {})))] = data
    return data


_PURE: dict[tuple[str, tuple[str, ...]], bytes] = {}


def _wheel_seeds(tmp: Path) -> list[bytes]:
    seeds = [_pure_wheel(tmp)]
    built = _gcc(tmp)
    if built:
        seeds.append(_pure_wheel(tmp, "fuzz", {"fuzz/_ext.so": built[1].read_bytes()}))
    pe = FIXTURES / "pe" / "bin" / "ext.pyd"
    if pe.is_file():
        seeds.append(_pure_wheel(tmp, "fuzz", {"fuzz/ext.pyd": pe.read_bytes(),
                                               "fuzz/liba.dll": (FIXTURES / "pe/bin/liba.dll").read_bytes()}))
    macho = sorted((FIXTURES / "macho" / "bin" / "pkg").rglob("*.so"))
    if macho:
        seeds.append(_pure_wheel(tmp, "fuzz", {"fuzz/_m.so": macho[0].read_bytes()}))
    return seeds


def _text_seeds(tmp: Path) -> list[bytes]:
    out = []
    with zipfile.ZipFile(io.BytesIO(_pure_wheel(tmp))) as zf:
        for name in zf.namelist():
            if name.endswith(("/METADATA", "/WHEEL", "/RECORD")):
                out.append(zf.read(name))
    return out


def _upload_seeds(tmp: Path) -> list[bytes]:
    wheel = _pure_wheel(tmp)
    boundary = b"fuzzBoundary"

    def field(name: str, value: bytes, filename: str | None = None) -> bytes:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        return b"--" + boundary + b"\r\nContent-Disposition: " + disp.encode() + b"\r\n\r\n" + value + b"\r\n"

    body = (field(":action", b"file_upload") + field("name", b"fuzz") + field("version", b"1.0")
            + field("sha256_digest", hashlib.sha256(wheel).hexdigest().encode())
            + field("content", wheel, "fuzz-1.0-py3-none-any.whl") + b"--" + boundary + b"--\r\n")
    return [b"multipart/form-data; boundary=" + boundary + b"\n" + body]


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("elf", _parse_binary_file, _elf_seeds),
    Kind("pe", _parse_binary_file, lambda tmp: _files("pe/bin/*", "pe/bin/*/*", "pe/bad/*")),
    Kind("macho", _parse_binary_file, lambda tmp: _files("macho/bin/*", "macho/bin/*/*", "macho/bad/*")),
    Kind("zip", _zip, _wheel_seeds, wheel=True),
    Kind("text", _text, _text_seeds),
    Kind("check", _check, _wheel_seeds, wheel=True),
    Kind("show", _show, _wheel_seeds, wheel=True),
    Kind("repair", _repair, _wheel_seeds, wheel=True),
    Kind("index", _index, _wheel_seeds, wheel=True),
    Kind("upload", _upload, _upload_seeds),
)}


def fresh_dir(base: Path) -> Path:
    """An empty work directory for one case (the previous case's is removed)."""
    work = base / "case"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir()
    return work


def host_files_written(before: set[str], base: Path) -> list[str]:
    """Files that appeared in the base directory's parent: a case wrote outside its work dir."""
    now = set(os.listdir(base.parent))
    return sorted(now - before)


if __name__ == "__main__":  # pragma: no cover
    print(", ".join(KINDS), file=sys.stderr)
