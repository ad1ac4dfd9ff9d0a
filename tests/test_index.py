"""dynawheel.publish.index: the static PEP 503 / 691 / 658 index (no network)."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import io
import json
import os
import random
import re
import shutil
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dynawheel.errors import PackageIndexError
from dynawheel.publish.index import build_index, normalize_name

# ---------------------------------------------------------------- wheels made here, from a dict


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(directory: Path, name: str, version: str, *, requires_python: str | None = None,
               files: dict[str, str] | None = None, tag: str = "py3-none-any", filename: str | None = None,
               metadata_name: str | None = None, extra: dict[str, bytes] | None = None) -> Path:
    """Write a valid pure wheel (METADATA, WHEEL, RECORD) and return its path."""
    dist = re.sub(r"[-_.]+", "_", name)
    info = f"{dist}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {metadata_name or name}\nVersion: {version}\n"
    if requires_python:
        meta += f"Requires-Python: {requires_python}\n"
    sources = files or {f"{dist}.py": f"VERSION = {version!r}\n"}
    contents: dict[str, bytes] = {k: v.encode() for k, v in sources.items()}
    contents.update(extra or {})
    contents[f"{info}/METADATA"] = meta.encode()
    contents[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: {tag}\n".encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in contents.items())
    contents[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (filename or f"{dist}-{version}-{tag}.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in contents.items():
            zf.writestr(zipfile.ZipInfo(arcname, (2020, 1, 1, 0, 0, 0)), data)
    return path


def _patch_member(data: bytearray, member: str, local: dict[int, bytes], central: dict[int, bytes]) -> bytearray:
    """Overwrite fields of ``member``'s local header and central-directory entry (offsets from each header)."""
    name = member.encode()
    lh = data.find(name) - 30
    cd = data.rfind(name) - 46
    assert data[lh:lh + 4] == b"PK\x03\x04" and data[cd:cd + 4] == b"PK\x01\x02"
    for offset, value in local.items():
        data[lh + offset: lh + offset + len(value)] = value
    for offset, value in central.items():
        data[cd + offset: cd + offset + len(value)] = value
    return data


