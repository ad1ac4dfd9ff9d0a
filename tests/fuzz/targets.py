"""Fuzz targets: one function per input kind, fed arbitrary bytes, that may raise only the errors
dynawheel raises on purpose (:class:`dynawheel.DynawheelError`; for the upload parser also the
server's 4xx answers).  Anything else that escapes is a finding (see run.py).

Seeds are real inputs: the committed PE and Mach-O fixtures, ELF files built with gcc, and small
wheels built with dynawheel itself (pure, and with an extension that needs a library).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"


@dataclass(frozen=True)
class Kind:
    name: str
    run: Callable[[bytes, Path], None]  # (input, a fresh empty work directory)
    seeds: Callable[[Path], list[bytes]]  # (a directory for build products) -> seed inputs
    wheel: bool = False  # the input is a wheel: the structure-aware mutator applies
    leftovers: bool = True  # run.py looks for stray files in the work directory (a kind that checks exactly: no)


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


class _Internal(logging.Handler):
    """Keeps the exception the CLI logs as an internal error (exit 4), to raise it again here."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None and self.exc is None:
            self.exc = record.exc_info[1]


def cli(args: list[str], out: Path | None = None, codes: tuple[int, ...] = (0, 1, 3)) -> int:
    """Run the command line as a user would (in this process): an exit code of `codes`; on 1 exactly one
    `dynawheel: error:` line; never a traceback; on a failure nothing left in `out`.  An internal
    error (exit 4) is raised again, so the runner names where it came from.  Returns the exit code."""
    from dynawheel.cli import main

    handler = _Internal()
    logger = logging.getLogger("dynawheel")
    logger.addHandler(handler)
    err, std = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            code = main(["-q", *args])
    except SystemExit as exc:  # argparse: the command line is wrong (2); these command lines are valid
        raise AssertionError(f"{args[0]}: SystemExit({exc.code}) from {args}: {err.getvalue()[-500:]}") from None
    finally:
        logger.removeHandler(handler)
    if handler.exc is not None:
        raise handler.exc
    text = err.getvalue()
    if code not in codes:
        raise AssertionError(f"{args[0]}: exit {code} (expected one of {codes}): {text[-500:]}")
    if "Traceback" in text:
        raise AssertionError(f"{args[0]}: a traceback at the CLI: {text[-1000:]}")
    if code == 1 and sum(line.startswith("dynawheel: error:") for line in text.splitlines()) != 1:
        raise AssertionError(f"{args[0]}: exit 1 without exactly one error line: {text[-1000:]}")
    if code and out is not None and out.exists() and any(out.iterdir()):
        raise AssertionError(f"{args[0]}: exit {code} left {sorted(p.name for p in out.iterdir())} in the output "
                             "directory")
    return code


def _check(data: bytes, work: Path) -> None:
    from dynawheel.wheel.check import check_wheels

    path = _wheel_path(data, work)
    check_wheels([path])
    cli(["check", str(path)])


def _show(data: bytes, work: Path) -> None:
    cli(["show", str(_wheel_path(data, work)), "--no-system-paths", "--json", "-L", str(work.parent / "libs")])


def _repair(data: bytes, work: Path) -> None:
    libs = work.parent / "libs"  # seeds' libraries, when the runner made them
    out = work / "out"
    cli(["repair", str(_wheel_path(data, work)), "-w", str(out), "--no-system-paths", "-L", str(libs),
         "--allow-missing"], out)


