"""The one deterministic walker: every binary of a tree, its dependencies, as each loader finds them.

:func:`analyze` sniffs every file of a :class:`~dynawheel.tree.Tree` by magic bytes,
parses the binaries (a bad file is reported as :class:`BadFile`, never fatal), then walks
each binary's dependencies breadth first, per image (arch), exactly as the format's
loader does: the backend says where to look (:meth:`Backend.candidates`), this module
checks each place (exists? parses? right arch?) and records every attempt.

System libraries (``Backend.is_system``) are still looked up: ld.so loads them from
disk and their own dependencies are walked too (a system library that is not found is
reported as SYSTEM, never MISSING).  A candidate that exists but cannot be parsed, or that the
loader refuses once found (``Backend.refusal``: glibc's "CPU ISA level is lower than required"),
stops the search for backends with ``stops_at_bad_file`` (glibc fails on "invalid ELF header").

Within one walk an object already loaded under the same key (its request name, its
path, or, for backends with ``match_soname``, its soname) satisfies later requests, and
a file already loaded under another name is not loaded twice; so cycles terminate.
Each distinct file is read and parsed once per :func:`analyze` call, and walked once: names
of one file in one directory (soname symlinks) share its walk, re-rooted at each name
(``$ORIGIN`` is the same for all of them, so is everything ld.so does).
"""

from __future__ import annotations

import enum
import itertools
import os
import posixpath
import re
from collections import deque
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from ..binary import BinaryFile, BinaryFormat, Dependency, Image
from ..errors import BinaryFormatError, DynawheelError, WheelFormatError
from ..log import get_logger
from ..platforms import MAGIC_READ, Backend, Candidate, LinuxSystem, Loaded, backend_for, backend_of
from ..search import SearchPaths
from ..tree import DirTree, HostFS, Tree, in_tree
from ..wheel.layout import PACKAGE, install_root

log = get_logger(__name__)

PARSE_THREADS = min(4, os.cpu_count() or 1)
# Bounds on the work one analysis does and keeps, whatever the binaries ask (1,500 DT_NEEDED x a
# 1,500-entry RPATH are 2.25 million lookups): an edge keeps its first KEPT_ATTEMPTS attempts, a
# summary of the rest and the hit; an analysis makes at most MAX_LOOKUPS lookups (a big system directory,
# /usr/lib/x86_64-linux-gnu with 2,254 libraries, needs 19,272); requests beyond are "not searched", missing.
# The glibc-hwcaps and legacy hwcaps subdirectories of a search directory (up to 18 on x86-64) are tried
# only where they exist (one test per directory, not counted); a miss in one that exists counts
# 1/QUIET_SHARE of a lookup.  Counted whole, torch's 38,052 such candidates and 3,136 lookups took 41 %
# of the budget.  The budget is kept in units of 1/QUIET_SHARE lookup (`_Files.work`).
KEPT_ATTEMPTS = 64
MAX_LOOKUPS = 100_000
QUIET_SHARE = 8  # quiet misses per lookup of the budget
MAX_WORK = MAX_LOOKUPS * QUIET_SHARE
BIG_FILE = 32 << 20  # parsed on a background thread
# binaries of a directory per process at least, to parse them in forked processes (a fork and the pickles
# of the results cost ~10 ms: /usr/lib/x86_64-linux-gnu's 2,041 files take ~0.45 s to parse)
FORK_LEAST = 200
# the flag of a library found in the tree but in another install root than the binary that loads it
APART_FLAG = ("installed apart: .data/scripts goes to the scripts directory (bin/), the rest to site-packages: found "
              "in the wheel, not once installed (`dynawheel repair` copies it beside the program)")
# Names only ever used to *report* a non-binary that pretends to be one, never to pick a format.
LIBRARY_NAME = re.compile(r"\.(so(\.[0-9]+)*|dylib|dll|pyd)$", re.IGNORECASE)


SCRIPTS = ".data/scripts/"  # in every path of the scripts scheme (wheel.layout.install_root)
NOT_LOADABLE = "not loadable: "  # the start of an Attempt's outcome when the loader finds a file and refuses it


