"""EditPlan: every edit of every binary, decided before anything is written.

Each changed file gets one frozen record of its format (platforms.ElfEdits / MachoEdits / PeEdits),
which apply.py hands as it is to that format's editor; a conflicting edit (one dependency renamed two
ways) is rejected when it is decided.  Each file is then written once, with all its edits.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..analysis.graph import DependencyGraph
from ..analysis.resolve import Analysis, Status
from ..binary import BinaryFile, BinaryFormat, DepKind, Image
from ..errors import RepairError
from ..platforms import ElfEdits
from ..wheel.layout import PACKAGE, install_root, installed_path
from .collect import Collection, Vendored
from .shim import ShimPlan, shim_targets

if TYPE_CHECKING:  # (PeEdits, MachoEdits: imported when a PE / Mach-O file is planned)
    from ..platforms import Edits, MachoEdits, PeEdits


@dataclass(frozen=True)
class EditPlan:
    """The edits of every binary a repair changes, by output tree path (none is empty)."""

    files: Mapping[str, Edits] = field(default_factory=dict)


class Renames:
    """The dependencies one file renames, in the order they are decided; one dependency renamed
    two ways is refused."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        self._new: dict[str, str] = {}

    def add(self, old: str, new: str) -> None:
        if self._new.get(old, new) != new:
            raise RepairError(f"conflicting edits of {self.rel!r}: {old!r} -> {self._new[old]!r} and -> {new!r}")
        if old != new:
            self._new[old] = new

    def pairs(self) -> tuple[tuple[str, str], ...]:
        return tuple(self._new.items())


def _inside(entry: str, directory: str, root_token: str, root: str = PACKAGE) -> bool:
    """Does an rpath entry ($ORIGIN/... or @loader_path/...) point inside the tree, and inside the install
    root `root` unless that is the package (a script's entry to site-packages breaks once installed)?"""
    for token in (root_token, "${ORIGIN}" if root_token == "$ORIGIN" else root_token):
        if entry == token or entry.startswith(token + "/"):
            target = posixpath.normpath(posixpath.join(directory or ".", entry[len(token):].lstrip("/")))
            inside = not target.startswith("..") and not posixpath.isabs(target)
            return inside and (root == PACKAGE or target == root or target.startswith(root + "/"))
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


def _entry_to(token: str, rel: str, target: str) -> str:
    """The relative search-path entry from the binary at tree path `rel` to the directory of `target`;
    refused when installing changes it (a binary of ``.data/platlib`` or ``.data/purelib`` reaching a file
    outside that scheme, or one at the wheel's root reaching into it): the entry would break once installed,
    and the walker reads the wheel's own layout, so it could not check a corrected one."""
    there = posixpath.dirname(target)
    entry = relative_entry(token, posixpath.dirname(rel), there)
    installed = relative_entry(token, posixpath.dirname(installed_path(rel)), posixpath.dirname(installed_path(target)))
    if entry != installed:
        raise RepairError(f"{rel!r} would reach {target!r} through {entry!r}, which installing breaks (it would need "
                          f"{installed!r}): files under <name>-<ver>.data/platlib or /purelib and at the wheel's root "
                          "land in one site-packages; put the binary and its libraries in one of the two places")
    return entry


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
        self.vendored = collection.by_slot()

    def build(self) -> EditPlan:
        files: dict[str, Edits] = {}
        for path in self.a.tree_binaries:
            rel = self.a.relpath(path)
            assert rel is not None
            files[rel] = self._file(path, rel, self.a.binaries[path], install_root(rel), vendored=None)
        for v in self.c.vendored:  # collect() gives each a tree path no file of the tree has
            files[v.dest] = self._file(v.source, v.dest, self.a.binaries[v.source], v.install_root, vendored=v)
        return EditPlan({rel: edits for rel, edits in files.items() if not edits.empty})

    def _targets(self, node: str, root: str) -> Iterator[tuple[str, str]]:
        """(requested name, tree path of what it now resolves to) for `node`'s vendored/in-tree deps, as
        the binaries of install root `root` load them (their own copies)."""
        twins = {src: rel for src, rel in self.c.twins if install_root(rel) == root}
        for edge in self.graph.dependencies(node):
            if edge.hit is not None and (edge.hit, root) in self.vendored:
                yield edge.request.name, self.vendored[(edge.hit, root)].dest
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

    def _file(self, node: str, rel: str, binary: BinaryFile, root: str, vendored: Vendored | None) -> Edits:
        if binary.format is BinaryFormat.ELF:
            return self._elf(node, rel, binary.images[0], root, vendored)
        if binary.format is BinaryFormat.MACHO:
            return self._macho(node, rel, binary, root, vendored)
        return self._pe(node, rel, root)

    def _elf(self, node: str, rel: str, image: Image, root: str, vendored: Vendored | None) -> ElfEdits:
        directory = posixpath.dirname(rel)
        pieces = [piece for entry in (*image.rpaths, *image.runpaths) for piece in entry.split(":") if piece]
        kept = [] if vendored is not None else [p for p in pieces if _inside(p, directory, "$ORIGIN", root)]
        added: list[str] = []
        renames = Renames(rel)
        for request, target in self._targets(node, root):
            new = posixpath.basename(target)
            if new != request:  # a path request ('/build/libfoo.so') becomes a name found through the run path
                renames.add(request, new)
            if not any(_origin_dir(entry, directory) == (posixpath.dirname(target) or ".") for entry in kept):
                added.append(_entry_to("$ORIGIN", rel, target))
        final = _dedupe([*kept, *added])
        soname = vendored.name if vendored is not None else None
        if final == _dedupe(pieces) or not (final or pieces):
            return ElfEdits(renames.pairs(), None, soname)
        # an input's DT_RPATH (inherited by dependencies) stays a DT_RPATH
        old_style = bool(image.rpaths) and not image.runpaths and vendored is None
        return ElfEdits(renames.pairs(), final, soname, old_style)

    def _is_vendored_or_provided(self, target: str) -> bool:
        return any(v.dest == target for v in self.c.vendored) or any(p == target for _d, _r, p in self.c.provided)

    def _macho(self, node: str, rel: str, binary: BinaryFile, root: str, vendored: Vendored | None) -> MachoEdits:
        from ..platforms import MachoEdits

        directory = posixpath.dirname(rel)
        rpaths = _dedupe(r for image in binary.images for r in image.rpaths)
        kept = () if vendored is not None else \
            tuple(r for r in rpaths if _inside(r, directory, "@loader_path", root))
        renames = Renames(rel)
        for request, target in self._targets(node, root):
            if self._is_vendored_or_provided(target) or vendored is not None or \
                    not _macho_reaches(request, target, directory, kept):
                new = _entry_to("@loader_path", rel, target)
                renames.add(request, f"{new}/{posixpath.basename(target)}")
        return MachoEdits(renames.pairs(), f"@rpath/{vendored.name}" if vendored is not None else None,
                          tuple(r for r in rpaths if r not in kept))

    def _pe(self, node: str, rel: str, root: str) -> PeEdits:
        from ..platforms import PeEdits

        renames = Renames(rel)
        for request, target in self._targets(node, root):
            new = posixpath.basename(target)
            if new.lower() != posixpath.basename(request).lower():
                renames.add(request, new)
        return PeEdits(renames.pairs())


