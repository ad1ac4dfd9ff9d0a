"""Static package index: PEP 503 HTML, PEP 691 JSON, PEP 658/714 metadata files.

Layout written by :func:`build_index` (``SITE`` defaults to the wheelhouse)::

    SITE/simple/index.html              project list (PEP 503 + PEP 629 meta tag)
    SITE/simple/index.json              the same list as PEP 691 JSON (api-version 1.3)
    SITE/simple/<normalized>/index.html links ``#sha256=``, ``data-requires-python``, ``data-yanked``,
                                        ``data-core-metadata`` + ``data-dist-info-metadata``
    SITE/simple/<normalized>/index.json the same page as PEP 691 JSON
    FILES/<file>                        the distribution itself
    FILES/<file>.metadata               the wheel's METADATA (PEP 658), byte for byte
    FILES/<file>.provenance             PEP 740 provenance, when the wheelhouse has one for the file
                                        (see :mod:`dynawheel.publish.provenance`); pages link it

``FILES`` is the wheelhouse itself when ``SITE`` is the wheelhouse (nothing is copied),
otherwise ``SITE/files/`` (hard links where the file system allows, copies otherwise).
With ``flat=True`` there is no ``simple/`` level: the pages and the files of a project live
together in ``SITE/<normalized>/``, the layout that ``python -m http.server --directory SITE``
serves to ``pip --index-url http://HOST:PORT/``.

Every output is written atomically (temporary file in the same directory, then
:func:`os.replace`) and only when its bytes change, so re-running after adding a wheel
rewrites only what changed and a reader never sees half a page.  Only the top level of
the wheelhouse is scanned; hidden files (``.*``) and ``*.metadata`` are ignored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Union

from .. import fsutil
from ..errors import PackageIndexError
from .provenance import SUFFIX as PROVENANCE_SUFFIX
from .provenance import provenance_name

if TYPE_CHECKING:
    from email.message import Message

    from packaging.version import Version

# A no-op run (every file as the cache knows it, every page in place) imports nothing to read archives,
# parse metadata or render pages: zipfile, tarfile, email, packaging, html, ... are imported by the
# functions that use them (they cost more than the rest of such a run).

logger = logging.getLogger(__name__)

REPOSITORY_VERSION = "1.3"  # PEP 700 (versions, size, upload-time), PEP 740 (provenance)
STATUS_REPOSITORY_VERSION = "1.4"  # pages with a PEP 792 project status
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
MAX_METADATA_SIZE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024


@functools.cache
def zip_errors() -> tuple[type[BaseException], ...]:
    """What the zip, tar, deflate, bzip2 and lzma layers raise on damaged archives (bad CRC, junk streams,
    unsupported methods, the encryption flag, truncation, non-UTF-8 names)."""
    import lzma
    import struct
    import tarfile
    import zipfile
    import zlib

    return (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, EOFError, ValueError, NotImplementedError,
            RuntimeError, OSError, zlib.error, lzma.LZMAError, struct.error, UnicodeError)


Kind = Literal["wheel", "sdist"]
JSONValue = Union[str, int, bool, None, list["JSONValue"], dict[str, "JSONValue"]]


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name (``namespace.mod`` -> ``namespace-mod``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


STATUSES = ("active", "archived", "quarantined", "deprecated")  # PEP 792
_CLOSED = ("archived", "quarantined")  # no uploads (PEP 792 index semantics)


@dataclass(frozen=True)
class ProjectStatus:
    """A PEP 792 project status marker (``active`` when a project has none)."""

    status: str
    reason: str | None = None

    @classmethod
    def of(cls, status: object, reason: object = None) -> ProjectStatus:
        if status not in STATUSES:
            raise PackageIndexError(f"not a PEP 792 project status ({', '.join(STATUSES)}): {status!r}")
        return cls(str(status), None if reason is None else str(reason))


ACTIVE = ProjectStatus("active")


@dataclass(frozen=True)
class DistFile:
    """One distribution file found in the wheelhouse."""

    filename: str
    directory: Path  # where the file is (``path`` is made from it when asked: 6,000 Paths cost 20 ms)
    project: str  # the name as METADATA / PKG-INFO spells it
    normalized: str
    version: str
    kind: Kind
    sha256: str
    size: int
    requires_python: str | None
    metadata: bytes | None = field(default=None, repr=False)  # wheels only (PEP 658); None when from the cache
    metadata_sha256: str | None = None  # wheels only
    tags: str = ""  # sorted wheel tags joined by '.', or 'sdist'
    canonical_version: str = ""
    stat_key: tuple[int, int, int] = (0, 0, 0)  # size, mtime_ns, inode when inspected
    upload_time_ns: int = 0  # when the file got into the wheelhouse (its mtime): PEP 700 upload-time
    provenance: tuple[int, int, int] | None = None  # size, mtime_ns, inode of FILE.provenance when it checked

    def __post_init__(self) -> None:
        import hashlib

        from packaging.utils import canonicalize_version, parse_wheel_filename

        if self.metadata is not None and self.metadata_sha256 is None:
            object.__setattr__(self, "metadata_sha256", hashlib.sha256(self.metadata).hexdigest())
        if not self.tags:
            tags = parse_wheel_filename(self.filename)[3] if self.kind == "wheel" else ()
            object.__setattr__(self, "tags", ".".join(sorted(map(str, tags))) if tags else "sdist")
        if not self.canonical_version:
            object.__setattr__(self, "canonical_version", canonicalize_version(self.version))

    @functools.cached_property
    def path(self) -> Path:
        return self.directory / self.filename

    @property
    def identity(self) -> tuple[str, str, str]:
        """What the file claims to be: project, version, and tags (or ``sdist``)."""
        return (self.normalized, self.canonical_version, self.tags)


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Conflict:
    project: str
    version: str
    files: tuple[Path, ...]
    reason: str


@dataclass(frozen=True)
class IndexResult:
    """What :func:`build_index` did."""

    site: Path
    simple: Path  # the directory whose URL is the index URL
    flat: bool
    files: tuple[DistFile, ...]
    projects: tuple[str, ...]  # normalized names
    written: tuple[Path, ...]
    removed: tuple[Path, ...]
    skipped: tuple[Skipped, ...]
    conflicts: tuple[Conflict, ...]
    unknown_yanked: tuple[str, ...] = ()
    statuses: Mapping[str, ProjectStatus] = field(default_factory=dict)  # PEP 792, by normalized name

    @property
    def ok(self) -> bool:
        return not (self.skipped or self.conflicts or self.unknown_yanked)


# ---------------------------------------------------------------- reading distributions

_cache: dict[tuple[str, int, int, int], DistFile] = {}
_cache_lock = threading.Lock()


def inspect_distribution(path: Path, filename: str | None = None) -> DistFile:
    """Read a wheel or sdist: name, version, hash, requires-python, METADATA.

    ``filename`` is the name the file is published under (default: its own name; an upload
    is inspected in a temporary file before it gets its name).
    Raises :class:`PackageIndexError` naming the file when it is not a valid
    distribution (bad name, not a zip/tar, no or inconsistent metadata).
    """
    name = path.name if filename is None else filename
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit.filename == name:
        return hit
    dist = _inspect_uncached(path, st, name)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = dist
    return dist


_WHOLE = 8 * 1024 * 1024  # a file up to this size is read once: hashed and unzipped from the same bytes


def _inspect_uncached(path: Path, st: os.stat_result, name: str) -> DistFile:
    """The distribution in ``path`` (``st`` its stat), opened once: its sha256 and its metadata."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename
    from packaging.version import InvalidVersion

    tags = "sdist"
    try:
        if name.endswith(".whl"):
            kind: Kind = "wheel"
            fname, fversion, _build, parsed_tags = parse_wheel_filename(name)
            tags = ".".join(sorted(map(str, parsed_tags)))
        elif name.endswith(".tar.gz"):
            kind = "sdist"
            fname, fversion = parse_sdist_filename(name)
        else:
            raise PackageIndexError(f"not a wheel (.whl) or sdist (.tar.gz): {name!r}")
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise PackageIndexError(f"not a valid {kind} file name ({exc}): {name!r}") from None
    with path.open("rb") as fh:
        size, sha256, source = _hashed(fh, st.st_size)
        if kind == "wheel":
            meta, metadata = _read_wheel_metadata(source, str(fname), name)
        else:
            meta, metadata = _read_sdist_pkg_info(source, name), None
    project, version, canonical = _check_claims(name, meta, str(fname), fversion)
    return DistFile(
        filename=name, directory=path.parent, project=project, normalized=normalize_name(project),
        version=version, kind=kind, sha256=sha256, size=size, requires_python=_header(meta, "Requires-Python"),
        metadata=metadata, tags=tags, canonical_version=canonical,
        stat_key=(st.st_size, st.st_mtime_ns, st.st_ino), upload_time_ns=st.st_mtime_ns,
    )


