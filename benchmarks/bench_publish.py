"""Publishing at scale (issue 13): dynawheel index/serve side by side with simple503, pypiserver and nginx.

One generated wheelhouse (default 6,000 small wheels: 2,000 projects x 3 versions), loopback only,
every load loop bounded in count and time:

* index: cold run (fresh site) vs simple503; no-op re-run and +1 wheel (goal < 0.3 s);
* serve: time to the first answer on a wheelhouse indexed before (goal < 1 s);
* small responses with wrk (5 s per case, concurrency 1 and 64) against nginx running the README's
  configuration over an ``index`` output, and pypiserver (goal >= 50 % of nginx's requests/s, zero errors);
* 50 twine uploads into a copy of the wheelhouse, sequential (one twine) and 8-way (8 twines at once),
  vs pypiserver with an htpasswd file (goal: at least as fast; nothing lost; server peak RSS < 150 MB).

    python benchmarks/bench_publish.py [--wheels 6000] [--runs 3] [--keep DIR] [--parts index,responses,uploads]

Needs `nginx` and `wrk` (Debian packages) and `htpasswd` (apache2-utils); pypiserver 2.4.x, passlib,
simple503 and twine are installed into the benchmark venv from PyPI.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("DYNAWHEEL_BENCH_VENV", str(Path.home() / ".cache" / "dynawheel-bench" / "publish-venv"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, _pip, bench_venv, dynawheel_cmd, tool_cmd, venv_env

PUBLISH_TOOLS = ("pypiserver>=2.4,<2.5", "passlib", "simple503", "twine")
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


# ---------------------------------------------------------------- inputs


def make_wheel(directory: Path, name: str, version: str, payload: bytes = b"") -> Path:
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode() + payload,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n"
                            f"Summary: generated for the publishing benchmark\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{path},sha256={hashlib.sha256(data).hexdigest()},{len(data)}\n" for path, data in files.items())
    files[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in files.items():
            zf.writestr(zipfile.ZipInfo(arcname, (2020, 1, 1, 0, 0, 0)), data)
    return path


def make_wheelhouse(directory: Path, count: int) -> list[str]:
    directory.mkdir(parents=True)
    projects = max(1, count // 3)
    names = []
    for i in range(count):
        names.append(make_wheel(directory, f"benchpkg-{i % projects:05d}", f"1.{i // projects}").name)
    past = time.time() - 60  # files written long before the index runs, as in a real wheelhouse
    for name in names:
        os.utime(directory / name, (past, past))
    return names


def clone(src: Path, dst: Path) -> None:
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)  # hard links: fast, same bytes


# ---------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(port: int, path: str = "/simple/", limit: float = 120.0) -> float:
    """Seconds until ``GET path`` answers 200 (polling every 10 ms, at most ``limit`` s)."""
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"no answer on port {port} within {limit} s")


class Server:
    def __init__(self, name: str, cmd: list[str | Path], port: int, cwd: Path | None = None) -> None:
        self.name, self.port = name, port
        self.proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=cwd, env={**os.environ, **venv_env()})
        self.startup = wait_http(port)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server's process and its worker processes so far."""
        total = 0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s*(\d+) kB", status, re.M)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def ours(wheelhouse: Path, *extra: str) -> Server:
    port = free_port()
    return Server("dynawheel serve", dynawheel_cmd("serve", wheelhouse, "--port", str(port), "-q", *extra), port)


def pypiserver(wheelhouse: Path, *extra: str) -> Server:
    port = free_port()
    cmd = tool_cmd("pypiserver", "run", "-i", "127.0.0.1", "-p", str(port), "--log-stream", "none", *extra,
                   wheelhouse)
    return Server("pypiserver", cmd, port)


def nginx(site: Path, work: Path) -> Server:
    readme = (REPO / "README.md").read_text()
    block = re.findall(r"```nginx\n(.*?)```", readme, re.S)[0]
    port = free_port()
    server = block.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} reuseport backlog=1024;").replace(
        "root /srv/pypi;", f"root {site};")
    work.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(
        f"{user}daemon off;\nworker_processes 2;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  keepalive_requests 1000000;\n"
        f"  client_body_temp_path {work}/body;\n  proxy_temp_path {work}/proxy;\n"
        f"  fastcgi_temp_path {work}/fcgi;\n  uwsgi_temp_path {work}/uwsgi;\n  scgi_temp_path {work}/scgi;\n"
        f"{server}\n}}\n")
    return Server("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf, "-p", work], port)


# ---------------------------------------------------------------- wrk


def wrk(port: int, path: str, connections: int, seconds: int, accept: str | None = None) -> tuple[float, int]:
    """Requests/s and errors (socket errors + non-2xx/3xx) of ``wrk`` on one URL for ``seconds``."""
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*cmd, f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True,
                         timeout=seconds + 30).stdout
    rate = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, errors + (int(non2xx.group(1)) if non2xx else 0)


