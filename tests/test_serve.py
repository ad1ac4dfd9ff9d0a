"""dynawheel.publish.serve and the static index, exercised with the real clients: pip, uv, twine, http.server.

Everything listens on 127.0.0.1 with ephemeral ports; every request loop is bounded.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema
import pytest

from dynawheel.errors import PackageIndexError
from dynawheel.publish.index import build_index
from dynawheel.publish.serve import IndexServer, ServeConfig, add_user, make_server, negotiate, parse_multipart
from tests.test_index import (
    PEP691_PROJECT,
    PEP691_PROJECT_LIST,
    make_corrupt_wheels,
    make_sdist,
    make_wheel,
    parse_page,
)

JSON = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"
CLIENT_ENV = {
    "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "PIP_CONFIG_FILE": os.devnull,
    "PIP_NO_CACHE_DIR": "1", "UV_NO_CACHE": "1", "UV_NO_CONFIG": "1", "TWINE_NON_INTERACTIVE": "1",
    "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring", "NO_COLOR": "1",
}


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "TWINE_"))}
    return {**base, **CLIENT_ENV}


def run(*args: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env(), timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clean venv (with pip) shared by the module; tests install distinct projects into it."""
    path = tmp_path_factory.mktemp("venv") / "venv"
    run(sys.executable, "-m", "venv", path)
    return path / "bin" / "python"


class Running:
    def __init__(self, server: IndexServer) -> None:
        self.server = server
        self.url = server.url
        self.port = int(server.server_address[1])
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def paths(self, method: str = "GET") -> list[str]:
        return [r.path for r in self.server.request_log if r.method == method]

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def alive(self) -> bool:
        return self.request("GET", "/simple/")[0] == 200

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    started: list[Running] = []

    def start(wheelhouse: Path, **config: Any) -> Running:
        running = Running(make_server(wheelhouse, "127.0.0.1", 0, ServeConfig(**config)))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def multipart(fields: dict[str, str], filename: str | None, content: bytes,
              boundary: str = "dynawheel-test-boundary") -> tuple[bytes, str]:
    chunks = []
    for key, value in fields.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    if filename is not None:
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{filename}"\r\n'
                      f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def upload_fields(path: Path, name: str, version: str, **override: str) -> dict[str, str]:
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
              "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1",
              "sha256_digest": hashlib.sha256(path.read_bytes()).hexdigest()}
    fields.update(override)
    return fields


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- pure functions


def test_negotiate() -> None:
    assert negotiate(None) == "text/html"
    assert negotiate(PIP_ACCEPT) == JSON
    assert negotiate("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9") == JSON
    assert negotiate("application/vnd.pypi.simple.v1+json;q=0, text/html") == "text/html"
    assert negotiate("application/vnd.pypi.simple.latest+json") == JSON
    assert negotiate("application/vnd.pypi.simple.v1+html") == "application/vnd.pypi.simple.v1+html"
    assert negotiate("*/*") == "text/html"
    assert negotiate("application/*") == JSON
    assert negotiate("image/png, application/json") is None


def test_parse_multipart() -> None:
    body, ctype = multipart({":action": "file_upload", "name": "x"}, "x-1.0.tar.gz", b"\r\n--data--\r\n")
    parts = parse_multipart(body, ctype)
    assert parts[":action"].data == b"file_upload" and parts["content"].filename == "x-1.0.tar.gz"
    assert parts["content"].data == b"\r\n--data--\r\n"
    for bad in (body[:-30], b"garbage", body.replace(b"Content-Disposition", b"X-Nothing")):
        with pytest.raises(PackageIndexError):
            parse_multipart(bad, ctype)
    with pytest.raises(PackageIndexError):
        parse_multipart(body, "text/plain")


# ---------------------------------------------------------------- pip, uv from `serve`


@pytest.mark.slow
def test_pip_install_and_download_from_serve(tmp_path: Path, serve: Any, venv: Path) -> None:
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "namespace.mod", "1.0", requires_python=">=3.8",
                     files={"namespace/mod.py": "def hello():\n    return 'hello from namespace.mod'\n"})
    make_wheel(wh, "namespace.mod", "0.9", requires_python=">=3.8")
    srv = serve(wh)
    run(venv, "-m", "pip", "install", "--index-url", f"{srv.url}simple/", "namespace.mod")
    out = run(venv, "-c", "import namespace.mod as m; print(m.hello())").stdout
    assert out.strip() == "hello from namespace.mod"
    assert f"/{whl.name}.metadata" in srv.paths()  # PEP 658: resolved from the .metadata file
    assert f"/{whl.name}" in srv.paths() and "/simple/namespace-mod/" in srv.paths()
    sha = hashlib.sha256(whl.read_bytes()).hexdigest()
    req = tmp_path / "req.txt"
    req.write_text(f"namespace.mod==1.0 --hash=sha256:{sha}\n")
    dest = tmp_path / "dl"
    run(venv, "-m", "pip", "download", "--no-deps", "--require-hashes", "-r", req, "-d", dest,
        "--index-url", f"{srv.url}simple/")
    assert (dest / whl.name).read_bytes() == whl.read_bytes()
    bad = run(venv, "-m", "pip", "download", "--no-deps", "-d", tmp_path / "dl2", "--index-url",
              f"{srv.url}simple/", "surely-not-here-dynawheel", check=False)
    assert bad.returncode != 0 and "/simple/surely-not-here-dynawheel/" in srv.paths()


