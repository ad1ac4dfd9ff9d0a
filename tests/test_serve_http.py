"""`dynawheel serve` on the wire (issue 13): its own HTTP/1.1 parser and serving loop, with raw sockets
(malformed, pipelined, half-sent requests), real clients (pip, uv publish, twine) and the wheelhouse
changing under a running server.  Everything listens on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import base64
import http.client
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dynawheel.publish.wire import MAX_HEADERS, MAX_REQUEST_LINE, BadRequest, parse_head
from tests.test_index import make_wheel
from tests.test_serve import _serve_process, _stop_process, env, run, serve, venv

__all__ = ["serve", "venv"]  # fixtures used here

# ---------------------------------------------------------------- the parser alone


GOOD = b"GET /simple/x/ HTTP/1.1\r\nHost: h\r\nAccept: text/html\r\nX-Empty:\r\n\r\n"


def test_parse_head_good_and_incomplete() -> None:
    request = parse_head(GOOD + b"GET /next HTTP/1.1\r\n")
    assert request is not None
    assert (request.method, request.target, request.version) == ("GET", "/simple/x/", "HTTP/1.1")
    assert request.headers == {"host": "h", "accept": "text/html", "x-empty": ""}
    assert request.head_size == len(GOOD) and request.keep_alive and request.content_length == 0
    for cut in range(len(GOOD)):
        assert parse_head(GOOD[:cut]) is None, cut
    old = parse_head(b"GET / HTTP/1.0\r\n\r\n")  # HTTP/1.0 needs no Host and closes unless asked
    assert old is not None and not old.keep_alive
    kept = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
    assert kept is not None and kept.keep_alive
    closing = parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert closing is not None and not closing.keep_alive
    post = parse_head(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nContent-Length: 12\r\n\r\nbody")
    assert post is not None and post.content_length == 12
    joined = parse_head(b"GET / HTTP/1.1\r\nHost: h\r\nAccept: a\r\nAccept: b\r\n\r\n")
    assert joined is not None and joined.headers["accept"] == "a, b"


BAD: list[tuple[bytes, int]] = [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS hello
    (b"GET /x HTTP/1.1\nHost: h\n\n", 400),  # bare LF
    (b"GET /x HTTP/1.1\r\nHost: h\nX: y\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: h\rX: y\r\n\r\n", 400),  # bare CR
    (b"GET /x HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),  # obs-fold
    (b"GET /x HTTP/1.1\r\nHost : h\r\n\r\n", 400),  # space before the colon
    (b"GET /x HTTP/1.1\r\n: h\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: h\r\nNo colon\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET /x\x00 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET  /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /x HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
    (b"G(T /x HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n", 400),  # absolute form
    (b"GET /x HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    (b"GET /x HTTP/1.1x\r\nHost: h\r\n\r\n", 400),
    (b"GET /x http/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /x HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \xd9\xa1\r\n\r\n", 400),  # a non-ASCII digit
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400),  # smuggling
    (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n", 417),
    (b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    (b"GET /" + b"a" * (MAX_REQUEST_LINE + 10), 414),  # refused before the line ends
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * MAX_HEADERS + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"y" * 70_000, 431),
]


@pytest.mark.parametrize(("head", "status"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_parse_head_refuses(head: bytes, status: int) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_head(head)
    assert caught.value.status == status, caught.value.message


# ---------------------------------------------------------------- raw sockets against the server


def _exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send ``data``, read until the server closes (or ``timeout``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of responses (each with a Content-Length) into (status, headers, body)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return out


def test_malformed_requests_get_4xx_and_the_server_carries_on(tmp_path: Path, serve: Any,
                                                             caplog: pytest.LogCaptureFixture,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "raw", "1.0")
    srv = serve(wh, allow_anonymous_upload=True)
    caplog.set_level(logging.DEBUG)
    for head, status in BAD:
        answer = _exchange(srv.port, head)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (head[:80], answer[:200])
        assert b"Connection: close" in answer.partition(b"\r\n\r\n")[0]
        assert srv.alive()
    answer = _exchange(srv.port, b"DELETE /raw-1.0-py3-none-any.whl HTTP/1.1\r\nHost: h\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 501 ") and (wh / "raw-1.0-py3-none-any.whl").exists()
    answer = _exchange(srv.port, b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert "Traceback" not in capfd.readouterr().err
    refused = [r for r in srv.server.request_log if r.status >= 400]
    assert len(refused) >= len(BAD)  # each refused head is logged like any answer


def test_pipelined_requests_answered_in_order(tmp_path: Path, serve: Any) -> None:
    wh = tmp_path / "wh"
    small = make_wheel(wh, "pipe", "1.0")
    big = make_wheel(wh, "pipe", "2.0", extra={"blob.bin": os.urandom(3 << 20)})  # sent with sendfile
    srv = serve(wh)
    get = "GET {} HTTP/1.1\r\nHost: h\r\n\r\n"
    paths = ["/simple/pipe/", f"/{small.name}.metadata", f"/{big.name}", "/simple/missing/", f"/{small.name}"]
    data = "".join(get.format(p) for p in paths).encode() + b"HEAD /simple/pipe/ HTTP/1.1\r\nHost: h\r\n\r\n"
    data += b"GET /simple/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\nHost: h\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(data)  # all at once: one recv holds several requests
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    raw = b"".join(chunks)
    statuses = [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
    assert statuses == [200, 200, 200, 404, 200, 200, 200], statuses  # /never is after Connection: close
    assert small.read_bytes() in raw and big.read_bytes() in raw
    assert raw.index(big.read_bytes()) < raw.index(b"HTTP/1.1 404 ") < raw.index(small.read_bytes())


def test_half_sent_head_and_idle_keep_alive_then_more(tmp_path: Path, serve: Any) -> None:
    """A head that arrives a byte at a time is answered; a keep-alive connection serves many requests."""
    wh = tmp_path / "wh"
    make_wheel(wh, "slow", "1.0")
    srv = serve(wh)
    request = b"GET /simple/slow/ HTTP/1.1\r\nHost: h\r\nAccept: application/vnd.pypi.simple.v1+json\r\n\r\n"
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        for byte in request:
            sock.sendall(bytes([byte]))
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ") and b"application/vnd.pypi.simple.v1+json" in first
        for _ in range(200):
            sock.sendall(request)
            data = b""
            while b'"name"' not in data or not data.rstrip().endswith(b"}"):
                data += sock.recv(65536)
            assert data.startswith(b"HTTP/1.1 200 ")


def test_expect_100_continue_and_body_on_get(tmp_path: Path, serve: Any) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "seed", "1.0")
    whl = make_wheel(dist, "continued", "1.0")
    srv = serve(wh, allow_anonymous_upload=True)
    from tests.test_serve import multipart, upload_fields

    body, ctype = multipart(upload_fields(whl, "continued", "1.0"), whl.name, whl.read_bytes())
    head = (f"POST / HTTP/1.1\r\nHost: h\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Expect: 100-continue\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(head)
        assert sock.recv(1000) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body + b"GET /simple/continued/ HTTP/1.1\r\nHost: h\r\n\r\n")  # pipelined after the body
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"</html>\n"):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and whl.name.encode() in data
    # a GET with a (small) body: the body is read and dropped, the next request is answered
    answer = _exchange(srv.port, b"GET /simple/seed/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
                                 b"GET /simple/seed/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert [status for status, _, _ in _responses(answer)] == [200, 200]


# ---------------------------------------------------------------- a wheelhouse that changes under the server


@pytest.mark.slow
def test_wheelhouse_changes_under_a_running_server(tmp_path: Path, serve: Any, venv: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "stays", "1.0")
    going = make_wheel(wh, "going", "1.0", files={"going.py": "X = 1\n"})
    srv = serve(wh)
    index_url = f"{srv.url}simple/"
    assert srv.request("GET", "/simple/going/")[0] == 200
    # copied in behind the server's back (as `cp` or rsync would): pip finds it on its first request
    arrived = make_wheel(dist, "arrived", "1.0", files={"arrived.py": "WHO = 'arrived'\n"})
    shutil.copy(arrived, wh / arrived.name)
    run(venv, "-m", "pip", "install", "--index-url", index_url, "arrived")
    assert run(venv, "-c", "import arrived; print(arrived.WHO)").stdout.strip() == "arrived"
    assert f"/{arrived.name}.metadata" in srv.paths()  # its PEP 658 file was written for it
    # a new version of a known project, moved in by rename
    newer = make_wheel(dist, "stays", "2.0", files={"stays.py": "V = 2\n"})
    os.replace(newer, wh / newer.name)
    run(venv, "-m", "pip", "install", "--index-url", index_url, "stays")
    assert run(venv, "-c", "import stays; print(stays.V)").stdout.strip() == "2"
    # removed: its page, its .metadata and the project list forget it; pip cannot find it any more
    going.unlink()
    failed = run(venv, "-m", "pip", "download", "--no-deps", "-d", tmp_path / "dl", "--index-url", index_url,
                 "going", check=False)
    assert failed.returncode != 0 and "from versions: none" in failed.stderr
    assert not list((tmp_path / "dl").glob("*.whl"))
    assert srv.request("GET", "/simple/going/")[0] == 404
    assert srv.request("GET", f"/{going.name}.metadata")[0] == 404
    names = srv.request("GET", "/simple/")[2]
    assert b"arrived" in names and b"going" not in names
    from dynawheel.publish.index import build_index

    assert build_index(wh).written == ()  # what the server wrote is what a fresh run writes


# ---------------------------------------------------------------- workers, uv publish


@pytest.mark.slow
def test_workers_serve_uploads_and_installs_and_stop_together(tmp_path: Path, venv: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "seed", "1.0")
    users = tmp_path / "users"
    from dynawheel.publish.serve import add_user

    add_user(users, "alice", "pw")
    proc, port = _serve_process(wh, "--password-file", str(users), "--workers", "3")
    try:
        deadline = time.monotonic() + 20  # the workers are forked right after the banner
        while len(children := Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()) < 2:
            assert time.monotonic() < deadline, children
            time.sleep(0.05)
        assert len(children) == 2, children
        uv = shutil.which("uv")
        wheels = [make_wheel(dist / str(i), f"multi{i}", "1.0", files={f"multi{i}.py": f"N = {i}\n"})
                  for i in range(6)]
        if uv is not None:  # uv publish: a real client with its own HTTP stack (reqwest)
            pub = subprocess.run([uv, "publish", "--publish-url", f"http://127.0.0.1:{port}/", "-u", "alice", "-p",
                                  "pw", *map(str, wheels[:3])], capture_output=True, text=True, env=env(),
                                 timeout=300)
            assert pub.returncode == 0, pub.stderr
        rest = wheels[3:] if uv is not None else wheels
        run(sys.executable, "-m", "twine", "upload", "--disable-progress-bar", "--non-interactive",
            "--repository-url", f"http://127.0.0.1:{port}/", "-u", "alice", "-p", "pw", *rest)
        run(venv, "-m", "pip", "install", "--index-url", f"http://127.0.0.1:{port}/simple/",
            *[f"multi{i}" for i in range(6)])
        out = run(venv, "-c", "import multi0, multi5; print(multi0.N + multi5.N)").stdout
        assert out.strip() == "5"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(20):  # whichever worker answers, every page lists every upload
            conn.request("GET", "/simple/", headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode()})
            body = conn.getresponse().read()
            assert all(f"multi{i}".encode() in body for i in range(6))
        conn.close()
    finally:
        err = _stop_process(proc)
    assert proc.returncode == 0 and "Traceback" not in err
    for pid in children:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), pid
