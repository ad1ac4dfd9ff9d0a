"""The PEP 770 SBOM of a repaired wheel: ``.dist-info/sboms/dynawheel.cdx.json``, CycloneDX 1.6 JSON made
with cyclonedx-python-lib (imported here only, when a repair writes one).

One component per vendored library: its file name in the wheel, its path in the wheel and where it came
from (properties), the sha256 of the original file, the owning package's version and purl when the host
knows the owner (`analysis/owners.py`), and the license the package database declares.  The wheel is the
metadata component; dependencies say which vendored library each binary loads.

Deterministic: no timestamp, a serial number derived from the content, components in path order.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import __version__
from ..analysis.owners import Owner
from .collect import Vendored

if TYPE_CHECKING:
    from cyclonedx.model.component import Component
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression

SBOM_NAME = "dynawheel.cdx.json"  # in .dist-info/sboms/ (PEP 770)
PROPERTY_PATH = "dynawheel:path"  # the library's path in the wheel
PROPERTY_SOURCE = "dynawheel:source"  # where it was found on the host
# 'libz.so.1.2.13' -> 1.2.13; 'libfoo.1.2.dylib' -> 1.2 (the file's own version, when no package names one)
_FILE_VERSION = re.compile(r"\.so\.(\d+(?:\.\d+)+)$|\.(\d+(?:\.\d+)+)\.dylib$")


def file_version(source: str) -> str | None:
    """The version a library's real file name carries (libz.so.1.2.13 -> '1.2.13'), if two parts or more."""
    match = _FILE_VERSION.search(source.rsplit("/", 1)[-1])
    return (match.group(1) or match.group(2)) if match else None


def _license(text: str) -> LicenseExpression | DisjunctiveLicense:
    """An SPDX expression when the text is one, else a named license (distributions write 'GPL2', 'custom')."""
    from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
    from license_expression import get_spdx_licensing

    info = get_spdx_licensing().validate(text)
    if not info.errors and info.normalized_expression:
        return LicenseExpression(info.normalized_expression)
    return DisjunctiveLicense(name=text)


def _component(v: Vendored, owner: Owner | None) -> Component:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL

    purl = PackageURL.from_string(owner.purl()) if owner is not None else None
    version = owner.version if owner is not None and owner.version else file_version(v.source)
    return Component(
        type=ComponentType.LIBRARY, name=v.dest.rsplit("/", 1)[-1], version=version, bom_ref=f"file:{v.dest}",
        hashes=[HashType(alg=HashAlgorithm.SHA_256, content=v.sha256)], purl=purl,
        licenses=[_license(owner.license)] if owner is not None and owner.license else None,
        properties=[Property(name=PROPERTY_PATH, value=v.dest), Property(name=PROPERTY_SOURCE, value=v.source)])


def sbom_json(wheel_file: str | None, name: str, version: str | None, vendored: tuple[Vendored, ...],
              owners: Mapping[str, Owner | None]) -> bytes:
    """The CycloneDX 1.6 JSON document for the repaired wheel `wheel_file` (its final file name), or for a
    staged tree (`wheel_file` and perhaps `version` None: not known before `build`)."""
    import uuid

    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    purl = PackageURL("pypi", None, name.lower().replace("_", "-"), version,
                      {"file_name": wheel_file} if wheel_file else None)
    wheel = Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl,
                      bom_ref=f"pkg:pypi/{purl.name}" + (f"@{version}" if version else ""))
    libs = {v.dest: _component(v, owners.get(v.source)) for v in sorted(vendored, key=lambda v: v.dest)}
    tool = Component(type=ComponentType.APPLICATION, name="dynawheel", version=__version__)
    metadata = BomMetaData(component=wheel, tools=ToolRepository(components=[tool]))
    seed = "\n".join([wheel_file or name, *(f"{v.dest} {v.sha256} {v.source}" for v in vendored)])
    bom = Bom(serial_number=uuid.UUID(bytes=hashlib.sha256(seed.encode()).digest()[:16], version=5),
              metadata=metadata, components=libs.values())
    direct = [libs[v.dest] for v in vendored if any(c not in libs for c in v.consumers)]
    bom.register_dependency(wheel, direct)
    for v in vendored:
        for consumer in v.consumers:
            if consumer in libs:
                bom.register_dependency(libs[consumer], [libs[v.dest]])
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"].pop("timestamp", None)  # byte-identical on every run
    return (json.dumps(doc, indent=2) + "\n").encode()