def make_plan(analysis: Analysis, collection: Collection) -> EditPlan:
    return Planner(analysis, collection).build()


class Job:  # a plain class, not a dataclass: ~20x cheaper to define at import (repair's start-up)
    """Everything decided for one tree."""

    __slots__ = ("analysis", "blacklisted", "collection", "notes", "plan", "requires", "shim")

    def __init__(self, analysis: Analysis, collection: Collection, plan: EditPlan, shim: ShimPlan,
                 requires: tuple[str, ...], notes: list[str],
                 blacklisted: tuple[tuple[str, str, str], ...] = ()) -> None:
        self.analysis = analysis
        self.collection = collection
        self.plan = plan
        self.shim = shim
        self.requires = requires
        self.notes = notes
        self.blacklisted = blacklisted  # (file, library, symbol): analysis/imports.py


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
        # a program in .data/scripts finds its DLLs in its own directory (copies beside it): no shim
        if analysis.binaries[path].format is not BinaryFormat.PE or rel is None or install_root(rel) != PACKAGE:
            continue
        loaded = [p for walk in analysis.walks if walk.root == path for p in walk.loaded]
        places = [posixpath.dirname(v.dest) for v in collection.vendored
                  if v.source in loaded and v.install_root == PACKAGE]
        places += [d for p in dict.fromkeys(loaded) for d in provided.get(analysis.relpath(p) or p, ())]
        wanted = dirs.setdefault(rel, [])
        wanted += [d for d in dict.fromkeys(places) if d != posixpath.dirname(rel)]
    return shim_targets(dirs, set(analysis.files), _delay_loaded(analysis, collection))


def _delay_loaded(analysis: Analysis, collection: Collection) -> dict[str, list[str]]:
    """PE extension -> tree paths of the DLLs it delay-loads: the delay-load helper searches only
    the default order at the first call, so the shim loads them first by full path."""
    dest = {v.source: v.dest for v in collection.vendored if v.install_root == PACKAGE}
    out: dict[str, list[str]] = {}
    for walk in analysis.walks:
        rel = analysis.relpath(walk.root)
        if rel is None or analysis.binaries[walk.root].format is not BinaryFormat.PE or install_root(rel) != PACKAGE:
            continue
        for edge in walk.edges:
            if edge.request.kind is DepKind.DELAY and edge.hit is not None:
                target = dest.get(edge.hit) or analysis.relpath(edge.hit)
                if target is not None and target not in out.setdefault(rel, []):
                    out[rel].append(target)
    return {k: v for k, v in out.items() if v}
