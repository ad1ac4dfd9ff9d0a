"""wheel/tags.py against packaging, the authority it no longer imports on the repair path (issue 14).

`parse_filename` accepts a name its strict pattern certainly allows and asks
``packaging.utils.parse_wheel_filename`` about every other one; `WheelTags.expanded` and `canonicalize_name` are
packaging's rules written out.  Each is compared here with packaging's function on every wheel file name the
repository mentions, the corpus wheels (tests/corpus_wheels.json) and hostile variants of them: the same names
accepted, the same refused with the same message, the same parts.
"""

from __future__ import annotations

import itertools
import json
import re
import zipfile
from pathlib import Path

import pytest
from packaging.tags import parse_tag
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.utils import canonicalize_name as packaging_canonicalize_name
from packaging.version import InvalidVersion, Version

from dynawheel.errors import MetadataError, TagError
from dynawheel.wheel import tags
from dynawheel.wheel.tags import WheelTags, canonicalize_name, parse_filename
from dynawheel.wheel.text import below_2_4

from . import elfbuild
from .test_startup import _plain_wheel, imported

ROOT = Path(__file__).resolve().parent.parent
_MENTIONED = re.compile(r"[^\s'\"`/\\()\[\]{}<>,;:=|*$]+\.whl\b")


def mentioned_names() -> set[str]:
    """Every wheel file name written in the repository's tests, fixtures, benchmarks, scripts and docs."""
    names: set[str] = set()
    for top in ("tests", "fixtures", "benchmarks", "scripts", "docs", "README.md"):
        for path in [ROOT / top] if (ROOT / top).is_file() else sorted((ROOT / top).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".md", ".json", ".txt", ".toml", ".sh", ".whl"}:
                names.update(_MENTIONED.findall(path.name))
                if path.suffix != ".whl":
                    names.update(_MENTIONED.findall(path.read_text(errors="replace")))
    return names


def corpus_names() -> set[str]:
    """The corpus wheels of the benchmarks and test_corpus.py (PyPI's own names)."""
    return {w["file"] for w in json.loads((ROOT / "tests" / "corpus_wheels.json").read_text())["wheels"]}


# hostile spellings of each part of a wheel file name
BAD_NAMES = ["", "PyYAML", "a__b", "a_b", "a.b", "a..b", ".a", "_a", "a_", "a.", "ü", "名前", "a b", "a+b", "a~b",
             "A1", "1", "_", ".", "..", "ǅ", "İ", "a\u00a0b", "a\nb", "x" * 300]
BAD_VERSIONS = ["", "1.0", "1", "v1.0", "V1", "1.0.dev", "1..0", "1.0.", ".1", "1.0+", "1.0+local.x_y", "1.0_post1",
                "1.0.post1", "01.0", "1.0a", "1.0A1", "1!2.0", "1!", "\u0661.\u0660", " 1.0", "1.0 ", "1.0\n", "1.0+ü",
                "1.0.0.0.0.0", "0" * 40, "1_0", "1.0rc", "1.0c1", "1.0-1", "latest", "..", "1.0+.", "1.0+a..b"]
BAD_BUILDS = ["1", "0", "01", "1abc", "1.2_x", "abc", "a1", "", "_1", "\u0661", "1\n", "1ü", "1 2", "1..",
              "9" * 20]
BAD_PYTHONS = ["py3", "cp311", "PY3", "py3.py2", "py2.py3", "py3.", ".py3", "py3..py2", "311", "py3.311", "_py", "é3",
               "cp311.ü", "", ".", "py3.PY3", "py 3", "ü", "py3\n", "a.b.c.d.e"]
BAD_ABIS = ["none", "cp311", "abi3", "ABI3", "", ".", "abi3.", ".abi3", "cp311.abi3", "abi3..none", "ü", "3", "a b",
            "abi3\n"]