class Status(str, enum.Enum):
    IN_TREE = "in_tree"  # found inside the tree
    SYSTEM = "system"  # provided by the OS (policy whitelist, interpreter, shared cache)
    EXTERNAL = "external"  # found outside the tree, not a system library: to vendor
    MISSING = "missing"  # not found anywhere: the load fails
    OPTIONAL_MISSING = "optional_missing"  # a weak dependency not found: the load goes on


@dataclass(frozen=True)
class Attempt:
    """One place the resolver looked for a library, and what it found there."""

    path: str  # where it looked (resolver namespace)
    via: str  # why it looked there
    outcome: str  # 'ok', 'not found', 'wrong arch (i686, need x86_64)', 'not loadable: ...'


@dataclass(frozen=True)
class Edge:
    """One request of one image: how it resolved (or not), to which path, after which attempts."""

    dependent: str  # path of the image that makes the request
    arch: str
    request: Dependency
    status: Status
    hit: str | None  # path of the library that satisfies it
    tried: tuple[Attempt, ...] = ()
    flag: str | None = None  # a warning: 'loads on Python <= 3.7 only', ...
    loaded_here: bool = False  # this request loaded a new object (not one loaded before)


@dataclass(frozen=True)
class BadFile:
    """A file of the tree that looks like a binary but cannot be parsed, and why."""

    path: str
    message: str


@dataclass(frozen=True)
class Walk:
    """The load chain from one root binary of the tree: its edges and the load order."""

    root: str
    arch: str
    edges: tuple[Edge, ...]
    loaded: tuple[str, ...]  # paths in load order, root first


@dataclass(frozen=True)
class Analysis:
    """Everything `analyze` found in a tree: its binaries, their load chains, bad files."""

    root: str  # the tree's root in the resolver's namespace
    files: tuple[str, ...]  # every file of the tree (relative)
    binaries: Mapping[str, BinaryFile] = field(compare=False)  # namespace path -> parsed file
    bad: tuple[BadFile, ...]
    walks: tuple[Walk, ...]
    tree_binaries: tuple[str, ...]  # namespace paths of the binaries inside the tree, sorted
    # path -> the real file behind it (symlinks resolved): host paths -> real host path,
    # tree paths -> tree-relative real path.  Vendor the real file of a soname chain.
    real_paths: Mapping[str, str] = field(default_factory=dict, compare=False)
    # tree binary path -> the path of the same file in the same directory that was walked
    # (its walk, re-rooted, is this path's walk): soname symlinks are analysed once.
    aliases: Mapping[str, str] = field(default_factory=dict, compare=False)

    def relpath(self, path: str) -> str | None:
        """Tree-relative path, or None for a path outside the tree."""
        return in_tree(self.root, path)


