"""In-process Mach-O edits for repair: thin and fat, header space, re-signing."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dynawheel.binary import BinaryFile, Dependency, Image
from dynawheel.errors import HeaderSpaceError, RepairError
from dynawheel.platforms import Loaded
from dynawheel.platforms.codesign import identifiers, verify_signature
from dynawheel.platforms.macho import BACKEND, headers_of_bytes
from dynawheel.platforms.macho_edit import (
    AddRpath,
    ChangeDependency,
    DeleteRpath,
    Edit,
    SetId,
    apply,
    edit_file,
    plan,
)
from dynawheel.search import SearchPaths

BIN = Path(__file__).resolve().parent.parent / "fixtures" / "macho" / "bin"
OBJDUMP = shutil.which("llvm-objdump-14")
needs_objdump = pytest.mark.skipif(OBJDUMP is None, reason="llvm-objdump-14 not installed")


def copy(rel: str, tmp_path: Path) -> Path:
    dest = tmp_path / Path(rel).name
    shutil.copyfile(BIN / rel, dest)
    return dest


def parse(path: Path) -> BinaryFile:
    with path.open("rb") as fp:
        return BACKEND.parse(fp, str(path))


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def objdump(path: Path, *flags: str) -> str:
    assert OBJDUMP is not None
    proc = subprocess.run([OBJDUMP, "--macho", *flags, "--arch=all", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    return proc.stdout


def check_valid(path: Path) -> None:
    """The strict parser reads every slice; every arm64 slice's signature verifies."""
    headers = objdump(path, "--all-headers")
    assert headers.count("Mach header") == len(parse(path).images)
    assert verify_signature(path.read_bytes(), str(path)) == []


ROOMY_EDITS: list[Edit] = [
    ChangeDependency("@rpath/libhelper.dylib", "@loader_path/libhelper.1a2b3c4d.dylib"),
    SetId("@loader_path/libroomy.dylib"),
    DeleteRpath("@loader_path/../libs"),
    AddRpath("@loader_path/.dylibs"),
]


@needs_objdump
def test_all_edits_on_a_thin_dylib(tmp_path: Path) -> None:
    target = copy("header/libroomy.dylib", tmp_path)
    done = edit_file(str(target), ROOMY_EDITS)
    assert done.changed and done.slices[0].fits
    check_valid(target)
    headers = objdump(target, "--all-headers")
    used = objdump(target, "--dylibs-used")
    assert "@loader_path/libhelper.1a2b3c4d.dylib" in used
    assert "@loader_path/libroomy.dylib" in used
    assert "@rpath/libhelper.dylib" not in used
    (image,) = parse(target).images
    assert image.soname == "@loader_path/libroomy.dylib"
    assert image.rpaths == ("@loader_path/.dylibs",)
    assert [d.name for d in image.needed] == [
        "@loader_path/libhelper.1a2b3c4d.dylib",
        "/usr/lib/libSystem.B.dylib",
    ]
    assert identifiers(target.read_bytes()) == ["libroomy.dylib"]  # the identifier is kept
    assert headers.rstrip().rsplit("Load command", 1)[1].split()[2] == "LC_CODE_SIGNATURE"  # still last
    assert len(target.read_bytes()) == len((BIN / "header/libroomy.dylib").read_bytes())


@needs_objdump
def test_edits_on_every_slice_of_a_fat_file(tmp_path: Path) -> None:
    target = copy("fat/libuniversal.dylib", tmp_path)
    edits: list[Edit] = [
        ChangeDependency("@rpath/libhelper.dylib", "@loader_path/../mypkg.libs/libhelper.dylib"),
        SetId("@rpath/libuniversal-renamed.dylib"),
        DeleteRpath("@loader_path"),
    ]
    done = edit_file(str(target), edits)
    assert [s.arch for s in done.slices] == ["x86_64", "arm64"]
    assert all(len(s.changes) == 3 for s in done.slices)
    check_valid(target)
    used = objdump(target, "--dylibs-used")
    assert used.count("@loader_path/../mypkg.libs/libhelper.dylib") == 2
    assert used.count("@rpath/libuniversal-renamed.dylib") == 2
    binary = parse(target)
    assert binary.fat and [im.rpaths for im in binary.images] == [(), ()]
    assert [im.macho.code_signature for im in binary.images] == [False, True]


@needs_objdump
def test_bundle_repair_resolves_beside_the_extension(tmp_path: Path) -> None:
    """What repair does to an extension: vendored copy beside it, @loader_path name."""
    ext = copy("pkg/_ext.cpython-311-darwin.so", tmp_path)
    lib = copy("libs/libhelper.dylib", tmp_path)
    edit_file(str(lib), [SetId("@loader_path/libhelper.dylib")])
    edit_file(
        str(ext),
        [
            ChangeDependency("@rpath/libhelper.dylib", "@loader_path/libhelper.dylib"),
            DeleteRpath("@loader_path/../libs"),
        ],
    )
    for path in (ext, lib):
        check_valid(path)
    (image,) = parse(ext).images
    assert image.rpaths == ()
    chain = [Loaded(str(ext), image)]
    request = image.needed[0]
    hits = [c.path for c in BACKEND.candidates(request, chain, SearchPaths(use_system=False))]
    assert hits == [str(lib)]
    assert BACKEND.is_system(image.needed[1], image, SearchPaths())


