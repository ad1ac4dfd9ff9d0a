"""glibc's x86 ISA-level check on the libraries a directory search finds, against glibc's own loader.

glibc >= 2.33 (sysdeps/x86/dl-prop.h) reads a library's GNU_PROPERTY_X86_ISA_1_NEEDED bits.  In the
ld.so.cache it skips a glibc-hwcaps entry whose level the CPU lacks (tests/test_ldso_rules.py); a
library found by a *directory* search (RPATH, LD_LIBRARY_PATH, RUNPATH, glibc-hwcaps subdirectories,
default directories) is taken from the first place it is found, its dependencies are loaded, and then
the load fails, "CPU ISA level is lower than required": ld.so does not search on, a good copy in a later
directory is never used.  ``ld.so --list`` (trace mode) shows the bad copy as found; the real load
(exec, dlopen) fails.  So the oracle here is both: the trace says which file ld.so takes, a real exec
says the load fails, and dynawheel must report the dependency as not loadable (missing), naming that
file, not "found".

This CPU may have every level glibc knows (x86-64-v4): the traps ask for ISA bit 4, which no level
and so no CPU has (``readelf -n``: "x86 ISA needed: <unknown: 10>"), so glibc refuses them on any
machine.  The target's levels (SearchPaths.elf_hwcaps, --glibc-hwcaps) are checked with a library
linked with ``-z x86-64-v4``: it loads here exactly when ld.so says so, and is refused for a target
without x86-64-v4.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import Edge, Status, analyze
from dynawheel.search import SearchPaths
from dynawheel.tree import FileTree

from . import elfbuild
from .conftest import run_cli
from .test_ldso_rules import LDSO, isa_note, ldso_trace, make_root, needs_chroot

HOST = SearchPaths.from_host({})
pytestmark = pytest.mark.skipif(not (elfbuild.have_gcc() and os.path.exists(LDSO) and HOST.elf_isa_check),
                                reason="needs gcc and an x86_64 glibc >= 2.33 (the ISA-level check)")
NO_CPU = 1 << 4  # a GNU_PROPERTY_X86_ISA_1 bit beyond x86-64-v4: no CPU has it
REFUSED = "CPU ISA level is lower than required"


def lib_q(where: Path, needed: int = 0) -> Path:
    """libq.so.1 in `where`; with `needed`, a GNU property note asking for those ISA bits."""
    extra = [str(isa_note(where.parent / f"{where.name}-note.s", needed))] if needed else []
    lib = elfbuild.shared_lib(where / "libq.so.1", soname="libq.so.1", func="libq", extra=extra)
    lib.with_suffix(".1.c").unlink()
    return lib


def real_load(program: Path, env: dict[str, str] | None = None, chroot: Path | None = None) -> str | None:
    """None when glibc's loader starts `program` (run for real), else what the loader said (exit 127)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    clean.update(env or {})

    def enter() -> None:
        if chroot is not None:
            os.chroot(chroot)
            os.chdir("/")

    proc = subprocess.run([str(program)], capture_output=True, text=True, env=clean, check=False, preexec_fn=enter,
                          timeout=60)
    return proc.stderr.strip() if proc.returncode == 127 else None


def edge_of(program: Path, search: SearchPaths, request: str = "libq.so.1") -> Edge:
    walk = next(iter(analyze(FileTree(program), search).walks))
    return next(e for e in walk.edges if e.request.name == request)


def assert_refused(edge: Edge, bad: Path) -> None:
    """Our answer for a refused library: not found (the load fails), and the last place looked is
    the file ld.so took, not loadable for the CPU ISA level, with nothing looked at after it."""
    assert edge.status is Status.MISSING and edge.hit is None, edge
    last = edge.tried[-1]
    assert os.path.realpath(last.path) == str(bad), edge.tried
    assert last.outcome.startswith(f"not loadable: {REFUSED}"), last