def _hashed(fh: BinaryIO, size: int) -> tuple[int, str, BinaryIO]:
    """Size and sha256 of an open file, and where to read its archive from: the bytes read (a small
    file: one read) or the file itself (a big one: hashed in chunks, then read again where needed)."""
    import hashlib
    import io

    if size <= _WHOLE:
        data = fh.read()
        return len(data), hashlib.sha256(data).hexdigest(), io.BytesIO(data)
    digest = fsutil.sha256_hex(fh, _CHUNK)
    size = fh.tell()
    fh.seek(0)
    return size, digest, fh


def _check_claims(name: str, meta: Message, fname: str, fversion: Version) -> tuple[str, str, str]:
    """Name and version as the metadata spells them (and the version canonical), when they are the
    file name's."""
    from packaging.utils import canonicalize_name, canonicalize_version
    from packaging.version import InvalidVersion, Version

    from ..wheel.tags import is_valid_name

    project, version = _header(meta, "Name"), _header(meta, "Version")
    if project is None or version is None or not is_valid_name(project):
        raise PackageIndexError(f"metadata has no valid Name/Version (Name={project!r}, Version={version!r}): {name!r}")
    try:
        parsed = Version(version)
        same_version = parsed == fversion
    except InvalidVersion:
        raise PackageIndexError(f"metadata Version is not PEP 440 ({version!r}): {name!r}") from None
    if canonicalize_name(project) != canonicalize_name(fname) or not same_version:
        raise PackageIndexError(
            f"file name says {fname!r} {str(fversion)!r} but metadata says {project!r} {version!r}: {name!r}"
        )
    return project, version, canonicalize_version(parsed)


def _header(meta: Message, key: str) -> str | None:
    value = meta.get(key)
    return None if value is None else str(value).strip() or None


def _parse_metadata(data: bytes, what: str) -> Message:
    import email.parser

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageIndexError(f"metadata is not UTF-8: {what!r}") from None
    return email.parser.Parser().parsestr(text, headersonly=True)


def _read_wheel_metadata(path: Path | BinaryIO, fname: str, name: str) -> tuple[Message, bytes]:
    """METADATA of a wheel, read from the zip without extracting anything.

    Only the entry ``<name>-<version>.dist-info/METADATA`` at the top level is read; no
    archive path is ever used to touch the file system.
    """
    import zipfile

    from packaging.utils import canonicalize_name

    member = "(central directory)"
    try:
        with zipfile.ZipFile(path) as zf:
            want = canonicalize_name(fname)
            candidates = [i for i in zf.infolist()
                          if _is_top_metadata(i.filename) and canonicalize_name(i.filename.split("-", 1)[0]) == want]
            if len(candidates) != 1:
                raise PackageIndexError(
                    f"wheel has {len(candidates)} matching .dist-info/METADATA entries: {name!r}")
            info = candidates[0]
            member = info.filename
            if info.file_size > MAX_METADATA_SIZE:
                raise PackageIndexError(f"{member} is larger than {MAX_METADATA_SIZE} bytes: {name!r}")
            with zf.open(info) as fh:
                data = fh.read(MAX_METADATA_SIZE + 1)
            if len(data) > MAX_METADATA_SIZE:
                raise PackageIndexError(f"{member} inflates to more than {MAX_METADATA_SIZE} bytes: {name!r}")
    except PackageIndexError:
        raise
    except zip_errors() as exc:
        raise PackageIndexError(f"corrupted wheel, member {member!r} ({_describe(exc)}): {name!r}") from None
    return _parse_metadata(data, name), data


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{exc.__class__.__name__}: {text[:200]}" if text else exc.__class__.__name__


def check_wheel_archive(path: Path, name: str, *, max_inflated: int) -> None:
    """Inflate every member of a wheel (CRC checked by :mod:`zipfile`) without keeping any of it.

    For uploads: a wheel that any installer would reject is refused before it is listed.
    Raises :class:`PackageIndexError` naming the member; the work is bounded by ``max_inflated`` bytes.
    """
    import zipfile

    member = "(central directory)"
    total = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                member = info.filename
                if not member or member.startswith("/") or "\\" in member or ".." in member.split("/"):
                    raise PackageIndexError(f"unsafe member name {member!r} in wheel {name!r}")
                if info.flag_bits & 0x1:
                    raise PackageIndexError(f"member {member!r} is encrypted: {name!r}")
                with zf.open(info) as fh:
                    while chunk := fh.read(_CHUNK):
                        total += len(chunk)
                        if total > max_inflated:
                            raise PackageIndexError(
                                f"wheel inflates to more than {max_inflated} bytes (at {member!r}): {name!r}")
    except PackageIndexError:
        raise
    except zip_errors() as exc:
        raise PackageIndexError(f"corrupted wheel, member {member!r} ({_describe(exc)}): {name!r}") from None


def _is_top_metadata(arcname: str) -> bool:
    parts = arcname.split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA"


def _read_sdist_pkg_info(source: BinaryIO, name: str) -> Message:
    import tarfile

    stem = name[: -len(".tar.gz")]
    try:
        with tarfile.open(fileobj=source, mode="r:gz") as tf:
            for member in tf:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    if member.size > MAX_METADATA_SIZE:
                        break
                    fh = tf.extractfile(member)
                    if fh is not None:
                        return _parse_metadata(fh.read(MAX_METADATA_SIZE), name)
    except PackageIndexError:
        raise
    except zip_errors() as exc:
        raise PackageIndexError(f"corrupted sdist ({_describe(exc)}): {name!r}") from None
    raise PackageIndexError(f"sdist has no top-level PKG-INFO (expected {stem + '/PKG-INFO'!r}): {name!r}")


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return fsutil.sha256_hex(fh, _CHUNK)


def scan_wheelhouse(wheelhouse: Path, cache: SiteCache | None = None,
                    only: Callable[[str], bool] | None = None) -> tuple[list[DistFile], list[Skipped]]:
    """Inspect every file at the top level of ``wheelhouse``; bad ones are skipped with a reason.

    A file whose name, size, modification time and inode match an entry of ``cache`` is taken
    from it; the others are read and hashed on worker threads.  ``only`` limits the scan to
    the file names it accepts.
    """
    if not wheelhouse.is_dir():
        raise PackageIndexError(f"wheelhouse is not a directory: {str(wheelhouse)!r}")
    dists: list[DistFile] = []
    skipped: list[Skipped] = []
    todo: list[tuple[Path, os.stat_result]] = []
    provenances: dict[str, tuple[int, int, int]] = {}
    known = cache.files if cache is not None else {}
    with os.scandir(wheelhouse) as listing:
        for entry in listing:
            name = entry.name
            if name.startswith(".") or name.endswith(".metadata") or (only is not None and not only(name)):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError as exc:
                skipped.append(Skipped(Path(entry.path), str(exc)))
                continue
            if name.endswith(PROVENANCE_SUFFIX):
                provenances[name[: -len(PROVENANCE_SUFFIX)]] = (st.st_size, st.st_mtime_ns, st.st_ino)
                continue
            hit = known.get(name)
            if hit is not None and hit.stat_key == (st.st_size, st.st_mtime_ns, st.st_ino):
                dists.append(hit)  # its path is wheelhouse/name: the cache is per wheelhouse (layout key)
            else:
                todo.append((Path(entry.path), st))
    return _scanned(dists, skipped, todo, provenances)


def _scanned(dists: list[DistFile], skipped: list[Skipped], todo: list[tuple[Path, os.stat_result]],
             provenances: dict[str, tuple[int, int, int]]) -> tuple[list[DistFile], list[Skipped]]:
    """A scan's outcome: ``dists`` (from the cache) and the files of ``todo`` inspected, each with the
    provenance file found beside it, in name order."""
    for path, outcome in _inspect_many(sorted(todo, key=lambda item: item[0].name)):
        if isinstance(outcome, DistFile):
            dists.append(outcome)
        else:
            logger.info("skipped %s: %s", path.name, outcome)
            skipped.append(Skipped(path, outcome))
    if provenances or any(d.provenance is not None for d in dists):
        dists = [_with_provenance(d, provenances.get(d.filename), skipped) for d in dists]
    dists.sort(key=lambda d: d.filename)
    skipped.sort(key=lambda s: s.path.name)
    return dists, skipped


