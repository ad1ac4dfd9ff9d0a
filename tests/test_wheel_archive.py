"""The writer's speed levers must not change what is written or checked: the deflate backend
(zlib-ng when installed and chosen, zlib otherwise or with --deflate zlib), the background RECORD
check of raw-copied members (inline for small wheels, threads for big ones), and
``before_commit`` (a failing check leaves no wheel and no new directory behind)."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dynawheel.errors import WheelFormatError
from dynawheel.wheel import verify, zipwriter
from dynawheel.wheel.archive import Entry, Later, Packer, write_wheel
from dynawheel.wheel.verify import RecordCheck
from dynawheel.wheel.zipwriter import ZipWriter, compressobj, deflate_backend

DT = (1980, 1, 1, 0, 0, 0)


def _payload(n: int) -> bytes:
    blocks = [os.urandom(4096) if i % 3 == 0 else bytes([i % 251]) * 4096 for i in range(n // 4096)]
    return b"".join(blocks)


@pytest.fixture(params=["zlib", "auto"])
def backend(request: pytest.FixtureRequest) -> str:
    """The caller's choice (the CLI's --deflate): the standard library's zlib, or the fastest one."""
    return str(request.param)


def test_backend_choice() -> None:
    assert deflate_backend("zlib")[0] == "zlib"
    try:
        import zlib_ng  # noqa: F401
    except ImportError:
        assert deflate_backend("auto")[0] == "zlib", "falls back cleanly without zlib-ng"
    else:
        assert deflate_backend("auto")[0] == "zlib-ng"


@pytest.mark.parametrize("level", [1, 6, 9])
def test_every_backend_writes_valid_deflate_independent_of_workers(backend: str, level: int) -> None:
    data = _payload(9 << 20)
    outputs = []
    for pool in (None, ThreadPoolExecutor(2)):
        buf = io.BytesIO()
        writer = ZipWriter(buf, level=level, executor=pool, backend=backend)
        writer.add_stream("big.bin", io.BytesIO(data), len(data), mode=0o644, date_time=DT)
        writer.close()
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
            assert zf.testzip() is None and zf.read("big.bin") == data
        outputs.append(buf.getvalue())
    assert outputs[0] == outputs[1]


def test_zlib_backend_gives_the_standard_library_bytes() -> None:
    data = _payload(1 << 20)
    comp = compressobj(6, backend="zlib")
    ref = zlib.compressobj(6, zlib.DEFLATED, -15)
    assert comp.compress(data) + comp.flush() == ref.compress(data) + ref.flush()


def test_level_1_is_not_worse_than_zlib_level_1(backend: str) -> None:
    data = b"".join(p.read_bytes() for p in sorted(Path(os.__file__).parent.glob("*.py"))[:80])
    comp = compressobj(1, backend=backend)
    ours = len(comp.compress(data) + comp.flush())
    assert ours <= len(zlib.compress(data, 1)) * 1.02


# ---- background RECORD check ---------------------------------------------------------------------

def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for i, (name, data) in enumerate(members.items()):
            zf.writestr(name, data, zipfile.ZIP_STORED if i % 2 else zipfile.ZIP_DEFLATED)
    return path


@pytest.mark.parametrize("inline_max", [0, 1 << 40], ids=["threads", "inline"])
def test_record_check_finds_a_wrong_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline_max: int) -> None:
    monkeypatch.setattr(verify, "INLINE_MAX", inline_max)
    members = {f"m{i}.bin": _payload((i + 1) * 40960) for i in range(6)}
    wheel = _zip(tmp_path / "x.whl", members)
    with zipfile.ZipFile(wheel) as zf:
        infos = zf.infolist()
    RecordCheck(wheel, [(i, _digest(members[i.filename])) for i in infos]).wait()
    bad = [(i, _digest(b"other" if i.filename == "m3.bin" else members[i.filename])) for i in infos]
    with pytest.raises(WheelFormatError, match=r"broken RECORD in 'x.whl': the hash of 'm3.bin' does not match"):
        RecordCheck(wheel, bad).wait()


def test_record_check_reports_corrupt_data(tmp_path: Path) -> None:
    members = {"a.bin": _payload(1 << 20)}
    wheel = _zip(tmp_path / "c.whl", members)
    with zipfile.ZipFile(wheel) as zf:
        info = zf.infolist()[0]
    raw = bytearray(wheel.read_bytes())
    start = info.header_offset + 30 + len(info.filename)
    raw[start + 100:start + 4000] = bytes(3900)
    wheel.write_bytes(bytes(raw))
    with pytest.raises(WheelFormatError, match=r"'a.bin'"):
        RecordCheck(wheel, [(info, _digest(members["a.bin"]))]).wait()


def test_failing_before_commit_leaves_nothing(tmp_path: Path) -> None:
    def refuse() -> None:
        raise WheelFormatError("no")

    out = tmp_path / "new" / "dir" / "x-1-py3-none-any.whl"
    with pytest.raises(WheelFormatError):
        write_wheel(out, [Entry("x/__init__.py", b"")], "x-1.dist-info", before_commit=refuse)
    assert list(tmp_path.iterdir()) == [], "no wheel, no temporary file, no directory created for it"
    write_wheel(out, [Entry("x/__init__.py", b"")], "x-1.dist-info", before_commit=lambda: None)
    assert out.exists()


