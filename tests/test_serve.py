"""dynawheel.publish.serve and the static index, exercised with the real clients: pip, uv, twine, http.server.

Everything listens on 127.0.0.1 with ephemeral ports; every request loop is bounded.
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jsonschema
import pytest

from dynawheel.errors import PackageIndexError
from dynawheel.publish.index import build_index
from dynawheel.publish.serve import IndexServer, ServeConfig, add_user, make_server, negotiate, parse_multipart

try:  # tests/ is a package (tests/__init__.py) or a plain directory on sys.path
    from tests.test_index import PEP691_PROJECT, PEP691_PROJECT_LIST, make_sdist, make_wheel, parse_page
except ImportError:
    from test_index import PEP691_PROJECT, PEP691_PROJECT_LIST, make_sdist, make_wheel, parse_page  # type: ignore

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
