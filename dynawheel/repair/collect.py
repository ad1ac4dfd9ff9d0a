"""Which libraries to vendor, under which names, and where they go.

Rules:
- every library a tree binary loads that resolved outside the tree and is not the OS's own
  (and every library *those* load) is vendored, unless ``--exclude`` names it (its subtree is
  pruned) or another wheel provides it (``--provided-by``); ``--include`` vendors a system one;
- a library is its real file: one reached under several names (a symlinked soname chain, a
  linked directory) is one library; an outside library whose identical bytes the tree already
  ships under the same name is not vendored: the tree's copy is used;
- one copy per library: beside its consumers when they share one directory, otherwise in the
  shared library directory (``<dist>.libs/`` or ``--lib-dir``);
- executables in ``<name>-<ver>.data/scripts/`` are installed into the scheme's scripts directory
  (``bin/``, ``Scripts/``), whose place relative to site-packages differs by scheme (venv, ``--user``,
  ``--prefix``, ``--target``, Debian's ``/usr/local``): no relative search path from there reaches
  ``<dist>.libs/``.  So each library they load gets its own copy beside them in the scripts directory
  (found through ``$ORIGIN``, ``@loader_path`` or Windows' application directory), named with a hash
  that includes that directory (``<name>-<ver>``: two wheels never share, so never uninstall, one
  file of ``bin/``); a library the package ships that a script loads is copied there too
  (``install_root`` is the one rule; each library is vendored once per install root);
- names are mangled (``libfoo.so.1`` -> ``libfoo-1a2b3c4d.so.1``) with a hash of the content and
  of the mangled names of its own vendored dependencies, so a change anywhere below renames
  everything above; libraries already in the input are never renamed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import posixpath
import re
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..analysis.graph import DependencyGraph
from ..analysis.resolve import Analysis, Edge, Status
from ..binary import BinaryFormat
from ..errors import RepairError, ResolveError, UsageError, WheelFormatError
from ..fsutil import sha256_hex
from ..platforms import backend_of
from ..tree import HostFS, Tree
from ..wheel.layout import PACKAGE, install_root
from ..wheel.tags import parse_filename

# the suffix a mangled name keeps after the hash: wider than analysis.resolve.LIBRARY_NAME (which says
# whether a file is named like a library) since version parts such as '.so.1a' stay in the suffix
_SUFFIX = re.compile(r"\.(so(\.[0-9A-Za-z_]+)*|dll|pyd|dylib)$", re.IGNORECASE)


@dataclass(frozen=True)
class Choices:
    """The user's choices about what to vendor, and under which names."""

    exclude: tuple[str, ...] = ()  # globs on library names: not vendored, subtree pruned
    include: tuple[str, ...] = ()  # globs on library names: vendored even when system
    no_mangle: tuple[str, ...] = ()  # globs: keep these names
    mangle: bool = True
    lib_dir: str = ""  # shared directory (tree-relative); "" = '<dist>.libs'
    allow_missing: bool = False
    provided: Mapping[str, str] = field(default_factory=dict)  # library basename -> tree-relative install path


@dataclass(frozen=True)
class Vendored:
    """A library copied into the output: where it came from, its new name and place."""

    source: str  # where the library was found (resolver namespace = host path)
    requests: tuple[str, ...]  # names it was requested by
    name: str  # its name in the output (file name, soname / id / import name)
    dest: str  # tree-relative path of the copy
    format: BinaryFormat
    sha256: str
    consumers: tuple[str, ...]  # tree-relative paths of what loads it (binaries or other copies)
    install_root: str = PACKAGE  # the root whose binaries load this copy (see install_root)


