"""What a wheel's (or a staged tree's) binaries support: an Analysis turned into a
:class:`~dynawheel.platform_tags.Content`, and a wheel's or a tree's platform tag judged by the rule."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from ..analysis.dlldirs import with_dll_directories
from ..analysis.graph import DependencyGraph, outside_names
from ..analysis.imports import Blacklisted, blacklisted_imports
from ..analysis.resolve import NOT_LOADABLE, Analysis, Status, analyze
from ..binary import BinaryFormat, Image
from ..errors import StageError
from ..platform_tags import Content, best_platform, blockers
from ..search import SearchPaths
from ..tree import Tree, WheelTree


def content_of(analysis: Analysis, graph: DependencyGraph | None = None, *, blacklisted: Blacklisted = (),
               isa_check: bool = True) -> Content:
    """The Content of an analysed tree, as it is (nothing vendored); `blacklisted`: what
    :func:`tree_blacklisted` read from its files."""
    graph = graph or DependencyGraph(analysis)
    per: dict[BinaryFormat, list[tuple[str, Image]]] = {f: [] for f in BinaryFormat}
    for path in analysis.tree_binaries:
        if path in analysis.aliases:
            continue  # another name of a file already counted
        binary = analysis.binaries[path]
        rel = analysis.relpath(path) or path
        per[binary.format].extend((rel, image) for image in binary.images)
    inside = set(analysis.tree_binaries)

    def is_elf(path: str) -> bool:
        binary = analysis.binaries.get(path)
        return binary is not None and binary.format is BinaryFormat.ELF

    def where(path: str) -> str:
        return analysis.relpath(path) or path

    system = frozenset(outside_names(graph.edges, {p for p in inside if is_elf(p)}, (Status.SYSTEM,)))
    outside = sorted({(where(e.dependent), e.request.name) for e in graph.external()
                      if e.dependent in inside and is_elf(e.dependent)})
    missing = sorted({(where(e.dependent), e.request.name) for e in graph.missing() if is_elf(e.dependent)})
    refused = sorted({(where(e.dependent), e.request.name, f"{e.tried[-1].path} ({e.tried[-1].outcome})")
                      for e in graph.missing() if is_elf(e.dependent) and e.tried
                      and e.tried[-1].outcome.startswith(NOT_LOADABLE)})
    found = sorted({(e.request.name, e.hit) for e in graph.edges
                    if e.hit and e.status in (Status.SYSTEM, Status.EXTERNAL) and is_elf(e.dependent)})
    return Content(tuple(per[BinaryFormat.ELF]), tuple(per[BinaryFormat.MACHO]), tuple(per[BinaryFormat.PE]),
                   system, tuple(outside), tuple(missing), tuple(refused), tuple(found), blacklisted, isa_check)


def tree_blacklisted(tree: Tree, analysis: Analysis) -> Blacklisted:
    """The blacklisted symbols the tree's ELF files import (read from the open `tree`)."""
    files = [(analysis.relpath(p) or p, image, analysis.relpath(p) or p) for p in analysis.tree_binaries
             if p not in analysis.aliases for image in analysis.binaries[p].images]
    return blacklisted_imports(files, tree.open)


def tree_content(tree: Tree, search: SearchPaths | None = None) -> Content:
    """Analyse `tree` (closed afterwards) and return its Content."""
    try:
        analysis = analyze(tree, with_dll_directories(tree, search))
        blacklisted = tree_blacklisted(tree, analysis)
    finally:
        tree.close()
    return content_of(analysis, blacklisted=blacklisted)


def wheel_content(wheel: Path, search: SearchPaths | None = None) -> Content:
    return tree_content(WheelTree(wheel), search)


def judge(content: Content, platform: str) -> tuple[str, ...]:
    """Why `content` does not support `platform` (() when it does)."""
    return blockers(content, platform)


def best(content: Content, macos_target: str | None = None) -> str | None:
    return best_platform(content, macos_target)


class MappedTree:
    """A tree made of scattered files (a build's stage: wheel path -> source file), under the virtual
    root ``/<name>``; the files are read where they are, never copied."""

    def __init__(self, files: Mapping[str, Path], name: str = "stage") -> None:
        self.root = "/" + name
        self._files = dict(sorted(files.items()))
        self._dirs = {posixpath.dirname(p) for p in self._files}
        for d in list(self._dirs):
            while d:
                d = posixpath.dirname(d)
                self._dirs.add(d)
        self.broken: dict[str, str] = {}
        self._first: dict[str, str] = {}  # real source -> the first name of it (a file's identity)
        for rel, src in self._files.items():
            self._first.setdefault(os.path.realpath(src), rel)

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

    def files(self) -> list[str]:
        return list(self._files)

    def _path(self, rel: str) -> Path:
        try:
            return self._files[rel]
        except KeyError:
            raise StageError(f"{rel!r} is not in the stage") from None

    def open(self, rel: str) -> BinaryIO:
        return self._path(rel).open("rb")

    def head(self, rel: str, size: int) -> bytes:
        with self.open(rel) as fp:
            return fp.read(size)

    def size(self, rel: str) -> int:
        try:
            return self._path(rel).stat().st_size
        except (OSError, StageError):
            return 0

    def exists(self, rel: str) -> bool:
        return rel in self._files or rel in self._dirs

    def is_file(self, rel: str) -> bool:
        return rel in self._files

    def identity(self, rel: str) -> str:
        """The first name (sorted) of the file `rel` names: the same for two names of one source."""
        return self._first[os.path.realpath(self._path(rel))]

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)
