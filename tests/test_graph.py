"""analysis/graph.py on hand-built analyses: the one rule for the libraries a tree keeps outside."""

from __future__ import annotations

from dynawheel.analysis.graph import DependencyGraph, outside_names
from dynawheel.analysis.resolve import Status

from .handbuilt import analysis, elf

EXT, FOO, LIBC, LDSO = "/t/pk/_ext.so", "/opt/lib/libfoo.so.1", "/lib/libc.so.6", "/lib64/ld-linux-x86-64.so.2"


def test_outside_names_before_and_after_vendoring() -> None:
    a = analysis(["pk/_ext.so"], {
        EXT: elf(EXT, ("libfoo.so.1", "libc.so.6", "ld-linux-x86-64.so.2")),
        FOO: elf(FOO, ("libm.so.6",), "libfoo.so.1"),
        LIBC: elf(LIBC, soname="libc.so.6"), LDSO: elf(LDSO, soname="ld-linux-x86-64.so.2"),
    }, {EXT: {"libfoo.so.1": (Status.EXTERNAL, FOO), "libc.so.6": (Status.SYSTEM, LIBC),
              "ld-linux-x86-64.so.2": (Status.SYSTEM, LDSO)},
        FOO: {"libm.so.6": (Status.SYSTEM, "/lib/libm.so.6")}})
    graph = DependencyGraph(a)
    tree = set(a.tree_binaries)
    # as the tree is: what it takes from the system and from elsewhere; the program interpreter is always there
    assert outside_names(graph.edges, tree, (Status.SYSTEM, Status.EXTERNAL)) == {"libfoo.so.1", "libc.so.6"}
    # once libfoo is vendored: the system libraries the tree and the copy need
    assert outside_names(graph.edges, tree | {FOO}, (Status.SYSTEM,)) == {"libc.so.6", "libm.so.6"}