@pytest.mark.slow
def test_uv_pip_install_from_serve(tmp_path: Path, serve: Any, venv: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed")
    wh = tmp_path / "wh"
    make_wheel(wh, "uv-probe", "2.0", files={"uv_probe.py": "X = 42\n"})
    make_sdist(wh, "uv-probe", "2.0")
    srv = serve(wh)
    run(uv, "pip", "install", "--index-url", f"{srv.url}simple/", "--python", venv, "uv-probe==2.0")
    assert run(venv, "-c", "import uv_probe; print(uv_probe.X)").stdout.strip() == "42"


# ---------------------------------------------------------------- pip from plain http.server over `index`


def _http_server(directory: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                             str(directory), "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"port (\d+)", line)
    assert match, line
    return proc, int(match.group(1))


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _out, err = proc.communicate(timeout=10)
    return err


@pytest.mark.slow
@pytest.mark.parametrize("flat", [False, True])
def test_pip_from_plain_http_server(tmp_path: Path, venv: Path, flat: bool) -> None:
    wh, site = tmp_path / "wh", tmp_path / "site"
    name = f"static-{'flat' if flat else 'site'}"
    whl = make_wheel(wh, name, "1.0")
    build_index(wh, site, flat=flat)
    proc, port = _http_server(site)
    try:
        index_url = f"http://127.0.0.1:{port}/" + ("" if flat else "simple/")
        dest = tmp_path / "dl"
        run(venv, "-m", "pip", "download", "--no-deps", "-d", dest, "--index-url", index_url, name)
        assert (dest / whl.name).read_bytes() == whl.read_bytes()
        run(venv, "-m", "pip", "install", "--no-deps", "--index-url", index_url, name)
        assert run(venv, "-c", f"import {name.replace('-', '_')}").returncode == 0
    finally:
        log = _stop(proc)
    assert f"{whl.name}.metadata HTTP/1.1\" 200" in log


# ---------------------------------------------------------------- twine


def _twine(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    return run(sys.executable, "-m", "twine", "upload", "--disable-progress-bar", "--non-interactive", *args,
               check=check)


@pytest.mark.slow
def test_twine_upload_auth_and_reupload(tmp_path: Path, serve: Any, venv: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    users = tmp_path / "users.htpasswd"
    add_user(users, "alice", "s3cret pass")
    assert "s3cret" not in users.read_text() and (users.stat().st_mode & 0o777) == 0o600
    whl = make_wheel(dist, "twine-probe", "1.0", files={"twine_probe.py": "OK = True\n"})
    sdist = make_sdist(dist, "twine-probe", "1.0")
    srv = serve(wh, password_file=users)
    before = snapshot(wh)
    wrong = _twine("--repository-url", srv.url, "-u", "alice", "-p", "wrong", whl)
    assert wrong.returncode != 0 and "401" in wrong.stdout + wrong.stderr
    assert snapshot(wh) == before
    _twine("--repository-url", srv.url, "-u", "alice", "-p", "s3cret pass", whl, sdist, check=True)
    assert (wh / whl.name).read_bytes() == whl.read_bytes()
    names = {a.get("href", "").split("/")[-1].partition("#")[0]
             for a in parse_page(wh / "simple" / "twine-probe" / "index.html").links}
    assert names == {whl.name, sdist.name}
    again = _twine("--repository-url", srv.url, "-u", "alice", "-p", "s3cret pass", whl)
    assert again.returncode != 0 and "409" in again.stdout + again.stderr
    run(venv, "-m", "pip", "install", "--index-url", f"{srv.url}simple/", "twine-probe")
    assert run(venv, "-c", "import twine_probe; print(twine_probe.OK)").stdout.strip() == "True"
    assert srv.alive()


# ---------------------------------------------------------------- HTTP behaviour


def test_json_html_negotiation_and_etag(tmp_path: Path, serve: Any) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "namespace.mod", "1.0", requires_python=">=3.8")
    srv = serve(wh)
    status, headers, body = srv.request("GET", "/simple/namespace-mod/", headers={"Accept": PIP_ACCEPT})
    assert status == 200 and headers["content-type"] == JSON and headers["vary"] == "Accept"
    jsonschema.validate(json.loads(body), PEP691_PROJECT)
    status, headers, body = srv.request("GET", "/simple/", headers={"Accept": JSON})
    jsonschema.validate(json.loads(body), PEP691_PROJECT_LIST)
    assert json.loads(body)["projects"] == [{"name": "namespace.mod"}]
    status, headers, body = srv.request("GET", "/simple/namespace-mod/")
    assert status == 200 and headers["content-type"].startswith("text/html") and b"&gt;=3.8" in body
    v1_html = {"Accept": "application/vnd.pypi.simple.v1+html"}
    status, headers, _ = srv.request("GET", "/simple/namespace-mod/", headers=v1_html)
    assert headers["content-type"] == "application/vnd.pypi.simple.v1+html"
    assert srv.request("GET", "/simple/namespace-mod/", headers={"Accept": "image/png"})[0] == 406
    etag = headers["etag"]
    status, headers, body = srv.request("GET", "/simple/namespace-mod/", headers={**v1_html, "If-None-Match": etag})
    assert status == 304 and body == b""
    json_etag = srv.request("GET", "/simple/namespace-mod/", headers={"Accept": JSON})[1]["etag"]
    assert json_etag != etag
    assert srv.request("GET", "/simple/namespace-mod/", headers={"If-None-Match": json_etag})[0] == 200
    status, headers, _ = srv.request("GET", "/simple/Namespace.Mod/")
    assert status == 301 and headers["location"] == "/simple/namespace-mod/"
    assert srv.request("GET", "/simple/unknown-project/")[0] == 404  # and no fallback anywhere
    whl = next(wh.glob("*.whl"))
    status, headers, body = srv.request("GET", f"/{whl.name}")
    assert status == 200 and body == whl.read_bytes() and headers["content-type"] == "application/octet-stream"
    assert srv.request("GET", f"/{whl.name}", headers={"If-None-Match": headers["etag"]})[0] == 304
    status, headers, body = srv.request("HEAD", f"/{whl.name}.metadata")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert srv.alive()


@pytest.mark.parametrize("path", [
    "/simple/../../etc/passwd", "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/simple/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/..%2f..%2f..%2fetc%2fpasswd", "/%252e%252e/etc/passwd",
    "/simple/x/..\\..\\etc\\passwd", "/simple/%00/", "/escape", "/.hidden", "/simple/.%2e/.%2e/etc/passwd",
    "/users.htpasswd", "/etc/passwd",
])
def test_path_traversal_is_confined(tmp_path: Path, serve: Any, path: str) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "pkg", "1.0")
    (wh / "escape").symlink_to("/etc/passwd")
    (wh / ".hidden").write_text("secret")
    users = wh / "users.htpasswd"
    add_user(users, "bob", "pw")
    srv = serve(wh, password_file=users)
    status, _, body = srv.request("GET", path)
    assert status in (400, 404) and b"root:" not in body and b"secret" not in body and b"scrypt" not in body
    assert srv.alive()


def _post(srv: Running, fields: dict[str, str], filename: str | None, content: bytes,
          auth: tuple[str, str] | None = None, path: str = "/") -> tuple[int, bytes]:
    body, ctype = multipart(fields, filename, content)
    headers = {"Content-Type": ctype}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    status, _, answer = srv.request("POST", path, body, headers)
    return status, answer


def test_upload_bad_inputs(tmp_path: Path, serve: Any) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "existing", "1.0")
    whl = make_wheel(dist, "upl", "1.0")
    data = whl.read_bytes()
    ok = upload_fields(whl, "upl", "1.0")
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    closed = serve(wh)  # no password file: uploads refused
    assert _post(closed, ok, whl.name, data)[0] == 403
    srv = serve(wh, password_file=users, max_upload_size=len(data) + 2000)
    before = snapshot(wh)
    cases: list[tuple[int, dict[str, str], str | None, bytes, tuple[str, str] | None]] = [
        (401, ok, whl.name, data, None),
        (401, ok, whl.name, data, ("alice", "nope")),
        (401, ok, whl.name, data, ("mallory", "pw")),
        (400, ok, "../" + whl.name, data, ("alice", "pw")),
        (400, ok, "sub/" + whl.name, data, ("alice", "pw")),
        (400, ok, "..\\" + whl.name, data, ("alice", "pw")),
        (400, ok, "upl-1.0-py3-none-any.exe", data, ("alice", "pw")),
        (400, {**ok, "sha256_digest": "0" * 64}, whl.name, data, ("alice", "pw")),
        (400, {**ok, "name": "other"}, whl.name, data, ("alice", "pw")),
        (400, {**ok, "version": "2.0"}, whl.name, data, ("alice", "pw")),
        (400, {**ok, ":action": "submit"}, whl.name, data, ("alice", "pw")),
        (400, upload_fields(whl, "upl", "1.0", sha256_digest=hashlib.sha256(b"junk").hexdigest()), whl.name,
         b"junk", ("alice", "pw")),
        (400, ok, None, b"", ("alice", "pw")),
        (413, ok, whl.name, data + b"\0" * 4000, ("alice", "pw")),
        (409, upload_fields(wh / "existing-1.0-py3-none-any.whl", "existing", "1.0"), "existing-1.0-py3-none-any.whl",
         (wh / "existing-1.0-py3-none-any.whl").read_bytes(), ("alice", "pw")),
    ]
    for expected, fields, filename, content, auth in cases:
        status, answer = _post(srv, fields, filename, content, auth)
        assert status == expected, (expected, filename, fields.get(":action"), answer)
        assert srv.alive()
    auth_header = "Basic " + base64.b64encode(b"alice:pw").decode()
    malformed = [(b"--x\r\nbroken", "multipart/form-data; boundary=x"), (b"a=b", "application/x-www-form-urlencoded"),
                 (b"", "multipart/form-data")]
    for body, ctype in malformed:
        status, _, _ = srv.request("POST", "/", body, {"Content-Type": ctype, "Authorization": auth_header})
        assert status == 400 and srv.alive()
    assert srv.request("POST", "/simple/", b"x", {"Authorization": auth_header})[0] == 404
    status, headers, _ = srv.request("POST", "/legacy/", b"x", {"Content-Type": "text/plain"})
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    # a garbage request line and a dropped connection do not stop the server
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01garbage\r\n\r\n")
        sock.recv(1000)
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2500\r\nAuthorization: " +
                     auth_header.encode() + b"\r\nContent-Type: multipart/form-data; boundary=x\r\n\r\nabc")
    assert snapshot(wh) == before and srv.alive()
    assert _post(srv, ok, whl.name, data, ("alice", "pw"))[0] == 200
    assert (wh / whl.name).read_bytes() == data
    assert _post(srv, ok, whl.name, data, ("alice", "pw"))[0] == 409
    respelled = upload_fields(whl, "UPL", "1.0.0")
    assert _post(srv, respelled, "UPL-1.0.0-py3-none-any.whl", data, ("alice", "pw"))[0] in (400, 409)
    assert not list(wh.glob(".upload-*"))


