"""Static package index: PEP 503 HTML, PEP 691 JSON, PEP 658/714 metadata files.

Layout written by :func:`build_index` (``SITE`` defaults to the wheelhouse)::

    SITE/simple/index.html              project list (PEP 503 + PEP 629 meta tag)
    SITE/simple/index.json              the same list as PEP 691 JSON (api-version 1.1)
    SITE/simple/<normalized>/index.html links ``#sha256=``, ``data-requires-python``, ``data-yanked``,
                                        ``data-core-metadata`` + ``data-dist-info-metadata``
    SITE/simple/<normalized>/index.json the same page as PEP 691 JSON
    FILES/<file>                        the distribution itself
    FILES/<file>.metadata               the wheel's METADATA (PEP 658), byte for byte

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

import email.parser
import hashlib
import html
import json
import logging
import os
import re
import shutil
import tarfile
import threading
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Literal, Union
from urllib.parse import quote

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    canonicalize_version,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from .. import fsutil
from ..errors import PackageIndexError

logger = logging.getLogger(__name__)

REPOSITORY_VERSION = "1.1"
JSON_CONTENT_TYPE = "application/vnd.pypi.simple.v1+json"
MAX_METADATA_SIZE = 16 * 1024 * 1024
_CHUNK = 1024 * 1024
_NAME_RE = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)

Kind = Literal["wheel", "sdist"]
JSONValue = Union[str, int, bool, None, list["JSONValue"], dict[str, "JSONValue"]]


def normalize_name(name: str) -> str:
    """PEP 503 normalized project name (``namespace.mod`` -> ``namespace-mod``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class DistFile:
    """One distribution file found in the wheelhouse."""

    filename: str
    path: Path
    project: str  # the name as METADATA / PKG-INFO spells it
    normalized: str
    version: str
    kind: Kind
    sha256: str
    size: int
    requires_python: str | None
    metadata: bytes | None = field(default=None, repr=False)  # wheels only (PEP 658)

    @property
    def metadata_sha256(self) -> str | None:
        return None if self.metadata is None else hashlib.sha256(self.metadata).hexdigest()

    @property
    def identity(self) -> tuple[str, str, str]:
        """What the file claims to be: project, version, and tags (or ``sdist``)."""
        if self.kind == "sdist":
            return (self.normalized, canonicalize_version(self.version), "sdist")
        tags = parse_wheel_filename(self.filename)[3]
        return (self.normalized, canonicalize_version(self.version), ".".join(sorted(map(str, tags))))


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

    @property
    def ok(self) -> bool:
        return not (self.skipped or self.conflicts or self.unknown_yanked)


# ---------------------------------------------------------------- reading distributions

_cache: dict[tuple[str, int, int, int], DistFile] = {}
_cache_lock = threading.Lock()


def inspect_distribution(path: Path) -> DistFile:
    """Read a wheel or sdist: name, version, hash, requires-python, METADATA.

    Raises :class:`PackageIndexError` naming the file when it is not a valid
    distribution (bad name, not a zip/tar, no or inconsistent metadata).
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit.filename == path.name:
        return hit
    dist = _inspect_uncached(path, st.st_size)
    with _cache_lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[key] = dist
    return dist


def _inspect_uncached(path: Path, size: int) -> DistFile:
    name = path.name
    if name.endswith(".whl"):
        kind: Kind = "wheel"
        try:
            fname, fversion, _build, _tags = parse_wheel_filename(name)
        except (InvalidWheelFilename, InvalidVersion) as exc:
            raise PackageIndexError(f"not a valid wheel file name ({exc}): {name!r}") from None
        meta, metadata = _read_wheel_metadata(path, str(fname))
    elif name.endswith(".tar.gz"):
        kind = "sdist"
        try:
            fname, fversion = parse_sdist_filename(name)
        except (InvalidSdistFilename, InvalidVersion) as exc:
            raise PackageIndexError(f"not a valid sdist file name ({exc}): {name!r}") from None
        meta, metadata = _read_sdist_pkg_info(path, name[: -len(".tar.gz")]), None
    else:
        raise PackageIndexError(f"not a wheel (.whl) or sdist (.tar.gz): {name!r}")
    project, version = _check_claims(name, meta, str(fname), fversion)
    return DistFile(
        filename=name, path=path, project=project, normalized=normalize_name(project),
        version=version, kind=kind, sha256=_sha256_file(path), size=size,
        requires_python=_header(meta, "Requires-Python"), metadata=metadata,
    )


def _check_claims(name: str, meta: Message, fname: str, fversion: Version) -> tuple[str, str]:
    project, version = _header(meta, "Name"), _header(meta, "Version")
    if project is None or version is None or not _NAME_RE.match(project):
        raise PackageIndexError(f"metadata has no valid Name/Version (Name={project!r}, Version={version!r}): {name!r}")
    try:
        same_version = Version(version) == fversion
    except InvalidVersion:
        raise PackageIndexError(f"metadata Version is not PEP 440 ({version!r}): {name!r}") from None
    if canonicalize_name(project) != canonicalize_name(fname) or not same_version:
        raise PackageIndexError(
            f"file name says {fname!r} {str(fversion)!r} but metadata says {project!r} {version!r}: {name!r}"
        )
    return project, version


def _header(meta: Message, key: str) -> str | None:
    value = meta.get(key)
    return None if value is None else str(value).strip() or None


def _parse_metadata(data: bytes, what: str) -> Message:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageIndexError(f"metadata is not UTF-8: {what!r}") from None
    return email.parser.Parser().parsestr(text, headersonly=True)


def _read_wheel_metadata(path: Path, fname: str) -> tuple[Message, bytes]:
    """METADATA of a wheel, read from the zip without extracting anything.

    Only the entry ``<name>-<version>.dist-info/METADATA`` at the top level is read; no
    archive path is ever used to touch the file system.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            want = canonicalize_name(fname)
            candidates = [i for i in zf.infolist()
                          if _is_top_metadata(i.filename) and canonicalize_name(i.filename.split("-", 1)[0]) == want]
            if len(candidates) != 1:
                raise PackageIndexError(
                    f"wheel has {len(candidates)} matching .dist-info/METADATA entries: {path.name!r}")
            info = candidates[0]
            if info.file_size > MAX_METADATA_SIZE:
                raise PackageIndexError(f"METADATA is larger than {MAX_METADATA_SIZE} bytes: {path.name!r}")
            with zf.open(info) as fh:
                data = fh.read(MAX_METADATA_SIZE + 1)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError) as exc:
        if isinstance(exc, PackageIndexError):
            raise
        raise PackageIndexError(f"corrupted wheel ({exc}): {path.name!r}") from None
    return _parse_metadata(data, path.name), data


