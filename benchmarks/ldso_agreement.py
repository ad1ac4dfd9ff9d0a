#!/usr/bin/env python3
"""Agreement of dynawheel's ELF resolution with glibc's own loader (``ld.so --list``).

For every ELF file under /usr/lib/x86_64-linux-gnu and /usr/bin (or the paths given),
the full transitive closure ``{request name: path}`` that glibc's loader prints in
trace mode (``LD_TRACE_LOADED_OBJECTS=1 /lib64/ld-linux-x86-64.so.2 FILE``, which is
what ``ldd`` runs; unlike ``--list`` it reports misses as "not found") is compared
with dynawheel's resolution of the same file
(``analyze(FileTree(FILE), SearchPaths.from_host({}))``, LD_LIBRARY_PATH unset on both
sides).  A file agrees when both mappings are equal, "not found" entries included.

ld.so prints paths as it opened them (``$ORIGIN/../lib`` stays un-normalized, and only
the kernel knows where ``link/../lib`` is when ``link`` is a symlinked directory); both
sides are compared as real paths (``os.path.realpath``), the interpreter's as printed.

Files ld.so cannot list (static executables, objects of another machine, linker
scripts, relocatable objects, files it refuses) are skipped and counted separately:
there is no oracle for them.

Disagreement classes (printed with their files when any occur):

* ``only-ldso`` / ``only-ours``: a name one side loads and the other does not.
* ``path``: the same name resolved to different files.
* The program interpreter line (``/lib64/ld-linux-x86-64.so.2 (0x...)``) has no
  ``name =>`` form in ld.so's output; it is compared by the interpreter's request
  name, which both sides resolve to PT_INTERP.
* Known, not modelled here: secure-mode rules for setuid files (``ld.so --list`` does
  not apply them either).  ``glibc-hwcaps``/legacy hwcap subdirectories, their
  ``ld.so.cache`` entries and ``$PLATFORM`` are modelled (none exist on this host:
  tests/test_ldso_rules.py checks them on traps).

Speed (``--speed [RUNS]``): the time glibc's loader takes to list every file of the set
(``ld.so --list FILE``, one process after the other) against ``dynawheel show DIR`` on each
directory of the set (one process per directory, every binary of it analysed, soname
symlinks once per file), alternating, ld.so first; medians of wall and CPU time (user + sys
of the children: the machine is shared), and the ratio dynawheel / ld.so.  dynawheel runs from the
benchmark venv (this checkout installed with its dependencies, ``_common.bench_venv()``), and a
``show`` that exits other than 0 or 3 (3: the host's own missing libraries) stops the benchmark: a
failing run is not a time.

Usage: python benchmarks/ldso_agreement.py [PATH ...] [--limit N] [-v] [--speed [RUNS]]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dynawheel.analysis.resolve import analyze
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree, FileTree

LDSO = "/lib64/ld-linux-x86-64.so.2"
DEFAULT_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/bin")
_LINE = re.compile(r"^\s*(\S+) => (?:(\S+) \(0x[0-9a-f]+\)|not found)\s*$")
_INTERP_LINE = re.compile(r"^\s*(/\S+) \(0x[0-9a-f]+\)\s*$")


def elf_files(dirs: list[str]) -> list[str]:
    out = []
    for d in dirs:
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            if entry.is_file(follow_symlinks=False):
                with open(entry.path, "rb") as fp:
                    if fp.read(4) == b"\x7fELF":
                        out.append(entry.path)
    return out


def ldso_closure(path: str) -> dict[str, str | None] | None:
    """{request name: path or None} from ld.so in trace mode; None when ld.so cannot list the file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["LD_TRACE_LOADED_OBJECTS"] = "1"  # what ldd does: list, and print misses as "not found"
    proc = subprocess.run([LDSO, path], capture_output=True, text=True, env=env, timeout=60)
    if proc.returncode != 0:
        return None
    out: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        m = _LINE.match(line)
        if m:
            out.setdefault(m.group(1), _real(m.group(2)) if m.group(2) else None)
        elif _INTERP_LINE.match(line):
            out.setdefault(os.path.basename(_INTERP_LINE.match(line).group(1)), _INTERP_LINE.match(line).group(1))  # type: ignore[union-attr]
    return out


def _real(path: str) -> str:
    """The file a path names (symlinks and '..' resolved by the kernel); the interpreter as printed."""
    return path if path == LDSO else os.path.realpath(path)