class _Files:
    """Every file read in one analysis: existence and parses cached by file identity."""

    def __init__(self, tree: Tree, search: SearchPaths) -> None:
        self.tree, self.host = tree, HostFS(search.sysroot)
        self._ident: dict[str, tuple[str, str] | None] = {}
        self._parsed: dict[tuple[str, str], BinaryFile | BadFile | None] = {}
        self._folded: dict[str, str] | None = None  # lower-cased tree path -> its spelling
        self._dirs: dict[str, bool] = {}  # host directory -> exists
        self._holds: dict[str, bool] = {}  # directory -> whether the tree or the host has it
        # directory -> (the subdirectories asked, those it has); one SearchPaths per analysis: the same asked
        self._present: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.work = 0  # candidates tried: QUIET_SHARE per lookup, 1 per quiet one (bounded by MAX_WORK)
        self.over = False  # the budget was passed (said once)

    def spelled(self, path: str) -> str:
        """`path`, or when it is a tree path that does not exist, the tree file whose path differs
        from it only in case (the first in sorted order), as Windows' lookup finds it."""
        rel = in_tree(self.tree.root, path)
        if not rel or self.identity(path) is not None:
            return path
        if self._folded is None:
            self._folded = {}
            for name in self.tree.files():
                self._folded.setdefault(name.lower(), name)
        found = self._folded.get(rel.lower())
        return path if found is None else posixpath.join(self.tree.root, found)

    def identity(self, path: str) -> tuple[str, str] | None:
        if path not in self._ident:
            self._ident[path] = self._find(path)
        return self._ident[path]

    def _find(self, path: str) -> tuple[str, str] | None:
        rel = in_tree(self.tree.root, path)
        if rel:
            try:
                if self.tree.is_file(rel):
                    return ("tree", self.tree.identity(rel))
            except DynawheelError:
                pass  # e.g. a link escaping the tree: the host may still have it
        if not self._host_dir(posixpath.dirname(path)):
            return None
        real = self.host.real(path)
        return ("host", real) if real is not None else None

    def _host_dir(self, directory: str) -> bool:
        """Whether a host directory may hold files: one lookup per directory, not per candidate
        (a thousand search directories that do not exist cost a thousand lookups, not millions)."""
        if self.host.sysroot != "/":
            return True  # below a sysroot absolute links are re-rooted: HostFS.real decides
        known = self._dirs.get(directory)
        if known is None:
            known = self._dirs[directory] = os.path.isdir(directory)
        return known

    def quiet_paths(self, path: str, subdirs: tuple[str, ...]) -> list[str]:
        """`path`'s name in those `subdirs` of its directory that the tree or the host has, in order (one
        test per directory, remembered): the rest can only miss."""
        head, sep, name = path.rpartition("/")
        known = self._present.get(head)
        if known is None or (known[0] is not subdirs and known[0] != subdirs):
            known = self._present[head] = (subdirs, tuple(sub for sub in subdirs if self._has_dir(f"{head}{sep}{sub}")))
        return [f"{head}{sep}{sub}/{name}" for sub in known[1]] if known[1] else []

    def _has_dir(self, directory: str) -> bool:
        known = self._holds.get(directory)
        if known is None:
            known = self._holds[directory] = self._tree_dir(directory) or self._host_dir(directory)
        return known

    def _tree_dir(self, directory: str) -> bool:
        rel = in_tree(self.tree.root, directory)
        if rel is None:
            return False
        try:
            return rel == "" or self.tree.exists(rel)
        except DynawheelError:
            return False

    def known(self) -> int:
        """How many paths' identities are known (they are kept in the order they were first asked)."""
        return len(self._ident)

    def known_since(self, count: int) -> list[tuple[str, tuple[str, str] | None]]:
        """The identities learnt after the first `count`, in order."""
        return list(itertools.islice(self._ident.items(), count, None))

    def learn(self, idents: Iterable[tuple[str, tuple[str, str] | None]]) -> None:
        """Identities another process found (for the same tree and host), after those known here."""
        for path, ident in idents:
            self._ident.setdefault(path, ident)

    def real_paths(self) -> dict[str, str]:
        return {path: ident[1] for path, ident in self._ident.items() if ident is not None}

    def parsed(self, path: str) -> BinaryFile | BadFile | None:
        """The parse of the file at `path`; None when not a binary at all or absent."""
        ident = self.identity(path)
        if ident is None:
            return None
        if ident not in self._parsed:
            self._parsed[ident] = self._as_tree_file(ident) or self._parse(ident)
        return self._parsed[ident]

    def _as_tree_file(self, ident: tuple[str, str]) -> BinaryFile | None:
        """A host file that is a file of the tree, parsed as such: that parse, under its host name (a parse
        depends on the bytes only; ld.so.cache names /usr/lib/x86_64-linux-gnu's libraries by /lib/...: 312
        files of show /usr/lib/x86_64-linux-gnu not parsed twice)."""
        where, name = ident
        rel = in_tree(self.tree.root, name) if where == "host" else None
        done = self._parsed.get(("tree", rel)) if rel else None
        return replace(done, path=name) if isinstance(done, BinaryFile) else None

    def parse_forked(self, paths: list[str], workers: int) -> None:
        """Parse the files at `paths` (each distinct file once) over `workers` processes (forked: see
        analysis/forked.py), and keep the results as :meth:`parsed` would have made them one by one."""
        from .forked import in_forks

        idents = [i for i in dict.fromkeys(self.identity(p) for p in paths) if i is not None and i not in self._parsed]
        chunks = [idents[k::workers] for k in range(workers)]  # interleaved: big and small files in every chunk
        for chunk, results in zip(chunks, in_forks(lambda part: [self._parse(i) for i in part], chunks)):
            self._parsed.update(zip(chunk, results))
        log.debug("%d binaries parsed in %d processes", len(idents), workers)

    def _parse(self, ident: tuple[str, str]) -> BinaryFile | BadFile | None:
        where, name = ident
        try:
            with self.tree.open(name) if where == "tree" else self.host.open(name) as fp:
                head = fp.read(MAGIC_READ)
                backend = backend_for(head)
                if backend is None:
                    return BadFile(name, f"{name!r} is not a binary (unknown magic {head[:4]!r})")
                return backend.parse(fp, name)
        except BinaryFormatError as exc:
            return BadFile(name, str(exc))
        except (OSError, DynawheelError) as exc:
            return BadFile(name, f"cannot read {name!r}: {exc}")


