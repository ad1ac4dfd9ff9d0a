#!/usr/bin/env python3
"""Write what `dynawheel show` prints (text and ``--json``) for the ldso_agreement directories and the
corpus wheels into OUT, one file per target and format, with the exit code: run it on two checkouts and
``diff -r`` the two directories to show that a speed change kept every output byte for byte.

The corpus wheels are taken from pytest's cache (``.pytest_cache/d/dynawheel-corpus-wheels``, filled by
``pytest -m network tests/test_corpus.py``); a wheel not there is left out (and said so).  Windows wheels
get the options of the corpus test (``--no-system-paths`` and their ``--dll-dir``s).

    python benchmarks/show_outputs.py OUT [--repo CHECKOUT] [--no-dirs] [--no-wheels]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/bin")


def targets(repo: Path, dirs: bool, wheels: bool) -> list[tuple[str, list[str]]]:
    """(label, show arguments) of every target."""
    out = [(d.strip("/").replace("/", "_"), [d]) for d in DIRS] if dirs else []
    if not wheels:
        return out
    cache = repo / ".pytest_cache" / "d" / "dynawheel-corpus-wheels"
    for entry in json.loads((repo / "tests" / "corpus_wheels.json").read_text())["wheels"]:
        wheel = cache / entry["file"]
        if not wheel.is_file():
            print(f"not cached, left out: {entry['file']}", file=sys.stderr)
            continue
        extra = (["--no-system-paths", *(a for d in entry.get("dll_dirs", ()) for a in ("--dll-dir", d))]
                 if "win" in entry["file"].rsplit("-", 1)[-1] else [])
        out.append((entry["file"], [*extra, str(wheel)]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--repo", type=Path, default=HERE, help="the checkout to run (default: this one)")
    parser.add_argument("--no-dirs", action="store_true")
    parser.add_argument("--no-wheels", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(args.repo.resolve()), "PYTHONSAFEPATH": "1"}
    for label, argv in targets(HERE, not args.no_dirs, not args.no_wheels):
        for fmt, flags in (("txt", []), ("json", ["--json"])):
            proc = subprocess.run([sys.executable, "-m", "dynawheel", "show", *flags, *argv], env=env,
                                  capture_output=True, check=False, stdin=subprocess.DEVNULL)
            (args.out / f"{label}.{fmt}").write_bytes(proc.stdout + f"\nexit {proc.returncode}\n".encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
