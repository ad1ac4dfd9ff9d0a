"""The demo: the seed's use case end to end, with the real tools, on a fresh machine.

1. stage pkg1 (a C extension `_apy` that links support.so, left in a separate build directory as a
   typical build leaves it, and dlopen()s a plugin; apy.py; the regular package pkg_std; the PEP 420
   namespace package pkg_ns) and pkg2 (loadme.so and more.so into the same `anamespace/`, plus .data
   scripts, headers and data), all built with gcc;
2. `dynawheel repair --collect-deps` the pkg1 stage (support.so is vendored beside the extension,
   renamed, RUNPATH set to $ORIGIN), `dynawheel build` both, `dynawheel check` them together;
3. `dynawheel index` + `dynawheel serve` in the background;
4. delete the build directory, `pip install` both from the served index into a fresh venv, import and
   call the extension, print the installed tree and the `dynawheel show` load chain; stop the server.

Run it with `make demo` (or `python scripts/demo.py [OUTDIR]`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures" / "seed"))

import stage_seed  # noqa: E402

DW = [sys.executable, "-m", "dynawheel"]


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def sh(*args: str | Path, env: dict[str, str] | None = None) -> str:
    shown = shlex.join(str(a) for a in args)  # quoted: each line can be pasted back into a shell
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          env={**os.environ, **env} if env else None)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        print(out, flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed ({proc.returncode}): {shown}")
    return proc.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, server: subprocess.Popen[str]) -> None:
    for _ in range(100):
        if server.poll() is not None:
            raise SystemExit(f"demo: the server exited ({server.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: {url} did not answer")


def build_wheels(tree: Path, out: Path) -> list[Path]:
    step("repair pkg1: vendor support.so beside the extension")
    sh(*DW, "show", tree / "pkg1" / "src")
    sh(*DW, "repair", tree / "pkg1" / "src", "--collect-deps", "-o", out / "pkg1-repaired",
       "--name", "anamespace.pkg1")
    step("build the wheels")
    wheels = out / "wheelhouse"
    sh(*DW, "build", out / "pkg1-repaired", "--name", "anamespace.pkg1", "--version", "1.0.0",
       "--summary", "the seed's pkg1", "--tag", "py3-none-linux_x86_64", "--root-is-platlib", "-w", wheels)
    sh(*DW, "build", tree / "pkg2" / "src", "--name", "anamespace.pkg2", "--version", "1.0.0",
       "--requires", "anamespace.pkg1", "--tag", "py3-none-linux_x86_64", "--root-is-platlib", "-w", wheels)
    built = sorted(wheels.glob("*.whl"))
    sh(*DW, "check", *built)
    return built


def install_from_index(out: Path, wheels: Path, build_dir: Path) -> Path:
    step("index the wheelhouse and serve it")
    sh(*DW, "index", wheels)
    port = free_port()
    server = subprocess.Popen([*DW, "-v", "serve", str(wheels), "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/simple/"
        wait_for(url, server)
        print(f"serving {wheels} at {url}")
        step("delete the build directory, then pip install from the index into a fresh venv")
        shutil.rmtree(build_dir)
        print(f"deleted {build_dir}")
        env = out / "venv"
        venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(env)
        sh(env / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q",
           "--index-url", url, "anamespace.pkg2", env={"PIP_CONFIG_FILE": os.devnull})
    finally:
        server.terminate()
        server.wait(10)
        log = server.stdout.read() if server.stdout else ""
        requests = [ln.split("INFO: ", 1)[-1] for ln in log.splitlines() if '"GET ' in ln]
        print("server stopped; pip asked it for:\n" + "\n".join("  " + ln for ln in requests))
    return env


def use(env: Path) -> None:
    step("use it")
    py = env / "bin" / "python"
    sh(py, "-c", "import anamespace.apy as a, anamespace.pkg_ns.mb as mb, anamespace.pkg_std.ma as ma, plat; "
                 "print('add(1, 2) =', a.add(1, 2), '| plugin() =', a.plugin(), '|', mb.NAME, ma.NAME, plat.WHERE);"
                 "print('mapped:', *sorted({l.split()[-1] for l in open('/proc/self/maps') if 'anamespace' in l}))")
    sh(env / "bin" / "aexe")
    step("installed tree")
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    for path in sorted((site / "anamespace").rglob("*")):
        if "__pycache__" not in path.parts:
            print("  site-packages/" + path.relative_to(site).as_posix())
    for extra in (site / "plat.py", env / "bin" / "aexe", env / "a.txt"):
        print("  " + extra.relative_to(env).as_posix())
    step("the load chain, as installed")
    sh(*DW, "show", site / "anamespace")


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "demo-out").resolve()
    if out.exists():
        shutil.rmtree(out)
    step("stage pkg1 and pkg2 (gcc); support.so stays in build/lib")
    tree = stage_seed.build(out / "stage", external=True)
    print(f"staged in {tree}")
    built = build_wheels(tree, out)
    env = install_from_index(out, built[0].parent, tree / "build")
    use(env)
    print("\ndemo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