BAD_PLATFORMS = ["any", "linux_x86_64", "LINUX_X86_64", "manylinux2014_x86_64.manylinux_2_17_x86_64", "", ".",
                 "any.", ".any", "any..any", "win_amd64.any", "macosx_10_9_universal2", "ü", "any\n", "x" * 200]


def hostile_names(bases: set[str]) -> set[str]:
    """Each valid base name with one part replaced by each hostile spelling, a build tag added or dropped, a part
    dropped or doubled, the extension changed."""
    out: set[str] = set()
    for base in sorted(bases):
        if not base.endswith(".whl"):
            continue
        parts = base[:-4].split("-")
        if len(parts) not in (5, 6):
            continue
        name, version, *_build, python, abi, platform = parts
        for i, variants in ((0, BAD_NAMES), (1, BAD_VERSIONS), (-3, BAD_PYTHONS), (-2, BAD_ABIS), (-1, BAD_PLATFORMS)):
            for v in variants:
                changed = list(parts)
                changed[i] = v
                out.add("-".join(changed) + ".whl")
        for b in BAD_BUILDS:
            out.add("-".join([name, version, b, python, abi, platform]) + ".whl")
        out.add("-".join([name, version, python, abi, platform]) + ".whl")  # build dropped
        for i in range(len(parts)):
            out.add("-".join(parts[:i] + parts[i + 1:]) + ".whl")
            out.add("-".join(parts[:i + 1] + parts[i:]) + ".whl")
        stem = base[:-4]
        out.update({stem + ".WHL", stem + ".whl.whl", stem, stem + ".zip", stem + ".whl\n", stem.upper() + ".whl",
                    stem + "-.whl", "-" + stem + ".whl", stem.replace("-", "--", 1) + ".whl", ".whl", "-----.whl",
                    "------.whl", "a-1-py3-none-any-.whl", stem.replace("-", "_") + ".whl"})
    return out


def all_names() -> list[str]:
    found = mentioned_names() | corpus_names()
    return sorted(found | hostile_names(found))


def packaging_result(filename: str) -> tuple[str, Version, tuple[()] | tuple[int, str], list[str]] | str:
    """parse_wheel_filename's answer: its parts (tags as sorted text), or the message it refuses with."""
    try:
        name, version, build, parsed = parse_wheel_filename(filename)
    except InvalidWheelFilename as exc:
        return str(exc)
    return name, version, build, sorted(map(str, parsed))


def our_result(filename: str) -> tuple[str, Version, tuple[()] | tuple[int, str], list[str]] | str:
    """parse_filename's answer in the same shape (its TagError says packaging's message after ours)."""
    try:
        name, version, build, wheel_tags = parse_filename(filename)
    except TagError as exc:
        prefix = f"invalid wheel file name {filename!r}: "
        assert str(exc).startswith(prefix), exc
        return str(exc)[len(prefix):]
    m = re.match(r"(\d+)(.*)\Z", build, re.ASCII) if build is not None else None
    assert (m is None) == (build is None), build
    return canonicalize_name(name), Version(version), (int(m[1]), m[2]) if m else (), wheel_tags.expanded_text()


def test_parse_filename_accepts_and_refuses_what_packaging_does() -> None:
    names = all_names()
    corpus = corpus_names()
    assert len(corpus) >= 30 and corpus <= set(names)
    assert len(names) > 3000, len(names)  # the hostile variants were made
    differ = {n: (our_result(n), packaging_result(n)) for n in names if our_result(n) != packaging_result(n)}
    assert differ == {}
    accepted = [n for n in names if not isinstance(packaging_result(n), str)]
    refused = len(names) - len(accepted)
    assert len(accepted) > 300 and refused > 1500, (len(accepted), refused)  # both sides were exercised


def test_the_fast_path_takes_real_names_and_only_names_packaging_accepts() -> None:
    """Every corpus name (PyPI's) is accepted without packaging.utils; no name is accepted by the fast path
    that packaging refuses (the fallback answers for those)."""
    assert all(tags._certainly_valid(n) for n in corpus_names())
    fast = [n for n in all_names() if tags._certainly_valid(n)]
    assert len(fast) > 300
    assert [n for n in fast if isinstance(packaging_result(n), str)] == []