def _module(*names: str) -> Any:
    """The first of these modules that exists (the publish modules moved in the redesign)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(names[-1])


def _index(data: bytes, work: Path) -> None:
    house = work / "house"
    house.mkdir()
    (house / "fuzz-1.0-py3-none-any.whl").write_bytes(data)
    (house / "other-1.0-py3-none-any.whl").write_bytes(_pure_wheel(work, "other"))
    cli(["index", str(house), "-o", str(work / "site")])  # the CLI runs build_index: exit 4 is raised again


def _upload(data: bytes, work: Path) -> None:
    """The serve request parser: the first line of the input is the Content-Type, the rest the body."""
    serve = _module("dynawheel.publish.serve", "dynawheel.serve")
    head, _, body = data.partition(b"\n")
    content_type = head.decode("latin-1")
    try:
        parts = serve.parse_multipart(body, content_type)
        content = parts["content"].data if "content" in parts else b""
        serve.check_upload_filename(parts["content"].filename if "content" in parts else None,
                                    serve._field(parts, "name"), serve._field(parts, "version"))
        if len(inspect.signature(serve.check_digests).parameters) == 3:  # (parts, sha256 hex, md5 hex)
            serve.check_digests(parts, hashlib.sha256(content).hexdigest(),
                                hashlib.md5(content, usedforsecurity=False).hexdigest())
        else:
            serve.check_digests(parts, content)
    except serve.HTTPError as exc:
        if not 400 <= exc.status < 500:
            raise AssertionError(f"upload parser answered {exc.status}") from exc


_SERVERS: dict[Path, Any] = {}


def _request(data: bytes, work: Path) -> None:
    """The serve HTTP/1.1 request parser on a byte stream (pipelined requests, each head then its body),
    and each GET/HEAD it yields answered by a real server object over a small wheelhouse (no socket I/O):
    a refused head must be a 4xx/5xx :class:`BadRequest` of the documented set, an answer never a 500."""
    from dynawheel.publish.wire import BadRequest, parse_head

    server = _SERVERS.get(work.parent)
    if server is None:
        from dynawheel.publish.serve import make_server

        house = work.parent / "request-house"
        house.mkdir(exist_ok=True)
        (house / "fuzz-1.0-py3-none-any.whl").write_bytes(_pure_wheel(work.parent))
        server = _SERVERS[work.parent] = make_server(house, "127.0.0.1", 0)
    buf = data
    for _ in range(64):
        try:
            request = parse_head(buf)
        except BadRequest as exc:
            if exc.status not in (400, 414, 417, 431, 505):
                raise AssertionError(f"parser refused with {exc.status}: {exc.message}") from exc
            return
        if request is None:
            return
        buf = buf[request.head_size + request.content_length:]
        reply = server.respond(request, "fuzz")
        if reply is not None and reply.file is not None:
            os.close(reply.file)
        if reply is not None and reply.status == 500:  # 501 (other methods), 503 (a file being written) are fine
            raise AssertionError(f"{request.request_line!r} answered {reply.status}: {reply.body[:300]!r}")


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
    from dynawheel.wheel.build import BuildOptions, build
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


def _request_seeds(tmp: Path) -> list[bytes]:
    pip = b"Accept: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
    get = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:8087\r\nUser-Agent: pip/24.0\r\n%s\r\nConnection: keep-alive\r\n\r\n"
    return [
        get % (b"/simple/fuzz/", pip) + get % (b"/fuzz-1.0-py3-none-any.whl.metadata", b"Accept: */*"),
        get % (b"/simple/", b"Accept: text/html") + get % (b"/simple/Fuzz/", b"If-None-Match: \"x\", W/\"y\""),
        b"HEAD /fuzz-1.0-py3-none-any.whl HTTP/1.0\r\n\r\nGET /%2e%2e/x?y=1 HTTP/1.1\r\nHost: h\r\n\r\n",
        b"POST /legacy/ HTTP/1.1\r\nHost: h\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 6\r\nExpect: 100-continue\r\n\r\n--b--\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
    ]


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
    Kind("cli", lambda data, work: _clicase().run_case(data, work), _wheel_seeds, wheel=True, leftovers=False),
    Kind("request", _request, _request_seeds),
)}


def _clicase() -> Any:
    from . import clicase  # it uses this module's helpers

    return clicase


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
