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
import os
import posixpath
import queue
import stat
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from ..errors import StageError, WheelFormatError
from ..wheel.inflate import errors, inflate_whole, inflater
from ..wheel.zipread import READ_ERRORS, data_offset, open_zip

if TYPE_CHECKING:
    from ..wheel.verify import SharedDigests

log = logging.getLogger(__name__)

MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit


def _finish_errors() -> tuple[type[Exception], ...]:
    return (*errors(), OSError)


def _read_errors() -> tuple[type[Exception], ...]:
    """What reading a member may raise (evaluated in ``except`` clauses only: see inflate.py)."""
    return (*errors(), *READ_ERRORS)


HASH_APART_MIN = 256 << 10  # members read whole from this size on are hashed on a thread of their own
KEEP_MIN, KEEP_BYTES = 256 << 10, 32 << 20  # members kept inflated for a second read: size, total
STREAM_ABOVE = 16 << 20  # deflated members bigger than this are streamed, never held whole
_RAW_CHUNK = 1 << 18  # compressed bytes read at a time
_OUT_CHUNK = 1 << 20  # inflated bytes produced at a time
_HEAD_KEEP = 1 << 16  # the first bytes of a stream stay decoded: headers are read again and again
PREFETCH_PART = 0.5  # of a member WheelTree.prefetch inflates ahead of its reader at most
FINISH_MIN = 8 << 20  # compressed bytes a hashing stream always inflates to the end on close


class _HashThread:
    """sha256 of the chunks given to :meth:`update`, in order, computed on a thread of its own
    (hashlib releases the GIL): the stream's reader only inflates, the hash runs beside it."""

    def __init__(self) -> None:
        import hashlib  # performance: hashing is not for `show` (~2.5 ms with OpenSSL; csv for RECORD)

        self._hash = hashlib.sha256()
        self._queue: queue.SimpleQueue[bytes | memoryview | None] = queue.SimpleQueue()
        self._room = threading.BoundedSemaphore(16)  # chunks waiting at most (~16 MiB)
        self._thread = threading.Thread(target=self._run, name="tree-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._hash.update(chunk)
            self._room.release()

    def update(self, chunk: bytes | memoryview) -> None:
        self._room.acquire()
        self._queue.put(chunk)

    def result(self) -> str:
        """The digest of everything given (waits for the thread; call once)."""
        self._queue.put(None)
        self._thread.join()
        from ..wheel.record import encode_digest

        return encode_digest(self._hash.digest(), self._hash.name)


class _Pass:
    """One inflation pass through a member: the inflater, the compressed bytes it took, and the
    inflated bytes [buf_start, end) it holds."""

    __slots__ = ("buf", "buf_start", "inflater", "raw_pos")

    def __init__(self) -> None:
        self.inflater: Any = inflater()
        self.raw_pos = 0
        self.buf = bytearray()
        self.buf_start = 0

    def end(self) -> int:
        return self.buf_start + len(self.buf)

    def park(self) -> _Pass:
        """Keep only the inflater's state (its next bytes come after end())."""
        self.buf_start, self.buf = self.end(), bytearray()
        return self


class _RangeStream(io.RawIOBase):
    """A read-only seekable stream of `size` bytes, each read served by `_range(start, size)`."""

    def __init__(self, size: int, what: str) -> None:
        super().__init__()
        self._size, self._what, self._pos = size, what, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset} in {self._what}")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        data = self._range(self._pos, min(len(buffer), max(0, self._size - self._pos)))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        data = self._range(self._pos, max(0, self._size - self._pos))
        self._pos += len(data)
        return data

    def _range(self, start: int, size: int) -> bytes:
        raise NotImplementedError


