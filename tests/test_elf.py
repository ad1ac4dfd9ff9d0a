"""The ELF reader and ld.so's search order, on binaries gcc builds here."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from dynawheel.binary import BinaryFormat, Dependency, FileKind
from dynawheel.errors import BinaryFormatError
from dynawheel.platforms import Loaded, backend_for, elf
from dynawheel.platforms.elf import expand_dst, normalize_arch, parse_elf
from dynawheel.policy import linux_system
from dynawheel.search import SearchPaths

from . import elfbuild

BACKEND = elf.BACKEND.with_policy(linux_system())  # the loader rules with the policy data, as the resolver has them

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed")


def parse(path: Path, name: str | None = None):  # type: ignore[no-untyped-def]
    with open(path, "rb") as fp:
        return parse_elf(fp, name or str(path)).images[0]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("elf")
    helper = elfbuild.shared_lib(d / "h" / "libhelper.so.1", soname="libhelper.so.1")
    return {
        "helper": helper,
        "rpath": elfbuild.shared_lib(d / "r" / "librp.so", soname="librp.so.2", needs=[helper],
                                     rpath=["$ORIGIN/../h", "/opt/x"]),
        "runpath": elfbuild.shared_lib(d / "u" / "librun.so", needs=[helper], runpath=["${ORIGIN}/../h"]),
        "ext": elfbuild.extension(d / "pkg", "_ext", needs=[helper], runpath=["$ORIGIN/../h"]),
        "pie": elfbuild.executable(d / "bin" / "pie"),
        "nopie": elfbuild.executable(d / "bin" / "nopie", pie=False),
        "i386": elfbuild.i386_lib(d / "m32" / "libhelper.so.1", "libhelper.so.1"),
        "aarch64": elfbuild.patch_machine(helper, d / "arm" / "libhelper.so.1", 183),
    }


def test_shared_library_fields(built: dict[str, Path]) -> None:
    image = parse(built["rpath"])
    assert image.format is BinaryFormat.ELF and image.arch == "x86_64" and image.kind is FileKind.SHARED
    assert image.soname == "librp.so.2"
    assert image.needed[0] == Dependency("libhelper.so.1")
    assert [d.name for d in image.needed] == ["libhelper.so.1", "libc.so.6"]
    assert image.rpaths == ("$ORIGIN/../h", "/opt/x") and image.runpaths == ()
    assert image.elf.elfclass == 64 and image.elf.interp is None
    assert "GLIBC_2.2.5" in image.elf.version_needs["libc.so.6"]


def test_runpath_and_extension(built: dict[str, Path]) -> None:
    run = parse(built["runpath"])
    assert run.runpaths == ("${ORIGIN}/../h",) and run.rpaths == () and run.soname is None
    ext = parse(built["ext"])
    assert ext.kind is FileKind.SHARED and [d.name for d in ext.needed] == ["libhelper.so.1"]


def test_executables(built: dict[str, Path]) -> None:
    pie, nopie = parse(built["pie"]), parse(built["nopie"])
    assert pie.kind is FileKind.EXECUTABLE and pie.elf.type == "ET_DYN"
    assert nopie.kind is FileKind.EXECUTABLE and nopie.elf.type == "ET_EXEC"
    assert pie.elf.interp == "/lib64/ld-linux-x86-64.so.2"
    # libc.so.6 has a PT_INTERP too, yet it is a library (it has a DT_SONAME)
    assert parse(Path("/lib/x86_64-linux-gnu/libc.so.6")).kind is FileKind.SHARED


def test_wrong_class_and_machine(built: dict[str, Path]) -> None:
    i386, arm = parse(built["i386"]), parse(built["aarch64"])
    assert (i386.arch, i386.elf.elfclass, i386.soname) == ("i686", 32, "libhelper.so.1")
    assert (arm.arch, arm.elf.elfclass) == ("aarch64", 64)
    assert i386.arch != parse(built["helper"]).arch != arm.arch  # the resolver skips a candidate of another arch


def test_normalize_arch() -> None:
    assert normalize_arch(62, 64, True) == "x86_64"
    assert normalize_arch(62, 32, True) == "x32"
    assert normalize_arch(21, 64, True) == "ppc64le" and normalize_arch(21, 64, False) == "ppc64"
    assert normalize_arch(22, 64, False) == "s390x" and normalize_arch(243, 64, True) == "riscv64"
    assert normalize_arch(40, 32, True) == "armv7l" and normalize_arch(3, 32, True) == "i686"
    assert normalize_arch(9999, 64, True) == "em9999-64le"


def test_common_header_names_are_pyelftools_names() -> None:
    from dynawheel.platforms import elf

    types, machines, osabis = elf._enum_names()
    for common, table in ((elf._COMMON_TYPES, types), (elf._COMMON_MACHINES, machines),
                          (elf._COMMON_OSABIS, osabis)):
        assert {value: table[value] for value in common} == common
    assert elf._enum_name(elf._COMMON_MACHINES, 1, 50) == "EM_IA_64"  # not common: pyelftools' table
    assert elf._enum_name(elf._COMMON_MACHINES, 1, 65000) == "65000"


def test_sniff() -> None:
    assert BACKEND.sniff(b"\x7fELF\x02\x01\x01\x00") and not BACKEND.sniff(b"MZ\x90\x00")
    assert backend_for(b"\x7fELF\x02\x01\x01\x00") is elf.BACKEND
    assert backend_for(b"#!/bin/sh") is None


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:40], "cannot parse 'pkg/_ext.so': truncated ELF header (40 bytes, need 64)"),
        (lambda b: b[:10], "cannot parse 'pkg/_ext.so': truncated ELF identification (10 bytes, need 16)"),
        (lambda _b: b"this is a text file\n", "cannot parse 'pkg/_ext.so': not an ELF file (magic b'this')"),
        (lambda b: b[:4] + b"\x07" + b[5:], "cannot parse 'pkg/_ext.so': invalid ELF class byte 7"),
        (lambda b: b[:2000], "program headers end at byte"),
    ],
)
def test_bad_input_is_one_clear_error(built: dict[str, Path], mutate, message) -> None:  # type: ignore[no-untyped-def]
    data = mutate(built["helper"].read_bytes())
    if message.startswith("program"):  # move the program headers past the end
        data = bytearray(data)
        struct.pack_into("<Q", data, 32, 1 << 20)
        data = bytes(data)
    with pytest.raises(BinaryFormatError) as info:
        parse_elf(io.BytesIO(data), "pkg/_ext.so")
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupted_dynamic_section(built: dict[str, Path]) -> None:
    """A truncated file whose headers are intact but whose dynamic segment is cut off."""
    data = built["helper"].read_bytes()
    cut = data[: len(data) // 3]
    with pytest.raises(BinaryFormatError, match=r"^cannot parse 'x\.so': "):
        parse_elf(io.BytesIO(cut), "x.so")


def _chain(path: str, image_path: Path) -> list[Loaded]:
    return [Loaded(path, parse(image_path))]


def test_candidates_rpath_order(built: dict[str, Path]) -> None:
    search = SearchPaths(ld_library_path=("/env",), ld_so_conf=(), elf_default_dirs=("/lib", "/usr/lib"),
                         use_ld_so_cache=False)
    loader = "/t/r/librp.so"
    cands = list(BACKEND.candidates(Dependency("libhelper.so.1"), _chain(loader, built["rpath"]), search))
    assert [(c.path, c.via) for c in cands] == [
        ("/t/h/libhelper.so.1", f"DT_RPATH of {loader}"),
        ("/opt/x/libhelper.so.1", f"DT_RPATH of {loader}"),
        ("/env/libhelper.so.1", "LD_LIBRARY_PATH"),
        ("/lib/libhelper.so.1", "default directory"),
        ("/usr/lib/libhelper.so.1", "default directory"),
    ]


def test_candidates_runpath_not_inherited_rpath_is(built: dict[str, Path]) -> None:
    search = SearchPaths(ld_so_conf=("/conf",), elf_default_dirs=("/lib",), use_ld_so_cache=False)
    rp = Loaded("/t/r/librp.so", parse(built["rpath"]))
    run = Loaded("/t/u/librun.so", parse(built["runpath"]))
    helper = Loaded("/t/h/libhelper.so.1", parse(built["helper"]))
    dep = Dependency("libzz.so")
    # helper loaded by librp (RPATH): librp's RPATH applies to helper's requests
    via_rpath = [c.via for c in BACKEND.candidates(dep, [rp, helper], search)]
    assert via_rpath[:2] == ["DT_RPATH of /t/r/librp.so"] * 2
    # helper loaded by librun (RUNPATH): nothing inherited
    assert [c.path for c in BACKEND.candidates(dep, [run, helper], search)] == ["/conf/libzz.so", "/lib/libzz.so"]
    # librun's own request: its RUNPATH, after LD_LIBRARY_PATH, before ld.so.conf
    assert next(c.path for c in BACKEND.candidates(dep, [run], search)) == "/t/h/libzz.so"


def test_candidates_special_names(built: dict[str, Path]) -> None:
    search = SearchPaths(elf_lib="lib64", elf_platform="x86_64", use_ld_so_cache=False, ld_so_conf=())
    chain = _chain("/t/r/librp.so", built["rpath"])
    direct = list(BACKEND.candidates(Dependency("$ORIGIN/sub/libq.so"), chain, search))
    assert [(c.path, c.via) for c in direct] == [("/t/r/sub/libq.so", "DT_NEEDED path of /t/r/librp.so")]
    assert [c.path for c in BACKEND.candidates(Dependency("/abs/libq.so"), chain, search)] == ["/abs/libq.so"]
    interp = list(BACKEND.candidates(Dependency("ld-linux-x86-64.so.2"), chain, search))
    assert [c.path for c in interp] == ["/lib64/ld-linux-x86-64.so.2"]
    assert expand_dst("$ORIGIN/$LIB/${PLATFORM}/x", "/o", search) == "/o/lib64/x86_64/x"
    assert expand_dst("$ORIGINAL", "/o", search) == "$ORIGINAL"


def test_is_system_uses_policy_whitelist(built: dict[str, Path]) -> None:
    image = parse(built["ext"])
    search = SearchPaths()
    for name in ("libc.so.6", "libm.so.6", "libpthread.so.0", "libgcc_s.so.1", "ld-linux-x86-64.so.2"):
        assert BACKEND.is_system(Dependency(name), image, search), name
    assert not BACKEND.is_system(Dependency("libhelper.so.1"), image, search)
    assert not BACKEND.is_system(Dependency("libssl.so.3"), image, search)
