"""Run every benchmark of issue 6 and print one combined table of ratios.

    python benchmarks/run_all.py [--runs 3] [--quick]

Runs bench_show.py (case 1, when present), bench_repair.py (cases 2-4) and bench_build.py
(case 5) one after the other, each in its own process (their progress goes to stderr), then
prints their table rows under one header, with the date and the machine's load average.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HEADER, bench_venv

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_show.py", "bench_repair.py", "bench_build.py", "bench_tags.py")  # in the case order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run per case (smoke mode)")
    args = parser.parse_args()
    rows: list[str] = []
    failed: list[str] = []
    venv = bench_venv()  # created / brought up to date once, before anything is timed
    print(f"== benchmark venv: {venv}", file=sys.stderr, flush=True)
    start_load = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    for script in SCRIPTS:
        path = HERE / script
        if not path.exists():
            print(f"== {script}: not present, skipped", file=sys.stderr)
            continue
        extra = ["--quick"] if args.quick and script == "bench_repair.py" else ["--runs", "1" if args.quick else
                                                                                 str(args.runs)]
        print(f"== {script} {' '.join(extra)}", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, str(path), *extra], stdout=subprocess.PIPE, text=True)
        table = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| case")]
        if proc.returncode != 0 or not table:
            failed.append(f"{script} (exit {proc.returncode})")
        rows += table
    ended = datetime.datetime.now(datetime.timezone.utc)
    print(f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
          f"load average at start {start_load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; "
          f"both tools from the venv {venv.parent.parent}; ratio = incumbent median / dynawheel median\n")
    print(HEADER)
    for row in rows:
        print(row)
    for name in failed:
        print(f"\nFAILED: {name}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