def _is_top_metadata(arcname: str) -> bool:
    parts = arcname.split("/")
    return len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "METADATA"


def _read_sdist_pkg_info(path: Path, stem: str) -> Message:
    try:
        with tarfile.open(path, "r:gz") as tf:
            for member in tf:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    if member.size > MAX_METADATA_SIZE:
                        break
                    fh = tf.extractfile(member)
                    if fh is not None:
                        return _parse_metadata(fh.read(MAX_METADATA_SIZE), path.name)
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise PackageIndexError(f"corrupted sdist ({exc}): {path.name!r}") from None
    raise PackageIndexError(f"sdist has no top-level PKG-INFO (expected {stem + '/PKG-INFO'!r}): {path.name!r}")


def _sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return fsutil.sha256_hex(fh, _CHUNK)


def scan_wheelhouse(wheelhouse: Path) -> tuple[list[DistFile], list[Skipped]]:
    """Inspect every file at the top level of ``wheelhouse``; bad ones are skipped with a reason."""
    if not wheelhouse.is_dir():
        raise PackageIndexError(f"wheelhouse is not a directory: {str(wheelhouse)!r}")
    dists: list[DistFile] = []
    skipped: list[Skipped] = []
    for path in sorted(wheelhouse.iterdir()):
        if path.name.startswith(".") or path.name.endswith(".metadata") or not path.is_file():
            continue
        try:
            dists.append(inspect_distribution(path))
        except (PackageIndexError, OSError) as exc:
            logger.info("skipped %s: %s", path.name, exc)
            skipped.append(Skipped(path, str(exc)))
    return dists, skipped