@dataclass(frozen=True)
class Collection:
    """What a repair vendors, what other wheels provide, and what may stay missing."""

    vendored: tuple[Vendored, ...]  # dependencies first
    provided: tuple[tuple[str, str, str], ...]  # (dependent rel, request, provided install path)
    missing_allowed: tuple[Edge, ...] = ()
    # (source, tree path): an outside library whose identical copy the tree already ships; that copy is used
    twins: tuple[tuple[str, str], ...] = ()

    def by_source(self) -> dict[str, Vendored]:
        """The copy in site-packages of each vendored library (scripts may have their own copies)."""
        return {v.source: v for v in self.vendored if v.install_root == PACKAGE}

    def by_slot(self) -> dict[tuple[str, str], Vendored]:
        """(source, install root) -> the copy the binaries of that root load."""
        return {(v.source, v.install_root): v for v in self.vendored}


def _matches(name: str, globs: Iterable[str], fmt: BinaryFormat) -> bool:
    """Whether a glob (--exclude, --include, --no-mangle) matches a library name or its base name:
    a DLL's case-insensitively, as Windows file names are (`--exclude msvcp140.dll` is `MSVCP140.dll`),
    an ELF or Mach-O library's case-sensitively, as their loaders compare names."""
    base = posixpath.basename(name)
    if fmt is BinaryFormat.PE:
        name, base, globs = name.lower(), base.lower(), [g.lower() for g in globs]
    return any(fnmatch.fnmatchcase(base, g) or fnmatch.fnmatchcase(name, g) for g in globs)


def canonical_analysis(analysis: Analysis, real: Callable[[str], str | None]) -> Analysis:
    """`analysis` with every file outside the tree named by its real path (links resolved).

    One library reached under several names (``libfoo.so -> libfoo.so.1 -> libfoo.so.1.2.3``,
    or a symlinked directory) by different binaries is then one library: one copy.
    """
    cache: dict[str, str] = {}

    def canon(path: str) -> str:
        if analysis.relpath(path) is not None:
            return path
        if path not in cache:
            cache[path] = real(path) or path
        return cache[path]

    def canon_edge(edge: Edge) -> Edge:
        return replace(edge, dependent=canon(edge.dependent), hit=None if edge.hit is None else canon(edge.hit))

    walks = tuple(replace(w, edges=tuple(canon_edge(e) for e in w.edges), loaded=tuple(canon(p) for p in w.loaded))
                  for w in analysis.walks)
    return replace(analysis, walks=walks, binaries={canon(p): b for p, b in analysis.binaries.items()})


def describe_missing(analysis: Analysis, edges: Iterable[Edge]) -> str:
    """A header line, then for each library that cannot be found a line naming it and who needs it, and one
    indented line per place searched (paths inside the tree are shown relative to it)."""
    lines, count = [], 0
    root = analysis.root.rstrip("/") + "/"
    for edge in edges:
        count += 1
        where = analysis.relpath(edge.dependent) or edge.dependent
        binary = analysis.binaries.get(edge.dependent)
        note = backend_of(binary.format).missing_note(edge.request.name) if binary is not None else None
        named = f"  {edge.request.name!r} needed by {where!r}" + (f" ({note})" if note else "")
        lines.append(f"{named}, searched:" if edge.tried else f"{named}: nowhere to look")
        lines += [f"    {a.path} ({a.via.replace(root, '') if root != '/' else a.via}): {a.outcome}"
                  for a in edge.tried]
    head = f"cannot find {count} needed librar{'y' if count == 1 else 'ies'} " \
           "(add a directory with -L DIR, or go on with --allow-missing):"
    return "\n".join([head, *lines])


def mangled_name(name: str, digest: str) -> str:
    """'libfoo.so.1' -> 'libfoo-1a2b3c4d.so.1'; 'foo.dll' -> 'foo-1a2b3c4d.dll'."""
    match = _SUFFIX.search(name)
    stem, suffix = (name[: match.start()], name[match.start():]) if match else (name, "")
    if stem.endswith("-" + digest):
        return name
    return f"{stem}-{digest}{suffix}"


Slot = tuple[str, str]  # (library source, install root of the binaries that load this copy)


