"""A private package index server: the static index of :mod:`dynawheel.index`, plus uploads.

* ``GET /simple/`` and ``GET /simple/<name>/``: PEP 503 HTML by default, PEP 691 JSON when the
  ``Accept`` header prefers ``application/vnd.pypi.simple.v1+json`` (q-values honoured,
  ``Vary: Accept``, ``ETag`` / ``If-None-Match`` -> 304).  Unknown projects are 404: there is
  no fallback to any other index, ever (dependency confusion).
* ``GET /<file>`` and ``GET /<file>.metadata``: the distributions in the wheelhouse.
* ``POST /`` or ``/legacy/``: the legacy upload API that ``twine upload`` speaks
  (``multipart/form-data`` with ``:action=file_upload``), HTTP basic auth against a password
  file made with :func:`add_user`.  An upload streams into a hidden temporary file of the
  wheelhouse; once it passed every check it gets its name and only its project's pages (and
  the project list, for a new project) are rewritten, under a lock, each page atomically.
  PEP 740 ``attestations`` sent with it are checked (:mod:`dynawheel.publish.provenance`) and
  stored as ``<file>.provenance`` before the file is listed; a bad one refuses the upload (400).

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
import io
import logging
import os
import secrets
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import unquote, urlsplit

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .. import fsutil
from ..errors import PackageIndexError
from .index import (
    JSON_CONTENT_TYPE,
    ProjectStatus,
    build_index,
    check_wheel_archive,
    inspect_distribution,
    normalize_name,
    project_of_filename,
)
from .provenance import AttestationError, provenance_from_upload, provenance_path

logger = logging.getLogger(__name__)
# one line per answered request in common log format (the CLI sends it to stderr unless -q)
access_logger = logging.getLogger("dynawheel.access")

DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024
MAX_FILENAME_BYTES = 255  # NAME_MAX of Linux, macOS and Windows file systems
_MAX_INFLATE_RATIO = 20  # an uploaded wheel may inflate to 20x the upload limit, no more
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
_JSON_TYPES = {JSON_CONTENT_TYPE, "application/vnd.pypi.simple.latest+json"}
_HTML_V1_TYPES = {"application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.latest+html"}
_CONTENT_TYPES = {".whl": "application/octet-stream", ".gz": "application/gzip",
                  ".metadata": "text/plain; charset=utf-8", ".html": "text/html; charset=utf-8",
                  ".json": "application/json", ".provenance": "application/json"}


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
        fsutil.write_atomic(password_file, data, 0o600)  # never readable by others, not even for a moment
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
    data: bytes  # empty for a file part that went to a sink


class PartSink(Protocol):
    def write(self, data: bytes, /) -> object: ...


MAX_FIELD_SIZE = 1 << 20  # a text field (attestations included); file parts are streamed
_MAX_PART_HEAD = 16 * 1024
_MAX_PREAMBLE = 64 * 1024
_READ_CHUNK = 256 * 1024


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a ``multipart/form-data`` content type; :class:`PackageIndexError` otherwise."""
    header = email.parser.HeaderParser().parsestr(f"Content-Type: {content_type}\r\n\r\n")
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise PackageIndexError(f"not multipart/form-data with a boundary: {content_type!r}")
    if len(boundary) > 200:
        raise PackageIndexError(f"multipart boundary longer than 200 characters: {boundary[:60]!r}...")
    try:
        return boundary.encode("latin-1")
    except UnicodeEncodeError:
        raise PackageIndexError(f"multipart boundary is not ASCII: {boundary!r}") from None


class _Body:
    """Exactly ``length`` bytes of a request body, read in bounded chunks."""

    def __init__(self, read: Callable[[int], bytes], length: int) -> None:
        self.read, self.remaining, self.buf = read, length, bytearray()

    def more(self) -> None:
        if self.remaining <= 0:
            raise PackageIndexError("multipart body ends before its closing boundary")
        chunk = self.read(min(_READ_CHUNK, self.remaining))
        if not chunk:
            raise TruncatedBody(f"body ended with {self.remaining} of its Content-Length bytes missing")
        self.remaining -= len(chunk)
        self.buf += chunk

    def until(self, marker: bytes, limit: int, what: str) -> int:
        while (at := self.buf.find(marker)) < 0:
            if len(self.buf) > limit:
                raise PackageIndexError(f"{what} is longer than {limit} bytes")
            self.more()
        return at