def test_a_member_made_later_is_written_as_its_bytes_would_be(tmp_path: Path) -> None:
    """Later(get): get() runs when the writer reaches the member (after the members sorted before it); the
    wheel is byte for byte the one written from the bytes; a get() that raises leaves no wheel."""
    data = os.urandom(1 << 16) + b"sbom" * 4096
    order: list[str] = []

    def entries(sbom: bytes | Later) -> list[Entry]:
        return [Entry("x/big.bin", data), Entry("x-1.dist-info/sboms/s.json", sbom), Entry("x/__init__.py", b"")]

    def late() -> bytes:
        order.append("made")
        return data[:1000]

    plain, later = tmp_path / "a" / "x-1-py3-none-any.whl", tmp_path / "b" / "x-1-py3-none-any.whl"
    write_wheel(plain, entries(data[:1000]), "x-1.dist-info")
    write_wheel(later, entries(Later(late)), "x-1.dist-info", before_commit=lambda: order.append("committed"))
    assert later.read_bytes() == plain.read_bytes() and order == ["made", "committed"]

    def broken() -> bytes:
        raise WheelFormatError("no SBOM")

    failed = tmp_path / "c" / "x-1-py3-none-any.whl"
    with pytest.raises(WheelFormatError, match="no SBOM"):
        write_wheel(failed, entries(Later(broken)), "x-1.dist-info")
    assert not failed.parent.exists() or list(failed.parent.iterdir()) == []


def test_the_wheel_does_not_depend_on_what_was_compressed_ahead(tmp_path: Path) -> None:
    """More files handed to Packer.pack_soon, out of the writer's order, than the writer keeps in flight: every
    member is still compressed whole, as without them (it used to be streamed when its turn came first)."""
    files = []
    for i in range(40):
        files.append(tmp_path / f"f{i:02d}.bin")
        files[-1].write_bytes(os.urandom(2000) + bytes(i) * (3000 + 700 * i))
    entries = [Entry(f"x/{p.name}", p) for p in files]
    plain = write_wheel(tmp_path / "a" / "x-1-py3-none-any.whl", entries, "x-1.dist-info")
    with Packer() as packer:
        for path in files[::-2]:  # the last ones first: the writer reaches the others before them
            packer.pack_soon(path)
        ahead = write_wheel(tmp_path / "b" / "x-1-py3-none-any.whl", entries, "x-1.dist-info", packer=packer)
    assert ahead.read_bytes() == plain.read_bytes()


def test_chunk_constants_unchanged() -> None:
    """The chunk size is part of the output bytes (dictionary priming): changing it changes wheels."""
    assert zipwriter.CHUNK == 1 << 20 and zipwriter.WINDOW == 32768


# ---- CLI start-up ------------------------------------------------------------------------------

def test_cli_imports_only_the_command_it_runs() -> None:
    import subprocess
    import sys

    code = ("import sys; from dynawheel.cli import _parser; _parser(['-v', 'repair', 'x.whl']); "
            "print(sorted(m for m in ('dynawheel.publish.serve', 'dynawheel.publish.index', 'dynawheel.wheel.build')"
            " if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"
    helptext = subprocess.run([sys.executable, "-m", "dynawheel", "--help"], capture_output=True, text=True).stdout
    for command in ("build", "check", "show", "repair", "index", "serve"):
        assert f"    {command} " in helptext, command


def test_retag_keeps_tag_lines_in_the_wheel_header() -> None:
    """setuptools ends WHEEL with a blank line (torch's does): new Tag lines must stay above it."""
    from dynawheel.repair.retag import wheel_text
    from dynawheel.wheel.tags import parse_filename

    tags = parse_filename("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl")[3]
    text = b"Wheel-Version: 1.0\nGenerator: setuptools (81.0.0)\nRoot-Is-Purelib: false\nTag: old\n\n"
    out = wheel_text(text, tags).decode()
    assert out == ("Wheel-Version: 1.0\nGenerator: setuptools (81.0.0)\nRoot-Is-Purelib: false\n"
                   "Tag: cp311-cp311-manylinux_2_28_x86_64\n")


def test_record_check_of_a_highly_compressible_member(tmp_path: Path) -> None:
    """64 MiB of zeros deflate to ~64 KiB: inflated in bounded pieces, hashed right."""
    members = {"zeros.bin": bytes(64 << 20), "small.txt": b"x\n"}
    wheel = _zip(tmp_path / "z.whl", members)
    with zipfile.ZipFile(wheel) as zf:
        infos = zf.infolist()
    RecordCheck(wheel, [(i, _digest(members[i.filename])) for i in infos]).wait()


@pytest.mark.parametrize("size", [10, 5 << 30], ids=["plain", "zip64"])
def test_raw_copy_header_is_what_start_and_finish_write(size: int) -> None:
    """add_raw writes the local header complete in one go: the same bytes as the seek-back path."""
    data = b"0123456789"
    one, two = io.BytesIO(), io.BytesIO()
    ZipWriter(one).add_raw("m.bin", io.BytesIO(data), 0, method=0, crc=123, compressed=len(data), size=size,
                           mode=0o644, date_time=DT)
    writer = ZipWriter(two)
    zip64 = size >= 0xFFFFFFFF
    offset, raw = writer._start("m.bin", 0, zip64, zipwriter.dos_time(DT))
    two.write(data)
    writer._finish(offset, raw, zip64, 123, len(data), size)
    assert one.getvalue() == two.getvalue()
