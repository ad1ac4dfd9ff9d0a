"""A private package index server: the static index of :mod:`dynawheel.index`, plus uploads.

* ``GET /simple/`` and ``GET /simple/<name>/``: PEP 503 HTML by default, PEP 691 JSON when the
  ``Accept`` header prefers ``application/vnd.pypi.simple.v1+json`` (q-values honoured,
  ``Vary: Accept``, ``ETag`` / ``If-None-Match`` -> 304).  Unknown projects are 404: there is
  no fallback to any other index, ever (dependency confusion).
* ``GET /<file>`` and ``GET /<file>.metadata``: the distributions in the wheelhouse.
* ``POST /`` or ``/legacy/``: the legacy upload API that ``twine upload`` speaks
  (``multipart/form-data`` with ``:action=file_upload``), HTTP basic auth against a password
  file made with :func:`add_user`.  The index is rebuilt under a lock after each upload, and
  each page is replaced atomically.

Paths are confined to the site: ``..`` segments, encoded slashes and NUL bytes are 400,
hidden files (``.*``) and anything outside the site (symlinks included) are 404.
"""

from __future__ import annotations

import base64
import binascii
import email.parser
import errno
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from ..errors import PackageIndexError
from .index import JSON_CONTENT_TYPE, build_index, inspect_distribution, normalize_name, write_atomic

logger = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_JSON_TYPES = {JSON_CONTENT_TYPE, "application/vnd.pypi.simple.latest+json"}
_HTML_V1_TYPES = {"application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.latest+html"}
_CONTENT_TYPES = {".whl": "application/octet-stream", ".gz": "application/gzip",
                  ".metadata": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
                  ".json": "application/json"}


@dataclass(frozen=True)
class ServeConfig:
    """How the server treats uploads."""

    password_file: Path | None = None
    allow_anonymous_upload: bool = False
    allow_overwrite: bool = False
    max_upload_size: int = DEFAULT_MAX_UPLOAD


@dataclass(frozen=True)
class RequestRecord:
    """One answered request (for logs and tests)."""

    method: str
    path: str
    status: int
    user: str | None = None


