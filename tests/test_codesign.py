"""Ad-hoc code signing in Python, checked against what ld64.lld-14 itself writes."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from dynawheel.errors import HeaderSpaceError
from dynawheel.platforms.codesign import (
    CS_ADHOC,
    CS_LINKER_SIGNED,
    CSMAGIC_CODEDIRECTORY,
    CSMAGIC_EMBEDDED_SIGNATURE,
    identifiers,
    parse_code_directory,
    sign,
    sign_file,
    sign_slice,
    verify_signature,
)
from dynawheel.platforms.macho import LC_CODE_SIGNATURE, headers_of_bytes, segment

BIN = Path(__file__).resolve().parent.parent / "fixtures" / "macho" / "bin"
SIGNED = sorted(str(p.relative_to(BIN)) for p in BIN.rglob("*") if p.is_file() and p.parent.name != "fat")
OBJDUMP = shutil.which("llvm-objdump-14")


def signature_of(data: bytes, slice_index: int = 0) -> tuple[int, bytes]:
    """(dataoff, SuperBlob) of a slice."""
    _, headers = headers_of_bytes(data, "x")
    sl = headers[slice_index]
    (lc,) = sl.find(LC_CODE_SIGNATURE)
    dataoff, datasize = sl.unpack("II", lc.offset + 8)
    piece = data[sl.offset : sl.offset + sl.size]
    return dataoff, piece[dataoff : dataoff + datasize]


def objdump_ok(path: Path) -> None:
    if OBJDUMP is None:
        pytest.skip("llvm-objdump-14 not installed")
    proc = subprocess.run(
        [OBJDUMP, "--macho", "--all-headers", "--arch=all", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    assert "LC_CODE_SIGNATURE" in proc.stdout


@pytest.mark.parametrize("rel", SIGNED)
def test_lld_signatures_verify(rel: str) -> None:
    assert verify_signature((BIN / rel).read_bytes(), rel) == []


@pytest.mark.parametrize("rel", [*SIGNED, "fat/libuniversal.dylib", "fat/libhelper.dylib"])
def test_resigning_reproduces_the_linker_bytes(rel: str) -> None:
    """Same content + same identifier: our signature is byte-identical to lld's."""
    original = (BIN / rel).read_bytes()
    assert sign(original, rel) == original