class _Collector:
    def __init__(self, analysis: Analysis, choices: Choices, dist_libs: str, digests: Mapping[str, str],
                 tree_digests: Mapping[str, str] | None) -> None:
        self.a = analysis
        self.digests, self.tree_digests = digests, tree_digests
        self.twins: dict[Slot, str] = {}  # (source, root) -> tree path of the same bytes in that root
        self.by_name: dict[str, list[str]] = defaultdict(list)
        for path in analysis.tree_binaries:
            rel = analysis.relpath(path)
            if rel is not None:
                self.by_name[posixpath.basename(rel)].append(rel)
        self.graph = DependencyGraph(analysis)
        self.choices = choices
        self.lib_dir = choices.lib_dir.strip("/") or dist_libs
        self.vendor: dict[Slot, list[Edge]] = defaultdict(list)  # slot -> edges that load it
        self.provided: list[tuple[str, str, str]] = []
        self.missing: list[Edge] = []

    def rel(self, path: str) -> str | None:
        return self.a.relpath(path)

    def root_of(self, path: str) -> str | None:
        """The install root of a tree file (None: outside the tree)."""
        rel = self.rel(path)
        return None if rel is None else install_root(rel)

    def home(self, root: str) -> str:
        """Where copies for `root` go when their consumers do not share one directory."""
        return self.lib_dir if root == PACKAGE else root

    def digest(self, source: str) -> str:
        rel = self.rel(source)
        return self.tree_digests[rel] if rel is not None and self.tree_digests is not None else self.digests[source]

    def chosen(self, edge: Edge, globs: Iterable[str]) -> bool:
        """Whether one of `globs` names the library `edge` requests (by the rule of its format)."""
        return _matches(edge.request.name, globs, self.a.binaries[edge.dependent].format)

    def wanted(self, edge: Edge, root: str) -> bool:
        """Is this edge's library to be vendored for binaries installed in `root`?"""
        if edge.hit is None or self.chosen(edge, self.choices.exclude):
            return False
        if edge.status is Status.EXTERNAL:
            return True
        if edge.status is Status.IN_TREE:  # shipped, but installed elsewhere than what loads it: a copy
            return self.root_of(edge.hit) not in (None, root)
        return edge.status is Status.SYSTEM and bool(self.choices.include) and self.chosen(edge, self.choices.include)

    def walk(self) -> None:
        stack = [(p, self.root_of(p) or PACKAGE) for p in self.a.tree_binaries]
        seen = set(stack)
        while stack:
            node, root = stack.pop()
            for edge in self.graph.dependencies(node):
                self._visit(edge, root, stack, seen)

    def _visit(self, edge: Edge, root: str, stack: list[Slot], seen: set[Slot]) -> None:
        base = posixpath.basename(edge.request.name)
        # another wheel's library is in site-packages: out of reach of a script, which gets a copy
        if base in self.choices.provided and edge.status is not Status.IN_TREE and root == PACKAGE:
            self.provided.append((self.rel(edge.dependent) or edge.dependent, edge.request.name,
                                  self.choices.provided[base]))
            return
        if edge.status is Status.MISSING and not self.chosen(edge, self.choices.exclude):
            self.missing.append(edge)
            return
        if edge.hit is None or edge.hit == edge.dependent:
            return
        if self.wanted(edge, root) and self._twin(edge.hit, edge.request.name, root):
            return  # the tree already ships these bytes: that copy is used (and walked as a tree binary)
        if self.wanted(edge, root):
            self.vendor[(edge.hit, root)].append(edge)
        elif edge.status is not Status.IN_TREE:
            return
        if (edge.hit, root) not in seen:
            seen.add((edge.hit, root))
            stack.append((edge.hit, root))

    def _twin(self, source: str, request: str, root: str) -> str | None:
        """A binary of the tree in `root` with the same name and the same bytes as the outside `source`."""
        if self.tree_digests is None or self.rel(source) is not None:
            return None
        if (source, root) not in self.twins:
            names = {posixpath.basename(request), posixpath.basename(source)}
            same = [rel for name in sorted(names) for rel in self.by_name.get(name, ())
                    if install_root(rel) == root and self.tree_digests[rel] == self.digests[source]]
            if not same:
                return None
            self.twins[(source, root)] = same[0]
        return self.twins[(source, root)]


