"""Which package owns a library on the host: the one reader of package databases and package layouts.

Every path given and returned is in the resolver's namespace (below `SearchPaths.sysroot`); the
databases are read below that root too.  One class per layout, each answering `owner(path)`:

- by path: Homebrew kegs (``.../Cellar/NAME/VERSION/...``), conda prefixes (``conda-meta/*.json`` list
  each package's files), vcpkg trees (``installed/<triplet>/...``, ``installed/vcpkg/info/*.list``),
  MSYS2 roots (``mingw64``, ``ucrt64``, ``clang64``, ... beside ``var/lib/pacman/local/*/files``);
- by database: dpkg (``/var/lib/dpkg/info/*.list`` and ``status``), apk (``/lib/apk/db/installed``),
  rpm (through the ``rpm`` command, when it exists and the root has an rpm database).

An `Owner` names the package (for a purl), its version, and the license files the package installs
(`licenses`: name to keep -> path).  `Owners` asks the path layouts first (they are exact), then the
databases.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import operator
import os
import posixpath
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import ToolError
from ..log import get_logger
from ..search import SearchPaths
from ..tools import run_tool

log = get_logger(__name__)

# what Debian's dpkg calls an architecture, per the name the ELF reader uses
DEB_ARCH = {"x86_64": "amd64", "i686": "i386", "aarch64": "arm64", "armv7l": "armhf", "ppc64le": "ppc64el",
            "s390x": "s390x", "riscv64": "riscv64"}
# directories that usrmerge makes links into /usr: a file dpkg lists under /lib is found as /usr/lib
_MERGED = ("lib", "lib32", "lib64", "libx32", "bin", "sbin")
# compiled when used (performance: ~0.5 ms a regex; Debian's packages name their copyright file)
_LICENSE_NAME = r"^(LICEN[CS]E|COPYING|COPYRIGHT|NOTICE|AUTHORS)([._-].*)?$"
_MSYS2_ENVS = ("mingw64", "ucrt64", "clang64", "clangarm64", "mingw32", "clang32", "usr")
_MAX_DB = 256 << 20  # a package database larger than this is not read (bounded memory)
_SEARCHED_NAMES = 4  # dpkg's status file is searched for the packages of this many files at most, else indexed
_NAME_HITS = 64  # a name found more often than this in the status file is looked up in the index


@dataclass(frozen=True)
class Owner:
    """The package that installed a file, as its package manager names it."""

    manager: str  # 'deb', 'rpm', 'apk', 'homebrew', 'conda', 'vcpkg', 'msys2'
    name: str
    version: str | None = None
    namespace: str | None = None  # the distribution ('debian', 'alpine', 'fedora', 'msys2'), if known
    qualifiers: tuple[tuple[str, str], ...] = ()  # purl qualifiers: ('arch', 'amd64'), ('channel', ...)
    license: str | None = None  # the license the database declares (apk L:, rpm LICENSE, conda, pacman)
    licenses: tuple[tuple[str, str], ...] = ()  # (name to keep, path) of the package's license files

    def purl_parts(self) -> tuple[str, str | None, str, str | None, dict[str, str]]:
        """(type, namespace, name, version, qualifiers) of this package's purl (package-url spec types)."""
        if self.manager in ("homebrew", "vcpkg"):  # no purl type of their own: generic, named by the manager
            return "generic", self.manager, self.name, self.version, dict(self.qualifiers)
        kind = {"msys2": "alpm"}.get(self.manager, self.manager)
        return kind, self.namespace, self.name, self.version, dict(self.qualifiers)

    def purl(self) -> str:
        """This package's purl ('pkg:deb/debian/libffi8@3.4.4-1?arch=amd64'), made by packageurl-python."""
        from packageurl import PackageURL

        kind, namespace, name, version, qualifiers = self.purl_parts()
        return str(PackageURL(kind, namespace, name, version, qualifiers or None).to_string())


class Layout(Protocol):
    """One kind of package layout: who owns `path`, or None when this layout does not know."""

    def owner(self, path: str) -> Owner | None: ...


