"""The serving loop of ``dynawheel serve``: one thread, ``selectors``, non-blocking sockets.

Requests that answer from memory or a file (GET, HEAD) are answered on the loop: heads are parsed
by :mod:`.wire`, a response's head and small body leave in one ``send``, a big file follows with
``os.sendfile``.  Keep-alive and pipelining: requests on one connection are answered in order, and
no new request is read while a response is still being written (a client that does not read
cannot make the server buffer).  A request the application wants to answer with blocking I/O (an
upload: it reads a body of up to hundreds of MB) is *handed off*: its connection leaves the loop
for a thread, which answers it and hands the connection back.

Idle connections (and requests that stall half-sent) are closed after ``timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import queue
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

from .wire import BadRequest, Request, head_rest, head_start, parse_head, response_head

logger = logging.getLogger(__name__)

_RECV = 256 * 1024
_CHANNEL_RECV = 64 * 1024  # a handed-off body is read in pieces this big (below malloc's mmap threshold)
_MAX_BUFFERED_OUT = 1 << 20  # stop reading pipelined requests while this much waits to be sent
_MAX_IGNORED_BODY = 1 << 20  # a GET/HEAD body is read and dropped up to this size; larger is 413
_MAX_THREADS = 64  # connections handed off at once; more get 503
_DONE, _STALLED, _HANDED_OFF = 0, 1, 2  # what answering the buffered requests came to
_KEPT_HEAD = 2048  # heads up to this size are remembered with what they parsed to


@dataclass(slots=True)
class Reply:
    """A response: ``body`` bytes, or ``length`` bytes of the open file ``file`` (closed once sent)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    file: int | None = None  # a file descriptor
    length: int = -1  # -1: len(body)
    close: bool = False
    wire: bytes | None = None  # the head after its Date line, and the body: kept when a Reply is answered again

    def content_length(self) -> int:
        return len(self.body) if self.length < 0 else self.length


def _send_file(sock: socket.socket, fd: int, offset: int, remaining: int) -> int:
    """Bytes of the file sent from ``offset`` (``sendfile`` where the system has it; else a read and a send)."""
    if hasattr(os, "sendfile"):
        return os.sendfile(sock.fileno(), fd, offset, min(remaining, 1 << 30))
    os.lseek(fd, offset, os.SEEK_SET)
    return sock.send(os.read(fd, min(remaining, _RECV)))


class App(Protocol):
    def respond(self, request: Request, client: str) -> Reply | None:
        """Answer on the loop, or None: answer with :meth:`respond_blocking` on a thread."""

    def respond_blocking(self, request: Request, client: str, channel: Channel) -> Reply:
        """Answer a handed-off request; ``channel`` reads its body."""

    def refused(self, request_line: str, client: str, exc: BadRequest) -> Reply:
        """The answer to a head :mod:`.wire` refused (logged like any answer)."""


class Channel:
    """Blocking reads of a handed-off connection: what the loop had buffered first, then the socket."""

    def __init__(self, conn: _Conn, timeout: float) -> None:
        self._conn = conn
        conn.sock.settimeout(timeout)

    def read(self, size: int) -> bytes:
        buf = self._conn.inbuf
        if buf:
            data = bytes(buf[:size])
            del buf[:size]
            return data
        return self._conn.sock.recv(min(size, _CHANNEL_RECV))

    def send(self, data: bytes) -> None:
        self._conn.sock.sendall(data)


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    client: str
    inbuf: bytearray = field(default_factory=bytearray)
    out: bytearray = field(default_factory=bytearray)
    file: tuple[int, int, int] | None = None  # (fd, offset, remaining)
    last: float = 0.0
    skip: int = 0  # body bytes of the last request still to drop
    closing: bool = False  # close once ``out`` and ``file`` are sent
    writing: bool = False  # registered for EVENT_WRITE
    what: str = ""  # the request being answered (for a log line when the client hangs up)


