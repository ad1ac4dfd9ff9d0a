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
import contextlib
import email.parser
import errno
import hashlib
import hmac
import io
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import NoReturn, Protocol
from urllib.parse import unquote

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
    DistFile,
    ProjectStatus,
    build_index,
    check_wheel_archive,
    inspect_distribution,
    known_files,
    linked_provenance,
    normalize_name,
    project_of_filename,
)
from .loop import Channel, LoopServer, Reply
from .provenance import (
    MAX_ATTESTATIONS,
    MAX_PROVENANCE_SIZE,
    AttestationError,
    check_provenance,
    provenance_from_upload,
    provenance_path,
)
from .provenance import SUFFIX as PROVENANCE_SUFFIX
from .wire import BadRequest, Request

if sys.platform != "win32":  # Windows: one process serves, the thread lock is enough
    import fcntl

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
    base_url: str | None = None  # public URL of the server: absolute PEP 740 provenance URLs


@dataclass(frozen=True)
class RequestRecord:
    """One answered request (for logs and tests)."""

    method: str
    path: str
    status: int
    user: str | None = None


class HTTPError(Exception):
    """A request the server refuses; becomes an HTTP error response."""

    def __init__(self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None, *,
                 close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.close = close  # close the connection after the answer


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


class FieldTooLarge(PackageIndexError):
    """A text field of a multipart body is larger than :data:`MAX_FIELD_SIZE` (413, not a malformed body)."""


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
                    raise FieldTooLarge(f"field {name!r} is larger than {MAX_FIELD_SIZE} bytes"
                                        + (" (PEP 740 attestations of one file are a few KiB each, at most "
                                           f"{MAX_ATTESTATIONS})" if name == "attestations" else ""))
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
    (16 MiB each), so memory stays bounded under concurrent uploads, and the same credentials are checked
    once however many uploads bring them at once (8 twines starting together: one scrypt, not 8)."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._seen: dict[tuple[str, bytes], str] = {}
        self._gates: dict[tuple[str, bytes], threading.Lock] = {}  # one per credentials being checked
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2)

    def check(self, users: Mapping[str, str], name: str, password: str) -> bool:
        token = (name, hmac.new(self._key, password.encode("utf-8", "surrogatepass"), "sha256").digest())
        stored = users.get(name)
        with self._lock:
            if stored is not None and self._seen.get(token) == stored:
                return True
            if len(self._gates) >= 1024:
                self._gates.clear()
            gate = self._gates.setdefault(token, threading.Lock())
        with gate:  # the same credentials wait for the check under way, then find its outcome
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


_SMALL_FILE = 64 * 1024  # files up to this size are kept in memory (while unchanged) and sent with their head
_FILE_CACHE_BYTES = 16 * 1024 * 1024
_WATCH_EVERY = 0.2  # seconds between looks at the wheelhouse directory (on page requests)
_RACY_NS = 2_000_000_000  # a directory changed this recently is looked at again (coarse file system clocks)


@dataclass(frozen=True, slots=True)
class _FileEntry:
    """A file of the wheelhouse that passed every check, by its lstat key (a new file is a new key)."""

    key: tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns)
    path: str
    etag: str
    content_type: str
    project: str
    body: bytes | None  # the content of a small file


def _lstat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_WATCHED = (".whl", ".tar.gz", ".whl" + PROVENANCE_SUFFIX, ".tar.gz" + PROVENANCE_SUFFIX)


