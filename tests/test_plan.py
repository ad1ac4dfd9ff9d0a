"""repair/plan.py on hand-built analyses: every edit of every file, decided before anything is written."""

from __future__ import annotations

import pytest

from dynawheel.analysis.resolve import Status
from dynawheel.binary import BinaryFormat
from dynawheel.errors import RepairError
from dynawheel.repair.collect import Choices, collect
from dynawheel.repair.plan import EditPlan, make_plan

from .handbuilt import analysis, elf

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
    plan = EditPlan()
    plan.rename("pk/_ext.so", BinaryFormat.ELF, "libfoo.so.1", "libfoo-1.so.1")
    plan.rename("pk/_ext.so", BinaryFormat.ELF, "libfoo.so.1", "libfoo-1.so.1")  # the same again: fine
    with pytest.raises(RepairError, match=r"conflicting edits of 'pk/_ext\.so': 'libfoo\.so\.1' -> 'libfoo-1\.so\.1'"):
        plan.rename("pk/_ext.so", BinaryFormat.ELF, "libfoo.so.1", "libfoo-2.so.1")