class TruncatedBody(PackageIndexError):
    """The client sent less than its Content-Length (a dropped connection)."""


def read_multipart(read: Callable[[int], bytes], length: int, content_type: str,
                   sink_for: Callable[[str, str], PartSink | None] = lambda _n, _f: None) -> dict[str, FormPart]:
    """Parse a ``multipart/form-data`` body of ``length`` bytes from ``read``, in bounded memory.

    Text fields are kept (each at most :data:`MAX_FIELD_SIZE`); the data of a file part goes to
    ``sink_for(name, filename)`` when that returns a sink (else it is kept like a field).  The
    last part of a repeated name wins.  The whole body is consumed.  Raises
    :class:`PackageIndexError` when the body or its boundary is malformed or a part too large.
    """
    delimiter = b"--" + multipart_boundary(content_type)
    body = _Body(read, length)
    parts: dict[str, FormPart] = {}
    at = body.until(delimiter, _MAX_PREAMBLE, "the multipart preamble")
    del body.buf[: at + len(delimiter)]
    marker = b"\r\n" + delimiter
    while True:
        while len(body.buf) < 2:
            body.more()
        if body.buf.startswith(b"--"):
            while body.remaining > 0:  # the epilogue: read and dropped, so the connection stays in step
                body.buf.clear()
                body.more()
            return parts
        if not body.buf.startswith(b"\r\n"):
            raise PackageIndexError(f"malformed multipart body: {bytes(body.buf[:20])!r} after a boundary")
        head_end = body.until(b"\r\n\r\n", _MAX_PART_HEAD, "a multipart part's header")
        name, filename = _part_head(bytes(body.buf[2: head_end + 2]))
        del body.buf[: head_end + 4]
        sink = sink_for(name, filename) if filename is not None else None
        data = bytearray()
        while True:
            end = body.buf.find(marker)
            chunk_end = end if end >= 0 else max(0, len(body.buf) - len(marker) + 1)
            if sink is not None:
                sink.write(bytes(body.buf[:chunk_end]))
            else:
                data += body.buf[:chunk_end]
                if len(data) > MAX_FIELD_SIZE:
                    raise PackageIndexError(f"multipart field {name!r} is larger than {MAX_FIELD_SIZE} bytes")
            del body.buf[:chunk_end]
            if end >= 0:
                del body.buf[: len(marker)]
                break
            body.more()
        parts[name] = FormPart(name, filename, bytes(data))


def parse_multipart(body: bytes, content_type: str) -> dict[str, FormPart]:
    """Parse a whole ``multipart/form-data`` body held in memory (see :func:`read_multipart`)."""
    files: dict[str, io.BytesIO] = {}

    def keep(name: str, _filename: str) -> io.BytesIO:
        files[name] = io.BytesIO()
        return files[name]

    parts = read_multipart(io.BytesIO(body).read, len(body), content_type, keep)
    return {key: FormPart(part.name, part.filename, files[key].getvalue()) if part.filename is not None else part
            for key, part in parts.items()}


def _part_head(head: bytes) -> tuple[str, str | None]:
    message = email.parser.HeaderParser().parsestr(head.decode("utf-8", "replace") + "\r\n")
    disposition = message.get("Content-Disposition")
    name = message.get_param("name", header="content-disposition")
    if disposition is None or not isinstance(name, str):
        raise PackageIndexError(f"multipart part without a form-data name: {head[:200]!r}")
    filename = message.get_param("filename", header="content-disposition")
    return name, filename if isinstance(filename, str) else None


# ---------------------------------------------------------------- uploads


def check_upload_filename(filename: str | None, name: str | None, version: str | None, *,
                          names_checked: bool = True) -> None:
    """The file name must be a bare wheel/sdist name agreeing with the ``name`` and ``version`` fields
    (``names_checked=False``: everything but that agreement)."""
    if not filename:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has no 'content' file part with a file name")
    if len(filename.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"upload file name is longer than {MAX_FILENAME_BYTES} bytes "
                        f"({len(filename)} characters): {filename[:60]!r}...")
    if not filename.isprintable():
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"upload file name has control characters: {filename!r}")
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
    if not names_checked:
        return
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


