"""PEP 740 provenance: the attestations an uploader sends, checked, stored beside the file and served.

``twine upload --attestations`` and ``uv publish`` send a file's attestations as the ``attestations``
form field of the legacy upload: a JSON array of PEP 740 attestation objects.  What is checked here,
for every attestation, before a file with attestations is stored:

* the structure: ``version`` 1, ``verification_material`` {``certificate``, ``transparency_entries``},
  ``envelope`` {``statement``, ``signature``}, base64 where the PEP says so, sizes and counts bounded;
* the statement: an in-toto v1 Statement with exactly one subject whose name is the uploaded file's name
  (compared parsed, as PEP 740 asks: ``Foo-1.0`` matches ``foo-1.0.0``) and whose ``sha256`` digest is the
  file's; its ``predicateType`` one of the two PEP 740 lists;
* the signature: the DSSE v1 signature (ECDSA P-256 with SHA-256, the PEP's version-1 suite) verifies
  with the public key of the attached X.509 certificate.

What is **not** verified: that the certificate was issued by Sigstore's Fulcio (its chain to a trust root),
the identity it names, and the transparency log entries (inclusion proofs, signed time).  That needs
Sigstore's trust root and an identity policy; a private index has neither, so a signature that checks
here proves only that the statement was signed by the holder of the key in the attached certificate.
Clients that need more verify the served attestations themselves (``pypi-attestations verify``).

Nothing is invented: a file uploaded without attestations has no provenance file, and its pages say
``"provenance": null``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PackageIndexError

SUFFIX = ".provenance"  # PEP 740's example: FILE's provenance is at FILE.provenance
MAX_ATTESTATIONS = 16  # per file and per bundle
MAX_PROVENANCE_SIZE = 4 * 1024 * 1024  # a provenance file index reads (an upload's field is bounded by serve)
_MAX_STATEMENT = 256 * 1024
_MAX_CERTIFICATE = 64 * 1024
_MAX_SIGNATURE = 1024
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPES = ("https://slsa.dev/provenance/v1", "https://docs.pypi.org/attestations/publish/v1")
PUBLISHER_KIND = "dynawheel-upload"
CHECKED = ("structure", "subject-name", "subject-sha256", "dsse-signature-by-attached-certificate")
NOT_CHECKED = ("certificate-chain-to-sigstore", "signer-identity", "transparency-log-entries")


class AttestationError(PackageIndexError):
    """Attestations that are malformed or do not attest the file they came with."""


def provenance_name(filename: str) -> str:
    """The name of a distribution's provenance file."""
    return filename + SUFFIX


def provenance_path(dist: Path) -> Path:
    return dist.with_name(provenance_name(dist.name))


def provenance_from_upload(field: bytes, filename: str, sha256: str, uploader: str | None) -> bytes:
    """The provenance file (JSON bytes) for an upload's ``attestations`` field, after checking every
    attestation against ``filename`` and its ``sha256`` (hex); :class:`AttestationError` says why not."""
    items = _attestation_list(_json(field, "the attestations field"), "the attestations field")
    for number, item in enumerate(items, 1):
        check_attestation(item, filename, sha256, f"attestation {number}")
    claims: dict[str, Any] = {} if uploader is None else {"user": uploader}
    publisher = {"kind": PUBLISHER_KIND, "claims": claims, "checked": list(CHECKED), "not-checked": list(NOT_CHECKED)}
    doc = {"version": 1, "attestation_bundles": [{"publisher": publisher, "attestations": items}]}
    return (json.dumps(doc, sort_keys=True, separators=(",", ":")) + "\n").encode()


def check_provenance(data: bytes, filename: str, sha256: str) -> int:
    """Check a stored provenance file (a PEP 740 provenance object) against the distribution it sits
    beside; the number of attestations it holds.  Raises :class:`AttestationError`."""
    if len(data) > MAX_PROVENANCE_SIZE:
        raise AttestationError(f"provenance of {filename!r} is larger than {MAX_PROVENANCE_SIZE} bytes")
    doc = _object(_json(data, "the provenance file"), "the provenance object")
    _version(doc, "the provenance object")
    bundles = doc.get("attestation_bundles")
    if not isinstance(bundles, list) or not bundles or len(bundles) > MAX_ATTESTATIONS:
        raise AttestationError(f"attestation_bundles must be a list of 1 to {MAX_ATTESTATIONS} bundles: "
                               f"{_short(bundles)}")
    count = 0
    for b, bundle in enumerate(bundles, 1):
        where = f"bundle {b}"
        bundle = _object(bundle, where)
        publisher = _object(bundle.get("publisher"), f"{where} publisher")
        claims = publisher.get("claims")  # PEP 740's text asks for an object, its model allows None (PyPI's null)
        if not isinstance(publisher.get("kind"), str) or not (claims is None or isinstance(claims, dict)):
            raise AttestationError(f"{where} publisher needs a string 'kind' and object 'claims': {_short(publisher)}")
        for number, item in enumerate(_attestation_list(bundle.get("attestations"), f"{where} attestations"), 1):
            check_attestation(item, filename, sha256, f"{where} attestation {number}")
            count += 1
    return count