class _Watch:
    """Notices distributions copied into or removed from the wheelhouse while the server runs: a stat of
    the directory at most every :data:`_WATCH_EVERY` seconds, and when its mtime moved, a listing.

    A file overwritten in place (same name, same inode) does not move the directory's mtime: it is
    noticed when its project's page is asked for (:meth:`project_changed`, a stat of each of the
    project's files, at most every :data:`_WATCH_EVERY` seconds) by its new size or mtime (ns).
    Not noticed: a rewrite that keeps both the size and the mtime (``touch -r``, ``rsync --times`` of
    same-size content, or a write within one tick of a coarse file system clock); ``dynawheel index
    --no-cache`` re-reads every file.
    """

    def __init__(self, wheelhouse: Path) -> None:
        self.directory = str(wheelhouse)
        self.checked = 0.0
        self.mtime = os.stat(self.directory).st_mtime_ns
        self._files: dict[str, tuple[int, int, int]] = {}
        self._by_project: dict[str, list[str]] | None = None
        self._project_checked: dict[str, float] = {}
        self.files = self.scan()
        self.refreshing = False  # a thread is re-indexing: serve what is there meanwhile
        self.stale = False  # a change was seen and not indexed yet

    @property
    def files(self) -> dict[str, tuple[int, int, int]]:
        """Name -> (size, mtime_ns, inode) of the distributions (and provenance files) last indexed."""
        return self._files

    @files.setter
    def files(self, files: dict[str, tuple[int, int, int]]) -> None:
        self._files, self._by_project = files, None
        self._projects()  # grouped now, not by the next upload (which waits under the lock)

    def names_of(self, project: str) -> list[str]:
        """The names of ``project``'s files (and provenance files) as last indexed."""
        return self._projects().get(project, [])

    def _projects(self) -> dict[str, list[str]]:
        by_project = self._by_project
        if by_project is None:
            by_project = {}
            for name in self._files:
                by_project.setdefault(project_of_filename(name), []).append(name)
            self._by_project = by_project
        return by_project

    def stored(self, target: Path) -> None:
        """An upload stored ``target`` (and its provenance file, or removed it): the view follows, for that
        project only (copies, not changes in place: the loop thread reads the view meanwhile)."""
        files = dict(self._files)
        by_project = dict(self._projects())
        names = list(by_project.get(project_of_filename(target.name), []))
        for path in (target, provenance_path(target)):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                if files.pop(path.name, None) is not None:
                    names.remove(path.name)
                continue
            if path.name not in files:
                names.append(path.name)
            files[path.name] = (st.st_size, st.st_mtime_ns, st.st_ino)
        by_project[project_of_filename(target.name)] = names
        self._files, self._by_project = files, by_project

    def project_changed(self, project: str) -> bool:
        """True when a file of ``project`` is not as it was indexed (overwritten in place: a new size or
        mtime; or gone); then the watch is stale until the next re-index."""
        if self.refreshing or self.stale:
            return not self.refreshing
        now = time.monotonic()  # at most every _WATCH_EVERY seconds per project: pages answer at ~10 us
        if now - self._project_checked.get(project, -_WATCH_EVERY) < _WATCH_EVERY:
            return False
        if len(self._project_checked) > 65536:
            self._project_checked.clear()
        self._project_checked[project] = now
        for name in self._projects().get(project, ()):
            try:
                st = os.stat(os.path.join(self.directory, name))
            except OSError:
                self.stale = True
                return True
            if (st.st_size, st.st_mtime_ns, st.st_ino) != self._files.get(name):
                self.stale = True
                return True
        return False

    def scan(self) -> dict[str, tuple[int, int, int]]:
        files: dict[str, tuple[int, int, int]] = {}
        with os.scandir(self.directory) as listing:
            for entry in listing:
                name = entry.name
                if name.startswith(".") or not name.endswith(_WATCHED):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                files[name] = (st.st_size, st.st_mtime_ns, st.st_ino)
        return files

    def changed(self) -> bool:
        """True when the distributions differ from those last indexed (throttled; cheap when nothing moved)."""
        if self.refreshing or self.stale:
            return not self.refreshing
        now = time.monotonic()
        if now - self.checked < _WATCH_EVERY:
            return False
        self.checked = now
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return False
        if mtime == self.mtime and time.time_ns() - mtime > _RACY_NS:
            return False
        self.mtime = mtime
        self.stale = self.scan() != self.files
        return self.stale


