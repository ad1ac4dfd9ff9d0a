"""License files of the vendored libraries (PEP 639): copied from the owning package into
``.dist-info/licenses/<library file name>/`` (a directory per library: two packages' ``copyright`` files
never clash), named in METADATA as ``License-File:``, Metadata-Version raised to 2.4 when lower.

Where the files come from is the owner's business (`analysis/owners.py`: Debian's
``/usr/share/doc/PKG/copyright``, conda's ``info/licenses``, vcpkg's ``share/PORT/copyright``, a Homebrew
keg's ``LICENSE*``, MSYS2's ``share/licenses/``, apk and rpm packages' license files); a library with no
owner, or whose owner ships none, is listed in `Licenses.missing`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..analysis.owners import Owner
from ..errors import MetadataError
from .collect import Vendored

log = logging.getLogger(__name__)

MAX_LICENSE_FILE = 4 << 20  # bytes: a bigger "license file" is not copied (bounded memory)


@dataclass(frozen=True)
class LicenseFile:
    """One license file of a vendored library: its name below ``.dist-info/licenses/`` and its origin."""

    name: str  # '<library file name>/<file>' (the License-File value)
    source: str  # the host path it is copied from
    library: str  # the vendored library's path in the wheel


@dataclass(frozen=True)
class Licenses:
    """The license files to ship, and the vendored libraries (paths in the wheel) without any."""

    files: tuple[LicenseFile, ...] = ()
    missing: tuple[str, ...] = ()


def find_licenses(vendored: tuple[Vendored, ...], owners: Mapping[str, Owner | None]) -> Licenses:
    """The license files of each vendored library's owner; the libraries for which none was found."""
    files: list[LicenseFile] = []
    missing: list[str] = []
    bases = [v.dest.rsplit("/", 1)[-1] for v in vendored]
    for v in sorted(vendored, key=lambda v: v.dest):
        owner = owners.get(v.source)
        found = [(name, path) for name, path in (owner.licenses if owner is not None else ())
                 if _small_file(path)]
        if not found:
            missing.append(v.dest)
        base = v.dest.rsplit("/", 1)[-1]
        base = v.dest if bases.count(base) > 1 else base  # two libfoo.so (--no-mangle) in two directories
        files += [LicenseFile(f"{base}/{name}", path, v.dest) for name, path in found]
    return Licenses(tuple(files), tuple(missing))


def _small_file(path: str) -> bool:
    try:
        size = os.path.getsize(path)
    except OSError:
        return False
    if size > MAX_LICENSE_FILE:
        log.warning("%s is %d bytes (more than %d): not copied as a license file", path, size, MAX_LICENSE_FILE)
        return False
    return True


def license_entries(licenses: Licenses, directory: str) -> dict[str, bytes]:
    """The license files as files of `directory` (``<dist>.dist-info/licenses``), read now: they are small."""
    out: dict[str, bytes] = {}
    for f in licenses.files:
        with open(f.source, "rb") as fp:
            out[f"{directory}/{f.name}"] = fp.read(MAX_LICENSE_FILE)
    return out


def with_license_files(text: bytes, names: tuple[str, ...], dist_info: str,
                       read: Callable[[str], bytes | None]) -> tuple[bytes, dict[str, bytes]]:
    """METADATA with a ``License-File:`` for each of `names` and Metadata-Version at least 2.4, and the members
    to add so that License-File entries written before 2.4 (then relative to ``.dist-info``) still name files
    below ``.dist-info/licenses/`` (`read(member)`: a member of the wheel, None when it has none)."""
    if not names:
        return text, {}
    from ..wheel.text import below_2_4, parse_metadata
    from ..wheel.text import with_license_files as add_license_files

    msg = parse_metadata(text, "METADATA")
    have = msg.get_all("License-File") or []
    version = msg.get("Metadata-Version", "")
    try:
        below = below_2_4(version)
    except ValueError:
        raise MetadataError(f"METADATA: Metadata-Version {version!r} is not a version") from None
    moved: dict[str, bytes] = {}
    if below:
        for old in have:
            if read(f"{dist_info}/licenses/{old}") is None:
                data = read(f"{dist_info}/{old}")
                if data is not None:
                    moved[f"{dist_info}/licenses/{old}"] = data
    return add_license_files(text, names, msg), moved