def check_digests(parts: Mapping[str, FormPart], sha256_hex: str, md5_hex: str) -> None:
    """Verify ``sha256_digest`` against the content's digest (``md5_digest`` when a client sends only that)."""
    sha256, md5 = _field(parts, "sha256_digest"), _field(parts, "md5_digest")
    if sha256:
        if not hmac.compare_digest(sha256.lower().encode(), sha256_hex.encode()):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"sha256_digest does not match the content: {sha256!r}")
    elif md5:
        if not hmac.compare_digest(md5.lower().encode(), md5_hex.encode()):
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"md5_digest does not match the content: {md5!r}")
    else:
        raise HTTPError(HTTPStatus.BAD_REQUEST, "upload carries no sha256_digest")


def upload_provenance(parts: Mapping[str, FormPart], filename: str, sha256_hex: str, user: str | None) -> bytes | None:
    """The PEP 740 provenance file for an upload's ``attestations`` field (None without one); 400 when an
    attestation is malformed or attests another file."""
    part = parts.get("attestations")
    if part is None:
        return None
    try:
        return provenance_from_upload(part.data, filename, sha256_hex, user)
    except AttestationError as exc:
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"attestations refused (PEP 740): {exc}") from None


class _Spool:
    """The file part of an upload, written to a hidden temporary file in the wheelhouse as it arrives."""

    def __init__(self, directory: Path) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=".upload-", suffix=".part")
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.sha256 = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0

    def write(self, data: bytes) -> int:
        self.file.write(data)
        self.sha256.update(data)
        self.md5.update(data)
        self.size += len(data)
        return len(data)

    def close(self) -> None:
        self.file.close()

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


_DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _storage_error(exc: OSError, filename: str) -> HTTPError:
    if exc.errno in _DISK_FULL:
        return HTTPError(HTTPStatus.INSUFFICIENT_STORAGE,
                         f"no space left for {filename!r} in the wheelhouse ({os.strerror(exc.errno or 0)})")
    return HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, f"cannot store {filename!r}: {exc.strerror or exc}")