class HTTPError(Exception):
    """A request the server refuses; becomes an HTTP error response."""

    def __init__(self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# ---------------------------------------------------------------- passwords


def _hash_password(password: str, salt: bytes) -> str:
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def _check_user_name(name: str) -> None:
    if not name or ":" in name or any(c.isspace() for c in name) or not name.isprintable():
        raise PackageIndexError(f"invalid user name (no ':', spaces or control characters): {name!r}")


def read_password_file(password_file: Path) -> dict[str, str]:
    """``{user: hash}`` from a password file (``user:scrypt$n$r$p$salt$hash`` lines)."""
    try:
        text = password_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PackageIndexError(f"cannot read password file {str(password_file)!r}: {exc}") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith("scrypt$"):
            raise PackageIndexError(f"password file {str(password_file)!r} line {number} is malformed: {name!r}")
        users[name] = hashed
    return users


def add_user(password_file: Path, name: str, password: str) -> None:
    """Add or replace ``name`` in ``password_file`` (created with mode 0600) with a salted scrypt hash."""
    _check_user_name(name)
    if not password:
        raise PackageIndexError(f"empty password for user {name!r}")
    users = read_password_file(password_file) if password_file.exists() else {}
    users[name] = _hash_password(password, secrets.token_bytes(16))
    data = "".join(f"{user}:{hashed}\n" for user, hashed in sorted(users.items())).encode()
    try:
        write_atomic(password_file, data)
        os.chmod(password_file, 0o600)
    except OSError as exc:
        raise PackageIndexError(f"cannot write password file {str(password_file)!r}: {exc}") from exc


def verify_password(users: Mapping[str, str], name: str, password: str) -> bool:
    """Constant-time check; unknown users cost the same as known ones."""
    stored = users.get(name, "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32)
    try:
        _alg, n, r, p, salt_hex, digest_hex = stored.split("$")
        digest = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p),
                                dklen=len(digest_hex) // 2)
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(digest.hex(), digest_hex) and name in users


# ---------------------------------------------------------------- content negotiation


def negotiate(accept: str | None) -> str | None:
    """Pick the simple-API media type for an ``Accept`` header; None when nothing acceptable.

    Returns ``application/vnd.pypi.simple.v1+json``, ``application/vnd.pypi.simple.v1+html``
    or ``text/html``.  Highest q wins; among equal q the first listed.
    """
    if not accept or not accept.strip():
        return "text/html"
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        quality = _q_value(params)
        choice = _media_choice(media)
        if choice is None or quality <= 0:
            continue
        if best is None or quality > best[0] or (quality == best[0] and position < best[1]):
            best = (quality, position, choice)
    return None if best is None else best[2]


def _q_value(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "q":
            try:
                return max(0.0, min(1.0, float(value.strip())))
            except ValueError:
                return 0.0
    return 1.0


def _media_choice(media: str) -> str | None:
    if media in _JSON_TYPES or media == "application/*":
        return JSON_CONTENT_TYPE
    if media in _HTML_V1_TYPES:
        return "application/vnd.pypi.simple.v1+html"
    if media in ("text/html", "text/*", "*/*"):
        return "text/html"
    return None


# ---------------------------------------------------------------- multipart


@dataclass(frozen=True)
class FormPart:
    name: str
    filename: str | None
    data: bytes


def parse_multipart(body: bytes, content_type: str) -> dict[str, FormPart]:
    """Parse a ``multipart/form-data`` body; the last part of a repeated name wins.

    Raises :class:`PackageIndexError` when the body or its boundary is malformed.
    """
    header = email.parser.HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise PackageIndexError(f"not multipart/form-data with a boundary: {content_type!r}")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    if start < 0:
        raise PackageIndexError(f"multipart body has no boundary {boundary!r}")
    parts: dict[str, FormPart] = {}
    pos = start + len(delimiter)
    while True:
        if body.startswith(b"--", pos):
            return parts
        if not body.startswith(b"\r\n", pos):
            raise PackageIndexError(f"malformed multipart body at byte {pos}")
        head_end = body.find(b"\r\n\r\n", pos + 2)
        end = body.find(b"\r\n" + delimiter, pos + 2)
        if head_end < 0 or end < 0 or head_end > end:
            raise PackageIndexError(f"malformed or truncated multipart body at byte {pos}")
        part = _parse_part(body[pos + 2: head_end + 2], body[head_end + 4: end])
        parts[part.name] = part
        pos = end + 2 + len(delimiter)


def _parse_part(head: bytes, data: bytes) -> FormPart:
    message = email.parser.HeaderParser().parsestr(head.decode("utf-8", "replace") + "\r\n")
    disposition = message.get("Content-Disposition")
    name = message.get_param("name", header="content-disposition")
    if disposition is None or not isinstance(name, str):
        raise PackageIndexError(f"multipart part without a form-data name: {head[:200]!r}")
    filename = message.get_param("filename", header="content-disposition")
    return FormPart(name, filename if isinstance(filename, str) else None, data)


# ---------------------------------------------------------------- uploads


def check_upload_filename(filename: str | None, name: str | None, version: str | None) -> None:
    """The file name must be a bare wheel/sdist name agreeing with the ``name`` and ``version`` fields."""
    if not filename:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has no 'content' file part with a file name")
    if "/" in filename or "\\" in filename or ".." in filename or "\x00" in filename or filename.startswith("."):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid upload file name: {filename!r}")
    try:
        if filename.endswith(".whl"):
            fname, fversion = parse_wheel_filename(filename)[:2]
        elif filename.endswith(".tar.gz"):
            fname, fversion = parse_sdist_filename(filename)
        else:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"only .whl and .tar.gz are accepted: {filename!r}")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid distribution file name ({exc}): {filename!r}") from None
    if name is None or normalize_name(name) != normalize_name(fname):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"field name={name!r} does not match file {filename!r}")
    try:
        same = version is not None and Version(version) == fversion
    except InvalidVersion:
        same = False
    if not same:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"field version={version!r} does not match file {filename!r}")