def collect(analysis: Analysis, choices: Choices, dist_libs: str, digests: Mapping[str, str],
            tree_digests: Mapping[str, str] | None = None) -> Collection:
    """Decide the vendored set. `digests`: sha256 hex of each external file (by source path);
    `tree_digests`: the same for files of the tree (by tree path), to find copies it already ships."""
    c = _Collector(analysis, choices, dist_libs, digests, tree_digests)
    c.walk()
    if c.missing and not choices.allow_missing:
        unique = {(e.dependent, e.request.name): e for e in c.missing}
        raise ResolveError(describe_missing(analysis, unique.values()))
    sources = {src for src, _root in c.vendor}
    order = [(p, root) for p in DependencyGraph(analysis).topological_order(sources) if p in sources
             for root in sorted({r for s, r in c.vendor if s == p})]
    names = _names(c, order)
    dests = _placement(c, order, names)
    vendored = tuple(
        Vendored(source=src, requests=tuple(sorted({e.request.name for e in c.vendor[(src, root)]})),
                 name=names[(src, root)], dest=dests[(src, root)], format=analysis.binaries[src].format,
                 sha256=c.digest(src),
                 consumers=tuple(sorted({_consumer(c, e.dependent, root, dests) for e in c.vendor[(src, root)]})),
                 install_root=root)
        for src, root in order)
    _check_collisions(analysis, vendored)
    twins = tuple(sorted((src, rel) for (src, _root), rel in c.twins.items()))
    return Collection(vendored, tuple(sorted(set(c.provided))), tuple(c.missing), twins)


def _consumer(c: _Collector, dependent: str, root: str, dests: Mapping[Slot, str]) -> str:
    """Tree-relative path of what loads a library (a vendored copy not placed yet: its root's home)."""
    if (dependent, root) in c.vendor:
        return dests.get((dependent, root)) or posixpath.join(c.home(root), "_")
    return c.rel(dependent) or dependent


def _names(c: _Collector, order: list[Slot]) -> dict[Slot, str]:
    """New names, dependencies first (a dependency's new name feeds its dependents' hash); a copy for
    scripts also hashes its root ('<name>-<ver>.data/scripts'): no two wheels share a file of bin/."""
    names: dict[Slot, str] = {}
    for src, root in order:
        edges = c.vendor[(src, root)]
        request = sorted({posixpath.basename(e.request.name) for e in edges}, key=lambda n: (-len(n), n))[0]
        if not c.choices.mangle or _matches(request, c.choices.no_mangle, c.a.binaries[src].format):
            names[(src, root)] = request
            continue
        deps = sorted(names[(e.hit, root)] for e in c.graph.dependencies(src)
                      if e.hit is not None and (e.hit, root) in names)
        digest = hashlib.sha256("\n".join([c.digest(src), *deps, *([root] if root else [])]).encode()).hexdigest()[:8]
        names[(src, root)] = mangled_name(request, digest)
    return names


def _placement(c: _Collector, order: list[Slot], names: Mapping[Slot, str]) -> dict[Slot, str]:
    """Beside the consumers when they share a directory, else in the root's home (the shared lib dir,
    or the scripts directory)."""
    dests: dict[Slot, str] = {}
    for slot in reversed(order):  # dependents first: their place is known
        dirs = {posixpath.dirname(_consumer(c, e.dependent, slot[1], dests)) for e in c.vendor[slot]}
        where = dirs.pop() if len(dirs) == 1 else c.home(slot[1])
        dests[slot] = posixpath.join(where, names[slot]) if where else names[slot]
    return dests


def _check_collisions(analysis: Analysis, vendored: Iterable[Vendored]) -> None:
    taken = set(analysis.files)
    for v in vendored:
        if v.dest in taken:
            raise RepairError(f"cannot vendor {v.source!r} as {v.dest!r}: the tree already has a file there "
                              "(use name mangling, or --lib-dir)")
        taken.add(v.dest)


# ---- inputs: what other wheels provide, digests, the library directory -----------------------

def sha256_file(host: HostFS, path: str) -> str:
    with host.open(path) as fp:
        return sha256_hex(fp)


