"""dynawheel.publish.index: the static PEP 503 / 691 / 658 index (no network)."""

from __future__ import annotations

import base64
import hashlib
import html.parser
import io
import json
import os
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dynawheel.errors import PackageIndexError
from dynawheel.publish.index import build_index, normalize_name, write_atomic

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
        "files": {"type": "array", "items": {
            "type": "object", "required": ["filename", "url", "hashes", "size"],
            "properties": {
                "filename": {"type": "string", "pattern": r"^[^/\\]+$"},
                "url": {"type": "string"},
                "hashes": _HASHES,
                "requires-python": {"type": "string"},
                "size": {"type": "integer", "minimum": 0},
                "upload-time": {"type": "string"},
                "yanked": {"anyOf": [{"type": "boolean"}, {"type": "string", "minLength": 1}]},
                "core-metadata": {"anyOf": [{"type": "boolean"}, _HASHES]},
                "dist-info-metadata": {"anyOf": [{"type": "boolean"}, _HASHES]},
                "gpg-sig": {"type": "boolean"},
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
    assert root.meta["pypi:repository-version"] == "1.1"
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


def test_write_atomic_keeps_old_content_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "page.html"
    assert write_atomic(target, b"old")
    assert not write_atomic(target, b"old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


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
    assert "1 files in 1 projects" in capsys.readouterr().out
    (wh / "notes.txt").write_text("x")
    assert main(["index", str(wh), "--flat", "-o", str(tmp_path / "flat")]) == 3
    assert "skipped: notes.txt" in capsys.readouterr().err
    assert main(["index", str(tmp_path / "missing")]) == 1
