"""Where a repair's vendored libraries come from, written into its output: the owner of each library
(`analysis/owners.py`), the SBOM (`sbom.py`) and the license files (`licenses.py`), placed in a wheel's
.dist-info, or at the root of a staged tree without one (`build` moves them into its .dist-info)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

from ..analysis.owners import Owner, Owners
from ..wheel.layout import REPAIR_LICENSES, REPAIR_SBOM
from .collect import Collection
from .licenses import Licenses, find_licenses, license_entries, with_license_files
from .options import RepairOptions
from .sbom import SBOM_NAME, sbom_json


class Place:
    """Where the SBOM and the license files go, and the METADATA that names them (None: `build` writes it).
    (This module's records are plain classes: repair's own plumbing; a NamedTuple costs ~1 M instructions to
    create at import, a dataclass 3-5 M.)"""

    __slots__ = ("licenses", "metadata", "sbom")

    def __init__(self, sbom: str, licenses: str, metadata: str | None) -> None:
        self.sbom = sbom
        self.licenses = licenses  # the directory of the license files
        self.metadata = metadata

    @classmethod
    def in_dist_info(cls, dist_info: str, metadata: bool = True) -> Place:
        return cls(f"{dist_info}/sboms/{SBOM_NAME}", f"{dist_info}/licenses",
                   f"{dist_info}/METADATA" if metadata else None)

    @classmethod
    def at_stage_root(cls) -> Place:
        return cls(REPAIR_SBOM, REPAIR_LICENSES.rstrip("/"), None)


class Provenance:
    """What a repair says about where its vendored libraries come from: owners, SBOM, license files."""

    __slots__ = ("licenses", "members", "owners", "sbom", "sbom_data")

    def __init__(self, owners: Mapping[str, Owner | None], sbom: str | None, licenses: Licenses,
                 members: Mapping[str, bytes], sbom_data: Callable[[], bytes] | None = None) -> None:
        self.owners = owners
        self.sbom = sbom  # the SBOM's member name, None without one
        self.licenses = licenses
        self.members = members  # the files to add or replace (METADATA, license files), not the SBOM
        self.sbom_data = sbom_data  # the SBOM's bytes, made when called


def provenance(collection: Collection, opts: RepairOptions, names: tuple[str | None, str, str | None], place: Place,
               metadata: bytes | None, read: Callable[[str], bytes | None]) -> Provenance:
    """Owners of the vendored libraries, the SBOM and the license files; `names`: (wheel file, name, version),
    the file and version None for a staged tree; `read(path)`: a file of the output, None when it has none."""
    vendored = collection.vendored
    owners = owners_of(collection, opts)
    members: dict[str, bytes] = {}
    sbom = place.sbom if opts.sbom and vendored else None
    licenses = find_licenses(vendored, owners)
    members.update(license_entries(licenses, place.licenses))
    if place.metadata is not None and metadata is not None:
        members[place.metadata], moved = with_license_files(
            metadata, tuple(f.name for f in licenses.files), place.metadata.rsplit("/", 1)[0], read)
        members.update(moved)
    return Provenance(owners, sbom, licenses, members,
                      None if sbom is None else functools.partial(sbom_json, *names, vendored, owners))


def owners_of(collection: Collection, opts: RepairOptions) -> dict[str, Owner | None]:
    """The package that installed each vendored library on the host, where the host knows it."""
    if not collection.vendored:
        return {}
    opts.say("looking up the packages of the vendored libraries")
    finder = Owners(opts.search, len(collection.vendored))
    # asked in reverse of the collection's order (which puts a library after those it loads): a package's
    # main library first (libldap), then the ones it loads (liblber, in libldap's package too), which dpkg's
    # lists of the owners found so far then name without reading every package's .shlibs (python-ldap: ~8 ms)
    found = {v.source: finder.owner(v.source) for v in reversed(collection.vendored)}
    return {v.source: found[v.source] for v in collection.vendored}
