"""glibc loader rules beyond the basic search order, each on a trap built here (gcc), checked
against glibc's own ld.so in trace mode (what ``ldd`` runs), and the walker's economy on soname
symlinks (a file is walked once, whatever its number of names)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from dynawheel import resolve
from dynawheel.resolve import Analysis, analyze
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree, FileTree

from . import elfbuild

LDSO = "/lib64/ld-linux-x86-64.so.2"
pytestmark = pytest.mark.skipif(not (elfbuild.have_gcc() and os.path.exists(LDSO)), reason="needs gcc and x86_64 glibc")
HOST = SearchPaths.from_host({})


def ldso_trace(path: Path, env: dict[str, str] | None = None, chroot: Path | None = None) -> dict[str, str | None]:
    """{request name: the REAL path of what glibc's ld.so loads, or None when "not found"}.
    Real paths: ld.so prints a path as it opened it ("dir/link/../lib/x.so"), which only the
    kernel resolves (a textual normpath would be wrong after a symlinked directory)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    clean.update(env or {})
    clean["LD_TRACE_LOADED_OBJECTS"] = "1"
    cmd = [LDSO, str(path)] if chroot is None else ["chroot", str(chroot), LDSO, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=clean, check=False)
    out: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(\S+) => (?:(\S+) \(0x[0-9a-f]+\)|not found)", line)
        if m and m.group(1) not in out:
            where = m.group(2)
            if where is not None:
                where = os.path.realpath(where if chroot is None else f"{chroot}{where}")
            out[m.group(1)] = where
    assert out, f"ld.so listed nothing for {path}: {proc.stdout!r} {proc.stderr!r}"
    return out


def ours(analysis: Analysis, root: str) -> dict[str, str | None]:
    """{request name: real path of the hit, or None} of the walk of `root`, as ld.so lists it."""
    walk = next(w for w in analysis.walks if w.root == root)
    out: dict[str, str | None] = {}
    for edge in walk.edges:
        if edge.loaded_here or edge.hit is None:
            out.setdefault(edge.request.name, None if edge.hit is None else os.path.realpath(edge.hit))
    out.pop("ld-linux-x86-64.so.2", None)
    return out


def agree(path: Path, search: SearchPaths = HOST, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """Our closure of `path`, asserted equal to ld.so's."""
    mine = ours(analyze(FileTree(path), search), str(path))
    theirs = ldso_trace(path, env)
    theirs.pop("ld-linux-x86-64.so.2", None)
    assert mine == theirs
    return mine


# ---- speed: one walk per file, not per name ---------------------------------------------------

def test_soname_links_share_one_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory of libraries with their soname and dev symlinks (as /usr/lib/<triplet>): each
    file is walked once; its other names get the same walk, re-rooted, so the output is as before."""
    lib = tmp_path / "lib"
    dep = elfbuild.shared_lib(lib / "libdep.so.2.0.1", soname="libdep.so.2")
    (lib / "libdep.so.2").symlink_to("libdep.so.2.0.1")
    top = elfbuild.shared_lib(lib / "libtop.so.1.4", soname="libtop.so.1", needs=[lib / "libdep.so.2"],
                              runpath=["$ORIGIN"])
    (lib / "libtop.so.1").symlink_to("libtop.so.1.4")
    (lib / "libtop.so").symlink_to("libtop.so.1")
    (lib / "sub").mkdir()
    (lib / "sub" / "libtop.so.1").symlink_to("../libtop.so.1.4")  # another $ORIGIN: walked on its own
    for c in lib.glob("*.c"):
        c.unlink()
    walked: list[str] = []
    real_walk = resolve._Walker.walk

    def counting(self: resolve._Walker, root: str, image: object) -> resolve.Walk:
        walked.append(root)
        return real_walk(self, root, image)  # type: ignore[arg-type]

    monkeypatch.setattr(resolve._Walker, "walk", counting)
    analysis = analyze(DirTree(lib), HOST)
    root = analysis.root
    assert sorted(os.path.relpath(p, root) for p in walked) == ["libdep.so.2.0.1", "libtop.so.1.4", "sub/libtop.so.1"]
    assert analysis.aliases == {f"{root}/libdep.so.2": f"{root}/libdep.so.2.0.1",
                                f"{root}/libtop.so": f"{root}/libtop.so.1.4",
                                f"{root}/libtop.so.1": f"{root}/libtop.so.1.4"}
    # every name still has its walk, rooted at that name, with the same resolution as its own walk
    assert sorted(w.root for w in analysis.walks) == sorted(analysis.tree_binaries)
    monkeypatch.setattr(resolve._Walker, "walk", real_walk)
    for alias in analysis.aliases:
        alone = analyze(DirTree(lib), HOST)
        shared = next(w for w in analysis.walks if w.root == alias)
        fresh = resolve._Walker(resolve._Files(DirTree(lib), HOST), HOST, dict(alone.binaries))
        assert shared == fresh.walk(alias, alone.binaries[alias].images[0])
    assert ours(analysis, f"{root}/libtop.so")["libdep.so.2"] == str(dep)
    assert top.exists()