def _with_provenance(dist: DistFile, found: tuple[int, int, int] | None, skipped: list[Skipped]) -> DistFile:
    """``dist`` with the provenance file beside it, if that file attests exactly this file (it is read and
    checked only when it changed since the cache vouched for it); a provenance file that does not check
    is not linked (never a provenance the index cannot stand behind) and is reported."""
    from .provenance import MAX_PROVENANCE_SIZE, AttestationError, check_provenance

    if found == dist.provenance:
        return dist
    if found is not None:
        path = dist.directory / provenance_name(dist.filename)
        try:
            with path.open("rb") as fh:
                count = check_provenance(fh.read(MAX_PROVENANCE_SIZE + 1), dist.filename, dist.sha256)
            logger.info("provenance of %s: %d attestations", dist.filename, count)
        except (AttestationError, OSError) as exc:
            logger.info("skipped %s: %s", path.name, exc)
            skipped.append(Skipped(path, f"provenance does not check against {dist.filename!r}: {exc}"))
            found = None
    return dataclasses.replace(dist, provenance=found) if found != dist.provenance else dist


def _inspect_one(item: tuple[Path, os.stat_result]) -> DistFile | str:
    try:
        return _inspect_uncached(item[0], item[1], item[0].name)
    except (PackageIndexError, OSError) as exc:
        return str(exc)


def _inspect_many(items: list[tuple[Path, os.stat_result]]) -> list[tuple[Path, DistFile | str]]:
    """Inspect files on worker threads (hashing and inflating release the GIL)."""
    if len(items) < 4:
        return [(item[0], _inspect_one(item)) for item in items]
    import concurrent.futures

    workers = min(8, (os.cpu_count() or 1) + 2, len(items))
    with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="dynawheel-index") as pool:
        return list(zip((item[0] for item in items), pool.map(_inspect_one, items)))


# ---------------------------------------------------------------- the cache


CACHE_NAME = ".dynawheel-index-cache.jsonl"
_CACHE_FORMAT = 4  # 3: provenance (pages became api-version 1.3: old sites are rewritten once); 4: array lines
_RACY_NS = 2_000_000_000  # file times are coarse (a few ms): a file changed this recently is not vouched for


@dataclass
class SiteCache:
    """What the last run knew: inspected files (by name) and what the pages were written from.

    Stored as JSON lines in ``SITE/.dynawheel-index-cache.jsonl``: a header, then one line per
    file (a compact JSON array; ``[name]`` alone for a file that is gone); a later line for the
    same name replaces an earlier one (``serve`` appends).  It is never trusted blindly: an entry
    counts only while the file's size, mtime and inode match, and a cache that does not parse, or
    was written for another layout, is ignored and rebuilt.
    """

    layout: str
    files: dict[str, DistFile] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # file names on the pages
    yanked: dict[str, str] = field(default_factory=dict)
    statuses: dict[str, ProjectStatus] = field(default_factory=dict)
    lines: int = 0  # file lines in the cache file (appended ones included): it is rewritten when they pile up
    _views: _Views | None = field(default=None, repr=False, compare=False)

    def page_inputs(self, names: Iterable[str]) -> list[tuple[str, str, str | None, int, bool]]:
        return sorted(_page_input(self.files[n], self.yanked) for n in names if n in self.files)

    @property
    def views(self) -> _Views:
        """The files by project and the project list, derived once (a long-running process keeps them with
        the cache it remembers, and an upload updates them for its project only)."""
        if self._views is None:
            self._views = _Views.of(self)
        return self._views


@dataclass(frozen=True)
class _Views:
    """What a :class:`SiteCache` implies for the pages: every known file name by project (listed or not),
    and the project list of the root pages, rendered entry by entry in page order."""

    by_project: dict[str, tuple[str, ...]]  # normalized -> every file name the cache knows
    names: dict[str, str]  # normalized -> display name, for the projects with listed files
    order: list[str]  # sorted(names)
    links: list[str]  # the HTML link of each project, in that order
    entries: list[str]  # the JSON entry of each project, in that order

    @classmethod
    def of(cls, cache: SiteCache) -> _Views:
        by_project: dict[str, list[str]] = {}
        for name, dist in cache.files.items():
            by_project.setdefault(dist.normalized, []).append(name)
        names = _display_names(_group(cache.files[n] for n in cache.listed))
        order = sorted(names)
        links, entries = map(list, zip(*(_root_entry(n, names[n]) for n in order))) if order else ([], [])
        return cls({k: tuple(sorted(v)) for k, v in by_project.items()}, names, order, links, entries)

    def updated(self, known: Mapping[str, Iterable[str]], shown: Mapping[str, str | None]) -> _Views:
        """A copy with new known file names for some projects and their new display names (None: not
        listed); each project is put into (or taken out of) the project list where it belongs."""
        import bisect

        by_project, names = dict(self.by_project), dict(self.names)
        order, links, entries = list(self.order), list(self.links), list(self.entries)
        for norm, files in known.items():
            by_project[norm] = tuple(sorted(files))
            if not by_project[norm]:
                del by_project[norm]
        for norm, display in shown.items():
            at = bisect.bisect_left(order, norm)
            there = at < len(order) and order[at] == norm
            if display is None:
                if there:
                    del order[at], links[at], entries[at], names[norm]
                continue
            link, entry = _root_entry(norm, display)
            if there:
                links[at], entries[at] = link, entry
            else:
                order.insert(at, norm)
                links.insert(at, link)
                entries.insert(at, entry)
            names[norm] = display
        return _Views(by_project, names, order, links, entries)

    def root_pages(self) -> tuple[bytes, bytes]:
        return _root_pages_of(self.links, self.entries)


def _page_input(dist: DistFile, yanked: Mapping[str, str]) -> tuple[str, str, str | None, int, bool]:
    return (dist.filename, dist.sha256, yanked.get(dist.filename), dist.upload_time_ns, dist.provenance is not None)


def _layout_key(layout: _Layout, wheelhouse: Path) -> str:
    base = [] if layout.base_url is None else [layout.base_url]  # pages differ per base URL
    return json.dumps([_CACHE_FORMAT, str(wheelhouse.resolve()), str(layout.site.resolve()), layout.flat,
                       layout.in_place, *base])


def _vouched(dist: DistFile, now_ns: int) -> DistFile:
    """``dist`` as the cache may keep it: a file changed so recently that a change within the file
    system's clock granularity would not show in its mtime gets an mtime that never matches."""
    size, mtime_ns, inode = dist.stat_key
    if dist.provenance is not None and now_ns - dist.provenance[1] < _RACY_NS:
        dist = dataclasses.replace(dist, provenance=(dist.provenance[0], -1, dist.provenance[2]))
    if now_ns - mtime_ns < _RACY_NS:
        return dataclasses.replace(dist, metadata=None, stat_key=(size, -1, inode))
    return dist


# One line per file: a JSON array, in this order (the restoring code unpacks it by position).
_ENTRY_TYPES: tuple[Any, ...] = (
    str, str, str, str, str, str, str, str, int,  # filename, project, normalized, version, canonical version,
    (str, type(None)), (str, type(None)),          # kind, tags, sha256, size; requires-python, metadata sha256
    int, int, int, int, bool, (list, type(None)),  # size, mtime_ns, inode; upload-time, listed; provenance stat
)


def _entry_json(dist: DistFile, listed: bool) -> str:
    size, mtime_ns, inode = dist.stat_key
    return json.dumps([
        dist.filename, dist.project, dist.normalized, dist.version, dist.canonical_version, dist.kind, dist.tags,
        dist.sha256, dist.size, dist.requires_python, dist.metadata_sha256, size, mtime_ns, inode,
        dist.upload_time_ns, listed, None if dist.provenance is None else list(dist.provenance),
    ], separators=(",", ":"))


def _entry_from(row: list[Any], wheelhouse: Path) -> tuple[DistFile, bool]:
    """A cache line back as the DistFile it was written from, and whether it was listed.

    Every value's type is checked (a damaged cache raises ValueError and is rebuilt); the DistFile is
    then filled in directly, as :mod:`copy` and :mod:`pickle` restore an object: its values were checked
    when the file was read, and running ``__init__`` again costs more than the rest of a no-op run.
    """
    if (type(row) is not list or len(row) != len(_ENTRY_TYPES)
            or not all(map(isinstance, row, _ENTRY_TYPES)) or row[5] not in ("wheel", "sdist")):
        raise ValueError(f"not a cache entry: {str(row)[:200]}")
    name, project, normalized, version, cv, kind, tags, sha256, size, rp, mh, st_size, mtime, ino, ut, listed, pv \
        = row
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"file name {name!r}")
    if pv is not None and (len(pv) != 3 or not all(type(x) is int for x in pv)):
        raise ValueError("provenance stat")
    dist = object.__new__(DistFile)
    vars(dist).update(
        filename=name, directory=wheelhouse, project=project, normalized=normalized, version=version, kind=kind,
        sha256=sha256, size=size, requires_python=rp, metadata=None, metadata_sha256=mh, tags=tags,
        canonical_version=cv, stat_key=(st_size, mtime, ino), upload_time_ns=ut,
        provenance=None if pv is None else (pv[0], pv[1], pv[2]),
    )
    return dist, listed


