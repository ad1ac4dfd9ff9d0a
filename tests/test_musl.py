"""Oracle: for musl programs, our resolution equals what musl's own loader prints
(``ld-musl-x86_64.so.1 --list``), on trees built here with musl-gcc, including the cases
where musl and glibc differ: DT_RUNPATH is inherited, LD_LIBRARY_PATH comes before DT_RPATH,
a list with a '$' other than $ORIGIN is ignored, and the system path is musl's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import Status, analyze
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree

LOADER = "/lib/ld-musl-x86_64.so.1"

pytestmark = pytest.mark.skipif(
    shutil.which("musl-gcc") is None or not os.path.exists(LOADER),
    reason="needs musl-gcc and ld-musl-x86_64.so.1 (Debian: musl musl-tools)",
)

LIB_B = "int b(void) { return 2; }\n"
LIB_A = "int b(void);\nint a(void) { return b() + 1; }\n"
PROG = "int a(void);\nint main(void) { return a() == 3 ? 0 : 1; }\n"


def _cc(out: Path, source: str, *args: str) -> Path:
    src = out.with_suffix(".c") if out.suffix != ".so" else out.parent / (out.name + ".c")
    src.write_text(source)
    subprocess.run(["musl-gcc", str(src), "-o", str(out), *args], check=True, capture_output=True)
    src.unlink()
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A/prog* (musl programs), B/liba.so -> B/libb.so, C/libb.so (another copy)."""
    for d in "ABC":
        (tmp_path / d).mkdir()
    b = tmp_path / "B"
    for where in (b, tmp_path / "C"):
        _cc(where / "libb.so", LIB_B, "-shared", "-fPIC", "-Wl,-soname,libb.so")
    _cc(b / "liba.so", LIB_A, "-shared", "-fPIC", "-Wl,-soname,liba.so", f"-L{b}", "-lb")
    link = [f"-L{b}", "-la", "-Wl,--allow-shlib-undefined"]
    # only liba.so is needed: libb.so (liba's, which has no path list) is found through the
    # program's DT_RUNPATH, inherited under musl (glibc would not find it)
    _cc(tmp_path / "A" / "inherit", PROG, *link, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../B")
    # DT_RPATH: under musl LD_LIBRARY_PATH comes first (glibc: DT_RPATH first)
    _cc(tmp_path / "A" / "oldtags", PROG, *link, "-lb", "-Wl,--disable-new-dtags,-rpath,$ORIGIN/../B")
    # a '$' musl does not know: the whole list is ignored
    _cc(tmp_path / "A" / "platform", PROG, *link, "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../B:$PLATFORM")
    return tmp_path


def _oracle(prog: Path, env: dict[str, str]) -> dict[str, str | None]:
    """request -> real path musl loads it from; None for what it cannot find."""
    proc = subprocess.run([LOADER, "--list", str(prog)], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", ""), **env})
    found: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\s+(\S+) => (\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            found[m.group(1)] = os.path.realpath(m.group(2))
    for m in re.finditer(r"Error loading shared library (\S+): ", proc.stderr):
        found[m.group(1)] = None
    assert found, (proc.stdout, proc.stderr)
    return found


def _ours(root: Path, prog: Path, env: dict[str, str]) -> dict[str, str | None]:
    search = SearchPaths.from_host(env)
    analysis = analyze(DirTree(str(root)), search)
    (walk,) = [w for w in analysis.walks if w.root == str(prog)]
    out: dict[str, str | None] = {}
    for edge in walk.edges:
        hit = None if edge.status in (Status.MISSING, Status.OPTIONAL_MISSING) else edge.hit
        out.setdefault(edge.request.name, None if hit is None else os.path.realpath(hit))
    return out


@pytest.mark.parametrize("prog", ["inherit", "oldtags", "platform"])
@pytest.mark.parametrize("ld_library_path", [False, True], ids=["", "LD_LIBRARY_PATH"])
def test_resolution_equals_musls_loader(tree: Path, prog: str, ld_library_path: bool) -> None:
    env = {"LD_LIBRARY_PATH": str(tree / "C")} if ld_library_path else {}
    path = tree / "A" / prog
    assert _ours(tree, path, env) == _oracle(path, env)


def test_the_cases_differ_from_glibc_where_they_should(tree: Path) -> None:
    """The fixture exercises musl's own rules: inherited DT_RUNPATH finds liba's libb.so; the
    '$PLATFORM' list is ignored (so liba.so is not found); LD_LIBRARY_PATH beats DT_RPATH."""
    b, c = tree / "B", tree / "C"
    assert _oracle(tree / "A" / "inherit", {})["libb.so"] == str(b / "libb.so")
    assert _oracle(tree / "A" / "platform", {})["liba.so"] is None
    assert _oracle(tree / "A" / "oldtags", {"LD_LIBRARY_PATH": str(c)})["libb.so"] == str(c / "libb.so")
    assert _ours(tree, tree / "A" / "inherit", {})["libc.so"] == os.path.realpath(LOADER)