def our_closure(path: str, search: SearchPaths) -> dict[str, str | None]:
    analysis = analyze(FileTree(path), search)
    out: dict[str, str | None] = {}
    for walk in analysis.walks[:1]:
        for edge in walk.edges:
            if edge.loaded_here or edge.hit is None:  # first load of a name, or a miss
                out.setdefault(edge.request.name, None if edge.hit is None else _real(edge.hit))
    return out


def compare(path: str, search: SearchPaths) -> tuple[str, list[str]]:
    """('agree' | 'skip' | 'disagree', details)."""
    theirs = ldso_closure(path)
    if theirs is None:
        return "skip", []
    ours = our_closure(path, search)
    # ld.so prints its own line for the interpreter, even when nothing requests it by name.
    interp_names = {n for n, p in theirs.items() if p == LDSO}
    problems = []
    for name in sorted(set(theirs) | set(ours)):
        if name in interp_names and name not in ours:
            continue
        if name not in ours:
            problems.append(f"only-ldso {name} => {theirs[name]}")
        elif name not in theirs:
            problems.append(f"only-ours {name} => {ours[name]}")
        elif theirs[name] != ours[name]:
            problems.append(f"path {name}: ld.so {theirs[name]} / ours {ours[name]}")
    return ("disagree" if problems else "agree"), problems


def _timed(commands: list[list[str]], env: dict[str, str] | None = None,
           ok: tuple[int, ...] | None = None) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the children) to run `commands` one after the other; with `ok`,
    a command that exits with another status stops the benchmark (a failing run is not a time)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    for cmd in commands:
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, check=False)
        if ok is not None and proc.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr.decode(errors='replace')[-2000:]}")
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def speed(files: list[str], dirs: list[str], runs: int) -> None:
    """Print ld.so --list over `files` against dynawheel show over `dirs` (see the module docstring)."""
    from _common import bench_venv, venv_env

    python = bench_venv()  # this checkout, installed with its dependencies (not the running python's)
    env = {**os.environ, **venv_env(), "PYTHONSAFEPATH": "1"}
    ldso = [[LDSO, "--list", f] for f in files]
    ours = [[str(python), "-m", "dynawheel", "show", d] for d in dirs]
    theirs_t, ours_t = [], []
    for _ in range(runs):
        theirs_t.append(_timed(ldso))
        ours_t.append(_timed(ours, env, ok=(0, 3)))  # 3: something missing (a host's own gaps)
    for label, i in (("wall", 0), ("CPU", 1)):
        a = statistics.median(t[i] for t in theirs_t)
        b = statistics.median(t[i] for t in ours_t)
        print(f"{label}: ld.so --list {a:.2f} s, dynawheel show {b:.2f} s: {b / a:.2f}x ld.so's time "
              f"({runs} run(s), medians)")
    search = SearchPaths.from_host({})
    for d in dirs:
        analysis = analyze(DirTree(d), search)
        aliases = getattr(analysis, "aliases", {})  # older checkouts: none
        walked = len({w.root for w in analysis.walks if w.root not in aliases})
        print(f"{d}: {len(analysis.tree_binaries)} binary names, {walked} walked, "
              f"{len(aliases)} soname links sharing a walk")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--speed", type=int, nargs="?", const=3, default=0, metavar="RUNS")
    args = parser.parse_args(argv)
    files = elf_files(args.paths or list(DEFAULT_DIRS))
    if args.limit:
        files = files[: args.limit]
    if args.speed:
        speed(files, args.paths or list(DEFAULT_DIRS), args.speed)
        return 0
    search = SearchPaths.from_host({})
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda f: (f, *compare(f, search)), files))
    counts = Counter(r[1] for r in results)
    checked = counts["agree"] + counts["disagree"]
    rate = 100.0 * counts["agree"] / checked if checked else 0.0
    for path, verdict, problems in results:
        if verdict == "disagree":
            print(f"DISAGREE {path}")
            for p in problems:
                print(f"    {p}")
        elif verdict == "skip" and args.verbose:
            print(f"skip {path} (ld.so --list cannot list it)")
    print(f"{len(files)} ELF files, {checked} checked, {counts['skip']} skipped (no oracle), "
          f"{counts['agree']} agree, {counts['disagree']} disagree: agreement {rate:.2f} % "
          f"({time.perf_counter() - start:.1f} s)")
    return 0 if rate >= 99.5 else 1


if __name__ == "__main__":
    sys.exit(main())