def find_conflicts(dists: Iterable[DistFile]) -> tuple[list[DistFile], list[Conflict]]:
    """Drop files that claim the same project, version and tags with different content."""
    groups: dict[tuple[str, str, str], list[DistFile]] = {}
    for dist in dists:
        groups.setdefault(dist.identity, []).append(dist)
    kept: list[DistFile] = []
    conflicts: list[Conflict] = []
    for (project, version, tags), group in sorted(groups.items()):
        if len({d.sha256 for d in group}) > 1:
            files = tuple(sorted(d.path for d in group))
            reason = f"{len(group)} files claim {project} {version} ({tags}) with different content"
            logger.info("conflict: %s: %s", reason, [p.name for p in files])
            conflicts.append(Conflict(project, version, files, reason))
        else:
            kept.extend(group)
    return sorted(kept, key=lambda d: d.filename), conflicts


# ---------------------------------------------------------------- layout and pages


@dataclass(frozen=True)
class _Layout:
    site: Path
    simple: Path
    flat: bool
    in_place: bool  # files stay in the wheelhouse (site == wheelhouse, not flat)

    def file_dir(self, dist: DistFile) -> Path:
        if self.flat:
            return self.simple / dist.normalized
        return dist.path.parent if self.in_place else self.site / "files"

    def href(self, dist: DistFile) -> str:
        target = self.file_dir(dist) / dist.filename
        rel = os.path.relpath(target, self.simple / dist.normalized)
        return "/".join(quote(part) for part in Path(rel).parts)


def _page_html(title: str, links: Iterable[str]) -> bytes:
    body = "\n".join(f"    {link}<br>" for link in links)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        f'    <meta name="pypi:repository-version" content="{REPOSITORY_VERSION}">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"    <h1>{html.escape(title)}</h1>\n{body}\n  </body>\n</html>\n"
    ).encode()


def _json_bytes(doc: Mapping[str, JSONValue]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def root_pages(projects: Mapping[str, str]) -> tuple[bytes, bytes]:
    """HTML and PEP 691 JSON of the project list; ``projects`` maps normalized -> display name."""
    items = sorted(projects.items())
    links = [f'<a href="{quote(norm)}/">{html.escape(name)}</a>' for norm, name in items]
    doc: dict[str, JSONValue] = {
        "meta": {"api-version": REPOSITORY_VERSION},
        "projects": [{"name": name} for _norm, name in items],
    }
    return _page_html("Simple index", links), _json_bytes(doc)


def _yank_value(dist: DistFile, yanked: Mapping[str, str]) -> str | None:
    return yanked.get(dist.filename)


def _link_html(dist: DistFile, href: str, yank: str | None) -> str:
    attrs = [f'href="{html.escape(href)}#sha256={dist.sha256}"']
    if dist.requires_python:
        attrs.append(f'data-requires-python="{html.escape(dist.requires_python)}"')
    if yank is not None:
        attrs.append(f'data-yanked="{html.escape(yank)}"')
    meta_sha = dist.metadata_sha256
    if meta_sha is not None:
        attrs.append(f'data-dist-info-metadata="sha256={meta_sha}"')
        attrs.append(f'data-core-metadata="sha256={meta_sha}"')
    return f"<a {' '.join(attrs)}>{html.escape(dist.filename)}</a>"


def _file_json(dist: DistFile, href: str, yank: str | None) -> dict[str, JSONValue]:
    entry: dict[str, JSONValue] = {
        "filename": dist.filename,
        "url": href,
        "hashes": {"sha256": dist.sha256},
        "size": dist.size,
        "yanked": (yank or True) if yank is not None else False,
    }
    if dist.requires_python:
        entry["requires-python"] = dist.requires_python
    meta_sha = dist.metadata_sha256
    entry["core-metadata"] = {"sha256": meta_sha} if meta_sha else False
    entry["dist-info-metadata"] = entry["core-metadata"]
    return entry


def project_pages(normalized: str, dists: list[DistFile], layout: _Layout,
                  yanked: Mapping[str, str]) -> tuple[bytes, bytes]:
    """HTML and PEP 691 JSON of one project's page."""
    dists = sorted(dists, key=lambda d: (Version(d.version), d.filename))
    links, files = [], []
    for dist in dists:
        href, yank = layout.href(dist), _yank_value(dist, yanked)
        links.append(_link_html(dist, href, yank))
        files.append(_file_json(dist, href, yank))
    versions: list[JSONValue] = []
    for dist in dists:
        if dist.version not in versions:
            versions.append(dist.version)
    doc: dict[str, JSONValue] = {
        "meta": {"api-version": REPOSITORY_VERSION},
        "name": normalized,
        "versions": versions,
        "files": list[JSONValue](files),
    }
    return _page_html(f"Links for {normalized}", links), _json_bytes(doc)


# ---------------------------------------------------------------- atomic writes


def write_atomic(path: Path, data: bytes) -> bool:
    """Write ``data`` to ``path`` unless it already holds exactly that; True when written."""
    try:
        if path.stat().st_size == len(data) and path.read_bytes() == data:
            return False
    except OSError:
        pass
    fsutil.write_atomic(path, data, 0o644)
    return True


def _place_file(src: Path, dst: Path) -> bool:
    """Make ``dst`` hold ``src``'s bytes (hard link, else copy); True when something changed."""
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
                yanked: Mapping[str, str] | None = None) -> IndexResult:
    """Write (or update) a static package index for ``wheelhouse`` into ``out`` (default: the wheelhouse).

    ``yanked`` maps file names to a reason (``""`` = yanked without a reason).
    Raises :class:`PackageIndexError` when the wheelhouse does not exist or the site
    cannot be written.
    """
    wheelhouse = Path(wheelhouse)
    if not wheelhouse.is_dir():
        raise PackageIndexError(f"wheelhouse does not exist or is not a directory: {str(wheelhouse)!r}")
    site = Path(out) if out is not None else wheelhouse
    in_place = site.resolve() == wheelhouse.resolve()
    layout = _Layout(site, site if flat else site / "simple", flat, in_place and not flat)
    yanked = dict(yanked or {})
    dists, skipped = scan_wheelhouse(wheelhouse)
    kept, conflicts = find_conflicts(dists)
    try:
        written, removed = _write_site(layout, kept, yanked)
    except OSError as exc:
        raise PackageIndexError(f"cannot write the index into {str(site)!r}: {exc}") from exc
    unknown = tuple(sorted(set(yanked) - {d.filename for d in kept}))
    for name in unknown:
        logger.info("yank names no indexed file: %r", name)
    return IndexResult(
        site=site, simple=layout.simple, flat=flat, files=tuple(kept),
        projects=tuple(sorted({d.normalized for d in kept})), written=tuple(written), removed=tuple(removed),
        skipped=tuple(skipped), conflicts=tuple(conflicts), unknown_yanked=unknown,
    )