class _VerifiedPasswords:
    """Remembers credentials that passed scrypt (keyed by an HMAC with a per-process key, never the
    password itself) while the user's stored hash is unchanged; at most two scrypt checks run at once
    (16 MiB each), so memory stays bounded under concurrent uploads."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._seen: dict[tuple[str, bytes], str] = {}
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2)

    def check(self, users: Mapping[str, str], name: str, password: str) -> bool:
        token = (name, hmac.new(self._key, password.encode("utf-8", "surrogatepass"), "sha256").digest())
        stored = users.get(name)
        with self._lock:
            if stored is not None and self._seen.get(token) == stored:
                return True
        with self._slots:
            ok = verify_password(users, name, password)
        if ok and stored is not None:
            with self._lock:
                if len(self._seen) >= 1024:
                    self._seen.clear()
                self._seen[token] = stored
        return ok


# ---------------------------------------------------------------- the server


class IndexServer(ThreadingHTTPServer):
    """Threaded HTTP server over one wheelhouse (the site root)."""

    daemon_threads = True
    # socketserver's default backlog of 5 makes 64 concurrent clients wait for SYN retries (p99 ~3 s)
    request_queue_size = 1024
    # restart right after Ctrl-C despite TIME_WAIT; on Windows SO_REUSEADDR would let two servers share a port
    allow_reuse_address = os.name != "nt"

    def __init__(self, wheelhouse: Path, address: tuple[str, int], config: ServeConfig,
                 statuses: Mapping[str, ProjectStatus] | None = None) -> None:
        self.wheelhouse = wheelhouse
        self.statuses = dict(statuses or {})  # PEP 792 markers that `dynawheel index --status` set
        self.site_root = wheelhouse.resolve()
        self.config = config
        self.index_lock = threading.Lock()
        self.passwords = _VerifiedPasswords()
        self._pages: dict[Path, tuple[tuple[int, int, int], bytes, str]] = {}
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

    def page(self, path: Path) -> tuple[bytes, str]:
        """A page's bytes and ETag, kept in memory while the file's size, mtime and inode stay the same
        (pages are replaced by rename, so a new page is a new inode)."""
        st = os.stat(path)
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        hit = self._pages.get(path)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2]
        with open(path, "rb") as fh:
            body = fh.read()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + ("-j" if path.name == "index.json" else "-h") + '"'
        if len(self._pages) >= 8192:
            self._pages.clear()
        self._pages[path] = (key, body, etag)
        return body, etag

    def handle_error(self, request: object, client_address: tuple[str, int] | object) -> None:
        """A client that hangs up or stalls mid-request costs one log line, not a traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            logger.info("%s: connection dropped: %s", _client(client_address), exc.__class__.__name__)
        else:
            logger.exception("internal error serving %s", _client(client_address))

    def store_upload(self, filename: str, staged: Path, provenance: bytes | None = None) -> None:
        """Validate an uploaded file (already in a hidden temporary file of the wheelhouse), give it its
        name and update its project's pages (and the project list for a new project) under the lock.

        ``provenance`` (checked PEP 740 provenance) is written beside it first; without it, a provenance
        file left by an earlier upload of the same name is removed (it would describe other bytes).
        The temporary file is removed whatever happens; nothing is listed unless everything passed.
        """
        try:
            self._validate_staged(staged, filename)
            os.chmod(staged, 0o644)
            project = project_of_filename(filename)
            status = self.statuses.get(project)
            if status is not None and status.status in ("archived", "quarantined"):
                raise HTTPError(HTTPStatus.FORBIDDEN, f"project {project!r} is {status.status}: it takes no uploads "
                                "(PEP 792)")
            with self.index_lock:
                target = self.wheelhouse / filename
                if not self.config.allow_overwrite and (target.exists() or self._claimed(filename)):
                    raise HTTPError(HTTPStatus.CONFLICT, f"file already exists: {filename!r}")
                try:
                    _store_provenance(provenance_path(target), provenance)
                    os.replace(staged, target)
                    build_index(self.wheelhouse, project=project)
                except (OSError, PackageIndexError) as exc:
                    cause = exc if isinstance(exc, OSError) else exc.__cause__
                    if not self.config.allow_overwrite:  # listed nowhere: take it back out
                        target.unlink(missing_ok=True)
                        provenance_path(target).unlink(missing_ok=True)
                    if isinstance(cause, OSError):
                        raise _storage_error(cause, filename) from None
                    raise
        finally:
            staged.unlink(missing_ok=True)

    def _claimed(self, filename: str) -> bool:
        """Another spelling of the same file (``Foo-1.0...`` vs ``foo-1.0.0...``) already exists."""
        key = _identity(filename)
        project = key[0]
        return any(_identity(name) == key for name in os.listdir(self.wheelhouse)
                   if not name.startswith(".") and project_of_filename(name) == project)

    def _validate_staged(self, staged: Path, filename: str) -> None:
        try:
            if filename.endswith(".whl"):  # every member inflates with a good CRC: what installers will need
                check_wheel_archive(staged, filename, max_inflated=_MAX_INFLATE_RATIO * self.config.max_upload_size)
            inspect_distribution(staged, filename)  # the file name must match its own metadata
        except (PackageIndexError, OSError) as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid distribution {filename!r}: {exc}") from None


def _store_provenance(path: Path, provenance: bytes | None) -> None:
    if provenance is None:
        path.unlink(missing_ok=True)
    else:
        fsutil.write_atomic(path, provenance, skip_same=True)