def test_expanded_text_is_packagings_expansion_with_its_refusals() -> None:
    """WheelTags.expanded_text against sorted(parse_tag(...), key=str): the same tags (as text), or a TagError
    saying packaging's message; WheelTags.expanded (the public API) still gives packaging's Tag objects."""
    triples = set(itertools.product(BAD_PYTHONS, BAD_ABIS, BAD_PLATFORMS))
    triples |= {("py3-x", "none", "any"), ("py3", "none-x", "any"), ("PY3.py3", "NONE.none", "Any.ANY")}
    refused = 0
    for python, abi, platform in sorted(triples):
        text = f"{python}-{abi}-{platform}"
        try:
            want: list[str] | str = [str(t) for t in sorted(parse_tag(text), key=str)]
        except ValueError as exc:
            want = f"invalid wheel tag {text!r}: {exc}"
            refused += 1
        try:
            got: list[str] | str = WheelTags(python, abi, platform).expanded_text()
        except TagError as exc:
            got = str(exc)
        assert got == want, (python, abi, platform)
        try:
            public: list[str] | str = [str(t) for t in WheelTags(python, abi, platform).expanded()]
        except TagError as exc:
            public = str(exc)
        assert public == want, (python, abi, platform)
    assert refused > 1000 and len(triples) - refused > 500, refused
    assert WheelTags("PY3.py3", "NONE.none", "Any.ANY").expanded_text() == ["py3-none-any"]  # lowercased, once
    assert WheelTags("py3.py2", "none", "any").expanded_text() == ["py2-none-any", "py3-none-any"]
    assert WheelTags("py3.py2", "none", "any").expanded() == sorted(parse_tag("py2.py3-none-any"), key=str)


def test_canonicalize_name_is_packagings() -> None:
    names = {n[:-4].split("-")[0] for n in all_names()} | set(BAD_NAMES)
    names |= {"Django", "oslo.concurrency", "a-_.-b", "A__B", "--a--", "ǅ", "İstanbul", "Straße", "ﬁle", "ΣΑΣ", ""}
    assert len(names) > 50
    assert {n: canonicalize_name(n) for n in names} == {n: packaging_canonicalize_name(n) for n in names}


def test_is_valid_name_answers_as_the_pattern_it_had() -> None:
    """Plain ASCII names by str methods, the rest by the pattern (compiled on first use): the same answers as
    the pattern for every name, including its Unicode case folding (long s, the Kelvin sign) and '$' before a
    trailing newline."""
    pattern = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)
    names = {n[:-4].split("-")[0] for n in all_names()} | set(BAD_NAMES)
    names |= {"a-b", "a--b", "-a", "a-", "a.-_b", "\u017f", "\u212a", "\u0131", "a\n", "a\n\n", "A", "9", "a b", "é"}
    answers = {n: tags.is_valid_name(n) for n in names}
    assert answers == {n: pattern.match(n) is not None for n in names}
    assert answers["\u017f"] and answers["a\n"] and not answers["é"] and sum(answers.values()) > 30


def test_below_2_4_compares_as_packaging_version() -> None:
    """Metadata-Version against 2.4 by numbers for a plain release, by packaging for the rest: the answers (or the
    refusal, a ValueError) of ``Version(v) < Version("2.4")`` on every text."""
    texts = {"2.4", "2.1", "1.0", "1.1", "1.2", "2.2", "2.3", "2.5", "3.0", "2.4.0", "2.4.0.0", "2.40", "2.04", "02.4",
             "2", "3", "0", "0.0", "", ".", "2.", ".4", "2..4", "2.4rc1", "2.4.post1", "2.4.dev0", "v2.4", " 2.4",
             "2.4 ", "2.4\n", "2.3.9", "2.3.99999999999999999999", "1!0.1", "2.4+local", "\u0662.\u0664", "x", "2.a"}
    texts |= {f"{a}.{b}" for a in range(4) for b in range(12)}

    def packaging_answer(text: str) -> bool | str:
        try:
            return Version(text) < Version("2.4")
        except InvalidVersion:
            return "refused"

    def ours(text: str) -> bool | str:
        try:
            return below_2_4(text)
        except ValueError:
            return "refused"

    answers = {t: ours(t) for t in texts}
    assert answers == {t: packaging_answer(t) for t in texts}
    assert answers["2.1"] is True and answers["2.4.0"] is False and answers["2.4rc1"] is True
    assert answers["2.4\n"] is False and answers[""] == "refused"


