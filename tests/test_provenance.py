"""PEP 740 provenance: attestations uploaded by real twine and uv, checked, stored, served, and linked by `index`.

The attestations are made here as PEP 740 lays them out: a real in-toto v1 Statement over the real file's
name and sha256, signed with the DSSE v1 protocol (ECDSA P-256, SHA-256) by a key whose certificate is
attached.  The certificate is self-signed with `cryptography`: structurally what Sigstore issues, but not
issued by Sigstore's Fulcio (no identity, no transparency log entry), so these attestations are valid in
form and signature and trusted by nobody; the server does not claim more (see dynawheel/publish/provenance.py).
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from dynawheel.publish.index import build_index
from dynawheel.publish.provenance import (
    AttestationError,
    check_provenance,
    dsse_pae,
    provenance_from_upload,
)
from dynawheel.publish.serve import ServeConfig, add_user, make_server
from tests.conftest import pypi_problem
from tests.test_index import PEP691_PROJECT, make_sdist, make_wheel, parse_page
from tests.test_serve import JSON, Running, multipart, run, snapshot, upload_fields

PUBLISH = "https://docs.pypi.org/attestations/publish/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"  # DSSE payload type PEP 740 prescribes (spelled out, not imported)


# ---------------------------------------------------------------- making attestations


class Signer:
    """An ECDSA P-256 key and a self-signed certificate for it (not Sigstore-trusted: see the module doc)."""

    def __init__(self, curve: bool = True) -> None:
        self.key: Any = ec.generate_private_key(ec.SECP256R1()) if curve else rsa.generate_private_key(65537, 2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dynawheel tests (self-signed, not Sigstore)")])
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number()).not_valid_before(now)
                     .not_valid_after(now + datetime.timedelta(days=1)).sign(self.key, hashes.SHA256()))

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            return self.key.sign(data, ec.ECDSA(hashes.SHA256()))
        from cryptography.hazmat.primitives.asymmetric import padding
        return bytes(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()))

    def attest(self, name: str, sha256: str, *, statement: dict[str, Any] | None = None) -> dict[str, Any]:
        doc = statement or {"_type": "https://in-toto.io/Statement/v1",
                            "subject": [{"name": name, "digest": {"sha256": sha256}}],
                            "predicateType": PUBLISH, "predicate": None}
        body = json.dumps(doc).encode()
        der = self.cert.public_bytes(serialization.Encoding.DER)
        return {"version": 1,
                "verification_material": {"certificate": base64.b64encode(der).decode(), "transparency_entries": []},
                "envelope": {"statement": base64.b64encode(body).decode(),
                             "signature": base64.b64encode(self.sign(dsse_pae(PAYLOAD_TYPE, body))).decode()}}

    def attest_file(self, dist: Path) -> Path:
        """``<dist>.publish.attestation`` beside ``dist``: the file twine and uv look for."""
        out = dist.with_name(dist.name + ".publish.attestation")
        out.write_text(json.dumps(self.attest(dist.name, _sha(dist))))
        return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def client_verifies(attestation: dict[str, Any], dist_name: str, data: bytes) -> None:
    """What a client does with a served attestation: statement about these bytes, signature by the attached key."""
    statement = base64.b64decode(attestation["envelope"]["statement"])
    subject = json.loads(statement)["subject"]
    assert subject == [{"name": dist_name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}}]
    cert = x509.load_der_x509_certificate(base64.b64decode(attestation["verification_material"]["certificate"]))
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(base64.b64decode(attestation["envelope"]["signature"]), dsse_pae(PAYLOAD_TYPE, statement),
               ec.ECDSA(hashes.SHA256()))


# ---------------------------------------------------------------- the checks, on their own


WHEEL = "pkg-1.0-py3-none-any.whl"
DIGEST = hashlib.sha256(b"the wheel's bytes").hexdigest()


def _statement(**change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"_type": "https://in-toto.io/Statement/v1",
                           "subject": [{"name": WHEEL, "digest": {"sha256": DIGEST}}], "predicateType": PUBLISH}
    doc.update(change)
    return doc


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(att: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = att
        for key in parents:
            node = node[key]
        node[last] = value
    return apply


BAD: dict[str, tuple[Callable[[Signer], list[Any]], str]] = {
    "other digest": (lambda s: [s.attest(WHEEL, hashlib.sha256(b"other").hexdigest())], "attests sha256"),
    "other file": (lambda s: [s.attest("pkg-1.1-py3-none-any.whl", DIGEST)], f"not for '{WHEEL}'"),
    "other tags": (lambda s: [s.attest("pkg-1.0-cp311-cp311-linux_x86_64.whl", DIGEST)], f"not for '{WHEEL}'"),
    "two subjects": (lambda s: [s.attest("", "", statement=_statement(
        subject=[{"name": WHEEL, "digest": {"sha256": DIGEST}}] * 2))], "exactly one subject"),
    "not in-toto": (lambda s: [s.attest("", "", statement=_statement(_type="https://in-toto.io/Statement/v0.1"))],
                    "not an in-toto v1"),
    "other predicate": (lambda s: [s.attest("", "", statement=_statement(predicateType="https://example.com/x"))],
                        "predicateType"),
    "no sha256": (lambda s: [s.attest("", "", statement=_statement(
        subject=[{"name": WHEEL, "digest": {"sha512": DIGEST}}]))], "attests sha256 None"),
    "empty array": (lambda s: [], "1 to 16"),
    "seventeen": (lambda s: [s.attest(WHEEL, DIGEST)] * 17, "1 to 16"),
    "not an object": (lambda s: ["attestation"], "must be a JSON object"),
}
MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "version 2": (_set("version", 2), "only version 1"),
    "version true": (_set("version", True), "only version 1"),
    "no certificate": (_set("verification_material.certificate", None), "non-empty base64"),
    "certificate not base64": (_set("verification_material.certificate", "not base64!"), "is not base64"),
    "certificate not DER": (_set("verification_material.certificate", base64.b64encode(b"junk").decode()),
                            "not a DER X.509"),
    "entries not a list": (_set("verification_material.transparency_entries", {}), "list of objects"),
    "statement not JSON": (_set("envelope.statement", base64.b64encode(b"{nope").decode()), "not valid JSON"),
    "signature of other bytes": (lambda att: _set("envelope.signature", base64.b64encode(
        Signer().sign(b"other")).decode())(att), "does not verify"),
    "no envelope": (_set("envelope", "x"), "envelope must be a JSON object"),
}


def test_a_good_attestation_becomes_a_provenance_object() -> None:
    signer = Signer()
    att = signer.attest(WHEEL, DIGEST)
    doc = json.loads(provenance_from_upload(json.dumps([att]).encode(), WHEEL, DIGEST, "alice"))
    assert doc["version"] == 1 and len(doc["attestation_bundles"]) == 1
    bundle = doc["attestation_bundles"][0]
    assert bundle["attestations"] == [att]  # stored as sent
    assert bundle["publisher"]["kind"] == "dynawheel-upload" and bundle["publisher"]["claims"] == {"user": "alice"}
    assert "certificate-chain-to-sigstore" in bundle["publisher"]["not-checked"]  # says what it did not verify
    assert check_provenance(json.dumps(doc).encode(), WHEEL, DIGEST) == 1
    # PEP 740: the subject may be an equivalent, normalized spelling of the file name
    other = signer.attest("PKG-1.0.0-py3-none-any.whl", DIGEST.upper())
    assert provenance_from_upload(json.dumps([other]).encode(), WHEEL, DIGEST, None)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_attestations_are_refused(case: str) -> None:
    make, message = BAD[case]
    with pytest.raises(AttestationError, match=message):
        provenance_from_upload(json.dumps(make(Signer())).encode(), WHEEL, DIGEST, None)


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_malformed_attestation_objects_are_refused(case: str) -> None:
    mutate, message = MUTATIONS[case]
    att = Signer().attest(WHEEL, DIGEST)
    mutate(att)
    with pytest.raises(AttestationError, match=message):
        provenance_from_upload(json.dumps([att]).encode(), WHEEL, DIGEST, None)


@pytest.mark.parametrize("data", [b"", b"{", b"\xff\xfe", b"[" * 100_000, b'{"version": 1}', b"null"])
def test_undecodable_fields_are_refused(data: bytes) -> None:
    with pytest.raises(AttestationError):
        provenance_from_upload(data, WHEEL, DIGEST, None)


def test_only_the_pep_740_suite_is_accepted() -> None:
    with pytest.raises(AttestationError, match="not ECDSA P-256"):
        provenance_from_upload(json.dumps([Signer(curve=False).attest(WHEEL, DIGEST)]).encode(), WHEEL, DIGEST, None)


# ---------------------------------------------------------------- real twine and uv against `serve`


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(wheelhouse: Path, **config: Any) -> Running:
        started.append(Running(make_server(wheelhouse, "127.0.0.1", 0, ServeConfig(**config))))
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", path)
    return path / "bin" / "python"


def _twine(srv: Running, *args: str | Path) -> Any:
    return run(sys.executable, "-m", "twine", "upload", "--disable-progress-bar", "--non-interactive",
               "--repository-url", srv.url, "-u", "alice", "-p", "pw", *args, check=False)


def _files(srv: Running, project: str) -> dict[str, Any]:
    status, headers, body = srv.request("GET", f"/simple/{project}/", headers={"Accept": JSON})
    assert status == 200 and headers["content-type"] == JSON
    doc = json.loads(body)
    jsonschema.validate(doc, PEP691_PROJECT)
    assert doc["meta"]["api-version"] == "1.3"  # PEP 740 asks for 1.3 or later
    return {f["filename"]: f for f in doc["files"]}


@pytest.mark.slow
def test_twine_attestations_are_stored_served_and_installable(tmp_path: Path, served: Any, venv: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    whl = make_wheel(dist, "attested", "1.0", files={"attested.py": "OK = 'attested'\n"})
    sdist = make_sdist(dist, "attested", "1.0")
    plain = make_wheel(tmp_path / "plain", "attested", "0.9")
    signer = Signer()
    attestations = [signer.attest_file(whl), signer.attest_file(sdist)]
    srv = served(wh, password_file=users)
    proc = _twine(srv, "--attestations", whl, sdist, *attestations)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _twine(srv, plain).returncode == 0  # no attestations: no provenance, nothing invented
    files = _files(srv, "attested")
    assert files[plain.name]["provenance"] is None and not (wh / f"{plain.name}.provenance").exists()
    page = {a["href"].partition("#")[0].split("/")[-1]: a for a in parse_page(wh / "simple/attested/index.html").links}
    assert "data-provenance" not in page[plain.name]
    for path, sent in zip((whl, sdist), attestations):
        url = files[path.name]["provenance"]
        assert url == f"../../{path.name}.provenance" and page[path.name]["data-provenance"] == url
        status, headers, body = srv.request("GET", f"/{path.name}.provenance")
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        [bundle] = doc["attestation_bundles"]
        assert doc["version"] == 1 and bundle["publisher"]["claims"] == {"user": "alice"}
        assert bundle["attestations"] == [json.loads(sent.read_text())]  # exactly what twine read and sent
        client_verifies(bundle["attestations"][0], path.name, srv.request("GET", f"/{path.name}")[2])
    # installers take no notice of the new keys: pip (JSON by negotiation), uv (JSON)
    run(venv, "-m", "pip", "install", "--index-url", f"{srv.url}simple/", "attested==1.0")
    assert run(venv, "-c", "import attested; print(attested.OK)").stdout.strip() == "attested"
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (pip's install above passed)")
    target = tmp_path / "uv-target"
    run(uv, "pip", "install", "--index-url", f"{srv.url}simple/", "--python", venv, "--target", target,
        "attested==1.0")
    assert (target / "attested.py").read_text() == "OK = 'attested'\n"


@pytest.mark.slow
def test_uv_publish_sends_attestations(tmp_path: Path, served: Any) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    whl = make_wheel(dist, "uv-attested", "1.0")
    sent = Signer().attest_file(whl)
    srv = served(wh, password_file=users)
    run(uv, "publish", "--publish-url", f"{srv.url}legacy/", "-u", "alice", "-p", "pw", whl, sent)
    assert (wh / whl.name).read_bytes() == whl.read_bytes()
    stored = json.loads((wh / f"{whl.name}.provenance").read_bytes())
    assert stored["attestation_bundles"][0]["attestations"] == [json.loads(sent.read_text())]
    assert _files(srv, "uv-attested")[whl.name]["provenance"] == f"../../{whl.name}.provenance"
    sdist = make_sdist(dist, "uv-attested", "1.0")
    unsent = Signer().attest_file(sdist)
    run(uv, "publish", "--publish-url", f"{srv.url}legacy/", "-u", "alice", "-p", "pw", "--no-attestations", sdist,
        unsent)
    assert _files(srv, "uv-attested")[sdist.name]["provenance"] is None  # not sent: none made up
    assert not (wh / f"{sdist.name}.provenance").exists()


@pytest.mark.slow
def test_twine_upload_with_an_attestation_of_other_bytes_is_refused(tmp_path: Path, served: Any) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "keep", "1.0")
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    whl = make_wheel(dist, "mismatch", "1.0")
    sent = whl.with_name(whl.name + ".publish.attestation")
    sent.write_text(json.dumps(Signer().attest(whl.name, hashlib.sha256(b"other bytes").hexdigest())))
    srv = served(wh, password_file=users)
    before = snapshot(wh)
    proc = _twine(srv, "--attestations", whl, sent)
    assert proc.returncode != 0 and "400" in proc.stdout + proc.stderr
    assert [r.status for r in srv.server.request_log if r.method == "POST"] == [400]
    assert snapshot(wh) == before  # nothing listed, nothing half-written
    assert srv.request("GET", "/simple/mismatch/")[0] == 404


def _post(srv: Running, whl: Path, attestations: str | None) -> tuple[int, bytes]:
    fields = upload_fields(whl, "raw", "1.0")
    if attestations is not None:
        fields["attestations"] = attestations
    body, ctype = multipart(fields, whl.name, whl.read_bytes())
    status, _, answer = srv.request("POST", "/", body, {"Content-Type": ctype})
    return status, answer


def test_malformed_and_oversized_attestation_fields(tmp_path: Path, served: Any) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    whl = make_wheel(tmp_path / "dist", "raw", "1.0")
    srv = served(wh, allow_anonymous_upload=True)
    before = snapshot(wh)
    good = Signer().attest(whl.name, _sha(whl))
    for field, message in (("{not json", b"not valid JSON"), ("[]", b"1 to 16"), ("", b"not valid JSON"),
                           (json.dumps(good)[:-40], b"not valid JSON"), (json.dumps(good), b"JSON array")):
        status, answer = _post(srv, whl, field)
        assert status == 400 and message in answer, (field[:40], status, answer)
        assert snapshot(wh) == before
    # too big is not malformed: 413 Payload Too Large, saying which field and its limit
    status, answer = _post(srv, whl, json.dumps([good] * 2000))
    assert status == 413 and b"field 'attestations' is larger than 1048576 bytes" in answer, answer
    assert snapshot(wh) == before
    assert _post(srv, whl, json.dumps([good]))[0] == 200
    assert _files(srv, "raw")[whl.name]["provenance"] == f"../../{whl.name}.provenance"


def test_overwrite_without_attestations_drops_the_old_provenance(tmp_path: Path, served: Any) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    whl = make_wheel(tmp_path / "dist", "raw", "1.0")
    srv = served(wh, allow_anonymous_upload=True, allow_overwrite=True)
    assert _post(srv, whl, json.dumps([Signer().attest(whl.name, _sha(whl))]))[0] == 200
    assert (wh / f"{whl.name}.provenance").is_file()
    assert _post(srv, whl, None)[0] == 200
    assert not (wh / f"{whl.name}.provenance").exists()
    assert _files(srv, "raw")[whl.name]["provenance"] is None


# ---------------------------------------------------------------- `index` over stored provenance files


def provenance_file(dist: Path, attestation: dict[str, Any]) -> Path:
    doc = {"version": 1, "attestation_bundles": [{"publisher": {"kind": "GitHub", "claims": None},
                                                  "attestations": [attestation]}]}
    out = dist.with_name(dist.name + ".provenance")
    out.write_text(json.dumps(doc))
    return out


@pytest.mark.parametrize("layout", ["in-place", "site", "flat"])
def test_index_links_provenance_files_that_check(tmp_path: Path, layout: str) -> None:
    wh = tmp_path / "wh"
    good = make_wheel(wh, "prov", "1.0")
    bad = make_wheel(wh, "prov", "1.1")
    bare = make_wheel(wh, "prov", "1.2")
    signer = Signer()
    provenance_file(good, signer.attest(good.name, _sha(good)))
    provenance_file(bad, signer.attest(bad.name, _sha(good)))  # attests other bytes: never linked
    out = None if layout == "in-place" else tmp_path / "site"
    result = build_index(wh, out, flat=layout == "flat")
    assert [s.path.name for s in result.skipped] == [f"{bad.name}.provenance"] and "sha256" in result.skipped[0].reason
    page_dir = result.simple / "prov"
    doc = json.loads((page_dir / "index.json").read_text())
    jsonschema.validate(doc, PEP691_PROJECT)
    links = {f["filename"]: f["provenance"] for f in doc["files"]}
    assert links[bad.name] is None and links[bare.name] is None
    served_copy = (page_dir / links[good.name]).resolve()
    assert served_copy.read_bytes() == (wh / f"{good.name}.provenance").read_bytes()
    html_links = {a["href"].partition("#")[0].split("/")[-1]: a.get("data-provenance")
                  for a in parse_page(page_dir / "index.html").links}
    assert html_links == {good.name: links[good.name], bad.name: None, bare.name: None}
    if layout != "in-place":
        assert not (served_copy.parent / f"{bad.name}.provenance").exists()
    # the cache knows: a re-run writes nothing; a removed provenance file unlinks it (and its copy goes)
    assert build_index(wh, out, flat=layout == "flat").written == ()
    (wh / f"{good.name}.provenance").unlink()
    again = build_index(wh, out, flat=layout == "flat")
    assert page_dir / "index.json" in again.written
    assert all(f["provenance"] is None for f in json.loads((page_dir / "index.json").read_text())["files"])
    assert not served_copy.exists()


def test_serve_hands_out_only_the_provenance_the_index_linked(tmp_path: Path, served: Any) -> None:
    """A provenance file put in the wheelhouse by hand is served only if the index checked and linked it:
    one that attests other bytes, one beside a file that is not listed, one changed after the index
    checked it are not found, even asked for by URL."""
    wh = tmp_path / "wh"
    good, bad = make_wheel(wh, "prov", "1.0"), make_wheel(wh, "prov", "1.1")
    signer = Signer()
    provenance_file(good, signer.attest(good.name, _sha(good)))
    provenance_file(bad, signer.attest(bad.name, _sha(good)))  # other bytes: the index refuses it
    stray = wh / "nothing-1.0-py3-none-any.whl.provenance"  # no such distribution
    shutil.copy(wh / f"{good.name}.provenance", stray)
    past = time.time() - 10  # old enough for the index to vouch for the files' times
    for path in wh.iterdir():
        os.utime(path, (past, past))
    srv = served(wh)
    status, _, body = srv.request("GET", f"/{good.name}.provenance")
    assert status == 200 and body == (wh / f"{good.name}.provenance").read_bytes()
    assert _files(srv, "prov")[good.name]["provenance"] == f"../../{good.name}.provenance"
    assert srv.request("GET", f"/{bad.name}.provenance")[0] == 404
    assert srv.request("GET", f"/{stray.name}")[0] == 404
    # replaced behind the index's back by one that does not check (the watch has not seen it yet): not served
    provenance_file(good, signer.attest(good.name, _sha(bad)))
    os.utime(wh / f"{good.name}.provenance", (past - 5, past - 5))
    assert srv.request("GET", f"/{good.name}.provenance")[0] == 404


@pytest.mark.parametrize("flat", [False, True])
def test_base_url_makes_provenance_urls_absolute(tmp_path: Path, flat: bool) -> None:
    wh, site = tmp_path / "wh", tmp_path / "site"
    whl = make_wheel(wh, "prov", "1.0")
    provenance_file(whl, Signer().attest(whl.name, _sha(whl)))
    relative = build_index(wh, site, flat=flat)
    result = build_index(wh, site, flat=flat, base_url="https://pypi.example.com/team")  # a new base: pages rewritten
    page = result.simple / "prov"
    assert page / "index.json" in result.written and page / "index.html" in result.written
    [entry] = json.loads((page / "index.json").read_text())["files"]
    where = "prov" if flat else "files"
    assert entry["provenance"] == f"https://pypi.example.com/team/{where}/{whl.name}.provenance"
    assert (site / where / f"{whl.name}.provenance").is_file()  # the URL names the copy in the site
    [link] = parse_page(page / "index.html").links
    assert link["data-provenance"] == entry["provenance"]
    assert relative.ok and build_index(wh, site, flat=flat, base_url="https://pypi.example.com/team/").written == ()


@pytest.mark.parametrize("url", ["http://pypi.example.com/", "ftp://pypi.example.com/", "https://", "https:///x",
                                 "https://h/?q=1", "https://h/#f", "https://u:p@h/", "pypi.example.com"])
def test_base_url_must_be_a_secure_origin(tmp_path: Path, url: str) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "prov", "1.0")
    proc = run(sys.executable, "-m", "dynawheel", "index", wh, "--base-url", url, check=False)
    assert proc.returncode == 1 and "base URL must be https://" in proc.stderr and "Traceback" not in proc.stderr
    assert not (wh / "simple").exists()  # refused before anything was written


def test_serve_base_url_names_what_it_serves(tmp_path: Path, served: Any) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    whl = make_wheel(tmp_path / "dist", "raw", "1.0")
    srv = served(wh, allow_anonymous_upload=True, base_url="http://127.0.0.1:1/mirror")  # loopback http is secure
    assert _post(srv, whl, json.dumps([Signer().attest(whl.name, _sha(whl))]))[0] == 200
    url = _files(srv, "raw")[whl.name]["provenance"]
    assert url == f"http://127.0.0.1:1/mirror/{whl.name}.provenance"
    status, _, body = srv.request("GET", f"/{whl.name}.provenance")  # behind a proxy that strips /mirror
    assert status == 200 and json.loads(body)["attestation_bundles"][0]["publisher"]["claims"] == {}


def test_provenance_copied_under_a_running_server_is_linked(tmp_path: Path, served: Any) -> None:
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "later", "1.0")
    srv = served(wh)
    assert _files(srv, "later")[whl.name]["provenance"] is None

    def linked_within(seconds: float) -> object:
        deadline = time.monotonic() + seconds
        while True:
            value = _files(srv, "later")[whl.name]["provenance"]
            if value is not None or time.monotonic() > deadline:
                return value
            time.sleep(0.1)

    staged = tmp_path / "staged.provenance"
    provenance_file(whl, Signer().attest(whl.name, _sha(whl))).rename(staged)
    os.replace(staged, wh / f"{whl.name}.provenance")  # moved in behind the server's back
    assert linked_within(10) == f"../../{whl.name}.provenance"
    (wh / f"{whl.name}.provenance").unlink()
    deadline = time.monotonic() + 10
    while _files(srv, "later")[whl.name]["provenance"] is not None:
        assert time.monotonic() < deadline, "the removed provenance is still linked"
        time.sleep(0.1)


# ---------------------------------------------------------------- real Sigstore attestations, made by others

ASSETS_RELEASE = "0.0.30"  # pypi-attestations' sdist ships its test assets: files and what Sigstore signed over them


@pytest.fixture(scope="module")
def sigstore_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real PEP 740 attestations and PyPI provenance objects, Sigstore-signed in CI (GitHub, GitLab, Google Cloud
    Build, CircleCI) over real distributions, from the sdist of pypi-attestations on PyPI (hash-checked)."""
    reason = pypi_problem("pypi-attestations", "real Sigstore-signed attestations ship in its sdist")
    if reason:
        pytest.skip(reason)
    request = urllib.request.Request("https://pypi.org/simple/pypi-attestations/", headers={"Accept": JSON})
    with urllib.request.urlopen(request, timeout=60) as resp:
        files = json.load(resp)["files"]
    [entry] = [f for f in files if f["filename"] == f"pypi_attestations-{ASSETS_RELEASE}.tar.gz"]
    with urllib.request.urlopen(urljoin(request.full_url, entry["url"]), timeout=120) as resp:
        data = resp.read()
    assert hashlib.sha256(data).hexdigest() == entry["hashes"]["sha256"]
    out = tmp_path_factory.mktemp("sigstore-assets")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tf:
        for member in tf.getmembers():
            if member.isfile() and "/test/assets/" in member.name and "/" not in member.name.rsplit("/assets/", 1)[1]:
                source = tf.extractfile(member)
                assert source is not None
                (out / Path(member.name).name).write_bytes(source.read())
    return out


