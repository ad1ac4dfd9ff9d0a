#!/usr/bin/env python3
"""Time ``dynawheel.analysis.resolve.analyze`` on a wheel, a directory or a file.

Usage: python benchmarks/analyze_speed.py PATH [--repeat N] [--auditwheel]

With ``--auditwheel`` (PATH must be a wheel) ``auditwheel show PATH`` is timed too and
the ratio printed.  The analysis alone is timed here (the CLI's rendering is not).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynawheel.analysis.graph import DependencyGraph
from dynawheel.analysis.resolve import analyze
from dynawheel.search import SearchPaths
from dynawheel.tree import open_tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--auditwheel", action="store_true")
    args = parser.parse_args(argv)
    best = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        analysis = analyze(open_tree(args.path), SearchPaths.from_host())
        graph = DependencyGraph(analysis)
        best = min(best, time.perf_counter() - start)
    edges = sum(len(w.edges) for w in analysis.walks)
    print(f"analyze {args.path}: {best:.2f} s (best of {args.repeat}); {len(analysis.files)} files, "
          f"{len(analysis.tree_binaries)} binaries, {len(analysis.bad)} bad, {edges} edges, "
          f"{len(graph.missing())} missing, {len({e.hit for e in graph.external()})} external")
    if args.auditwheel:
        start = time.perf_counter()
        subprocess.run(["auditwheel", "show", args.path], capture_output=True, check=False)
        theirs = time.perf_counter() - start
        print(f"auditwheel show: {theirs:.1f} s; ratio {theirs / best:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