def _field(parts: Mapping[str, FormPart], key: str) -> str | None:
    part = parts.get(key)
    return None if part is None else part.data.decode("utf-8", "replace").strip()


def check_digests(parts: Mapping[str, FormPart], content: bytes) -> None:
    """Verify ``sha256_digest`` against the content (``md5_digest`` when a client sends only that)."""
    sha256, md5 = _field(parts, "sha256_digest"), _field(parts, "md5_digest")
    if sha256:
        if not hmac.compare_digest(sha256.lower(), hashlib.sha256(content).hexdigest()):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"sha256_digest does not match the content: {sha256!r}")
    elif md5:
        if not hmac.compare_digest(md5.lower(), hashlib.md5(content, usedforsecurity=False).hexdigest()):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"md5_digest does not match the content: {md5!r}")
    else:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "upload carries no sha256_digest")


# ---------------------------------------------------------------- the server


class IndexServer(ThreadingHTTPServer):
    """Threaded HTTP server over one wheelhouse (the site root)."""

    daemon_threads = True
    # restart right after Ctrl-C despite TIME_WAIT; on Windows SO_REUSEADDR would let two servers share a port
    allow_reuse_address = os.name != "nt"

    def __init__(self, wheelhouse: Path, address: tuple[str, int], config: ServeConfig) -> None:
        self.wheelhouse = wheelhouse
        self.site_root = wheelhouse.resolve()
        self.config = config
        self.index_lock = threading.Lock()
        self.request_log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def record(self, entry: RequestRecord) -> None:
        with self._log_lock:
            self.request_log.append(entry)
            del self.request_log[:-100_000]

    def store_upload(self, filename: str, content: bytes) -> None:
        """Validate an uploaded file, move it into the wheelhouse and rebuild the index (under the lock)."""
        staging = Path(tempfile.mkdtemp(dir=self.wheelhouse, prefix=".upload-"))
        try:
            staged = staging / filename
            staged.write_bytes(content)
            self._validate_staged(staged, filename)
            os.chmod(staged, 0o644)
            with self.index_lock:
                target = self.wheelhouse / filename
                if not self.config.allow_overwrite and (target.exists() or self._claimed(filename)):
                    raise HTTPError(HTTPStatus.CONFLICT, f"file already exists: {filename!r}")
                os.replace(staged, target)
                build_index(self.wheelhouse)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _claimed(self, filename: str) -> bool:
        """Another spelling of the same file (``Foo-1.0...`` vs ``foo-1.0.0...``) already exists."""
        key = _identity(filename)
        return any(_identity(p.name) == key for p in self.wheelhouse.iterdir() if not p.name.startswith("."))

    @staticmethod
    def _validate_staged(staged: Path, filename: str) -> None:
        try:
            inspect_distribution(staged)  # the file name must match its own metadata
        except (PackageIndexError, OSError) as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid distribution {filename!r}: {exc}") from None


def _identity(filename: str) -> tuple[str, str, str]:
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            return (name, canonicalize_version(version), ".".join(sorted(map(str, tags))))
        if filename.endswith(".tar.gz"):
            name, version = parse_sdist_filename(filename)
            return (name, canonicalize_version(version), "sdist")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        pass
    return (filename, "", "")


def make_server(wheelhouse: Path, host: str = "127.0.0.1", port: int = 8087,
                config: ServeConfig | None = None) -> IndexServer:
    """Build the index of ``wheelhouse`` and bind a server to ``host:port`` (0 = any free port).

    Raises :class:`PackageIndexError` when the wheelhouse is missing, the password file is
    unreadable or the port is in use.
    """
    config = config or ServeConfig()
    wheelhouse = Path(wheelhouse)
    if not wheelhouse.is_dir():
        raise PackageIndexError(f"wheelhouse does not exist or is not a directory: {str(wheelhouse)!r}")
    if config.password_file is not None:
        read_password_file(config.password_file)
    if config.max_upload_size <= 0:
        raise PackageIndexError(f"max upload size must be positive: {config.max_upload_size!r}")
    build_index(wheelhouse)
    try:
        return IndexServer(wheelhouse, (host, port), config)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PackageIndexError(f"port {port!r} on {host!r} is already in use; pick another with --port") from None
        raise PackageIndexError(f"cannot listen on {host!r} port {port!r}: {exc}") from None