class LoopServer:
    """Listens on ``address`` and answers with ``app`` on the thread that calls :meth:`serve_forever`."""

    def __init__(self, address: tuple[str, int], app: App, *, backlog: int = 1024, timeout: float = 60.0) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            if os.name != "nt":  # restart right after Ctrl-C despite TIME_WAIT (on Windows it would share a port)
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(backlog)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.app, self.timeout = app, timeout
        self._selector = selectors.DefaultSelector()
        self._rbuf = bytearray(_RECV)  # every recv of the loop lands here first: no big allocation per read
        self._rview = memoryview(self._rbuf)
        self._conns: dict[int, _Conn] = {}
        self._heads: dict[bytes, Request] = {}
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._returned: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self._threads = threading.BoundedSemaphore(_MAX_THREADS)
        self._stop = False
        self._stopped = threading.Event()
        self._stopped.set()
        self._accepting = True
        self._pid = os.getpid()
        self.parent_pid: int | None = None  # a worker process stops when this process is gone

    # -- lifecycle

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Serve until :meth:`shutdown` (from another thread) or an exception (Ctrl-C) stops the loop.

        Several processes may serve one server (forked after it was made): each has its own selector."""
        if os.getpid() != self._pid:
            self._after_fork()
        self._stopped.clear()
        self._stop = False
        sel = self._selector
        sel.register(self.socket, selectors.EVENT_READ, None)
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        swept = time.monotonic()
        try:
            while not self._stop:
                for key, events in sel.select(min(poll_interval, 1.0)):
                    self._dispatch(key, events)
                now = time.monotonic()
                if now - swept >= 1.0:
                    swept = now
                    self._sweep(now)
                    if self.parent_pid is not None and os.getppid() != self.parent_pid:
                        break
        finally:
            for sock in (self.socket, self._wake_r):
                with contextlib.suppress(KeyError, ValueError):
                    sel.unregister(sock)
            self._stopped.set()

    def _after_fork(self) -> None:
        """In a forked worker: a selector and wake-up pair of its own (the parent's are not shared)."""
        self._pid = os.getpid()
        for old in (self._selector, self._wake_r, self._wake_w):
            old.close()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it returned."""
        self._stop = True
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        self._selector.close()
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- events

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        conn = key.data
        if conn is None:
            if key.fileobj is self.socket:
                self._accept()
            else:
                self._take_back()
            return
        if events & selectors.EVENT_WRITE:
            self._process(conn)
        elif events & selectors.EVENT_READ:
            self._read(conn)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, address = self.socket.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("cannot accept more connections (%s): waiting for one to close", exc.strerror)
                    self._selector.unregister(self.socket)
                    self._accepting = False
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, str(address[0]), last=time.monotonic())
            self._conns[sock.fileno()] = conn
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: _Conn) -> None:
        try:
            size = conn.sock.recv_into(self._rbuf)
        except BlockingIOError:
            return
        except OSError as exc:
            self._dropped(conn, exc)
            return
        if not size:
            self._close(conn)
            return
        conn.last = time.monotonic()
        if not conn.inbuf and size <= _KEPT_HEAD and not conn.skip and self._answer_known(conn, size):
            return
        conn.inbuf += self._rview[:size]
        self._process(conn)

    def _answer_known(self, conn: _Conn, size: int) -> bool:
        """The common case on a keep-alive connection, answered without the general path: what arrived is
        exactly one head seen before, its answer was sent before and is sent whole again.  False (nothing
        done) otherwise."""
        request = self._heads.get(bytes(self._rview[:size]))
        if request is None or request.method not in ("GET", "HEAD") or request.content_length or conn.out:
            return False
        reply = self.app.respond(request, conn.client)
        if reply is None or reply.wire is None or request.method == "HEAD" or not request.keep_alive:
            if reply is not None:  # answered by the general path (nothing was queued yet)
                self._queue(conn, reply, request.method == "HEAD", not request.keep_alive)
                conn.what = request.request_line
                self._process(conn)
            elif not self._hand_off(conn, request):
                self._process(conn)
            return True
        data = head_start(reply.status) + reply.wire
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._dropped(conn, exc)
            return True
        if sent < len(data):
            conn.out += data[sent:]
            conn.what = request.request_line
            self._flush(conn)
        return True

    def _process(self, conn: _Conn) -> None:
        """Answer the complete requests in ``conn.inbuf``, in order, sending as it goes; when output must
        drain first, wait for the socket to be writable (which comes back here)."""
        while True:
            state = self._answer_buffered(conn)
            if state == _HANDED_OFF or not self._flush(conn):
                return
            if conn.closing:
                self._close(conn)
                return
            if state == _DONE:
                return

    def _answer_buffered(self, conn: _Conn) -> int:
        """:data:`_DONE` (nothing complete left), :data:`_STALLED` (output must drain before more) or
        :data:`_HANDED_OFF` (the connection left the loop)."""
        while conn.inbuf and not conn.closing:
            if conn.file is not None or len(conn.out) >= _MAX_BUFFERED_OUT:
                return _STALLED
            if conn.skip:
                dropped = min(conn.skip, len(conn.inbuf))
                del conn.inbuf[:dropped]
                conn.skip -= dropped
                continue
            try:
                request = self._parse(conn.inbuf)
            except BadRequest as exc:
                line = bytes(conn.inbuf[: conn.inbuf.find(b"\r\n")]).decode("latin-1")[:200]
                conn.inbuf.clear()
                self._queue(conn, self.app.refused(line, conn.client, exc), head_only=False, close=True)
                return _DONE
            if request is None:
                return _DONE
            del conn.inbuf[: request.head_size]
            if not self._answer(conn, request):
                return _HANDED_OFF
        return _DONE

    def _parse(self, buf: bytearray) -> Request | None:
        """:func:`.wire.parse_head`, once per distinct head: clients send the same heads again and again."""
        end = buf.find(b"\r\n\r\n", 0, _KEPT_HEAD)
        if end < 0:
            return parse_head(buf)
        raw = bytes(buf[: end + 4])
        request = self._heads.get(raw)
        if request is None:
            request = parse_head(raw)
            if request is not None:
                if len(self._heads) >= 4096:
                    self._heads.clear()
                self._heads[raw] = request
        return request

    def _answer(self, conn: _Conn, request: Request) -> bool:
        """Answer one request on the loop; False when it was handed off (the connection left the loop)."""
        if request.content_length > _MAX_IGNORED_BODY and request.method in ("GET", "HEAD"):
            exc = BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "a GET or HEAD request with a large body")
            self._queue(conn, self.app.refused(request.request_line, conn.client, exc), head_only=False, close=True)
            return True
        reply = self.app.respond(request, conn.client)
        if reply is None:
            return not self._hand_off(conn, request)
        if request.method != "POST":
            conn.skip = request.content_length
        self._queue(conn, reply, request.method == "HEAD", not request.keep_alive)
        conn.what = request.request_line
        return True

    def _queue(self, conn: _Conn, reply: Reply, head_only: bool, close: bool) -> None:
        close = close or reply.close
        length = reply.content_length()
        if reply.file is None and not head_only and not close:  # the common case: from `wire` when answered before
            wire = reply.wire
            if wire is None:
                wire = reply.wire = head_rest(length, reply.headers, False) + reply.body
            conn.out += head_start(reply.status)
            conn.out += wire
            return
        conn.out += response_head(reply.status, length, reply.headers, close)
        if reply.file is not None:
            if head_only or length == 0:
                os.close(reply.file)
            else:
                conn.file = (reply.file, 0, length)
        elif not head_only:
            conn.out += reply.body
        conn.closing = conn.closing or close

    def _flush(self, conn: _Conn) -> bool:
        """Send what waits; True when all of it went (False: closed, or registered for EVENT_WRITE)."""
        try:
            done = self._send(conn)
        except OSError as exc:
            self._dropped(conn, exc)
            return False
        if not done:
            if not conn.writing:
                self._selector.modify(conn.sock, selectors.EVENT_WRITE, conn)
                conn.writing = True
            return False
        conn.last = time.monotonic()
        if conn.writing:
            self._selector.modify(conn.sock, selectors.EVENT_READ, conn)
            conn.writing = False
        return True

    def _send(self, conn: _Conn) -> bool:
        """Send what waits; True when all of it went."""
        while conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except BlockingIOError:
                return False
            del conn.out[:sent]
        while conn.file is not None:
            fd, offset, remaining = conn.file
            try:
                sent = _send_file(conn.sock, fd, offset, remaining)
            except BlockingIOError:
                return False
            if sent == 0:  # the file shrank under us: the promised length cannot be sent
                raise ConnectionAbortedError(errno.EIO, "file shrank while being sent")
            conn.file = (fd, offset + sent, remaining - sent) if remaining > sent else None
            if conn.file is None:
                os.close(fd)
        return True

    def _dropped(self, conn: _Conn, exc: OSError) -> None:
        if conn.file is not None or conn.out:
            logger.warning("%s: connection dropped during %s: %s", conn.client, conn.what or "a response",
                           exc.__class__.__name__)
        else:
            logger.debug("%s: connection closed: %s", conn.client, exc.__class__.__name__)
        self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.sock.fileno(), None) is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(conn.sock)
        if conn.file is not None:
            os.close(conn.file[0])
            conn.file = None
        conn.sock.close()
        if not self._accepting:
            self._accepting = True
            self._selector.register(self.socket, selectors.EVENT_READ, None)

    def _sweep(self, now: float) -> None:
        for conn in list(self._conns.values()):
            if now - conn.last > self.timeout:
                if conn.inbuf or conn.out or conn.file is not None:
                    logger.info("%s: connection timed out after %.0f s", conn.client, self.timeout)
                self._close(conn)

    # -- handing off to a thread

    def _hand_off(self, conn: _Conn, request: Request) -> bool:
        """Give the connection to a thread that answers ``request``; False (503 queued) when too many are out."""
        if not self._threads.acquire(blocking=False):
            busy = BadRequest(HTTPStatus.SERVICE_UNAVAILABLE, "too many uploads at once; retry later")
            self._queue(conn, self.app.refused(request.request_line, conn.client, busy), head_only=False, close=True)
            return False
        self._conns.pop(conn.sock.fileno(), None)
        self._selector.unregister(conn.sock)
        conn.writing = False
        thread = threading.Thread(target=self._blocking, args=(conn, request), daemon=True,
                                  name=f"dynawheel-{request.method.lower()}")
        thread.start()
        return True

    def _blocking(self, conn: _Conn, request: Request) -> None:
        keep = False
        try:
            channel = Channel(conn, self.timeout)
            if conn.out:  # answers to requests pipelined before this one go first
                channel.send(bytes(conn.out))
                conn.out.clear()
            reply = self.app.respond_blocking(request, conn.client, channel)
            close = reply.close or not request.keep_alive
            conn.out += response_head(reply.status, reply.content_length(), reply.headers, close)
            if request.method != "HEAD":
                conn.out += reply.body
            channel.send(bytes(conn.out))
            conn.out.clear()
            keep = not close
        except OSError as exc:  # ConnectionError, TimeoutError (a client that stalls for `timeout` s)
            logger.warning("%s: connection dropped during %s: %s", conn.client, request.request_line,
                           exc.__class__.__name__)
        finally:
            self._threads.release()
        if keep and not self._stop:
            conn.sock.setblocking(False)
            conn.last = time.monotonic()
            self._returned.put(conn)
            self._wake()
        else:
            conn.sock.close()

    def _take_back(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                conn = self._returned.get_nowait()
            except queue.Empty:
                return
            self._conns[conn.sock.fileno()] = conn
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            if conn.inbuf:
                self._process(conn)