# the cache last read or written per site, with the bytes of its file then: a long-running process
# (serve) parses the file again only when someone else changed it (bytes compared, not timestamps)
_memo: dict[str, tuple[bytes, SiteCache]] = {}
_memo_lock = threading.Lock()


def _read_cache_bytes(site: Path) -> bytes | None:
    try:
        with (site / CACHE_NAME).open("rb") as fh:
            return fh.read()
    except OSError:
        return None


def _remember(site: Path, cache: SiteCache, data: bytes | None = None) -> None:
    data = _read_cache_bytes(site) if data is None else data
    with _memo_lock:
        if data is None:
            _memo.pop(str(site.resolve()), None)
        else:
            _memo[str(site.resolve())] = (data, cache)


def load_cache(site: Path, wheelhouse: Path, layout_key: str) -> SiteCache | None:
    """The cache of ``site``, or None when there is none or it cannot be used (then the run rebuilds it)."""
    data = _read_cache_bytes(site)
    if data is None:
        return None
    with _memo_lock:
        memo = _memo.get(str(site.resolve()))
    if memo is not None and memo[0] == data and memo[1].layout == layout_key:
        return memo[1]
    cache = None
    if (memo is not None and memo[1].layout == layout_key and len(data) > len(memo[0]) and data.endswith(b"\n")
            and data.startswith(memo[0])):  # lines appended since (another worker process's uploads)
        cache = _with_lines(memo[1], data[len(memo[0]):], wheelhouse)
    if cache is None:
        cache = _parse_cache(site / CACHE_NAME, data, wheelhouse, layout_key)
    if cache is not None:
        _remember(site, cache, data)
    return cache


def _with_lines(prev: SiteCache, tail: bytes, wheelhouse: Path) -> SiteCache | None:
    """``prev`` with whole lines appended to its file applied (its views updated for their projects only);
    None when one does not parse (then the file is read whole)."""
    cache = SiteCache(prev.layout, dict(prev.files), set(prev.listed), prev.yanked, prev.statuses, prev.lines)
    touched: dict[str, set[str]] = {}  # project -> the names of its files the lines name
    try:
        for line in tail.splitlines():
            row = json.loads(line)
            name = row[0] if type(row) is list and row and type(row[0]) is str else ""
            if name in cache.files:  # the project the file had, and (below) the one it has now
                touched.setdefault(cache.files[name].normalized, set()).add(name)
            _restore_one(row, wheelhouse, cache)
            if name in cache.files:
                touched.setdefault(cache.files[name].normalized, set()).add(name)
            cache.lines += 1
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    if prev._views is not None:
        known, shown = {}, {}
        for norm, names in touched.items():
            names |= set(prev._views.by_project.get(norm, ()))
            known[norm] = [n for n in names if n in cache.files and cache.files[n].normalized == norm]
            group = [cache.files[n] for n in known[norm] if n in cache.listed]
            shown[norm] = max(group, key=lambda d: d.filename).project if group else None
        cache._views = prev._views.updated(known, shown)
    return cache


def _parse_cache(path: Path, data: bytes, wheelhouse: Path, layout_key: str) -> SiteCache | None:
    lines = data.splitlines()
    try:
        rows = json.loads(b"[" + b",".join(lines[1:]) + b"]") if len(lines) > 1 else []  # one call: fast
    except ValueError:
        rows = None  # a torn or damaged line: parse line by line below
    try:
        header = json.loads(lines[0])
        if header.get("format") != _CACHE_FORMAT or header.get("layout") != layout_key:
            logger.info("index cache %s is for another layout or format: rebuilding it", path)
            return None
        cache = SiteCache(layout_key, yanked={str(k): str(v) for k, v in dict(header["yanked"]).items()},
                          statuses={str(k): ProjectStatus.of(v[0], v[1]) for k, v in dict(header["status"]).items()})
        cache.lines = len(lines) - 1
        if rows is not None and _restore_all(rows, wheelhouse, cache):
            return cache
        for number, line in enumerate(lines[1:], 2):
            try:
                _restore_one(json.loads(line), wheelhouse, cache)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
                if number == len(lines):  # a torn last line (a writer was killed): everything before it holds
                    logger.info("index cache %s: ignoring a torn last line (%s)", path, exc)
                    break
                raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, PackageIndexError) as exc:
        logger.warning("index cache %s is corrupt (%s): rebuilding it", path, _describe(exc))
        return None
    return cache


def _restore_all(rows: list[Any], wheelhouse: Path, cache: SiteCache) -> bool:
    """Fill ``cache`` from every line at once (the common case); False when a line is bad (then the
    lines are taken one by one, so that a torn last line costs only itself)."""
    try:
        for row in rows:
            _restore_one(row, wheelhouse, cache)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        cache.files.clear()
        cache.listed.clear()
        return False
    return True


def _restore_one(row: Any, wheelhouse: Path, cache: SiteCache) -> None:
    if type(row) is list and len(row) == 1 and type(row[0]) is str:
        cache.files.pop(row[0], None)
        cache.listed.discard(row[0])
        return
    dist, on_page = _entry_from(row, wheelhouse)
    cache.files[dist.filename] = dist
    (cache.listed.add if on_page else cache.listed.discard)(dist.filename)


def save_cache(site: Path, cache: SiteCache) -> None:
    now = time.time_ns()
    cache = dataclasses.replace(cache, files={n: _vouched(d, now) for n, d in cache.files.items()},
                                lines=len(cache.files))
    marks = {name: [mark.status, mark.reason] for name, mark in cache.statuses.items()}
    lines = [json.dumps({"format": _CACHE_FORMAT, "layout": cache.layout, "yanked": cache.yanked, "status": marks},
                        sort_keys=True)]
    lines += [_entry_json(d, d.filename in cache.listed) for _n, d in sorted(cache.files.items())]
    data = ("\n".join(lines) + "\n").encode()
    fsutil.write_atomic(site / CACHE_NAME, data, 0o644)
    _remember(site, cache, data)


def append_cache(site: Path, entries: Iterable[tuple[DistFile, bool]], gone: Iterable[str] = ()) -> bytes:
    """Add lines for changed and removed files to the cache (one ``write``); the caller holds the site's lock.
    Returns the bytes appended."""
    lines = [_entry_json(dist, listed) for dist, listed in entries]
    lines += [json.dumps([name]) for name in gone]
    data = "".join(line + "\n" for line in lines).encode()
    fd = os.open(site / CACHE_NAME, os.O_WRONLY | os.O_APPEND)
    try:
        size = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, f"short write appending to {str(site / CACHE_NAME)!r}")
        except OSError:  # a full disk, a file size limit: no torn line left behind
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    return data


def find_conflicts(dists: Iterable[DistFile]) -> tuple[list[DistFile], list[Conflict]]:
    """Drop files that claim the same project, version and tags with different content."""
    groups: dict[tuple[str, str, str], list[DistFile]] = {}
    for dist in dists:
        groups.setdefault((dist.normalized, dist.canonical_version, dist.tags), []).append(dist)
    kept: list[DistFile] = []
    conflicts: list[Conflict] = []
    for (project, version, tags), group in sorted(item for item in groups.items() if len(item[1]) > 1):
        if len({d.sha256 for d in group}) > 1:
            files = tuple(sorted(d.path for d in group))
            reason = f"{len(group)} files claim {project} {version} ({tags}) with different content"
            logger.info("conflict: %s: %s", reason, [p.name for p in files])
            conflicts.append(Conflict(project, version, files, reason))
        else:
            kept.extend(group)
    kept += (group[0] for group in groups.values() if len(group) == 1)
    return sorted(kept, key=lambda d: d.filename), conflicts


# ---------------------------------------------------------------- layout and pages


@dataclass(frozen=True)
class _Layout:
    site: Path
    simple: Path
    flat: bool
    in_place: bool  # files stay in the wheelhouse (site == wheelhouse, not flat)
    base_url: str | None = None  # the site's public URL (for PEP 740 provenance URLs), from check_base_url

    def file_dir(self, dist: DistFile) -> Path:
        if self.flat:
            return self.simple / dist.normalized
        return dist.directory if self.in_place else self._files

    @functools.cached_property
    def _files(self) -> Path:
        return self.site / "files"

    def href(self, dist: DistFile) -> str:
        from urllib.parse import quote

        if self.flat:
            return quote(dist.filename)  # the page and the file are in the same directory
        return _dir_href(self.file_dir(dist), self.simple) + quote(dist.filename)

    def provenance_url(self, dist: DistFile, href: str) -> str | None:
        """Where the file's PEP 740 provenance is: absolute under ``base_url``, else relative like ``href``."""
        from urllib.parse import quote

        if dist.provenance is None:
            return None
        if self.base_url is None:
            return href + PROVENANCE_SUFFIX
        rel = os.path.relpath(self.file_dir(dist) / provenance_name(dist.filename), self.site)
        return self.base_url + "/".join(quote(part) for part in Path(rel).parts)


