"""repair/collect.py on hand-built analyses: what is vendored, in which order, under which names, where."""

from __future__ import annotations

import posixpath
import re

import pytest

from dynawheel.analysis.resolve import Analysis, Status
from dynawheel.binary import BinaryFile, BinaryFormat, Dependency, FileKind, Image
from dynawheel.errors import ResolveError
from dynawheel.repair.collect import Choices, collect, mangled_name
from dynawheel.repair.plan import make_plan, shim_plan
from dynawheel.wheel.layout import install_root

from .handbuilt import analysis, elf

EXT, EXT2 = "/t/pk/_ext.so", "/t/pk/sub/_two.so"
FOO, BAR, LIBC = "/opt/lib/libfoo.so.1", "/opt/lib/libbar.so.2", "/lib/libc.so.6"
DIGESTS = {FOO: "a" * 64, BAR: "b" * 64}


def _chain(*extensions: str) -> Analysis:
    binaries = {FOO: elf(FOO, ("libbar.so.2", "libc.so.6"), "libfoo.so.1"), BAR: elf(BAR, soname="libbar.so.2"),
                LIBC: elf(LIBC, soname="libc.so.6")}
    binaries.update({ext: elf(ext, ("libfoo.so.1",), runpaths=("/opt/lib",)) for ext in extensions})
    resolved = {ext: {"libfoo.so.1": (Status.EXTERNAL, FOO)} for ext in extensions}
    resolved[FOO] = {"libbar.so.2": (Status.EXTERNAL, BAR), "libc.so.6": (Status.SYSTEM, LIBC)}
    files = [e[len("/t/"):] for e in extensions]
    return analysis(files, binaries, resolved)


def test_the_closure_is_vendored_dependencies_first_beside_its_consumer() -> None:
    c = collect(_chain(EXT), Choices(), "pk.libs", DIGESTS)
    assert [v.source for v in c.vendored] == [BAR, FOO]  # libc is the system's: never vendored
    bar, foo = c.vendored
    assert re.fullmatch(r"libbar-[0-9a-f]{8}\.so\.2", bar.name) and re.fullmatch(r"libfoo-[0-9a-f]{8}\.so\.1", foo.name)
    assert (bar.dest, foo.dest) == (f"pk/{bar.name}", f"pk/{foo.name}")  # one consumer directory: beside it
    assert (foo.consumers, bar.consumers) == (("pk/_ext.so",), (foo.dest,))
    assert (foo.sha256, foo.format, foo.requests) == (DIGESTS[FOO], BinaryFormat.ELF, ("libfoo.so.1",))


def test_consumers_in_two_directories_share_the_library_directory() -> None:
    c = collect(_chain(EXT, EXT2), Choices(), "pk.libs", DIGESTS)
    foo = c.by_source()[FOO]
    assert foo.dest == f"pk.libs/{foo.name}" and foo.consumers == ("pk/_ext.so", "pk/sub/_two.so")


def test_a_name_hashes_the_names_of_its_vendored_dependencies() -> None:
    """Excluding libbar (not vendored, subtree pruned) renames libfoo: what it links changed."""
    whole = collect(_chain(EXT), Choices(), "pk.libs", DIGESTS)
    pruned = collect(_chain(EXT), Choices(exclude=("libbar*",)), "pk.libs", DIGESTS)
    assert [v.source for v in pruned.vendored] == [FOO]
    assert pruned.vendored[0].name != whole.by_source()[FOO].name
    assert collect(_chain(EXT), Choices(mangle=False), "pk.libs", DIGESTS).vendored[1].name == "libfoo.so.1"


def test_a_missing_library_is_an_error_unless_allowed() -> None:
    a = analysis(["pk/_ext.so"], {EXT: elf(EXT, ("libgone.so.1",))}, {EXT: {"libgone.so.1": (Status.MISSING, None)}})
    with pytest.raises(ResolveError, match=r"(?s)cannot find 1 needed library .*'libgone\.so\.1' needed by 'pk/_ext"):
        collect(a, Choices(), "pk.libs", {})
    allowed = collect(a, Choices(allow_missing=True), "pk.libs", {})
    assert allowed.vendored == () and [e.request.name for e in allowed.missing_allowed] == ["libgone.so.1"]


@pytest.mark.parametrize(("name", "mangled"), [
    ("libfoo.so.1", "libfoo-1a2b3c4d.so.1"), ("libfoo.so", "libfoo-1a2b3c4d.so"), ("foo.dll", "foo-1a2b3c4d.dll"),
    ("libz.1.dylib", "libz.1-1a2b3c4d.dylib"), ("libfoo.so.1a", "libfoo-1a2b3c4d.so.1a"),
])
def test_mangled_name_keeps_the_suffix(name: str, mangled: str) -> None:
    assert mangled_name(name, "1a2b3c4d") == mangled


TOOL = "/t/pk-1.0.data/scripts/tool"
SCRIPTS = "pk-1.0.data/scripts"


