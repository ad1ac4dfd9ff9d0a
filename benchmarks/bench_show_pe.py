"""`dynawheel show` vs `delvewheel show` on small published Windows wheels (issue 11: goal >= 3x).

The wheels: pinned win_amd64 (cp311) wheels from PyPI, downloaded once into
``~/.cache/dynawheel-bench/windows-wheels`` (``pip download --isolated --no-deps
--only-binary=:all: --platform win_amd64 --python-version 3.11 --implementation cp``).  Both tools
run from the benchmark venv (``_common.bench_venv()``; delvewheel is installed there on first use),
as ``VENV/bin/python -m dynawheel show WHEEL`` and ``VENV/bin/python -m delvewheel show WHEEL``,
alternating (incumbent first).  Reported per wheel: median wall time and median CPU time (user +
system of the child, from wait4: steadier than wall time on a shared machine) of each, their
ratios (incumbent / dynawheel), and whether each tool succeeded (dynawheel exits 3 when a DLL is
missing, e.g. pywin32's MSVCP140.dll: a finding, not a failure).

    python benchmarks/bench_show_pe.py [--runs 9] [--wheel PATH ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_venv, dynawheel_cmd, tool_cmd, venv_env

DELVEWHEEL = "delvewheel==1.13.2"
WHEELS = ["pycairo==1.29.2", "pywin32==312", "markupsafe==3.0.4", "psutil==7.2.2", "pyzmq==27.3.0",
          "lxml==6.2.0", "pillow==13.0.0", "numpy==2.4.6"]
CACHE = Path(os.environ.get("DYNAWHEEL_BENCH_CACHE") or Path.home() / ".cache" / "dynawheel-bench") / "windows-wheels"


@dataclass
class Run:
    wall: float
    cpu: float
    code: int


def run(cmd: list[str | Path]) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **venv_env()})
    _, status, usage = os.wait4(proc.pid, 0)
    return Run(time.perf_counter() - start, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status))


def ensure_delvewheel() -> None:
    python = bench_venv()
    if subprocess.run([str(python), "-c", "import delvewheel"], capture_output=True).returncode != 0:
        print(f"benchmark venv: installing {DELVEWHEEL}", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", DELVEWHEEL],
                       check=True)


def fetch(requirement: str) -> Path:
    name = requirement.split("==")[0].replace("-", "_").lower()
    version = requirement.split("==")[1]
    CACHE.mkdir(parents=True, exist_ok=True)
    found = [p for p in CACHE.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}-")]
    if found:
        return found[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--only-binary=:all:",
                    "--platform", "win_amd64", "--python-version", "3.11", "--implementation", "cp",
                    "--disable-pip-version-check", "-q", "-d", str(CACHE), requirement], check=True)
    return fetch(requirement)


def measure(wheel: Path, runs: int) -> str:
    ours: list[Run] = []
    theirs: list[Run] = []
    for _ in range(runs):
        theirs.append(run(tool_cmd("delvewheel", "show", wheel)))
        ours.append(run(dynawheel_cmd("show", wheel)))
    wall_a, wall_b = (statistics.median(r.wall for r in side) for side in (ours, theirs))
    cpu_a, cpu_b = (statistics.median(r.cpu for r in side) for side in (ours, theirs))
    ok_a = "ok" if all(r.code == 0 for r in ours) else f"exit {sorted({r.code for r in ours})}"
    ok_b = "ok" if all(r.code == 0 for r in theirs) else f"exit {sorted({r.code for r in theirs})}"
    size = wheel.stat().st_size / 2**20
    return (f"| {wheel.name} ({size:.1f} MB) | {wall_b * 1000:.0f} / {cpu_b * 1000:.0f} ms ({ok_b}) | "
            f"{wall_a * 1000:.0f} / {cpu_a * 1000:.0f} ms ({ok_a}) | **{wall_b / wall_a:.1f}x** | "
            f"**{cpu_b / cpu_a:.1f}x** |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--wheel", type=Path, action="append", help="benchmark these wheels instead")
    args = parser.parse_args()
    ensure_delvewheel()
    wheels = args.wheel or [fetch(w) for w in WHEELS]
    print("| wheel | delvewheel show: wall / CPU median | dynawheel show: wall / CPU median | wall ratio | "
          "CPU ratio |\n|---|---|---|---|---|")
    for wheel in wheels:
        print(measure(wheel, args.runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
