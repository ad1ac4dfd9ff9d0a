"""Where the files under analysis come from: a staged directory, a wheel, or one binary.

A :class:`Tree` gives every file a place in one absolute posix namespace: ``tree.root``
joined with the file's relative path.  For a directory that root is the directory's real
path (so ``$ORIGIN`` and absolute run paths line up with the host), for a wheel it is a
virtual directory ``/<wheel file name>`` that does not exist on the host.  Paths outside
the tree are read through :class:`HostFS`.

Nothing here extracts a wheel to disk: members are read from the zip.
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import posixpath
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol, cast

from .errors import StageError, WheelFormatError

log = logging.getLogger(__name__)

MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit


def _zlib_inflate(data: memoryview, wbits: int) -> bytes:
    return zlib.decompress(data, wbits)


def _fast_inflate() -> Callable[[memoryview, int], bytes]:
    try:
        from isal import isal_zlib  # optional: ISA-L, ~2x faster inflate
    except ImportError:
        return _zlib_inflate
    return cast("Callable[[memoryview, int], bytes]", isal_zlib.decompress)


_inflate = _fast_inflate()


class Tree(Protocol):
    root: str  # absolute posix path, the tree's place in the resolver's namespace

    def files(self) -> list[str]:
        """Relative posix paths of every regular file (symlinks to files included), sorted."""
        ...

    def open(self, rel: str) -> BinaryIO:
        """A seekable binary reader for a file of the tree."""
        ...

    def head(self, rel: str, size: int) -> bytes:
        """The first `size` bytes of a file (cheap, for sniffing)."""
        ...

    def size(self, rel: str) -> int:
        """Size in bytes (uncompressed), 0 when unknown."""
        ...

    def exists(self, rel: str) -> bool: ...

    def is_file(self, rel: str) -> bool: ...

    def identity(self, rel: str) -> str:
        """The same string for two names of one file (symlinks resolved)."""
        ...


def in_tree(root: str, path: str) -> str | None:
    """`path` relative to `root` when it lies inside it, else None."""
    if path == root:
        return ""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _check_rel(rel: str, where: str) -> str:
    norm = posixpath.normpath(rel) if rel else ""
    if rel.startswith("/") or "\\" in rel or norm == ".." or norm.startswith("../") or (
        len(rel) > 1 and rel[1] == ":"
    ):
        raise WheelFormatError(f"unsafe member name {rel!r} in {where!r}")
    return "" if norm == "." else norm


class DirTree:
    """A staged directory.  Symlinks that stay inside are followed; others are errors."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        real = os.path.realpath(os.fspath(path))
        if not os.path.isdir(real):
            raise StageError(f"not a directory: {os.fspath(path)!r}")
        self.root = real
        self._files: list[str] | None = None
        self.broken: dict[str, str] = {}  # rel -> why it is not a usable file

    def _resolve(self, rel: str) -> str:
        """The real relative path of `rel` after following links that stay in the tree."""
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part == "..":
                if not done:
                    raise StageError(f"{rel!r} escapes the tree {self.root!r}")
                done.pop()
                continue
            full = os.path.join(self.root, *done, part)
            if not os.path.islink(full):
                done.append(part)
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise StageError(f"symlink loop at {rel!r} in {self.root!r}")
            target = os.readlink(full)
            if target.startswith("/"):
                inside = in_tree(self.root, posixpath.normpath(target))
                if inside is None:
                    raise StageError(f"symlink {rel!r} points outside the tree: {target!r}")
                done = []
                parts = [p for p in inside.split("/") if p] + parts
            else:
                parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        return "/".join(done)

    def identity(self, rel: str) -> str:
        return self._resolve(rel)

    def files(self) -> list[str]:
        if self._files is None:
            self._files = sorted(self._walk())
        return list(self._files)

    def _walk(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            base = os.path.relpath(dirpath, self.root)
            for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                rel = name if base == "." else f"{base}/{name}".replace(os.sep, "/")
                if self._usable(rel):
                    yield rel

    def _usable(self, rel: str) -> bool:
        try:
            real = self._resolve(rel)
            mode = os.stat(os.path.join(self.root, real)).st_mode
        except (StageError, OSError) as exc:
            self.broken[rel] = str(exc)
            log.debug("skipping %r: %s", rel, exc)
            return False
        return stat.S_ISREG(mode)

    def open(self, rel: str) -> BinaryIO:
        return open(os.path.join(self.root, self._resolve(rel)), "rb")

    def head(self, rel: str, size: int) -> bytes:
        with self.open(rel) as fp:
            return fp.read(size)

    def size(self, rel: str) -> int:
        try:
            return os.path.getsize(os.path.join(self.root, self._resolve(rel)))
        except (OSError, StageError):
            return 0

    def exists(self, rel: str) -> bool:
        try:
            return os.path.exists(os.path.join(self.root, self._resolve(rel)))
        except StageError:
            return False

    def is_file(self, rel: str) -> bool:
        try:
            return os.path.isfile(os.path.join(self.root, self._resolve(rel)))
        except StageError:
            return False


class FileTree(DirTree):
    """One binary: its directory is the root, and it is the only file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        full = os.path.abspath(os.fspath(path))
        if not os.path.isfile(full):
            raise StageError(f"not a file: {os.fspath(path)!r}")
        super().__init__(os.path.dirname(full))
        self._only = os.path.basename(full)

    def files(self) -> list[str]:
        return [self._only]

    def is_file(self, rel: str) -> bool:
        """Only the one file is a member; its neighbours are host files."""
        return rel == self._only and super().is_file(rel)


class WheelTree:
    """The members of a wheel (a zip), read in memory, under the virtual root ``/<file name>``.

    The archive is memory-mapped and members are inflated in one call each (with ISA-L's
    ``isal`` when installed: about twice as fast as zlib on a 400 MB library).  CRCs are
    not checked here: RECORD hashes are the wheel's integrity check.
    """

    def __init__(
        self, path: str | os.PathLike[str], root: str | None = None, *, require_wheel: bool = True
    ) -> None:
        self.path = os.fspath(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
            with open(self.path, "rb") as fp:
                self._map = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise WheelFormatError(f"no such wheel: {self.path!r}") from None
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise WheelFormatError(f"not a zip archive: {self.path!r} ({exc})") from None
        self.root = root or "/" + os.path.basename(self.path)
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._dirs: set[str] = {""}
        self._index(require_wheel)

    def _index(self, require_wheel: bool) -> None:
        for info in self._zip.infolist():
            rel = _check_rel(info.filename.rstrip("/"), self.path)
            if info.is_dir():
                self._dirs.add(rel)
                continue
            self._members[rel] = info
            parent = posixpath.dirname(rel)
            while parent not in self._dirs:
                self._dirs.add(parent)
                parent = posixpath.dirname(parent)
        if require_wheel and not any(
            m.count("/") == 1 and m.endswith(".dist-info/WHEEL") for m in self._members
        ):
            raise WheelFormatError(f"not a wheel: no top-level .dist-info/WHEEL in {self.path!r}")

    def close(self) -> None:
        self._zip.close()
        self._map.close()

    def files(self) -> list[str]:
        return sorted(self._members)

    def _info(self, rel: str) -> zipfile.ZipInfo:
        info = self._members.get(rel)
        if info is None:
            raise FileNotFoundError(f"{rel!r} is not in {self.path!r}")
        if info.flag_bits & 0x1:
            raise WheelFormatError(f"{rel!r} in {self.path!r} is encrypted")
        return info

    def _raw(self, rel: str, info: zipfile.ZipInfo) -> memoryview:
        """The member's stored bytes, found through its local header."""
        start = info.header_offset
        local = self._map[start : start + 30]
        if len(local) < 30 or local[:4] != b"PK\x03\x04":
            raise WheelFormatError(f"bad local header for {rel!r} in {self.path!r}")
        name_len, extra_len = struct.unpack_from("<HH", local, 26)
        data = start + 30 + name_len + extra_len
        if data + info.compress_size > len(self._map):
            raise WheelFormatError(f"{rel!r} runs past the end of {self.path!r}")
        return memoryview(self._map)[data : data + info.compress_size]

    def _bytes(self, rel: str, limit: int | None = None) -> bytes:
        info = self._info(rel)
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                raw = self._raw(rel, info)
                return bytes(raw if limit is None else raw[:limit])
            if info.compress_type == zipfile.ZIP_DEFLATED:
                raw = self._raw(rel, info)
                if limit is None:
                    return bytes(_inflate(raw, -15))
                return zlib.decompressobj(-15).decompress(raw[: max(4096, limit)], limit)
            with self._zip.open(info) as fp:  # bzip2 / lzma: rare in wheels
                return fp.read(-1 if limit is None else limit)
        except (zlib.error, zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
            raise WheelFormatError(f"cannot read {rel!r} from {self.path!r}: {exc}") from None

    def open(self, rel: str) -> BinaryIO:
        return io.BytesIO(self._bytes(rel))

    def head(self, rel: str, size: int) -> bytes:
        return self._bytes(rel, size)

    def size(self, rel: str) -> int:
        info = self._members.get(rel)
        return info.file_size if info is not None else 0

    def exists(self, rel: str) -> bool:
        return rel in self._members or rel in self._dirs

    def is_file(self, rel: str) -> bool:
        return rel in self._members

    def identity(self, rel: str) -> str:
        return rel


class HostFS:
    """Files outside the tree.  Host paths are already below the sysroot (absolute symlinks
    found on the way are re-rooted below it); other paths are real paths as they are."""

    def __init__(self, sysroot: str = "/") -> None:
        self.sysroot = sysroot.rstrip("/") or "/"

    def real(self, path: str) -> str | None:
        """Canonical path of an existing regular file, or None."""
        if self.sysroot == "/":
            real = os.path.realpath(path)
            return real if os.path.isfile(real) else None
        return self._real_under(path)

    def _real_under(self, path: str) -> str | None:
        inside = in_tree(self.sysroot, path)
        if inside is None:  # a real path ($ORIGIN of a tree file, a -L dir): not below the sysroot
            real = os.path.realpath(path)
            return real if os.path.isfile(real) else None
        parts = [p for p in inside.split("/") if p]
        done: list[str] = []
        for _ in range(MAX_LINK_HOPS * 4):
            if not parts:
                full = posixpath.join(self.sysroot, *done)
                return full if os.path.isfile(full) else None
            part = parts.pop(0)
            if part == "..":
                if done:
                    done.pop()
                continue
            full = posixpath.join(self.sysroot, *done, part)
            if os.path.islink(full):
                target = os.readlink(full)
                if target.startswith("/"):
                    done = []
                parts = [p for p in target.split("/") if p] + parts
            else:
                done.append(part)
        return None

    def open(self, path: str) -> BinaryIO:
        real = self.real(path)
        if real is None:
            raise FileNotFoundError(path)
        return open(real, "rb")


def open_tree(path: str | os.PathLike[str]) -> DirTree | WheelTree:
    """The tree for a ``.whl``, a directory or one file."""
    text = os.fspath(path)
    if os.path.isdir(text):
        return DirTree(text)
    if not os.path.exists(text):
        raise StageError(f"no such file or directory: {text!r}")
    if text.endswith(".whl"):
        return WheelTree(text)
    return FileTree(text)