@pytest.mark.parametrize(("rel", "root"), [
    ("pk/_ext.so", ""), ("pk-1.0.data/platlib/pk/x.so", ""), ("pk-1.0.data/purelib/x.so", ""),
    ("pk-1.0.data/scripts/tool", SCRIPTS), ("pk-1.0.data/scripts/sub/tool", SCRIPTS), ("pk-1.0.data/data/x.so", ""),
    ("scripts/tool", ""), ("pk-1.0.dist-info/scripts/x", ""),
])
def test_install_root_separates_the_scripts_directory(rel: str, root: str) -> None:
    assert install_root(rel) == root


def test_a_script_gets_its_own_copies_beside_it() -> None:
    """An extension and a program of .data/scripts both need libfoo (-> libbar): two copies of each, the
    program's in the scripts directory, named apart (their hash includes '<name>-<ver>.data/scripts')."""
    a = _chain(EXT, TOOL)
    c = collect(a, Choices(), "pk.libs", DIGESTS)
    by_root = {(v.source, v.install_root): v for v in c.vendored}
    assert sorted(by_root) == sorted([(FOO, ""), (BAR, ""), (FOO, SCRIPTS), (BAR, SCRIPTS)])
    ours, theirs = by_root[(FOO, SCRIPTS)], by_root[(FOO, "")]
    assert ours.dest == f"{SCRIPTS}/{ours.name}" and theirs.dest == f"pk/{theirs.name}"
    assert ours.name != theirs.name and ours.consumers == ("pk-1.0.data/scripts/tool",)
    assert by_root[(BAR, SCRIPTS)].consumers == (ours.dest,) and by_root[(BAR, SCRIPTS)].dest.startswith(SCRIPTS + "/")
    assert c.by_source()[FOO] == theirs  # the package's copy
    plan = make_plan(a, c)
    assert plan.files["pk-1.0.data/scripts/tool"].runpath == ("$ORIGIN",)
    assert plan.files["pk-1.0.data/scripts/tool"].renames == {"libfoo.so.1": ours.name}
    assert plan.files[ours.dest].renames == {"libbar.so.2": by_root[(BAR, SCRIPTS)].name}


def test_a_library_the_package_ships_is_copied_for_a_script() -> None:
    """The program finds pk/libpk.so through '$ORIGIN/../../pk': inside the wheel only.  It gets a copy
    beside it, named apart; the package's file stays as it is."""
    pk = "/t/pk/libpk.so"
    binaries = {TOOL: elf(TOOL, ("libpk.so",), runpaths=("$ORIGIN/../../pk",)), pk: elf(pk, soname="libpk.so")}
    a = analysis(["pk/libpk.so", "pk-1.0.data/scripts/tool"], binaries, {TOOL: {"libpk.so": (Status.IN_TREE, pk)}})
    c = collect(a, Choices(), "pk.libs", {}, {"pk/libpk.so": "c" * 64})
    (copy,) = c.vendored
    assert (copy.source, copy.install_root, copy.sha256) == (pk, SCRIPTS, "c" * 64)
    assert re.fullmatch(rf"{SCRIPTS}/libpk-[0-9a-f]{{8}}\.so", copy.dest)
    plan = make_plan(a, c)
    tool = plan.files["pk-1.0.data/scripts/tool"]
    assert tool.runpath == ("$ORIGIN",)  # the entry into site-packages is dropped: it breaks once installed
    assert "pk/libpk.so" not in plan.files


def test_a_windows_program_and_an_extension_share_a_dll_only_the_extension_gets_the_shim() -> None:
    """pk/a/_x.pyd and pk/b/_y.pyd need helper.dll (-> pk.libs, found through the shim); the program
    tool.exe gets its own copy beside it in Scripts\\ (the application directory is searched first)."""
    def pe(path: str, needed: tuple[str, ...] = (), kind: FileKind = FileKind.SHARED) -> BinaryFile:
        image = Image(BinaryFormat.PE, "x86_64", kind, tuple(Dependency(n) for n in needed))
        return BinaryFile(path, BinaryFormat.PE, (image,))

    x, y, exe, dll = "/t/pk/a/_x.pyd", "/t/pk/b/_y.pyd", f"/t/{SCRIPTS}/tool.exe", "/build/helper.dll"
    binaries = {x: pe(x, ("helper.dll",)), y: pe(y, ("helper.dll",)),
                exe: pe(exe, ("helper.dll",), FileKind.EXECUTABLE), dll: pe(dll)}
    hit = {"helper.dll": (Status.EXTERNAL, dll)}
    a = analysis(["pk/__init__.py", "pk/a/_x.pyd", "pk/b/_y.pyd", f"{SCRIPTS}/tool.exe"], binaries,
                 {x: hit, y: hit, exe: hit})
    c = collect(a, Choices(), "pk.libs", {dll: "d" * 64})
    dests = {v.install_root: v.dest for v in c.vendored}
    assert len(c.vendored) == 2 and dests[""].startswith("pk.libs/helper-")
    assert dests[SCRIPTS].startswith(f"{SCRIPTS}/helper-")
    plan = make_plan(a, c)
    assert dict(plan.files[f"{SCRIPTS}/tool.exe"].renames) == {"helper.dll": posixpath.basename(dests[SCRIPTS])}
    shim = shim_plan(a, c)
    assert dict(shim.init_files) == {"pk/__init__.py": ("../pk.libs",)}  # nothing for the program
