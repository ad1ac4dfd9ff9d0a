"""A wheel read in place: its members under the virtual root ``/<wheel file name>``, inflated on demand."""

from __future__ import annotations

import io
import os
import posixpath
import threading
import zipfile
import zlib
from typing import TYPE_CHECKING, BinaryIO, cast

from ..errors import WheelFormatError
from ..wheel.inflate import errors, inflate_whole
from ..wheel.zipread import READ_ERRORS, data_offset, open_zip
from .members import InflateStream, StoredStream
from .protocol import check_rel

if TYPE_CHECKING:
    from ..wheel.verify import SharedDigests


HASH_APART_MIN = 256 << 10  # members read whole from this size on are hashed on a thread of their own
KEEP_MIN, KEEP_BYTES = 256 << 10, 32 << 20  # members kept inflated for a second read: size, total
STREAM_ABOVE = 16 << 20  # deflated members bigger than this are streamed, never held whole
PREFETCH_PART = 0.5  # of a member WheelTree.prefetch inflates ahead of its reader at most


def _read_errors() -> tuple[type[Exception], ...]:
    """What reading a member may raise (evaluated in ``except`` clauses only: see inflate.py)."""
    return (*errors(), *READ_ERRORS)


class WheelTree:
    """The members of a wheel (a zip), read from the archive, under the virtual root ``/<file name>``.

    Stored bytes are read with ``os.pread`` (thread-safe; not mapped: mapped pages that were
    read count in the process's RSS).  Members up to ``STREAM_ABOVE`` are inflated in one call
    (libdeflate when installed, see inflate.py), and after :meth:`keep_reads` the big ones among
    them kept for a second read; bigger deflated ones are opened as an :class:`InflateStream`,
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
        self._prefetched: dict[str, InflateStream] = {}
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
        cheap (see InflateStream), else given back to the RECORD check."""
        self._stop_prefetch()
        while self._prefetched:
            self._prefetched.popitem()[1].close()

    def _index(self, require_wheel: bool) -> None:
        for info in self._zip.infolist():
            rel = check_rel(info.filename.rstrip("/"), self.path)
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
                import hashlib  # performance: digests are not for `show` (OpenSSL; csv for RECORD)

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
            return cast(BinaryIO, StoredStream(self._fd, self._data_offset(rel, info), info.file_size))
        return io.BytesIO(self._bytes(rel))

    @staticmethod
    def _streamed(info: zipfile.ZipInfo) -> bool:
        return info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > STREAM_ABOVE

    def _new_stream(self, rel: str, info: zipfile.ZipInfo) -> InflateStream:
        """A big deflated member, inflated as it is read (see InflateStream)."""
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

        return InflateStream(read_raw, info.compress_size, info.file_size, f"{rel!r} in {self.path!r}", on_digest)

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