def _read_data(path: str) -> bytes | None:
    """A file's bytes with its newlines as text mode reads them ('\\r\\n' and '\\r' are '\\n'); None when it
    cannot be read or is larger than _MAX_DB."""
    try:
        if os.path.getsize(path) > _MAX_DB:
            log.warning("%s is larger than %d MiB: not read", path, _MAX_DB >> 20)
            return None
        with open(path, "rb") as fp:
            data = fp.read()
    except OSError:
        return None
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n") if b"\r" in data else data


def _read_text(path: str) -> str | None:
    data = _read_data(path)
    return None if data is None else data.decode("utf-8", "replace")


def _license_files(directory: str, prefix: str = "") -> tuple[tuple[str, str], ...]:
    """Files of `directory` named like license files (LICENSE*, COPYING*, ...), not descending."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return ()
    return tuple((prefix + n, posixpath.join(directory, n)) for n in names
                 if re.match(_LICENSE_NAME, n, re.IGNORECASE) and os.path.isfile(posixpath.join(directory, n)))


def _files_below(directory: str) -> tuple[tuple[str, str], ...]:
    """Every file below `directory`, as (relative path, path), sorted."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            path = posixpath.join(root, name)
            found.append((posixpath.relpath(path, directory), path))
    return tuple(found)


def os_release_id(search: SearchPaths) -> str | None:
    """ID= of the root's os-release (what auditwheel names the distribution by)."""
    for name in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read_text(search.host_path(name))
        if text is None:
            continue
        match = re.search(r"^ID=\"?([^\"\n]*)\"?$", text, re.MULTILINE)
        return match.group(1) if match else None
    return None


# ---- databases ----