def _sniff(tree: Tree, rel: str, bad: list[BadFile]) -> bool:
    """True for a binary (by magic bytes); a non-binary *named* like a library is reported.  A wheel
    member not named like a library whose first bytes cannot be read (bad deflate data, a bad local
    header) is not an unreadable binary but a broken wheel: WheelFormatError."""
    try:
        head = tree.head(rel, MAGIC_READ)
    except WheelFormatError as exc:
        if not LIBRARY_NAME.search(rel):
            raise WheelFormatError(f"broken wheel: {exc}") from None
        log.debug("cannot sniff %r: %s", rel, exc)
        return True  # an unreadable library: the parse reports it, one line, and the audit goes on
    except (OSError, DynawheelError) as exc:
        log.debug("cannot sniff %r: %s", rel, exc)
        return True  # let the parse report it
    if backend_for(head) is not None:
        return True
    if LIBRARY_NAME.search(rel):
        bad.append(BadFile(rel, f"{rel!r} is named like a library but is not an ELF, PE or Mach-O file"))
    return False


def _parse_all(tree: Tree, files: _Files, rels: list[str], workers: int | None
               ) -> list[tuple[str, BinaryFile | BadFile | None]]:
    """Parse the tree's binaries; big ones on background threads (reading a compressed wheel
    member is mostly zlib work, which releases the GIL), the rest on this thread; a directory's many
    binaries on every core (`workers` processes; None: one per core when there are FORK_LEAST per process)."""
    paths = {rel: posixpath.join(tree.root, rel) for rel in rels}
    workers = _processes(tree, len(rels), workers)
    if workers > 1:
        files.parse_forked([paths[rel] for rel in rels], workers)
        return [(rel, files.parsed(paths[rel])) for rel in rels]
    big = sorted((rel for rel in rels if tree.size(rel) >= BIG_FILE), key=tree.size, reverse=True)
    if not big or len(rels) == 1:  # nothing to overlap: no threads (nor their ~2 ms of imports)
        return [(rel, files.parsed(paths[rel])) for rel in rels]
    from concurrent.futures import ThreadPoolExecutor

    done: dict[str, BinaryFile | BadFile | None] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(PARSE_THREADS, len(big)))) as pool:
        futures = {rel: pool.submit(files.parsed, paths[rel]) for rel in big}
        for rel in rels:
            if rel not in futures:
                done[rel] = files.parsed(paths[rel])
        done.update((rel, future.result()) for rel, future in futures.items())
    return [(rel, done[rel]) for rel in rels]


def _processes(tree: Tree, pieces: int, workers: int | None) -> int:
    """How many processes share `pieces` of a tree's work: a directory's, `workers` (None: one per core with
    FORK_LEAST pieces each, see analysis/forked.py); a wheel's members are not read in children (its threads,
    its zip)."""
    if not isinstance(tree, DirTree):
        return 1
    from .forked import fork_safe, fork_workers

    return fork_workers(pieces, FORK_LEAST) if workers is None else workers if fork_safe() else 1