def serve_forever(server: IndexServer) -> None:
    """Serve until Ctrl-C (or :meth:`shutdown` from another thread), then close the socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("interrupted, stopping")
    finally:
        server.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: IndexServer
    protocol_version = "HTTP/1.1"
    server_version = "dynawheel"
    timeout = 60
    _user: str | None = None

    # -- plumbing

    def log_message(self, format: str, *args: object) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if str(code).isdigit() else 0
        path = getattr(self, "path", "")
        self.server.record(RequestRecord(getattr(self, "command", "") or "", path, status, self._user))
        super().log_request(code, size)

    def _send(self, status: HTTPStatus, body: bytes, content_type: str,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, exc: HTTPError) -> None:
        logger.info("%s %s -> %d %s", self.command, self.path, exc.status, exc.message)
        body = f"{exc.status.value} {exc.status.phrase}: {exc.message}\n".encode()
        headers = dict(exc.headers)
        if self.close_connection:
            headers["Connection"] = "close"
        self._send(exc.status, body, "text/plain; charset=utf-8", headers)

    def _guard(self, action: str) -> None:
        self._user = None  # one connection may carry several requests
        try:
            if action == "POST":
                self._upload()
            else:
                self._get()
        except HTTPError as exc:
            self._send_error(exc)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception:
            logger.exception("internal error answering %s %s", self.command, self.path)
            self.close_connection = True
            self._send_error(HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"))

    def do_GET(self) -> None:
        self._guard("GET")

    def do_HEAD(self) -> None:
        self._guard("GET")

    def do_POST(self) -> None:
        self._guard("POST")

    # -- reading

    def _segments(self) -> list[str]:
        raw = urlsplit(self.path).path
        lowered = raw.lower()
        if not raw.startswith("/") or "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid path: {raw!r}")
        path = unquote(raw)
        segments = path.split("/")[1:]
        if any(seg in ("..", ".") or "\\" in seg or "\x00" in seg for seg in segments):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid path: {raw!r}")
        return segments

    def _get(self) -> None:
        segments = self._segments()
        if segments == [""]:
            body = b'<!DOCTYPE html>\n<html><body><a href="simple/">simple/</a></body></html>\n'
            self._send(HTTPStatus.OK, body, "text/html; charset=utf-8")
        elif segments[0] == "simple":
            self._simple(segments[1:])
        else:
            self._file(segments)

    def _simple(self, rest: list[str]) -> None:
        if not rest:
            raise HTTPError(HTTPStatus.MOVED_PERMANENTLY, "see /simple/", {"Location": "/simple/"})
        if rest == [""]:
            return self._page(self.server.site_root / "simple")
        if len(rest) > 2 or (len(rest) == 2 and rest[1] != "") or not rest[0]:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {self.path!r}")
        normalized = normalize_name(rest[0])
        if normalized != rest[0] or len(rest) == 1:
            raise HTTPError(HTTPStatus.MOVED_PERMANENTLY, "normalized name",
                            {"Location": f"/simple/{normalized}/"})
        return self._page(self.server.site_root / "simple" / normalized)

    def _page(self, directory: Path) -> None:
        choice = negotiate(self.headers.get("Accept"))
        if choice is None:
            raise HTTPError(HTTPStatus.NOT_ACCEPTABLE, "supported: application/vnd.pypi.simple.v1+json, "
                            "application/vnd.pypi.simple.v1+html, text/html", {"Vary": "Accept"})
        name = "index.json" if choice == JSON_CONTENT_TYPE else "index.html"
        try:
            body = (directory / name).read_bytes()
        except OSError:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such project here (and no fallback): {self.path!r}",
                            {"Vary": "Accept"}) from None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + ("-j" if name == "index.json" else "-h") + '"'
        headers = {"ETag": etag, "Vary": "Accept", "Cache-Control": "max-age=0, must-revalidate"}
        content_type = choice if choice != "text/html" else "text/html; charset=utf-8"
        self._conditional(body, content_type, headers)

    def _conditional(self, body: bytes, content_type: str, headers: dict[str, str]) -> None:
        if _etag_matches(self.headers.get("If-None-Match"), headers["ETag"]):
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(HTTPStatus.OK, body, content_type, headers)

    def _file(self, segments: list[str]) -> None:
        if any(not seg or seg.startswith(".") for seg in segments):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {self.path!r}")
        target = self.server.site_root.joinpath(*segments).resolve()
        password_file = self.server.config.password_file
        if (not target.is_relative_to(self.server.site_root) or not target.is_file()
                or (password_file is not None and target == password_file.resolve())):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {self.path!r}")
        suffix = ".gz" if target.name.endswith(".tar.gz") else target.suffix
        content_type = _CONTENT_TYPES.get(suffix, "application/octet-stream")
        st = target.stat()
        headers = {"ETag": f'"{st.st_size:x}-{st.st_mtime_ns:x}"'}
        if _etag_matches(self.headers.get("If-None-Match"), headers["ETag"]):
            return self._conditional(b"", content_type, headers)
        with target.open("rb") as fh:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(st.st_size))
            self.send_header("ETag", headers["ETag"])
            self.end_headers()
            if self.command != "HEAD":
                shutil.copyfileobj(fh, self.wfile)

    # -- uploads

    def _upload(self) -> None:
        if urlsplit(self.path).path not in ("/", "/legacy", "/legacy/"):
            self.close_connection = True
            raise HTTPError(HTTPStatus.NOT_FOUND, f"uploads go to / or /legacy/, not {self.path!r}")
        length = self._content_length()
        denied = self._auth_error()
        if denied is not None:
            self._drain(length)
            raise denied
        body = self._read_exact(length)
        try:
            parts = parse_multipart(body, self.headers.get("Content-Type", ""))
        except PackageIndexError as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed multipart body: {exc}") from None
        action = _field(parts, ":action")
        if action != "file_upload":
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"unsupported :action {action!r} (only 'file_upload')")
        content = parts.get("content")
        filename = content.filename if content is not None else None
        check_upload_filename(filename, _field(parts, "name"), _field(parts, "version"))
        if content is None or filename is None:  # unreachable: check_upload_filename refused it
            raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has no 'content' part")
        check_digests(parts, content.data)
        self.server.store_upload(filename, content.data)
        logger.info("stored upload %s (%d bytes) from %s", filename, len(content.data), self._user or "anonymous")
        self._send(HTTPStatus.OK, b"OK\n", "text/plain; charset=utf-8")

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "chunked uploads are not supported; send Content-Length")
        value = self.headers.get("Content-Length")
        try:
            length = int(value) if value is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, f"missing or invalid Content-Length: {value!r}")
        limit = self.server.config.max_upload_size
        if length > limit:
            self.close_connection = True
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload of {length} bytes exceeds the limit {limit}")
        return length

    def _read_exact(self, length: int) -> bytes:
        data = self.rfile.read(length)
        if len(data) != length:
            self.close_connection = True
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"body ended after {len(data)} of {length} bytes")
        return data

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _auth_error(self) -> HTTPError | None:
        config = self.server.config
        if config.password_file is None:
            if config.allow_anonymous_upload:
                return None
            return HTTPError(HTTPStatus.FORBIDDEN, "uploads are disabled: start the server with --password-file "
                             "(or --allow-anonymous-upload)")
        challenge = {"WWW-Authenticate": 'Basic realm="dynawheel", charset="UTF-8"'}
        credentials = _basic_credentials(self.headers.get("Authorization"))
        if credentials is None:
            return HTTPError(HTTPStatus.UNAUTHORIZED, "authentication required", challenge)
        try:
            users = read_password_file(config.password_file)
        except PackageIndexError as exc:
            logger.error("%s", exc)
            return HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "password file unreadable")
        if not verify_password(users, *credentials):
            return HTTPError(HTTPStatus.UNAUTHORIZED, f"invalid user or password for {credentials[0]!r}", challenge)
        self._user = credentials[0]
        return None


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    return etag in tags
