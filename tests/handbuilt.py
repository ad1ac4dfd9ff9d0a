"""Analyses built by hand, from a dict of binaries and their resolved requests (as pypa/installer
builds wheels from a dict): for unit tests of collect and plan, which read an Analysis and no file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from dynawheel.analysis.resolve import Analysis, Edge, Status, Walk
from dynawheel.binary import BinaryFile, BinaryFormat, Dependency, FileKind, Image

ROOT = "/t"
# request name -> (status, hit path or None)
Resolved = Mapping[str, tuple[Status, "str | None"]]


def elf(path: str, needed: Sequence[str] = (), soname: str | None = None, runpaths: Sequence[str] = (),
        kind: FileKind = FileKind.SHARED) -> BinaryFile:
    image = Image(BinaryFormat.ELF, "x86_64", kind, tuple(Dependency(n) for n in needed), (), tuple(runpaths), soname)
    return BinaryFile(path, BinaryFormat.ELF, (image,))


def macho(path: str, needed: Sequence[str] = (), install_name: str | None = None, rpaths: Sequence[str] = (),
          kind: FileKind = FileKind.SHARED) -> BinaryFile:
    image = Image(BinaryFormat.MACHO, "arm64", kind, tuple(Dependency(n) for n in needed), tuple(rpaths), (),
                  install_name)
    return BinaryFile(path, BinaryFormat.MACHO, (image,))


def analysis(files: Sequence[str], binaries: Mapping[str, BinaryFile], resolved: Mapping[str, Resolved]) -> Analysis:
    """`files`: the tree (relative); `binaries`: every binary by path (tree ones under ROOT);
    `resolved`: for each binary, how each of its requests resolved.  One walk per tree binary,
    following the hits depth first, each library loaded once (as the loaders do)."""
    tree = tuple(sorted(p for p in binaries if p.startswith(ROOT + "/")))
    walks = []
    for root in tree:
        edges: list[Edge] = []
        loaded = [root]
        todo = [root]
        while todo:
            path = todo.pop(0)
            for name, (status, hit) in resolved.get(path, {}).items():
                new = hit is not None and hit not in loaded
                edges.append(Edge(path, "x86_64", Dependency(name), status, hit, loaded_here=new))
                if new and hit is not None:
                    loaded.append(hit)
                    todo.append(hit)
        walks.append(Walk(root, "x86_64", tuple(edges), tuple(loaded)))
    return Analysis(ROOT, tuple(sorted(files)), dict(binaries), (), tuple(walks), tree)
