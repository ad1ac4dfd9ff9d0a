"""EditPlan: every edit of every binary, decided before anything is written.

Edits are format-neutral (rename a dependency, set the search path, set the own name, drop
an LC_RPATH); a conflicting edit (one dependency renamed two ways) is rejected when queued.
Each file is then written once, with all its edits (see repair.py).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..analysis.graph import DependencyGraph
from ..analysis.resolve import Analysis, Status
from ..binary import BinaryFile, BinaryFormat, DepKind, Image
from ..errors import RepairError
from .collect import Collection, Vendored
from .shim import ShimPlan, shim_targets


@dataclass
class FileEdits:
    """Every edit of one binary: renamed dependencies, new search path, own name."""

    format: BinaryFormat
    renames: dict[str, str] = field(default_factory=dict)  # requested name -> new name
    runpath: tuple[str, ...] | None = None  # ELF: new search path (None = unchanged)
    old_style: bool = False  # ELF: keep it a DT_RPATH (inherited by dependencies) as the input had it
    own_name: str | None = None  # ELF soname / Mach-O id
    delete_rpaths: tuple[str, ...] = ()  # Mach-O LC_RPATHs to drop
    add_rpaths: tuple[str, ...] = ()  # Mach-O LC_RPATHs to add

    @property
    def empty(self) -> bool:
        return not (self.renames or self.runpath is not None or self.own_name or self.delete_rpaths
                    or self.add_rpaths)


@dataclass
class EditPlan:
    """The edits of every binary a repair changes, by output tree path."""

    files: dict[str, FileEdits] = field(default_factory=dict)  # output tree path -> edits

    def edits(self, rel: str, fmt: BinaryFormat) -> FileEdits:
        return self.files.setdefault(rel, FileEdits(fmt))

    def rename(self, rel: str, fmt: BinaryFormat, old: str, new: str) -> None:
        edits = self.edits(rel, fmt)
        if edits.renames.get(old, new) != new:
            raise RepairError(f"conflicting edits of {rel!r}: {old!r} -> {edits.renames[old]!r} and -> {new!r}")
        if old != new:
            edits.renames[old] = new


def _inside(entry: str, directory: str, root_token: str) -> bool:
    """Does an rpath entry ($ORIGIN/... or @loader_path/...) point inside the tree?"""
    for token in (root_token, "${ORIGIN}" if root_token == "$ORIGIN" else root_token):
        if entry == token or entry.startswith(token + "/"):
            target = posixpath.normpath(posixpath.join(directory or ".", entry[len(token):].lstrip("/")))
            return not target.startswith("..") and not posixpath.isabs(target)
    return False


def _origin_dir(entry: str, directory: str) -> str | None:
    """The tree directory an ELF run path entry ($ORIGIN/...) names for a binary in `directory`."""
    for token in ("$ORIGIN", "${ORIGIN}"):
        if entry == token or entry.startswith(token + "/"):
            return posixpath.normpath(posixpath.join(directory or ".", entry[len(token):].lstrip("/")))
    return None


def relative_entry(token: str, from_dir: str, to_dir: str) -> str:
    rel = posixpath.relpath(to_dir or ".", from_dir or ".")
    return token if rel == "." else f"{token}/{rel}"


def _macho_reaches(request: str, target: str, directory: str, rpaths: tuple[str, ...]) -> bool:
    """Does `request`, made by a binary in `directory`, still find `target` (tree paths) after the
    repair: through @loader_path, or through one of the binary's own kept @loader_path `rpaths`?
    (An absolute or -L hit, or an rpath that is dropped or inherited from a loader, does not count.)"""
    if request.startswith("@loader_path/"):
        return posixpath.normpath(posixpath.join(directory, request[len("@loader_path/"):])) == target
    if request.startswith("@rpath/"):
        tail = request[len("@rpath/"):]
        return any(posixpath.normpath(posixpath.join(directory, r[len("@loader_path"):].lstrip("/"), tail)) == target
                   for r in rpaths)
    return False


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


class Planner:
    """Builds the EditPlan for one tree from its Analysis and the Collection."""

    def __init__(self, analysis: Analysis, collection: Collection) -> None:
        self.a = analysis
        self.c = collection
        self.graph = DependencyGraph(analysis)
        self.vendored = collection.by_source()
        self.plan = EditPlan()

    def build(self) -> EditPlan:
        for path in self.a.tree_binaries:
            rel = self.a.relpath(path)
            assert rel is not None
            self._file(path, rel, self.a.binaries[path], vendored=None)
        for v in self.c.vendored:
            self._file(v.source, v.dest, self.a.binaries[v.source], vendored=v)
        self.plan.files = {k: e for k, e in self.plan.files.items() if not e.empty}
        return self.plan

    def _targets(self, node: str) -> Iterator[tuple[str, str]]:
        """(requested name, tree path of what it now resolves to) for `node`'s vendored/in-tree deps."""
        twins = dict(self.c.twins)
        for edge in self.graph.dependencies(node):
            if edge.hit in self.vendored:
                yield edge.request.name, self.vendored[edge.hit].dest
            elif edge.hit in twins:  # an outside library the tree ships an identical copy of
                yield edge.request.name, twins[edge.hit]
            elif edge.hit is not None and edge.status is Status.IN_TREE and edge.hit != node:
                rel = self.a.relpath(edge.hit)
                if rel is not None:
                    yield edge.request.name, rel
        dependent = self.a.relpath(node)
        for dep_rel, request, provided in self.c.provided:
            if dep_rel == dependent:
                yield request, provided

    def _file(self, node: str, rel: str, binary: BinaryFile, vendored: Vendored | None) -> None:
        image = binary.images[0]
        if binary.format is BinaryFormat.ELF:
            self._elf(node, rel, image, vendored)
        elif binary.format is BinaryFormat.MACHO:
            self._macho(node, rel, binary, vendored)
        else:
            self._pe(node, rel, vendored)

    def _elf(self, node: str, rel: str, image: Image, vendored: Vendored | None) -> None:
        directory = posixpath.dirname(rel)
        pieces = [piece for entry in (*image.rpaths, *image.runpaths) for piece in entry.split(":") if piece]
        kept = [] if vendored is not None else [p for p in pieces if _inside(p, directory, "$ORIGIN")]
        added: list[str] = []
        for request, target in self._targets(node):
            new = posixpath.basename(target)
            if new != request:  # a path request ('/build/libfoo.so') becomes a name found through the run path
                self.plan.rename(rel, BinaryFormat.ELF, request, new)
            if not any(_origin_dir(entry, directory) == (posixpath.dirname(target) or ".") for entry in kept):
                added.append(relative_entry("$ORIGIN", directory, posixpath.dirname(target)))
        final = _dedupe([*kept, *added])
        if vendored is not None:
            self.plan.edits(rel, BinaryFormat.ELF).own_name = vendored.name
        if final != _dedupe(pieces) and (final or pieces):
            edits = self.plan.edits(rel, BinaryFormat.ELF)
            edits.runpath = final
            edits.old_style = bool(image.rpaths) and not image.runpaths and vendored is None

    def _is_vendored_or_provided(self, target: str) -> bool:
        return any(v.dest == target for v in self.c.vendored) or any(p == target for _d, _r, p in self.c.provided)

    def _macho(self, node: str, rel: str, binary: BinaryFile, vendored: Vendored | None) -> None:
        directory = posixpath.dirname(rel)
        rpaths = _dedupe(r for image in binary.images for r in image.rpaths)
        kept = () if vendored is not None else tuple(r for r in rpaths if _inside(r, directory, "@loader_path"))
        for request, target in self._targets(node):
            if self._is_vendored_or_provided(target) or vendored is not None or \
                    not _macho_reaches(request, target, directory, kept):
                new = relative_entry("@loader_path", directory, posixpath.dirname(target))
                self.plan.rename(rel, BinaryFormat.MACHO, request, f"{new}/{posixpath.basename(target)}")
        drop = tuple(r for r in rpaths if r not in kept)
        edits = self.plan.edits(rel, BinaryFormat.MACHO)
        edits.delete_rpaths = drop
        if vendored is not None:
            edits.own_name = f"@rpath/{vendored.name}"

    def _pe(self, node: str, rel: str, vendored: Vendored | None) -> None:
        for request, target in self._targets(node):
            new = posixpath.basename(target)
            if new.lower() != posixpath.basename(request).lower():
                self.plan.rename(rel, BinaryFormat.PE, request, new)
        if vendored is not None:
            self.plan.edits(rel, BinaryFormat.PE)