@functools.lru_cache(maxsize=64)
def _dir_href(directory: Path, simple: Path) -> str:
    """The relative URL of ``directory`` seen from a project page (in ``simple/<project>/``), with a trailing
    ``/``: the same for every project, as ``directory`` is not under ``simple/`` (not flat)."""
    from urllib.parse import quote

    return "".join(quote(part) + "/" for part in Path(os.path.relpath(directory, simple / "-")).parts)


_LOOPBACK = ("localhost", "127.0.0.1", "::1")


def check_base_url(url: str) -> str:
    """A site's public URL for provenance links, ending in ``/``.  PEP 740 wants fully qualified URLs on a
    secure origin: ``https://``, or ``http://`` on loopback (``localhost``, ``127.*``, ``[::1]``)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and (host in _LOOPBACK or host.endswith(".localhost") or host.startswith("127.")))
    if not host or not secure or parts.query or parts.fragment or parts.username or parts.password:
        raise PackageIndexError(f"base URL must be https://HOST/[PATH] (http only on loopback), no query, "
                                f"fragment or credentials: {url!r}")
    return url if url.endswith("/") else url + "/"


def _page_html(title: str, links: Iterable[str], status: ProjectStatus | None = None) -> bytes:
    import html

    body = "\n".join(f"    {link}<br>" for link in links)
    marks = ""
    if status is not None:
        marks = f'    <meta name="pypi:project-status" content="{status.status}">\n'
        if status.reason is not None:
            marks += f'    <meta name="pypi:project-status-reason" content="{html.escape(status.reason)}">\n'
    version = REPOSITORY_VERSION if status is None else STATUS_REPOSITORY_VERSION
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{version}">\n{marks}'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    ).encode()


_encode_scalar = json.JSONEncoder().encode  # one value at a time, by the C encoder


def _json_bytes(doc: Mapping[str, JSONValue]) -> bytes:
    """``json.dumps(doc, indent=1, sort_keys=True) + "\\n"``, byte for byte (tests/test_index.py holds it to
    that), 2-3x faster: with ``indent`` json.dumps takes its pure-Python encoder for everything, here
    only the layout is Python and each string or number is the C encoder's."""
    out: list[str] = []
    _dump_indented(doc, "\n", out)
    out.append("\n")
    return "".join(out).encode()


def _dump_indented(value: JSONValue | Mapping[str, JSONValue], pad: str, out: list[str]) -> None:
    if type(value) is str:
        out.append(_encode_scalar(value))
    elif isinstance(value, Mapping):
        inner, sep = pad + " ", "{" + pad + " "
        for key in sorted(value):
            out += (sep, _encode_scalar(key), ": ")
            _dump_indented(value[key], inner, out)
            sep = "," + inner
        out.append(pad + "}" if value else "{}")
    elif isinstance(value, list):
        inner, sep = pad + " ", "[" + pad + " "
        for item in value:
            out.append(sep)
            _dump_indented(item, inner, out)
            sep = "," + inner
        out.append(pad + "]" if value else "[]")
    else:
        out.append(_encode_scalar(value))


def root_pages(projects: Mapping[str, str]) -> tuple[bytes, bytes]:
    """HTML and PEP 691 JSON of the project list; ``projects`` maps normalized -> display name."""
    items = [_root_entry(norm, name) for norm, name in sorted(projects.items())]
    return _root_pages_of([link for link, _ in items], [entry for _, entry in items])


def _root_entry(normalized: str, name: str) -> tuple[str, str]:
    """One project of the project list: its HTML link, and its JSON entry as :func:`_json_bytes` lays out
    ``{"name": name}`` in the list (tests hold the pages to ``json.dumps``' bytes)."""
    import html
    from urllib.parse import quote

    return f'<a href="{quote(normalized)}/">{html.escape(name)}</a>', '{\n   "name": ' + _encode_scalar(name) + "\n  }"


def _root_pages_of(links: list[str], entries: list[str]) -> tuple[bytes, bytes]:
    """The project list's pages from its entries in order: a join, whatever the number of projects."""
    listed = "[\n  " + ",\n  ".join(entries) + "\n ]" if entries else "[]"
    doc = '{\n "meta": {\n  "api-version": ' + _encode_scalar(REPOSITORY_VERSION) + '\n },\n "projects": ' + listed
    return _page_html("Simple index", links), (doc + "\n}\n").encode()


def _yank_value(dist: DistFile, yanked: Mapping[str, str]) -> str | None:
    return yanked.get(dist.filename)


def _link_html(dist: DistFile, href: str, yank: str | None, provenance: str | None) -> str:
    import html

    attrs = [f'href="{html.escape(href)}#sha256={dist.sha256}"']
    if provenance is not None:
        attrs.append(f'data-provenance="{html.escape(provenance)}"')
    if dist.requires_python:
        attrs.append(f'data-requires-python="{html.escape(dist.requires_python)}"')
    if yank is not None:
        attrs.append(f'data-yanked="{html.escape(yank)}"')
    meta_sha = dist.metadata_sha256
    if meta_sha is not None:
        attrs.append(f'data-dist-info-metadata="sha256={meta_sha}"')
        attrs.append(f'data-core-metadata="sha256={meta_sha}"')
    return f"<a {' '.join(attrs)}>{html.escape(dist.filename)}</a>"


def _file_json(dist: DistFile, href: str, yank: str | None, provenance: str | None) -> dict[str, JSONValue]:
    entry: dict[str, JSONValue] = {
        "filename": dist.filename,
        "url": href,
        "hashes": {"sha256": dist.sha256},
        "size": dist.size,
        "yanked": (yank or True) if yank is not None else False,
        "provenance": provenance,  # PEP 740: a URL, or null for a file without provenance
    }
    if dist.requires_python:
        entry["requires-python"] = dist.requires_python
    if dist.upload_time_ns > 0:
        entry["upload-time"] = _iso_time(dist.upload_time_ns)
    meta_sha = dist.metadata_sha256
    entry["core-metadata"] = {"sha256": meta_sha} if meta_sha else False
    entry["dist-info-metadata"] = entry["core-metadata"]
    return entry