def make_corrupt_wheels(directory: Path) -> dict[str, Path]:
    """Wheels damaged the ways issue 12 lists, each in the zip layer around ``<dist-info>/METADATA``.

    Every one has a valid file name; each must be skipped (index), refused with 400 (upload), never a traceback.
    """
    info, meta_name = "broken-1.0.dist-info", "broken-1.0.dist-info/METADATA"
    meta = b"Metadata-Version: 2.1\nName: broken\nVersion: 1.0\n" + b"Summary: padding padding\n" * 40

    def build(compression: int = zipfile.ZIP_DEFLATED, name: str = meta_name) -> bytearray:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(zipfile.ZipInfo("broken.py", (2020, 1, 1, 0, 0, 0)), b"X = 1\n" * 50)
            entry = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            entry.compress_type = compression
            zf.writestr(entry, meta)
            zf.writestr(f"{info}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            zf.writestr(f"{info}/RECORD", b"")
        return bytearray(buf.getvalue())

    def junk_data(compression: int) -> bytearray:
        data = build(compression)
        start = data.find(meta_name.encode()) + len(meta_name)
        data[start + 4: start + 24] = bytes(b ^ 0x5A for b in data[start + 4: start + 24])
        return data

    crc = build()
    cd = crc.rfind(meta_name.encode()) - 46
    crc[cd + 16: cd + 20] = bytes(b ^ 0xFF for b in crc[cd + 16: cd + 20])
    lh = crc.find(meta_name.encode()) - 30
    crc[lh + 14: lh + 18] = crc[cd + 16: cd + 20]
    cases = {
        "bad-crc": crc,
        "deflate-junk": junk_data(zipfile.ZIP_DEFLATED),
        "bzip2-junk": junk_data(zipfile.ZIP_BZIP2),
        "lzma-junk": junk_data(zipfile.ZIP_LZMA),
        "method-99": _patch_member(build(), meta_name, {8: b"\x63\x00"}, {10: b"\x63\x00"}),
        "encrypted": _patch_member(build(), meta_name, {6: b"\x01"}, {8: b"\x01"}),
        "version-too-new": _patch_member(build(), meta_name, {4: b"\x63\x00"}, {6: b"\x63\x00"}),
        "local-name-differs": _patch_member(build(), meta_name, {30 + 3: b"X"}, {}),
        "non-utf8-name": _patch_member(build(name=info + "/METADAT\u00e9"), info + "/METADAT\u00e9",
                                       {30 + len(info) + 8: b"\xff"}, {46 + len(info) + 8: b"\xff"}),
        "no-metadata": build(name=info + "/METADATX"),
        "truncated": build()[:-60],
    }
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, data in cases.items():
        path = directory / kind / "broken-1.0-py3-none-any.whl"
        path.parent.mkdir()
        path.write_bytes(bytes(data))
        out[kind] = path
    return out


def make_sdist(directory: Path, name: str, version: str, *, requires_python: str | None = None) -> Path:
    stem = f"{re.sub(r'[-_.]+', '_', name)}-{version}"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python:
        pkg_info += f"Requires-Python: {requires_python}\n"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{stem}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for arcname, text in ((f"{stem}/PKG-INFO", pkg_info), (f"{stem}/setup.py", "")):
            data = text.encode()
            member = tarfile.TarInfo(arcname)
            member.size = len(data)
            tf.addfile(member, io.BytesIO(data))
    return path


# ---------------------------------------------------------------- PEP 691 (api-version 1.x) JSON schema

_META = {"type": "object", "required": ["api-version"],
         "properties": {"api-version": {"type": "string", "pattern": r"^1\.\d+$"}}}
_HASHES = {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"}}
PEP691_PROJECT_LIST = {
    "type": "object", "required": ["meta", "projects"],
    "properties": {
        "meta": _META,
        "projects": {"type": "array", "items": {"type": "object", "required": ["name"],
                                                "properties": {"name": {"type": "string"}}}},
    },
}
PEP691_PROJECT = {
    "type": "object", "required": ["meta", "name", "files", "versions"],
    "properties": {
        "meta": _META,
        "name": {"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"},
        "versions": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        "project-status": {"type": "object", "required": ["status"], "properties": {
            "status": {"enum": ["active", "archived", "quarantined", "deprecated"]}, "reason": {"type": "string"}}},
        "files": {"type": "array", "items": {
            "type": "object", "required": ["filename", "url", "hashes", "size"],
            "properties": {
                "filename": {"type": "string", "pattern": r"^[^/\\]+$"},
                "url": {"type": "string"},
                "hashes": _HASHES,
                "requires-python": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "upload-time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"},
                "yanked": {"anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 1}]},
                "core-metadata": {"anyOf": [{"type": "boolean"}, _HASHES]},
                "dist-info-metadata": {"anyOf": [{"type": "boolean"}, _HASHES]},
                "gpg-sig": {"type": "boolean"},
                "provenance": {"anyOf": [{"type": "null"}, {"type": "string", "minLength": 1}]},  # PEP 740
            },
        }},
    },
}


class Links(html.parser.HTMLParser):
    """All <a> elements of a page: [(attrs, text)]."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, Any]] = []
        self.meta: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))
        elif tag == "meta":
            d = dict(attrs)
            self.meta[str(d.get("name"))] = str(d.get("content"))


def parse_page(path: Path) -> Links:
    parser = Links()
    parser.feed(path.read_text())
    return parser


# ---------------------------------------------------------------- tests


def test_normalize_name() -> None:
    assert normalize_name("namespace.mod") == "namespace-mod"
    assert normalize_name("Foo__Bar-.baz") == "foo-bar-baz"


def test_index_in_place(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "namespace.mod", "1.0", requires_python=">=3.8,<4")
    make_wheel(wh, "namespace.mod", "1.1")
    make_wheel(wh, "Other_Pkg", "0.1")
    result = build_index(wh)
    assert result.ok and result.projects == ("namespace-mod", "other-pkg")
    root = parse_page(wh / "simple" / "index.html")
    assert root.meta["pypi:repository-version"] == "1.3"
    assert [a["href"] for a in root.links] == ["namespace-mod/", "other-pkg/"]
    page = wh / "simple" / "namespace-mod" / "index.html"
    assert "&gt;=3.8,&lt;4" in page.read_text()
    links = parse_page(page).links
    assert len(links) == 2
    first = links[0]
    href, _, fragment = first["href"].partition("#")
    assert (page.parent / href).resolve() == whl.resolve()
    assert fragment == "sha256=" + hashlib.sha256(whl.read_bytes()).hexdigest()
    assert first["data-requires-python"] == ">=3.8,<4"
    metadata = (wh / (whl.name + ".metadata")).read_bytes()
    with zipfile.ZipFile(whl) as zf:
        assert metadata == zf.read("namespace_mod-1.0.dist-info/METADATA")
    meta_hash = "sha256=" + hashlib.sha256(metadata).hexdigest()
    assert first["data-core-metadata"] == first["data-dist-info-metadata"] == meta_hash
    doc = json.loads((page.parent / "index.json").read_text())
    jsonschema.validate(doc, PEP691_PROJECT)
    jsonschema.validate(json.loads((wh / "simple" / "index.json").read_text()), PEP691_PROJECT_LIST)
    assert doc["versions"] == ["1.0", "1.1"] and doc["files"][0]["core-metadata"] == {"sha256": meta_hash[7:]}
    assert doc["files"][0]["url"] == href and doc["files"][0]["size"] == whl.stat().st_size


def test_index_to_site_copies_files(tmp_path: Path) -> None:
    wh, site = tmp_path / "wh", tmp_path / "site"
    whl = make_wheel(wh, "pkg", "1.0")
    result = build_index(wh, site)
    assert (site / "files" / whl.name).read_bytes() == whl.read_bytes()
    page = site / "simple" / "pkg" / "index.html"
    href = parse_page(page).links[0]["href"].partition("#")[0]
    assert (page.parent / href).resolve() == (site / "files" / whl.name).resolve()
    assert (site / "files" / (whl.name + ".metadata")).is_file()
    assert result.simple == site / "simple"
    assert not list(wh.glob("*.metadata")) and not (wh / "simple").exists()


def test_flat_layout(tmp_path: Path) -> None:
    wh, site = tmp_path / "wh", tmp_path / "flat"
    whl = make_wheel(wh, "namespace.mod", "1.0")
    result = build_index(wh, site, flat=True)
    assert result.simple == site
    assert (site / "namespace-mod" / whl.name).is_file()
    assert (site / "namespace-mod" / (whl.name + ".metadata")).is_file()
    href = parse_page(site / "namespace-mod" / "index.html").links[0]["href"]
    assert href.partition("#")[0] == whl.name
    assert parse_page(site / "index.html").links[0]["href"] == "namespace-mod/"


def test_incremental_rewrites_only_changes(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "a", "1.0")
    make_wheel(wh, "b", "1.0")
    first = build_index(wh)
    assert len(first.written) == 6 + 2  # 3 pairs of pages + 2 .metadata
    assert build_index(wh).written == ()
    a_page = wh / "simple" / "a" / "index.html"
    before = a_page.stat().st_mtime_ns
    new = make_wheel(wh, "b", "2.0")
    again = build_index(wh)
    assert set(again.written) == {wh / "simple" / "b" / "index.html", wh / "simple" / "b" / "index.json",
                                  wh / (new.name + ".metadata")}
    assert a_page.stat().st_mtime_ns == before
    new.unlink()
    (wh / "a-1.0-py3-none-any.whl").unlink()
    gone = build_index(wh)
    assert wh / "simple" / "a" / "index.html" in gone.removed
    assert not (wh / (new.name + ".metadata")).exists() and gone.projects == ("b",)
    assert "a/" not in (wh / "simple" / "index.html").read_text()


def test_yanked_and_sdist(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "pkg", "1.0")
    sdist = make_sdist(wh, "pkg", "1.0", requires_python=">=3.9")
    result = build_index(wh, yanked={whl.name: 'broken <"build">', sdist.name: "", "nope.whl": "x"})
    assert result.unknown_yanked == ("nope.whl",)
    links = {a["href"].partition("#")[0]: a for a in parse_page(wh / "simple" / "pkg" / "index.html").links}
    assert links[f"../../{whl.name}"]["data-yanked"] == 'broken <"build">'
    assert links[f"../../{sdist.name}"]["data-yanked"] == ""
    assert links[f"../../{sdist.name}"]["data-requires-python"] == ">=3.9"
    assert "data-core-metadata" not in links[f"../../{sdist.name}"]
    doc = json.loads((wh / "simple" / "pkg" / "index.json").read_text())
    jsonschema.validate(doc, PEP691_PROJECT)
    by_name = {f["filename"]: f for f in doc["files"]}
    assert by_name[whl.name]["yanked"] == 'broken <"build">'
    assert by_name[sdist.name]["yanked"] is True and by_name[sdist.name]["core-metadata"] is False


def test_bad_inputs_are_skipped_and_reported(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    good = make_wheel(wh, "good", "1.0")
    (wh / "README.txt").write_text("hello")
    (wh / "junk-1.0-py3-none-any.whl").write_bytes(b"PK\x03\x04 not really a zip")
    truncated = make_wheel(tmp_path / "tmp", "trunc", "1.0")
    (wh / truncated.name).write_bytes(truncated.read_bytes()[:-40])
    make_wheel(wh, "liar", "1.0", metadata_name="someone-else")
    (wh / "bad name.whl").write_bytes(good.read_bytes())
    make_wheel(wh, "nometa", "1.0", filename="nometa-1.0-py3-none-any.whl", files={"x.py": ""})
    with zipfile.ZipFile(wh / "nometa-1.0-py3-none-any.whl", "w") as zf:
        zf.writestr("x.py", "")
    evil = make_wheel(wh, "evil", "1.0", extra={"../../escape.txt": b"x", "/abs.txt": b"y"})
    result = build_index(wh)
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert set(reasons) == {"README.txt", "junk-1.0-py3-none-any.whl", truncated.name, "liar-1.0-py3-none-any.whl",
                            "bad name.whl", "nometa-1.0-py3-none-any.whl"}
    assert "someone-else" in reasons["liar-1.0-py3-none-any.whl"]
    assert "corrupted" in reasons["junk-1.0-py3-none-any.whl"]
    assert result.projects == ("evil", "good") and not result.ok
    assert not (tmp_path / "escape.txt").exists() and evil.is_file()


def test_conflicting_claims(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "dup", "1.0", files={"dup.py": "A = 1\n"})
    make_wheel(wh, "Dup", "1.0.0", files={"dup.py": "A = 2\n"}, filename="Dup-1.0.0-py3-none-any.whl")
    make_wheel(wh, "dup", "1.0", tag="cp311-cp311-linux_x86_64")  # other tag: no conflict
    result = build_index(wh)
    assert len(result.conflicts) == 1
    conflict = result.conflicts[0]
    assert conflict.project == "dup" and {p.name for p in conflict.files} == {
        "dup-1.0-py3-none-any.whl", "Dup-1.0.0-py3-none-any.whl"}
    assert [f.filename for f in result.files] == ["dup-1.0-cp311-cp311-linux_x86_64.whl"]


def test_missing_wheelhouse(tmp_path: Path) -> None:
    with pytest.raises(PackageIndexError, match="does not exist"):
        build_index(tmp_path / "nope")


def test_cli_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dynawheel.cli import main

    wh = tmp_path / "wh"
    whl = make_wheel(wh, "pkg", "1.0")
    assert main(["index", str(wh), "-o", str(tmp_path / "site"), "--yank", f"{whl.name}=bad"]) == 0
    assert "1 file in 1 project" in capsys.readouterr().out
    (wh / "notes.txt").write_text("x")
    assert main(["index", str(wh), "--flat", "-o", str(tmp_path / "flat")]) == 3
    assert "skipped: notes.txt" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "missing")]) == 1


def test_corrupt_wheels_are_skipped_never_a_traceback(tmp_path: Path) -> None:
    """Issue 12: each zip-layer corruption is skipped with a reason naming the wheel (and the member), exit 3."""
    import subprocess
    import sys

    corrupt = make_corrupt_wheels(tmp_path / "corrupt")
    for kind, path in corrupt.items():
        wh = tmp_path / "wh" / kind
        good = make_wheel(wh, "fine", "1.0")
        os.link(path, wh / path.name)
        result = build_index(wh)
        assert [f.filename for f in result.files] == [good.name], kind
        assert [s.path.name for s in result.skipped] == [path.name], kind
        reason = result.skipped[0].reason
        assert path.name in reason, (kind, reason)
        if kind not in ("truncated", "no-metadata", "non-utf8-name", "version-too-new"):  # central directory
            assert "METADATA" in reason, (kind, reason)
        proc = subprocess.run([sys.executable, "-m", "dynawheel", "index", str(wh)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 3 and "Traceback" not in proc.stderr, (kind, proc.stderr)
        assert f"skipped: {path.name}:" in proc.stderr and "1 file in 1 project" in proc.stdout


# ---------------------------------------------------------------- the cache (issue 13)


def _age(*paths: Path) -> None:
    """Date files 10 s back: the cache does not vouch for files changed within the file system's clock
    granularity (it reads them again), and these tests check what it skips."""
    past = time.time() - 10
    for path in paths:
        for each in ([path] if path.is_file() else list(path.iterdir())):
            if each.suffix in (".whl", ".gz"):
                os.utime(each, (past, past))


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every distribution really read (not taken from a cache)."""
    import dynawheel.publish.index as index_module

    reads: list[str] = []
    real = index_module._inspect_uncached
    index_module._cache.clear()  # the in-process cache would hide reads

    def counting(path: Path, st: os.stat_result, name: str) -> Any:
        reads.append(name)
        return real(path, st, name)

    monkeypatch.setattr(index_module, "_inspect_uncached", counting)
    return reads


@pytest.mark.parametrize("out", [None, "site", "flat"])
def test_cache_rerun_reads_only_new_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, out: str | None) -> None:
    import dynawheel.publish.index as index_module

    wh = tmp_path / "wh"
    for i in range(12):
        make_wheel(wh, f"proj{i % 5}", f"1.{i}")
    _age(wh)
    site = None if out is None else tmp_path / out
    flat = out == "flat"
    first = build_index(wh, site, flat=flat)
    root = site or wh
    assert (root / ".dynawheel-index-cache.jsonl").is_file()
    reads = _count_reads(monkeypatch)
    again = build_index(wh, site, flat=flat)
    assert reads == [] and again.written == () and again.removed == ()
    assert [d.filename for d in again.files] == [d.filename for d in first.files]
    added = make_wheel(wh, "proj1", "9.0")
    newproj = make_wheel(wh, "brand-new", "1.0")
    _age(added, newproj)
    third = build_index(wh, site, flat=flat)
    assert sorted(reads) == sorted([added.name, newproj.name])
    changed = {str(p.relative_to(root)) for p in third.written}
    simple = "" if flat else "simple/"
    files = "" if out is None else ("proj1/" if flat else "files/")
    expected = {f"{simple}proj1/index.html", f"{simple}proj1/index.json", f"{simple}brand-new/index.html",
                f"{simple}brand-new/index.json", f"{simple}index.html", f"{simple}index.json",
                f"{files}{added.name}.metadata", f"{'brand-new/' if flat else files}{newproj.name}.metadata"}
    if out is not None:
        expected |= {f"{files}{added.name}", f"{'brand-new/' if flat else files}{newproj.name}"}
    assert changed == expected
    # what is on disk is exactly what a run without the cache writes
    index_module._cache.clear()
    fresh = build_index(wh, site, flat=flat, use_cache=False)
    assert fresh.written == () and fresh.removed == ()
    # a file replaced in place (same name, new content) is read again; a removed one leaves the pages
    (wh / added.name).unlink()
    make_wheel(wh, "proj1", "9.0", files={"proj1.py": "CHANGED = True\n"})
    _age(wh / added.name)
    newproj.unlink()
    reads.clear()
    fourth = build_index(wh, site, flat=flat)
    assert reads == [added.name]
    assert not (root / simple / "brand-new" / "index.html").exists()
    assert {p.name for p in fourth.removed} >= {"index.html", "index.json", newproj.name + ".metadata"}
    page = (root / simple / "proj1" / "index.html").read_text()
    assert hashlib.sha256((wh / added.name).read_bytes()).hexdigest() in page
    index_module._cache.clear()
    assert build_index(wh, site, flat=flat, use_cache=False).written == ()


@pytest.mark.parametrize("damage", ["garbage", "torn-last-line", "wrong-types", "other-layout", "empty", "binary"])
def test_corrupt_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  caplog: pytest.LogCaptureFixture, damage: str) -> None:
    wh = tmp_path / "wh"
    for i in range(5):
        make_wheel(wh, f"c{i}", "1.0")
    _age(wh)
    build_index(wh)
    cache = wh / ".dynawheel-index-cache.jsonl"
    lines = cache.read_bytes().splitlines()
    wrong_size = json.dumps(["x" if i == 8 else v for i, v in enumerate(json.loads(lines[1]))]).encode()
    damaged = {
        "garbage": b"{not json\n",
        "torn-last-line": b"\n".join(lines[:-1]) + b"\n" + lines[-1][: len(lines[-1]) // 2],
        "wrong-types": b"\n".join([lines[0], wrong_size, *lines[2:]]) + b"\n",
        "other-layout": b"\n".join([lines[0].replace(b'"layout": "[', b'"layout": "[9, '), *lines[1:]]) + b"\n",
        "empty": b"",
        "binary": os.urandom(4096),
    }[damage]
    cache.write_bytes(damaged)
    reads = _count_reads(monkeypatch)
    caplog.set_level("INFO")
    result = build_index(wh)
    assert result.ok and len(result.files) == 5 and result.written == ()
    if damage == "torn-last-line":
        assert len(reads) == 1  # everything before the torn line still counts
    else:
        assert len(reads) == 5
    reads.clear()
    assert build_index(wh).written == () and reads == []  # rebuilt: the next run reads nothing
    assert cache.read_bytes().splitlines()[0].startswith(b'{"format": 4')


def _rel(paths: Any, root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in paths}


def test_cached_rerun_follows_yanks_and_missing_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run with the cache rewrites exactly the pages whose inputs changed (a yank) or that are gone,
    and a .metadata file that is gone, reading no distribution; the result is what a full run writes."""
    wh = tmp_path / "wh"
    alpha, beta = make_wheel(wh, "alpha", "1.0"), make_wheel(wh, "beta", "1.0")
    make_wheel(wh, "gamma", "1.0")
    _age(wh)
    build_index(wh)
    reads = _count_reads(monkeypatch)
    pages = {"simple/alpha/index.html", "simple/alpha/index.json"}
    assert _rel(build_index(wh, yanked={alpha.name: "broken"}).written, wh) == pages
    assert 'data-yanked="broken"' in (wh / "simple" / "alpha" / "index.html").read_text()
    assert build_index(wh).written == ()  # None keeps the yanks (from the cache)
    assert _rel(build_index(wh, yanked={}).written, wh) == pages
    assert "data-yanked" not in (wh / "simple" / "alpha" / "index.html").read_text()
    shutil.rmtree(wh / "simple" / "beta")
    (wh / "simple" / "index.json").unlink()
    (wh / (beta.name + ".metadata")).unlink()
    renamed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renamed.append(Path(dst).name) or real_replace(src, dst))
    assert _rel(build_index(wh).written, wh) == {
        "simple/beta/index.html", "simple/beta/index.json", "simple/index.json", beta.name + ".metadata"}
    assert beta.name + ".metadata" in renamed  # the page links it: written beside, then renamed, never in place
    assert reads == []
    assert build_index(wh, use_cache=False).written == ()


# what a no-op `dynawheel index` must not import: it reads no archive, parses no metadata, renders no page
NOT_FOR_NOOP_INDEX = ("zipfile", "tarfile", "email", "packaging", "html", "concurrent.futures", "datetime",
                      "hashlib", "tempfile", "dynawheel.publish.serve", "dynawheel.wheel", "socket", "ctypes")


def test_noop_index_imports_no_reader(tmp_path: Path) -> None:
    """Structural, not timed (benchmarks/bench_publish.py has the figures): on a wheelhouse indexed
    before, a run is mostly interpreter start-up, and these modules cost as much as the run itself."""
    from .test_startup import imported

    wh = tmp_path / "wh"
    for i in range(4):
        make_wheel(wh, f"p{i}", "1.0")
    _age(wh)
    code, first = imported("index", wh, cwd=tmp_path)
    assert code == 0 and "zipfile" in first and "packaging" in first  # the first run reads the wheels
    code, names = imported("index", wh, cwd=tmp_path)
    assert code == 0
    assert [n for n in NOT_FOR_NOOP_INDEX if any(m == n or m.startswith(n + ".") for m in names)] == []


def test_serve_help_shows_the_upload_limit(capsys: pytest.CaptureFixture[str]) -> None:
    from dynawheel.cli import main
    from dynawheel.publish.serve import DEFAULT_MAX_UPLOAD

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert f"(default: {DEFAULT_MAX_UPLOAD})" in " ".join(capsys.readouterr().out.split())


def _random_text(rng: random.Random) -> str:
    return "".join(rng.choice('az09"\\/<>&\n\t\x00\x7f\u00e9\u2028\U0001f600 ') for _ in range(rng.randrange(6)))


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 2**63, 1795000000123456789])
    if kind in (2, 3, 4):
        return _random_text(rng)
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {_random_text(rng): _random_json(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_page_json_is_json_dumps_byte_for_byte() -> None:
    """The pages' JSON writer (faster than json.dumps with indent) gives json.dumps' exact bytes."""
    from dynawheel.publish.index import _json_bytes

    rng = random.Random(13)
    docs = [{"a": {}, "b": [], "c": [{}, [], [[]]], "\u00e9": "\U0001f600", "": None}]
    docs += [{"doc": _random_json(rng)} for _ in range(500)]
    for doc in docs:
        assert _json_bytes(doc) == (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), doc


def test_site_files_are_world_readable_whatever_the_umask(tmp_path: Path) -> None:
    """Pages and .metadata files are 0644 (a web server reads them) even when written under umask 077,
    new or replaced, and no temporary file is left beside them."""
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "perm", "1.0")
    old = os.umask(0o077)
    try:
        build_index(wh)
        make_wheel(wh, "perm", "2.0")
        build_index(wh)
    finally:
        os.umask(old)
    outputs = [wh / (whl.name + ".metadata"), *sorted((wh / "simple").rglob("index.*"))]
    assert len(outputs) == 5 and {oct(p.stat().st_mode & 0o777) for p in outputs} == {"0o644"}
    assert not [p for p in wh.rglob(".*") if p.name != ".dynawheel-index-cache.jsonl"]


def _overwrite_in_place(path: Path, name: str, version: str, text: str, keep_mtime: bool) -> str:
    """Rewrite the wheel at ``path`` through its own inode with other content of the same size; its sha256."""
    st = path.stat()
    other = make_wheel(path.parent.parent / "other", name, version, files={"inplace.py": text})
    data = other.read_bytes()
    assert len(data) == st.st_size  # same size: only the content (and maybe the mtime) tells
    with path.open("r+b") as fh:
        fh.write(data)
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        past = time.time() - 5  # a new mtime, old enough for the cache to vouch for it
        os.utime(path, (past, past))
    assert path.stat().st_ino == st.st_ino
    return hashlib.sha256(data).hexdigest()


def test_wheel_overwritten_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same name, same inode, same size: a new mtime (ns) is noticed (the file is read again, its pages get the
    new hash); a rewrite that keeps the mtime is not (the documented limit of a stat cache), and a run
    without the cache sees it."""
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "inplace", "1.0", files={"inplace.py": "A"})
    _age(wh)
    build_index(wh)
    reads = _count_reads(monkeypatch)
    sha_b = _overwrite_in_place(whl, "inplace", "1.0", "B", keep_mtime=False)
    result = build_index(wh)
    assert reads == [whl.name] and result.files[0].sha256 == sha_b
    assert f"#sha256={sha_b}" in (wh / "simple" / "inplace" / "index.html").read_text()
    reads.clear()
    sha_c = _overwrite_in_place(whl, "inplace", "1.0", "C", keep_mtime=True)
    assert build_index(wh).written == () and reads == []  # size and mtime as indexed: not noticed
    index_module = sys.modules["dynawheel.publish.index"]
    index_module._cache.clear()
    result = build_index(wh, use_cache=False)
    assert result.files[0].sha256 == sha_c
    assert f"#sha256={sha_c}" in (wh / "simple" / "inplace" / "index.html").read_text()