REAL = {  # distribution -> the attestation files made for it
    "circleci_sign_publish_example-0.0.1.dev137-py3-none-any.whl": ["publish"],
    "gitlab_oidc_project-0.0.3.tar.gz": ["publish"],
    "pypi_attestations-0.0.19.tar.gz": ["publish", "slsa"],  # PyPI Publish and SLSA Provenance predicates
}


@pytest.mark.network
@pytest.mark.slow
def test_real_sigstore_attestations_upload_with_twine(tmp_path: Path, served: Any, sigstore_assets: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    dist.mkdir()
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    srv = served(wh, password_file=users)
    for name, kinds in REAL.items():
        sent = [sigstore_assets / f"{name}.{kind}.attestation" for kind in kinds]
        proc = _twine(srv, "--attestations", sigstore_assets / name, *sent)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        stored = json.loads((wh / f"{name}.provenance").read_bytes())["attestation_bundles"][0]["attestations"]
        canonical = functools.partial(json.dumps, sort_keys=True)
        assert sorted(map(canonical, stored)) == sorted(canonical(json.loads(p.read_bytes())) for p in sent)
    # a real, valid attestation, sent with another file: refused, nothing stored
    other = dist / "rfc8785-0.1.2-py3-none-any.whl"
    shutil.copy(sigstore_assets / other.name, other)
    wrong = dist / f"{other.name}.publish.attestation"
    shutil.copy(sigstore_assets / "gitlab_oidc_project-0.0.3.tar.gz.publish.attestation", wrong)
    before = snapshot(wh)
    proc = _twine(srv, "--attestations", other, wrong)
    assert proc.returncode != 0 and "400" in proc.stdout + proc.stderr and snapshot(wh) == before
    # its own attestation goes through
    shutil.copy(sigstore_assets / wrong.name, wrong)
    assert _twine(srv, "--attestations", other, wrong).returncode == 0
    assert _files(srv, "rfc8785")[other.name]["provenance"] == f"../../{other.name}.provenance"


@pytest.mark.network
def test_index_links_real_pypi_provenance(tmp_path: Path, sigstore_assets: Path) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    names = sorted(p.name[: -len(".provenance")] for p in sigstore_assets.glob("*.provenance"))
    assert len(names) >= 3  # GitHub, Google Cloud Build and CircleCI publishers
    for name in names:
        shutil.copy(sigstore_assets / name, wh / name)
        shutil.copy(sigstore_assets / f"{name}.provenance", wh / f"{name}.provenance")
    result = build_index(wh)
    assert result.ok, result.skipped
    linked = {d.filename for d in result.files if d.provenance is not None}
    assert linked == set(names)