# ---------------------------------------------------------------- uploads


def twine(url: str, files: list[Path], user: str, password: str) -> None:
    cmd = tool_cmd("twine", "upload", "--repository-url", url, "-u", user, "-p", password, "--non-interactive",
                   "--disable-progress-bar", *files)
    env = {**os.environ, **venv_env(), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"twine failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def upload_round(server: Server, files: list[Path], ways: int, user: str, password: str) -> float:
    url = f"http://127.0.0.1:{server.port}/"
    groups = [files[i::ways] for i in range(ways)]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(ways) as pool:
        list(pool.map(lambda group: twine(url, group, user, password), groups))
    return time.perf_counter() - start


def check_listed(server: Server, files: list[Path]) -> int:
    """How many uploaded files the server lists with the right sha256 (pages as pip reads them)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    good = 0
    for path in files:
        project = path.name.split("-")[0].replace("_", "-")
        conn.request("GET", f"/simple/{project}/", headers={"Accept": "text/html"})
        resp = conn.getresponse()
        body = resp.read().decode()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if resp.status == 200 and re.search(re.escape(path.name) + r"#sha256=" + digest, body):
            good += 1
    conn.close()
    return good


# ---------------------------------------------------------------- main


CPU: list[float] = []  # user + system seconds of each timed command (wait4), beside its wall time


def timed(cmd: list[str | Path]) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **venv_env()})
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in (0, 3):
        raise SystemExit(f"benchmark command failed: {' '.join(map(str, cmd))}\n{err.decode()}")
    CPU.append(usage.ru_utime + usage.ru_stime)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=int, default=6000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per case")
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--parts", default="index,responses,uploads",
                        help="comma-separated: index, responses, uploads (default: all)")
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it")
    args = parser.parse_args()
    for tool in ("wrk", "htpasswd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is missing: apt-get install wrk apache2-utils nginx")
    python = bench_venv()
    if subprocess.run([python, "-c", "import pypiserver, passlib, simple503, twine"], capture_output=True).returncode:
        _pip(python, "install", *PUBLISH_TOOLS)
    work = args.keep or Path(tempfile.mkdtemp(prefix="dynawheel-bench-publish-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: list[str] = []
    try:
        base = work / "wheelhouse"
        t0 = time.perf_counter()
        make_wheelhouse(base, args.wheels)
        print(f"generated {args.wheels} wheels in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        parts = set(args.parts.split(","))
        if "index" in parts:
            rows += bench_index(base, work, args.runs)
        if "responses" in parts:
            rows += bench_responses(base, work, args.seconds, args.runs)
        if "uploads" in parts:
            rows += bench_uploads(base, work, args.uploads, max(1, args.runs - 1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.wheels} wheels, {os.cpu_count()} cores, loopback\n")
    print("| case | dynawheel | incumbent | ratio / goal |\n|---|---|---|---|")
    for row in rows:
        print(row)
    return 0


def bench_index(base: Path, work: Path, runs: int) -> list[str]:
    """Both generators write their index into the wheelhouse itself (a hard-linked copy of it),
    with PEP 658 metadata files; simple503 with --no-sort so that it moves no wheel."""
    cold_ours, cold_503, noop, plus1, first = [], [], [], [], []
    cpu_ours: list[float] = []
    cpu_503: list[float] = []
    cpu_noop: list[float] = []
    cpu_plus1: list[float] = []
    for i in range(runs):
        house503, house = work / f"h503-{i}", work / f"house-{i}"
        clone(base, house503)
        clone(base, house)
        cold_503.append(timed(tool_cmd("simple503", "-B", "/", "--extract-metadata", "--no-sort", str(house503))))
        cpu_503.append(CPU[-1])
        cold_ours.append(timed(dynawheel_cmd("index", house)))
        cpu_ours.append(CPU[-1])
        print(f"  index cold: dynawheel {cold_ours[-1]:.2f} s  simple503 {cold_503[-1]:.2f} s", file=sys.stderr)
        shutil.rmtree(house503, ignore_errors=True)
        if i:
            shutil.rmtree(house, ignore_errors=True)
    house = work / "house-0"
    for i in range(runs):
        noop.append(timed(dynawheel_cmd("index", house)))
        cpu_noop.append(CPU[-1])
        extra = make_wheel(house, f"benchpkg-extra{i}", "1.0")
        past = time.time() - 60
        os.utime(extra, (past, past))
        plus1.append(timed(dynawheel_cmd("index", house)))
        cpu_plus1.append(CPU[-1])
        print(f"  index no-op {noop[-1]:.3f} s, +1 wheel {plus1[-1]:.3f} s", file=sys.stderr)
    for _ in range(runs):
        server = ours(house)
        first.append(server.startup)
        server.stop()
        print(f"  serve first answer {first[-1]:.3f} s", file=sys.stderr)
    return [
        f"| index, cold, {len(list(base.iterdir()))} wheels (wall; CPU) | {median(cold_ours):.2f} s; "
        f"{median(cpu_ours):.2f} s | simple503 {median(cold_503):.2f} s; {median(cpu_503):.2f} s | "
        f"**{median(cold_503) / median(cold_ours):.1f}x** wall, {median(cpu_503) / median(cpu_ours):.1f}x CPU "
        "(goal >= 1x) |",
        f"| index, no-op re-run (wall; CPU) | {median(noop):.3f} s; {median(cpu_noop):.3f} s | | goal < 0.3 s |",
        f"| index, +1 wheel (wall; CPU) | {median(plus1):.3f} s; {median(cpu_plus1):.3f} s | | goal < 0.3 s |",
        f"| serve, first answer on an indexed wheelhouse | {median(first):.3f} s | | goal < 1 s |",
    ]


def bench_responses(base: Path, work: Path, seconds: int, runs: int) -> list[str]:
    """wrk against each server in turn, ``runs`` rounds per case: dynawheel serve with one process and with
    ``--workers 2`` (nginx runs 2 worker processes), nginx, and pypiserver (first round only: ~1 req/s).
    The ratio of a round compares runs seconds apart; the table gives the median ratio of the rounds."""
    site = work / "site"
    timed(dynawheel_cmd("index", base, "-o", site))  # the static site nginx serves
    inplace = work / "house-0"
    if not inplace.exists():
        clone(base, inplace)
        timed(dynawheel_cmd("index", inplace))
    project = "benchpkg-00017"
    wheel = sorted(p.name for p in base.glob("benchpkg_00017-*.whl"))[0]
    servers = [ours(inplace), ours(inplace, "--workers", "2"), nginx(site, work / "nginx"),
               pypiserver(base, "-a", ".", "-P", ".")]
    servers[1].name = "dynawheel serve --workers 2"
    load = [os.getloadavg()[0]]
    rows = []
    try:
        cases = [(f"/simple/{project}/", None, "project page (HTML)"),
                 (f"/simple/{project}/", JSON_ACCEPT, "project page (PEP 691 JSON)"),
                 (f"/{wheel}.metadata", None, ".metadata (PEP 658)")]
        for path, accept, label in cases:
            for connections in (1, 64):
                rounds = [_wrk_round(servers, path, accept, connections, seconds, first) for first in
                          [True] + [False] * (runs - 1)]
                rows.append(_responses_row(label, connections, rounds))
                load.append(os.getloadavg()[0])
    finally:
        for server in servers:
            server.stop()
    rows.append(f"| (load average while measuring: {min(load):.1f} to {max(load):.1f}, on {os.cpu_count()} cores) "
                "| | | |")
    return rows


def _wrk_round(servers: list[Server], path: str, accept: str | None, connections: int, seconds: int,
               first: bool) -> dict[str, tuple[float, int, float]]:
    """Per server: requests/s, errors, and the server's CPU time per request in microseconds (what the
    load of other processes on the machine changes least)."""
    results = {}
    for server in servers:
        if server.name == "pypiserver" and (".metadata" in path or not first):
            continue
        url = path if server.name != "nginx" or path.startswith("/simple/") else f"/files{path}"
        before = server.cpu_seconds()
        rate, errors = wrk(server.port, url, connections, seconds, accept)
        cpu_us = (server.cpu_seconds() - before) / max(1.0, rate * seconds) * 1e6
        results[server.name] = (rate, errors, cpu_us)
        print(f"  {path} {accept or ''} c={connections} {server.name}: {rate:.0f} req/s, {errors} errors, "
              f"{cpu_us:.0f} us CPU per request", file=sys.stderr)
    return results


def _responses_row(label: str, connections: int, rounds: list[dict[str, tuple[float, int, float]]]) -> str:
    def of(name: str) -> tuple[float, int, float, float]:
        rate = median([r[name][0] for r in rounds])
        errors = sum(r[name][1] for r in rounds)
        ratio = median([r[name][0] / r["nginx"][0] for r in rounds])
        return rate, errors, ratio, median([r[name][2] for r in rounds])

    one, two, theirs = of("dynawheel serve"), of("dynawheel serve --workers 2"), of("nginx")
    pypi = rounds[0].get("pypiserver")
    pypi_text = f"; pypiserver {pypi[0]:.0f}/s, {pypi[1]} errors" if pypi else ""
    return (f"| {label}, concurrency {connections} | 1 process {one[0]:.0f} req/s ({one[1]} errors, "
            f"{one[3]:.0f} us CPU/req); --workers 2 {two[0]:.0f} req/s ({two[1]} errors, {two[3]:.0f} us) | "
            f"nginx {theirs[0]:.0f} req/s ({theirs[1]} errors, {theirs[3]:.0f} us CPU/req){pypi_text} | "
            f"**{one[2]:.0%}** / **{two[2]:.0%}** of nginx (median of {len(rounds)} rounds; goal >= 50 %) |")


def bench_uploads(base: Path, work: Path, count: int, runs: int) -> list[str]:
    dist = work / "uploads"
    dist.mkdir()
    files = [make_wheel(dist, f"uploaded-{i:03d}", "1.0", payload=os.urandom(2000)) for i in range(count)]
    users, htpasswd = work / "users.txt", work / "htpasswd.txt"
    subprocess.run(dynawheel_cmd_str("serve", "--add-user", "alice", "--password-file", str(users)), input="pw\n",
                   text=True, check=True, capture_output=True, env={**os.environ, **venv_env()})
    subprocess.run(["htpasswd", "-bcB", str(htpasswd), "alice", "pw"], check=True, capture_output=True)
    rows = []
    for ways in (1, 8):
        times: dict[str, list[float]] = {"dynawheel serve": [], "pypiserver": []}
        rss: dict[str, float] = {"dynawheel serve": 0.0, "pypiserver": 0.0}
        cpu: dict[str, list[float]] = {"dynawheel serve": [], "pypiserver": []}  # the server's, over the round
        listed: dict[str, int] = {"dynawheel serve": count, "pypiserver": count}
        for run_number in range(runs):
            for name in ("pypiserver", "dynawheel serve"):
                house = work / f"up-{name.split()[0]}-{ways}-{run_number}"
                clone(base, house)
                if name == "dynawheel serve":
                    timed(dynawheel_cmd("index", house))
                    server = ours(house, "--password-file", str(users))
                else:
                    server = pypiserver(house, "-a", "update", "-P", str(htpasswd))
                try:
                    before = server.cpu_seconds()
                    times[name].append(upload_round(server, files, ways, "alice", "pw"))
                    cpu[name].append(server.cpu_seconds() - before)
                    listed[name] = min(listed[name], check_listed(server, files))
                    rss[name] = max(rss[name], server.peak_rss_mb())
                finally:
                    server.stop()
                    shutil.rmtree(house, ignore_errors=True)
                print(f"  {count} uploads, {ways}-way, {name}: {times[name][-1]:.2f} s, server CPU "
                      f"{cpu[name][-1]:.2f} s, peak RSS {rss[name]:.0f} MB, {listed[name]}/{count} listed",
                      file=sys.stderr)
        mine, theirs = median(times["dynawheel serve"]), median(times["pypiserver"])
        my_cpu, their_cpu = median(cpu["dynawheel serve"]), median(cpu["pypiserver"])
        rows.append(f"| {count} twine uploads, {'sequential' if ways == 1 else f'{ways}-way'} | {mine:.2f} s, "
                    f"server CPU {my_cpu:.2f} s, {listed['dynawheel serve']}/{count} listed, peak RSS "
                    f"{rss['dynawheel serve']:.0f} MB | pypiserver {theirs:.2f} s, server CPU {their_cpu:.2f} s, "
                    f"{listed['pypiserver']}/{count} listed, peak RSS {rss['pypiserver']:.0f} MB | "
                    f"**{theirs / mine:.1f}x** wall, {their_cpu / max(my_cpu, 0.01):.1f}x server CPU "
                    f"(goal >= 1x, RSS < 150 MB) |")
    return rows


def dynawheel_cmd_str(*args: str) -> list[str]:
    return [str(c) for c in dynawheel_cmd(*args)]


if __name__ == "__main__":
    sys.exit(main())