@pytest.mark.parametrize("how", ["runpath", "rpath", "ld_library_path", "glibc-hwcaps"])
def test_directory_search_does_not_skip_a_library_the_cpu_cannot_load(tmp_path: Path, how: str) -> None:
    """The first copy found needs an ISA level the CPU lacks, a good copy is in the next directory:
    glibc takes the first (trace), the load fails (exec), and so does our answer."""
    good = lib_q(tmp_path / "good")
    if how == "glibc-hwcaps":
        if "x86-64-v2" not in HOST.elf_hwcaps:
            pytest.skip("this CPU searches no glibc-hwcaps subdirectory")
        lib_q(tmp_path / "hw")  # the directory's own copy comes after its glibc-hwcaps subdirectories
        bad, dirs = lib_q(tmp_path / "hw" / "glibc-hwcaps" / "x86-64-v2", NO_CPU), [str(tmp_path / "hw")]
    else:
        bad, dirs = lib_q(tmp_path / "bad", NO_CPU), [str(tmp_path / "bad"), str(tmp_path / "good")]
    env = {"LD_LIBRARY_PATH": ":".join(dirs)} if how == "ld_library_path" else {}
    paths = {} if how == "ld_library_path" else {"rpath" if how == "rpath" else "runpath": dirs}
    program = elfbuild.executable(tmp_path / "app" / "prog", needs=[good], **paths)
    search = SearchPaths.from_host(env)
    assert ldso_trace(program, env)["libq.so.1"] == str(bad)  # ld.so takes the first copy ...
    assert real_load(program, env) == f"{bad}: {REFUSED}"  # ... and fails
    assert_refused(edge_of(program, search), bad)
    # the control: with the good copy first, both load it
    control = elfbuild.executable(tmp_path / "ctl" / "prog", needs=[good], runpath=[str(good.parent), str(bad.parent)])
    assert real_load(control) is None and ldso_trace(control)["libq.so.1"] == str(good)
    hit = edge_of(control, HOST)
    assert hit.status is Status.EXTERNAL and hit.hit == str(good)


def test_target_isa_levels(tmp_path: Path) -> None:
    """A library linked with `-z x86-64-v4` (GNU property note: x86-64-v4 needed): on this host, ours
    loads it exactly when ld.so does; a target CPU without x86-64-v4 (--glibc-hwcaps) refuses it, one
    with it or a glibc that makes no check (elf_isa_check False, glibc < 2.33) loads it."""
    src = tmp_path / "v.c"
    src.write_text("int libq(void) { return 1; }\n")
    v4 = tmp_path / "lib" / "libq.so.1"
    v4.parent.mkdir()
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(v4), str(src), "-Wl,-soname,libq.so.1", "-Wl,-z,x86-64-v4"],
                   check=True, capture_output=True)
    notes = subprocess.run(["readelf", "-n", str(v4)], capture_output=True, text=True, check=True).stdout
    assert "x86 ISA needed: x86-64-v4" in notes  # binutils wrote the note glibc reads
    program = elfbuild.executable(tmp_path / "app" / "prog", needs=[v4], runpath=[str(v4.parent)])
    here = edge_of(program, HOST)
    if real_load(program) is None:
        assert "x86-64-v4" in HOST.elf_hwcaps
        assert here.status is Status.EXTERNAL and here.hit == str(v4)
    else:
        assert_refused(here, v4)
    below = SearchPaths(elf_hwcaps=("x86-64-v3", "x86-64-v2"))
    assert_refused(edge_of(program, below), v4)
    assert "needs x86-64-v4" in edge_of(program, below).tried[-1].outcome
    assert edge_of(program, SearchPaths(elf_hwcaps=("x86-64-v4", "x86-64-v3", "x86-64-v2"))).hit == str(v4)
    assert edge_of(program, SearchPaths(elf_isa_check=False)).hit == str(v4)
    # through the CLI: --glibc-hwcaps describes the target's CPU
    shown = run_cli("show", "--json", "--glibc-hwcaps", "x86-64-v3,x86-64-v2", program)
    assert shown.code == 3, shown
    edges = [e for w in json.loads(shown.out)["walks"] for e in w["edges"] if e["request"] == "libq.so.1"]
    assert edges[0]["status"] == "missing" and REFUSED in edges[0]["tried"][-1]["outcome"], edges
    # the verdict names the file the loader refuses and why, not 'found nowhere: install it'
    blockers = [b for v in json.loads(shown.out)["verdicts"] for b in v["blockers"] if "libq.so.1" in b]
    assert blockers and all(f"the loader finds {v4} (not loadable: {REFUSED}" in b and "refuses it" in b
                            and "neither in the wheel" not in b for b in blockers), blockers
    assert run_cli("show", "--glibc-hwcaps", "x86-64-v4,x86-64-v3,x86-64-v2", program).code in (0, 3)