def test_overwrite_and_anonymous(tmp_path: Path, serve: Any) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    v1 = make_wheel(dist / "a", "ow", "1.0", files={"ow.py": "A = 1\n"})
    v2 = make_wheel(dist / "b", "ow", "1.0", files={"ow.py": "A = 2\n"})
    srv = serve(wh, allow_anonymous_upload=True, allow_overwrite=True)
    assert _post(srv, upload_fields(v1, "ow", "1.0"), v1.name, v1.read_bytes())[0] == 200
    assert _post(srv, upload_fields(v2, "ow", "1.0"), v2.name, v2.read_bytes())[0] == 200
    assert (wh / v2.name).read_bytes() == v2.read_bytes()
    page = (wh / "simple" / "ow" / "index.html").read_text()
    assert hashlib.sha256(v2.read_bytes()).hexdigest() in page


def test_port_in_use_and_missing_wheelhouse(tmp_path: Path, serve: Any) -> None:
    wh = tmp_path / "wh"
    wh.mkdir()
    srv = serve(wh)
    with pytest.raises(PackageIndexError, match="already in use"):
        make_server(wh, "127.0.0.1", srv.port)
    with pytest.raises(PackageIndexError, match="does not exist"):
        make_server(tmp_path / "missing", "127.0.0.1", 0)
    assert srv.alive()


# ---------------------------------------------------------------- load