class _InflateStream(_RangeStream):
    """A deflated zip member as a seekable stream that never holds the whole member.

    It inflates forward, keeping only what the current read needs (and the first
    ``_HEAD_KEEP`` bytes); a seek backwards past that restarts inflation from the member's
    start, and the pass that got furthest is kept (parked), so a later read beyond it goes on
    from there.  Readers that read in file order (dynawheel's ELF reader does) pay one pass.

    With `on_digest`, every inflated byte is also hashed once, in order, and closing the stream
    finishes the member when that is cheap (no more than ``FINISH_MIN`` compressed bytes or
    than it already inflated are left), then calls ``on_digest(digest or None)``: None when it
    did not finish.
    """

    def __init__(self, read_raw: Callable[[int, int], bytes], compressed: int, size: int, what: str,
                 on_digest: Callable[[str | None], None] | None = None) -> None:
        super().__init__(size, what)
        self._read_raw, self._compressed = read_raw, compressed
        self._head = b""
        self._pass = _Pass()
        self._parked: _Pass | None = None  # the pass that got furthest, when it is not the current one
        self.restarts = 0
        self._on_digest = on_digest
        self._hash = _HashThread() if on_digest is not None else None
        self._hashed = 0  # inflated bytes fed to _hash (the furthest any pass got)

    def _range(self, start: int, size: int) -> bytes:
        end = start + size
        if size <= 0:
            return b""
        if end <= len(self._head):
            return self._head[start:end]
        self._choose_pass(start)
        try:
            self._fill(start, end)
        except errors() as exc:
            raise WheelFormatError(f"cannot inflate {self._what}: {exc}") from None
        lo = start - self._pass.buf_start
        return bytes(self._pass.buf[lo : lo + size])

    def _choose_pass(self, start: int) -> None:
        """A pass that can serve a read from `start`: the current one, the parked one, or a new one."""
        parked = self._parked
        if parked is not None and start >= parked.end() > self._pass.end():
            self._pass, self._parked = parked, None  # forward again, beyond where the restart began
        elif start < self._pass.buf_start:
            log.debug("backward seek to %d in %s: inflating again from the start", start, self._what)
            if parked is None or self._pass.end() > parked.end():
                self._parked = self._pass.park()
            self._pass = _Pass()
            self.restarts += 1

    def _fill(self, start: int, end: int) -> None:
        """Inflate until byte `end` is in the buffer; drop what lies before `start`."""
        p = self._pass
        while p.end() < end:
            chunk = self._next_chunk()
            if chunk is None:
                break  # the member ends early: the read comes back short
            p.buf += chunk
            if p.buf_start == 0 and len(self._head) < _HEAD_KEEP:
                self._head = bytes(p.buf[:_HEAD_KEEP])
            if start > p.buf_start:
                drop = min(start - p.buf_start, len(p.buf))
                del p.buf[:drop]
                p.buf_start += drop
        if self._parked is not None and p.end() >= self._parked.end():
            self._parked = None  # this pass got as far: the parked one is of no more use

    def _next_chunk(self) -> bytes | None:
        p = self._pass
        if p.inflater.eof:
            return None
        raw = p.inflater.unconsumed_tail
        if not raw:
            if p.raw_pos >= self._compressed:
                return None
            raw = self._read_raw(p.raw_pos, min(_RAW_CHUNK, self._compressed - p.raw_pos))
            if not raw:
                return None
            p.raw_pos += len(raw)
        out: bytes = p.inflater.decompress(raw, _OUT_CHUNK)
        if self._hash is not None:
            self._feed(p.end(), out)
        return out

    def _feed(self, at: int, out: bytes) -> None:
        """Hash the part of `out` (inflated bytes from offset `at`) that is new."""
        new = at + len(out) - self._hashed
        if new > 0 and self._hash is not None:
            self._hash.update(memoryview(out)[len(out) - new :] if new < len(out) else out)
            self._hashed += new

    def _finish(self) -> str | None:
        """The digest of the whole member, inflating what is left when that is cheap; else None."""
        if self._hash is None:
            return None
        whole = self._to_the_end()
        digest = self._hash.result()  # ends the thread in every case
        return digest if whole else None

    def _to_the_end(self) -> bool:
        """Inflate (and so hash) the rest of the member, when that is cheap; False when not done."""
        if self._hash is None:
            return False
        if self._parked is not None and self._parked.end() > self._pass.end():
            self._pass, self._parked = self._parked, None
        p = self._pass
        if p.end() != self._hashed:
            return False
        left = self._compressed - p.raw_pos + len(p.inflater.unconsumed_tail)
        if left > max(FINISH_MIN, self._compressed - left):
            log.debug("not hashing %s to its end: %d of %d compressed bytes left", self._what, left,
                      self._compressed)
            return False
        try:
            p.park()
            while (chunk := self._next_chunk()) is not None:
                p.buf_start += len(chunk)  # hashed, not kept
            self._hash.update(p.inflater.flush())
        except _finish_errors() as exc:
            log.debug("cannot hash %s to its end: %s", self._what, exc)
            return False
        return True

    def close(self) -> None:
        if not self.closed and self._on_digest is not None:
            on_digest, self._on_digest = self._on_digest, None
            on_digest(self._finish())
        super().close()

    def discard(self) -> None:
        """Close without finishing the hash: the member goes back to the RECORD check."""
        if not self.closed and self._on_digest is not None:
            on_digest, self._on_digest = self._on_digest, None
            if self._hash is not None:
                self._hash.result()  # ends its thread
            on_digest(None)
        self.close()

    def pump(self, until: int, stop: threading.Event) -> None:
        """Inflate (and hash) ahead, keeping nothing but the head, up to about `until` inflated
        bytes or until `stop` is set (the reader takes the stream over)."""
        p = self._pass
        try:
            while p.end() < until and not stop.is_set():
                at = p.end()
                self._fill(at + 1, at + 1)
                if p.end() == at:
                    break  # the member's end
        except errors() as exc:
            log.debug("prefetch of %s stopped: %s", self._what, exc)  # the reader meets it again, and says so