class HostDigests(dict[str, str]):
    def __init__(self, host: HostFS) -> None:
        super().__init__()
        self.host = host

    def __missing__(self, path: str) -> str:
        value = sha256_file(self.host, path)
        self[path] = value
        return value

    def prefetch(self, paths: set[str]) -> HostDigests:
        """Performance: hash these files on all cores now (collect asks for them one at a time);
        a file that cannot be read is left for __missing__ to report."""
        todo = sorted(paths - self.keys())
        if len(todo) > 1:
            def one(path: str) -> str | None:
                try:
                    return sha256_file(self.host, path)
                except OSError:
                    return None

            with ThreadPoolExecutor() as pool:
                self.update({p: v for p, v in zip(todo, pool.map(one, todo)) if v is not None})
        return self


class TreeDigests(dict[str, str]):
    """sha256 hex of files of the tree, read on first use."""

    def __init__(self, tree: Tree) -> None:
        super().__init__()
        self.tree = tree

    def __missing__(self, rel: str) -> str:
        with self.tree.open(rel) as fp:
            self[rel] = sha256_hex(fp)
        return self[rel]


def provided_libraries(wheels: tuple[Path, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(library basename -> install path, Requires-Dist lines) of wheels that provide libraries."""
    provided: dict[str, str] = {}
    requires = []
    for wheel in wheels:
        name, version, _build, _tags = parse_filename(wheel.name)
        for rel in _wheel_install_paths(wheel):
            provided.setdefault(posixpath.basename(rel), rel)
        requires.append(f"{name.replace('_', '-')}=={version.replace('_', '-')}")
    return provided, tuple(requires)


def _wheel_install_paths(wheel: Path) -> list[str]:
    """Where the files of a --provided-by wheel install (site-packages relative)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
    except FileNotFoundError:
        raise UsageError(f"--provided-by {str(wheel)!r}: no such wheel") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise WheelFormatError(f"--provided-by {str(wheel)!r}: not a wheel ({exc})") from None
    return [rel for member in names if not member.endswith("/") and (rel := _install_path(member))]


def _install_path(member: str) -> str | None:
    top, _, rest = member.partition("/")
    if top.endswith(".dist-info"):
        return None
    if top.endswith(".data"):
        scheme, _, sub = rest.partition("/")
        return sub if scheme in ("purelib", "platlib") else None
    return member


def dist_name(tree_files: list[str], dist: str | None) -> str:
    """The distribution's name: given, else from a .dist-info, else the first top-level directory."""
    if dist:
        return dist
    for name in tree_files:
        if name.split("/", 1)[0].endswith(".dist-info"):
            return name.split("/", 1)[0].rsplit("-", 1)[0]
    tops = sorted({n.split("/", 1)[0] for n in tree_files if "/" in n})
    return tops[0] if tops else "vendored"


def dist_libs(tree_files: list[str], dist: str | None) -> str:
    """The shared library directory: '<dist>.libs'."""
    return f"{dist_name(tree_files, dist)}.libs"


def check_one_file_per_request(analysis: Analysis) -> None:
    """A universal Mach-O's slices must get each dependency from the same file: one load command
    serves every slice, so thin per-arch copies in different places cannot be vendored."""
    hits: dict[tuple[str, str], dict[str, str]] = {}
    for walk in analysis.walks:
        for edge in walk.edges:
            binary = analysis.binaries.get(edge.dependent)
            if edge.hit is not None and edge.status is Status.EXTERNAL and binary is not None and \
                    binary.format is BinaryFormat.MACHO:
                hits.setdefault((edge.dependent, edge.request.name), {}).setdefault(edge.arch, edge.hit)
    for (dependent, request), by_arch in sorted(hits.items()):
        if len(set(by_arch.values())) > 1:
            where = ", ".join(f"{arch}: {path}" for arch, path in sorted(by_arch.items()))
            raise RepairError(f"{request!r} needed by {analysis.relpath(dependent) or dependent!r} is a different file "
                              f"per architecture ({where}): merge them into one universal file "
                              "(llvm-lipo -create) and vendor that")
