"""wheel/text.py's header fields against the standard library's email parser (compat32, what pip and packaging
read METADATA with), which it replaces on the repair path: the same fields, names and values, in the same
order, on the METADATA and WHEEL files of every distribution installed beside these tests (written by
setuptools, flit, hatchling, poetry, maturin, ... not by us), on edge cases of the parser's rules, and on
texts generated from the pieces those rules look at."""

from __future__ import annotations

import email.parser
import importlib.metadata
import random
from pathlib import Path

import pytest

from dynawheel.errors import DynawheelError
from dynawheel.wheel.text import MAX_METADATA_HEADERS, header_fields, header_section, parse_metadata


def _email_fields(head: str) -> list[tuple[str, str]]:
    """What dynawheel read before 2026-12-06: the email parser given the header section."""
    return [(k, str(v)) for k, v in email.parser.Parser().parsestr(head + "\n", headersonly=True).items()]


def _installed_files() -> list[Path]:
    files: set[Path] = set()
    for dist in importlib.metadata.distributions():
        base = getattr(dist, "_path", None)
        if isinstance(base, Path):
            files.update(p for p in (base / "METADATA", base / "WHEEL", base / "PKG-INFO") if p.is_file())
    return sorted(files)


def test_same_fields_as_email_on_installed_distributions() -> None:
    files = _installed_files()
    assert len(files) >= 40, files  # this venv's test tools, at least (pytest, mypy, cyclonedx, lief, ...)
    license_files = 0
    for path in files:
        text = path.read_text(encoding="utf-8")
        head = header_section(text, str(path), MAX_METADATA_HEADERS)
        ours = header_fields(head)
        assert ours.items() == _email_fields(head), path
        if path.name == "METADATA":
            assert parse_metadata(path.read_bytes(), "METADATA").items() == ours.items()
            license_files += len(ours.get_all("License-File") or [])
    assert license_files > 0, "some installed METADATA names its license files"


EDGE_CASES = [
    "Name: x\nVersion: 1\n",
    "Name:x\nVersion:\t 1 \n",  # value starts after the colon's blanks; trailing blanks kept
    "Name: x\r\nLicense-File: a\r\nLicense-File: b\r\n",
    "Name: x\rLicense-File: a\rlicense-file: b",  # \r alone ends a line; names in any case
    "Description: one\n  two\n\tthree\nName: x\n",  # continuation lines kept, folded as written
    " starts with a continuation\nName: x\n",
    "From someone Tue\nName: x\n",  # an envelope line first
    "Name: x\nFrom elsewhere\nVersion: 1\n",  # in the middle: no field
    "Name: x\nFrom last\n",
    "From: someone\nName: x\n",  # 'From:' is a field
    ": no name\n cont\nName: x\n",
    "Name: x\nnot a field line\nVersion: 1\n",  # ends the section
    "Name: x\n\nVersion: 1\n",
    "Name: x\n\r\nVersion: 1\n",
    "Name x: y\nVersion: 1\n",  # a blank in the name: not a field line
    "Name: x\x0bLicense-File: y\x1c\u2028\x85\nVersion: 1",  # other line breaks of str.splitlines: not line ends
    "Na\u00efve: x\nName: y\n",  # not ASCII in the name
    "Name: \u00e9t\u00e9\nSummary: \U0001f600\n",
    "Name: x\nKey:: two colons\nEmpty:\nBlank: \n",
    "", "\n", "Name: x",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_same_fields_as_email_on_edge_cases(text: str) -> None:
    head = header_section(text, "METADATA", MAX_METADATA_HEADERS)
    ours = header_fields(head)
    assert ours.items() == _email_fields(head)
    parsed = email.parser.Parser().parsestr(head + "\n", headersonly=True)
    for name in ("Name", "name", "Version", "License-File", "From", "Missing"):
        assert ours.get(name) == parsed.get(name) and ours.get(name, "") == parsed.get(name, "")
        assert ours.get_all(name) == parsed.get_all(name) and ours[name] == parsed[name]


PIECES = ["Name", "License-File", "From", "From ", "x", "a b", ":", ": ", " ", "\t", "\n", "\r", "\r\n", "\n\n",
          "\u00e9", "\x0b", "\x85", "\u2028", "-", "\x7f", "~", "!"]


def test_same_fields_as_email_on_generated_texts() -> None:
    rng = random.Random(14)
    for _ in range(20_000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randrange(1, 24)))
        head = header_section(text, "METADATA", MAX_METADATA_HEADERS)
        assert header_fields(head).items() == _email_fields(head), repr(text)


def test_limits_hold() -> None:
    with pytest.raises(DynawheelError, match="header fields"):
        parse_metadata(b"X: y\n" * 20_000, "METADATA")
    with pytest.raises(DynawheelError, match="not UTF-8"):
        parse_metadata(b"Name: \xff\n", "METADATA")
