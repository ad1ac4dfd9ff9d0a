"""The PEP 770 SBOM of a repaired wheel: ``.dist-info/sboms/dynawheel.cdx.json``, CycloneDX 1.6 JSON.

One component per vendored library: its file name in the wheel, its path in the wheel and where it came
from (properties), the sha256 of the original file, the owning package's version and purl when the host
knows the owner (`analysis/owners.py`), and the license the package database declares.  The wheel is the
metadata component; dependencies say which vendored library each binary loads.

Deterministic: no timestamp, a serial number derived from the content (a version-5-shaped UUID of the
sha256 of the wheel's name and its vendored libraries), keys and lists in a fixed order.

Written as plain JSON (a dict, `json.dumps`), not with cyclonedx-python-lib's model: importing that model
(``cyclonedx.model.bom``, py_serializable, license_expression and the SPDX list behind it) cost 55-85 ms
of CPU on every repair that vendors a library, measured on PyYAML and python-ldap (2026-12-06; PyYAML's
whole repair takes ~140 ms).  The document is the one the library wrote (same fields, key order,
bom-refs, serial number, bytes); the tests check it against cyclonedx-python-lib, kept as a test
dependency: every SBOM the tests make passes its CycloneDX 1.6 JSON-schema validator, and the same BOM
built with its model serialises to the same JSON.  License texts become SPDX expressions through
`packaging.licenses` (imported only for a package that declares a license); purls are packageurl-python's.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from .. import __version__
from ..analysis.owners import Owner
from .collect import Vendored

SBOM_NAME = "dynawheel.cdx.json"  # in .dist-info/sboms/ (PEP 770)
PROPERTY_PATH = "dynawheel:path"  # the library's path in the wheel
PROPERTY_SOURCE = "dynawheel:source"  # where it was found on the host
SCHEMA = "http://cyclonedx.org/schema/bom-1.6.schema.json"
# 'libz.so.1.2.13' -> 1.2.13; 'libfoo.1.2.dylib' -> 1.2 (the file's own version, when no package names one)
_FILE_VERSION = r"\.so\.(\d+(?:\.\d+)+)$|\.(\d+(?:\.\d+)+)\.dylib$"  # compiled when used: a package's version first
_SPDX_MARK = "spdx:"  # MSYS2's pacman packages mark an SPDX expression so ('spdx:MIT')

Json = dict[str, object]


def file_version(source: str) -> str | None:
    """The version a library's real file name carries (libz.so.1.2.13 -> '1.2.13'), if two parts or more."""
    match = re.search(_FILE_VERSION, source.rsplit("/", 1)[-1])
    return (match.group(1) or match.group(2)) if match else None


def spdx_expression(text: str) -> str | None:
    """`text` as a canonical SPDX license expression ('mit or zlib' -> 'MIT OR Zlib'), None when it is not
    one (distributions also write 'GPL2', 'custom', 'Public Domain').  MSYS2's 'spdx:' mark is dropped."""
    from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression

    text = text[len(_SPDX_MARK):] if text.startswith(_SPDX_MARK) else text
    try:
        return str(canonicalize_license_expression(text))
    except InvalidLicenseExpression:
        return None


def license_entry(text: str) -> Json:
    """The CycloneDX license choice for a declared license: an SPDX expression, else a license by name."""
    expression = spdx_expression(text)
    return {"expression": expression} if expression is not None else {"license": {"name": text}}


def _component(v: Vendored, owner: Owner | None) -> Json:
    version = owner.version if owner is not None and owner.version else file_version(v.source)
    comp: Json = {"bom-ref": f"file:{v.dest}", "hashes": [{"alg": "SHA-256", "content": v.sha256}]}
    if owner is not None and owner.license:
        comp["licenses"] = [license_entry(owner.license)]
    comp["name"] = v.dest.rsplit("/", 1)[-1]
    comp["properties"] = [{"name": PROPERTY_PATH, "value": v.dest}, {"name": PROPERTY_SOURCE, "value": v.source}]
    if owner is not None:
        comp["purl"] = owner.purl()
    comp["type"] = "library"
    if version is not None:
        comp["version"] = version
    return comp


def _order(comp: Json) -> tuple[str, bool, str, str]:
    """Components by name, then version (none last), then bom-ref: the order cyclonedx-python-lib wrote."""
    version = comp.get("version")
    return str(comp["name"]), version is None, str(version or ""), str(comp["bom-ref"])


def _wheel_component(wheel_file: str | None, name: str, version: str | None) -> Json:
    from packageurl import PackageURL

    purl = PackageURL("pypi", None, name.lower().replace("_", "-"), version,
                      {"file_name": wheel_file} if wheel_file else None)
    comp: Json = {"bom-ref": f"pkg:pypi/{purl.name}" + (f"@{version}" if version else ""), "name": name,
                  "purl": str(purl.to_string()), "type": "library"}
    if version is not None:
        comp["version"] = version
    return comp


def _dependencies(wheel_ref: str, vendored: tuple[Vendored, ...]) -> list[Json]:
    """Each component's dependencies, sorted by ref (each component listed, with or without any): the wheel
    depends on the libraries its own binaries load, a vendored library on those it loads."""
    refs = {v.dest: f"file:{v.dest}" for v in vendored}
    edges: dict[str, set[str]] = {ref: set() for ref in (*refs.values(), wheel_ref)}
    for v in vendored:
        for consumer in v.consumers:
            edges[refs.get(consumer, wheel_ref)].add(refs[v.dest])
    return [{"dependsOn": sorted(on), "ref": ref} if on else {"ref": ref} for ref, on in sorted(edges.items())]


def serial_number(seed: str) -> str:
    """'urn:uuid:...': the first 16 bytes of the seed's sha256 with RFC 4122's version (5) and variant bits set,
    as `uuid.UUID(bytes=..., version=5).urn` writes it (tests/test_sbom.py checks; the uuid module's import,
    ~0.4 ms with _uuid, is not worth it here)."""
    raw = bytearray(hashlib.sha256(seed.encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def sbom_document(wheel_file: str | None, name: str, version: str | None, vendored: tuple[Vendored, ...],
                  owners: Mapping[str, Owner | None]) -> Json:
    """The CycloneDX 1.6 document (keys in the order written) for the repaired wheel `wheel_file` (its final
    file name), or for a staged tree (`wheel_file` and perhaps `version` None: not known before `build`)."""
    wheel = _wheel_component(wheel_file, name, version)
    components = sorted((_component(v, owners.get(v.source)) for v in vendored), key=_order)
    tool = {"name": "dynawheel", "type": "application", "version": __version__}
    seed = "\n".join([wheel_file or name, *(f"{v.dest} {v.sha256} {v.source}" for v in vendored)])
    return {"components": components, "dependencies": _dependencies(str(wheel["bom-ref"]), vendored),
            "metadata": {"component": wheel, "tools": {"components": [tool]}},
            "serialNumber": serial_number(seed), "version": 1,
            "$schema": SCHEMA, "bomFormat": "CycloneDX", "specVersion": "1.6"}


def sbom_json(wheel_file: str | None, name: str, version: str | None, vendored: tuple[Vendored, ...],
              owners: Mapping[str, Owner | None]) -> bytes:
    """`sbom_document` as bytes: JSON indented by two, one final newline (byte-identical on every run)."""
    return (json.dumps(sbom_document(wheel_file, name, version, vendored, owners), indent=2) + "\n").encode()