def analyze(tree: Tree, search: SearchPaths | None = None, *, workers: int | None = None) -> Analysis:
    """Parse every binary of `tree` and walk the dependencies of each, per image.  A directory's binaries
    are parsed in `workers` processes (None: one per core for a big directory; the result is the same)."""
    search = search if search is not None else SearchPaths.from_host()
    files = _Files(tree, search)
    files_list = tuple(tree.files())
    bad: list[BadFile] = [BadFile(rel, msg) for rel, msg in sorted(tree.broken.items())]
    binaries: dict[str, BinaryFile] = {}
    in_tree_paths: list[str] = []
    for rel, result in _parse_all(tree, files, [rel for rel in files_list if _sniff(tree, rel, bad)], workers):
        path = posixpath.join(tree.root, rel)
        if isinstance(result, BadFile):
            bad.append(BadFile(rel, result.message))
        elif result is not None:
            binaries[path] = result
            in_tree_paths.append(path)
    walker = _Walker(files, search, binaries)
    aliases = _aliases(tree, files, in_tree_paths)
    roots = list(dict.fromkeys(aliases.get(path, path) for path in in_tree_paths))  # walked, in this order
    done = _walk_all(walker, roots, min(2, _processes(tree, len(roots), workers)))
    walks: list[Walk] = []
    for path in in_tree_paths:
        first = aliases.get(path, path)
        walks.extend(done[first] if first == path else (_renamed(w, first, path) for w in done[first]))
    walks = [_installed_apart(tree.root, w) for w in walks]
    return Analysis(
        root=tree.root, files=files_list, binaries=binaries, bad=tuple(bad), walks=tuple(walks),
        tree_binaries=tuple(in_tree_paths), real_paths=files.real_paths(), aliases=aliases,
    )


def _walk_all(walker: _Walker, roots: list[str], processes: int) -> dict[str, list[Walk]]:
    """{root: its walks (one per image)}, the roots walked in order; with 2 `processes`, the second half in a
    forked child (analysis/forked.py), its walks and what they added to the analysis merged after this
    process's own, as one process walking them in order would have added them.  A walk depends on the walks
    before it only through the lookup budget: when both halves' lookups together pass it, the second half is
    walked again here, after the first (it then meets the budget where one process would)."""
    if processes < 2 or len(roots) < 2:
        return walker.walk_roots(roots, os.getpid()).walks
    from .forked import in_forks

    here = os.getpid()
    cut = len(roots) * 11 // 20  # this process also loads the child's walks (the child dumps them): it takes more
    chunks = [roots[:cut], roots[cut:]]
    mine, theirs = in_forks(lambda part: walker.walk_roots(part, here), chunks)
    if theirs.pid != here and not walker.take(theirs):
        theirs = walker.walk_roots(chunks[1], here)
    log.debug("%d roots walked in 2 processes", len(roots))
    return {**mine.walks, **theirs.walks}


def _installed_apart(root: str, walk: Walk) -> Walk:
    """`walk` with a flag on each library it finds in the tree but in another install root than its root
    binary's (a program of .data/scripts and a library of the package): found here, not once installed."""
    if SCRIPTS not in walk.root and not any(e.hit is not None and SCRIPTS in e.hit for e in walk.edges):
        return walk  # performance: nothing of it is in a scripts directory (install_root needs one)
    rel = in_tree(root, walk.root)
    home = install_root(rel) if rel is not None else PACKAGE
    apart = {e.hit for e in walk.edges if e.status is Status.IN_TREE and e.hit is not None and e.flag is None
             and (hit := in_tree(root, e.hit)) is not None and install_root(hit) != home}
    if not apart:
        return walk
    return replace(walk, edges=tuple(replace(e, flag=APART_FLAG) if e.hit in apart and e.status is Status.IN_TREE
                                     and e.flag is None else e for e in walk.edges))


def _kept(tried: list[Attempt], more: int) -> tuple[Attempt, ...]:
    """The attempts an edge keeps: the first ones, one line for those left out, the last (the hit)."""
    if not more:
        return tuple(tried)
    summary = Attempt("...", f"{more} more places", "not found")
    return (*tried[:KEPT_ATTEMPTS], summary, *tried[KEPT_ATTEMPTS:])


def _aliases(tree: Tree, files: _Files, paths: list[str]) -> dict[str, str]:
    """{path: the path walked for it} for tree binaries that are another name of a file in the same
    directory (soname symlinks): the real file's own name is walked when it is one of them."""
    groups: dict[tuple[tuple[str, str] | None, str], list[str]] = {}
    for path in paths:
        ident = files.identity(path)
        groups.setdefault((ident, posixpath.dirname(path)) if ident else (None, path), []).append(path)
    out: dict[str, str] = {}
    for (ident, _where), names in groups.items():
        if len(names) > 1 and ident is not None:
            first = next((n for n in names if in_tree(tree.root, n) == ident[1]), names[0])
            out.update((n, first) for n in names if n != first)
    return out