class _IndexLock:
    """Held while the index is written: a thread lock, and ``flock`` on the wheelhouse directory for the
    other worker processes (each opens the directory itself: a lock is per open file description)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if sys.platform == "win32":
            return
        try:
            if self._pid != os.getpid():
                self._fd, self._pid = os.open(self._directory, os.O_RDONLY), os.getpid()
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if sys.platform != "win32" and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()


class IndexServer(LoopServer):
    """An HTTP server over one wheelhouse (the site root): GET/HEAD on the loop, uploads on threads."""

    def __init__(self, wheelhouse: Path, address: tuple[str, int], config: ServeConfig,
                 statuses: Mapping[str, ProjectStatus] | None = None) -> None:
        self.wheelhouse = wheelhouse
        self.statuses = dict(statuses or {})  # PEP 792 markers that `dynawheel index --status` set
        self.site_root = wheelhouse.resolve()
        self._root = str(self.site_root)
        self.config = config
        self.index_lock = _IndexLock(self.site_root)
        self.passwords = _VerifiedPasswords()
        self._validating = threading.BoundedSemaphore(2)
        self._pages: dict[Path, tuple[tuple[int, int, int], bytes, str]] = {}
        self._files: dict[str, _FileEntry] = {}
        # answers to heads seen before (GET of a page or a small file), while their source is unchanged
        self._replies: dict[Request, tuple[str, str, tuple[int, ...], Reply]] = {}
        self._file_bytes = 0
        self._password_path = config.password_file.resolve() if config.password_file is not None else None
        self.watch = _Watch(wheelhouse)
        self.request_log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        super().__init__(address, self, backlog=1024, timeout=60.0)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"

    def record(self, entry: RequestRecord) -> None:
        self.request_log.append(entry)  # one append is atomic; trimming takes the lock
        if len(self.request_log) > 110_000:
            with self._log_lock:
                del self.request_log[:-100_000]

    def page(self, path: Path) -> tuple[bytes, str, tuple[int, int, int]]:
        """A page's bytes, ETag and stat key, kept in memory while the file's size, mtime and inode stay the same
        (pages are replaced by rename, so a new page is a new inode)."""
        st = os.stat(path)
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        hit = self._pages.get(path)
        if hit is not None and hit[0] == key:
            return hit[1], hit[2], key
        with open(path, "rb") as fh:
            body = fh.read()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + ("-j" if path.name == "index.json" else "-h") + '"'
        if len(self._pages) >= 8192:
            self._pages.clear()
        self._pages[path] = (key, body, etag)
        return body, etag, key

    # -- answering (the loop's App)

    def respond(self, request: Request, client: str) -> Reply | None:
        hit = self._replies.get(request)
        if hit is not None and self._still_good(hit):
            self.answered(request, client, hit[3], None)
            return hit[3]
        if request.method == "POST":
            return None
        try:
            if request.method not in ("GET", "HEAD"):
                raise HTTPError(HTTPStatus.NOT_IMPLEMENTED, f"unsupported method {request.method!r}", close=True)
            get = _Get(self, request)
            reply = get.answer(may_defer=True)
            if reply is None:  # the wheelhouse changed: re-index on a thread, then answer
                self.watch.refreshing = True
                return None
            if get.source is not None and reply.file is None:
                if len(self._replies) >= 4096:
                    self._replies.clear()
                self._replies[request] = (*get.source, reply)
        except HTTPError as exc:
            reply = _error_reply(request, exc)
        except Exception:
            logger.exception("internal error answering %s", request.request_line)
            reply = _error_reply(request, HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", close=True))
        self.answered(request, client, reply, None)
        return reply

    def _still_good(self, hit: tuple[str, str, tuple[int, ...], Reply]) -> bool:
        """A remembered answer holds while its page (or file) is the same file and the wheelhouse did not change."""
        kind, path, key, _reply = hit
        try:
            if kind == "page":
                st = os.stat(path)
                project = os.path.basename(os.path.dirname(path))  # "simple" for the project list
                return (st.st_mtime_ns == key[1] and st.st_ino == key[2] and not self.watch.changed()
                        and not self.watch.project_changed(project))
            entry = self._files.get(path)
            status = self.statuses.get(entry.project) if entry is not None else None
            return (entry is not None and entry.key == key and _lstat_key(os.lstat(entry.path)) == key
                    and (status is None or status.status != "quarantined"))
        except OSError:
            return False

    def respond_blocking(self, request: Request, client: str, channel: Channel) -> Reply:
        user: str | None = None
        try:
            if request.method == "POST":
                upload = _Upload(self, request, channel)
                try:
                    reply = upload.answer()
                finally:
                    user = upload.user
            else:
                self.refresh()
                reply = _Get(self, request).answer(may_defer=False) or _error_reply(
                    request, HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error"))
        except HTTPError as exc:
            reply = _error_reply(request, exc)
        except (ConnectionError, TimeoutError):
            raise
        except Exception:
            logger.exception("internal error answering %s", request.request_line)
            reply = _error_reply(request, HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", close=True))
        self.answered(request, client, reply, user)
        return reply

    def refused(self, request_line: str, client: str, exc: BadRequest) -> Reply:
        logger.info("%s: refused request %r: %d %s", client, request_line[:100], exc.status, exc.message)
        body = f"{exc.status.value} {exc.status.phrase}: {exc.message}\n".encode()
        reply = Reply(exc.status.value, [("Content-Type", "text/plain; charset=utf-8")], body, close=True)
        self._access_log(client, None, request_line, exc.status.value, len(body))
        method = request_line.partition(" ")[0]
        self.record(RequestRecord(method, request_line.split(" ")[1] if request_line.count(" ") >= 2 else "",
                                  exc.status.value))
        return reply

    def answered(self, request: Request, client: str, reply: Reply, user: str | None) -> None:
        """Log one answered request: the access log (common log format) and :attr:`request_log`."""
        if access_logger.isEnabledFor(logging.INFO):
            sent = 0 if request.method == "HEAD" else reply.content_length()
            self._access_log(client, user, request.request_line, reply.status, sent)
        self.record(RequestRecord(request.method, request.target, reply.status, user))

    @staticmethod
    def _access_log(client: str, user: str | None, request_line: str, status: int, sent: int) -> None:
        """``host - user [date] "request line" status size``, once per answered request."""
        if not access_logger.isEnabledFor(logging.INFO):
            return
        when = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime())
        access_logger.info('%s - %s [%s] "%s" %d %s', client, user or "-", when,
                           request_line.replace('"', "%22") or "-", status, str(sent) if sent else "-")

    # -- the wheelhouse

    def refresh(self) -> None:
        """Re-index after distributions were copied into or removed from the wheelhouse (incremental: the
        index cache vouches for the files it knows)."""
        try:
            with self.index_lock:
                files = self.watch.scan()
                if files != self.watch.files:
                    before = set(self.watch.files)
                    try:
                        result = build_index(self.wheelhouse, base_url=self.config.base_url)
                    except PackageIndexError as exc:  # the pages stay as they were; the next change tries again
                        logger.error("cannot re-index the changed wheelhouse: %s", exc)
                    else:
                        self.statuses = dict(result.statuses)
                        known_files(self.wheelhouse, "", self.config.base_url)  # views derived, as at start
                        logger.info("wheelhouse changed: %d added, %d removed; %d pages written",
                                    len(set(files) - before), len(before - set(files)), len(result.written))
                    self.watch.files = files
                self.watch.stale = False
        finally:
            self.watch.refreshing = False

    def file_entry(self, segments: list[str], target: str) -> _FileEntry:
        """The checked file at ``segments`` (404 when outside the site, hidden, quarantined, the password file)."""
        name = segments[0] if len(segments) == 1 else ""
        hit = self._files.get(name) if name else None
        if hit is not None:
            try:
                if _lstat_key(os.lstat(hit.path)) == hit.key:
                    return hit
            except OSError:
                pass
            self._files.pop(name, None)
        entry = self._checked_file(segments, target)
        if name and entry.path == os.path.join(self._root, name):  # a plain file, no symlink: remembered
            if entry.body is not None:
                self._file_bytes += len(entry.body)
            if len(self._files) >= 8192 or self._file_bytes > _FILE_CACHE_BYTES:
                self._files.clear()
                self._file_bytes = 0 if entry.body is None else len(entry.body)
            self._files[name] = entry
        return entry

    def _checked_file(self, segments: list[str], target: str) -> _FileEntry:
        if any(not seg or seg.startswith(".") for seg in segments):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {target!r}")
        try:  # a name too long for the file system, a file removed meanwhile: not found, like any other
            resolved = self.site_root.joinpath(*segments).resolve()
            if (not resolved.is_relative_to(self.site_root) or not resolved.is_file()
                    or resolved == self._password_path):
                raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {target!r}")
            path = str(resolved)
            st = os.lstat(path)
            body = None
            if st.st_size <= _SMALL_FILE:
                with open(path, "rb") as fh:
                    body = fh.read(_SMALL_FILE + 1)
        except OSError as exc:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {target!r} ({exc.strerror})") from None
        if body is not None and len(body) != st.st_size:
            raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, f"{target!r} is being written; retry")
        if resolved.name.endswith(PROVENANCE_SUFFIX) and not self._linked_provenance(resolved, st, body):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {target!r} (no provenance the index accepted)")
        suffix = ".gz" if resolved.name.endswith(".tar.gz") else resolved.suffix
        return _FileEntry(_lstat_key(st), path, f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
                          _CONTENT_TYPES.get(suffix, "application/octet-stream"), project_of_filename(resolved.name),
                          body)

    def _linked_provenance(self, path: Path, st: os.stat_result, body: bytes | None) -> bool:
        """A provenance file is served only when the pages link it: the index checked exactly this file
        (same size, mtime and inode) against its distribution, or, when the index's record cannot vouch
        for the mtime (a file changed within the file system's clock granularity), these bytes check now.
        A provenance file put there by hand that the index refused, or changed since, is not found."""
        if path.parent != self.site_root:
            return False
        dist = linked_provenance(self.site_root, path.name[: -len(PROVENANCE_SUFFIX)], self.config.base_url)
        if dist is None or dist.provenance is None:
            return False
        if dist.provenance == (st.st_size, st.st_mtime_ns, st.st_ino):
            return True
        if dist.provenance[1] != -1 or (dist.provenance[0], dist.provenance[2]) != (st.st_size, st.st_ino):
            return False
        try:
            if body is None:
                with open(path, "rb") as fh:
                    body = fh.read(MAX_PROVENANCE_SIZE + 1)
            check_provenance(body, dist.filename, dist.sha256)
        except (AttestationError, OSError):
            return False
        return True

    def store_upload(self, filename: str, staged: Path, provenance: bytes | None = None) -> None:
        """Validate an uploaded file (already in a hidden temporary file of the wheelhouse), give it its
        name and update its project's pages (and the project list for a new project) under the lock.

        ``provenance`` (checked PEP 740 provenance) is written beside it first; without it, a provenance
        file left by an earlier upload of the same name is removed (it would describe other bytes).

        The temporary file is removed whatever happens; nothing is listed unless everything passed.
        """
        try:
            with self._validating:  # at most two wheels inflated at once: bounded memory under a burst of uploads
                dist = self._validate_staged(staged, filename)
            os.chmod(staged, 0o644)
            project = project_of_filename(filename)
            status = self.statuses.get(project)
            if status is not None and status.status in ("archived", "quarantined"):
                raise HTTPError(HTTPStatus.FORBIDDEN, f"project {project!r} is {status.status}: it takes no uploads "
                                "(PEP 792)")
            with self.index_lock:  # what runs here is one project's work: no listing of the wheelhouse
                target = self.wheelhouse / filename
                if not self.config.allow_overwrite and (target.exists() or self._claimed(filename, project)):
                    raise HTTPError(HTTPStatus.CONFLICT, f"file already exists: {filename!r}")
                self._place_upload(staged, target, project, dist, provenance)
        finally:
            staged.unlink(missing_ok=True)

    def _place_upload(self, staged: Path, target: Path, project: str, dist: DistFile,
                      provenance: bytes | None) -> None:
        """Give the upload its name and index its project (the caller holds the lock); on failure it is taken
        back out (unless overwriting) and its project's pages are as they were."""
        try:
            _store_provenance(provenance_path(target), provenance)
            os.replace(staged, target)
            build_index(self.wheelhouse, project=project, base_url=self.config.base_url, added=(dist,))
            self.watch.stored(target)
        except (OSError, PackageIndexError) as exc:
            cause = exc if isinstance(exc, OSError) else exc.__cause__
            if not self.config.allow_overwrite:  # listed nowhere: take it back out
                for path in (target, provenance_path(target), target.with_name(target.name + ".metadata")):
                    path.unlink(missing_ok=True)
            if isinstance(cause, OSError):
                raise _storage_error(cause, target.name) from None
            raise

    def _claimed(self, filename: str, project: str) -> bool:
        """Another spelling of the same file (``Foo-1.0...`` vs ``foo-1.0.0...``) exists: one the index knows
        (its cache: every upload, of any worker process), or the server saw in the wheelhouse (its watch: a
        file copied in counts once the server looked at the directory again).  No listing: uploads wait for
        this under the lock."""
        key = _identity(filename)
        names = {*known_files(self.wheelhouse, project, self.config.base_url), *self.watch.names_of(project)}
        return any(_identity(name) == key for name in names if not name.endswith(PROVENANCE_SUFFIX))

    def _validate_staged(self, staged: Path, filename: str) -> DistFile:
        try:
            if filename.endswith(".whl"):  # every member inflates with a good CRC: what installers will need
                check_wheel_archive(staged, filename, max_inflated=_MAX_INFLATE_RATIO * self.config.max_upload_size)
            return inspect_distribution(staged, filename)  # the file name must match its own metadata
        except (PackageIndexError, OSError) as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid distribution {filename!r}: {exc}") from None



def _store_provenance(path: Path, provenance: bytes | None) -> None:
    if provenance is None:
        path.unlink(missing_ok=True)
    else:
        fsutil.write_atomic(path, provenance, skip_same=True)


_ROOT_PAGE = b'<!DOCTYPE html>\n<html><body><a href="simple/">simple/</a></body></html>\n'
_HTML = "text/html; charset=utf-8"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _error_reply(request: Request, exc: HTTPError) -> Reply:
    logger.info("%s %s -> %d %s", request.method, request.target, exc.status, exc.message)
    body = f"{exc.status.value} {exc.status.phrase}: {exc.message}\n".encode()
    return Reply(exc.status.value, [("Content-Type", "text/plain; charset=utf-8"), *exc.headers.items()], body,
                 close=exc.close)


def _segments(target: str) -> list[str]:
    """The path segments of a request target; 400 for ``..``, encoded slashes or NUL bytes."""
    raw = target.partition("?")[0]
    if "%" in raw:
        lowered = raw.lower()
        if "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid path: {raw!r}")
        raw_path = unquote(raw)
    else:
        raw_path = raw
    segments = raw_path.split("/")[1:]
    if any(seg in ("..", ".") or "\\" in seg or "\x00" in seg for seg in segments):
        raise HTTPError(HTTPStatus.BAD_REQUEST, f"invalid path: {raw!r}")
    return segments


