"""`dynawheel show` side by side with the incumbents on the real-world corpus (issue 11).

The wheels: the pinned corpus of the test suite (``tests/corpus_wheels.json``), taken from pytest's
cache (``.pytest_cache/d/dynawheel-corpus-wheels``, filled by ``pytest -m network tests/test_corpus.py``)
or downloaded with pip and checked against their sha256.  The Linux wheels (manylinux, musllinux)
are compared with ``auditwheel show``, the Windows ones with ``delvewheel show``; macOS wheels have
no incumbent that runs here.  Both tools run from the benchmark venv (``_common.bench_venv()``),
alternating, incumbent first; dynawheel with the same options as the corpus test (the host's paths for
Linux wheels, ``--no-system-paths`` and the entry's ``--dll-dir``s for Windows ones).

A row says whether the incumbent succeeded (exit 0) and whether dynawheel found the wheel complete
(exit 0; 3 = something missing).

    python benchmarks/bench_corpus_show.py [--runs 3] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO, bench_venv, dynawheel_cmd, tool_cmd, venv_env

CORPUS = json.loads((REPO / "tests" / "corpus_wheels.json").read_text())["wheels"]
CACHES = (REPO / ".pytest_cache" / "d" / "dynawheel-corpus-wheels",
          Path.home() / ".cache" / "dynawheel-bench" / "corpus")
HEADER = ("| wheel | size | incumbent | incumbent ok | incumbent median | dynawheel median (result) | ratio |\n"
          "|---|---|---|---|---|---|---|")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wheel_file(entry: dict[str, Any]) -> Path:
    for cache in CACHES:
        path = cache / entry["file"]
        if path.is_file() and _sha256(path) == entry["sha256"]:
            return path
    dest = CACHES[-1]
    dest.mkdir(parents=True, exist_ok=True)
    plat = entry["file"][: -len(".whl")].split("-")[-1].split(".")[-1]
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--only-binary=:all:",
                        "--platform", plat, "--python-version", "3.11", "--implementation", "cp", "-q", "-d", tmp,
                        f"{entry['project']}=={entry['version']}"], check=True)
        got = Path(tmp) / entry["file"]
        if _sha256(got) != entry["sha256"]:
            raise SystemExit(f"{entry['file']}: sha256 differs from the pinned one")
        return got.replace(dest / entry["file"])


def timed(cmd: list[str | Path]) -> tuple[float, str]:
    """Wall time and the outcome: 'ok', 'exit N', or (delvewheel exits 0 then) 'N not found'."""
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env={**os.environ, **venv_env()})
    elapsed = time.perf_counter() - start
    not_found = proc.stdout.count("(Error: Not Found)")
    if proc.returncode:
        return elapsed, f"exit {proc.returncode}"
    return elapsed, f"{not_found} not found" if not_found else "ok"


def commands(entry: dict[str, Any], wheel: Path) -> tuple[str, list[str | Path], list[str | Path]] | None:
    plat = entry["file"][: -len(".whl")].split("-")[-1]
    if plat.startswith(("manylinux", "musllinux")):
        return "auditwheel show", dynawheel_cmd("show", wheel), tool_cmd("auditwheel", "show", wheel)
    if plat.startswith("win"):
        dirs = [a for d in entry.get("dll_dirs", ()) for a in ("--dll-dir", d)]
        return ("delvewheel show", dynawheel_cmd("show", "--no-system-paths", *dirs, wheel),
                tool_cmd("delvewheel", "show", wheel))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", help="only wheels whose file name contains this")
    args = parser.parse_args()
    bench_venv()
    rows, ratios = [], []
    for entry in CORPUS:
        if args.only and args.only not in entry["file"]:
            continue
        wheel = wheel_file(entry)
        cmds = commands(entry, wheel)
        if cmds is None:
            continue
        incumbent, ours, theirs = cmds
        mine: list[float] = []
        other: list[float] = []
        codes: set[str] = set()
        their_codes: set[str] = set()
        for _ in range(args.runs):
            t, code = timed(theirs)
            other.append(t)
            their_codes.add(code)
            t, code = timed(ours)
            mine.append(t)
            codes.add(code)
        a, b = statistics.median(mine), statistics.median(other)
        ratios.append(b / a)
        ok = "yes" if their_codes == {"ok"} else f"no ({', '.join(sorted(their_codes))})"
        ours_ok = "complete" if codes == {"ok"} else ", ".join(sorted(codes)).replace("exit 3", "missing (exit 3)")
        print(f"{entry['file']}: dynawheel {a:.2f} s, {incumbent} {b:.2f} s ({ok})", file=sys.stderr, flush=True)
        rows.append(f"| {entry['file']} | {entry['size'] / 2**20:.1f} MB | {incumbent} | {ok} | {b:.2f} s | "
                    f"{a:.2f} s ({ours_ok}) | **{b / a:.1f}x** |")
    print(HEADER)
    print("\n".join(rows))
    if ratios:
        print(f"\n{len(ratios)} wheels; ratio min {min(ratios):.1f}x, median {statistics.median(ratios):.1f}x, "
              f"max {max(ratios):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