def _renamed(walk: Walk, old: str, new: str) -> Walk:
    """`walk` (rooted at `old`) as the walk of `new`, another name of the same file in the same
    directory: the root's path changes wherever it appears (dependent, hit, attempts, and the
    "DT_RPATH of ..." texts), nothing else does."""
    tail = " of " + old

    def attempt(a: Attempt) -> Attempt:
        if a.path != old and not a.via.endswith(tail):
            return a
        via = a.via[: -len(old)] + new if a.via.endswith(tail) else a.via
        return Attempt(new if a.path == old else a.path, via, a.outcome)

    def edge(e: Edge) -> Edge:
        tried = tuple(attempt(a) for a in e.tried)
        if e.dependent != old and e.hit != old and all(x is y for x, y in zip(tried, e.tried)):
            return e
        return replace(e, dependent=new if e.dependent == old else e.dependent,
                       hit=new if e.hit == old else e.hit, tried=tried)

    return Walk(new, walk.arch, tuple(edge(e) for e in walk.edges),
                tuple(new if p == old else p for p in walk.loaded))


class _State:
    """One walk: what is loaded, under which keys, and through which chain (a plain class: a private
    mutable record, no dataclass to create at import)."""

    def __init__(self) -> None:
        self.loaded: dict[str, tuple[str, Status]] = {}  # key -> (path, status)
        self.idents: dict[tuple[str, str], tuple[str, Status]] = {}
        self.chains: dict[str, tuple[Loaded, ...]] = {}
        self.order: list[str] = []


class _Found:
    """What one search found: the attempts kept, whether the name is the system's, the hit (path, image, the
    candidate's flag) if any, and the work its lookups cost (``_Files.work``; set when it is remembered).
    (A private record: a plain class, no NamedTuple to create at import.)"""

    __slots__ = ("flag", "image", "path", "system", "tried", "work")

    def __init__(self, tried: tuple[Attempt, ...], system: bool, path: str | None = None, image: Image | None = None,
                 flag: str | None = None, work: int = 0) -> None:
        self.tried, self.system, self.path, self.image, self.flag, self.work = tried, system, path, image, flag, work


def _places(candidates: Iterable[Candidate], files: _Files) -> Iterator[tuple[str, bool, Candidate]]:
    """(path, quiet, candidate) of every place `candidates` name, in order: a candidate's subdirectories
    that exist (quiet: a miss there is not an attempt), then its own path."""
    for cand in candidates:
        if cand.subdirs:
            for path in files.quiet_paths(cand.path, cand.subdirs):
                yield path, True, cand
        yield cand.path, False, cand


class _Part(NamedTuple):
    """What walking some roots in one process gave: the process, the walks, what they added to the analysis
    (binaries found outside the tree, paths' identities; in the order they were added) and their work."""

    pid: int
    walks: dict[str, list[Walk]]
    binaries: list[tuple[str, BinaryFile]]
    idents: list[tuple[str, tuple[str, str] | None]]
    work: int


