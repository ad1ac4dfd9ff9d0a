"""A wheel's own text files (METADATA, WHEEL, RECORD), parsed within documented limits.

They come from untrusted archives, so each has a size limit (README, "Limits"), a clear error when
it is broken (not UTF-8, a header section that does not end, a csv error in RECORD), and a parse
whose time and memory grow with the size allowed, never more: METADATA's body (the long
description) is never handed to the email parser, only its header section is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..errors import MetadataError
from .record import MAX_RECORD, RecordRow, parse_record

if TYPE_CHECKING:
    from email.message import Message

MAX_METADATA = 16 << 20  # bytes of METADATA (PEP 658's .metadata files are served as they are)
MAX_METADATA_HEADERS = 4 << 20  # bytes of METADATA before the first blank line (the header section)
MAX_HEADER_FIELDS = 10_000  # header fields in METADATA or WHEEL
MAX_WHEEL = 1 << 20  # bytes of WHEEL

__all__ = ["MAX_METADATA", "MAX_METADATA_HEADERS", "MAX_RECORD", "MAX_WHEEL", "RecordRow", "check_metadata",
           "check_wheel_file", "header_section", "parse_metadata", "parse_record", "parse_wheel_file",
           "with_license_files"]
_VERSION_LINE = re.compile(r"^Metadata-Version:[ \t]*(\S*)[ \t]*$", re.MULTILINE | re.IGNORECASE)


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


def _headers(data: bytes, what: str, size_limit: int, head_limit: int) -> Message:
    import email.parser  # performance: ~10 ms (socket, datetime, ...) for the callers that read fields

    head = _head(data, what, size_limit, head_limit)
    return email.parser.Parser().parsestr(head + "\n", headersonly=True)  # its policy: compat32


def parse_metadata(data: bytes, what: str) -> Message:
    """The header fields of a METADATA file (the body, the description, is not parsed)."""
    return _headers(data, what, MAX_METADATA, MAX_METADATA_HEADERS)


def parse_wheel_file(data: bytes, what: str) -> Message:
    """The fields of a WHEEL file."""
    return _headers(data, what, MAX_WHEEL, MAX_WHEEL)


def check_metadata(data: bytes, what: str) -> None:
    """Refuse a METADATA file that `parse_metadata` refuses (the email parser itself refuses nothing: compat32
    notes defects), without parsing its fields."""
    _head(data, what, MAX_METADATA, MAX_METADATA_HEADERS)


def check_wheel_file(data: bytes, what: str) -> None:
    """Refuse a WHEEL file that `parse_wheel_file` refuses, without parsing its fields."""
    _head(data, what, MAX_WHEEL, MAX_WHEEL)


def with_license_files(text: bytes, names: Sequence[str], msg: Message | None = None) -> bytes:
    """METADATA with a ``License-File:`` for each of `names` not named yet (paths below .dist-info/licenses/),
    Metadata-Version raised to 2.4 (PEP 639) when lower; the rest of the text as it was (`msg`: the text's
    fields, when the caller has parsed them)."""
    from packaging.version import InvalidVersion, Version  # not for `show`, which reads METADATA too

    msg = parse_metadata(text, "METADATA") if msg is None else msg
    have = msg.get_all("License-File") or []
    added = "".join(f"\nLicense-File: {n}" for n in names if n not in have)
    try:
        old = Version(msg.get("Metadata-Version", ""))
    except InvalidVersion:
        raise MetadataError(f"METADATA: Metadata-Version {msg.get('Metadata-Version')!r} is not a version") from None
    if not added and old >= Version("2.4"):
        return text
    decoded = text.decode("utf-8")
    head = header_section(decoded, "METADATA", len(decoded))
    body = decoded[len(head):]
    if old < Version("2.4"):
        head = _VERSION_LINE.sub("Metadata-Version: 2.4", head, count=1)
    return (head.rstrip("\r\n") + added + (body or "\n")).encode("utf-8")