def test_project_update_matches_a_full_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What serve does after an upload: one project's files and pages, the project list if it changes."""
    import dynawheel.publish.index as index_module

    wh = tmp_path / "wh"
    for i in range(6):
        make_wheel(wh, f"p{i}", "1.0")
    _age(wh)
    build_index(wh)
    reads = _count_reads(monkeypatch)
    added = make_wheel(wh, "p3", "2.0")
    _age(added)
    result = build_index(wh, project="p3")
    assert reads == [added.name] and [d.filename for d in result.files] == ["p3-1.0-py3-none-any.whl", added.name]
    assert {str(p.relative_to(wh)) for p in result.written} == {
        "simple/p3/index.html", "simple/p3/index.json", added.name + ".metadata"}
    new = make_wheel(wh, "p-new", "1.0")
    _age(new)
    result = build_index(wh, project="p-new")
    assert {str(p.relative_to(wh)) for p in result.written} == {
        "simple/p-new/index.html", "simple/p-new/index.json", "simple/index.html", "simple/index.json",
        new.name + ".metadata"}
    index_module._cache.clear()
    reads.clear()
    assert build_index(wh).written == () and reads == []  # the appended cache lines are read back
    assert build_index(wh, use_cache=False).written == ()


def test_upload_update_lists_no_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What serve does after an upload (``added``: the file it inspected): the project's files are those the
    cache knows plus the new one, looked up by name; no directory of the wheelhouse or the site is listed
    (the work is the project's, whatever the number of others), and the site is what a full run writes."""
    import dynawheel.publish.index as index_module
    from dynawheel.publish.index import inspect_distribution

    wh = tmp_path / "wh"
    for i in range(6):
        make_wheel(wh, f"p{i}", "1.0")
    make_sdist(wh, "p2", "0.5")
    _age(wh)
    build_index(wh)
    staging = tmp_path / "staging"
    staged = [make_wheel(staging, "p2", "2.0"), make_wheel(staging, "p-new", "1.0"),
              make_sdist(staging, "p-new", "0.1"), make_wheel(staging, "A.First", "1.0")]

    def refused(*args: object) -> object:
        raise AssertionError(f"a directory was listed: {args}")

    reads = _count_reads(monkeypatch)
    for path in staged:
        part = wh / f".{path.name}.part"  # as serve stages an upload: a hidden file of the wheelhouse
        os.rename(path, part)
        dist = inspect_distribution(part, path.name)
        os.replace(part, wh / path.name)
        with monkeypatch.context() as patched:
            patched.setattr(index_module.os, "listdir", refused)
            patched.setattr(index_module.os, "scandir", refused)
            result = build_index(wh, project=normalize_name(dist.project), added=(dist,))
        assert path.name in {d.filename for d in result.files}
        assert reads.count(path.name) == 1  # read as the upload was checked, not again to index it
    # (a file uploaded just before, within the file system's clock granularity, is read again: not vouched for)
    assert set(reads) == {p.name for p in staged}
    twin = tmp_path / "twin"  # the same files indexed from nothing: the same bytes
    twin.mkdir()
    for path in wh.glob("*"):
        if path.suffix in (".whl", ".gz"):
            os.link(path, twin / path.name)
    build_index(twin)
    pages = sorted(p.relative_to(wh) for p in (wh / "simple").rglob("*") if p.is_file())
    assert pages == sorted(p.relative_to(twin) for p in (twin / "simple").rglob("*") if p.is_file())
    assert all((wh / page).read_bytes() == (twin / page).read_bytes() for page in pages)
    assert [p["name"] for p in json.loads((wh / "simple" / "index.json").read_text())["projects"]] == [
        "A.First", "p-new", "p0", "p1", "p2", "p3", "p4", "p5"]


def test_lines_another_process_appended_are_applied_not_parsed_again(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes of serve share the cache file: what another one appended (its uploads) is applied to
    the cache this process remembers, line by line, views included (the project list it then writes has the
    other's project); the file is not parsed whole again.  The site is what a full run writes."""
    import subprocess

    import dynawheel.publish.index as index_module
    from dynawheel.publish.index import known_files

    wh = tmp_path / "wh"
    for i in range(6):
        make_wheel(wh, f"p{i}", "1.0")
    _age(wh)
    build_index(wh)
    assert known_files(wh, "p1") == ("p1-1.0-py3-none-any.whl",)  # remembered, views derived
    other = make_wheel(wh, "Other.Proc", "1.0")
    _age(other)
    code = "import sys; from pathlib import Path; from dynawheel.publish.index import build_index; " \
           "build_index(Path(sys.argv[1]), project='other-proc')"
    subprocess.run([sys.executable, "-c", code, str(wh)], check=True, timeout=120)

    def parsed(*args: object) -> object:
        raise AssertionError("the cache file was parsed whole again")

    monkeypatch.setattr(index_module, "_parse_cache", parsed)
    mine = make_wheel(wh, "p1", "2.0")
    _age(mine)
    assert {d.filename for d in build_index(wh, project="p1").files} == {"p1-1.0-py3-none-any.whl", mine.name}
    assert known_files(wh, "other-proc") == (other.name,)
    monkeypatch.undo()
    twin = tmp_path / "twin"
    twin.mkdir()
    for path in wh.glob("*.whl"):
        os.link(path, twin / path.name)
    build_index(twin)
    pages = sorted(p.relative_to(wh) for p in (wh / "simple").rglob("*") if p.is_file())
    assert pages == sorted(p.relative_to(twin) for p in (twin / "simple").rglob("*") if p.is_file())
    assert all((wh / page).read_bytes() == (twin / page).read_bytes() for page in pages)
    assert build_index(wh).written == ()


def test_project_list_updated_entry_by_entry_is_the_full_render() -> None:
    """The project list that uploads update in place (an entry inserted, replaced or removed where it belongs)
    renders the bytes of the list rendered whole (and its JSON is json.dumps')."""
    from dynawheel.publish.index import _Views, root_pages

    rng = random.Random(7)
    views = _Views({}, {}, [], [], [])
    names: dict[str, str] = {}
    for _ in range(300):
        norm = rng.choice(["a", "b-c", "b", "zz", "m-m", "c0", "\u00e9t\u00e9", "q"]) + rng.choice(["", "-x", "1"])
        display = None if rng.random() < 0.3 else rng.choice([norm, norm.upper(), norm.replace("-", ".")])
        views = views.updated({}, {norm: display})
        if display is None:
            names.pop(norm, None)
        else:
            names[norm] = display
        page_html, page_json = views.root_pages()
        assert (page_html, page_json) == root_pages(names)
        doc = {"meta": {"api-version": "1.3"}, "projects": [{"name": n} for _k, n in sorted(names.items())]}
        assert page_json == (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def test_project_of_filename_is_how_the_index_assigns_files() -> None:
    """The project a file name claims, for serve's lookups, is the one the index lists the file under:
    an old-style sdist keeps the dashes of its name (``foo-bar-1.0.tar.gz`` is foo-bar's, not foo's)."""
    from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

    from dynawheel.publish.index import project_of_filename

    wheels = ["foo_bar-1.0-py3-none-any.whl", "Foo.Bar-2.0-1-cp311-cp311-linux_x86_64.whl", "a-0-py3-none-any.whl"]
    sdists = ["foo-bar-1.0.tar.gz", "foo_bar-1.0.tar.gz", "Foo.-_Bar-1.0rc1.tar.gz", "x-y-z-3.tar.gz"]
    for name in wheels:
        for suffix in ("", ".metadata", ".provenance"):
            assert project_of_filename(name + suffix) == canonicalize_name(parse_wheel_filename(name)[0]), name
    for name in sdists:
        for suffix in ("", ".provenance"):
            assert project_of_filename(name + suffix) == canonicalize_name(parse_sdist_filename(name)[0]), name


# ---------------------------------------------------------------- PEP 700 upload-time, PEP 792 status markers


def test_upload_time_is_the_files_mtime(tmp_path: Path) -> None:
    import datetime

    wh = tmp_path / "wh"
    whl = make_wheel(wh, "timed", "1.0")
    when = datetime.datetime(2024, 2, 29, 12, 30, 15, 250000, tzinfo=datetime.timezone.utc)
    os.utime(whl, ns=(int(when.timestamp() * 1e9),) * 2)
    build_index(wh)
    doc = json.loads((wh / "simple" / "timed" / "index.json").read_text())
    jsonschema.validate(doc, PEP691_PROJECT)
    assert doc["files"][0]["upload-time"] == "2024-02-29T12:30:15.250000Z"
    assert doc["meta"]["api-version"] == "1.3"  # PEP 700 fields (1.1), PEP 740 provenance (1.3)
    later = when + datetime.timedelta(days=1)
    os.utime(whl, ns=(int(later.timestamp() * 1e9),) * 2)  # same bytes, touched: the page follows
    result = build_index(wh)
    assert {str(p.relative_to(wh)) for p in result.written} == {"simple/timed/index.json"}  # HTML has no time
    doc = json.loads((wh / "simple" / "timed" / "index.json").read_text())
    assert doc["files"][0]["upload-time"] == "2024-03-01T12:30:15.250000Z"


def test_project_status_markers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dynawheel.cli import main
    from dynawheel.publish.index import ProjectStatus

    wh = tmp_path / "wh"
    make_wheel(wh, "old-lib", "1.0")
    bad = make_wheel(wh, "bad-lib", "1.0")
    make_wheel(wh, "plain", "1.0")
    result = build_index(wh, statuses={"old-lib": ProjectStatus("archived", 'moved to "new-lib"'),
                                       "bad-lib": ProjectStatus("quarantined")})
    assert result.statuses["old-lib"].status == "archived"
    page = (wh / "simple" / "old-lib" / "index.html").read_text()
    assert '<meta name="pypi:project-status" content="archived">' in page
    assert '<meta name="pypi:project-status-reason" content="moved to &quot;new-lib&quot;">' in page
    assert '<meta name="pypi:repository-version" content="1.4">' in page
    doc = json.loads((wh / "simple" / "old-lib" / "index.json").read_text())
    jsonschema.validate(doc, PEP691_PROJECT)
    assert doc["project-status"] == {"status": "archived", "reason": 'moved to "new-lib"'}
    assert doc["meta"]["api-version"] == "1.4" and len(doc["files"]) == 1
    quarantined = json.loads((wh / "simple" / "bad-lib" / "index.json").read_text())
    assert quarantined["project-status"] == {"status": "quarantined"} and quarantined["files"] == []
    assert bad.name not in (wh / "simple" / "bad-lib" / "index.html").read_text()
    plain = json.loads((wh / "simple" / "plain" / "index.json").read_text())
    assert "project-status" not in plain and plain["meta"]["api-version"] == "1.3"
    assert build_index(wh).written == ()  # None keeps the markers (from the cache)
    assert main(["index", str(wh), "--status", "old-lib=deprecated:use new-lib"]) == 0
    doc = json.loads((wh / "simple" / "old-lib" / "index.json").read_text())
    assert doc["project-status"] == {"status": "deprecated", "reason": "use new-lib"}
    assert "project-status" not in json.loads((wh / "simple" / "bad-lib" / "index.json").read_text())
    capsys.readouterr()
    assert main(["index", str(wh), "--status", "old-lib=gone"]) == 1
    assert "--status needs PROJECT=STATUS" in capsys.readouterr().err
