"""RECORD files: 'path,sha256=<urlsafe-b64-nopad>,size' rows (PEP 376 / 427)."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import WheelFormatError

MAX_RECORD = 32 << 20  # bytes of RECORD (torch's 12 248 members: 1.5 MB)


def encode_digest(digest: bytes, algorithm: str = "sha256") -> str:
    """'<algorithm>=<urlsafe-b64-nopad>', as RECORD writes a digest."""
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# a NamedTuple, not a frozen dataclass: as immutable and typed, ~5x cheaper to define at import (repair's start-up)
class RecordRow(NamedTuple):
    """One line of a wheel's RECORD: path, 'sha256=...' digest and size."""

    path: str
    hash: str  # 'sha256=...', or '' for RECORD itself
    size: int | None


def format_record(rows: Iterable[RecordRow]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([row.path, row.hash, "" if row.size is None else str(row.size)])
    return out.getvalue().encode("utf-8")


def parse_record(data: bytes, where: str) -> list[RecordRow]:
    """The rows of a RECORD file (at most MAX_RECORD bytes; csv errors, bad sizes and hashes are
    WheelFormatErrors naming `where` and the line)."""
    if len(data) > MAX_RECORD:
        raise WheelFormatError(f"{where}: RECORD is {len(data)} bytes (the limit is {MAX_RECORD})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WheelFormatError(f"{where}: RECORD is not UTF-8 ({exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _rows(reader, where)
    except csv.Error as exc:
        raise WheelFormatError(f"{where}: RECORD line {reader.line_num}: {exc}") from None


def _rows(reader: Iterable[list[str]], where: str) -> list[RecordRow]:
    rows = []
    for lineno, fields in enumerate(reader, 1):
        if not fields:
            continue
        if len(fields) != 3:
            raise WheelFormatError(f"{where}: RECORD line {lineno} has {len(fields)} fields, need 3: {fields!r}")
        path, digest, size = fields
        if digest and not digest.startswith(("sha256=", "sha384=", "sha512=")):
            raise WheelFormatError(f"{where}: RECORD line {lineno}: unsupported hash {digest!r} for {path!r}")
        try:
            rows.append(RecordRow(path, digest, int(size) if size else None))
        except ValueError:
            raise WheelFormatError(f"{where}: RECORD line {lineno}: size {size!r} is not a number") from None
    return rows