def _write_site(layout: _Layout, dists: list[DistFile], yanked: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    written: list[Path] = []
    by_project: dict[str, list[DistFile]] = {}
    for dist in dists:
        by_project.setdefault(dist.normalized, []).append(dist)
    for dist in dists:
        target = layout.file_dir(dist) / dist.filename
        if _place_file(dist.path, target):
            written.append(target)
        if dist.metadata is not None and write_atomic(target.with_name(dist.filename + ".metadata"), dist.metadata):
            written.append(target.with_name(dist.filename + ".metadata"))
    for normalized, group in sorted(by_project.items()):
        page_html, page_json = project_pages(normalized, group, layout, yanked)
        written += _write_pair(layout.simple / normalized, page_html, page_json)
    names = {norm: sorted(group, key=lambda d: d.filename)[-1].project for norm, group in by_project.items()}
    root_html, root_json = root_pages(names)
    written += _write_pair(layout.simple, root_html, root_json)
    removed = _remove_stale(layout, dists, set(by_project))
    for path in written:
        logger.info("wrote %s", path)
    return written, removed


def _write_pair(directory: Path, page_html: bytes, page_json: bytes) -> list[Path]:
    out = []
    for name, data in (("index.html", page_html), ("index.json", page_json)):
        if write_atomic(directory / name, data):
            out.append(directory / name)
    return out


def _is_dist_name(name: str) -> bool:
    return name.endswith((".whl", ".tar.gz", ".whl.metadata"))


def _remove_stale(layout: _Layout, dists: list[DistFile], projects: set[str]) -> list[Path]:
    """Remove pages, copies and .metadata files that an earlier run wrote for files now gone.

    A distribution in the wheelhouse itself is never deleted.
    """
    wanted = {layout.file_dir(d) / d.filename for d in dists}
    wanted |= {p.with_name(p.name + ".metadata") for p in wanted}
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
