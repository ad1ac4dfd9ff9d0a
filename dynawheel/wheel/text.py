"""A wheel's own text files (METADATA, WHEEL, RECORD), parsed within documented limits.

They come from untrusted archives, so each has a size limit (README, "Limits"), a clear error when
it is broken (not UTF-8, a header section that does not end, a csv error in RECORD), and a parse
whose time and memory grow with the size allowed, never more: METADATA's body (the long
description) is never parsed, only its header section is.

The header fields are read as the standard library's email parser reads them (``Parser`` with its default
policy, compat32: what pip's and packaging's readers of METADATA use), by `header_fields` below, a few lines
of that parser's rules; not by the parser itself: ``email.parser`` imports socket, datetime, calendar,
email.utils, ... (~10 ms of CPU), which `repair` paid on every wheel given license files (2026-12-06).
tests/test_wheel_text.py holds the two to the same fields on METADATA files we did not write and on
generated texts.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Sequence
from typing import TypeVar, overload

from ..errors import MetadataError
from .record import MAX_RECORD, RecordRow, parse_record
from .tags import is_release

T = TypeVar("T")

MAX_METADATA = 16 << 20  # bytes of METADATA (PEP 658's .metadata files are served as they are)
MAX_METADATA_HEADERS = 4 << 20  # bytes of METADATA before the first blank line (the header section)
MAX_HEADER_FIELDS = 10_000  # header fields in METADATA or WHEEL
MAX_WHEEL = 1 << 20  # bytes of WHEEL

__all__ = ["MAX_METADATA", "MAX_METADATA_HEADERS", "MAX_RECORD", "MAX_WHEEL", "HeaderFields", "RecordRow", "below_2_4",
           "check_metadata", "check_wheel_file", "header_fields", "header_section", "parse_metadata", "parse_record",
           "parse_wheel_file", "with_license_files"]
_VERSION_LINE = r"^Metadata-Version:[ \t]*(\S*)[ \t]*$"  # compiled when used (performance: ~0.5 ms a regex)


def _decode(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"{what} is not UTF-8 (byte {exc.start}: {data[exc.start:exc.start + 1]!r})") from None


def header_section(text: str, what: str, limit: int) -> str:
    """The header part of an RFC 822-style text: up to its first blank line, at most `limit` chars."""
    ends = [i for i in (text.find("\n\n"), text.find("\r\n\r\n"), text.find("\r\r")) if i >= 0]
    end = min(ends) if ends else len(text)
    if text[:1] in ("\n", "\r"):
        end = 0
    if end > limit:
        raise MetadataError(f"{what}: its header section is over {limit} bytes")
    head = text[:end]
    fields = sum(1 for line in head.splitlines() if line and line[0] not in " \t")
    if fields > MAX_HEADER_FIELDS:
        raise MetadataError(f"{what}: {fields} header fields (the limit is {MAX_HEADER_FIELDS})")
    return head


def _head(data: bytes, what: str, size_limit: int, head_limit: int) -> str:
    if len(data) > size_limit:
        raise MetadataError(f"{what} is {len(data)} bytes (the limit is {size_limit})")
    return header_section(_decode(data, what), what, head_limit)


class HeaderFields:
    """The fields of a header section, in order, read as `email.message.Message` (compat32) gives them: `get`
    the first value of a name (any case), `get_all` every value, values as written after the colon and its
    blanks, continuation lines kept, the line end dropped."""

    __slots__ = ("_fields",)

    def __init__(self, fields: Sequence[tuple[str, str]]) -> None:
        self._fields = tuple(fields)

    def items(self) -> list[tuple[str, str]]:
        return list(self._fields)

    @overload
    def get(self, name: str) -> str | None: ...

    @overload
    def get(self, name: str, default: T) -> str | T: ...

    def get(self, name: str, default: T | None = None) -> str | T | None:
        name = name.lower()
        return next((v for k, v in self._fields if k.lower() == name), default)

    def __getitem__(self, name: str) -> str | None:
        return self.get(name)

    def get_all(self, name: str) -> list[str] | None:
        name = name.lower()
        return [v for k, v in self._fields if k.lower() == name] or None


def header_fields(head: str) -> HeaderFields:
    """The fields of `head`, a header section, by email's feedparser's rules (Python 3.9-3.14, compat32): lines
    end at \\r\\n, \\r or \\n; an envelope 'From ' line, a first-line continuation and a line starting with ':'
    are no fields; a 'From ' line last ends the section."""
    lines = list(itertools.takewhile(_header_line, io.StringIO(head + "\n", newline="").readlines()))
    fields: list[tuple[str, str]] = []
    field: list[str] = []
    for number, line in enumerate(lines):
        if line[0] in " \t":
            if field:
                field.append(line)
            continue
        if field:
            fields.append(_field(field))
            field = []
        if line.startswith("From "):
            if number == len(lines) - 1:
                break
            continue
        if line[0] != ":":
            field = [line]
    if field:
        fields.append(_field(field))
    return HeaderFields(fields)


def _header_line(line: str) -> bool:
    """Whether email's feedparser takes `line` into the header section (its ``headerRE``): an envelope 'From ',
    a continuation, or a field: a name of printable ASCII characters but ' ' and ':' (perhaps none), then ':'."""
    if line.startswith(("From ", " ", "\t")):
        return True
    name, colon, _ = line.partition(":")
    return bool(colon) and (not name or (name.isascii() and name.isprintable() and " " not in name))


def _field(lines: list[str]) -> tuple[str, str]:
    name, value = lines[0].split(":", 1)
    return name, (value.lstrip(" \t") + "".join(lines[1:])).rstrip("\r\n")


def _headers(data: bytes, what: str, size_limit: int, head_limit: int) -> HeaderFields:
    return header_fields(_head(data, what, size_limit, head_limit))


def parse_metadata(data: bytes, what: str) -> HeaderFields:
    """The header fields of a METADATA file (the body, the description, is not parsed)."""
    return _headers(data, what, MAX_METADATA, MAX_METADATA_HEADERS)


def parse_wheel_file(data: bytes, what: str) -> HeaderFields:
    """The fields of a WHEEL file."""
    return _headers(data, what, MAX_WHEEL, MAX_WHEEL)


def check_metadata(data: bytes, what: str) -> None:
    """Refuse a METADATA file that `parse_metadata` refuses (the field rules refuse nothing: email's parser
    notes defects), without parsing its fields."""
    _head(data, what, MAX_METADATA, MAX_METADATA_HEADERS)


def check_wheel_file(data: bytes, what: str) -> None:
    """Refuse a WHEEL file that `parse_wheel_file` refuses, without parsing its fields."""
    _head(data, what, MAX_WHEEL, MAX_WHEEL)


def with_license_files(text: bytes, names: Sequence[str], msg: HeaderFields | None = None) -> bytes:
    """METADATA with a ``License-File:`` for each of `names` not named yet (paths below .dist-info/licenses/),
    Metadata-Version raised to 2.4 (PEP 639) when lower; the rest of the text as it was (`msg`: the text's
    fields, when the caller has parsed them)."""
    msg = parse_metadata(text, "METADATA") if msg is None else msg
    have = msg.get_all("License-File") or []
    added = "".join(f"\nLicense-File: {n}" for n in names if n not in have)
    try:
        below = below_2_4(msg.get("Metadata-Version", ""))
    except ValueError:
        raise MetadataError(f"METADATA: Metadata-Version {msg.get('Metadata-Version')!r} is not a version") from None
    if not added and not below:
        return text
    decoded = text.decode("utf-8")
    head = header_section(decoded, "METADATA", len(decoded))
    body = decoded[len(head):]
    if below:
        head = re.sub(_VERSION_LINE, "Metadata-Version: 2.4", head, count=1, flags=re.MULTILINE | re.IGNORECASE)
    return (head.rstrip("\r\n") + added + (body or "\n")).encode("utf-8")


def below_2_4(version: str) -> bool:
    """Whether Metadata-Version `version` is below 2.4 (PEP 639's License-File) as PEP 440 versions compare;
    ValueError (packaging's InvalidVersion) when it is none.  A plain release ('2.1') is compared as numbers
    (trailing zeros dropped, as packaging.version does): importing packaging.version is ~10 M instructions, and
    a repair needs it for nothing else; any other text is packaging's to judge."""
    if is_release(version):
        release = [int(part) for part in version.split(".")]
        while release and release[-1] == 0:
            release.pop()
        return release < [2, 4]
    from packaging.version import Version  # not for `show`, which reads METADATA too

    return Version(version) < Version("2.4")