def check_attestation(item: object, filename: str, sha256: str, where: str = "attestation") -> str:
    """Check one PEP 740 attestation object against a file; its ``predicateType``."""
    att = _object(item, where)
    _version(att, where)
    material = _object(att.get("verification_material"), f"{where} verification_material")
    envelope = _object(att.get("envelope"), f"{where} envelope")
    certificate = _base64(material.get("certificate"), f"{where} certificate", _MAX_CERTIFICATE)
    entries = material.get("transparency_entries")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise AttestationError(f"{where} transparency_entries must be a list of objects: {_short(entries)}")
    statement = _base64(envelope.get("statement"), f"{where} statement", _MAX_STATEMENT)
    signature = _base64(envelope.get("signature"), f"{where} signature", _MAX_SIGNATURE)
    predicate = _check_statement(statement, filename, sha256, where)
    _verify_signature(certificate, statement, signature, where)
    return predicate


def _check_statement(raw: bytes, filename: str, sha256: str, where: str) -> str:
    doc = _object(_json(raw, f"{where} statement"), f"{where} statement")
    if doc.get("_type") != STATEMENT_TYPE:
        raise AttestationError(f"{where} statement is not an in-toto v1 Statement (_type {_short(doc.get('_type'))})")
    predicate = doc.get("predicateType")
    if predicate not in PREDICATE_TYPES:
        raise AttestationError(f"{where} predicateType {_short(predicate)} is none of {', '.join(PREDICATE_TYPES)}")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1:
        raise AttestationError(f"{where} statement must have exactly one subject: {_short(subjects)}")
    subject = _object(subjects[0], f"{where} subject")
    name, digest = subject.get("name"), subject.get("digest")
    if not isinstance(name, str) or not same_distribution(name, filename):
        raise AttestationError(f"{where} is for {_short(name)}, not for {filename!r}")
    claimed = digest.get("sha256") if isinstance(digest, dict) else None
    if not isinstance(claimed, str) or claimed.lower() != sha256.lower():
        raise AttestationError(f"{where} attests sha256 {_short(claimed)}, but {filename!r} has sha256 {sha256}")
    return str(predicate)


def same_distribution(a: str, b: str) -> bool:
    """Two distribution file names that parse to the same name, version (and build and tags)."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename
    from packaging.version import InvalidVersion

    try:
        if a.endswith(".whl") and b.endswith(".whl"):
            return parse_wheel_filename(a) == parse_wheel_filename(b)
        if a.endswith(".tar.gz") and b.endswith(".tar.gz"):
            return parse_sdist_filename(a) == parse_sdist_filename(b)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return False
    return False


def dsse_pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


def _verify_signature(certificate: bytes, statement: bytes, signature: bytes, where: str) -> None:
    try:  # imported here: an optional dependency (the extra 'provenance'), and only attestations pay for it
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:
        raise AttestationError("checking attestation signatures needs the 'cryptography' package, which is not "
                               "installed (pip install 'dynawheel[provenance]')") from None

    try:
        cert = x509.load_der_x509_certificate(certificate)
        key = cert.public_key()
    except ValueError as exc:
        raise AttestationError(f"{where} certificate is not a DER X.509 certificate: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise AttestationError(f"{where} certificate's key is not ECDSA P-256 (PEP 740 version 1)")
    try:
        key.verify(signature, dsse_pae(PAYLOAD_TYPE, statement), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AttestationError(f"{where} signature does not verify with its certificate's key") from None


# ---------------------------------------------------------------- JSON shapes


def _json(data: bytes, what: str) -> object:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise AttestationError(f"{what} is not UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise AttestationError(f"{what} is not valid JSON: {str(exc)[:120]}") from None


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AttestationError(f"{what} must be a JSON object: {_short(value)}")
    return value


def _attestation_list(value: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value or len(value) > MAX_ATTESTATIONS:
        raise AttestationError(f"{what} must be a JSON array of 1 to {MAX_ATTESTATIONS} attestation objects: "
                               f"{_short(value)}")
    return [_object(item, f"{what} item {n}") for n, item in enumerate(value, 1)]


def _version(doc: Mapping[str, Any], what: str) -> None:
    version = doc.get("version")
    if type(version) is not int or version != 1:
        raise AttestationError(f"{what} has version {_short(version)}; only version 1 exists (PEP 740)")


def _base64(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise AttestationError(f"{what} must be a non-empty base64 string: {_short(value)}")
    if len(value) > limit * 4 // 3 + 4:
        raise AttestationError(f"{what} is longer than {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"{what} is not base64: {_short(value)}") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
