"""HTTP/1.1 on the wire for ``dynawheel serve``: a strict, bounded request-head parser and response heads.

:func:`parse_head` takes the bytes a client sent and returns the first request's head (or None
while it is incomplete).  It follows RFC 9112 strictly and refuses, with :class:`BadRequest`
carrying the status to answer, anything it cannot read one way only:

* lines end with CRLF; a bare CR or LF, a control character (other than HTAB), a header line
  folded onto the next (obs-fold), whitespace before a field's colon, a field name that is not a
  token: 400;
* the request line is ``METHOD SP /path SP HTTP/1.x`` (origin form): other targets 400, other
  versions 505, a request line over :data:`MAX_REQUEST_LINE` bytes 414, a head over
  :data:`MAX_HEAD` bytes or with more than :data:`MAX_HEADERS` fields 431;
* ``Content-Length`` is digits only, repeated only with the same value; with ``Transfer-Encoding``
  beside it the request is 400 (request smuggling); ``Host`` is required in HTTP/1.1 and only once.

Nothing here does I/O; the server feeds it what ``recv`` returned.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from http import HTTPStatus

MAX_REQUEST_LINE = 8 * 1024
MAX_HEAD = 64 * 1024  # request line and every header field
MAX_HEADERS = 100
MAX_CONTENT_LENGTH_DIGITS = 18  # < 2**63

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # in a line after the CRLFs are taken out (HTAB is fine)
_HEAD_END = b"\r\n\r\n"
_STATUS_LINES = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


class BadRequest(Exception):
    """A request head the server refuses: answer ``status`` with ``message``, then close the connection."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True, eq=False)
class Request:
    """One request head, as sent (field names lowercased; repeated fields joined with ``", "``).

    Compared and hashed by identity: the server parses a head it has seen before only once, and
    keys what it answered to it by this object."""

    method: str
    target: str
    version: str  # "HTTP/1.1" or "HTTP/1.0"
    headers: dict[str, str]
    head_size: int  # bytes of the head, its blank line included
    content_length: int  # 0 when absent
    keep_alive: bool
    expect_continue: bool

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} {self.version}"


def parse_head(buf: bytes | bytearray) -> Request | None:
    """The request head at the start of ``buf``; None while it is incomplete.  Raises :class:`BadRequest`."""
    end = buf.find(_HEAD_END, 0, MAX_HEAD + 4)
    if end < 0:
        _check_incomplete(buf)
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    method, target, version = _request_line(lines[0])
    headers = _fields(lines[1:])
    return _request(method, target, version, headers, end + 4)


def _check_incomplete(buf: bytes | bytearray) -> None:
    """Refuse early what can never become a good head (a long first line, a full buffer, bare LFs)."""
    first = buf.find(b"\r\n", 0, MAX_REQUEST_LINE + 2)
    if first < 0 and len(buf) > MAX_REQUEST_LINE + 1:
        raise BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, f"request line longer than {MAX_REQUEST_LINE} bytes")
    if len(buf) > MAX_HEAD + 3:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"request head longer than {MAX_HEAD} bytes")
    if buf.count(b"\n") != buf.count(b"\r\n"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, "request lines must end with CRLF")


def _request_line(line: bytes) -> tuple[str, str, str]:
    if len(line) > MAX_REQUEST_LINE:
        raise BadRequest(HTTPStatus.REQUEST_URI_TOO_LONG, f"request line longer than {MAX_REQUEST_LINE} bytes")
    if _CONTROL.search(line):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"control character in the request line: {line[:100]!r}")
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed request line: {line[:100]!r}")
    method, target, version = parts
    if not _TOKEN.match(method):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed method: {method[:40]!r}")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if re.fullmatch(rb"HTTP/[0-9]\.[0-9]|HTTP/[0-9]", version):
            raise BadRequest(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"only HTTP/1.1 and 1.0: {version!r}")
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"malformed HTTP version: {version[:40]!r}")
    if not target.startswith(b"/"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"request target must be a path: {target[:100]!r}")
    return method.decode("ascii"), target.decode("latin-1"), version.decode("ascii")


def _fields(lines: list[bytes]) -> dict[str, str]:
    if len(lines) > MAX_HEADERS:
        raise BadRequest(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            what = "folded header line (obs-fold)" if line[:1] in (b" ", b"\t") else "malformed header field"
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"{what}: {line[:100]!r}")
        if _CONTROL.search(value):
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"control character in header {name[:40]!r}")
        key, text = name.decode("ascii").lower(), value.strip(b" \t").decode("latin-1")
        if key in headers:
            text = _repeated(key, headers[key], text)
        headers[key] = text
    return headers


def _repeated(key: str, before: str, now: str) -> str:
    if key == "content-length":
        if before != now:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length given twice: {before!r} and {now!r}")
        return now
    if key in ("host", "authorization", "content-type"):
        raise BadRequest(HTTPStatus.BAD_REQUEST, f"{key} header given twice")
    return f"{before}, {now}"


def _request(method: str, target: str, version: str, headers: dict[str, str], size: int) -> Request:
    http11 = version == "HTTP/1.1"
    if http11 and "host" not in headers:
        raise BadRequest(HTTPStatus.BAD_REQUEST, "HTTP/1.1 request without a Host header")
    length = 0
    value = headers.get("content-length")
    if value is not None:
        if not value.isascii() or not value.isdigit() or len(value) > MAX_CONTENT_LENGTH_DIGITS:
            raise BadRequest(HTTPStatus.BAD_REQUEST, f"invalid Content-Length: {value[:40]!r}")
        length = int(value)
        if "transfer-encoding" in headers:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in tokens and (http11 or "keep-alive" in tokens)
    expect = headers.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        raise BadRequest(HTTPStatus.EXPECTATION_FAILED, f"unsupported expectation: {expect[:60]!r}")
    return Request(method, target, version, headers, size, length, keep_alive, expect is not None)


# ---------------------------------------------------------------- responses


class _Clock:
    """The ``Date`` header, formatted once a second."""

    def __init__(self) -> None:
        self.second = -1
        self.value = b""

    def date(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
            self.second = now
        return self.value


_CLOCK = _Clock()


def head_start(status: int) -> bytes:
    """A response's status line, ``Server`` and ``Date`` (without its line end: :func:`head_rest` follows)."""
    line = _STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode()
    return line + b"Server: dynawheel\r\nDate: " + _CLOCK.date()


def head_rest(length: int, headers: list[tuple[str, str]], close: bool) -> bytes:
    """The rest of a response head after :func:`head_start`: ``Content-Length``, ``headers`` and, when
    ``close``, ``Connection: close``; the blank line included."""
    parts = [b"\r\nContent-Length: ", str(length).encode(), b"\r\n"]
    for key, value in headers:
        parts.append(f"{key}: {value}\r\n".encode("latin-1", "replace"))
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_head(status: int, length: int, headers: list[tuple[str, str]], close: bool) -> bytes:
    """A whole response head: :func:`head_start` and :func:`head_rest`."""
    return head_start(status) + head_rest(length, headers, close)
