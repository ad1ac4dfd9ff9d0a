"""RECORD files: 'path,sha256=<urlsafe-b64-nopad>,size' rows (PEP 376 / 427)."""

from __future__ import annotations

import base64
import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import WheelFormatError


def encode_digest(digest: bytes, algorithm: str = "sha256") -> str:
    """'<algorithm>=<urlsafe-b64-nopad>', as RECORD writes a digest."""
    return f"{algorithm}=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class RecordRow:
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
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WheelFormatError(f"{where}: RECORD is not UTF-8 ({exc})") from None
    rows = []
    for lineno, fields in enumerate(csv.reader(io.StringIO(text)), 1):
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
