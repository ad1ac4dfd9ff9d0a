"""Where the time of `dynawheel show` on a small wheel goes: start-up, layer by layer (issue 11).

On a wheel with one small extension `show` does next to no work; its time is the interpreter and
what it imports.  This script times, alternating, in the benchmark venv (``_common.bench_venv()``):

1. ``python -c pass``: the interpreter and site;
2. ``python -c "import re"``: what the console script pip writes imports itself;
3. the modules other than dynawheel's a `show` of WHEEL imports (found by running it once and reading
   ``sys.modules``), imported alone, the garbage collector off as the `dynawheel` program has it;
4. every module a `show` of WHEEL imports, dynawheel's included, imported alone (no work done);
5. ``dynawheel --version`` and ``dynawheel show WHEEL`` (the console script);
6. ``delvewheel show WHEEL`` (the incumbent; delvewheel is installed into the venv on first use).

Reported: median and minimum CPU time (user + system of the child, from wait4; the steadier figure on
a shared machine) of each, and, when valgrind is installed, the instructions each executes (callgrind's
count of one run: independent of the machine's load).  The difference between two lines is what that
layer costs.  The last line is the budget a 3x ratio against delvewheel would leave.

    python benchmarks/startup_floor.py [--runs 21] [WHEEL]   (default: the markupsafe win_amd64 wheel)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bench_venv, venv_env
from bench_show_pe import ensure_delvewheel, fetch

_PROBE = """
import sys
from dynawheel.cli import main
main(sys.argv[1:])
print(" ".join(sorted(n for n in sys.modules if not n.startswith("_"))), file=sys.stderr)
"""


def cpu(cmd: list[str]) -> float:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                            env={**os.environ, **venv_env()})
    _, _status, usage = os.wait4(proc.pid, 0)
    return usage.ru_utime + usage.ru_stime


def instructions(cmd: list[str]) -> int | None:
    """Instructions `cmd` executes (valgrind's callgrind, one run), or None without valgrind."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    proc = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd="/",
                          env={**os.environ, **venv_env()})
    found = re.search(r"Collected : (\d+)", proc.stderr)
    return int(found.group(1)) if found else None


def show_modules(python: Path, wheel: Path) -> tuple[list[str], list[str]]:
    """(standard-library modules, all modules) a `show` of `wheel` imports, beyond what start-up has."""
    start = set(subprocess.run([str(python), "-c", "import sys; print(' '.join(sys.modules))"], capture_output=True,
                               text=True, check=True, env={**os.environ, **venv_env()}).stdout.split())
    proc = subprocess.run([str(python), "-c", _PROBE, "show", str(wheel)], capture_output=True, text=True,
                          env={**os.environ, **venv_env()}, cwd="/")
    names = [n for n in proc.stderr.splitlines()[-1].split() if n not in start and n != "__main__"]
    return [n for n in names if n.split(".")[0] != "dynawheel"], names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("wheel", type=Path, nargs="?")
    args = parser.parse_args()
    python = bench_venv()
    ensure_delvewheel()
    wheel = args.wheel or fetch("markupsafe==3.0.4")
    stdlib, everything = show_modules(python, wheel)
    bindir = python.parent
    cases = {
        "python -c pass": [str(python), "-c", "pass"],
        "python -c 'import re' (the console script's own import)": [str(python), "-c", "import re"],
        "python -c 'import re, argparse'": [str(python), "-c", "import re, argparse"],
        # the collector off while importing, as the `dynawheel` program runs (cli.program)
        f"the {len(stdlib)} other modules show imports (standard library, deflate)":
            [str(python), "-c", "import gc; gc.disable(); import " + ", ".join(stdlib)],
        f"all {len(everything)} modules show imports (no work)":
            [str(python), "-c", "import gc; gc.disable(); import re, " + ", ".join(everything)],
        "dynawheel --version": [str(bindir / "dynawheel"), "--version"],
        f"dynawheel show {wheel.name}": [str(bindir / "dynawheel"), "show", str(wheel)],
        f"delvewheel show {wheel.name}": [str(bindir / "delvewheel"), "show", str(wheel)],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, cmd in cases.items():
            times[name].append(cpu(cmd))
    counts = {name: instructions(cmd) for name, cmd in cases.items()}
    print("| what | CPU median | CPU min | instructions |\n|---|---|---|---|")
    for name, values in times.items():
        count = counts[name]
        shown = f"{count / 1e6:.0f} M" if count is not None else "(no valgrind)"
        print(f"| {name} | {statistics.median(values) * 1000:.1f} ms | {min(values) * 1000:.1f} ms | {shown} |")
    incumbent = list(times)[-1]
    theirs, count = times[incumbent], counts[incumbent]
    budget = f"{count / 3e6:.0f} M" if count is not None else ""
    print(f"| 3x against {incumbent.split()[0]} (the goal's budget) | {statistics.median(theirs) / 3 * 1000:.1f} ms"
          f" | {min(theirs) / 3 * 1000:.1f} ms | {budget} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
