"""A small ZIP writer built for wheels: deterministic, streaming, parallel, raw-copying.

- One pass over each input file computes the sha256 (for RECORD), the CRC-32 and the deflate
  output together.
- Large members are deflated in chunks on all cores (zlib releases the GIL); each chunk is
  primed with the previous 32 KiB as a dictionary and ended with a sync flush, so the chunks
  join into one ordinary deflate stream at the ratio of a serial run (the pigz technique).
- Members of another zip can be copied as raw compressed bytes: no inflate, no deflate.
- ZIP64 records are written when a size, an offset or the entry count needs them.
- Members up to WHOLE_MAX are compressed whole, one per worker thread, by libdeflate (PyPI
  ``deflate``, which releases the GIL) when it is installed: at the same level number it is
  about 3.3x zlib's speed for an output within about 1 % of zlib's (1 % smaller on shared
  libraries and the standard library, 0.6 % larger on an interpreter binary:
  benchmarks/deflate_matrix.py).  libdeflate has no streaming API (its output always
  ends with a final block), so larger members are streamed in parallel chunks instead.
- Streams deflate with zlib-ng (PyPI ``zlib-ng``) when it is installed: about 2.4x faster than
  zlib at level 6 for a ratio within a few percent.  zlib-ng's level 1 is a much weaker
  "quick" mode, so level 1 asks zlib-ng for its level 2 (smaller than zlib's 1, and faster).
- The caller chooses (CLI: --deflate): "auto" (libdeflate + zlib-ng, each when installed),
  "libdeflate", "zlib-ng", or "zlib" (the standard library's bytes).  A missing package falls
  back to zlib.  The bytes written depend on the backend and the level (and on nothing else:
  not on the number of cores).
The output must be seekable (sizes are patched into each local header after its data).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

if TYPE_CHECKING:
    from typing_extensions import Buffer  # typing only (collections.abc.Buffer is Python >= 3.12)

log = logging.getLogger(__name__)

CHUNK = 1 << 20  # read size, and deflate chunk size for parallel compression
PARALLEL_MIN = 4 * CHUNK  # smaller members are compressed whole by worker threads (zlib, zlib-ng)
CRC_GIL_MAX = 4 * CHUNK  # bytes up to which libdeflate computes a CRC (see crc32)
WHOLE_MAX = 128 * CHUNK  # with libdeflate: members up to this size are compressed whole
WINDOW = 32768
STORED, DEFLATED = 0, 8
_U32 = 0xFFFFFFFF
_LOCAL = struct.Struct("<IHHHHHIIIHH")
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")


class Member:
    """A written member, for RECORD and the central directory (a private record: a plain class, no NamedTuple
    or dataclass to create at import)."""

    __slots__ = ("compressed", "crc", "dos_time", "external_attr", "method", "name", "offset", "sha256", "size")

    def __init__(self, name: str, method: int, crc: int, compressed: int, size: int, offset: int, external_attr: int,
                 sha256: bytes | None, dos_time: tuple[int, int]) -> None:
        self.name, self.method, self.crc, self.compressed, self.size = name, method, crc, compressed, size
        self.offset, self.external_attr, self.dos_time = offset, external_attr, dos_time
        self.sha256 = sha256  # None when copied raw (the caller knows the hash)


def dos_time(date_time: tuple[int, ...]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time[:6]
    return (hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day)


class _Compressor(Protocol):
    def compress(self, data: Buffer, /) -> bytes: ...
    def flush(self, mode: int = ..., /) -> bytes: ...


DEFLATE_CHOICES = ("auto", "libdeflate", "zlib-ng", "zlib")


@functools.lru_cache(maxsize=4)
def whole_backend(prefer: str = "auto") -> Any | None:
    """The libdeflate module (PyPI ``deflate``) when `prefer` is 'auto' or 'libdeflate' and it is
    importable, else None (members are then compressed by the stream backend)."""
    if prefer not in ("auto", "libdeflate"):
        return None
    try:
        import deflate
    except ImportError:
        if prefer == "libdeflate":
            log.warning("libdeflate (pip install deflate) is not installed: using %s", deflate_backend(prefer)[0])
        return None
    return deflate


def whole_limit(level: int, backend: str = "auto") -> int:
    """Members smaller than this are compressed whole by a worker thread; larger ones are streamed."""
    return WHOLE_MAX if level > 0 and whole_backend(backend) is not None else PARALLEL_MIN


def compress_whole(data: Buffer, level: int, backend: str = "auto") -> bytes | bytearray:
    """Raw deflate of all of `data` at `level` (1-9): libdeflate when available, else a stream."""
    lib = whole_backend(backend)
    if lib is not None:
        return cast(bytearray, lib.deflate_compress(data, level))
    comp = compressobj(level, backend=backend)
    return comp.compress(data) + comp.flush()


@functools.lru_cache(maxsize=4)
def deflate_backend(prefer: str = "auto") -> tuple[str, Any]:
    """The stream backend: ('zlib-ng', module) unless `prefer` is 'zlib' or zlib-ng is not
    importable, else ('zlib', zlib).  The caller chooses (the CLI: --deflate, default
    $DYNAWHEEL_DEFLATE or auto)."""
    if prefer != "zlib":
        try:
            from zlib_ng import zlib_ng
        except ImportError:
            pass
        else:
            return "zlib-ng", zlib_ng
    return "zlib", zlib


def compressobj(level: int, zdict: bytes = b"", backend: str = "auto") -> _Compressor:
    """A raw-deflate compressor at `level` (zlib's meaning of the levels), from `backend`."""
    name, module = deflate_backend(backend)
    if name == "zlib-ng" and level == 1:
        level = 2
    if zdict:
        return cast(_Compressor, module.compressobj(level, zlib.DEFLATED, -15, zdict=zdict))
    return cast(_Compressor, module.compressobj(level, zlib.DEFLATED, -15))


def crc32(data: Buffer, value: int = 0, backend: str = "auto") -> int:
    """CRC-32 of the zip format.  libdeflate's up to CRC_GIL_MAX bytes (as fast as zlib-ng's, but it
    holds the GIL: ~0.1 ms per MiB; a small repair then never loads zlib-ng, ~2 ms), else the
    stream backend's (zlib-ng's is about 4x faster than zlib's on large buffers)."""
    lib = whole_backend(backend)
    if lib is not None and memoryview(data).nbytes <= CRC_GIL_MAX:
        return int(lib.crc32(data, value))
    return int(deflate_backend(backend)[1].crc32(data, value))


def _chunks(fp: BinaryIO) -> Iterator[bytes]:
    while chunk := fp.read(CHUNK):
        yield chunk


def _deflate_chunk(data: bytes, prev_tail: bytes, level: int, last: bool, backend: str) -> bytes:
    comp = compressobj(level, prev_tail, backend)
    return comp.compress(data) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class ZipWriter:
    def __init__(self, fp: BinaryIO, *, level: int = 6, executor: Executor | None = None,
                 backend: str = "auto") -> None:
        self.fp = fp
        self.level = level
        self.backend = backend
        self.executor = executor
        self.members: list[Member] = []

    # ---- local headers -------------------------------------------------------------------
    def _start(self, name: str, method: int, zip64: bool, when: tuple[int, int]) -> tuple[int, bytes]:
        offset = self.fp.tell()
        raw = name.encode("utf-8")
        extra = struct.pack("<HHQQ", 1, 16, 0, 0) if zip64 else b""
        flags = 0x800 if not raw.isascii() else 0
        version = 45 if zip64 else 20
        self.fp.write(_LOCAL.pack(0x04034B50, version, flags, method, when[0], when[1], 0, 0, 0, len(raw), len(extra)))
        self.fp.write(raw + extra)
        return offset, raw

    def _finish(self, offset: int, raw: bytes, zip64: bool, crc: int, csize: int, usize: int) -> None:
        end = self.fp.tell()
        if not zip64 and (csize >= _U32 or usize >= _U32):
            raise OverflowError(f"member {raw!r} grew past 4 GiB without a ZIP64 header")
        self.fp.seek(offset + 14)
        if zip64:
            self.fp.write(struct.pack("<III", crc, _U32, _U32))
            self.fp.seek(offset + 30 + len(raw) + 4)
            self.fp.write(struct.pack("<QQ", usize, csize))
        else:
            self.fp.write(struct.pack("<III", crc, csize, usize))
        self.fp.seek(end)

    # ---- adding members ------------------------------------------------------------------
    def add_stream(self, name: str, src: BinaryIO, size: int, *, mode: int, date_time: tuple[int, ...]) -> Member:
        """Compress `size` bytes read from `src`; hashes them on the way."""
        method = DEFLATED if self.level > 0 and size > 0 else STORED
        zip64 = size >= _U32 - (_U32 >> 6)
        when = dos_time(date_time)
        offset, raw = self._start(name, method, zip64, when)
        sha = hashlib.sha256()
        crc, csize, usize = self._copy_data(src, sha, method, chunked=size >= PARALLEL_MIN)
        self._finish(offset, raw, zip64, crc, csize, usize)
        member = Member(name, method, crc, csize, usize, offset, (0o100000 | mode) << 16, sha.digest(), when)
        self.members.append(member)
        return member

    def _copy_data(self, src: BinaryIO, sha: hashlib._Hash, method: int, chunked: bool) -> tuple[int, int, int]:
        crc = usize = csize = 0
        if method == STORED:
            for chunk in _chunks(src):
                sha.update(chunk)
                crc = crc32(chunk, crc, self.backend)
                usize += len(chunk)
                self.fp.write(chunk)
            return crc, usize, usize
        for chunk, out in (self._deflated_chunks(src) if chunked else self._deflated_serial(src)):
            sha.update(chunk)
            crc = crc32(chunk, crc, self.backend)
            usize += len(chunk)
            csize += len(out)
            self.fp.write(out)
        return crc, csize, usize

    def _deflated_serial(self, src: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
        comp = compressobj(self.level, backend=self.backend)
        for chunk in _chunks(src):
            yield chunk, comp.compress(chunk)
        yield b"", comp.flush()

    def _deflated_chunks(self, src: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
        """(input chunk, its deflate output) in order, chunks compressed in parallel when an
        executor is given; the bytes do not depend on the executor or the number of cores."""
        pending: list[tuple[bytes, Future[bytes]]] = []
        limit = 2 * (getattr(self.executor, "_max_workers", 1) or 1)
        chunks = _chunks(src)
        chunk = next(chunks, None)
        tail = b""
        while chunk is not None:
            nxt = next(chunks, None)
            pending.append((chunk, self._submit(chunk, tail, nxt is None)))
            tail = chunk[-WINDOW:]
            chunk = nxt
            while len(pending) >= limit or (chunk is None and pending):
                data, fut = pending.pop(0)
                yield data, fut.result()

    def _submit(self, chunk: bytes, tail: bytes, last: bool) -> Future[bytes]:
        if self.executor is not None:
            return self.executor.submit(_deflate_chunk, chunk, tail, self.level, last, self.backend)
        done: Future[bytes] = Future()
        done.set_result(_deflate_chunk(chunk, tail, self.level, last, self.backend))
        return done

    def _complete_header(self, name: str, method: int, crc: int, compressed: int, size: int,
                         when: tuple[int, int]) -> tuple[int, bool]:
        """A local header with the sizes and CRC already known (no seek back over the data)."""
        zip64 = compressed >= _U32 or size >= _U32
        offset = self.fp.tell()
        raw = name.encode("utf-8")
        extra = struct.pack("<HHQQ", 1, 16, size, compressed) if zip64 else b""
        sizes = (_U32, _U32) if zip64 else (compressed, size)
        self.fp.write(_LOCAL.pack(0x04034B50, 45 if zip64 else 20, 0x800 if not raw.isascii() else 0, method,
                                  when[0], when[1], crc, *sizes, len(raw), len(extra)) + raw + extra)
        return offset, zip64

    def add_packed(self, name: str, data: Buffer, *, method: int, crc: int, size: int, sha256: bytes, mode: int,
                   date_time: tuple[int, ...]) -> Member:
        """Write a member whose data the caller already compressed (`data`), of `size` bytes inflated."""
        when = dos_time(date_time)
        compressed = memoryview(data).nbytes
        offset, _ = self._complete_header(name, method, crc, compressed, size, when)
        self.fp.write(data)
        member = Member(name, method, crc, compressed, size, offset, (0o100000 | mode) << 16, sha256, when)
        self.members.append(member)
        return member

    def add_raw(self, name: str, src: BinaryIO, info_offset: int, *, method: int, crc: int, compressed: int,
                size: int, mode: int, date_time: tuple[int, ...]) -> Member:
        """Copy an already-compressed member whose data starts at `info_offset` in `src`."""
        when = dos_time(date_time)
        offset, _ = self._complete_header(name, method, crc, compressed, size, when)
        src.seek(info_offset)
        left = compressed
        while left:
            block = src.read(min(CHUNK * 4, left))
            if not block:
                raise EOFError(f"member {name!r} is truncated in its archive")
            self.fp.write(block)
            left -= len(block)
        member = Member(name, method, crc, compressed, size, offset, (0o100000 | mode) << 16, None, when)
        self.members.append(member)
        return member

    # ---- central directory -----------------------------------------------------------------
    def close(self) -> None:
        start = self.fp.tell()
        for m in self.members:
            self._central(m)
        size = self.fp.tell() - start
        count = len(self.members)
        if count >= 0xFFFF or start >= _U32 or size >= _U32:
            here = self.fp.tell()
            self.fp.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start))
            self.fp.write(struct.pack("<IIQI", 0x07064B50, 0, here, 1))
        self.fp.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(count, 0xFFFF), min(count, 0xFFFF),
                                  min(size, _U32), min(start, _U32), 0))

    def _central(self, m: Member) -> None:
        raw = m.name.encode("utf-8")
        fields = [v for v in (m.size, m.compressed, m.offset) if v >= _U32]
        zip64 = m.size >= _U32 or m.compressed >= _U32 or m.offset >= _U32
        extra = struct.pack(f"<HH{len(fields)}Q", 1, 8 * len(fields), *fields) if zip64 else b""
        flags = 0x800 if not raw.isascii() else 0
        version = 45 if zip64 else 20
        self.fp.write(_CENTRAL.pack(
            0x02014B50, 3 << 8 | version, version, flags, m.method, m.dos_time[0], m.dos_time[1], m.crc,
            min(m.compressed, _U32), min(m.size, _U32), len(raw), len(extra), 0, 0, 0, m.external_attr,
            min(m.offset, _U32)))
        self.fp.write(raw + extra)