@pytest.mark.slow
def test_concurrent_uploads_and_installs(tmp_path: Path, serve: Any, venv: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    seed = make_wheel(wh, "load-seed", "1.0")
    uploads = [make_wheel(dist, f"load-up{i}", "1.0") for i in range(8)]
    srv = serve(wh, allow_anonymous_upload=True)
    seed_bytes = seed.read_bytes()

    def upload(path: Path) -> int:
        name = path.name.split("-")[0]
        return _post(srv, upload_fields(path, name, "1.0"), path.name, path.read_bytes())[0]

    def install(_: int) -> bool:
        status, _h, body = srv.request("GET", "/simple/load-seed/", headers={"Accept": PIP_ACCEPT})
        doc = json.loads(body)
        entry = doc["files"][0]
        url = urljoin("/simple/load-seed/", entry["url"])  # resolved like a client does
        meta = srv.request("GET", url + ".metadata")[2]
        wheel = srv.request("GET", url)[2]
        root = json.loads(srv.request("GET", "/simple/", headers={"Accept": JSON})[2])
        return (status == 200 and wheel == seed_bytes and hashlib.sha256(wheel).hexdigest() == entry["hashes"]["sha256"]
                and hashlib.sha256(meta).hexdigest() == entry["core-metadata"]["sha256"] and bool(root["projects"]))

    with concurrent.futures.ThreadPoolExecutor(max_workers=58) as pool:
        up = [pool.submit(upload, p) for p in uploads]
        inst = [pool.submit(install, i) for i in range(50)]
        pips = [pool.submit(run, venv, "-m", "pip", "download", "--no-deps", "-d", tmp_path / f"pip{i}",
                            "--index-url", f"{srv.url}simple/", "load-seed") for i in range(3)]
        assert [f.result(timeout=120) for f in up] == [200] * 8
        assert all(f.result(timeout=120) for f in inst)
        for f in pips:
            f.result(timeout=120)
    root = json.loads(srv.request("GET", "/simple/", headers={"Accept": JSON})[2])
    assert {p["name"] for p in root["projects"]} == {"load-seed"} | {f"load-up{i}" for i in range(8)}
    assert build_index(wh).written == ()  # what is on disk is exactly what a fresh build gives
    for path in uploads:
        assert (wh / path.name).read_bytes() == path.read_bytes()
    for i in range(3):
        assert (tmp_path / f"pip{i}" / seed.name).read_bytes() == seed_bytes
    run(venv, "-m", "pip", "install", "--index-url", f"{srv.url}simple/", "load-up7")
    assert srv.alive()


# ---------------------------------------------------------------- CLI


@pytest.mark.slow
def test_cli_serve_banner_and_ctrl_c(tmp_path: Path) -> None:
    wh = tmp_path / "wh"
    make_wheel(wh, "pkg", "1.0")
    users = tmp_path / "users"
    add = subprocess.run([sys.executable, "-m", "dynawheel", "serve", "--add-user", "carol", "--password-file",
                          str(users)], input="pw\n", capture_output=True, text=True, timeout=60)
    assert add.returncode == 0, add.stderr
    assert users.read_text().startswith("carol:scrypt$")
    proc = subprocess.Popen([sys.executable, "-m", "dynawheel", "serve", str(wh), "--port", "0", "--password-file",
                             str(users)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while len(lines) < 40 and not (lines and "username =" in lines[-1]):
            lines.append(proc.stdout.readline())
        text = "".join(lines)
        match = re.search(r"pip install --index-url http://127\.0\.0\.1:(\d+)/simple/ NAME", text)
        assert match, text
        assert "pip config set global.extra-index-url" in text
        assert "pip config set global.trusted-host 127.0.0.1" in text
        assert "[dynawheel]" in text and f"repository = http://127.0.0.1:{match.group(1)}/" in text
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=10)
        conn.request("GET", "/simple/pkg/")
        assert conn.getresponse().status == 200
        conn.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    busy = subprocess.run([sys.executable, "-m", "dynawheel", "serve", str(tmp_path / "missing"), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and "does not exist" in busy.stderr


# ---------------------------------------------------------------- connections: Nagle, backlog, drops


def test_keep_alive_small_responses_do_not_stall(tmp_path: Path, serve: Any) -> None:
    """Headers and body leave together (and TCP_NODELAY): no ~40 ms delayed-ACK stall per response."""
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "quick", "1.0")
    srv = serve(wh)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    latencies = []
    try:
        for i in range(30):
            path = "/simple/quick/" if i % 2 else f"/{whl.name}.metadata"
            started = time.perf_counter()
            conn.request("GET", path, headers={"Accept": PIP_ACCEPT})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read()
            latencies.append(time.perf_counter() - started)
    finally:
        conn.close()
    latencies.sort()
    # the stall is a fixed 40 ms (Linux's minimum delayed ACK) on every response; the median is robust to load
    assert latencies[len(latencies) // 2] < 0.02, latencies


def test_listen_backlog_holds_many_waiting_clients(tmp_path: Path) -> None:
    """100 clients connect before the server accepts anyone: all complete the handshake (backlog >= 128)."""
    wh = tmp_path / "wh"
    make_wheel(wh, "backlog", "1.0")
    server = make_server(wh, "127.0.0.1", 0)
    port = int(server.server_address[1])
    socks = []
    try:
        for _ in range(100):  # connect() returns once the kernel queued the connection; a full queue drops SYNs
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
        running = Running(server)
        for sock in socks:
            sock.sendall(b"GET /simple/backlog/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        for sock in socks:
            sock.settimeout(10)
            assert sock.recv(64).startswith(b"HTTP/1.1 200")
        running.stop()
    finally:
        for sock in socks:
            sock.close()
        server.server_close()


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST (what a killed client or a proxy timeout looks like)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_dropped_connections_log_one_line_no_traceback(tmp_path: Path, serve: Any,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capfd: pytest.CaptureFixture[str]) -> None:
    wh = tmp_path / "wh"
    whl = make_wheel(wh, "drop", "1.0", extra={"big.bin": os.urandom(4 << 20)})
    srv = serve(wh, allow_anonymous_upload=True)
    caplog.set_level(logging.DEBUG)
    # an idle keep-alive connection reset by the client: quiet
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.sendall(b"GET /simple/drop/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    _reset(sock)
    # an upload cut off halfway through its body
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                 b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n")
    time.sleep(0.2)
    _reset(sock)
    # a download abandoned mid-body
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET /{whl.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert sock.recv(64).startswith(b"HTTP/1.1 200")
    time.sleep(0.2)
    _reset(sock)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([r for r in caplog.records if "dropped" in r.getMessage()]) < 2:
        time.sleep(0.05)
    assert srv.alive()
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) >= 2, [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records if r.exc_info]
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) <= 2  # the two cut-off requests, one line each
    assert "Traceback" not in capfd.readouterr().err
    assert not list(wh.glob(".upload-*"))


# ---------------------------------------------------------------- CLI: signals, access log


def _serve_in_background(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int, int]:
    """`dynawheel serve WH &` from a non-interactive shell: the server inherits SIGINT as ignored."""
    wh = tmp_path / "wh"
    if not wh.exists():
        make_wheel(wh, "bg", "1.0")
    script = (f'"$0" -m dynawheel serve "$1" --port 0 {" ".join(extra)} > "$2" 2> "$3" & '
              'echo $! > "$4"; wait $!')
    out, err, pidfile = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "pid"
    for path in (out, err, pidfile):
        path.unlink(missing_ok=True)
    shell = subprocess.Popen(["sh", "-c", script, sys.executable, str(wh), str(out), str(err), str(pidfile)],
                             text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        match = re.search(r"127\.0\.0\.1:(\d+)/simple/", out.read_text() if out.exists() else "")
        if match and pidfile.exists() and pidfile.read_text().strip():
            return shell, int(pidfile.read_text()), int(match.group(1))
        assert shell.poll() is None, err.read_text() if err.exists() else ""
        time.sleep(0.05)
    shell.kill()
    raise AssertionError("server did not start")


def _sigignored(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^SigIgn:\s*([0-9a-f]+)", status, re.M).group(1), 16)  # type: ignore[union-attr]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_background_server_stops_on_signal_and_logs_access(tmp_path: Path, sig: signal.Signals) -> None:
    shell, pid, port = _serve_in_background(tmp_path)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/simple/bg/", headers={"Accept": JSON})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200
        conn.request("GET", "/simple/nothing-here/")
        assert conn.getresponse().status == 404
        conn.close()
        os.kill(pid, sig)
        assert shell.wait(timeout=20) == 0
    finally:
        if shell.poll() is None:
            os.kill(pid, signal.SIGKILL)
            shell.wait(10)
    err = (tmp_path / "err.txt").read_text()
    lines = [line for line in err.splitlines() if '"GET ' in line]
    clf = re.compile(r'^127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "(GET [^"]+)" (\d{3}) (\d+|-)$')
    parsed = [clf.match(line) for line in lines]
    assert all(parsed) and len(parsed) == 2, err
    assert [(m.group(1), m.group(2)) for m in parsed if m] == [
        ("GET /simple/bg/ HTTP/1.1", "200"), ("GET /simple/nothing-here/ HTTP/1.1", "404")]
    assert parsed[0] is not None and int(parsed[0].group(3)) == len(body)
    assert "server stopped" in err and "Traceback" not in err


@pytest.mark.slow
def test_cli_background_quiet_and_sigint_was_ignored(tmp_path: Path) -> None:
    shell, pid, port = _serve_in_background(tmp_path, "-q")
    try:
        # the premise: a shell's background job starts with SIGINT ignored (the server installs its own handler)
        code = "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)"
        probe = subprocess.run(["sh", "-c", '"$0" -c "$1" & wait', sys.executable, code],
                               capture_output=True, text=True, timeout=60)
        assert probe.stdout.strip() == "True", probe
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/simple/bg/")
        assert conn.getresponse().status == 200
        conn.close()
        assert not _sigignored(pid) & (1 << (signal.SIGINT - 1))
        os.kill(pid, signal.SIGINT)
        assert shell.wait(timeout=20) == 0
    finally:
        if shell.poll() is None:
            os.kill(pid, signal.SIGKILL)
            shell.wait(10)
    err = (tmp_path / "err.txt").read_text()
    assert '"GET ' not in err and "Traceback" not in err


# ---------------------------------------------------------------- issue 12: corrupt wheels, long names


def test_corrupt_wheels_served_around_and_refused_as_uploads(tmp_path: Path, serve: Any,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    wh = tmp_path / "wh"
    good = make_wheel(wh, "fine", "1.0")
    corrupt = make_corrupt_wheels(tmp_path / "corrupt")
    os.link(corrupt["deflate-junk"], wh / "broken-1.0-py3-none-any.whl")  # in the wheelhouse at start
    srv = serve(wh, allow_anonymous_upload=True)  # starts, serves the rest
    status, _, body = srv.request("GET", "/simple/fine/")
    assert status == 200 and good.name.encode() in body
    assert srv.request("GET", "/simple/broken/")[0] == 404
    (wh / "broken-1.0-py3-none-any.whl").unlink()
    before = snapshot(wh)
    for kind, path in corrupt.items():
        data = path.read_bytes()
        status, answer = _post(srv, upload_fields(path, "broken", "1.0"), path.name, data)
        assert status == 400, (kind, answer)
        assert path.name.encode() in answer, (kind, answer)
        assert snapshot(wh) == before, kind
    # a member deep inside the wheel (not METADATA) with a bad CRC is refused too: installers would fail on it
    whl = make_wheel(tmp_path / "deep", "deep", "1.0", files={"deep.py": "X = 1\n" * 100})
    data = bytearray(whl.read_bytes())
    offset = data.find(b"X = 1")
    data[offset] ^= 0x01
    status, answer = _post(srv, upload_fields(whl, "deep", "1.0", sha256_digest=hashlib.sha256(data).hexdigest()),
                           whl.name, bytes(data))
    assert status == 400 and b"deep.py" in answer, answer
    assert snapshot(wh) == before and srv.alive()
    assert not list(wh.glob(".upload-*"))
    assert "Traceback" not in capfd.readouterr().err


def test_overlong_upload_name_is_400_before_any_write(tmp_path: Path, serve: Any) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    name = "a" * 280
    whl = make_wheel(dist, name, "1.0", filename=f"{name}-1.0-py3-none-any.whl".replace(name, name[:100]))
    srv = serve(wh, allow_anonymous_upload=True)
    before = snapshot(wh)
    long_name = f"{name}-1.0-py3-none-any.whl"
    assert len(long_name) > 255
    status, answer = _post(srv, upload_fields(whl, name, "1.0"), long_name, whl.read_bytes())
    assert status == 400 and b"longer than 255 bytes" in answer, answer
    status, answer = _post(srv, upload_fields(whl, "x", "1.0"), "x-1.0-py3-none-any\x07.whl", whl.read_bytes())
    assert status == 400, answer
    assert snapshot(wh) == before and not list(wh.glob(".upload-*")) and srv.alive()


# ---------------------------------------------------------------- uploads at scale (issue 13)


def test_upload_rewrites_only_its_project(tmp_path: Path, serve: Any) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    for i in range(20):
        make_wheel(wh, f"stay{i}", "1.0")
    srv = serve(wh, allow_anonymous_upload=True)

    def stamps() -> dict[str, tuple[int, int]]:
        return {str(p.relative_to(wh)): (p.stat().st_ino, p.stat().st_mtime_ns)
                for p in (wh / "simple").rglob("index.*")}

    before = stamps()
    v2 = make_wheel(dist, "stay3", "2.0")
    assert _post(srv, upload_fields(v2, "stay3", "2.0"), v2.name, v2.read_bytes())[0] == 200
    after = stamps()
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {"simple/stay3/index.html", "simple/stay3/index.json"}
    new = make_wheel(dist, "fresh", "1.0")
    assert _post(srv, upload_fields(new, "fresh", "1.0"), new.name, new.read_bytes())[0] == 200
    final = stamps()
    changed = {k for k in final if after.get(k) != final[k]}
    assert changed == {"simple/fresh/index.html", "simple/fresh/index.json", "simple/index.html", "simple/index.json"}
    root = json.loads(srv.request("GET", "/simple/", headers={"Accept": JSON})[2])
    assert {p["name"] for p in root["projects"]} == {f"stay{i}" for i in range(20)} | {"fresh"}
    assert build_index(wh, use_cache=False).written == ()  # the same site a full run writes


def _old_style_sdist(directory: Path, name: str, version: str) -> Path:
    """An sdist named the pre-PEP 625 way, dashes kept (``foo-bar-1.0.tar.gz``, project ``foo-bar``)."""
    import io
    import tarfile

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}.tar.gz"
    pkg_info = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    with tarfile.open(path, "w:gz") as tf:
        member = tarfile.TarInfo(f"{name}-{version}/PKG-INFO")
        member.size = len(pkg_info)
        tf.addfile(member, io.BytesIO(pkg_info))
    return path


def test_concurrent_uploads_leave_the_site_a_full_index_writes(tmp_path: Path, serve: Any) -> None:
    """New and existing projects uploaded at once (8 at a time; two versions of one new project, a new display
    name for an existing one, a project with a status, an old-style sdist name): every page, the project list
    above all, and every .metadata file are byte for byte what a fresh full index of the same files writes,
    and a run over the served site with its cache finds nothing to do."""
    from dynawheel.publish.index import ProjectStatus

    wh, dist = tmp_path / "wh", tmp_path / "dist"
    for i in range(12):
        make_wheel(wh, f"base{i:02d}", "1.0")
    make_sdist(wh, "base03", "0.9")
    make_wheel(wh, "Mixed.Case", "1.0")
    make_wheel(wh, "old-name", "1.0")
    marks = {"base05": ProjectStatus("deprecated", "use base06")}
    build_index(wh, statuses=marks)
    srv = serve(wh, allow_anonymous_upload=True)
    uploads = [(make_wheel(dist / "a", name, "1.0"), name, "1.0") for name in ("aaa-first", "zzz.last", "base05x",
                                                                                  "New.Dotted")]
    uploads += [(make_wheel(dist / "b", "twice", "1.0"), "twice", "1.0"),
                (make_wheel(dist / "c", "twice", "2.0"), "twice", "2.0"),
                (make_sdist(dist / "d", "fresh-sdist", "1.0"), "fresh-sdist", "1.0"),
                (_old_style_sdist(dist / "e", "old-style", "1.0"), "old-style", "1.0")]  # new projects, then existing
    uploads += [(make_wheel(dist / "f", name, "2.0"), name, "2.0") for name in ("base01", "base05", "base11",
                                                                               "mixed.case")]
    uploads += [(make_sdist(dist / "g", "base02", "1.0"), "base02", "1.0"),
                (_old_style_sdist(dist / "h", "old-name", "3.0"), "old-name", "3.0")]

    def upload(item: tuple[Path, str, str]) -> tuple[str, int, bytes]:
        path, name, version = item
        filetype = {"filetype": "sdist"} if path.name.endswith(".tar.gz") else {}
        return path.name, *_post(srv, upload_fields(path, name, version, **filetype), path.name, path.read_bytes())

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(upload, uploads, timeout=120))
    assert [(name, status) for name, status, _ in answers] == [(p.name, 200) for p, _, _ in uploads], answers
    fresh = tmp_path / "fresh"  # the same files (hard links: same bytes, same mtime), indexed from nothing
    fresh.mkdir()
    for path in wh.iterdir():
        if path.is_file() and not path.name.startswith(".") and not path.name.endswith(".metadata"):
            os.link(path, fresh / path.name)
    assert build_index(fresh, use_cache=False, statuses=marks).ok
    root = json.loads((wh / "simple" / "index.json").read_text())
    listed = {p["name"] for p in root["projects"]}
    assert listed == {f"base{i:02d}" for i in range(12)} | {
        "old-name", "mixed.case", "aaa-first", "zzz.last", "base05x", "New.Dotted", "twice", "fresh-sdist",
        "old-style"}, listed
    assert snapshot(wh / "simple") == snapshot(fresh / "simple")
    assert ({p.name: p.read_bytes() for p in wh.glob("*.metadata")}
            == {p.name: p.read_bytes() for p in fresh.glob("*.metadata")})
    for accept, page in ((JSON, "index.json"), ("text/html", "index.html")):
        status, _, body = srv.request("GET", "/simple/", headers={"Accept": accept})
        assert status == 200 and body == (fresh / "simple" / page).read_bytes()
    again = build_index(wh)
    assert again.written == () and again.removed == () and again.ok


def _serve_process(wh: Path, *args: str, fsize: int | None = None) -> tuple[subprocess.Popen[str], int]:
    def limits() -> None:
        if fsize is not None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG, like a full disk
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    proc = subprocess.Popen([sys.executable, "-m", "dynawheel", "serve", str(wh), "--port", "0", "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=limits)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"127\.0\.0\.1:(\d+)/simple/", line)
    assert match, (line, proc.stderr.read() if proc.stderr else "")
    return proc, int(match.group(1))


def _stop_process(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _post_to(port: int, fields: dict[str, str], filename: str, content: bytes,
             auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
    body, ctype = multipart(fields, filename, content)
    headers = {"Content-Type": ctype}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s*(\d+) kB", status, re.M).group(1)) / 1024  # type: ignore[union-attr]


@pytest.mark.slow
def test_uploads_stream_in_bounded_memory(tmp_path: Path) -> None:
    """8 concurrent authenticated uploads of 24 MB wheels: the server's peak RSS stays far below their sum."""
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "seed", "1.0")
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    wheels = [make_wheel(dist, f"big{i}", "1.0", extra={"blob.bin": os.urandom(24 << 20)}) for i in range(8)]
    proc, port = _serve_process(wh, "--password-file", str(users))
    try:
        baseline = _peak_rss_mb(proc.pid)

        def upload(path: Path) -> int:
            name = path.name.split("-")[0]
            return _post_to(port, upload_fields(path, name, "1.0"), path.name, path.read_bytes(), ("alice", "pw"))[0]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(upload, wheels, timeout=300)) == [200] * 8
        peak = _peak_rss_mb(proc.pid)
    finally:
        err = _stop_process(proc)
    assert "Traceback" not in err
    for path in wheels:
        assert (wh / path.name).read_bytes() == path.read_bytes()
    # held in memory, the bodies alone would be 192 MB (and 8 scrypt checks 128 MB); before streaming: +470 MB.
    # Issue 13's goal is a peak under 150 MB. The growth bound leaves room for 8 threads' buffers and glibc's
    # per-thread malloc arenas under load (+100.5 MB seen once on a loaded machine; +470 MB before streaming).
    assert peak < 150 and peak - baseline < 120, (baseline, peak)


def test_same_credentials_at_once_are_checked_once(tmp_path: Path, serve: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """8 uploads arriving together with the same user and password cost one scrypt check (the others wait for
    it); a wrong password is still refused, every time."""
    import dynawheel.publish.serve as serve_module

    wh, dist = tmp_path / "wh", tmp_path / "dist"
    wh.mkdir()
    users = tmp_path / "users"
    add_user(users, "alice", "pw")
    checks: list[str] = []
    real = serve_module.verify_password

    def counted(table: Any, name: str, password: str) -> bool:
        checks.append(password)
        return real(table, name, password)

    monkeypatch.setattr(serve_module, "verify_password", counted)
    srv = serve(wh, password_file=users)
    wheels = [make_wheel(dist, f"cred{i}", "1.0") for i in range(8)]

    def upload(path: Path, password: str = "pw") -> int:
        name = path.name.split("-")[0]
        return _post(srv, upload_fields(path, name, "1.0"), path.name, path.read_bytes(), ("alice", password))[0]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(upload, wheels, timeout=120)) == [200] * 8
    assert checks == ["pw"]
    extra = make_wheel(dist, "cred-extra", "1.0")
    assert [upload(extra, "wrong"), upload(extra, "wrong")] == [401, 401] and checks == ["pw", "wrong", "wrong"]


@pytest.mark.slow
def test_full_disk_during_upload_is_507_and_nothing_listed(tmp_path: Path) -> None:
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "seed", "1.0")
    build_index(wh)
    big = make_wheel(dist, "toobig", "1.0", extra={"blob.bin": os.urandom(3 << 20)})
    small = make_wheel(dist, "fits", "1.0")
    proc, port = _serve_process(wh, "--allow-anonymous-upload", fsize=1 << 20)
    try:
        before = snapshot(wh)
        status, answer = _post_to(port, upload_fields(big, "toobig", "1.0"), big.name, big.read_bytes())
        assert status == 507 and b"no space left" in answer, answer
        assert snapshot(wh) == before and not list(wh.glob(".upload-*"))
        status, answer = _post_to(port, upload_fields(small, "fits", "1.0"), small.name, small.read_bytes())
        assert status == 200, answer  # the server carries on
    finally:
        err = _stop_process(proc)
    assert "Traceback" not in err
    root = json.loads((wh / "simple" / "index.json").read_text())
    assert {p["name"] for p in root["projects"]} == {"seed", "fits"}


@pytest.mark.slow
def test_disk_full_while_indexing_an_upload_leaves_the_site_as_it_was(tmp_path: Path) -> None:
    """The file size limit reached by the index cache's new line, after the upload's pages were written: 507,
    the upload and its .metadata taken out, the pages (the project list included) back as they were, no torn
    cache line; a run of `index` afterwards finds nothing to do."""
    wh, dist = tmp_path / "wh", tmp_path / "dist"
    past = time.time() - 10  # older than the cache's racy window: the server's start-up run appends nothing
    for i in range(20):
        os.utime(make_wheel(wh, f"seed{i}", "1.0"), (past, past))
    build_index(wh)
    cache = wh / ".dynawheel-index-cache.jsonl"
    new = make_wheel(dist, "late", "1.0")
    assert new.stat().st_size < cache.stat().st_size  # the upload itself fits; the cache's next line does not
    proc, port = _serve_process(wh, "--allow-anonymous-upload", fsize=cache.stat().st_size + 100)
    try:
        before = snapshot(wh)
        status, answer = _post_to(port, upload_fields(new, "late", "1.0"), new.name, new.read_bytes())
        assert status == 507 and b"no space left" in answer, answer
        assert snapshot(wh) == before and not list(wh.glob(".upload-*"))
    finally:
        err = _stop_process(proc)
    assert "Traceback" not in err
    assert build_index(wh).written == ()


# ---------------------------------------------------------------- the static site behind nginx (README's config)


def _readme_nginx_config() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", readme, re.S)
    assert len(blocks) == 1, "README.md must hold exactly one nginx configuration"
    return blocks[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                    reason="nginx is not installed (.ci/apt-packages.txt installs it in CI)")
def test_pip_and_uv_install_from_nginx_with_readme_config(tmp_path: Path, venv: Path) -> None:
    wh, site = tmp_path / "wh", tmp_path / "site"
    whl = make_wheel(wh, "Nginx.Served", "1.0", requires_python=">=3.8")
    other = make_wheel(wh, "nginx-other", "2.0")
    from tests.test_provenance import Signer, provenance_file  # here: test_provenance imports this module
    provenance_file(whl, Signer().attest(whl.name, hashlib.sha256(whl.read_bytes()).hexdigest()))
    result = build_index(wh, site)
    assert result.ok and (site / ".dynawheel-index-cache.jsonl").is_file()
    port = _free_port()
    readme = _readme_nginx_config()
    # the README's server block as written; only where it listens and where the site lives differ
    assert "listen 443 ssl;" in readme and "root /srv/pypi;" in readme
    server = readme.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};").replace(
        "root /srv/pypi;", f"root {site};")
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read a tmp dir that is mode 0700
    temp = tmp_path / "nginx-tmp"
    temp.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        "http {\n  log_format negotiated '$request_uri $status \"$sent_http_content_type\" \"$http_user_agent\"';\n"
        f"  access_log {tmp_path}/access.log negotiated;\n  client_body_temp_path {temp}/body;\n"
        f"  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n{server}\n}}\n")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    check = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def get(path: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
            conn.request("GET", path, headers={"Accept": accept} if accept else {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()

        status, headers, body = get("/simple/nginx-served/", "text/html")
        assert status == 200 and headers["content-type"].startswith("text/html") and "accept" in headers["vary"].lower()
        assert whl.name.encode() in body
        status, headers, body = get("/simple/nginx-served/", PIP_ACCEPT)
        assert status == 200 and headers["content-type"] == JSON
        doc = json.loads(body)
        jsonschema.validate(doc, PEP691_PROJECT)
        meta_url = urljoin("/simple/nginx-served/", doc["files"][0]["url"]) + ".metadata"
        status, _, meta = get(meta_url)
        assert status == 200 and hashlib.sha256(meta).hexdigest() == doc["files"][0]["core-metadata"]["sha256"]
        status, headers, body = get(urljoin("/simple/nginx-served/", doc["files"][0]["provenance"]))  # PEP 740
        assert status == 200 and headers["content-type"] == "application/json" and json.loads(body)["version"] == 1
        status, headers, body = get("/simple/", JSON)
        assert status == 200 and headers["content-type"] == JSON
        jsonschema.validate(json.loads(body), PEP691_PROJECT_LIST)
        assert get("/.dynawheel-index-cache.jsonl")[0] == 404  # the cache is not published
        assert get("/simple/no-such-project/")[0] == 404
        conn.close()
        # real clients: pip and uv, installing and importing
        run(venv, "-m", "pip", "install", "--index-url", f"http://127.0.0.1:{port}/simple/", "Nginx.Served")
        run(venv, "-c", "import Nginx_Served")
        run("uv", "pip", "install", "--python", venv, "--index-url", f"http://127.0.0.1:{port}/simple/",
            "nginx-other")
        run(venv, "-c", "import nginx_other")
    finally:
        proc.terminate()
        proc.wait(20)
    log = (tmp_path / "access.log").read_text()
    assert "/simple/nginx-served/" in log and "/simple/nginx-other/" in log and other.name in log
    uv_lines = [line for line in log.splitlines() if line.startswith("/simple/nginx-other/ ")]
    assert uv_lines and all(f' 200 "{JSON}" "uv/' in line for line in uv_lines), log  # uv got PEP 691 JSON
    pip_lines = [line for line in log.splitlines() if line.startswith("/simple/nginx-served/ ") and '"pip/' in line]
    assert pip_lines and all(" 200 " in line for line in pip_lines), log


def test_archived_and_quarantined_projects_in_serve(tmp_path: Path, serve: Any) -> None:
    from dynawheel.publish.index import ProjectStatus

    wh, dist = tmp_path / "wh", tmp_path / "dist"
    make_wheel(wh, "arch", "1.0")
    quarantined = make_wheel(wh, "quar", "1.0")
    build_index(wh, statuses={"arch": ProjectStatus("archived"), "quar": ProjectStatus("quarantined", "malware")})
    srv = serve(wh, allow_anonymous_upload=True)
    new = make_wheel(dist, "arch", "2.0")
    status, answer = _post(srv, upload_fields(new, "arch", "2.0"), new.name, new.read_bytes())
    assert status == 403 and b"archived" in answer
    assert not (wh / new.name).exists()
    assert srv.request("GET", f"/{quarantined.name}")[0] == 404
    status, _, body = srv.request("GET", "/simple/quar/", headers={"Accept": JSON})
    assert status == 200 and json.loads(body)["project-status"] == {"status": "quarantined", "reason": "malware"}
    other = make_wheel(dist, "fine", "1.0")
    assert _post(srv, upload_fields(other, "fine", "1.0"), other.name, other.read_bytes())[0] == 200
    assert json.loads((wh / "simple" / "arch" / "index.json").read_text())["project-status"] == {"status": "archived"}


def test_watch_notices_a_wheel_overwritten_in_place(tmp_path: Path, serve: Any) -> None:
    """Rewritten through its own inode (the directory's mtime does not move), same size, new mtime: the
    project's page, asked for again, lists the new hash (the watch stats the project's files)."""
    from tests.test_index import _overwrite_in_place

    wh = tmp_path / "wh"
    whl = make_wheel(wh, "inplace", "1.0", files={"inplace.py": "A"})
    past = time.time() - 10
    os.utime(whl, (past, past))
    srv = serve(wh)
    first = srv.request("GET", "/simple/inplace/")
    assert first[0] == 200 and hashlib.sha256(whl.read_bytes()).hexdigest().encode() in first[2]
    dir_mtime = wh.stat().st_mtime_ns
    sha = _overwrite_in_place(whl, "inplace", "1.0", "B", keep_mtime=False)
    assert wh.stat().st_mtime_ns == dir_mtime
    deadline = time.monotonic() + 3  # the watch looks at a project at most every 0.2 s
    while True:
        status, _, body = srv.request("GET", "/simple/inplace/")
        if f"#sha256={sha}".encode() in body or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200 and f"#sha256={sha}".encode() in body
    status, _, body = srv.request("GET", f"/{whl.name}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == sha