class _Get:
    """One GET or HEAD request: a page of the simple API (content negotiation, ETag) or a file."""

    def __init__(self, server: IndexServer, request: Request) -> None:
        self.server, self.request = server, request
        self.source: tuple[str, str, tuple[int, ...]] | None = None  # what the answer was made from

    def answer(self, may_defer: bool) -> Reply | None:
        """The reply; None (only when ``may_defer``) when the wheelhouse changed and must be re-indexed first."""
        segments = _segments(self.request.target)
        if segments == [""]:
            return Reply(200, [("Content-Type", _HTML)], _ROOT_PAGE)
        if segments[0] == "simple":
            watch = self.server.watch
            if may_defer and (watch.changed() or (len(segments) > 1 and watch.project_changed(segments[1]))):
                return None
            return self._simple(segments[1:])
        return self._file(segments)

    def _simple(self, rest: list[str]) -> Reply:
        if not rest:
            raise HTTPError(HTTPStatus.MOVED_PERMANENTLY, "see /simple/", {"Location": "/simple/"})
        if rest == [""]:
            return self._page(self.server.site_root / "simple")
        if len(rest) > 2 or (len(rest) == 2 and rest[1] != "") or not rest[0]:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {self.request.target!r}")
        normalized = normalize_name(rest[0])
        if normalized != rest[0] or len(rest) == 1:
            raise HTTPError(HTTPStatus.MOVED_PERMANENTLY, "normalized name", {"Location": f"/simple/{normalized}/"})
        return self._page(self.server.site_root / "simple" / normalized)

    def _page(self, directory: Path) -> Reply:
        choice = negotiate(self.request.headers.get("accept"))
        if choice is None:
            raise HTTPError(HTTPStatus.NOT_ACCEPTABLE, "supported: application/vnd.pypi.simple.v1+json, "
                            "application/vnd.pypi.simple.v1+html, text/html", {"Vary": "Accept"})
        name = "index.json" if choice == JSON_CONTENT_TYPE else "index.html"
        try:
            body, etag, key = self.server.page(directory / name)
        except OSError:
            raise HTTPError(HTTPStatus.NOT_FOUND, f"no such project here (and no fallback): {self.request.target!r}",
                            {"Vary": "Accept"}) from None
        self.source = ("page", str(directory / name), key)
        headers = [("ETag", etag), ("Vary", "Accept"), ("Cache-Control", "max-age=0, must-revalidate")]
        if _etag_matches(self.request.headers.get("if-none-match"), etag):
            return Reply(HTTPStatus.NOT_MODIFIED.value, headers)
        content_type = choice if choice != "text/html" else _HTML
        return Reply(200, [("Content-Type", content_type), *headers], body)

    def _file(self, segments: list[str]) -> Reply:
        entry = self.server.file_entry(segments, self.request.target)
        status = self.server.statuses.get(entry.project)
        if status is not None and status.status == "quarantined":
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {self.request.target!r}")
        headers = [("Content-Type", entry.content_type), ("ETag", entry.etag)]
        if _etag_matches(self.request.headers.get("if-none-match"), entry.etag):
            return Reply(HTTPStatus.NOT_MODIFIED.value, headers)
        if entry.body is not None:
            if len(segments) == 1:
                self.source = ("file", segments[0], entry.key)
            return Reply(200, headers, entry.body)
        size = entry.key[2]
        if self.request.method == "HEAD":
            return Reply(200, headers, length=size)
        try:
            fd = os.open(entry.path, os.O_RDONLY | _O_NOFOLLOW)
        except OSError:  # removed (or replaced by a symbolic link) since it was checked
            raise HTTPError(HTTPStatus.NOT_FOUND, f"not found: {self.request.target!r}") from None
        st = os.fstat(fd)
        if (st.st_ino, st.st_size) != (entry.key[1], size):
            os.close(fd)
            raise HTTPError(HTTPStatus.SERVICE_UNAVAILABLE, f"{self.request.target!r} changed while opened; retry")
        return Reply(200, headers, file=fd, length=size)