def _iso_time(ns: int) -> str:
    """PEP 700's format: ``yyyy-mm-ddThh:mm:ss.ffffffZ``."""
    import datetime

    when = datetime.datetime.fromtimestamp(ns / 1e9, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_pages(normalized: str, dists: list[DistFile], layout: _Layout,
                  yanked: Mapping[str, str], status: ProjectStatus | None = None) -> tuple[bytes, bytes]:
    """HTML and PEP 691 JSON of one project's page (a quarantined project lists no files, PEP 792)."""
    from packaging.version import Version

    if status is not None and status.status == "quarantined":
        dists = []
    dists = sorted(dists, key=lambda d: (Version(d.version), d.filename))
    links, files = [], []
    for dist in dists:
        href, yank = layout.href(dist), _yank_value(dist, yanked)
        provenance = layout.provenance_url(dist, href)
        links.append(_link_html(dist, href, yank, provenance))
        files.append(_file_json(dist, href, yank, provenance))
    versions: list[JSONValue] = []
    for dist in dists:
        if dist.version not in versions:
            versions.append(dist.version)
    doc: dict[str, JSONValue] = {
        "meta": {"api-version": REPOSITORY_VERSION if status is None else STATUS_REPOSITORY_VERSION},
        "name": normalized,
        "versions": versions,
        "files": list[JSONValue](files),
    }
    if status is not None:
        mark: dict[str, JSONValue] = {"status": status.status}
        if status.reason is not None:
            mark["reason"] = status.reason
        doc["project-status"] = mark
    return _page_html(f"Links for {normalized}", links, status), _json_bytes(doc)



def _place_file(src: Path, dst: Path) -> bool:
    """Make ``dst`` hold ``src``'s bytes (hard link, else copy); True when something changed."""
    import shutil

    if src.resolve() == dst.resolve():
        return False
    try:
        if os.path.samefile(src, dst) or (
            dst.stat().st_size == src.stat().st_size and _sha256_file(dst) == _sha256_file(src)
        ):
            return False
    except OSError:
        pass
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


# ---------------------------------------------------------------- build


def build_index(wheelhouse: Path, out: Path | None = None, *, flat: bool = False,
                yanked: Mapping[str, str] | None = None, use_cache: bool = True,
                project: str | None = None, statuses: Mapping[str, ProjectStatus] | None = None,
                base_url: str | None = None, added: Iterable[DistFile] | None = None) -> IndexResult:
    """Write (or update) a static package index for ``wheelhouse`` into ``out`` (default: the wheelhouse).

    ``yanked`` maps file names to a reason (``""`` = yanked without a reason); None keeps the
    yanks of the previous run (from the cache).  ``statuses`` maps normalized project names to a
    PEP 792 status (None keeps the previous run's): the pages say it, an ``archived`` or
    ``quarantined`` project takes no uploads, a ``quarantined`` one lists no files.
    With the cache (``SITE/.dynawheel-index-cache.jsonl``) a re-run costs a directory listing plus
    reading the new or changed files; ``use_cache=False`` re-reads everything (the cache is
    rewritten either way).  ``base_url`` (the site's public URL, see :func:`check_base_url`) makes
    PEP 740 provenance URLs absolute, as the PEP asks; without it they are relative to the page,
    like the files' URLs.

    ``project`` (a normalized name) updates only that project: its files, .metadata and pages, and
    the project list's entry for it, from what the cache says of the other projects (no other
    project is looked at, whatever the size of the wheelhouse): what ``serve`` does after an upload.
    The result then lists only that project's files.  Its files are found by listing the wheelhouse;
    with ``added`` (the distributions just put there, already inspected: taken as they are while
    their size, mtime and inode match) nothing is listed: they are the files the cache knows for the
    project plus those.  Without a cache, or with yanks or statuses other than the cache's, the run
    is a full one.
    Raises :class:`PackageIndexError` when the wheelhouse does not exist or the site
    cannot be written.
    """
    wheelhouse = Path(wheelhouse)
    if not wheelhouse.is_dir():
        raise PackageIndexError(f"wheelhouse does not exist or is not a directory: {str(wheelhouse)!r}")
    site = Path(out) if out is not None else wheelhouse
    in_place = site.resolve() == wheelhouse.resolve()
    base = None if base_url is None else check_base_url(base_url)
    layout = _Layout(site, site if flat else site / "simple", flat, in_place and not flat, base)
    key = _layout_key(layout, wheelhouse)
    prev = load_cache(site, wheelhouse, key) if use_cache else None
    yanks = dict(prev.yanked if prev is not None and yanked is None else yanked or {})
    marks = dict(prev.statuses if prev is not None and statuses is None else statuses or {})
    if project is not None and prev is not None and marks.get(project, ACTIVE).status in _CLOSED:
        raise PackageIndexError(f"project {project!r} is {marks[project].status}: it takes no new files (PEP 792)")
    if project is not None and prev is not None and yanks == prev.yanked and marks == prev.statuses:
        update = _update_project(wheelhouse, layout, key, prev, project, added)
        if update is not None:
            return update
    dists, skipped = scan_wheelhouse(wheelhouse, prev)
    kept, conflicts = find_conflicts(dists)
    try:
        site.mkdir(parents=True, exist_ok=True)
        written, removed = _write_site(layout, kept, yanks, marks, prev)
        _update_cache(site, key, prev, dists, kept, yanks, marks)
    except OSError as exc:
        raise PackageIndexError(f"cannot write the index into {str(site)!r}: {exc}") from exc
    unknown = tuple(sorted(set(yanks) - {d.filename for d in kept}))
    for name in unknown:
        logger.info("yank names no indexed file: %r", name)
    return IndexResult(
        site=site, simple=layout.simple, flat=flat, files=tuple(kept),
        projects=tuple(sorted({d.normalized for d in kept})), written=tuple(written), removed=tuple(removed),
        skipped=tuple(skipped), conflicts=tuple(conflicts), unknown_yanked=unknown, statuses=marks,
    )


def _update_project(wheelhouse: Path, layout: _Layout, key: str, prev: SiteCache, project: str,
                    added: Iterable[DistFile] | None) -> IndexResult | None:
    """:func:`build_index` for one project (see there); None when a file claims another project than its
    name says (never for a valid distribution): then a full run sorts it out."""
    if added is None:
        dists, skipped = scan_wheelhouse(wheelhouse, prev, _project_filter(project))
    else:
        fresh = {d.filename: d for d in added}
        dists, skipped = _scan_named(wheelhouse, [*prev.views.by_project.get(project, ()), *fresh], prev, fresh)
    if any(d.normalized != project for d in dists):
        return None
    kept, conflicts = find_conflicts(dists)
    try:
        layout.site.mkdir(parents=True, exist_ok=True)
        written, removed, views = _write_project(layout, prev, project, kept)
        _append_project(layout.site, key, prev, project, dists, kept, views)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the pages back as the cache (unchanged) describes them
            _restore_project(layout, prev, project)
        raise PackageIndexError(f"cannot write the index into {str(layout.site)!r}: {exc}") from exc
    return IndexResult(
        site=layout.site, simple=layout.simple, flat=layout.flat, files=tuple(kept),
        projects=(project,) if kept else (), written=tuple(written), removed=tuple(removed),
        skipped=tuple(skipped), conflicts=tuple(conflicts), statuses=dict(prev.statuses),
    )


def _write_project(layout: _Layout, prev: SiteCache, project: str,
                   kept: list[DistFile]) -> tuple[list[Path], list[Path], _Views]:
    """One project's files, .metadata and pages, and the project list when its entry changes (looked up
    path by path: no directory is listed); what the cache says it had and it lost is removed."""
    stats = _Stats()
    written = _place_files(layout, kept, prev, stats)
    if kept:
        written += _write_pages(layout, {project: kept}, [project], prev.yanked, prev.statuses, stats)
    display = max(kept, key=lambda d: d.filename).project if kept else None
    views = prev.views.updated({}, {project: display})
    if (prev.views.names.get(project) != display or not stats.present(layout.simple / "index.html")
            or not stats.present(layout.simple / "index.json")):
        written += _write_pair(layout.simple, *views.root_pages(), stats)
    candidates: list[Path] = []
    if display is None and project in prev.views.names:
        candidates += _page_paths(layout, project)
    now = {d.filename for d in kept}
    for name in prev.views.by_project.get(project, ()):
        if name in prev.listed and name not in now:
            candidates += _file_outputs(layout, prev.files[name])
    return _logged(written), _unlinked(candidates), views


def _restore_project(layout: _Layout, prev: SiteCache, project: str) -> None:
    """After a failed update: the project's pages and the project list as ``prev`` says they were written."""
    stats = _Stats()
    group = [prev.files[n] for n in prev.views.by_project.get(project, ()) if n in prev.listed]
    if group:
        _write_pages(layout, {project: group}, [project], prev.yanked, prev.statuses, stats)
    else:
        _unlinked(_page_paths(layout, project))
    _write_pair(layout.simple, *prev.views.root_pages(), stats)


def known_files(wheelhouse: Path, project: str, base_url: str | None = None) -> tuple[str, ...]:
    """The file names that the in-place index of ``wheelhouse`` (``serve``'s) knows for ``project`` (the
    normalized name), listed or not, per its cache; () without a cache.  The first call after a full run
    derives the cache's views (all projects: tens of ms at 6,000 files) that updates of one project use."""
    base = None if base_url is None else check_base_url(base_url)
    layout = _Layout(wheelhouse, wheelhouse / "simple", False, True, base)
    cache = load_cache(wheelhouse, wheelhouse, _layout_key(layout, wheelhouse))
    return () if cache is None else cache.views.by_project.get(project, ())


def _append_project(site: Path, key: str, prev: SiteCache, project: str, dists: list[DistFile],
                    kept: list[DistFile], views: _Views) -> None:
    """The cache lines of one project's changed, newly listed or unlisted, and gone files, appended; the
    cache remembered for the next run is the previous one with them (and ``views`` with its files)."""
    old, was_listed, listed = prev.files, prev.listed, {d.filename for d in kept}
    lines = [(d, d.filename in listed) for d in dists
             if (old.get(d.filename) is not d and old.get(d.filename) != d)
             or (d.filename in was_listed) != (d.filename in listed)]
    seen = {d.filename for d in dists}
    gone = [name for name in prev.views.by_project.get(project, ()) if name not in seen]
    if not (lines or gone):
        return
    now = time.time_ns()
    lines = [(_vouched(d, now), listed_now) for d, listed_now in lines]
    appended = append_cache(site, lines, gone)
    files = dict(old)
    files.update((d.filename, d) for d, _ in lines)
    for name in gone:
        del files[name]
    on_pages = set(was_listed)
    on_pages.difference_update(prev.views.by_project.get(project, ()))
    on_pages |= listed
    cache = SiteCache(key, files, on_pages, prev.yanked, prev.statuses, prev.lines + len(lines) + len(gone),
                      views.updated({project: seen}, {}))
    with _memo_lock:
        memo = _memo.get(str(site.resolve()))
    _remember(site, cache, memo[0] + appended if memo is not None and memo[1] is prev else None)


def _scan_named(wheelhouse: Path, names: Iterable[str], cache: SiteCache,
                fresh: Mapping[str, DistFile]) -> tuple[list[DistFile], list[Skipped]]:
    """:func:`scan_wheelhouse` of the named files only: a look at each and at its provenance file, nothing
    listed.  A file is taken from ``cache``, else from ``fresh``, while its size, mtime and inode match."""
    import stat

    dists: list[DistFile] = []
    skipped: list[Skipped] = []
    todo: list[tuple[Path, os.stat_result]] = []
    provenances: dict[str, tuple[int, int, int]] = {}
    for name in sorted(set(names)):
        path = os.path.join(wheelhouse, name)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            skipped.append(Skipped(Path(path), str(exc)))
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        hit = cache.files.get(name)
        if hit is None or hit.stat_key != key:
            hit = fresh.get(name)
            if hit is not None and hit.stat_key != key:
                hit = None
            elif hit is not None and hit.directory != wheelhouse:  # inspected as a temporary file beside it
                same = os.path.samefile(hit.directory, wheelhouse)
                hit = dataclasses.replace(hit, directory=wheelhouse) if same else None
        if hit is not None:
            dists.append(hit)
        else:
            todo.append((Path(path), st))
        with contextlib.suppress(OSError):
            pst = os.stat(path + PROVENANCE_SUFFIX)
            if stat.S_ISREG(pst.st_mode):
                provenances[name] = (pst.st_size, pst.st_mtime_ns, pst.st_ino)
    return _scanned(dists, skipped, todo, provenances)


def linked_provenance(wheelhouse: Path, filename: str, base_url: str | None = None) -> DistFile | None:
    """The distribution ``filename`` as the in-place index of ``wheelhouse`` (``serve``'s) last listed it,
    when its pages link a provenance file (its stat in :attr:`DistFile.provenance`); None otherwise:
    no cache, not listed, no provenance, or one the index refused."""
    base = None if base_url is None else check_base_url(base_url)
    layout = _Layout(wheelhouse, wheelhouse / "simple", False, True, base)
    cache = load_cache(wheelhouse, wheelhouse, _layout_key(layout, wheelhouse))
    if cache is None or filename not in cache.listed:
        return None
    dist = cache.files.get(filename)
    return dist if dist is not None and dist.provenance is not None else None


@functools.lru_cache(maxsize=1 << 16)
def project_of_filename(filename: str) -> str:
    """The normalized project a distribution file name claims, as the index assigns the file: a wheel's
    text before the first ``-``; an sdist's before the last one (``foo-bar-1.0.tar.gz`` is ``foo-bar``'s,
    as :func:`packaging.utils.parse_sdist_filename` reads it).  A ``.metadata`` or ``.provenance`` file
    belongs to its distribution's project.

    Called for every file of a large wheelhouse (the server's watch): string methods, no regex, and
    remembered (a pure function of the name).
    """
    name = filename.removesuffix(PROVENANCE_SUFFIX).removesuffix(".metadata")
    if name.endswith(".tar.gz"):
        head = name[: -len(".tar.gz")].rpartition("-")[0] or name[: -len(".tar.gz")]
    else:
        head = name.split("-", 1)[0]
    head = head.lower().replace("_", "-").replace(".", "-")
    while "--" in head:
        head = head.replace("--", "-")
    return head


def _project_filter(project: str) -> Callable[[str], bool]:
    return lambda name: project_of_filename(name) == project


def _update_cache(site: Path, key: str, prev: SiteCache | None, dists: list[DistFile], kept: list[DistFile],
                  yanked: dict[str, str], statuses: dict[str, ProjectStatus]) -> None:
    """Bring the cache up to date: lines for what changed are appended (a few files: +1 wheel, an upload),
    the file is rewritten whole when yanks or statuses changed or the appended lines would pile up."""
    listed = {d.filename for d in kept}
    if prev is not None and yanked == prev.yanked and statuses == prev.statuses:
        old, was_listed = prev.files, prev.listed
        lines = [(d, d.filename in listed) for d in dists
                 if (old.get(d.filename) is not d and old.get(d.filename) != d)
                 or (d.filename in was_listed) != (d.filename in listed)]
        if not lines and len(dists) == len(old) and len(listed) == len(was_listed):
            return  # nothing new, nothing gone (every name seen is a name the cache has)
        seen = {d.filename for d in dists}
        gone = [name for name in old if name not in seen]
        if not (lines or gone):
            return
        if prev.lines + len(lines) + len(gone) <= len(seen) + len(seen) // 4 + 64:
            now = time.time_ns()
            lines = [(_vouched(d, now), listed_now) for d, listed_now in lines]
            append_cache(site, lines, gone)
            files = {**old, **{d.filename: d for d, _ in lines}}
            for name in gone:
                files.pop(name, None)
            _remember(site, SiteCache(key, files, listed, yanked, statuses, prev.lines + len(lines) + len(gone)))
            return
    files = {d.filename: d for d in dists}
    if (prev is None or prev.files != files or prev.listed != listed or prev.yanked != yanked
            or prev.statuses != statuses):
        save_cache(site, SiteCache(key, files, listed, yanked, statuses))


def _group(dists: Iterable[DistFile]) -> dict[str, list[DistFile]]:
    by_project: dict[str, list[DistFile]] = {}
    for dist in dists:
        by_project.setdefault(dist.normalized, []).append(dist)
    return by_project


def _display_names(by_project: Mapping[str, list[DistFile]]) -> dict[str, str]:
    return {norm: max(group, key=lambda d: d.filename).project for norm, group in by_project.items()}


def _names_in(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


class _Listings:
    """Directory listings of the site, each taken once per run (a name lookup instead of a stat per file)."""

    def __init__(self) -> None:
        self._names: dict[str, set[str]] = {}

    def __call__(self, directory: Path | str) -> set[str]:
        key = os.fspath(directory)
        names = self._names.get(key)
        if names is None:
            names = self._names[key] = _names_in(Path(key))
        return names

    def names(self, directory: Path | str) -> Container[str]:
        return self(directory)

    def present(self, path: Path | str) -> bool:
        directory, name = os.path.split(os.fspath(path))
        known = self._names.get(os.path.dirname(directory))
        if directory not in self._names and known is not None and os.path.basename(directory) not in known:
            return False  # in a directory that does not exist (yet): no need to list it
        return name in self(directory)


class _Stats(_Listings):
    """Presence by a look at each path, no directory listed: for the few files of one project (an upload)
    in a site of thousands."""

    def names(self, directory: Path | str) -> Container[str]:
        return _StatNames(os.fspath(directory))

    def present(self, path: Path | str) -> bool:
        return os.path.lexists(path)


@dataclass(frozen=True)
class _StatNames:
    directory: str

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and os.path.lexists(os.path.join(self.directory, name))


def _write_site(layout: _Layout, dists: list[DistFile], yanked: Mapping[str, str],
                statuses: Mapping[str, ProjectStatus], prev: SiteCache | None) -> tuple[list[Path], list[Path]]:
    """Place files, write .metadata and pages; with ``prev``, only what changed since it was written."""
    listing = _Listings()
    by_project = _group(dists)
    written = _place_files(layout, dists, prev, listing)
    touched = None if prev is None else _touched_projects(dists, prev, yanked, statuses)
    if prev is not None and touched is not None and not touched:
        # every input of every page is the cache's, as when the pages were written: nothing to compare
        if not (listing.present(layout.simple / "index.html") and listing.present(layout.simple / "index.json")):
            written += _write_pair(layout.simple, *root_pages(_display_names(by_project)), listing)
        written += _write_pages(layout, by_project, by_project.keys() - listing(layout.simple), yanked, statuses,
                                listing)
        return _logged(written), []
    prev_projects = _group(prev.files[n] for n in prev.listed) if prev is not None else {}
    missing = by_project.keys() - listing(layout.simple)
    candidates = by_project.keys() if touched is None else touched | missing
    pages = [norm for norm in candidates if norm in by_project and (
        norm in missing or not _same_page(norm, by_project[norm], prev, prev_projects.get(norm), yanked, statuses))]
    written += _write_pages(layout, by_project, pages, yanked, statuses, listing)
    names = _display_names(by_project)
    if (prev is None or names != _display_names(prev_projects) or not listing.present(layout.simple / "index.html")
            or not listing.present(layout.simple / "index.json")):
        written += _write_pair(layout.simple, *root_pages(names), listing)
    if prev is None:
        removed = _remove_stale(layout, dists, set(by_project))
    else:
        removed = _remove_unlisted(layout, prev, prev_projects, dists, set(names))
    return _logged(written), removed


def _logged(written: list[Path]) -> list[Path]:
    for path in written:
        logger.info("wrote %s", path)
    return written


def _place_files(layout: _Layout, dists: list[DistFile], prev: SiteCache | None, listing: _Listings) -> list[Path]:
    """Each file (a copy unless in place), its .metadata and its provenance where the pages link them;
    a file that the cache lists and that is still in place (names looked up in listings) is skipped."""
    written: list[Path] = []
    directory = None if layout.flat else layout.site if layout.in_place else layout.site / "files"
    shared: Container[str] = set() if directory is None or prev is None else listing.names(directory)
    for dist in dists:
        if prev is not None and prev.files.get(dist.filename) is dist and dist.filename in prev.listed:
            there = shared if directory is not None else listing.names(layout.simple / dist.normalized)
            if (dist.filename in there and (dist.kind != "wheel" or dist.filename + ".metadata" in there) and (
                    layout.in_place or (provenance_name(dist.filename) in there) == (dist.provenance is not None))):
                continue  # unchanged since the cache was written, and still in place
        target = layout.file_dir(dist) / dist.filename
        if not layout.in_place and _place_file(dist.path, target):  # in place, the file is its own target
            written.append(target)
        meta_target = Path(f"{os.fspath(target)}.metadata")
        # a page may link the file already (listed before; or, without a cache, its project has pages)
        linked = dist.filename in prev.listed if prev is not None else dist.normalized in listing(layout.simple)
        if dist.kind == "wheel" and _write_file(
                meta_target, dist.metadata if dist.metadata is not None else _metadata_of(dist), listing,
                new=not linked):
            written.append(meta_target)
        if not layout.in_place:  # in place, the pages link the wheelhouse's own provenance file
            written += _place_provenance(dist, target)
    return written


def _touched_projects(dists: list[DistFile], prev: SiteCache, yanked: Mapping[str, str],
                      statuses: Mapping[str, ProjectStatus]) -> set[str]:
    """The projects whose pages may differ from those written with the cache: one of their files is new,
    changed (not the very object the cache holds), newly listed, gone, or its yank changed; or their
    status changed.  The others' pages have exactly the inputs they were written from."""
    files, listed = prev.files, prev.listed
    touched = {d.normalized for d in dists if files.get(d.filename) is not d or d.filename not in listed}
    if touched or len(dists) != len(listed):
        now = {d.filename for d in dists}
        touched |= {files[name].normalized for name in listed if name not in now}
    if yanked != prev.yanked:
        current = {d.filename: d for d in dists}
        for name in {n for n in {*yanked, *prev.yanked} if yanked.get(n) != prev.yanked.get(n)}:
            dist = current.get(name) or files.get(name)
            if dist is not None:
                touched.add(dist.normalized)
    if statuses != prev.statuses:
        touched |= {n for n in {*statuses, *prev.statuses} if statuses.get(n) != prev.statuses.get(n)}
    return touched


def _same_page(normalized: str, group: list[DistFile], prev: SiteCache | None, old: list[DistFile] | None,
               yanked: Mapping[str, str], statuses: Mapping[str, ProjectStatus]) -> bool:
    """The project's pages were written (per the cache) from the inputs they would be written from now."""
    if prev is None or old is None or prev.statuses.get(normalized) != statuses.get(normalized):
        return False
    return prev.page_inputs(d.filename for d in old) == sorted(_page_input(d, yanked) for d in group)


def _write_pages(layout: _Layout, by_project: Mapping[str, list[DistFile]], projects: Iterable[str],
                 yanked: Mapping[str, str], statuses: Mapping[str, ProjectStatus], listing: _Listings) -> list[Path]:
    written: list[Path] = []
    for normalized in sorted(projects):
        page_html, page_json = project_pages(normalized, by_project[normalized], layout, yanked,
                                             statuses.get(normalized))
        written += _write_pair(layout.simple / normalized, page_html, page_json, listing)
    return written


def _place_provenance(dist: DistFile, target: Path) -> list[Path]:
    """Put the provenance file beside a copy of the distribution, or take a stale one away."""
    copy = target.with_name(provenance_name(dist.filename))
    if dist.provenance is None:
        copy.unlink(missing_ok=True)
        return []
    return [copy] if _place_file(dist.directory / provenance_name(dist.filename), copy) else []


def _metadata_of(dist: DistFile) -> bytes:
    from packaging.utils import parse_wheel_filename

    return _read_wheel_metadata(dist.path, parse_wheel_filename(dist.filename)[0], dist.filename)[1]


def _remove_unlisted(layout: _Layout, prev: SiteCache, prev_projects: Mapping[str, list[DistFile]],
                     dists: list[DistFile], projects: set[str]) -> list[Path]:
    """Remove what the previous run (per the cache) wrote for files and projects now gone."""
    now = {d.filename for d in dists}
    candidates: list[Path] = []
    for norm in prev_projects:
        if norm not in projects:
            candidates += _page_paths(layout, norm)
    for name in prev.listed:
        if name in now:
            continue
        candidates += _file_outputs(layout, prev.files[name])
    return _unlinked(candidates)


def _page_paths(layout: _Layout, project: str) -> list[Path]:
    """A project's two pages (HTML and PEP 691 JSON)."""
    return [layout.simple / project / "index.html", layout.simple / project / "index.json"]


def _file_outputs(layout: _Layout, dist: DistFile) -> list[Path]:
    """What the index wrote for a listed file: its .metadata and, out of place, the copy and its provenance."""
    target = layout.file_dir(dist) / dist.filename
    return [target.with_name(dist.filename + ".metadata")] + (
        [] if layout.in_place else [target, target.with_name(provenance_name(dist.filename))])


def _unlinked(candidates: Iterable[Path]) -> list[Path]:
    """Remove those of ``candidates`` that exist (stale outputs); the paths removed."""
    removed = []
    for path in candidates:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
        logger.info("removed stale %s", path)
    return removed


def _write_pair(directory: Path, page_html: bytes, page_json: bytes, listing: _Listings) -> list[Path]:
    out = []
    for name, data in (("index.html", page_html), ("index.json", page_json)):
        if _write_file(directory / name, data, listing):
            out.append(directory / name)
    return out


_NEW_FILE = (os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_BINARY", 0))


def _write_file(path: Path, data: bytes, listing: _Listings, *, new: bool = False) -> bool:
    """:func:`fsutil.write_atomic` with ``skip_same``, for the thousands of small files of a site: a file that
    the directory's listing does not hold is written without looking for it first (5 system calls where
    the general path takes 14: a cold run writes 10,000 files).  True when written.

    ``new``: a file that no page links yet (the .metadata of a distribution that is new to the pages, of a
    project without pages; the pages are written after it) is created in place, without a temporary file
    and a rename: a reader can reach it only once it is complete; a run killed midway leaves it to the
    next run, which finds the distribution not in the cache and writes the file again.
    """
    name = os.fspath(path)
    if listing.present(name):
        return fsutil.write_atomic(path, data, skip_same=True)
    if new:
        try:
            _write_fd(os.open(name, _NEW_FILE | os.O_EXCL, 0o644), data)
            return True
        except FileExistsError:  # created since the listing was taken
            return fsutil.write_atomic(path, data, skip_same=True)
    directory, base = os.path.split(name)
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, _NEW_FILE, 0o644)
    except FileNotFoundError:
        os.makedirs(directory or ".", exist_ok=True)
        fd = os.open(tmp, _NEW_FILE, 0o644)
    try:
        _write_fd(fd, data)
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return True


def _write_fd(fd: int, data: bytes) -> None:
    """Write all of ``data`` to a new file's descriptor, mode 0644 whatever the umask (a web server reads
    the site), and close it."""
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _is_dist_name(name: str) -> bool:
    return name.endswith((".whl", ".tar.gz", ".whl.metadata", ".whl.provenance", ".tar.gz.provenance"))


def _remove_stale(layout: _Layout, dists: list[DistFile], projects: set[str]) -> list[Path]:
    """Remove pages, copies and .metadata files that an earlier run wrote for files now gone.

    A distribution in the wheelhouse itself is never deleted.
    """
    wanted = {layout.file_dir(d) / d.filename for d in dists}
    wanted |= {p.with_name(p.name + ".metadata") for p in wanted}
    wanted |= {layout.file_dir(d) / provenance_name(d.filename) for d in dists if d.provenance is not None}
    candidates: list[Path] = []
    for sub in _page_dirs(layout):
        if sub.name not in projects:
            candidates += [sub / "index.html", sub / "index.json"]
        if layout.flat:
            candidates += [p for p in sub.iterdir() if _is_dist_name(p.name)]
    if layout.in_place:
        candidates += list(layout.site.glob("*.whl.metadata"))
    elif not layout.flat and (layout.site / "files").is_dir():
        candidates += [p for p in (layout.site / "files").iterdir() if _is_dist_name(p.name)]
    removed = []
    for path in candidates:
        if path not in wanted and path.is_file():
            path.unlink()
            removed.append(path)
            logger.info("removed stale %s", path)
    return removed


def _page_dirs(layout: _Layout) -> list[Path]:
    if not layout.simple.is_dir():
        return []
    return [sub for sub in layout.simple.iterdir()
            if sub.is_dir() and sub.name != "files" and (sub / "index.html").is_file()]