def _client(address: object) -> str:
    return str(address[0]) if isinstance(address, tuple) and address else str(address)


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
    result = build_index(wheelhouse)
    try:
        return IndexServer(wheelhouse, (host, port), config, result.statuses)
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
    # headers and a small body leave in one write (flushed after each request), and TCP_NODELAY:
    # without both, Nagle holds the body until the client's delayed ACK (~40 ms per response)
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    _user: str | None = None
    _status: int | None = None
    _sent: int = 0

    # -- plumbing

    def handle_one_request(self) -> None:
        self._status, self._sent, self._user = None, 0, None
        try:
            super().handle_one_request()
        finally:
            self._access_log()  # requests refused before a do_* method ran (bad request line, 414, 501)

    def _access_log(self) -> None:
        """``host - user [date] "request line" status size`` (common log format), once per answered request."""
        if self._status is None:
            return
        status, self._status = self._status, None
        if not access_logger.isEnabledFor(logging.INFO):
            return
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())
        request = getattr(self, "requestline", "").replace('"', "%22") or "-"
        size = str(self._sent) if self._sent else "-"
        access_logger.info('%s - %s [%s] "%s" %d %s', self.client_address[0], self._user or "-", when,
                           request, status, size)

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = int(code)
        super().send_response(code, message)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if str(code).isdigit() else 0
        path = getattr(self, "path", "")
        self.server.record(RequestRecord(getattr(self, "command", "") or "", path, status, self._user))

    def log_message(self, format: str, *args: object) -> None:
        logger.info("%s %s", self.address_string(), format % args)

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
            self._sent = len(body)

    def _send_error(self, exc: HTTPError) -> None:
        logger.info("%s %s -> %d %s", self.command, self.path, exc.status, exc.message)
        body = f"{exc.status.value} {exc.status.phrase}: {exc.message}\n".encode()
        headers = dict(exc.headers)
        if self.close_connection:
            headers["Connection"] = "close"
        self._send(exc.status, body, "text/plain; charset=utf-8", headers)

    def _guard(self, action: str) -> None:
        try:
            if action == "POST":
                self._upload()
            else:
                self._get()
        except HTTPError as exc:
            self._send_error(exc)
        except (ConnectionError, TimeoutError) as exc:
            logger.warning("%s: connection dropped during %s %s: %s", self.client_address[0], self.command,
                        self.path, exc.__class__.__name__)
            self.close_connection = True
        except Exception:
            logger.exception("internal error answering %s %s", self.command, self.path)
            self.close_connection = True
            self._send_error(HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"))
        finally:
            self._access_log()  # before the response is flushed: a client that saw it finds it logged

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
            body, etag = self.server.page(directory / name)
        except OSError:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such project here (and no fallback): {self.path!r}",
                            {"Vary": "Accept"}) from None
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
        status = self.server.statuses.get(project_of_filename(target.name))
        if (not target.is_relative_to(self.server.site_root) or not target.is_file()
                or (status is not None and status.status == "quarantined")
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
                self.wfile.flush()
                self._sent = self.connection.sendfile(fh) if st.st_size >= 64 * 1024 else _copy(fh, self.wfile)

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
        spool: list[_Spool] = []
        try:
            parts = self._read_form(length, spool)
            if not spool:
                raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has no 'content' file part with a file name")
            upload = spool[0]
            upload.close()
            content = parts["content"]
            filename = content.filename or ""
            check_upload_filename(filename, _field(parts, "name"), _field(parts, "version"))
            check_digests(parts, upload.sha256.hexdigest(), upload.md5.hexdigest())
            provenance = upload_provenance(parts, filename, upload.sha256.hexdigest(), self._user)
            self.server.store_upload(filename, upload.path, provenance)
        finally:
            for each in spool:
                each.discard()
        logger.info("stored upload %s (%d bytes) from %s", filename, upload.size, self._user or "anonymous")
        self._send(HTTPStatus.OK, b"OK\n", "text/plain; charset=utf-8")

    def _read_form(self, length: int, spool: list[_Spool]) -> dict[str, FormPart]:
        """The form fields; the ``content`` file streams into ``spool`` after its name passed every check
        that needs no other field (nothing is written for a name that could never be stored)."""
        seen: dict[str, FormPart] = {}

        def sink_for(name: str, filename: str) -> PartSink | None:
            if name != "content":
                return None
            if spool:
                raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has more than one 'content' part")
            check_upload_filename(filename, None, None, names_checked=False)
            spool.append(_Spool(self.server.wheelhouse))
            return spool[0]

        try:
            seen = read_multipart(self.rfile.read, length, self.headers.get("Content-Type", ""), sink_for)
        except TruncatedBody as exc:
            self.close_connection = True
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"upload cut off: {exc}") from None
        except PackageIndexError as exc:
            self.close_connection = True
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed multipart body: {exc}") from None
        except OSError as exc:
            if isinstance(exc, (ConnectionError, TimeoutError)):
                raise
            self.close_connection = True
            name = spool[0].path.name if spool else "the upload"
            raise _storage_error(exc, name) from None
        action = _field(seen, ":action")
        if action != "file_upload":
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"unsupported :action {action!r} (only 'file_upload')")
        return seen

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
        if not self.server.passwords.check(users, *credentials):
            return HTTPError(HTTPStatus.UNAUTHORIZED, f"invalid user or password for {credentials[0]!r}", challenge)
        self._user = credentials[0]
        return None


def _copy(src: BinaryIO, dst: io.BufferedIOBase) -> int:
    data = src.read()
    dst.write(data)
    return len(data)


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
