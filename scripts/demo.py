"""The demo: the seed's use case end to end, with the real tools.

1. stage pkg1 (a C extension `_apy` linking support.so and dlopen()ing a plugin, apy.py, the
   regular package pkg_std and the PEP 420 namespace package pkg_ns) and pkg2 (loadme.so and
   more.so into the same `anamespace/`, plus .data scripts, headers and data), built with gcc;
2. `dynawheel build` both, `dynawheel check` them together;
3. `pip install` both into a fresh venv, import and call the extension, print the installed tree.

Run it with `make demo` (or `python scripts/demo.py [OUTDIR]`).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "fixtures" / "seed"))

import stage_seed  # noqa: E402


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def sh(*args: str | Path, cwd: Path | None = None) -> str:
    shown = " ".join(str(a) for a in args)
    print(f"$ {shown}", flush=True)
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).rstrip()
    if out:
        print(out, flush=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo: step failed ({proc.returncode}): {shown}")
    return proc.stdout


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "demo-out").resolve()
    dw = [sys.executable, "-m", "dynawheel"]
    step("stage pkg1 and pkg2 (gcc)")
    tree = stage_seed.build(out / "stage")
    print(f"staged in {tree}")
    step("build the wheels")
    wheels = out / "wheelhouse"
    for pkg in ("pkg1", "pkg2"):
        sh(*dw, "build", tree / pkg / "src", "--name", f"anamespace.{pkg}", "--version", "1.0.0",
           "--tag", "py3-none-linux_x86_64", "--root-is-platlib", "-w", wheels)
    built = sorted(wheels.glob("*.whl"))
    sh(*dw, "check", *built)
    step("install both into a fresh venv and use them")
    env = out / "venv"
    venv.EnvBuilder(with_pip=True, clear=True, symlinks=True).create(env)
    py = env / "bin" / "python"
    sh(py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", *built)
    sh(py, "-c", "import anamespace.apy as a, anamespace.pkg_ns.mb as mb, anamespace.pkg_std.ma as ma, plat; "
                 "print('add(1, 2) =', a.add(1, 2), '| plugin() =', a.plugin(), '|', mb.NAME, ma.NAME, plat.WHERE)")
    sh(env / "bin" / "aexe")
    step("installed tree")
    site = Path(sh(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    for path in sorted((site / "anamespace").rglob("*")):
        if "__pycache__" not in path.parts:
            print("  site-packages/" + path.relative_to(site).as_posix())
    for extra in (site / "plat.py", env / "bin" / "aexe", env / "a.txt"):
        print("  " + extra.relative_to(env).as_posix())
    print("\ndemo: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
