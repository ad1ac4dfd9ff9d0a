"""The walker on real gcc-built trees: exact resolved paths, checked against ld.so where it applies."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from dynawheel.analysis.graph import DependencyGraph
from dynawheel.analysis.resolve import Analysis, Edge, Status, analyze
from dynawheel.errors import WheelFormatError
from dynawheel.repair.collect import Choices, HostDigests, collect
from dynawheel.search import SearchPaths, read_ld_so_cache, read_ld_so_conf
from dynawheel.tree import DirTree, FileTree, HostFS, WheelTree

from . import elfbuild

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed")
EXT = elfbuild.EXT_SUFFIX
HOST = SearchPaths.from_host({})
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def edges_of(analysis: Analysis, root: str) -> dict[str, Edge]:
    """{request name: edge} of the walk rooted at `root` (first edge per name)."""
    walk = next(w for w in analysis.walks if w.root == root)
    out: dict[str, Edge] = {}
    for edge in walk.edges:
        out.setdefault(edge.request.name, edge)
    return out


@pytest.fixture(scope="module")
def chain_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """pkg/_ext -> libs/liba.so.1 -> deep/libb.so.1 -> deep/libcc.so.1, all by $ORIGIN RUNPATHs;
    pkg/_ext2 shares liba; pkg/bad.so is truncated; notes.so is text."""
    root = tmp_path_factory.mktemp("chain") / "tree"
    deep = root / "pkg" / "deep"
    libcc = elfbuild.shared_lib(deep / "libcc.so.1", soname="libcc.so.1")
    libb = elfbuild.shared_lib(deep / "libb.so.1", soname="libb.so.1", needs=[libcc], runpath=["$ORIGIN"])
    liba = elfbuild.shared_lib(root / "pkg" / "libs" / "liba.so.1", soname="liba.so.1", needs=[libb],
                               runpath=["$ORIGIN/../deep"])
    elfbuild.extension(root / "pkg", "_ext", needs=[liba], runpath=["$ORIGIN/libs"])
    elfbuild.extension(root / "pkg" / "sub", "_ext2", needs=[liba], runpath=["$ORIGIN/../libs"])
    for c in root.rglob("*.c"):
        c.unlink()
    (root / "pkg" / "bad.so").write_bytes((root / "pkg" / "libs" / "liba.so.1").read_bytes()[:40])
    (root / "pkg" / "notes.so").write_text("not a binary\n")
    return root


def test_chain_resolves_inside_the_tree(chain_tree: Path) -> None:
    analysis = analyze(DirTree(chain_tree), HOST)
    root = str(chain_tree.resolve())
    ext = f"{root}/pkg/_ext{EXT}"
    edges = edges_of(analysis, ext)
    assert edges["liba.so.1"].hit == f"{root}/pkg/libs/liba.so.1"
    assert edges["liba.so.1"].status is Status.IN_TREE
    assert edges["liba.so.1"].tried[-1].via == f"DT_RUNPATH of {ext}"
    assert edges["libb.so.1"].hit == f"{root}/pkg/deep/libb.so.1"
    assert edges["libb.so.1"].dependent == f"{root}/pkg/libs/liba.so.1"
    assert edges["libcc.so.1"].hit == f"{root}/pkg/deep/libcc.so.1"
    assert edges["libc.so.6"].status is Status.SYSTEM and edges["libc.so.6"].hit == LIBC
    # the oracle agrees on the whole closure
    ours = {n: e.hit for n, e in edges.items() if e.loaded_here}
    theirs = elfbuild.ldso_list(Path(ext))
    theirs.pop("ld-linux-x86-64.so.2", None)
    ours.pop("ld-linux-x86-64.so.2", None)
    assert ours == theirs


def test_bad_files_are_reported_not_fatal(chain_tree: Path) -> None:
    analysis = analyze(DirTree(chain_tree), HOST)
    assert sorted((b.path, b.message) for b in analysis.bad) == [
        ("pkg/bad.so", "cannot parse 'pkg/bad.so': truncated ELF header (40 bytes, need 64)"),
        ("pkg/notes.so", "'pkg/notes.so' is named like a library but is not an ELF, PE or Mach-O file"),
    ]
    rels = sorted(analysis.relpath(p) or "" for p in analysis.tree_binaries)
    assert rels == ["pkg/_ext" + EXT, "pkg/deep/libb.so.1", "pkg/deep/libcc.so.1", "pkg/libs/liba.so.1",
                    "pkg/sub/_ext2" + EXT]
    assert "pkg/notes.so" in analysis.files


def test_graph_queries(chain_tree: Path) -> None:
    analysis = analyze(DirTree(chain_tree), HOST)
    graph = DependencyGraph(analysis)
    root = str(chain_tree.resolve())
    liba, libb, libcc = (f"{root}/pkg/libs/liba.so.1", f"{root}/pkg/deep/libb.so.1", f"{root}/pkg/deep/libcc.so.1")
    exts = (f"{root}/pkg/_ext{EXT}", f"{root}/pkg/sub/_ext2{EXT}")
    assert graph.roots() == exts
    assert {e.dependent for e in graph.edges if e.hit == liba} == set(exts)  # both extensions load it
    assert graph.missing() == () and graph.external() == ()
    order = graph.topological_order([liba, libb, libcc, *exts])
    assert order.index(libcc) < order.index(libb) < order.index(liba) < order.index(exts[0])
    assert {e.hit for e in graph.system()} >= {LIBC}


def test_walks_share_their_edges(chain_tree: Path) -> None:
    """Two extensions load the same liba -> libb -> libcc chain: the edges of that chain (same fields) are one
    object in both walks, made once per analysis (an Edge is frozen); each walk still has all its edges."""
    analysis = analyze(DirTree(chain_tree), HOST)
    root = str(chain_tree.resolve())
    first, second = (edges_of(analysis, f"{root}/{ext}{EXT}") for ext in ("pkg/_ext", "pkg/sub/_ext2"))
    for name in ("libb.so.1", "libcc.so.1", "libc.so.6"):
        assert first[name] is second[name], name
    assert first["liba.so.1"] is not second["liba.so.1"]  # requested by each extension: two edges
    assert first["liba.so.1"].dependent != second["liba.so.1"].dependent
    walk = next(w for w in analysis.walks if w.root == f"{root}/pkg/_ext{EXT}")
    assert [e.request.name for e in walk.edges if e.dependent == f"{root}/pkg/deep/libb.so.1"][:1] == ["libcc.so.1"]


def test_dir_tree_lists_as_os_walk_finds(tmp_path: Path) -> None:
    """DirTree's listing (files known to be real from their directory entries) against os.walk and the link
    rules: regular files at every depth, links to files inside, a link to a directory (listed, not entered,
    not a file), links escaping the tree or dangling (broken), a loop, a file in a symlinked directory."""
    root = tmp_path / "t"
    (root / "a" / "b").mkdir(parents=True)
    for rel in ("top.so", "a/mid.so", "a/b/deep.so.1"):
        (root / rel).write_bytes(b"x")
    (root / "a" / "b" / "deep.so").symlink_to("deep.so.1")
    (root / "up.so").symlink_to("a/b/deep.so.1")
    (root / "linked").symlink_to("a")
    (root / "out.so").symlink_to(tmp_path)
    (root / "gone.so").symlink_to("nowhere.so")
    (root / "loop.so").symlink_to("loop.so")
    tree = DirTree(root)
    reference = sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, names in os.walk(root)
                       for n in names + [x for x in dirs if os.path.islink(os.path.join(d, x))])
    assert tree.files() == ["a/b/deep.so", "a/b/deep.so.1", "a/mid.so", "top.so", "up.so"]
    assert set(tree.files()) | set(tree.broken) | {"linked"} == set(reference)
    assert sorted(tree.broken) == ["gone.so", "loop.so", "out.so"]
    assert tree.identity("up.so") == tree.identity("a/b/deep.so") == "a/b/deep.so.1"
    assert tree.identity("linked/mid.so") == tree.identity("a/mid.so") == "a/mid.so"
    assert tree.is_file("linked/b/deep.so") and not tree.is_file("linked")


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED, zipfile.ZIP_BZIP2])
def test_wheel_tree_reads_members_from_the_zip(chain_tree: Path, tmp_path: Path, method: int) -> None:
    whl = tmp_path / "demo-1.0-cp311-cp311-linux_x86_64.whl"
    with zipfile.ZipFile(whl, "w", method) as zf:
        for path in sorted(chain_tree.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(chain_tree).as_posix())
        zf.writestr("demo-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    before = set(os.listdir(tmp_path))
    analysis = analyze(WheelTree(whl), HOST)
    assert set(os.listdir(tmp_path)) == before  # nothing extracted
    root = "/demo-1.0-cp311-cp311-linux_x86_64.whl"
    edges = edges_of(analysis, f"{root}/pkg/sub/_ext2{EXT}")
    assert edges["liba.so.1"].hit == f"{root}/pkg/libs/liba.so.1"
    assert edges["libcc.so.1"].hit == f"{root}/pkg/deep/libcc.so.1"
    assert all(e.status is Status.IN_TREE for n, e in edges.items() if n.startswith("lib") and n != "libc.so.6")
    assert sorted(b.path for b in analysis.bad) == ["pkg/bad.so", "pkg/notes.so"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../evil.so", "C:\\\\x.dll", "a/../../b"])
def test_wheel_tree_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    whl = tmp_path / "x-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr(name, b"x")
    with pytest.raises(WheelFormatError, match="unsafe member name"):
        WheelTree(whl)


def test_missing_inputs(tmp_path: Path) -> None:
    from dynawheel.errors import StageError
    from dynawheel.tree import open_tree

    with pytest.raises(StageError, match=r"no such file or directory: '.*nowhere'"):
        open_tree(tmp_path / "nowhere")
    with pytest.raises(StageError, match=r"not a directory: '.*nowhere'"):
        DirTree(tmp_path / "nowhere")
    with pytest.raises(WheelFormatError, match=r"no such wheel: '.*gone-1\.0-py3-none-any\.whl'"):
        WheelTree(tmp_path / "gone-1.0-py3-none-any.whl")


def test_not_a_zip_or_not_a_wheel(tmp_path: Path) -> None:
    bogus = tmp_path / "x-1.0-py3-none-any.whl"
    bogus.write_text("hello")
    with pytest.raises(WheelFormatError, match=r"not a zip archive: '.*x-1\.0-py3-none-any\.whl'"):
        WheelTree(bogus)
    plain = tmp_path / "plain-1.0-py3-none-any.whl"
    with zipfile.ZipFile(plain, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
    with pytest.raises(WheelFormatError, match=r"not a wheel: no top-level \.dist-info/WHEEL in '.*plain"):
        WheelTree(plain)
    assert WheelTree(plain, require_wheel=False).files() == ["pkg/__init__.py"]


@pytest.fixture(scope="module")
def paths_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """RPATH vs RUNPATH inheritance and a wrong-class library earlier on the path."""
    d = tmp_path_factory.mktemp("paths")
    leaf = elfbuild.shared_lib(d / "only" / "libleaf.so.1", soname="libleaf.so.1")
    mid = elfbuild.shared_lib(d / "mid" / "libmid.so.1", soname="libmid.so.1", needs=[leaf])
    elfbuild.extension(d / "rp", "_rp", needs=[mid], rpath=[str(d / "mid"), str(d / "only")])
    elfbuild.extension(d / "run", "_run", needs=[mid], runpath=[str(d / "mid"), str(d / "only")])
    helper = elfbuild.shared_lib(d / "good" / "libhelper.so.1", soname="libhelper.so.1")
    elfbuild.i386_lib(d / "m32" / "libhelper.so.1", "libhelper.so.1")
    elfbuild.patch_machine(helper, d / "arm" / "libhelper.so.1", 183)
    elfbuild.extension(d / "wa", "_wa", needs=[helper], runpath=[str(d / "m32"), str(d / "arm"), str(d / "good")])
    return d


def test_rpath_is_inherited(paths_tree: Path) -> None:
    ext = paths_tree / "rp" / f"_rp{EXT}"
    analysis = analyze(FileTree(ext), HOST)
    edges = edges_of(analysis, str(ext))
    leaf = edges["libleaf.so.1"]
    assert leaf.status is Status.EXTERNAL and leaf.hit == str(paths_tree / "only" / "libleaf.so.1")
    assert leaf.dependent == str(paths_tree / "mid" / "libmid.so.1")
    assert leaf.tried[-1].via == f"DT_RPATH of {ext}"
    assert elfbuild.ldso_list(ext)["libleaf.so.1"] == leaf.hit
    graph = DependencyGraph(analysis)
    mid, leaf_path = str(paths_tree / "mid" / "libmid.so.1"), str(paths_tree / "only" / "libleaf.so.1")
    digests = HostDigests(HostFS())

    def vendored(*exclude: str) -> list[str]:
        return [v.source for v in collect(analysis, Choices(exclude=exclude), "rp.libs", digests).vendored]

    assert vendored() == [leaf_path, mid]  # dependencies first
    assert vendored("libmid*") == []  # its subtree is pruned with it
    assert vendored("libleaf.so.1") == [mid]
    assert {e.dependent for e in graph.edges if e.hit == leaf_path} == {mid}


def test_runpath_is_not_inherited(paths_tree: Path) -> None:
    ext = paths_tree / "run" / f"_run{EXT}"
    analysis = analyze(FileTree(ext), HOST)
    leaf = edges_of(analysis, str(ext))["libleaf.so.1"]
    assert leaf.status is Status.MISSING and leaf.hit is None
    vias = [a.via for a in leaf.tried]
    assert all(v == "default directory" for v in vias) and len(vias) == 4
    assert all(a.outcome == "not found" for a in leaf.tried)
    assert elfbuild.ldso_list(ext)["libleaf.so.1"] is None  # ld.so: not found either
    graph = DependencyGraph(analysis)
    assert [e.request.name for e in graph.missing()] == ["libleaf.so.1"]
    digests = HostDigests(HostFS())

    def vendored(*exclude: str) -> list[str]:
        choices = Choices(exclude=exclude, allow_missing=True)
        return [v.source for v in collect(analysis, choices, "run.libs", digests).vendored]

    assert vendored() == [str(paths_tree / "mid" / "libmid.so.1")]
    assert vendored("libmid.so.*") == []


def test_wrong_arch_is_skipped_and_reported(paths_tree: Path) -> None:
    ext = paths_tree / "wa" / f"_wa{EXT}"
    analysis = analyze(FileTree(ext), HOST)
    edge = edges_of(analysis, str(ext))["libhelper.so.1"]
    assert edge.hit == str(paths_tree / "good" / "libhelper.so.1")
    assert [a.outcome for a in edge.tried] == [
        "wrong arch (elf/i686, need elf/x86_64)", "wrong arch (elf/aarch64, need elf/x86_64)", "ok"]
    assert elfbuild.ldso_list(ext)["libhelper.so.1"] == edge.hit


def test_file_tree_neighbours_are_not_in_the_tree(chain_tree: Path) -> None:
    libb = chain_tree.resolve() / "pkg" / "deep" / "libb.so.1"
    analysis = analyze(FileTree(libb), HOST)
    edge = edges_of(analysis, str(libb))["libcc.so.1"]
    assert (edge.hit, edge.status) == (str(libb.parent / "libcc.so.1"), Status.EXTERNAL)
    assert analysis.tree_binaries == (str(libb),)


def test_ld_library_path_and_hermetic(paths_tree: Path) -> None:
    ext = paths_tree / "run" / f"_run{EXT}"
    search = SearchPaths(ld_library_path=(str(paths_tree / "only"),))
    leaf = edges_of(analyze(FileTree(ext), search), str(ext))["libleaf.so.1"]
    assert (leaf.hit, leaf.tried[-1].via) == (str(paths_tree / "only" / "libleaf.so.1"), "LD_LIBRARY_PATH")
    # hermetic: only the tree and -L dirs; absolute RUNPATHs into the host are not searched
    edges = edges_of(analyze(FileTree(ext), SearchPaths(use_system=False)), str(ext))
    assert edges["libmid.so.1"].status is Status.MISSING and edges["libmid.so.1"].tried == ()
    extra = (str(paths_tree / "mid"), str(paths_tree / "only"))
    edges = edges_of(analyze(FileTree(ext), SearchPaths(use_system=False, extra=extra)), str(ext))
    assert edges["libmid.so.1"].hit == str(paths_tree / "mid" / "libmid.so.1")
    assert edges["libleaf.so.1"].tried[-1].via == "extra library path (-L)"
    libc = edges["libc.so.6"]
    assert libc.status is Status.SYSTEM and libc.hit is None
    assert [a.path for a in libc.tried] == [f"{d}/libc.so.6" for d in extra]


def test_cycle_terminates(tmp_path: Path) -> None:
    d = tmp_path / "cyc"
    liby0 = elfbuild.shared_lib(d / "libyy.so", soname="libyy.so")
    libx = elfbuild.shared_lib(d / "libxx.so", soname="libxx.so", needs=[liby0], runpath=["$ORIGIN"])
    elfbuild.shared_lib(d / "libyy.so", soname="libyy.so", needs=[libx], runpath=["$ORIGIN"])
    for c in d.glob("*.c"):
        c.unlink()
    analysis = analyze(DirTree(d), HOST)
    x, y = str(d.resolve() / "libxx.so"), str(d.resolve() / "libyy.so")
    ex = edges_of(analysis, x)
    assert ex["libyy.so"].hit == y and ex["libyy.so"].loaded_here
    assert ex["libxx.so"].hit == x and not ex["libxx.so"].loaded_here  # the root itself, already loaded
    graph = DependencyGraph(analysis)
    assert set(graph.topological_order()) >= {x, y}
    assert graph.roots() == (x, y)  # everyone is loaded by someone: all are roots


def test_misses_of_a_library_walked_alone_are_not_misses(tmp_path: Path) -> None:
    """libmid finds libleaf only through the extension's DT_RPATH (inherited): walked alone it
    misses it, but nothing loads it alone, so the graph reports no miss (unless asked to)."""
    d = tmp_path / "t"
    leaf = elfbuild.shared_lib(d / "deps" / "libleaf.so.1", soname="libleaf.so.1")
    mid = elfbuild.shared_lib(d / "mid" / "libmid.so.1", soname="libmid.so.1", needs=[leaf])
    elfbuild.extension(d, "_ext", needs=[mid], rpath=["$ORIGIN/mid", "$ORIGIN/deps"])
    analysis = analyze(DirTree(d), HOST)
    root = analysis.root
    assert DependencyGraph(analysis).roots() == (f"{root}/_ext{EXT}",)
    assert DependencyGraph(analysis).missing() == ()
    alone = DependencyGraph(analysis, roots_only=False).missing()
    assert [(e.dependent, e.request.name) for e in alone] == [(f"{root}/mid/libmid.so.1", "libleaf.so.1")]


def test_symlinks_in_dir_tree(chain_tree: Path, tmp_path: Path) -> None:
    d = tmp_path / "links"
    (d / "lib").mkdir(parents=True)
    real = d / "lib" / "libcc.so.1.2"
    real.write_bytes((chain_tree / "pkg" / "deep" / "libcc.so.1").read_bytes())
    (d / "lib" / "libcc.so.1").symlink_to("libcc.so.1.2")
    (d / "loop1").symlink_to("loop2")
    (d / "loop2").symlink_to("loop1")
    (d / "escape.so").symlink_to("/lib/x86_64-linux-gnu/libc.so.6")
    analysis = analyze(DirTree(d), HOST)
    bad = {b.path: b.message for b in analysis.bad}
    assert "symlink loop" in bad["loop1"] and "points outside the tree" in bad["escape.so"]
    assert sorted(analysis.relpath(p) for p in analysis.tree_binaries) == ["lib/libcc.so.1", "lib/libcc.so.1.2"]
    binaries = analysis.binaries
    assert analysis.real_paths[f"{analysis.root}/lib/libcc.so.1"] == "lib/libcc.so.1.2"
    assert binaries[f"{analysis.root}/lib/libcc.so.1"] is binaries[f"{analysis.root}/lib/libcc.so.1.2"]


def test_sysroot_with_ld_so_conf_includes(chain_tree: Path, tmp_path: Path) -> None:
    sysroot = tmp_path / "sysroot"
    (sysroot / "etc" / "ld.so.conf.d").mkdir(parents=True)
    (sysroot / "etc" / "ld.so.conf").write_text("# comment\ninclude /etc/ld.so.conf.d/*.conf\n/opt/one\n")
    (sysroot / "etc" / "ld.so.conf.d" / "b.conf").write_text("/opt/bee\n")
    (sysroot / "etc" / "ld.so.conf.d" / "a.conf").write_text("/opt/ay # trailing\ninclude nested.txt\n")
    (sysroot / "etc" / "ld.so.conf.d" / "nested.txt").write_text("/opt/nested\n")
    assert read_ld_so_conf(str(sysroot)) == ("/opt/ay", "/opt/nested", "/opt/bee", "/opt/one")
    (sysroot / "opt" / "bee").mkdir(parents=True)
    (sysroot / "opt" / "real").mkdir(parents=True)
    real = sysroot / "opt" / "real" / "libcc.so.1.0"
    real.write_bytes((chain_tree / "pkg" / "deep" / "libcc.so.1").read_bytes())
    (sysroot / "opt" / "bee" / "libcc.so.1").symlink_to("/opt/real/libcc.so.1.0")  # absolute: re-rooted
    assert HostFS(str(sysroot)).real(f"{sysroot}/opt/bee/libcc.so.1") == str(real)
    assert HostFS(str(sysroot)).real(f"{sysroot}/opt/bee/missing.so") is None
    needs_cc = elfbuild.shared_lib(tmp_path / "x" / "libneeds.so", needs=[real])
    # ld.so reads only ld.so.cache: without one, ld.so.conf's directories are not searched
    # (tests/test_ldso_rules.py checks it against ld.so in a chroot)
    cc = edges_of(analyze(FileTree(needs_cc), SearchPaths(sysroot=str(sysroot))), str(needs_cc))["libcc.so.1"]
    assert (cc.hit, cc.status) == (None, Status.MISSING)
    assert not any(a.via.startswith("ld.so.conf") for a in cc.tried)
    # the explicit stand-in for a cache ldconfig has not written yet: the ld.so.conf directories
    standin = SearchPaths(sysroot=str(sysroot), use_ld_so_cache=False)
    cc = edges_of(analyze(FileTree(needs_cc), standin), str(needs_cc))["libcc.so.1"]
    assert (cc.hit, cc.status, cc.tried[-1].via) == (
        f"{sysroot}/opt/bee/libcc.so.1", Status.EXTERNAL, "ld.so.conf (standing in for ld.so.cache)")
    ext = chain_tree / "pkg" / "deep" / "libb.so.1"
    analysis = analyze(FileTree(ext), standin)
    edge = edges_of(analysis, str(ext.resolve()))["libcc.so.1"]
    assert edge.hit == str(ext.resolve().parent / "libcc.so.1")  # own $ORIGIN RUNPATH first
    other = edges_of(analysis, str(ext.resolve()))["libc.so.6"]
    assert other.status is Status.SYSTEM and other.hit is None  # not in this sysroot
    assert [a.path for a in other.tried if a.via.startswith("ld.so.conf")][:2] == [
        f"{sysroot}/opt/ay/libc.so.6", f"{sysroot}/opt/nested/libc.so.6"]


def test_ld_so_cache_reader_matches_ldconfig() -> None:
    import subprocess

    entries = read_ld_so_cache("/etc/ld.so.cache")
    assert entries is not None
    out = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    theirs = []
    for line in out.splitlines()[1:]:
        if " => " not in line:
            continue
        name, _, rest = line.strip().partition(" (")
        theirs.append((name, rest.rsplit(" => ", 1)[1]))
    assert [(n, p) for n, p, _f in entries] == theirs
    assert HOST.elf_cache("x86_64")["libc.so.6"] == LIBC  # type: ignore[index]


@pytest.fixture(scope="module")
def manylinux_wheels(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    import subprocess
    import sys

    dest = tmp_path_factory.mktemp("wheels")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform",
         "manylinux_2_28_x86_64", "--python-version", "3.11", "numpy", "scipy", "-d", str(dest)],
        capture_output=True, text=True, timeout=300,
    )
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode or len(wheels) != 2:
        pytest.skip(f"cannot download numpy/scipy wheels: {proc.stderr[-300:]}")
    return wheels


@pytest.mark.network  # downloads from PyPI
def test_third_party_manylinux_wheels(manylinux_wheels: list[Path]) -> None:
    from dynawheel.report import audit

    for whl in manylinux_wheels:
        analysis = analyze(WheelTree(whl), HOST)
        graph = DependencyGraph(analysis)
        project = whl.name.split("-")[0]
        assert analysis.bad == () and len(analysis.tree_binaries) > 10
        assert graph.missing() == () and graph.external() == (), whl.name
        vendored = {analysis.relpath(e.hit) for e in graph.edges if e.status is Status.IN_TREE and e.hit}
        assert any(v and v.startswith(f"{project}.libs/libscipy_openblas") for v in vendored), vendored
        assert {e.request.name for e in graph.system()} <= {"libc.so.6", "libm.so.6", "libpthread.so.0",
                                                             "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1",
                                                             "ld-linux-x86-64.so.2"}
        (verdict,) = audit(whl, HOST).verdicts
        assert whl.name.split("-")[4].startswith(verdict.summary), (whl.name, verdict)  # the wheel's own best tag


@pytest.mark.parametrize("dst", ["$PLATFORM", "${LIB}"])
def test_platform_and_lib_tokens_match_ld_so(tmp_path: Path, dst: str) -> None:
    """$PLATFORM / $LIB expand as the host's ld.so expands them (candidates for every value we might get)."""
    values = {"haswell", "xeon_phi", "x86_64", HOST.elf_platform} if "PLATFORM" in dst else {
        "lib", "lib64", "lib/x86_64-linux-gnu", HOST.elf_lib}
    first = None
    for value in sorted(values):
        first = elfbuild.shared_lib(tmp_path / value / "libtok.so.1", soname="libtok.so.1")
    assert first is not None
    top = elfbuild.shared_lib(tmp_path / "libtop.so", needs=[first], rpath=[f"$ORIGIN/{dst}"])
    edge = edges_of(analyze(FileTree(top), HOST), str(top))["libtok.so.1"]
    assert edge.hit == elfbuild.ldso_list(top)["libtok.so.1"]
    assert edge.tried[0].via == f"DT_RPATH of {top}"
