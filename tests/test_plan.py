"""repair/plan.py on hand-built analyses: every edit of every file, decided before anything is written."""

from __future__ import annotations

import pytest

from dynawheel.analysis.resolve import Status
from dynawheel.binary import BinaryFormat
from dynawheel.errors import RepairError
from dynawheel.platforms import ElfEdits, MachoEdits
from dynawheel.repair.collect import Choices, collect
from dynawheel.repair.plan import Renames, make_plan

from .handbuilt import analysis, elf, macho

EXT, FOO, BAR, LIBC = "/t/pk/_ext.so", "/opt/lib/libfoo.so.1", "/opt/lib/libbar.so.2", "/lib/libc.so.6"


def test_renames_own_names_and_origin_search_paths() -> None:
    a = analysis(["pk/_ext.so"], {
        EXT: elf(EXT, ("libfoo.so.1",), runpaths=("/opt/lib",)),
        FOO: elf(FOO, ("libbar.so.2", "libc.so.6"), "libfoo.so.1"),
        BAR: elf(BAR, soname="libbar.so.2"),
        LIBC: elf(LIBC, soname="libc.so.6"),
    }, {EXT: {"libfoo.so.1": (Status.EXTERNAL, FOO)},
        FOO: {"libbar.so.2": (Status.EXTERNAL, BAR), "libc.so.6": (Status.SYSTEM, LIBC)}})
    c = collect(a, Choices(), "pk.libs", {FOO: "a" * 64, BAR: "b" * 64})
    bar, foo = c.vendored
    plan = make_plan(a, c)
    assert sorted(plan.files) == sorted(["pk/_ext.so", foo.dest, bar.dest])
    ext = plan.files["pk/_ext.so"]
    assert ext == ElfEdits((("libfoo.so.1", foo.name),), ("$ORIGIN",))  # the record its editor takes
    assert (ext.format, ext.renames, ext.runpath, ext.own_name) == (BinaryFormat.ELF, {"libfoo.so.1": foo.name},
                                                                    ("$ORIGIN",), None)
    assert plan.files[foo.dest].renames == {"libbar.so.2": bar.name}  # libc.so.6 stays as it is
    assert (plan.files[foo.dest].own_name, plan.files[bar.dest].own_name) == (foo.name, bar.name)
    assert plan.files[bar.dest].runpath is None  # it needs nothing vendored: its search path stays


def test_a_tree_with_nothing_to_vendor_has_nothing_to_edit() -> None:
    a = analysis(["pk/_ext.so"], {EXT: elf(EXT, ("libc.so.6",)), LIBC: elf(LIBC, soname="libc.so.6")},
                 {EXT: {"libc.so.6": (Status.SYSTEM, LIBC)}})
    c = collect(a, Choices(), "pk.libs", {})
    assert c.vendored == () and make_plan(a, c).files == {}


def test_one_dependency_renamed_two_ways_is_refused() -> None:
    renames = Renames("pk/_ext.so")
    renames.add("libfoo.so.1", "libfoo-1.so.1")
    renames.add("libfoo.so.1", "libfoo-1.so.1")  # the same again: fine
    renames.add("libbar.so.1", "libbar.so.1")  # no rename at all
    with pytest.raises(RepairError, match=r"conflicting edits of 'pk/_ext\.so': 'libfoo\.so\.1' -> 'libfoo-1\.so\.1'"):
        renames.add("libfoo.so.1", "libfoo-2.so.1")
    assert renames.pairs() == (("libfoo.so.1", "libfoo-1.so.1"),)


def test_macho_edits_rename_to_loader_path_and_drop_outside_rpaths() -> None:
    ext, dylib = "/t/pk/_ext.so", "/opt/lib/libfoo.1.dylib"
    a = analysis(["pk/_ext.so"], {
        ext: macho(ext, ("@rpath/libfoo.1.dylib",), rpaths=("/opt/lib", "@loader_path/.")),
        dylib: macho(dylib, (), "@rpath/libfoo.1.dylib"),
    }, {ext: {"@rpath/libfoo.1.dylib": (Status.EXTERNAL, dylib)}})
    c = collect(a, Choices(), "pk.libs", {dylib: "c" * 64})
    (foo,) = c.vendored
    assert foo.dest == f"pk/{foo.name}"  # beside its one consumer
    plan = make_plan(a, c)
    edits = plan.files["pk/_ext.so"]
    assert edits == MachoEdits((("@rpath/libfoo.1.dylib", f"@loader_path/{foo.name}"),),
                               None, ("/opt/lib",))  # the in-tree @loader_path rpath is kept
    assert (edits.format, edits.runpath) == (BinaryFormat.MACHO, None)  # the format-neutral view
    assert plan.files[foo.dest] == MachoEdits((), f"@rpath/{foo.name}", ())