class _Upload:
    """One ``POST`` (twine's legacy upload API), answered on a thread: the body streams from ``channel``."""

    def __init__(self, server: IndexServer, request: Request, channel: Channel) -> None:
        self.server, self.request, self.channel = server, request, channel
        self.headers = request.headers
        self.user: str | None = None
        self.unread = request.content_length

    def read(self, size: int) -> bytes:
        data = self.channel.read(min(size, self.unread))
        self.unread -= len(data)
        return data

    def answer(self) -> Reply:
        try:
            return self._store()
        except HTTPError as exc:
            if self.unread:  # the rest of the body would be read as the next request
                exc.close = True
            raise

    def _store(self) -> Reply:
        if self.request.target.partition("?")[0] not in ("/", "/legacy", "/legacy/"):
            raise HTTPError(HTTPStatus.NOT_FOUND, f"uploads go to / or /legacy/, not {self.request.target!r}",
                            close=True)
        self._content_length()
        denied = self._auth_error()
        if denied is not None:
            if not self.request.expect_continue:
                self._drain()
            raise denied
        if self.request.expect_continue:
            self.channel.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        spool: list[_Spool] = []
        try:
            parts = self._read_form(spool)
            if not spool:
                raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has no 'content' file part with a file name")
            upload = spool[0]
            upload.close()
            filename = parts["content"].filename or ""
            check_upload_filename(filename, _field(parts, "name"), _field(parts, "version"))
            check_digests(parts, upload.sha256.hexdigest(), upload.md5.hexdigest())
            provenance = upload_provenance(parts, filename, upload.sha256.hexdigest(), self.user)
            self.server.store_upload(filename, upload.path, provenance)
        finally:
            for each in spool:
                each.discard()
        logger.info("stored upload %s (%d bytes) from %s", filename, upload.size, self.user or "anonymous")
        return Reply(200, [("Content-Type", "text/plain; charset=utf-8")], b"OK\n")

    def _read_form(self, spool: list[_Spool]) -> dict[str, FormPart]:
        """The form fields; the ``content`` file streams into ``spool`` after its name passed every check
        that needs no other field (nothing is written for a name that could never be stored)."""

        def sink_for(name: str, filename: str) -> PartSink | None:
            if name != "content":
                return None
            if spool:
                raise HTTPError(HTTPStatus.BAD_REQUEST, "upload has more than one 'content' part")
            check_upload_filename(filename, None, None, names_checked=False)
            spool.append(_Spool(self.server.wheelhouse))
            return spool[0]

        try:
            seen = read_multipart(self.read, self.request.content_length, self.headers.get("content-type", ""),
                                  sink_for)
        except TruncatedBody as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"upload cut off: {exc}", close=True) from None
        except FieldTooLarge as exc:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload refused: {exc}", close=True) from None
        except PackageIndexError as exc:
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"malformed multipart body: {exc}", close=True) from None
        except OSError as exc:
            if isinstance(exc, (ConnectionError, TimeoutError)):
                raise
            name = spool[0].path.name if spool else "the upload"
            error = _storage_error(exc, name)
            error.close = True
            raise error from None
        action = _field(seen, ":action")
        if action != "file_upload":
            raise HTTPError(HTTPStatus.BAD_REQUEST, f"unsupported :action {action!r} (only 'file_upload')")
        return seen

    def _content_length(self) -> int:
        if "transfer-encoding" in self.headers:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "chunked uploads are not supported; send Content-Length",
                            close=True)
        if "content-length" not in self.headers:
            raise HTTPError(HTTPStatus.LENGTH_REQUIRED, "missing Content-Length", close=True)
        length, limit = self.request.content_length, self.server.config.max_upload_size
        if length > limit:
            raise HTTPError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"upload of {length} bytes exceeds the limit {limit}",
                            close=True)
        return length

    def _drain(self) -> None:
        while self.unread > 0:
            if not self.read(1 << 20):
                return

    def _auth_error(self) -> HTTPError | None:
        config = self.server.config
        if config.password_file is None:
            if config.allow_anonymous_upload:
                return None
            return HTTPError(HTTPStatus.FORBIDDEN, "uploads are disabled: start the server with --password-file "
                             "(or --allow-anonymous-upload)")
        challenge = {"WWW-Authenticate": 'Basic realm="dynawheel", charset="UTF-8"'}
        credentials = _basic_credentials(self.headers.get("authorization"))
        if credentials is None:
            return HTTPError(HTTPStatus.UNAUTHORIZED, "authentication required", challenge)
        try:
            users = read_password_file(config.password_file)
        except PackageIndexError as exc:
            logger.error("%s", exc)
            return HTTPError(HTTPStatus.INTERNAL_SERVER_ERROR, "password file unreadable")
        if not self.server.passwords.check(users, *credentials):
            return HTTPError(HTTPStatus.UNAUTHORIZED, f"invalid user or password for {credentials[0]!r}", challenge)
        self.user = credentials[0]
        return None


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
    result = build_index(wheelhouse, base_url=config.base_url)
    known_files(wheelhouse, "", config.base_url)  # the cache's views derived now, not by the first upload
    try:
        return IndexServer(wheelhouse, (host, port), config, result.statuses)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PackageIndexError(f"port {port!r} on {host!r} is already in use; pick another with --port") from None
        raise PackageIndexError(f"cannot listen on {host!r} port {port!r}: {exc}") from None


def serve_forever(server: IndexServer, workers: int = 1) -> None:
    """Serve until Ctrl-C or SIGTERM (a :class:`KeyboardInterrupt`; or :meth:`shutdown` from another thread),
    then close the socket.  ``workers`` > 1 forks that many processes in all (POSIX), each serving the same
    listening socket, as a web server's worker processes do; stopping this one stops them."""
    children: list[int] = []
    try:
        for _ in range(workers - 1 if hasattr(os, "fork") else 0):
            pid = os.fork()
            if pid == 0:
                _worker(server)
            children.append(pid)
        server.serve_forever()
    except KeyboardInterrupt:
        logger.info("interrupted, stopping")
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        for pid in children:
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        server.server_close()


def _worker(server: IndexServer) -> NoReturn:
    """A forked worker process: serve until told to stop (SIGTERM, SIGINT) or the parent is gone; never return."""
    server.parent_pid = os.getppid()
    code = 0
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    except BaseException:
        logger.exception("worker %d stopped", os.getpid())
        code = 1
    os._exit(code)


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
