"""Queries over an :class:`~dynawheel.analysis.resolve.Analysis`, with no I/O.

Edges are gathered from every walk and de-duplicated; a library is identified by the
path it resolved to (the resolver's namespace).
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator

from .resolve import Analysis, Edge, Status, Walk


class DependencyGraph:
    """Edges of the walks rooted at the tree's roots (extensions, executables, libraries
    nobody in the tree loads): a library's own walk is not how it gets loaded when a root
    loads it (its loaders' DT_RPATH / LC_RPATH apply), so its misses there do not count.
    ``roots_only=False`` keeps the walks of every binary (each as if loaded alone)."""

    def __init__(self, analysis: Analysis, roots_only: bool = True) -> None:
        self.analysis = analysis
        self._roots = _roots(analysis)
        roots = set(self._roots) if roots_only else set(analysis.tree_binaries)
        seen: set[tuple[str, str, str, Status, str | None]] = set()
        self._edges: list[Edge] = []
        for edge in _distinct(w for w in analysis.walks if w.root in roots):
            key = (edge.dependent, edge.arch, edge.request.name, edge.status, edge.hit)
            if key not in seen:
                seen.add(key)
                self._edges.append(edge)
        self._out: dict[str, list[Edge]] = defaultdict(list)
        self._in: dict[str, set[str]] = defaultdict(set)
        for edge in self._edges:
            self._out[edge.dependent].append(edge)
            if edge.hit is not None:
                self._in[edge.hit].add(edge.dependent)

    @property
    def edges(self) -> tuple[Edge, ...]:
        return tuple(self._edges)

    def _with(self, *statuses: Status) -> tuple[Edge, ...]:
        return tuple(e for e in self._edges if e.status in statuses)

    def missing(self) -> tuple[Edge, ...]:
        """Requests nothing satisfies (weak ones excluded)."""
        return self._with(Status.MISSING)

    def external(self) -> tuple[Edge, ...]:
        return self._with(Status.EXTERNAL)

    def system(self) -> tuple[Edge, ...]:
        return self._with(Status.SYSTEM)

    def dependencies(self, path: str) -> tuple[Edge, ...]:
        """The requests `path` makes, as resolved."""
        return tuple(self._out.get(path, ()))

    def roots(self) -> tuple[str, ...]:
        """Tree binaries no other tree binary loads (extensions, executables); all of them if that is none."""
        return self._roots

    def topological_order(self, paths: Iterable[str] | None = None) -> tuple[str, ...]:
        """`paths` (default: every node) with dependencies before dependents; cycles broken by name."""
        nodes = sorted(set(paths) if paths is not None else set(self._out) | set(self._in))
        wanted = set(nodes)
        done: set[str] = set()
        order: list[str] = []
        for node in nodes:
            self._visit(node, wanted, done, set(), order)
        return tuple(order)

    def _visit(self, node: str, wanted: set[str], done: set[str], active: set[str], order: list[str]) -> None:
        stack: list[tuple[str, list[str]]] = [(node, self._children(node))]
        if node in done:
            return
        active.add(node)
        while stack:
            current, children = stack[-1]
            while children and (children[-1] in done or children[-1] in active):
                children.pop()
            if children:
                child = children.pop()
                active.add(child)
                stack.append((child, self._children(child)))
                continue
            stack.pop()
            active.discard(current)
            done.add(current)
            if current in wanted:
                order.append(current)

    def _children(self, node: str) -> list[str]:
        return sorted({e.hit for e in self._out.get(node, ()) if e.hit is not None and e.hit != node}, reverse=True)


def _roots(analysis: Analysis) -> tuple[str, ...]:
    tree = analysis.tree_binaries
    inside = set(tree)
    loaded_by: dict[str, set[str]] = defaultdict(set)
    for edge in _distinct(analysis.walks):
        if edge.hit in inside and edge.dependent in inside and edge.hit != edge.dependent:
            loaded_by[edge.hit].add(edge.dependent)
    roots = [p for p in tree if not loaded_by.get(p)]
    return tuple(roots) if roots else tuple(tree)


def _distinct(walks: Iterable[Walk]) -> Iterator[Edge]:
    """The edges of `walks` in order, each object once (performance: the walks of a directory share most of
    their edges, analysis.resolve makes each once: show /usr/lib/x86_64-linux-gnu's 48k are 12k objects)."""
    seen: set[int] = set()  # ids: the walks keep every edge alive
    for walk in walks:
        for edge in walk.edges:
            if id(edge) not in seen:
                seen.add(id(edge))
                yield edge


def outside_names(edges: Iterable[Edge], sources: Collection[str], statuses: Collection[Status]) -> set[str]:
    """The one rule for the libraries a tree keeps outside, for the policy check: base names of what
    `sources` load with one of `statuses`, the program interpreters excepted (always there, and every
    policy allows them).  As the tree is: its binaries, SYSTEM and EXTERNAL; once repaired: its
    binaries and the vendored copies, SYSTEM."""
    from ..policy import loader_names  # performance: the policy data only for the ELF rules that ask

    return {posixpath.basename(e.request.name) for e in edges
            if e.status in statuses and e.dependent in sources} - loader_names()
