"""Shared benchmark helpers: alternate runs, medians, peak RSS of the child, a ratio table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Timing:
    seconds: float
    peak_rss_mb: float


@dataclass
class Case:
    name: str
    incumbent: str
    ours: list[Timing]
    theirs: list[Timing]
    our_size: int | None = None
    their_size: int | None = None

    def row(self) -> str:
        mine = statistics.median(t.seconds for t in self.ours)
        other = statistics.median(t.seconds for t in self.theirs)
        rss_a = max(t.peak_rss_mb for t in self.ours)
        rss_b = max(t.peak_rss_mb for t in self.theirs)
        size = ""
        if self.our_size and self.their_size:
            change = self.our_size / self.their_size - 1
            size = f"{self.our_size / 2**20:8.1f} MB vs {self.their_size / 2**20:8.1f} MB ({change:+.1%})"
        return (f"| {self.name} | {self.incumbent} | {other:.2f} s | {mine:.2f} s | **{other / mine:.1f}x** | "
                f"{rss_a:.0f} / {rss_b:.0f} MB | {size} |")


HEADER = ("| case | incumbent | incumbent median | dynawheel median | ratio | peak RSS ours / theirs | output size "
          "(ours vs theirs) |\n|---|---|---|---|---|---|---|")


def run(cmd: Sequence[str | Path], env: dict[str, str] | None = None, cwd: Path | None = None,
        accept: Sequence[int] = (0,)) -> Timing:
    """Run a command to completion; its wall time and its peak RSS (from wait4).
    An exit code outside `accept` stops the benchmark."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})}, cwd=cwd)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.perf_counter() - start
    if proc.returncode not in accept:
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err.decode()}")
    return Timing(elapsed, usage.ru_maxrss / 1024)


def alternate(ours: Callable[[], Timing], theirs: Callable[[], Timing], runs: int) -> tuple[list[Timing], list[Timing]]:
    """Run both sides `runs` times, alternating (theirs first), to share any machine drift."""
    a: list[Timing] = []
    b: list[Timing] = []
    for _ in range(runs):
        b.append(theirs())
        a.append(ours())
        print(f"    dynawheel {a[-1].seconds:7.2f} s   incumbent {b[-1].seconds:7.2f} s", file=sys.stderr, flush=True)
    return a, b


def dynawheel_cmd(*args: str | Path) -> list[str | Path]:
    return [sys.executable, "-m", "dynawheel", *args]