def test_tight_header_fails_cleanly_and_leaves_the_file(tmp_path: Path) -> None:
    target = copy("header/libtight.dylib", tmp_path)
    before = sha(target)
    long_name = "@loader_path/../a-much-longer-directory-name/libhelper.dylib"
    edits = [ChangeDependency("@rpath/libhelper.dylib", long_name)]
    with pytest.raises(HeaderSpaceError) as info:
        edit_file(str(target), edits)
    message = str(info.value)
    assert message == (
        f"header too small in {str(target)!r} (arm64): need 1336 bytes, have 1328; "
        "relink with -headerpad_max_install_names"
    )
    assert sha(target) == before
    assert sorted(os.listdir(tmp_path)) == [target.name]  # no temporary file left behind
    assert not plan(target.read_bytes(), edits).slices[0].fits


@needs_objdump
def test_tight_header_takes_an_edit_that_fits_exactly(tmp_path: Path) -> None:
    target = copy("header/libtight.dylib", tmp_path)
    name = "@loader_path/../libs/libhelper_really_long_name.dylib"  # uses all 32 free bytes
    done = edit_file(str(target), [ChangeDependency("@rpath/libhelper.dylib", name)])
    assert (done.slices[0].need, done.slices[0].have) == (1328, 1328)
    check_valid(target)
    assert parse(target).images[0].macho.free_header_space == 0


def test_same_edits_twice_change_nothing_more() -> None:
    data = (BIN / "header/libroomy.dylib").read_bytes()
    once = apply(data, ROOMY_EDITS, "libroomy.dylib")
    assert once != data
    edits: list[Edit] = [
        SetId("@loader_path/libroomy.dylib"),
        AddRpath("@loader_path/.dylibs"),
    ]
    assert apply(once, edits, "libroomy.dylib") is once


def test_output_elsewhere_keeps_the_input(tmp_path: Path) -> None:
    source = BIN / "header/libroomy.dylib"
    before = sha(source)
    out = tmp_path / "libroomy.dylib"
    edit_file(str(source), ROOMY_EDITS, output=str(out))
    assert sha(source) == before
    assert parse(out).images[0].soname == "@loader_path/libroomy.dylib"
    assert verify_signature(out.read_bytes()) == []


def test_delete_rpath_clears_the_freed_bytes() -> None:
    data = (BIN / "chain/libchain_a.dylib").read_bytes()
    new = apply(data, [DeleteRpath("@loader_path/bdir")], "a")
    _, (old_sl,) = headers_of_bytes(data, "a")
    _, (new_sl,) = headers_of_bytes(new, "a")
    assert new_sl.sizeofcmds == old_sl.sizeofcmds - 32
    assert new[new_sl.cmds_end : old_sl.cmds_end] == bytes(32)
    assert b"@loader_path/bdir" not in new[: old_sl.cmds_end]
    assert parse_bytes(new).rpaths == ("@loader_path/cdir",)


def parse_bytes(data: bytes) -> Image:
    return BACKEND.parse(io.BytesIO(data), "mem").images[0]


def test_weak_and_reexport_commands_keep_their_kind() -> None:
    weak = apply(
        (BIN / "weak/libuseweak.dylib").read_bytes(),
        [ChangeDependency("@loader_path/libweak.dylib", "@loader_path/libweak.v2.dylib")],
        "w",
    )
    assert next((d.name, d.kind.value) for d in parse_bytes(weak).needed) == (
        "@loader_path/libweak.v2.dylib",
        "weak",
    )
    umbrella = apply(
        (BIN / "reexport/libumbrella.dylib").read_bytes(),
        [ChangeDependency("@loader_path/libinner.dylib", "@loader_path/libinner.v2.dylib")],
        "u",
    )
    kinds = [(d.name, d.kind.value) for d in parse_bytes(umbrella).needed][:2]
    assert kinds == [
        ("@loader_path/libinner.v2.dylib", "needed"),
        ("@loader_path/libinner.v2.dylib", "reexport"),
    ]
    assert verify_signature(umbrella) == []


def test_edits_that_match_nothing_are_refused() -> None:
    data = (BIN / "pkg/_ext.cpython-311-darwin.so").read_bytes()
    with pytest.raises(RepairError, match="has no LC_ID_DYLIB"):
        plan(data, [SetId("@loader_path/_ext.so")], "ext.so")
    with pytest.raises(RepairError, match=r"'@rpath/libnope\.dylib' matches no load command"):
        plan(data, [ChangeDependency("@rpath/libnope.dylib", "x")], "ext.so")
    with pytest.raises(RepairError, match="deletion of rpath '/nope'"):
        plan(data, [DeleteRpath("/nope")], "ext.so")


def test_dependency_names_are_only_loaded_not_the_id() -> None:
    """ChangeDependency never renames LC_ID_DYLIB even when the names are equal."""
    data = (BIN / "libs/libhelper.dylib").read_bytes()
    with pytest.raises(RepairError):
        plan(data, [ChangeDependency("@rpath/libhelper.dylib", "@loader_path/x.dylib")], "h")
    assert Dependency("@rpath/libhelper.dylib") not in parse_bytes(data).needed


@needs_objdump
def test_32bit_dylib_edit(tmp_path: Path) -> None:
    from .test_macho import make_i386_dylib

    data = make_i386_dylib()
    new = apply(
        data,
        [ChangeDependency("/usr/local/lib/libdep.dylib", "@loader_path/libdep.dylib")],
        "libi386.dylib",
    )
    image = parse_bytes(new)
    assert [d.name for d in image.needed] == ["@loader_path/libdep.dylib"]
    assert image.macho.code_signature is False  # i386 was not signed: stays unsigned
    out = tmp_path / "libi386.dylib"
    out.write_bytes(new)
    assert "@loader_path/libdep.dylib" in objdump(out, "--dylibs-used")
    objdump(out, "--all-headers")