@needs_chroot
def test_default_directories_through_the_sysroot(tmp_path: Path) -> None:
    """The same in a root of its own (no ld.so.cache): the bad copy in /lib/<triplet>, the good one
    in /usr/lib/<triplet>; `chroot ROOT` runs the program for real, `show --sysroot ROOT` answers."""
    root = make_root(tmp_path / "root")
    bad = lib_q(root / "lib" / "x86_64-linux-gnu", NO_CPU)
    good = lib_q(root / "usr" / "lib" / "x86_64-linux-gnu")
    program = elfbuild.executable(root / "app" / "prog", needs=[good])
    assert ldso_trace(Path("/app/prog"), chroot=root)["libq.so.1"] == str(bad)
    assert real_load(Path("/app/prog"), chroot=root) == \
        f"/lib/x86_64-linux-gnu/libq.so.1: {REFUSED}"
    assert_refused(edge_of(program, SearchPaths(sysroot=str(root), elf_hwcaps=HOST.elf_hwcaps)), bad)
    shown = run_cli("show", "--json", "--sysroot", root, program)
    assert shown.code == 3, shown
    edges = [e for w in json.loads(shown.out)["walks"] for e in w["edges"] if e["request"] == "libq.so.1"]
    assert edges[0]["status"] == "missing" and edges[0]["hit"] is None
    assert os.path.realpath(edges[0]["tried"][-1]["path"]) == str(bad), edges


@needs_chroot
def test_plain_ld_so_cache_entry(tmp_path: Path) -> None:
    """A plain ld.so.cache entry (not a glibc-hwcaps one, whose level ld.so checks before taking it)
    for a library the CPU cannot load: ld.so takes the entry (the first of the name: /opt/conf's, from
    ld.so.conf, before /usr/lib/<triplet>'s) and the load fails; ours the same."""
    root = make_root(tmp_path / "root")
    (root / "etc" / "ld.so.conf").write_text("/opt/conf\n")
    bad = lib_q(root / "opt" / "conf", NO_CPU)
    good = lib_q(root / "usr" / "lib" / "x86_64-linux-gnu")
    subprocess.run(["/sbin/ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)
    program = elfbuild.executable(root / "app" / "prog", needs=[good])
    assert ldso_trace(Path("/app/prog"), chroot=root)["libq.so.1"] == str(bad)
    assert real_load(Path("/app/prog"), chroot=root) == f"/opt/conf/libq.so.1: {REFUSED}"
    edge = edge_of(program, SearchPaths(sysroot=str(root), elf_hwcaps=HOST.elf_hwcaps))
    assert_refused(edge, bad)
    assert edge.tried[-1].via == "ld.so.cache"


@pytest.mark.skipif(not os.path.exists("/lib/ld-musl-x86_64.so.1") or not shutil.which("musl-gcc"),
                    reason="needs musl-gcc and ld-musl-x86_64.so.1 (Debian: musl musl-tools)")
def test_musl_makes_no_isa_check(tmp_path: Path) -> None:
    """musl's loader reads no GNU property note: a musl program loads the first copy, the one glibc
    would refuse, and runs (real exec); ours takes that copy too."""
    def cc(out: Path, source: str, *args: str) -> Path:
        src = tmp_path / f"{out.name}.c"
        src.write_text(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["musl-gcc", str(src), "-o", str(out), *args], check=True, capture_output=True)
        return out

    note = isa_note(tmp_path / "note.s", NO_CPU)
    bad = cc(tmp_path / "bad" / "libq.so", "int libq(void) { return 0; }\n", "-shared", "-fPIC", str(note),
             "-Wl,-soname,libq.so")
    cc(tmp_path / "good" / "libq.so", "int libq(void) { return 0; }\n", "-shared", "-fPIC", "-Wl,-soname,libq.so")
    program = cc(tmp_path / "app" / "prog", "int libq(void);\nint main(void) { return libq(); }\n",
                 f"-L{bad.parent}", "-lq", f"-Wl,--enable-new-dtags,-rpath,{bad.parent}:{tmp_path / 'good'}")
    assert subprocess.run([str(program)], capture_output=True, check=False, timeout=60).returncode == 0
    edge = edge_of(program, HOST, "libq.so")
    assert edge.status is Status.EXTERNAL and edge.hit == str(bad), edge