def _stanzas(text: str) -> Iterator[dict[str, str]]:
    """The paragraphs of a dpkg status file, as {field: first line of value}."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if fields:
            yield fields


class Dpkg:
    """Debian's dpkg database: ``/var/lib/dpkg/info/PKG[:ARCH].list`` (files) and ``status`` (versions).

    dpkg lets one file belong to one package only (a package that takes a file over removes it from the
    other's list; co-installed Multi-Arch: same packages share files under one name), so the owner of a path
    is the package whose list names it, whichever list is read first.  The lists of packages named like the
    file (``libyaml-0.so.2`` -> ``libyaml*``, Debian's library package names) are searched first, then those
    of the owners found so far, then those whose shlibs declare the library; the others (``libz.so.1`` is
    zlib1g's) only when none of those names it; each list is read at most once per run."""

    def __init__(self, search: SearchPaths, lookups: int | None = None) -> None:
        self.search = search
        self.info = search.host_path("/var/lib/dpkg/info")
        # the status file searched for each package's name (~1 M instructions each) when few files will be asked
        # about, else indexed (~5.6 M once); unknown: indexed
        self._search_status = lookups is not None and lookups <= _SEARCHED_NAMES
        self._texts: dict[str, bytes | None] = {}  # 'PKG[:ARCH]' -> its .list between newlines (None: unreadable)
        self._owned: dict[str, None] = {}  # the packages found to own a file so far, in the order found
        self._searched = 0  # the names looked up by a search of the status file

    @functools.cached_property
    def _names(self) -> list[str]:
        try:
            return os.listdir(self.info)
        except OSError:
            return []

    @functools.cached_property
    def _joined_names(self) -> str | None:
        """The directory's names, each between newlines; None when a name holds a newline."""
        names = self._names
        joined = "\n" + "\n".join(names) + "\n"
        return joined if joined.count("\n") == len(names) + 1 else None

    @functools.cached_property
    def _listed_packages(self) -> list[str]:
        """'PKG[:ARCH]' of every installed package with a file list, as listed."""
        joined = self._joined_names
        if joined is None:  # a name with a newline: one test per name
            return [n[: -len(".list")] for n in self._names if n.endswith(".list")]
        # performance: the names ending in '.list' cut out in C (one split of the names joined by newlines; a
        # Python step per name cost ~1 k instructions, 3 M for dpkg's ~3,000 files here)
        pieces = joined[1:].split(".list\n")[:-1]  # each ends with a package's name, after a newline
        return list(map(operator.itemgetter(2), map(str.rpartition, pieces, itertools.repeat("\n"))))

    @functools.cached_property
    def _packages(self) -> list[str]:
        """'PKG[:ARCH]' of every installed package with a file list, sorted."""
        return sorted(self._listed_packages)

    @functools.cached_property
    def _shlibs(self) -> dict[str, list[str]]:
        """Name stem -> the packages whose ``PKG.shlibs`` names a shared library of that stem ('liblber-2.5 0
        libldap-2.5-0 (>= 2.5.13)' in libldap-2.5-0:amd64.shlibs: liblber-2.5.so.0 is libldap-2.5-0's)."""
        stems: dict[str, list[str]] = {}
        for name in sorted(n for n in self._names if n.endswith(".shlibs")):
            for line in (_read_text(posixpath.join(self.info, name)) or "").splitlines():
                words = line.split()  # [type:] library-name soname-version dependencies
                words = words[1:] if words and words[0].endswith(":") else words
                if words:
                    stems.setdefault(_name_stem(words[0]), []).append(name[: -len(".shlibs")])
        return stems

    def _list(self, package: str) -> bytes | None:
        if package not in self._texts:
            try:
                with open(posixpath.join(self.info, package + ".list"), "rb") as fp:  # read(): no 256 MiB buffer
                    small = os.fstat(fp.fileno()).st_size < _MAX_DB
                    self._texts[package] = b"\n" + (fp.read() if small else fp.read(_MAX_DB)) + b"\n"
            except OSError:
                self._texts[package] = None
        return self._texts[package]

    def _listed(self, host: str) -> str | None:
        needles = [f"\n{a}\n".encode() for a in self._aliases(host)]
        for pkg in self._candidates(_name_stem(posixpath.basename(host))):
            text = self._list(pkg)
            if text is not None and any(n in text for n in needles):
                self._owned.setdefault(pkg)
                return pkg
        return None

    def _likely(self, stem: str) -> list[str]:
        """The packages with a file list whose name starts with `stem`, sorted (a run of `_packages`)."""
        joined = self._joined_names
        if joined is None or not stem or "." in stem:
            packages = self._packages  # sorted: those starting with `stem` are one run of it
            first = bisect.bisect_left(packages, stem)
            return list(itertools.takewhile(lambda p: p.startswith(stem), itertools.islice(packages, first, None)))
        # performance: the names starting with `stem` found in the joined names (a stem has no '.': a file list's
        # name starts with it exactly when its package's does), not every name filtered and sorted (~2.5 M)
        found = []
        at = joined.find("\n" + stem)
        while at >= 0:
            end = joined.index("\n", at + 1)
            if joined.endswith(".list", at + 1, end):
                found.append(joined[at + 1: end - len(".list")])
            at = joined.find("\n" + stem, end)
        return sorted(found)

    def _candidates(self, stem: str) -> Iterator[str]:
        """Every package, those named like the file first, then the owners of the files asked before, then those
        whose shlibs name it (read only if the first do not own it), then the others."""
        likely = self._likely(stem)
        yield from likely
        yield from [p for p in self._owned if p not in likely]  # owners of other files (liblber is libldap's)
        yield from (p for p in self._shlibs.get(stem, ()) if p not in likely)
        yield from (p for p in self._packages if not p.startswith(stem))

    @functools.cached_property
    def _status_data(self) -> bytes:
        """The status file (performance: as bytes; only the paragraphs of the owners found are decoded: the file
        describes every package, 0.7 MB here, and decoding it whole cost more than a repair's lookups)."""
        return _read_data(self.search.host_path("/var/lib/dpkg/status")) or b""

    @functools.cached_property
    def _package_lines(self) -> tuple[dict[str, int], dict[str, list[int]]]:
        """Package name -> where its first 'Package:' line is in the status file, and name -> where all of them
        are for the names on more than one (performance: searching it for each owner's name took 0.18 s for
        /usr/bin's 247)."""
        # every 'Package:' line starts after a newline: the pieces after the first start with a package's name
        # (performance: one split, then C-level maps; a find() per line parses its arguments as a tuple, ~1.7 k
        # instructions, and a Python step per line cost ~5 k: 4 M of a repair's 17 M looking up owners)
        pieces = (b"\n" + self._status_data).split(b"\nPackage:")
        step = len(b"\nPackage:")
        heads = map(operator.itemgetter(0), map(bytes.partition, pieces[1:], itertools.repeat(b"\n")))
        names = list(map(str.strip, map(bytes.decode, heads, itertools.repeat("utf-8"), itertools.repeat("replace"))))
        # where the name of each piece starts in the file (the first: after pieces[0] and the separator, less
        # the newline put before the file)
        first_at = len(pieces[0]) + step - 1
        starts = list(itertools.accumulate(map(step.__add__, map(len, pieces[1:-1])), initial=first_at))
        first = dict(zip(reversed(names), reversed(starts)))
        every: dict[str, list[int]] = {}
        if len(first) < len(names):  # some name has several paragraphs (dpkg: one per architecture)
            for name, at in zip(names, starts):
                every.setdefault(name, []).append(at)
            every = {name: ats for name, ats in every.items() if len(ats) > 1}
        return first, every

    def _lines_of(self, name: str) -> Sequence[int]:
        """Where the 'Package:' lines naming `name` are in the status file (performance: searched for when few
        names will be asked; indexing every line costs ~5.6 M instructions, a search ~1 M)."""
        if (self._search_status and "_package_lines" not in self.__dict__ and self._searched < _SEARCHED_NAMES
                and name.isascii() and name and name == name.strip() and "\n" not in name):
            found = self._search_lines(name)
            if found is not None:
                self._searched += 1
                return found
        first, every = self._package_lines
        return every.get(name) or ((first[name],) if name in first else ())

    def _search_lines(self, name: str) -> list[int] | None:
        """What `_package_lines` holds for `name`, by searching the status file for the name: each line holding
        it that is a 'Package:' line of that value (None: it is named too often; the index is cheaper)."""
        data, needle = self._status_data, name.encode("ascii")
        found: list[int] = []
        at, hits = data.find(needle), 0
        while at >= 0:
            hits += 1
            if hits > _NAME_HITS:
                return None
            start, end = data.rfind(b"\n", 0, at) + 1, data.find(b"\n", at)
            end = len(data) if end < 0 else end
            head = data[start + len(b"Package:"): end]
            if data.startswith(b"Package:", start) and head.decode("utf-8", "replace").strip() == name:
                found.append(start + len(b"Package:"))
            at = data.find(needle, end)  # the next line holding it
        return found

    def _status(self, name: str) -> dict[tuple[str, str], tuple[str, str]]:
        """(package, arch) -> (version, arch) of the installed packages called `name`, in the order of the status
        file.  Only their paragraphs are parsed: those with a 'Package: NAME' line."""
        data = self._status_data
        found: dict[tuple[str, str], tuple[str, str]] = {}
        for at in self._lines_of(name):
            start = data.rfind(b"\n\n", 0, at)
            end = data.find(b"\n\n", at)
            block = data[start + 2 if start >= 0 else 0: end if end >= 0 else len(data)].decode("utf-8", "replace")
            for s in _stanzas(block):
                if s.get("Package") == name and s.get("Status", "").endswith(" installed"):
                    found[(name, s.get("Architecture", ""))] = (s.get("Version", ""), s.get("Architecture", ""))
        return found

    def _aliases(self, host: str) -> Iterator[str]:
        """`host` and the names usrmerge gives it (/usr/lib/x -> /lib/x when /lib links to usr/lib)."""
        yield host
        for top in _MERGED:
            if host.startswith(f"/usr/{top}/") and os.path.islink(self.search.host_path(f"/{top}")):
                yield host[len("/usr"):]

    @functools.cached_property
    def _distribution(self) -> str:
        return os_release_id(self.search) or "debian"

    def owner(self, path: str) -> Owner | None:
        listed = self._listed(_unroot(self.search, path))
        if listed is None:
            return None
        name, _, arch = listed.partition(":")
        status = self._status(name)
        version, arch = status.get((name, arch), None) or next(iter(status.values()), ("", arch))
        copyright_file = self.search.host_path(f"/usr/share/doc/{name}/copyright")
        licenses = (("copyright", copyright_file),) if os.path.isfile(copyright_file) else ()
        return Owner("deb", name, version or None, self._distribution,
                     (("arch", arch),) if arch else (), None, licenses)


def _name_stem(filename: str) -> str:
    """The start of a library's file name that Debian names its package by: 'libyaml-0.so.2' -> 'libyaml',
    'libLLVM-14.so.1' -> 'libllvm' (libllvm14), 'libgcc_s.so.1' -> 'libgcc' (libgcc-s1)."""
    end = min((i for i in map(filename.find, "._-") if i >= 0), default=len(filename))  # the first '.', '_' or '-'
    return filename[:end].lower()


class Apk:
    """Alpine's apk database: ``/lib/apk/db/installed`` (P: name, V: version, A: arch, L: license,
    F: a directory, R: a file in it)."""

    def __init__(self, search: SearchPaths) -> None:
        self.search = search

    @functools.cached_property
    def _index(self) -> tuple[dict[str, int], list[dict[str, str]], list[list[str]]]:
        files: dict[str, int] = {}
        packages: list[dict[str, str]] = []
        owned: list[list[str]] = []
        text = _read_text(self.search.host_path("/lib/apk/db/installed")) or ""
        for block in text.split("\n\n"):
            fields: dict[str, str] = {}
            paths: list[str] = []
            folder = ""
            for line in block.splitlines():
                key, _, value = line.partition(":")
                if key == "F":
                    folder = value
                elif key == "R":
                    paths.append("/" + posixpath.join(folder, value))
                elif key in ("P", "V", "A", "L"):
                    fields[key] = value
            if "P" in fields:
                for p in paths:
                    files.setdefault(p, len(packages))
                packages.append(fields)
                owned.append(paths)
        return files, packages, owned

    def owner(self, path: str) -> Owner | None:
        files, packages, owned = self._index
        index = files.get(_unroot(self.search, path))
        if index is None:
            return None
        fields = packages[index]
        licenses = tuple((posixpath.basename(p), self.search.host_path(p)) for p in owned[index]
                         if p.startswith("/usr/share/licenses/"))
        return Owner("apk", fields["P"], fields.get("V"), os_release_id(self.search) or "alpine",
                     (("arch", fields["A"]),) if fields.get("A") else (), fields.get("L"), licenses)


class Rpm:
    """The rpm database, through the ``rpm`` command (its format is a Berkeley DB / SQLite file)."""

    _FORMAT = "%{NAME}\\t%{VERSION}-%{RELEASE}\\t%{ARCH}\\t%{LICENSE}\\n"

    def __init__(self, search: SearchPaths) -> None:
        self.search = search

    @functools.cached_property
    def _command(self) -> list[str] | None:
        rpm = shutil.which("rpm")
        if rpm is None:
            return None
        try:  # where this rpm keeps its database (/var/lib/rpm, /usr/lib/sysimage/rpm; Debian's: ~/.rpmdb)
            dbpath = run_tool([rpm, "--eval", "%{_dbpath}"], timeout=60).decode(errors="replace").strip()
        except ToolError:
            return None
        if not dbpath.startswith("/") or not os.path.isdir(self.search.host_path(dbpath)):
            log.debug("no rpm database at %s below %s", dbpath, self.search.sysroot)
            return None
        return [rpm, "--root", self.search.sysroot or "/"]

    def owner(self, path: str) -> Owner | None:
        if self._command is None:
            return None
        host = _unroot(self.search, path)
        try:
            out = run_tool([*self._command, "-qf", "--queryformat", self._FORMAT, host], timeout=60)
            name, version, arch, license_ = out.decode(errors="replace").splitlines()[0].split("\t")
            listed = run_tool([*self._command, "-qL", name], timeout=60).decode(errors="replace").split()
        except (ToolError, ValueError, IndexError):
            return None
        licenses = tuple((posixpath.basename(p), self.search.host_path(p)) for p in listed
                         if p.startswith("/") and os.path.isfile(self.search.host_path(p)))
        return Owner("rpm", name, version, os_release_id(self.search), (("arch", arch),), license_, licenses)


def _unroot(search: SearchPaths, path: str) -> str:
    """A path below the sysroot as the root itself names it."""
    root = (search.sysroot or "/").rstrip("/")
    return path[len(root):] if root and (path == root or path.startswith(root + "/")) else path


# ---- layouts known by path ----

class Homebrew:
    """A Homebrew keg: ``<prefix>/Cellar/NAME/VERSION/...`` (/opt/homebrew, /usr/local, linuxbrew, or any
    prefix); the keg's root holds the formula's license files."""

    def owner(self, path: str) -> Owner | None:
        parts = path.split("/")
        if "Cellar" not in parts:
            return None
        at = len(parts) - 1 - parts[::-1].index("Cellar")
        if len(parts) < at + 4:  # Cellar/NAME/VERSION/file
            return None
        keg = "/".join(parts[: at + 3])
        return Owner("homebrew", parts[at + 1], parts[at + 2], licenses=_license_files(keg))


class Conda:
    """A conda prefix: ``conda-meta/NAME-VERSION-BUILD.json`` lists each package's files (relative to the
    prefix); its license files are in the package cache (``<pkgs>/NAME-VERSION-BUILD/info/licenses``)."""

    def __init__(self) -> None:
        self._prefixes: dict[str, Mapping[str, Mapping[str, object]]] = {}

    def owner(self, path: str) -> Owner | None:
        prefix = _parent_with(path, "conda-meta")
        if prefix is None:
            return None
        if prefix not in self._prefixes:
            self._prefixes[prefix] = _conda_files(prefix)
        record = self._prefixes[prefix].get(posixpath.relpath(path, prefix))
        if record is None:
            return None
        qualifiers = tuple((k, str(record[k])) for k in ("build", "channel", "subdir") if record.get(k))
        return Owner("conda", str(record["name"]), str(record.get("version") or "") or None, None, qualifiers,
                     str(record.get("license") or "") or None, _conda_licenses(prefix, record))


def _conda_files(prefix: str) -> Mapping[str, Mapping[str, object]]:
    """relative path -> the conda-meta record of the package that installed it."""
    meta = posixpath.join(prefix, "conda-meta")
    files: dict[str, Mapping[str, object]] = {}
    try:
        names = sorted(n for n in os.listdir(meta) if n.endswith(".json"))
    except OSError:
        return files
    for name in names:
        try:
            record = json.loads(_read_text(posixpath.join(meta, name)) or "null")
        except json.JSONDecodeError:
            log.warning("%s/%s is not JSON: skipped", meta, name)
            continue
        if isinstance(record, dict) and isinstance(record.get("files"), list) and "name" in record:
            for rel in record["files"]:
                files.setdefault(str(rel), record)
    return files


def _conda_licenses(prefix: str, record: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    dist = f"{record['name']}-{record.get('version')}-{record.get('build')}"
    places = [str(record.get("extracted_package_dir") or "")]
    places += [posixpath.join(prefix, "pkgs", dist), posixpath.join(prefix, "..", "..", "pkgs", dist)]
    for place in places:
        licenses = posixpath.normpath(posixpath.join(place, "info", "licenses")) if place else ""
        if licenses and os.path.isdir(licenses):
            return _files_below(licenses)
    return ()


class Vcpkg:
    """A vcpkg tree: ``.../installed/<triplet>/{bin,lib,debug/...}``; ``installed/vcpkg/info/PORT_VERSION_
    TRIPLET.list`` lists each port's files (relative to ``installed``); ``share/PORT/copyright`` its license."""

    def __init__(self) -> None:
        self._trees: dict[str, Mapping[str, tuple[str, str, str]]] = {}

    def owner(self, path: str) -> Owner | None:
        parts = path.split("/")
        if "installed" not in parts:
            return None
        at = len(parts) - 1 - parts[::-1].index("installed")
        installed = "/".join(parts[: at + 1])
        if installed not in self._trees:
            self._trees[installed] = _vcpkg_files(installed)
        port = self._trees[installed].get("/".join(parts[at + 1:]))
        if port is None:
            return None
        name, version, triplet = port
        copyright_file = posixpath.join(installed, triplet, "share", name, "copyright")
        licenses = (("copyright", copyright_file),) if os.path.isfile(copyright_file) else ()
        return Owner("vcpkg", name, version, None, (("triplet", triplet),), None, licenses)


def _vcpkg_files(installed: str) -> Mapping[str, tuple[str, str, str]]:
    info = posixpath.join(installed, "vcpkg", "info")
    files: dict[str, tuple[str, str, str]] = {}
    try:
        lists = sorted(n for n in os.listdir(info) if n.endswith(".list"))
    except OSError:
        return files
    for name in lists:
        port, _, rest = name[: -len(".list")].partition("_")
        version, _, triplet = rest.rpartition("_")
        for line in (_read_text(posixpath.join(info, name)) or "").splitlines():
            files.setdefault(line.strip().rstrip("/"), (port, version, triplet))
    return files


class Msys2:
    """An MSYS2 root: ``mingw64/``, ``ucrt64/``, ``clang64/``, ... beside ``var/lib/pacman/local/NAME-VERSION/``
    (``desc``: %NAME%, %VERSION%, %ARCH%, %LICENSE%; ``files``: %FILES%, relative to the root)."""

    def __init__(self) -> None:
        self._roots: dict[str, Mapping[str, tuple[Mapping[str, str], tuple[str, ...]]]] = {}

    def owner(self, path: str) -> Owner | None:
        parts = path.split("/")
        for at in range(len(parts) - 1, 0, -1):
            if parts[at] in _MSYS2_ENVS:
                root = "/".join(parts[:at]) or "/"
                if os.path.isdir(posixpath.join(root, "var/lib/pacman/local")):
                    break
        else:
            return None
        if root not in self._roots:
            self._roots[root] = _pacman_files(root)
        found = self._roots[root].get("/".join(parts[at:]))
        if found is None:
            return None
        desc, owned = found
        licenses = tuple((posixpath.relpath(p, p.split("/share/licenses/")[0] + "/share/licenses"),
                          posixpath.join(root, p)) for p in owned
                         if "/share/licenses/" in f"/{p}" and not p.endswith("/"))
        arch = desc.get("ARCH", "")
        return Owner("msys2", desc["NAME"], desc.get("VERSION"), "msys2", (("arch", arch),) if arch else (),
                     desc.get("LICENSE"), licenses)


def _pacman_sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {}
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        if lines and lines[0].startswith("%") and lines[0].endswith("%"):
            sections[lines[0].strip("%")] = lines[1:]
    return sections


def _pacman_files(root: str) -> Mapping[str, tuple[Mapping[str, str], tuple[str, ...]]]:
    local = posixpath.join(root, "var/lib/pacman/local")
    files: dict[str, tuple[Mapping[str, str], tuple[str, ...]]] = {}
    try:
        entries = sorted(os.listdir(local))
    except OSError:
        return files
    for entry in entries:
        desc = _pacman_sections(_read_text(posixpath.join(local, entry, "desc")) or "")
        owned = tuple(_pacman_sections(_read_text(posixpath.join(local, entry, "files")) or "").get("FILES", ()))
        if not desc.get("NAME"):
            continue
        fields = {k: " ".join(v) for k, v in desc.items() if v}
        for rel in owned:
            files.setdefault(rel, (fields, owned))
    return files


def _parent_with(path: str, marker: str) -> str | None:
    """The nearest parent directory of `path` holding a directory `marker`."""
    parent = posixpath.dirname(path)
    while True:
        if os.path.isdir(posixpath.join(parent, marker)):
            return parent
        up = posixpath.dirname(parent)
        if up == parent:
            return None
        parent = up


class Owners:
    """The owner of a host file, asked of each layout in turn: by path first (exact), then the databases."""

    def __init__(self, search: SearchPaths, lookups: int | None = None) -> None:
        """`lookups`: how many files the caller will ask about, when it knows (performance only: dpkg's status
        file is searched for the packages of a few, indexed for more)."""
        self.layouts: tuple[Layout, ...] = (Homebrew(), Conda(), Vcpkg(), Msys2(), Dpkg(search, lookups), Apk(search),
                                            Rpm(search))
        self._cache: dict[str, Owner | None] = {}

    def owner(self, path: str) -> Owner | None:
        """The package that installed `path` (a path below the sysroot), or None when no layout knows."""
        if path not in self._cache:
            self._cache[path] = next((o for o in (lay.owner(path) for lay in self.layouts) if o is not None), None)
        return self._cache[path]
