"""Oracle: our resolution of host ELF files equals what glibc's own loader prints (ldd's trace mode).

A bounded, deterministic sample (every n-th ELF file of /usr/lib/x86_64-linux-gnu and
/usr/bin, ~40 files); ``benchmarks/ldso_agreement.py`` runs all of them.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from dynawheel.search import SearchPaths

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = 40

pytestmark = pytest.mark.skipif(
    not (os.path.exists("/lib64/ld-linux-x86-64.so.2") and os.path.isdir("/usr/lib/x86_64-linux-gnu")),
    reason="needs an x86_64 glibc host",
)


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ldso_agreement", ROOT / "benchmarks" / "ldso_agreement.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BENCH = _bench()


def _sample() -> list[str]:
    if not os.path.isdir("/usr/lib/x86_64-linux-gnu"):
        return []
    files = [f for f in BENCH.elf_files(list(BENCH.DEFAULT_DIRS)) if not f.endswith((".o", ".a"))]
    step = max(1, len(files) // SAMPLE)
    return files[::step][:SAMPLE]


@pytest.mark.parametrize("path", _sample())
def test_matches_glibc_loader(path: str) -> None:
    search = SearchPaths.from_host({})
    theirs = BENCH.ldso_closure(path)
    if theirs is None:
        pytest.skip(f"ld.so cannot list {path!r}")
    ours = BENCH.our_closure(path, search)
    verdict, problems = BENCH.compare(path, search)
    assert verdict == "agree", problems
    # the closure really was compared: every library ld.so names maps to the same path
    for name, where in theirs.items():
        if where != BENCH.LDSO:
            assert ours[name] == where, name


def test_sample_is_meaningful() -> None:
    sample = _sample()
    assert len(sample) >= 30
    closures = [BENCH.ldso_closure(p) or {} for p in sample]
    assert sum(len(c) for c in closures) > 3 * len(sample)  # real transitive closures, not empty ones
