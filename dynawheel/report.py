"""`dynawheel show`: findings over an Analysis, as a typed report, JSON (version 3), text and DOT.

The JSON form is versioned (``{"version": 3, ...}``) and described by the JSON Schema shipped
as ``dynawheel/data/show-schema.json``.  The ELF verdict is the one rule of
:mod:`dynawheel.platform_tags` (what repair, build, check and tags apply), with every blocker
explained: file, subject, the library that provides it, the fix.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .analysis.dlldirs import dll_directories_in, with_dll_directories
from .analysis.graph import DependencyGraph
from .analysis.provenance import Provenance, provenance_of
from .analysis.resolve import APART_FLAG, FORK_LEAST, LIBRARY_NAME, Analysis, BadFile, Edge, Status, Walk, analyze
from .binary import BinaryFile, BinaryFormat, DepKind, Image
from .errors import WheelFormatError
from .platforms import PATH_FLAG, backend_of
from .search import SearchPaths
from .tree import DirTree, Tree, open_tree
from .wording import counted

if TYPE_CHECKING:
    from pathlib import Path

    from .analysis.abi3 import Abi3Audit
    from .platform_tags import Blocker

# Performance (`show` of a small wheel is start-up bound, issue 11): the stable-ABI audit, the ELF and
# Mach-O verdicts (ops.content, platform_tags and the policy data) are imported only for a wheel that
# needs them.


JSON_VERSION = 3  # 2: 'abi3' (the stable-ABI audit) added; 3: 'provenance' (owners, licenses, SBOM), verdicts'
# 'explanations' and images' 'elf_traits' added

__all__ = ["AuditReport", "Verdict", "audit", "dll_directories_in", "json_schema", "to_dot", "to_json", "to_text",
           "with_dll_directories"]


@dataclass(frozen=True)
class Verdict:
    format: BinaryFormat
    summary: str  # 'manylinux_2_17_x86_64', 'arm64+x86_64, macOS >= 11.0', 'loads on Python >= 3.8'
    blockers: tuple[str, ...] = ()
    explained: tuple[Blocker, ...] = ()  # ELF and Mach-O: the blockers, typed (file, subject, provider, fix)


@dataclass(frozen=True)
class AuditReport:
    target: str
    analysis: Analysis
    verdicts: tuple[Verdict, ...]
    abi3: Abi3Audit | None = None  # a wheel tagged abi3/abi3t: its stable-ABI audit
    provenance: Provenance = field(default_factory=Provenance)  # vendored libraries: owners, licenses; the SBOM

    @functools.cached_property
    def graph(self) -> DependencyGraph:
        return DependencyGraph(self.analysis)

    @functools.cached_property
    def _text_trees(self) -> str:
        """The load trees of the text report (:func:`to_text`), one line per edge ('' when no binary)."""
        return "\n".join(_load_trees(self.analysis))

    @property
    def ok(self) -> bool:
        """Nothing missing, nothing found only inside the wheel (installed apart), no unreadable binary."""
        return not self.graph.missing() and not self.apart and not self.analysis.bad

    @property
    def apart(self) -> tuple[Edge, ...]:
        """Libraries a binary finds in the tree but not once installed (a program of .data/scripts loading a
        library of the package)."""
        return tuple(e for e in self.graph.edges if e.flag == APART_FLAG)


def audit(target: str | Path, search: SearchPaths | None = None, *, isa_check: bool = True,
          workers: int | None = None) -> AuditReport:
    """Analyze a wheel, a directory or one binary and judge it per format (`isa_check` False: x86-64
    levels above the baseline do not block manylinux, as ``--disable-isa-check``; `workers`: processes that
    parse a directory's binaries, None: one per core for a big directory; the report is the same)."""
    return _audit(target, search, isa_check, workers, text=False)


def audit_to_print(target: str | Path, search: SearchPaths | None = None, *, isa_check: bool = True,
                   workers: int | None = None) -> AuditReport:
    """:func:`audit` for a caller that prints :func:`to_text` next (the CLI's show; not exported by
    dynawheel): a big directory's load trees are written meanwhile, beside the verdicts."""
    return _audit(target, search, isa_check, workers, text=True)


def _audit(target: str | Path, search: SearchPaths | None, isa_check: bool, workers: int | None, text: bool
           ) -> AuditReport:
    tree = open_tree(target)
    if str(target).endswith(".whl") and not any(f.split("/", 1)[0].endswith(".dist-info") for f in tree.files()):
        raise WheelFormatError(f"{str(target)!r} is not a wheel: it has no .dist-info directory")
    try:
        search = with_dll_directories(tree, search)
        analysis = analyze(tree, search, workers=workers)
        abi3 = wheel_abi3_audit(str(target), tree, analysis)
        trees: str | None = None
        if isinstance(tree, DirTree) and workers != 1 and len(analysis.tree_binaries) >= FORK_LEAST:
            from .analysis.forked import beside  # a big directory: the package databases are read meanwhile

            walked = analysis  # (the load trees do not show the fake libraries _judged adds to the bad files)
            (analysis, graph, verdicts), (provenance, trees) = beside(
                lambda: _judged(walked, _blacklisted(tree, walked), isa_check),
                lambda: (provenance_of(tree, walked, search), "\n".join(_load_trees(walked)) if text else None))
        else:
            blacklisted = _blacklisted(tree, analysis)
            provenance = provenance_of(tree, analysis, search)
            analysis, graph, verdicts = _judged(analysis, blacklisted, isa_check)
    finally:
        tree.close()
    report = AuditReport(str(target), analysis, verdicts, abi3, provenance)
    report.__dict__["graph"] = graph  # performance: the cached_properties' values, each built once
    if trees is not None:
        report.__dict__["_text_trees"] = trees
    return report


def _judged(analysis: Analysis, blacklisted: tuple[tuple[str, str, str], ...], isa_check: bool
            ) -> tuple[Analysis, DependencyGraph, tuple[Verdict, ...]]:
    """The analysis with the fake libraries reported, its graph, and the verdicts."""
    analysis = _with_fake_libraries(analysis)
    graph = DependencyGraph(analysis)
    return analysis, graph, tuple(_verdicts(analysis, graph, blacklisted, isa_check))


def wheel_abi3_audit(wheel_name: str, tree: Tree, analysis: Analysis) -> Abi3Audit | None:
    """The stable-ABI audit of a wheel whose file name tags it abi3/abi3t (None for any other target)."""
    parts = wheel_name.replace("\\", "/").rsplit("/", 1)[-1].split("-")  # NAME-VER(-BUILD)-PY-ABI-PLAT.whl
    if not wheel_name.endswith(".whl") or len(parts) not in (5, 6):
        return None
    # the tags as written: validating a wheel's name is `check`'s work, and packaging's parser would cost
    # `show` ~10 ms of imports (platform, subprocess)
    if "abi3" not in parts[-2]:  # no stable ABI claimed (abi3, abi3t): audit_tags would say None
        return None
    from .analysis.abi3 import audit_tags

    return audit_tags(tree, analysis, parts[-3], parts[-2])


def _blacklisted(tree: Tree, analysis: Analysis) -> tuple[tuple[str, str, str], ...]:
    """The blacklisted symbols the tree's ELF files import (only the ELF verdict reads them)."""
    if not _images(analysis, BinaryFormat.ELF):
        return ()
    from .ops.content import tree_blacklisted

    return tree_blacklisted(tree, analysis)


def _with_fake_libraries(analysis: Analysis) -> Analysis:
    """Report files named like libraries that are not binaries (a text file named .so)."""
    known = {analysis.relpath(p) for p in analysis.tree_binaries} | {b.path for b in analysis.bad}
    fakes = tuple(BadFile(rel, f"{rel!r} is named like a library but is not an ELF, PE or Mach-O file")
                  for rel in analysis.files if LIBRARY_NAME.search(rel) and rel not in known)
    return replace(analysis, bad=analysis.bad + fakes) if fakes else analysis


# ---- verdicts ------------------------------------------------------------------------------

def _images(analysis: Analysis, fmt: BinaryFormat) -> list[tuple[str, Image]]:
    out: list[tuple[str, Image]] = []
    for path in analysis.tree_binaries:
        binary = analysis.binaries[path]
        if binary.format is fmt:
            out.extend((analysis.relpath(path) or path, image) for image in binary.images)
    return out


def _verdicts(analysis: Analysis, graph: DependencyGraph, blacklisted: tuple[tuple[str, str, str], ...],
              isa_check: bool) -> Iterator[Verdict]:
    if _images(analysis, BinaryFormat.ELF):
        from .ops.content import content_of
        from .platform_tags import elf_verdict

        content = content_of(analysis, graph, blacklisted=blacklisted, isa_check=isa_check)
        verdict = elf_verdict(content)
        yield Verdict(BinaryFormat.ELF, verdict.tag, tuple(dict.fromkeys(map(str, verdict.blockers))),
                      verdict.blockers)
    macho = _images(analysis, BinaryFormat.MACHO)
    if macho:
        archs = "+".join(sorted({image.arch for _p, image in macho}))
        mins = [image.macho.min_macos for _p, image in macho if image.macho.min_macos]
        newest = max(mins, key=lambda v: tuple(int(x) for x in v.split(".") if x.isdigit())) if mins else "unknown"
        from .ops.content import content_of
        from .platform_tags import macos_blockers

        explained = macos_blockers(content_of(analysis, graph))
        yield Verdict(BinaryFormat.MACHO, f"{archs}, macOS >= {newest}", tuple(dict.fromkeys(map(str, explained))),
                      explained)
    if _images(analysis, BinaryFormat.PE):
        yield _pe_verdict(analysis, graph)


def _pe_verdict(analysis: Analysis, graph: DependencyGraph) -> Verdict:
    pe = backend_of(BinaryFormat.PE)
    pe_paths = {p for p in analysis.binaries if analysis.binaries[p].format is BinaryFormat.PE}
    edges = [e for e in graph.edges if e.dependent in pe_paths]
    missing = [e for e in edges if e.status is Status.MISSING]
    through_path = [e for e in edges if e.flag == PATH_FLAG]
    warnings = tuple(sorted({f"{e.request.name}: {e.flag}" for e in edges if e.flag and e.flag != PATH_FLAG}))
    if missing:
        names = sorted({e.request.name for e in missing})
        notes = tuple(f"{name}: {note}" for name in names if (note := pe.missing_note(name)))
        return Verdict(BinaryFormat.PE, "does not load: missing " + ", ".join(names), notes + warnings)
    if through_path:
        return Verdict(BinaryFormat.PE, "loads on Python <= 3.7 only (found through PATH)",
                       tuple(f"{e.request.name}: {e.flag}" for e in through_path) + warnings)
    return Verdict(BinaryFormat.PE, "loads on Python >= 3.8", warnings)


# ---- JSON ----------------------------------------------------------------------------------

def _where(analysis: Analysis, path: str | None) -> str | None:
    if path is None:
        return None
    rel = analysis.relpath(path)
    return rel if rel is not None else path


def _in_tree_names(analysis: Analysis, text: str) -> str:
    """'DT_RUNPATH of <tree root>/pkg/_ext.so' -> 'DT_RUNPATH of pkg/_ext.so' (a wheel's root is no real path)."""
    root = analysis.root.rstrip("/") + "/"
    return text.replace(root, "") if root != "/" else text


def _image_json(image: Image) -> dict[str, Any]:
    return {
        "arch": image.arch, "kind": image.kind.value, "soname": image.soname,
        "needed": [{"name": d.name, "kind": d.kind.value} for d in image.needed],
        "rpaths": list(image.rpaths), "runpaths": list(image.runpaths), "details": dict(image.details),
        "elf_traits": image.elf.traits_json() if image.format is BinaryFormat.ELF else None,
    }


def _binary_json(analysis: Analysis, path: str, binary: BinaryFile) -> dict[str, Any]:
    return {"path": _where(analysis, path), "in_tree": analysis.relpath(path) is not None,
            "format": binary.format.value, "fat": binary.fat, "images": [_image_json(i) for i in binary.images]}


def _edge_json(analysis: Analysis, edge: Edge) -> dict[str, Any]:
    return {
        "dependent": _where(analysis, edge.dependent), "request": edge.request.name, "kind": edge.request.kind.value,
        "status": edge.status.value, "hit": _where(analysis, edge.hit), "flag": edge.flag,
        "tried": [{"path": _where(analysis, a.path), "via": a.via, "outcome": a.outcome} for a in edge.tried],
    }


def _blocker_json(b: Blocker) -> dict[str, Any]:
    return {"tag": b.tag, "reason": b.reason.value, "file": b.file, "subject": b.subject, "provider": b.provider,
            "fix": b.fix, "text": str(b)}


def to_json(report: AuditReport) -> dict[str, Any]:
    a = report.analysis
    graph = report.graph
    return {
        "version": JSON_VERSION,
        "target": report.target,
        "ok": report.ok,
        "binaries": [_binary_json(a, p, b) for p, b in sorted(a.binaries.items())],
        "walks": [{"root": _where(a, w.root), "arch": w.arch, "edges": [_edge_json(a, e) for e in w.edges]}
                  for w in a.walks],
        "bad": [{"path": b.path, "message": b.message} for b in a.bad],
        "missing": sorted({f"{_where(a, e.dependent)}: {e.request.name}" for e in graph.missing()}),
        "external": sorted({_where(a, e.hit) or "" for e in graph.external()}),
        "verdicts": [{"format": v.format.value, "summary": v.summary, "blockers": list(v.blockers),
                      "explanations": [_blocker_json(b) for b in v.explained]} for v in report.verdicts],
        "abi3": None if report.abi3 is None else {
            "abi": report.abi3.abi, "minimum_python": report.abi3.minimum, "ok": report.abi3.ok,
            "binaries_checked": report.abi3.checked,
            "violations": [{"path": v.path, "symbol": v.symbol, "added": v.added} for v in report.abi3.violations]},
        "provenance": _provenance_json(report.provenance),
    }


def _provenance_json(p: Provenance) -> dict[str, Any]:
    return {
        "libraries": [{"library": lib.library, "in_tree": lib.in_tree, "owner": lib.owner,
                       "license_files": list(lib.license_files)} for lib in p.libraries],
        "no_license": list(p.no_license),
        "sbom": None if p.sbom is None else {
            "path": p.sbom, "components": [{"name": c.name, "path": c.path, "source": c.source, "version": c.version,
                                            "purl": c.purl} for c in p.sbom_components]},
    }


def json_schema() -> Mapping[str, Any]:
    from .policy import read_data

    text = read_data("show-schema.json")
    schema: dict[str, Any] = json.loads(text)
    return schema


# ---- text ----------------------------------------------------------------------------------

_LABEL = {Status.IN_TREE: "in tree", Status.SYSTEM: "system", Status.EXTERNAL: "EXTERNAL",
          Status.MISSING: "MISSING", Status.OPTIONAL_MISSING: "missing (weak: optional)"}


def _children(walk: Walk) -> Mapping[str, list[Edge]]:
    out: dict[str, list[Edge]] = defaultdict(list)
    for edge in walk.edges:
        out[edge.dependent].append(edge)
    return out


def _describe(analysis: Analysis, path: str) -> str:
    binary = analysis.binaries.get(path)
    if binary is None:
        return ""
    image = binary.images[0]
    bits = [binary.format.value.upper(), "+".join(i.arch for i in binary.images), image.kind.value]
    if image.runpaths:
        bits.append("RUNPATH " + ":".join(image.runpaths))
    if image.rpaths:
        bits.append(("LC_RPATH " if binary.format is BinaryFormat.MACHO else "RPATH ") + ":".join(image.rpaths))
    return "[" + ", ".join(bits) + "]"


class _TreeText:
    """The load trees of one report's walks, as text lines (performance: show /usr/lib/x86_64-linux-gnu prints
    50k edge lines, lines appended, not yielded through one generator per level; the walks share most edges,
    so each edge's text and each path as shown is made once)."""

    def __init__(self, analysis: Analysis, lines: list[str]) -> None:
        self.analysis, self.lines = analysis, lines
        self.places: dict[str, str] = {}  # path -> as shown
        self.texts: dict[tuple[int, bool], str] = {}  # (edge id, shown as already loaded) -> its line after the branch
        self.attempts: dict[int, list[str]] = {}  # edge id -> its attempts' lines after the prefix

    def edges(self, children: Mapping[str, list[Edge]], node: str, prefix: str, shown: set[str]) -> None:
        """The tree of `node`'s edges, appended to the lines."""
        edges = children.get(node, ())
        lines = self.lines
        for i, edge in enumerate(edges):
            branch, cont = ("└── ", "    ") if i == len(edges) - 1 else ("├── ", "│   ")
            hit = edge.hit
            again = bool(hit) and (not edge.loaded_here or hit in shown)
            text = self.texts.get((id(edge), again))
            if text is None:
                text = self.texts[(id(edge), again)] = self._text(edge, again)
            lines.append(f"{prefix}{branch}{text}".replace(" =>  [", " => ["))
            if edge.status in _SEARCHED:
                tried = self.attempts.get(id(edge))
                if tried is None:
                    tried = self.attempts[id(edge)] = self._attempts(edge)
                lines.extend(f"{prefix}{cont}{line}" for line in tried)
            if hit and edge.loaded_here and hit not in shown and edge.status is not _SYSTEM:
                shown.add(hit)
                self.edges(children, hit, prefix + cont, shown)

    def _text(self, edge: Edge, again: bool) -> str:
        kind = "" if edge.request.kind is _NEEDED else f" ({edge.request.kind.value})"
        hit = edge.hit
        target = "" if hit is None else self.places.get(hit) or self.places.setdefault(hit, _where(self.analysis, hit)
                                                                                        or "")
        flag = f"  ! {edge.flag}" if edge.flag else ""
        loaded = " (already loaded)" if again else ""
        return f"{edge.request.name}{kind} => {target} [{_LABEL[edge.status]}]{loaded}{flag}"

    def _attempts(self, edge: Edge) -> list[str]:
        a = self.analysis
        return [f"    looked in {_where(a, attempt.path)} ({_in_tree_names(a, attempt.via)}): {attempt.outcome}"
                for attempt in edge.tried]


_NEEDED, _SYSTEM = DepKind.NEEDED, Status.SYSTEM  # performance: an enum member is a class attribute lookup
_SEARCHED = frozenset((Status.MISSING, Status.EXTERNAL, Status.OPTIONAL_MISSING))  # their attempts are shown


def _load_trees(a: Analysis) -> list[str]:
    """The text's load trees: for each walk (one per file: soname symlinks are named with it), a blank line,
    its root and the tree of its edges."""
    lines: list[str] = []
    others: dict[str, list[str]] = defaultdict(list)  # soname symlinks: one walk shown per file
    trees = _TreeText(a, lines)
    for alias, first in a.aliases.items():
        others[first].append(_where(a, alias) or alias)
    for walk in a.walks:
        if walk.root in a.aliases:
            continue
        also = f" (also named {', '.join(sorted(others[walk.root]))})" if walk.root in others else ""
        lines.append("")
        lines.append(f"{_where(a, walk.root)}{also} ({walk.arch}) {_describe(a, walk.root)}")
        trees.edges(_children(walk), walk.root, "", {walk.root})
    return lines


def to_text(report: AuditReport, *, show_system: bool = True) -> str:
    a = report.analysis
    lines = [f"{report.target}: {counted(len(a.tree_binaries), 'binary', 'binaries')}, {counted(len(a.files), 'file')}"]
    if not show_system:
        lines.extend(line for line in _load_trees(a) if not line.endswith("[system]"))
    elif report._text_trees:  # the lines joined: one item of the final join
        lines.append(report._text_trees)
    lines.append("")
    for verdict in report.verdicts:
        lines.append(f"{verdict.format.value}: {verdict.summary}")
        if verdict.explained:
            lines.extend(_explained_lines(verdict.explained))
            continue
        label = "blocked" if verdict.format is BinaryFormat.ELF else "warning"
        lines.extend(f"  {label}: {b}" for b in verdict.blockers[:12])
        if len(verdict.blockers) > 12:
            lines.append(f"  ... and {len(verdict.blockers) - 12} more")
    if report.abi3 is not None:
        r = report.abi3
        lines.append(f"{r.abi}: Python >= {r.minimum}: " + (
            f"{r.checked} binaries use only the stable ABI" if r.ok else f"{len(r.violations)} violation(s)"))
        lines.extend(f"  not stable ABI: {v.describe(r.minimum)}" for v in r.violations)
    lines.extend(_provenance_lines(report.provenance))
    for bad in a.bad:
        lines.append(f"bad file: {bad.message}")
    missing = report.graph.missing()
    external = report.graph.external()
    apart = f", {len(report.apart)} installed apart" if report.apart else ""
    lines.append(f"summary: {len(missing)} missing{apart}, {len(external)} external, {counted(len(a.bad), 'bad file')}")
    return "\n".join(lines) + "\n"


def _explained_lines(explained: tuple[Blocker, ...], most: int = 12) -> Iterator[str]:
    """One entry per cause (reason, file, subject) with the tags it blocks, its provider and its fix."""
    causes: dict[tuple[str, str | None, str | None], list[Blocker]] = {}
    for b in explained:
        causes.setdefault((b.reason.value, b.file, b.subject), []).append(b)
    for i, group in enumerate(causes.values()):
        if i == most:
            yield f"  ... and {len(causes) - most} more"
            return
        # the nearest tag (the last one blocked) speaks for the group: 'max GLIBC_2.31', 'build on manylinux_2_31'
        last, tags = group[-1], list(dict.fromkeys(b.tag for b in group))
        which = tags[0] if len(tags) == 1 else f"{tags[0]} .. {tags[-1]} ({len(tags)} tags)"
        yield f"  blocked: {which}: {last.detail}"
        if last.provider:
            yield f"    provided by: {last.provider}"
        yield f"    fix: {last.fix}"


def _provenance_lines(p: Provenance) -> list[str]:
    lines = []
    if p.sbom is not None:
        lines.append(f"sbom: {p.sbom} ({counted(len(p.sbom_components), 'library', 'libraries')})")
    if p.no_license:
        lines.append(f"licenses: no license file found for {counted(len(p.no_license), 'library', 'libraries')}: "
                     + ", ".join(p.no_license))
    return lines


# ---- DOT -----------------------------------------------------------------------------------

_STYLE = {Status.IN_TREE: 'color="#2b7a0b"', Status.SYSTEM: 'color="#888888", fontcolor="#888888"',
          Status.EXTERNAL: 'color="#d97706"', Status.MISSING: 'color="#c00000", style=dashed',
          Status.OPTIONAL_MISSING: 'color="#c00000", style=dotted'}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(report: AuditReport) -> str:
    a = report.analysis
    lines = ["digraph dynawheel {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
    nodes: dict[str, str] = {}
    for path in a.tree_binaries:
        nodes[_where(a, path) or path] = 'style=filled, fillcolor="#e6f4ea"'
    edges = set()
    for edge in report.graph.edges:
        src = _where(a, edge.dependent) or edge.dependent
        dst = _where(a, edge.hit) if edge.hit else f"MISSING {edge.request.name}"
        assert dst is not None
        nodes.setdefault(dst, _STYLE[edge.status])
        edges.add((src, dst, _STYLE[edge.status]))
    for name, style in sorted(nodes.items()):
        lines.append(f"  {_q(name)} [{style}];")
    for src, dst, style in sorted(edges):
        lines.append(f"  {_q(src)} -> {_q(dst)} [{style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