def make_plan(analysis: Analysis, collection: Collection) -> EditPlan:
    return Planner(analysis, collection).build()


@dataclass
class Job:
    """Everything decided for one tree."""

    analysis: Analysis
    collection: Collection
    plan: EditPlan
    shim: ShimPlan
    requires: tuple[str, ...]
    notes: list[str]
    blacklisted: tuple[tuple[str, str, str], ...] = ()  # (file, library, symbol): analysis/imports.py


# ---- the DLL shim: which package runs os.add_dll_directory for which extension -------------------

def shim_plan(analysis: Analysis, collection: Collection) -> ShimPlan:
    """PE extensions need os.add_dll_directory for every directory other than their own that holds
    a DLL they load (directly or not): where it was vendored, or where another wheel installs it
    (--provided-by: its install path, relative to the same site-packages)."""
    provided: dict[str, list[str]] = {}  # dependent (tree path, or source of a vendored copy) -> dirs
    for dependent, _request, path in collection.provided:
        provided.setdefault(dependent, []).append(posixpath.dirname(path))
    dirs: dict[str, list[str]] = {}
    for path in analysis.tree_binaries:
        rel = analysis.relpath(path)
        if analysis.binaries[path].format is not BinaryFormat.PE or rel is None:
            continue
        loaded = [p for walk in analysis.walks if walk.root == path for p in walk.loaded]
        places = [posixpath.dirname(v.dest) for v in collection.vendored if v.source in loaded]
        places += [d for p in dict.fromkeys(loaded) for d in provided.get(analysis.relpath(p) or p, ())]
        wanted = dirs.setdefault(rel, [])
        wanted += [d for d in dict.fromkeys(places) if d != posixpath.dirname(rel)]
    return shim_targets(dirs, set(analysis.files), _delay_loaded(analysis, collection))


def _delay_loaded(analysis: Analysis, collection: Collection) -> dict[str, list[str]]:
    """PE extension -> tree paths of the DLLs it delay-loads: the delay-load helper searches only
    the default order at the first call, so the shim loads them first by full path."""
    dest = {v.source: v.dest for v in collection.vendored}
    out: dict[str, list[str]] = {}
    for walk in analysis.walks:
        rel = analysis.relpath(walk.root)
        if rel is None or analysis.binaries[walk.root].format is not BinaryFormat.PE:
            continue
        for edge in walk.edges:
            if edge.request.kind is DepKind.DELAY and edge.hit is not None:
                target = dest.get(edge.hit) or analysis.relpath(edge.hit)
                if target is not None and target not in out.setdefault(rel, []):
                    out[rel].append(target)
    return {k: v for k, v in out.items() if v}
