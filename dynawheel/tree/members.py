"""Wheel members read without extracting them: a member's sha256 on a thread of its own, and seekable
streams over a big member (inflated on demand, or stored bytes read in place)."""

from __future__ import annotations

import io
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from ..errors import WheelFormatError
from ..log import get_logger
from ..wheel.inflate import errors, inflater

log = get_logger(__name__)


def _finish_errors() -> tuple[type[Exception], ...]:
    return (*errors(), OSError)


_RAW_CHUNK = 1 << 18  # compressed bytes read at a time
_OUT_CHUNK = 1 << 20  # inflated bytes produced at a time
_HEAD_KEEP = 1 << 16  # the first bytes of a stream stay decoded: headers are read again and again
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


class InflateStream(_RangeStream):
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
        self.restarts = 0  # inflations started over after a backward seek (the tests read it)
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


class StoredStream(_RangeStream):
    """A big stored zip member as a seekable stream over the archive (os.pread): never read whole."""

    def __init__(self, fd: int, start: int, size: int) -> None:
        super().__init__(size, "a stored member")
        self._fd, self._start = fd, start

    def _range(self, start: int, size: int) -> bytes:
        return os.pread(self._fd, size, self._start + start) if size > 0 else b""