def test_version_component_is_packagings_normal_form() -> None:
    """The version a file name is written with: str(Version(v)) ('-' as '_'), or the same MetadataError."""
    versions = set(BAD_VERSIONS) | {n[:-4].split("-")[1] for n in all_names() if n.count("-") in (4, 5)}
    versions |= {"06.0.3", "0", "00", "1.00.0", "9" * 200, "9" * 201, "1." * 100 + "1", "2026.12.06"}
    assert len(versions) > 100

    def packaging_answer(version: str) -> str:
        try:
            return str(Version(version)).replace("-", "_")
        except InvalidVersion:
            return "refused"

    def ours(version: str) -> str:
        try:
            return tags.version_component(version)
        except MetadataError:
            return "refused"

    answers = {v: ours(v) for v in versions}
    assert answers == {v: packaging_answer(v) for v in versions}
    assert answers["06.0.3"] == "6.0.3" and answers["1.0+local.x_y"] == "1.0+local.x.y" and answers["v1.0"] == "1.0"


def _conda_owned(prefix: Path) -> None:
    """libaa.so.1 of `prefix` (as _plain_wheel builds it) owned by a conda package declaring MIT, with a license
    file: the repair ships it and edits METADATA (License-File, Metadata-Version 2.1 -> 2.4)."""
    record = {"name": "aa", "version": "1.0", "build": "h0_0", "license": "MIT", "files": ["libaa.so.1"]}
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "aa-1.0-h0_0.json").write_text(json.dumps(record))
    (prefix / "pkgs" / "aa-1.0-h0_0" / "info" / "licenses").mkdir(parents=True)
    (prefix / "pkgs" / "aa-1.0-h0_0" / "info" / "licenses" / "LICENSE").write_text("MIT\n")


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the extension and its library")
@pytest.mark.parametrize("licensed", [False, True])
def test_a_repair_of_a_wheel_imports_neither_packaging_tags_utils_nor_version(tmp_path: Path, licensed: bool) -> None:
    """packaging.tags imports platform, subprocess and packaging's manylinux/musllinux probes (~24 M instructions,
    3 % of a small repair), packaging.version compiles its pattern (~10 M): a repair reads tags as the wheel names
    them and plain versions ('1.0', Metadata-Version 2.1) as numbers, with license files to ship or without."""
    wheel = _plain_wheel(tmp_path)
    if licensed:
        _conda_owned(tmp_path / "build")
    code, names = imported("repair", wheel, "-w", tmp_path / "out", cwd=tmp_path)
    assert code == 0
    with zipfile.ZipFile(next((tmp_path / "out").glob("*.whl"))) as zf:  # the repair did run: libaa.so.1 is vendored
        assert any("libaa" in n for n in zf.namelist())
        metadata = zf.read("demo-1.0.dist-info/METADATA").decode().splitlines()
    assert ("Metadata-Version: 2.4" in metadata) == licensed
    assert any(line.startswith("License-File: libaa") for line in metadata) == licensed
    assert {"dynawheel.wheel.tags", "dynawheel.repair.retag", "dynawheel.repair.licenses"} <= names
    unwanted = {"packaging.tags", "packaging.utils", "packaging.version", "packaging._manylinux", "platform"}
    assert unwanted & names == set()