def test_recompute_from_a_wiped_signature_matches_lld() -> None:
    original = (BIN / "pkg/_ext.cpython-311-darwin.so").read_bytes()
    dataoff, sig = signature_of(original)
    wiped = original[:dataoff] + bytes(len(sig))
    assert verify_signature(wiped) != []
    resigned = sign_slice(wiped, "_ext.cpython-311-darwin.so")
    assert resigned == original
    ours = parse_code_directory(signature_of(resigned)[1], "ours")
    lld = parse_code_directory(sig, "lld")
    assert ours.code_hashes == lld.code_hashes and len(ours.code_hashes) == -(-dataoff // 4096)
    assert ours.identifier == lld.identifier == "_ext.cpython-311-darwin.so"
    assert ours.flags == lld.flags == CS_ADHOC | CS_LINKER_SIGNED
    assert ours.code_limit == dataoff


def test_linker_signature_layout() -> None:
    data = (BIN / "libs/libhelper.dylib").read_bytes()
    dataoff, sig = signature_of(data)
    magic, length, count = struct.unpack_from(">III", sig)
    assert (magic, length, count) == (CSMAGIC_EMBEDDED_SIGNATURE, len(sig), 1)
    assert struct.unpack_from(">II", sig, 12) == (0, 24)  # CodeDirectory slot, offset
    assert struct.unpack_from(">I", sig, 24)[0] == CSMAGIC_CODEDIRECTORY
    cd = parse_code_directory(sig, "helper")
    assert (cd.page_shift, cd.hash_type, cd.hash_size, cd.n_special) == (12, 2, 32, 0)
    assert cd.n_code == -(-dataoff // 4096)
    assert cd.exec_seg == (0, 16384, 0)
    assert dataoff % 16 == 0


def test_executable_gets_main_binary_exec_seg_flag() -> None:
    data = (BIN / "exe/main").read_bytes()
    assert parse_code_directory(signature_of(data)[1], "main").exec_seg[2] == 1


def test_identifier_is_kept_or_replaced() -> None:
    data = (BIN / "libs/libhelper.dylib").read_bytes()
    assert identifiers(data) == ["libhelper.dylib"]
    renamed = sign(data, "libhelper.dylib", identifier="org.example.helper-with-a-long-name")
    assert identifiers(renamed) == ["org.example.helper-with-a-long-name"]
    assert verify_signature(renamed) == []
    assert len(renamed) != len(data)


def test_tampering_is_detected() -> None:
    data = bytearray((BIN / "pkg/_ext.cpython-311-darwin.so").read_bytes())
    data[16384 + 10] ^= 0xFF  # a byte in page 4 (the second 16 KiB segment)
    problems = verify_signature(bytes(data), "ext")
    assert problems == ["'ext' (arm64): page 4 hash mismatch"]


def test_code_limit_must_equal_signature_offset() -> None:
    data = bytearray((BIN / "libs/libhelper.dylib").read_bytes())
    dataoff, _ = signature_of(bytes(data))
    struct.pack_into(">I", data, dataoff + 24 + 32, dataoff - 16)  # CodeDirectory.codeLimit
    problems = verify_signature(bytes(data), "h")
    assert f"'h' (arm64): codeLimit {dataoff - 16} != signature offset {dataoff}" in problems


def _unsigned(data: bytes) -> bytes:
    """The same arm64 dylib without LC_CODE_SIGNATURE and without the signature."""
    _, (sl,) = headers_of_bytes(data, "x")
    (lc,) = sl.find(LC_CODE_SIGNATURE)
    assert lc.offset + lc.size == sl.cmds_end  # lld writes it last
    dataoff, _ = sl.unpack("II", lc.offset + 8)
    buf = bytearray(data[:dataoff])
    struct.pack_into("<II", buf, 16, len(sl.commands) - 1, sl.sizeofcmds - 16)
    buf[lc.offset : lc.offset + 16] = bytes(16)
    linkedit = next(c for c in sl.commands if c.cmd == 0x19 and segment(sl, c).name == "__LINKEDIT")
    seg = segment(sl, linkedit)
    struct.pack_into("<Q", buf, linkedit.offset + 32, dataoff - seg.fileoff)  # vmsize
    struct.pack_into("<Q", buf, linkedit.offset + 48, dataoff - seg.fileoff)  # filesize
    return bytes(buf)


def test_unsigned_arm64_gets_a_signature(tmp_path: Path) -> None:
    unsigned = _unsigned((BIN / "libs/libhelper.dylib").read_bytes())
    assert verify_signature(unsigned, "u") == ["'u' (arm64): arm64 slice is not signed"]
    signed = sign(unsigned, "libhelper.dylib")
    assert verify_signature(signed) == []
    out = tmp_path / "libhelper.dylib"
    out.write_bytes(signed)
    objdump_ok(out)
    # no LC_CODE_SIGNATURE and no room for one: refuse
    _, (sl,) = headers_of_bytes(unsigned, "u")
    assert sl.free_header_space() == 48


def test_no_room_for_lc_code_signature() -> None:
    unsigned = bytearray(_unsigned((BIN / "libs/libhelper.dylib").read_bytes()))
    _, (sl,) = headers_of_bytes(bytes(unsigned), "u")
    # claim 40 more bytes of (zero) load commands: only 8 bytes of padding left
    struct.pack_into("<I", unsigned, 20, sl.sizeofcmds + 40)
    with pytest.raises(HeaderSpaceError, match="need 16 bytes for LC_CODE_SIGNATURE, have 8"):
        sign(bytes(unsigned), "u")


def test_codesign_style_signature_with_requirements() -> None:
    data = (BIN / "libs/libhelper.dylib").read_bytes()
    signed = sign_slice(data, path="libhelper.dylib", linker_signed=False)
    assert verify_signature(signed) == []
    _, sig = signature_of(signed)
    cd = parse_code_directory(sig, "x")
    assert cd.flags == CS_ADHOC and cd.n_special == 2
    assert struct.unpack_from(">I", sig, 8)[0] == 2  # CodeDirectory + requirements
    # tamper with the requirements blob: the special slot catches it
    tampered = bytearray(signed)
    tampered[len(signed) - 1] ^= 1
    assert verify_signature(bytes(tampered), "t") == ["'t' (arm64): requirements hash (special slot -2) mismatch"]
    # the flavour of an existing signature is kept when re-signing
    again = sign_slice(signed, path="libhelper.dylib")
    assert again == signed


def test_fat_file_signs_only_arm64(tmp_path: Path) -> None:
    data = (BIN / "fat/libuniversal.dylib").read_bytes()
    signed = sign(data, "libuniversal.dylib", identifier="a-much-longer-identifier-than-before")
    assert verify_signature(signed) == []
    assert identifiers(signed) == [None, "a-much-longer-identifier-than-before"]
    _, (x86_old, _) = headers_of_bytes(data, "old")
    _, (x86_new, arm_new) = headers_of_bytes(signed, "new")
    assert (
        signed[x86_new.offset : x86_new.offset + x86_new.size] == (data[x86_old.offset : x86_old.offset + x86_old.size])
    )
    assert arm_new.offset % (1 << 14) == 0
    assert arm_new.offset + arm_new.size == len(signed)
    out = tmp_path / "u.dylib"
    out.write_bytes(signed)
    objdump_ok(out)


def test_sign_file_in_place(tmp_path: Path) -> None:
    target = tmp_path / "libhelper.dylib"
    data = bytearray((BIN / "libs/libhelper.dylib").read_bytes())
    data[100] ^= 0  # unchanged header byte, then break the signature
    dataoff, _ = signature_of(bytes(data))
    data[dataoff + 200] ^= 0xFF
    target.write_bytes(bytes(data))
    target.chmod(0o755)
    assert verify_signature(target.read_bytes()) != []
    sign_file(str(target))
    assert target.read_bytes() == (BIN / "libs/libhelper.dylib").read_bytes()
    assert target.stat().st_mode & 0o777 == 0o755


TOOLS = ("clang-14", "ld64.lld-14")


@pytest.mark.skipif(not all(shutil.which(t) for t in TOOLS), reason="clang-14 / lld-14 not installed")
@pytest.mark.parametrize("kind", ["-dylib", "-execute", "-bundle"])
def test_fresh_lld_output_matches_our_signature(tmp_path: Path, kind: str) -> None:
    """Link a multi-page arm64 image now; wipe lld's signature; ours is identical."""
    src = tmp_path / "big.c"
    table = ", ".join(str(i * 7919 % 65521) for i in range(12000))  # ~48 KiB of __TEXT data
    src.write_text(
        f"const unsigned table[] = {{{table}}};\n"
        "int main(void) { return (int)table[3]; }\n"
        "int lookup(int i) { return (int)table[i]; }\n"
    )
    obj = tmp_path / "big.o"
    subprocess.run(["clang-14", "--target=arm64-apple-macos11", "-O2", "-c", str(src), "-o", str(obj)], check=True)
    out = tmp_path / "libbig.out"
    tbd = BIN.parent / "src" / "libSystem.tbd"
    extra = ["-e", "_main"] if kind == "-execute" else []
    subprocess.run(
        ["ld64.lld-14", "-arch", "arm64", "-platform_version", "macos", "11.0", "11.0", kind, *extra,
         "-o", str(out), str(obj), str(tbd)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    original = out.read_bytes()
    dataoff, sig = signature_of(original)
    assert dataoff > 12 * 4096  # many pages
    wiped = original[:dataoff] + bytes(len(sig))
    ours = sign_slice(wiped, path=str(out))
    assert parse_code_directory(signature_of(ours)[1], "ours") == parse_code_directory(sig, "lld")
    assert ours == original
