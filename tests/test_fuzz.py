"""The fuzzer in CI: a bounded budget per input kind (``make fuzz`` runs 100,000 cases per kind), and
every crasher it ever found, replayed.

Each kind runs in a process of its own (libFuzzer owns the process), stops at the first finding
(--strict) and prints the finding with its traceback; the budget is FUZZ_RUNS cases per kind and at
most FUZZ_SECONDS of fuzzing each (plus ~5 s of start-up: seeds built with gcc, imports instrumented).
Measured on a 2-core machine at load 12 (-n 2, 11 kinds): the budget tests took 2.1 min with 8 s per kind
(3.5 min for the whole module with 12 s); on an idle machine the runs, not the seconds, end most kinds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fuzz import targets

ROOT = Path(__file__).resolve().parent.parent
CRASHERS = Path(__file__).resolve().parent / "fuzz" / "crashers"
FUZZ_RUNS = int(os.environ.get("DYNAWHEEL_FUZZ_RUNS", "400"))
FUZZ_SECONDS = int(os.environ.get("DYNAWHEEL_FUZZ_SECONDS", "8"))
MIN_RUNS = 50  # cases each kind runs whatever the load (the seconds end a run only after these)

pytest.importorskip("atheris", reason="atheris (the fuzzing engine, PyPI) is not installed")


@pytest.mark.parametrize("kind", sorted(targets.KINDS))
def test_fuzz_budget(kind: str, tmp_path: Path) -> None:
    if kind in ("elf", "zip", "check", "show", "repair", "index", "cli") and shutil.which("gcc") is None:
        pytest.skip("gcc builds the ELF seeds")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", kind, "--runs", str(FUZZ_RUNS), "--max-time", str(FUZZ_SECONDS),
         "--min-runs", str(MIN_RUNS), "--strict", "--findings", str(tmp_path / "findings")],
        cwd=ROOT, capture_output=True, text=True, timeout=FUZZ_SECONDS * 10 + 120,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert summaries, (proc.returncode, proc.stdout[-2000:], proc.stderr[-4000:])
    last = summaries[-1]
    assert not last["findings"], proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr and "==ERROR" not in proc.stderr, proc.stderr[-4000:]
    assert last["cases"] >= min(FUZZ_RUNS, MIN_RUNS), last
    assert last["slowest_case_cpu_s"] < 10, last  # CPU, not wall: a loaded CI machine must not fail this


def _crashers() -> list[Path]:
    return sorted(p for p in CRASHERS.glob("*") if p.is_file() and p.suffix != ".txt")


@pytest.mark.parametrize("path", _crashers(), ids=lambda p: p.name)
def test_crasher_stays_fixed(path: Path, tmp_path: Path) -> None:
    """A minimized input that once escaped as a non-DynawheelError (its .txt says which, and where)."""
    kind = targets.KINDS[path.name.split("-", 1)[0]]
    libs = tmp_path / "libs"
    libs.mkdir()
    work = tmp_path / "case"
    work.mkdir()
    try:
        kind.run(path.read_bytes(), work)
    except targets.allowed():
        pass


def _fake_main(behaviour: str) -> Any:
    """A stand-in for dynawheel.cli.main that breaks one rule of the command-line contract."""

    def main(argv: list[str]) -> int:
        args = [a for a in argv if a != "-q"]
        out = Path(args[args.index("-w") + 1]) if "-w" in args else None
        if behaviour == "exit 4":
            return 4
        if behaviour == "no error line":
            return 1
        if behaviour == "two error lines":
            print("dynawheel: error: one\ndynawheel: error: two", file=sys.stderr)
            return 1
        if behaviour == "traceback":
            print("Traceback (most recent call last):\ndynawheel: error: x", file=sys.stderr)
            return 1
        if behaviour == "writes in cwd":
            Path("dist").mkdir()
            return 0
        if behaviour == "changes the input":
            Path(args[1]).write_bytes(b"PK")
            return 0
        if behaviour == "leaves a wheel on failure" and out is not None:
            out.mkdir(parents=True)
            (out / "fuzz-1.0-py3-none-any.whl").write_bytes(b"PK")
            print("dynawheel: error: x", file=sys.stderr)
            return 1
        if behaviour == "usage error":
            raise SystemExit(2)
        raise AssertionError(behaviour)

    return main


@pytest.mark.parametrize("behaviour", ["exit 4", "no error line", "two error lines", "traceback", "writes in cwd",
                                       "changes the input", "leaves a wheel on failure", "usage error"])
def test_the_cli_kind_catches_each_broken_rule(behaviour: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cli kind's checks can fail: a command line that breaks one rule is a finding (AssertionError)."""
    import dynawheel.cli
    from tests.fuzz import clicase

    wheel = targets._pure_wheel(tmp_path)
    command = next(c for c in clicase.COMMANDS if c.name == "repair")  # takes -w: every rule applies
    monkeypatch.setattr(clicase, "pick", lambda data: (command, 0))
    work = tmp_path / "case"
    work.mkdir()
    clicase.run_case(wheel, work)  # the real command passes
    monkeypatch.setattr(dynawheel.cli, "main", _fake_main(behaviour))
    home = Path.cwd()
    with pytest.raises(AssertionError, match="repair"):
        clicase.run_case(wheel, targets.fresh_dir(tmp_path))
    assert Path.cwd() == home  # the case ran in its own working directory, and came back
