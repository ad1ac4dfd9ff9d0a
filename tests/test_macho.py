"""Mach-O reader and dyld search rules, on the committed fixtures (fixtures/macho)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from dynawheel.binary import BinaryFile, BinaryFormat, Dependency, DepKind, FileKind
from dynawheel.errors import BinaryFormatError
from dynawheel.platforms import Loaded
from dynawheel.platforms.macho import BACKEND, system_prefixes
from dynawheel.search import SearchPaths

MACHO = Path(__file__).resolve().parent.parent / "fixtures" / "macho"
BIN = MACHO / "bin"
BAD = MACHO / "bad"
SYSTEM = ("/usr/lib/libSystem.B.dylib", DepKind.NEEDED)
HERMETIC = SearchPaths(use_system=False)


def parse(path: Path) -> BinaryFile:
    with path.open("rb") as fp:
        return BACKEND.parse(fp, str(path))


def loaded(rel: str) -> Loaded:
    path = BIN / rel
    (image,) = parse(path).images
    return Loaded(str(path), image)


def candidates(name: str, chain: list[Loaded], search: SearchPaths = HERMETIC) -> list[str]:
    return [c.path for c in BACKEND.candidates(Dependency(name), chain, search)]


def first_hit(name: str, chain: list[Loaded], search: SearchPaths = HERMETIC) -> str | None:
    return next((p for p in candidates(name, chain, search) if os.path.isfile(p)), None)


# ---------------------------------------------------------------- facts of every fixture

# path -> per slice: (arch, kind, soname, rpaths, needed, min_macos, signed)
EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "libs/libhelper.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libhelper.dylib", (), [SYSTEM], "11.0", True)
    ],
    "pkg/_ext.cpython-311-darwin.so": [
        ("arm64", FileKind.BUNDLE, None, ("@loader_path/../libs",),
         [("@rpath/libhelper.dylib", DepKind.NEEDED), SYSTEM], "11.0", True)
    ],
    "chain/libchain_a.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libchain_a.dylib", ("@loader_path/bdir", "@loader_path/cdir"),
         [("@rpath/libchain_b.dylib", DepKind.NEEDED), SYSTEM], "11.0", True)
    ],
    "chain/bdir/libchain_b.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libchain_b.dylib", ("@loader_path/nowhere",),
         [("@rpath/libchain_c.dylib", DepKind.NEEDED), SYSTEM], "11.0", True)
    ],
    "chain/cdir/libchain_c.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libchain_c.dylib", (), [SYSTEM], "11.0", True)
    ],
    "weak/libuseweak.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libuseweak.dylib", (),
         [("@loader_path/libweak.dylib", DepKind.WEAK), SYSTEM], "11.0", True)
    ],
    "weak/libweak.dylib": [
        ("arm64", FileKind.SHARED, "@loader_path/libweak.dylib", (), [SYSTEM], "11.0", True)
    ],
    # lld 14 writes the re-exported library twice: LC_LOAD_DYLIB and LC_REEXPORT_DYLIB
    "reexport/libumbrella.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libumbrella.dylib", (),
         [("@loader_path/libinner.dylib", DepKind.NEEDED),
          ("@loader_path/libinner.dylib", DepKind.REEXPORT), SYSTEM], "11.0", True)
    ],
    "reexport/libinner.dylib": [
        ("arm64", FileKind.SHARED, "@loader_path/libinner.dylib", (), [SYSTEM], "11.0", True)
    ],
    "fat/libuniversal.dylib": [
        ("x86_64", FileKind.SHARED, "@rpath/libuniversal.dylib", ("@loader_path",),
         [("@rpath/libhelper.dylib", DepKind.NEEDED), SYSTEM], "10.9", False),
        ("arm64", FileKind.SHARED, "@rpath/libuniversal.dylib", ("@loader_path",),
         [("@rpath/libhelper.dylib", DepKind.NEEDED), SYSTEM], "11.0", True),
    ],
    "fat/libhelper.dylib": [
        ("x86_64", FileKind.SHARED, "@rpath/libhelper.dylib", (), [SYSTEM], "10.9", False),
        ("arm64", FileKind.SHARED, "@rpath/libhelper.dylib", (), [SYSTEM], "11.0", True),
    ],
    "header/libtight.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libtight.dylib", ("@loader_path/../libs",),
         [("@rpath/libhelper.dylib", DepKind.NEEDED), SYSTEM], "11.0", True)
    ],
    "header/libroomy.dylib": [
        ("arm64", FileKind.SHARED, "@rpath/libroomy.dylib", ("@loader_path/../libs",),
         [("@rpath/libhelper.dylib", DepKind.NEEDED), SYSTEM], "11.0", True)
    ],
    "exe/main": [
        ("arm64", FileKind.EXECUTABLE, None, (),
         [("@executable_path/../libs/libhelper.dylib", DepKind.NEEDED), SYSTEM], "11.0", True)
    ],
}  # fmt: skip


def all_fixtures() -> list[str]:
    return sorted(str(p.relative_to(BIN)) for p in BIN.rglob("*") if p.is_file())


def test_every_fixture_is_listed() -> None:
    assert all_fixtures() == sorted(EXPECTED)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_reader_facts(rel: str) -> None:
    binary = parse(BIN / rel)
    assert binary.format is BinaryFormat.MACHO
    assert binary.fat is (len(EXPECTED[rel]) > 1)
    got = [
        (
            im.arch, im.kind, im.soname, im.rpaths, [(d.name, d.kind) for d in im.needed],
            im.macho.min_macos, im.macho.code_signature,
        )
        for im in binary.images
    ]  # fmt: skip
    assert got == EXPECTED[rel]
    for image in binary.images:
        assert image.format is BinaryFormat.MACHO
        assert json.loads(json.dumps(dict(image.details))) == dict(image.details)


def test_details_of_the_fat_file() -> None:
    x86, arm = parse(BIN / "fat/libuniversal.dylib").images
    # x86_64 at 10.9 carries LC_VERSION_MIN_MACOSX, arm64 LC_BUILD_VERSION
    assert (x86.macho.platform, x86.macho.sdk) == ("macos", "10.9")
    assert (arm.macho.platform, arm.macho.sdk) == ("macos", "11.0")
    assert (x86.macho.filetype, arm.macho.filetype) == ("MH_DYLIB", "MH_DYLIB")
    assert x86.macho.slice_offset == 4096
    assert arm.macho.slice_offset == 32768  # 2^14 alignment of arm64 slices
    assert x86.macho.cputype == 0x01000007 and arm.macho.cputype == 0x0100000C


def test_free_header_space() -> None:
    (tight,) = parse(BIN / "header/libtight.dylib").images
    (roomy,) = parse(BIN / "header/libroomy.dylib").images
    assert tight.macho.free_header_space == 32  # lld's default padding
    assert roomy.macho.free_header_space == 3072


def _macholib_facts(path: Path) -> list[tuple[Any, ...]]:
    from macholib.mach_o import (
        LC_ID_DYLIB,
        LC_LOAD_DYLIB,
        LC_LOAD_WEAK_DYLIB,
        LC_REEXPORT_DYLIB,
        LC_RPATH,
    )
    from macholib.MachO import MachO

    dylib_cmds = (LC_LOAD_DYLIB, LC_LOAD_WEAK_DYLIB, LC_REEXPORT_DYLIB)
    with contextlib.redirect_stdout(io.StringIO()):
        macho = MachO(str(path))
    facts = []
    for header in macho.headers:
        names, rpaths, ident = [], [], None
        for lc, _cmd, data in header.commands:
            text = data.rstrip(b"\0").decode() if isinstance(data, bytes) else None
            if lc.cmd in dylib_cmds:
                names.append(text)
            elif lc.cmd == LC_RPATH:
                rpaths.append(text)
            elif lc.cmd == LC_ID_DYLIB:
                ident = text
        facts.append((names, tuple(rpaths), ident, header.low_offset - header.total_size))
    return facts


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_reader_agrees_with_macholib(rel: str) -> None:
    """An independent reader sees the same names, rpaths, ids and free header space."""
    ours = [
        ([d.name for d in im.needed], im.rpaths, im.soname, im.macho.free_header_space)
        for im in parse(BIN / rel).images
    ]
    assert ours == _macholib_facts(BIN / rel)


class CountingReader(io.BufferedReader):
    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def test_fat_rpath_resolves_per_slice() -> None:
    """Both slices of libuniversal find the universal libhelper beside it (@rpath -> @loader_path)."""
    binary = parse(BIN / "fat/libuniversal.dylib")
    helper = parse(BIN / "fat/libhelper.dylib")
    for image in binary.images:
        chain = [Loaded(str(BIN / "fat/libuniversal.dylib"), image)]
        assert first_hit("@rpath/libhelper.dylib", chain) == str(BIN / "fat/libhelper.dylib")
        assert helper.image_for(image.arch) is not None
    assert parse(BIN / "libs/libhelper.dylib").image_for("x86_64") is None  # arm64 only


def test_reads_only_headers_of_a_big_file(tmp_path: Path) -> None:
    big = tmp_path / "big.dylib"
    data = (BIN / "libs/libhelper.dylib").read_bytes()
    big.write_bytes(data + bytes(20 * 1024 * 1024))  # 20 MiB of data after the image
    raw = io.FileIO(str(big), "rb")
    reader = CountingReader(raw)
    binary = BACKEND.parse(reader, str(big))
    assert binary.images[0].soname == "@rpath/libhelper.dylib"
    assert reader.bytes_read < 64 * 1024


# ---------------------------------------------------------------- dyld search rules


def test_bundle_rpath_through_its_own_lc_rpath() -> None:
    ext = loaded("pkg/_ext.cpython-311-darwin.so")
    cands = list(BACKEND.candidates(Dependency("@rpath/libhelper.dylib"), [ext], HERMETIC))
    assert [c.path for c in cands] == [str(BIN / "libs/libhelper.dylib")]
    assert cands[0].via == f"LC_RPATH @loader_path/../libs of {BIN / 'pkg/_ext.cpython-311-darwin.so'}"


def test_chain_c_found_through_rpath_of_a() -> None:
    a = loaded("chain/libchain_a.dylib")
    b = loaded("chain/bdir/libchain_b.dylib")
    assert first_hit("@rpath/libchain_b.dylib", [a]) == str(BIN / "chain/bdir/libchain_b.dylib")
    # b's own LC_RPATH first, then a's; @loader_path in a's LC_RPATH is a's directory
    assert candidates("@rpath/libchain_c.dylib", [a, b]) == [
        str(BIN / "chain/bdir/nowhere/libchain_c.dylib"),
        str(BIN / "chain/bdir/libchain_c.dylib"),
        str(BIN / "chain/cdir/libchain_c.dylib"),
    ]
    assert first_hit("@rpath/libchain_c.dylib", [a, b]) == str(BIN / "chain/cdir/libchain_c.dylib")
    # loaded on its own, b cannot find c
    assert first_hit("@rpath/libchain_c.dylib", [b]) is None


def test_loader_path_is_the_direct_loader() -> None:
    a = loaded("chain/libchain_a.dylib")
    use = loaded("weak/libuseweak.dylib")
    assert candidates("@loader_path/libweak.dylib", [a, use]) == [str(BIN / "weak/libweak.dylib")]


def test_weak_dependency_is_optional_and_resolves() -> None:
    use = loaded("weak/libuseweak.dylib")
    (weak, _system) = use.image.needed
    assert weak.kind is DepKind.WEAK and weak.optional
    assert first_hit(weak.name, [use]) == str(BIN / "weak/libweak.dylib")


def test_reexported_dependency_resolves_like_a_load() -> None:
    umbrella = loaded("reexport/libumbrella.dylib")
    reexport = next(d for d in umbrella.image.needed if d.kind is DepKind.REEXPORT)
    assert not reexport.optional
    hits = [c.path for c in BACKEND.candidates(reexport, [umbrella], HERMETIC)]
    assert hits == [str(BIN / "reexport/libinner.dylib")]


def test_executable_path() -> None:
    main = loaded("exe/main")
    ext = loaded("pkg/_ext.cpython-311-darwin.so")
    name = "@executable_path/../libs/libhelper.dylib"
    assert first_hit(name, [main]) == str(BIN / "libs/libhelper.dylib")
    # a bundle loaded by an unknown python: @executable_path cannot be resolved
    assert candidates(name, [ext]) == []
    given = SearchPaths(use_system=False, executable_path="/opt/py/bin/python3")
    assert candidates(name, [ext], given) == ["/opt/py/libs/libhelper.dylib"]


def test_search_order_extra_dyld_library_path_then_fallback() -> None:
    a = loaded("chain/libchain_a.dylib")
    search = SearchPaths(extra=("/x",), dyld_library_path=("/d",), dyld_fallback_library_path=("/f",))
    cands = list(BACKEND.candidates(Dependency("@rpath/libchain_b.dylib"), [a], search))
    assert [c.path for c in cands] == [
        "/x/libchain_b.dylib",
        "/d/libchain_b.dylib",
        str(BIN / "chain/bdir/libchain_b.dylib"),
        str(BIN / "chain/cdir/libchain_b.dylib"),
        "/f/libchain_b.dylib",
    ]
    assert [c.via for c in cands][:2] == ["extra library path (-L)", "DYLD_LIBRARY_PATH"]
    assert cands[-1].via == "DYLD_FALLBACK_LIBRARY_PATH"


def test_absolute_install_name_under_sysroot_and_hermetic() -> None:
    a = loaded("chain/libchain_a.dylib")
    name = "/usr/local/lib/libfoo.1.dylib"
    rooted = SearchPaths(sysroot="/srv/macroot", dyld_library_path=("/opt/lib",))
    assert candidates(name, [a], rooted) == [
        "/srv/macroot/opt/lib/libfoo.1.dylib",
        "/srv/macroot/usr/local/lib/libfoo.1.dylib",
    ]
    assert candidates(name, [a], SearchPaths(extra=("/e",), use_system=False)) == ["/e/libfoo.1.dylib"]


def test_system_classification() -> None:
    image = loaded("libs/libhelper.dylib").image
    search = SearchPaths()
    for name in (
        "/usr/lib/libSystem.B.dylib",
        "/usr/lib/libc++.1.dylib",
        "/System/Library/Frameworks/CoreFoundation.framework/Versions/A/CoreFoundation",
    ):
        assert not os.path.exists(name)  # not on this disk, and still system
        assert BACKEND.is_system(Dependency(name), image, search)
    for name in ("/usr/local/lib/libfoo.dylib", "@rpath/libhelper.dylib", "/usr/libexec/x.dylib"):
        assert not BACKEND.is_system(Dependency(name), image, search)
    assert system_prefixes() == ("/usr/lib/", "/System/")


def test_system_data_file_is_versioned() -> None:
    data = json.loads((MACHO.parent.parent / "dynawheel/data/macos-system.json").read_text())
    assert data["version"] == 1 and "/usr/lib/" in data["prefixes"]


def test_loaded_key_is_the_install_name() -> None:
    assert BACKEND.loaded_key("@rpath/libhelper.dylib") == "@rpath/libhelper.dylib"


# ---------------------------------------------------------------- sniffing and bad input


def test_sniff() -> None:
    assert BACKEND.sniff((BIN / "libs/libhelper.dylib").read_bytes()[:8])
    assert BACKEND.sniff((BIN / "fat/libuniversal.dylib").read_bytes()[:8])
    assert not BACKEND.sniff(b"\xca\xfe\xba\xbe\x00\x00\x00\x34")  # a Java class file
    assert not BACKEND.sniff(b"\x7fELF\x02\x01\x01\x00")
    assert not BACKEND.sniff(b"MZ\x90\x00")
    assert not BACKEND.sniff((BAD / "text.dylib").read_bytes()[:8])


BAD_CASES = {
    "magic-only.dylib": "truncated Mach-O header",
    "truncated-cmds.dylib": "load commands (664 bytes) run past the end of the file (364 bytes)",
    "huge-sizeofcmds.dylib": "run past the end of the file",
    "zero-cmdsize.dylib": "load command 0 (0x19) has invalid size 0",
    "bad-name-offset.dylib": "string offset 156 outside its load command 0xc",
    "fat-slice-past-end.dylib": "fat slice 1 at 32768+49952 lies outside the file",
    "fat-nfat.dylib": "truncated fat header (20 architectures)",
}


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_files_give_one_line_errors(name: str) -> None:
    path = BAD / name
    with pytest.raises(BinaryFormatError) as info:
        parse(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(repr(str(path)))
    assert BAD_CASES[name] in message
    assert isinstance(info.value, ValueError)


def test_every_bad_variant_is_covered() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted([*BAD_CASES, "text.dylib"])


def test_no_output_on_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    for rel in EXPECTED:
        parse(BIN / rel)
    for name in BAD_CASES:
        with pytest.raises(BinaryFormatError):
            parse(BAD / name)
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_parse_works_on_an_in_memory_stream() -> None:
    fp: BinaryIO = io.BytesIO((BIN / "fat/libuniversal.dylib").read_bytes())
    binary = BACKEND.parse(fp, "wheel/member.dylib")
    assert [im.arch for im in binary.images] == ["x86_64", "arm64"]
    assert binary.path == "wheel/member.dylib"


# ---------------------------------------------------------------- the fixture corpus


def test_fixture_checksums() -> None:
    lines = (MACHO / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == len(EXPECTED) + len(BAD_CASES) + 1
    for line in lines:
        digest, rel = line.split(maxsplit=1)
        assert hashlib.sha256((MACHO / rel).read_bytes()).hexdigest() == digest, rel


def test_fixture_corpus_is_small() -> None:
    total = sum(p.stat().st_size for p in MACHO.rglob("*") if p.is_file())
    assert total < 1024 * 1024


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("clang-14", "ld64.lld-14", "llvm-lipo-14")),
    reason="clang-14 / lld-14 not installed",
)
def test_build_script_reproduces_the_fixtures() -> None:
    proc = subprocess.run([str(MACHO / "build.sh"), "--check"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "match SHA256SUMS" in proc.stdout


# ---------------------------------------------------------------- other shapes


def test_arch_names() -> None:
    from dynawheel.platforms.macho import arch_name

    assert arch_name(0x0100000C, 0) == "arm64"
    assert arch_name(0x0100000C, 0x80000002) == "arm64e"  # capability bits are masked
    assert arch_name(0x01000007, 3) == "x86_64"
    assert arch_name(0x01000007, 0x80000003) == "x86_64"  # CPU_SUBTYPE_LIB64
    assert arch_name(0x01000007, 8) == "x86_64h"
    assert arch_name(7, 3) == "i386"
    assert arch_name(99, 1) == "cpu99-1"


def make_i386_dylib(dep: str = "/usr/local/lib/libdep.dylib") -> bytes:
    """A minimal 32-bit Mach-O dylib: LC_SEGMENT with one section at 0x1000, id, one dep."""

    def dylib_cmd(cmd: int, name: str) -> bytes:
        body = name.encode() + b"\0"
        size = (24 + len(body) + 3) // 4 * 4
        return struct.pack("<IIIIII", cmd, size, 24, 2, 0x10000, 0x10000) + body.ljust(size - 24, b"\0")

    section = struct.pack("<16s16sIIIIIIIII", b"__text", b"__TEXT", 0x1000, 16, 0x1000, 4, 0, 0,
                          0x80000400, 0, 0)  # fmt: skip
    segment = struct.pack("<II16sIIIIiiII", 1, 56 + 68, b"__TEXT", 0, 0x2000, 0, 0x1010, 7, 5, 1,
                          0) + section  # fmt: skip
    cmds = segment + dylib_cmd(0xD, "@rpath/libi386.dylib") + dylib_cmd(0xC, dep)
    header = struct.pack("<IiIIIII", 0xFEEDFACE, 7, 3, 6, 3, len(cmds), 0x100085)
    data = bytearray(0x1010)
    data[: len(header) + len(cmds)] = header + cmds
    data[0x1000:0x1010] = b"\xc3" * 16
    return bytes(data)


def test_32bit_dylib() -> None:
    data = make_i386_dylib()
    (image,) = BACKEND.parse(io.BytesIO(data), "libi386.dylib").images
    assert (image.arch, image.kind, image.soname) == ("i386", FileKind.SHARED, "@rpath/libi386.dylib")
    assert [d.name for d in image.needed] == ["/usr/local/lib/libdep.dylib"]
    assert image.macho.free_header_space == 0x1000 - 28 - (124 + 48 + 52)
    assert image.macho.code_signature is False and image.macho.min_macos is None


def test_zip_member_is_read_without_its_tail() -> None:
    """A wheel member is parsed from the zip stream; the 50 MiB after the headers stay unread."""
    buf = io.BytesIO()
    helper = (BIN / "libs/libhelper.dylib").read_bytes()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/.dylibs/libbig.dylib", helper + bytes(50 * 1024 * 1024))
        zf.write(BIN / "fat/libuniversal.dylib", "pkg/libuniversal.dylib")
    with zipfile.ZipFile(buf) as zf:
        with zf.open("pkg/.dylibs/libbig.dylib") as member:
            big = BACKEND.parse(member, "pkg/.dylibs/libbig.dylib")  # type: ignore[arg-type]
            assert member.tell() < 64 * 1024
        with zf.open("pkg/libuniversal.dylib") as member:
            fat = BACKEND.parse(member, "pkg/libuniversal.dylib")  # type: ignore[arg-type]
    assert big.images[0].soname == "@rpath/libhelper.dylib"
    assert big.images[0].macho.free_header_space == 32
    assert fat.images == parse(BIN / "fat/libuniversal.dylib").images


def test_truncated_zip_member_still_names_the_problem() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(BAD / "truncated-cmds.dylib", "pkg/t.dylib")
    expected = r"run past the end of the file \(364 bytes\)"
    with (
        zipfile.ZipFile(buf) as zf,
        zf.open("pkg/t.dylib") as member,
        pytest.raises(BinaryFormatError, match=expected),
    ):
        BACKEND.parse(member, "pkg/t.dylib")  # type: ignore[arg-type]