class _Walker:
    def __init__(self, files: _Files, search: SearchPaths, binaries: dict[str, BinaryFile]) -> None:
        self.files, self.search, self.binaries = files, search, binaries
        self._found: dict[Hashable, _Found] = {}  # Backend.lookup_key -> the search's result
        # every edge made, by all its fields (the request and the attempts by identity: the edge keeps them
        # alive): walks of one directory share most of their edges (show /usr/lib/x86_64-linux-gnu: 48k edges,
        # 12k distinct), so each is made once; an Edge is frozen, a shared one is the same value
        self._edges: dict[tuple[object, ...], Edge] = {}
        self.linux: LinuxSystem | None = None  # the policy data, for an ELF walk (performance: read then)
        self._backends: dict[BinaryFormat, Backend] = {}

    def walk_roots(self, roots: Sequence[str], parent: int) -> _Part:
        """The walks of every image of each of `roots`, and what they added.  In a process other than `parent`
        (a forked child) the lookup budget is not warned about: the parent decides (see _walk_all)."""
        if os.getpid() != parent:
            self.files.over = True
        binaries, idents, work = len(self.binaries), self.files.known(), self.files.work
        walks = {root: [self.walk(root, image) for image in self.binaries[root].images] for root in roots}
        return _Part(os.getpid(), walks, list(itertools.islice(self.binaries.items(), binaries, None)),
                     self.files.known_since(idents), self.files.work - work)

    def take(self, part: _Part) -> bool:
        """Merge what a child walked after what this process walked; False, nothing merged, when their lookups
        together pass the budget."""
        if self.files.work + part.work > MAX_WORK:
            return False
        self.files.work += part.work
        for path, binary in part.binaries:
            self.binaries.setdefault(path, binary)
        self.files.learn(part.idents)
        return True

    def walk(self, root: str, image: Image) -> Walk:
        backend = self._backends.get(image.format)
        if backend is None:
            backend = self._backends[image.format] = self._backend(image.format)
        state = _State()
        self._register(state, backend, root, image, root, Status.IN_TREE)
        state.chains[root] = (Loaded(root, image),)
        queue: deque[str] = deque([root])
        edges: list[Edge] = []
        while queue:
            path = queue.popleft()
            chain = state.chains[path]
            for request in chain[-1].image.needed:
                edge, found = self._resolve(state, backend, request, chain)
                edges.append(edge)
                if found is not None and edge.hit is not None and edge.loaded_here:
                    state.chains[edge.hit] = (*chain, Loaded(edge.hit, found))
                    queue.append(edge.hit)
        return Walk(root, image.arch, tuple(edges), tuple(state.order))

    def _register(
        self, state: _State, backend: Backend, name: str, image: Image, path: str, status: Status
    ) -> None:
        keys = {backend.loaded_key(name), backend.loaded_key(path)}
        if image.soname and backend.match_soname:
            keys.add(backend.loaded_key(image.soname))
        for key in keys:
            state.loaded.setdefault(key, (path, status))
        ident = self.files.identity(path)
        if ident is not None:
            state.idents.setdefault(ident, (path, status))
        state.order.append(path)

    def _backend(self, fmt: BinaryFormat) -> Backend:
        """The backend of `fmt`, with the policy data when it needs them: one per analysis (it may keep what it
        reads of the SearchPaths per request)."""
        backend = backend_of(fmt)
        return backend.with_policy(self._linux()) if backend.needs_policy else backend

    def _linux(self) -> LinuxSystem:
        """The policy data the ELF loader rules need, read on first use."""
        if self.linux is None:
            from ..policy import linux_system

            self.linux = linux_system()
        return self.linux

    def _resolve(
        self, state: _State, backend: Backend, request: Dependency, chain: tuple[Loaded, ...]
    ) -> tuple[Edge, Image | None]:
        loader = chain[-1]
        key = backend.loaded_key(request.name)
        if key in state.loaded:
            path, status = state.loaded[key]
            return self._edge(loader, request, status, path, None), None
        found = self._search(backend, request, chain)
        if found.path is not None and found.image is not None:
            return self._hit(state, backend, request, loader, found.path, found.image, found.system, found.tried,
                             found.flag)
        system = found.system
        status = Status.SYSTEM if system else (Status.OPTIONAL_MISSING if request.optional else Status.MISSING)
        return self._edge(loader, request, status, None, found.tried), None

    def _edge(self, loader: Loaded, request: Dependency, status: Status, hit: str | None,
              tried: tuple[Attempt, ...] | None, flag: str | None = None, loaded_here: bool = False) -> Edge:
        """The edge of these fields, made once per analysis (`tried` None: the request was already loaded at
        `hit`, one attempt that says so)."""
        key = (loader.path, loader.image.arch, id(request), status, hit, id(tried), flag, loaded_here)
        edge = self._edges.get(key)
        if edge is None:
            if tried is None:
                tried = (Attempt(hit or "", "already loaded", "ok"),)
            edge = self._edges[key] = Edge(loader.path, loader.image.arch, request, status, hit, tried, flag,
                                           loaded_here)
        return edge

    def _search(self, backend: Backend, request: Dependency, chain: tuple[Loaded, ...]) -> _Found:
        """The search for `request` from chain[-1], once per ``Backend.lookup_key`` (it does not depend on what
        the walk loaded before).  A search remembered counts its lookups again, and is searched again when
        they would pass the budget: the budget is spent as if every search were made."""
        key = backend.lookup_key(request, chain, self.search)
        if key is not None:
            known = self._found.get(key)
            if known is not None and self.files.work + known.work <= MAX_WORK:
                self.files.work += known.work
                return known
        before = self.files.work
        found = self._look(backend, request, chain)
        if key is not None and self.files.work <= MAX_WORK:
            self._found[key] = _Found(found.tried, found.system, found.path, found.image, found.flag,
                                      self.files.work - before)
        return found

    def _look(self, backend: Backend, request: Dependency, chain: tuple[Loaded, ...]) -> _Found:
        """Every place the loader tries for `request`, in order, up to the first it loads (or the end of the
        search: a file it refuses, for backends with ``stops_at_bad_file``; the lookup budget)."""
        loader = chain[-1]
        system = backend.is_system(request, loader.image, self.search)
        tried: list[Attempt] = []
        fold = backend.case_insensitive
        more = 0  # attempts not kept (beyond KEPT_ATTEMPTS)
        files = self.files
        for path, quiet, cand in _places(backend.candidates(request, chain, self.search), files):
            files.work += 1 if quiet else QUIET_SHARE
            if files.work > MAX_WORK:
                tried.append(self._over_budget(loader, request))
                break
            if fold:
                path = files.spelled(path)
            if quiet and files.identity(path) is None:
                continue  # a miss not recorded (a glibc-hwcaps or legacy hwcaps subdirectory without it)
            outcome, image, fatal = self._try(path, backend, chain)
            if len(tried) < KEPT_ATTEMPTS or image is not None or fatal:
                tried.append(Attempt(path, cand.via, outcome))
            else:
                more += 1
            if fatal and backend.stops_at_bad_file:
                break
            if image is None:
                continue
            return _Found(_kept(tried, more), system, path, image, cand.flag)
        return _Found(_kept(tried, more), system)

    def _over_budget(self, loader: Loaded, request: Dependency) -> Attempt:
        """The attempt of a lookup beyond the analysis's budget (the first time, say so).  Performance: the
        candidates loop counts each lookup itself (41k with the quiet ones on the torch wheel) and calls this
        only past it."""
        if not self.files.over:
            self.files.over = True
            log.warning("over %d library lookups in one analysis (at %r of %r, which asks for %d libraries): "
                        "the requests left are reported as not searched", MAX_LOOKUPS, request.name, loader.path,
                        len(loader.image.needed))
        return Attempt("...", "the lookup budget", f"not searched: over {MAX_LOOKUPS} lookups in "
                       "this analysis (implausible dependency lists or search paths)")

    def _hit(
        self, state: _State, backend: Backend, request: Dependency, loader: Loaded, path: str,
        image: Image, system: bool, tried: tuple[Attempt, ...], flag: str | None,
    ) -> tuple[Edge, Image | None]:
        ident = self.files.identity(path)
        if ident is not None and ident in state.idents:  # same file, loaded under another name
            first, status = state.idents[ident]
            state.loaded.setdefault(backend.loaded_key(request.name), (first, status))
            return self._edge(loader, request, status, first, tried, flag), None
        inside = ident is not None and ident[0] == "tree"
        status = Status.IN_TREE if inside else Status.SYSTEM if system else Status.EXTERNAL
        self._register(state, backend, request.name, image, path, status)
        return self._edge(loader, request, status, path, tried, flag, True), image

    def _try(self, path: str, backend: Backend, chain: tuple[Loaded, ...]) -> tuple[str, Image | None, bool]:
        """(outcome, matching image or None, whether the loader stops searching here)."""
        want = chain[-1].image
        parsed = self.files.parsed(path)
        if parsed is None:
            return "not found", None, False
        if isinstance(parsed, BadFile):
            return NOT_LOADABLE + parsed.message, None, True
        self.binaries.setdefault(path, parsed)
        image = parsed.image_for(want.arch) if parsed.format is want.format else None
        if image is None:
            have = ", ".join(sorted({f"{i.format.value}/{i.arch}" for i in parsed.images}))
            return f"wrong arch ({have}, need {want.format.value}/{want.arch})", None, False
        refused = backend.refusal(image, chain, self.search)
        if refused is not None:
            return NOT_LOADABLE + refused, None, True
        return "ok", image, False
