"""`show` of a big directory parses its binaries in forked processes, and reads the package databases in one
beside the verdicts (analysis/forked.py): the report must
be the one a single process makes, byte for byte, on a real directory of this host, also when the program
starts with no stdin and with SIGCHLD (the kernel then reaps the children), SIGINT and SIGHUP ignored."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys

import pytest

from dynawheel.analysis.forked import in_forks
from dynawheel.report import audit, to_json

DIRECTORY = "/usr/bin"  # ~560 ELF files on a Debian host: over FORK_LEAST per process on 2 cores

needs_directory = pytest.mark.skipif(not os.path.isdir(DIRECTORY), reason=f"no {DIRECTORY} on this host")
needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is needed")


def _json(workers: int | None) -> str:
    return json.dumps(to_json(audit(DIRECTORY, workers=workers)), indent=2) + "\n"


@needs_directory
@needs_fork
def test_forked_parse_gives_the_serial_report(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="dynawheel.analysis"):
        serial = _json(1)
        assert not any("process" in r.getMessage() for r in caplog.records)
        forked = _json(3)
    assert any(r.getMessage().endswith("parsed in 3 processes") for r in caplog.records)
    assert any(r.getMessage().endswith("roots walked in 2 processes") for r in caplog.records)
    assert any(r.getMessage().endswith("runs beside this process") for r in caplog.records)  # the provenance
    assert forked == serial
    assert len(json.loads(serial)["binaries"]) > 400


@needs_directory
@needs_fork
def test_text_load_trees_made_beside_the_verdicts_are_the_serial_text() -> None:
    """audit_to_print of a big directory writes the text's load trees in the child that reads the package
    databases, while this process judges the policies: to_text gives the serial report, byte for byte."""
    from dynawheel.report import audit_to_print, to_text

    serial = audit(DIRECTORY, workers=1)
    assert "_text_trees" not in serial.__dict__  # made when to_text asks
    expected = to_text(serial)
    forked = audit_to_print(DIRECTORY, workers=2)
    assert "_text_trees" in forked.__dict__  # made beside the verdicts
    assert to_text(forked) == expected
    assert to_text(forked, show_system=False) == to_text(serial, show_system=False) != expected
    assert expected.count("\n") > 10_000


def _ignore_signals_close_stdin() -> None:
    for sig in (signal.SIGCHLD, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    os.close(0)


@needs_directory
@needs_fork
@pytest.mark.skipif((len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1) < 2,
                    reason="one core to run on: show forks no worker")
def test_cli_forks_with_no_stdin_and_signals_ignored() -> None:
    proc = subprocess.run([sys.executable, "-m", "dynawheel", "-vv", "show", "--json", DIRECTORY],
                          capture_output=True, text=True, preexec_fn=_ignore_signals_close_stdin, check=False)
    assert proc.returncode in (0, 3), proc.stderr[-2000:]
    assert re.search(r"binaries parsed in [2-8] processes", proc.stderr), proc.stderr[-2000:]
    assert proc.stdout == _json(1)


def _square_or_die(part: list[int]) -> list[int]:
    if 13 in part and os.getpid() != PARENT:
        os._exit(7)  # a worker that dies: its part is done again in the parent
    return [n * n for n in part]


PARENT = os.getpid()


@needs_fork
def test_a_worker_that_dies_has_its_part_done_here() -> None:
    assert os.getpid() == PARENT
    chunks = [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    assert in_forks(_square_or_die, chunks) == [[n * n for n in c] for c in chunks]


@needs_fork
def test_an_error_is_raised_as_without_workers() -> None:
    def work(part: list[int]) -> list[int]:
        if 15 in part:
            raise ValueError("bad part")
        return part

    with pytest.raises(ValueError, match="bad part"):
        in_forks(work, [[1], [15]])


@needs_directory
@needs_fork
def test_forked_walks_over_the_budget_together_are_walked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The two halves of the walks each fit the lookup budget, together they pass it: the child's half is
    walked again in this process after the first, and the analysis (requests 'not searched' included) is the
    one a single process makes, with the same binaries (in the same order) and real paths."""
    from dynawheel.analysis import resolve
    from dynawheel.search import SearchPaths
    from dynawheel.tree import DirTree

    spent: list[int] = []
    walk_all = resolve._walk_all

    def measured(walker: resolve._Walker, roots: list[str], processes: int) -> dict[str, list[resolve.Walk]]:
        done = walk_all(walker, roots, processes)
        spent.append(walker.files.work)
        return done

    monkeypatch.setattr(resolve, "_walk_all", measured)
    search = SearchPaths.from_host({})
    resolve.analyze(DirTree(DIRECTORY), search, workers=1)
    monkeypatch.setattr(resolve, "MAX_WORK", spent[0] * 3 // 4)  # each half ~1/2 of it
    refused: list[bool] = []
    take = resolve._Walker.take

    def watched(walker: resolve._Walker, part: resolve._Part) -> bool:
        taken = take(walker, part)
        refused.append(not taken)
        return taken

    monkeypatch.setattr(resolve._Walker, "take", watched)
    forked = resolve.analyze(DirTree(DIRECTORY), search, workers=2)
    serial = resolve.analyze(DirTree(DIRECTORY), search, workers=1)
    assert refused == [True]  # the child's half was not taken
    assert any(a.via == "the lookup budget" for w in serial.walks for e in w.edges for a in e.tried)
    assert forked == serial
    assert list(forked.binaries.items()) == list(serial.binaries.items())
    assert forked.real_paths == serial.real_paths  # (the serial parse asks big files first: another order)