class _StoredStream(_RangeStream):
    """A big stored zip member as a seekable stream over the archive (os.pread): never read whole."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__(size, "a stored member")
        self._fd, self._start = fd, start

    def _range(self, start: int, size: int) -> bytes:
        return os.pread(self._fd, size, self._start + start) if size > 0 else b""


class Tree(Protocol):
    root: str  # absolute posix path, the tree's place in the resolver's namespace

    @property
    def broken(self) -> Mapping[str, str]:
        """Files seen but not usable (a link out of the tree...): rel -> why."""
        ...

    def close(self) -> None:
        """Release what the tree holds open (nothing for a directory)."""
        ...

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
    if (rel and rel[0] not in "/." and rel[-1] != "/" and rel[1:2] != ":" and "\\" not in rel and "/." not in rel
            and "//" not in rel):
        return rel  # performance: already normal and safe (no '.', '..' or empty part); most names are
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

    def close(self) -> None:
        """Nothing to release: files are opened per read."""

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
    """The members of a wheel (a zip), read from the archive, under the virtual root ``/<file name>``.

    Stored bytes are read with ``os.pread`` (thread-safe; not mapped: mapped pages that were
    read count in the process's RSS).  Members up to ``STREAM_ABOVE`` are inflated in one call
    (libdeflate when installed, see inflate.py), and after :meth:`keep_reads` the big ones among
    them kept for a second read; bigger deflated ones are opened as an :class:`_InflateStream`,
    never held whole.  CRCs are not checked here:
    RECORD hashes are the wheel's integrity check.

    After :meth:`share_digests`, members read whole (and streams read far enough) are also
    hashed (sha256) on the bytes inflated anyway, for the RECORD check (wheel/verify.py).
    """

    def __init__(
        self, path: str | os.PathLike[str], root: str | None = None, *, require_wheel: bool = True
    ) -> None:
        self.path = os.fspath(path)
        self.broken: dict[str, str] = {}  # member names are checked when listed: none is broken later
        self._zip = open_zip(self.path)  # every member's method, flags and name checked
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
            self._length = os.fstat(self._fd).st_size
        except OSError as exc:
            self._zip.close()
            raise WheelFormatError(f"cannot read {self.path!r}: {exc.strerror}") from None
        self.root = root or "/" + os.path.basename(self.path)
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._dirs: set[str] = {""}
        self._shared: SharedDigests | None = None
        self._prefetched: dict[str, _InflateStream] = {}
        self._prefetch_stop = threading.Event()
        self._prefetch_thread: threading.Thread | None = None
        self._kept: dict[str, bytes] = {}  # big members inflated whole lately, oldest first (see _keep)
        self._kept_lock = threading.Lock()
        self._keep_bytes = 0  # keep_reads()
        self._index(require_wheel)

    @property
    def zip(self) -> zipfile.ZipFile:
        """The archive, already read (its central directory): for callers that need ZipInfo objects;
        closed by :meth:`close`."""
        return self._zip

    def share_digests(self, shared: SharedDigests) -> None:
        """Performance: from now on, hash the members this tree inflates whole into `shared`, so the
        RECORD check need not inflate them again (one inflation per member in all)."""
        self._shared = shared

    def prefetch(self, starts: tuple[bytes, ...], part: float = PREFETCH_PART) -> None:
        """Performance: start inflating the big (streamed) members whose content starts with one of
        `starts` now, the biggest first, on a thread, up to `part` of each (a reader that needs
        bytes before the point reached pays a new pass); open() hands the pass over, so the reader
        goes on where the prefetch got."""
        todo = []
        big = sorted((i for i in self._members.items() if self._streamed(i[1])), key=lambda i: -i[1].file_size)
        for rel, info in big:
            if rel in self._prefetched:
                continue
            try:
                if not self._bytes(rel, 16).startswith(starts):
                    continue
                stream = self._new_stream(rel, info)
            except WheelFormatError:
                continue  # the reader meets it again, and says so
            self._prefetched[rel] = stream
            todo.append((stream, int(info.file_size * part)))
        if not todo:
            return
        stop = self._prefetch_stop

        def run() -> None:
            for stream, until in todo:
                stream.pump(until, stop)

        self._prefetch_thread = threading.Thread(target=run, name="tree-prefetch", daemon=True)
        self._prefetch_thread.start()

    def _stop_prefetch(self) -> None:
        self._prefetch_stop.set()
        thread = self._prefetch_thread
        if thread is not None:
            thread.join()

    def end_prefetch(self) -> None:
        """Stop prefetching; members prefetched but not opened are hashed to their end when that is
        cheap (see _InflateStream), else given back to the RECORD check."""
        self._stop_prefetch()
        while self._prefetched:
            self._prefetched.popitem()[1].close()

    def _index(self, require_wheel: bool) -> None:
        for info in self._zip.infolist():
            rel = _check_rel(info.filename.rstrip("/"), self.path)
            if not rel:
                raise WheelFormatError(f"member {info.filename!r} of {self.path!r} has no name")
            if rel in self._members:
                raise WheelFormatError(f"member {rel!r} appears twice in {self.path!r}")
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
        self._stop_prefetch()
        while self._prefetched:  # not opened: a failure on the way (end_prefetch() was not called)
            self._prefetched.popitem()[1].discard()
        self._kept.clear()
        self._zip.close()
        os.close(self._fd)

    def files(self) -> list[str]:
        return sorted(self._members)

    def _info(self, rel: str) -> zipfile.ZipInfo:
        info = self._members.get(rel)
        if info is None:
            raise FileNotFoundError(f"{rel!r} is not in {self.path!r}")
        if info.flag_bits & 0x1:
            raise WheelFormatError(f"{rel!r} in {self.path!r} is encrypted")
        return info

    def _data_offset(self, rel: str, info: zipfile.ZipInfo) -> int:
        """Where the member's stored bytes start, found through its local header."""
        return data_offset(self._fd, info, self.path, self._length)

    def _raw(self, rel: str, info: zipfile.ZipInfo, limit: int | None = None) -> bytes:
        """The member's stored bytes (the first `limit` of them)."""
        size = info.compress_size if limit is None else min(limit, info.compress_size)
        return os.pread(self._fd, size, self._data_offset(rel, info))

    def _bytes(self, rel: str, limit: int | None = None) -> bytes:
        info = self._info(rel)
        try:
            if info.compress_type == zipfile.ZIP_STORED:
                return self._hashed(info, self._raw(rel, info, limit), limit)
            if info.compress_type == zipfile.ZIP_DEFLATED:
                if limit is None:
                    return self._kept.get(rel) or self._keep(rel, self._hashed(
                        info, inflate_whole(self._raw(rel, info), info.file_size), limit))
                return zlib.decompressobj(-15).decompress(self._raw(rel, info, max(4096, limit)), limit)
            with self._zip.open(info) as fp:  # bzip2 / LZMA: rare in wheels, small (open_zip checked the size)
                return fp.read(-1 if limit is None else limit)
        except _read_errors() as exc:
            raise WheelFormatError(f"cannot read {rel!r} from {self.path!r}: {exc}") from None

    def keep_reads(self, limit: int = KEEP_BYTES) -> None:
        """Performance: from now on keep the big members read whole (`limit` bytes of them in all,
        the latest) for a second read: repair reads the binaries it analysed again to edit them."""
        self._keep_bytes = limit

    def _keep(self, rel: str, data: bytes) -> bytes:
        limit = self._keep_bytes
        if len(data) < KEEP_MIN or len(data) > limit:
            return data
        with self._kept_lock:
            self._kept[rel] = data
            total = sum(map(len, self._kept.values()))
            while total > limit:
                total -= len(self._kept.pop(next(iter(self._kept))))
        return data

    def _hashed(self, info: zipfile.ZipInfo, data: bytes, limit: int | None) -> bytes:
        """`data`, the whole member when `limit` is None: hashed for the shared digests (a big one
        on the digests' own thread, beside the reader)."""
        shared = self._shared
        if limit is None and shared is not None and shared.claim(info.filename, "reader"):
            if len(data) >= HASH_APART_MIN:
                shared.put_soon(info.filename, data)
            else:
                import hashlib

                from ..wheel.record import encode_digest

                shared.put(info.filename, encode_digest(hashlib.sha256(data).digest()))
        return data

    def open(self, rel: str) -> BinaryIO:
        info = self._info(rel)
        if self._streamed(info):
            stream = self._prefetched.pop(rel, None)
            if stream is not None:
                self._stop_prefetch()  # the reader takes this pass over (and the prefetch ends)
                return cast(BinaryIO, stream)
            return cast(BinaryIO, self._new_stream(rel, info))
        if info.compress_type == zipfile.ZIP_STORED and info.file_size > STREAM_ABOVE:
            return cast(BinaryIO, _StoredStream(self._fd, self._data_offset(rel, info), info.file_size))
        return io.BytesIO(self._bytes(rel))

    @staticmethod
    def _streamed(info: zipfile.ZipInfo) -> bool:
        return info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > STREAM_ABOVE

    def _new_stream(self, rel: str, info: zipfile.ZipInfo) -> _InflateStream:
        """A big deflated member, inflated as it is read (see _InflateStream)."""
        raw = self._data_offset(rel, info)

        def read_raw(offset: int, size: int) -> bytes:
            return os.pread(self._fd, size, raw + offset)

        on_digest = None
        shared = self._shared
        if shared is not None and shared.claim(info.filename, "reader"):
            def on_digest(digest: str | None) -> None:
                if digest is None:
                    shared.release(info.filename)
                else:
                    shared.put(info.filename, digest)

        return _InflateStream(read_raw, info.compress_size, info.file_size, f"{rel!r} in {self.path!r}", on_digest)

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
