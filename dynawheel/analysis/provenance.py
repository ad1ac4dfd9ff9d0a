"""What `show` says of where libraries come from: for each library a repair would vendor (found outside the
tree), the package that owns it and its license files; for a wheel repaired by dynawheel, the SBOM it carries
(``.dist-info/sboms/dynawheel.cdx.json``) and which of its vendored libraries have a ``License-File``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..log import get_logger
from ..search import SearchPaths
from ..tree import HostFS, Tree
from .resolve import Analysis, Status

if TYPE_CHECKING:
    from .owners import Owner

log = get_logger(__name__)

SBOM_MEMBER = "sboms/dynawheel.cdx.json"  # below the .dist-info directory
MAX_SBOM = 16 << 20  # bytes of an SBOM read by show


@dataclass(frozen=True)
class LibraryLicenses:
    """A library a repair vendors (or has vendored) and the license files found for it."""

    library: str  # a host path (outside the tree), or the path of a vendored copy in the tree
    in_tree: bool
    owner: str | None  # the owning package's purl
    license_files: tuple[str, ...]  # host paths, or (in the tree) the wheel's License-File entries


@dataclass(frozen=True)
class SbomComponent:
    """One library listed in a wheel's dynawheel SBOM."""

    name: str
    path: str | None
    source: str | None
    version: str | None
    purl: str | None


@dataclass(frozen=True)
class Provenance:
    libraries: tuple[LibraryLicenses, ...] = ()
    sbom: str | None = None  # the SBOM member of the wheel, None when it has none
    sbom_components: tuple[SbomComponent, ...] = ()

    @property
    def no_license(self) -> tuple[str, ...]:
        """The libraries with no license file found."""
        return tuple(lib.library for lib in self.libraries if not lib.license_files)


def provenance_of(tree: Tree, analysis: Analysis, search: SearchPaths) -> Provenance:
    """Owners and license files of the libraries outside the tree; the SBOM of a dynawheel-repaired wheel."""
    real = HostFS(search.sysroot).real  # one library under several names (links) is one library
    hits = {e.hit for w in analysis.walks for e in w.edges if e.status is Status.EXTERNAL and e.hit}
    outside = sorted({real(hit) or hit for hit in hits})  # each path resolved once, not once per edge
    libraries = _outside_libraries(outside, search)
    dist_info = next((f.split("/", 1)[0] for f in tree.files() if f.split("/", 1)[0].endswith(".dist-info")), None)
    sbom = f"{dist_info}/{SBOM_MEMBER}" if dist_info and tree.exists(f"{dist_info}/{SBOM_MEMBER}") else None
    if dist_info is None or sbom is None:
        return Provenance(tuple(libraries))
    components = _sbom_components(tree, sbom)
    entries = _license_file_entries(tree, f"{dist_info}/METADATA")
    for c in components:
        path = c.path or c.name  # License-File directory: the file name, or its path when two share one
        prefixes = (path.rsplit("/", 1)[-1] + "/", path + "/")
        libraries.append(LibraryLicenses(path, True, c.purl, tuple(e for e in entries if e.startswith(prefixes))))
    return Provenance(tuple(libraries), sbom, components)


def _outside_libraries(outside: list[str], search: SearchPaths) -> list[LibraryLicenses]:
    if not outside:
        return []
    from .owners import Owners  # performance: the package databases' readers only when a library is outside

    finder = Owners(search)
    purls: dict[Owner, str] = {}  # performance: one package owns many libraries (/usr/bin: 247 libraries)
    libraries = []
    for path in outside:
        owner = finder.owner(path)
        if owner is not None and owner not in purls:
            purls[owner] = owner.purl()
        libraries.append(LibraryLicenses(path, False, purls[owner] if owner else None,
                                         tuple(p for _, p in owner.licenses) if owner else ()))
    return libraries


def _read(tree: Tree, rel: str, limit: int) -> bytes | None:
    if tree.size(rel) > limit:
        log.warning("%s is over %d bytes: not read", rel, limit)
        return None
    with tree.open(rel) as fp:
        return fp.read(limit + 1)[:limit]


def _sbom_components(tree: Tree, rel: str) -> tuple[SbomComponent, ...]:
    data = _read(tree, rel, MAX_SBOM)
    try:
        doc = json.loads(data or b"null")
        comps = doc["components"] if isinstance(doc, dict) else []
        return tuple(_component(c) for c in comps if isinstance(c, dict))
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s is not a CycloneDX JSON document dynawheel can read: %s", rel, exc)
        return ()


def _component(c: dict[str, object]) -> SbomComponent:
    raw = c.get("properties")
    props = {p.get("name"): p.get("value") for p in raw if isinstance(p, dict)} if isinstance(raw, list) else {}

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    return SbomComponent(str(c.get("name", "")), text(props.get("dynawheel:path")), text(props.get("dynawheel:source")),
                         text(c.get("version")), text(c.get("purl")))


def _license_file_entries(tree: Tree, rel: str) -> tuple[str, ...]:
    if not tree.exists(rel):
        return ()
    from ..wheel.text import parse_metadata

    data = _read(tree, rel, 16 << 20)
    return tuple(parse_metadata(data or b"", rel).get_all("License-File") or ())
