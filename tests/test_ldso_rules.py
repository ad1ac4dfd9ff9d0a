"""glibc loader rules beyond the basic search order, each on a trap built here (gcc), checked
against glibc's own ld.so in trace mode (what ``ldd`` runs), and the walker's economy on soname
symlinks (a file is walked once, whatever its number of names)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from dynawheel.analysis import resolve
from dynawheel.analysis.resolve import Analysis, analyze
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree, FileTree

from . import elfbuild

LDSO = "/lib64/ld-linux-x86-64.so.2"
pytestmark = pytest.mark.skipif(not (elfbuild.have_gcc() and os.path.exists(LDSO)), reason="needs gcc and x86_64 glibc")
HOST = SearchPaths.from_host({})


def ldso_trace(path: Path, env: dict[str, str] | None = None, chroot: Path | None = None,
               options: tuple[str, ...] = ()) -> dict[str, str | None]:
    """{request name: the REAL path of what glibc's ld.so loads, or None when "not found"}.
    Real paths: ld.so prints a path as it opened it ("dir/link/../lib/x.so"), which only the
    kernel resolves (a textual normpath would be wrong after a symlinked directory)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    clean.update(env or {})
    clean["LD_TRACE_LOADED_OBJECTS"] = "1"

    def enter() -> None:  # chroot in the child (not the chroot program: the trace would list it)
        if chroot is not None:
            os.chroot(chroot)
            os.chdir("/")

    proc = subprocess.run([LDSO, *options, str(path)], capture_output=True, text=True, env=clean, check=False,
                          preexec_fn=enter)
    out: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(\S+) => (?:(\S+) \(0x[0-9a-f]+\)|not found)", line)
        m = m or re.match(r"^\s*()(/\S+) \(0x[0-9a-f]+\)", line)  # a DT_NEEDED path (or the interpreter)
        if m and (m.group(1) or m.group(2)) not in out and "ld-linux-x86-64.so.2" not in line:
            out[m.group(1) or m.group(2)] = m.group(2)
    assert out, f"ld.so listed nothing for {path}: {proc.stdout!r} {proc.stderr!r}"
    if chroot is None:
        return {name: where and os.path.realpath(where) for name, where in out.items()}
    real = real_in_root(chroot, [where for where in out.values() if where is not None])
    return {name: where and f"{chroot}{real[where]}" for name, where in out.items()}


def real_in_root(chroot: Path, paths: list[str]) -> dict[str, str]:
    """{path: its real path} as the kernel resolves it in `chroot ROOT` (absolute links start again at
    the root): os.path.realpath in a child process that has chrooted."""
    import json

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: chroot, resolve, report, exit without running the parent's cleanups
        try:
            os.close(read)
            os.chroot(chroot)
            os.chdir("/")
            os.write(write, json.dumps({p: os.path.realpath(p) for p in paths}).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as fp:
        data = fp.read()
    os.waitpid(pid, 0)
    real: dict[str, str] = json.loads(data)
    return real


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


# ---- a root of its own: ld.so.conf without ld.so.cache, DF_1_NODEFLIB, checked by chroot ------

def _chroot_problem() -> str | None:
    if os.geteuid() != 0:
        return "chroot needs root"
    if not (os.path.exists("/sbin/ldconfig") and os.path.exists("/lib/x86_64-linux-gnu/libc.so.6")):
        return "needs Debian's x86_64 glibc layout and ldconfig"
    return None


needs_chroot = pytest.mark.skipif(_chroot_problem() is not None, reason=_chroot_problem() or "")


def make_root(root: Path) -> Path:
    """A minimal glibc root, not /usr-merged: /lib64/ld-linux-x86-64.so.2, /lib/<triplet>/libc.so.6,
    an empty /usr/lib/<triplet>; `chroot ROOT /lib64/ld-linux-x86-64.so.2 FILE` lists FILE in it."""
    (root / "lib64").mkdir(parents=True)
    (root / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr" / "lib" / "x86_64-linux-gnu").mkdir(parents=True)
    (root / "etc").mkdir()
    for src, dest in ((LDSO, "lib64/ld-linux-x86-64.so.2"), ("/lib/x86_64-linux-gnu/libc.so.6",
                                                           "lib/x86_64-linux-gnu/libc.so.6")):
        (root / dest).write_bytes(Path(os.path.realpath(src)).read_bytes())
        (root / dest).chmod(0o755)
    return root


def agree_in_root(root: Path, inside: str, search: SearchPaths | None = None) -> dict[str, str | None]:
    """Our closure of ROOT/inside under --sysroot ROOT equals ld.so's in `chroot ROOT`."""
    search = search or SearchPaths(sysroot=str(root))
    mine = ours(analyze(FileTree(root / inside.lstrip("/")), search), f"{root}{inside}")
    theirs = ldso_trace(Path(inside), chroot=root)
    theirs.pop("ld-linux-x86-64.so.2", None)
    assert mine == theirs
    return mine


def ldconfig(root: Path) -> None:
    subprocess.run(["/sbin/ldconfig", "-X", "-r", str(root)], check=True, capture_output=True)


@needs_chroot
def test_ld_so_conf_without_cache_is_not_read(tmp_path: Path) -> None:
    """ld.so reads only ld.so.cache: a root with ld.so.conf naming a directory but no cache does
    not find what that directory holds, until ldconfig writes the cache."""
    root = make_root(tmp_path / "root")
    (root / "etc" / "ld.so.conf").write_text("/opt/conf\n")
    conf = elfbuild.shared_lib(root / "opt" / "conf" / "libconf.so.1", soname="libconf.so.1")
    elfbuild.shared_lib(root / "app" / "libapp.so", needs=[conf])
    before = agree_in_root(root, "/app/libapp.so")
    assert before["libconf.so.1"] is None
    assert before["libc.so.6"] == f"{root}/lib/x86_64-linux-gnu/libc.so.6"
    # the explicit stand-in (use_ld_so_cache=False) reads ld.so.conf as ldconfig would cache it
    standin = SearchPaths(sysroot=str(root), use_ld_so_cache=False)
    assert ours(analyze(FileTree(root / "app" / "libapp.so"), standin), f"{root}/app/libapp.so")[
        "libconf.so.1"] == str(conf)
    ldconfig(root)
    after = agree_in_root(root, "/app/libapp.so")
    assert after["libconf.so.1"] == str(conf)


@needs_chroot
def test_nodeflib_drops_only_default_directory_results(tmp_path: Path) -> None:
    """DF_1_NODEFLIB: the default directories are not searched and a cache entry inside one of them
    is not used, but a cache entry elsewhere (/opt/conf from ld.so.conf) is."""
    root = make_root(tmp_path / "root")
    (root / "etc" / "ld.so.conf").write_text("/opt/conf\n")
    conf = elfbuild.shared_lib(root / "opt" / "conf" / "libconf.so.1", soname="libconf.so.1")
    sys_lib = elfbuild.shared_lib(root / "usr" / "lib" / "x86_64-linux-gnu" / "libsys.so.1", soname="libsys.so.1")
    for lib in (conf, sys_lib):
        lib.with_suffix(lib.suffix + ".c").unlink()
    ldconfig(root)
    plain = elfbuild.shared_lib(root / "app" / "libplain.so", needs=[conf, sys_lib])
    nodef = elfbuild.shared_lib(root / "app" / "libnodef.so", needs=[conf, sys_lib],
                                runpath=["/lib/x86_64-linux-gnu"], extra=["-Wl,-z,nodefaultlib"])
    assert plain.exists() and nodef.exists()
    both = agree_in_root(root, "/app/libplain.so")
    assert both["libconf.so.1"] == str(conf) and both["libsys.so.1"] == str(sys_lib)
    only = agree_in_root(root, "/app/libnodef.so")
    assert only["libconf.so.1"] == str(conf)  # a cache entry outside the default directories
    assert only["libsys.so.1"] is None  # its cache entry is in /usr/lib/x86_64-linux-gnu
    assert only["libc.so.6"] == f"{root}/lib/x86_64-linux-gnu/libc.so.6"  # through the RUNPATH


# ---- glibc-hwcaps and legacy hwcaps subdirectories ----------------------------------------------

def _ldso_help() -> str:
    return subprocess.run([LDSO, "--help"], capture_output=True, text=True, check=False).stdout


def test_host_hwcaps_are_what_ld_so_says() -> None:
    """The levels and legacy subdirectories SearchPaths.from_host finds are the ones this ld.so
    searches: its --help for the glibc-hwcaps levels, LD_DEBUG=libs for the legacy order."""
    supported = re.findall(r"^\s+(\S+) \(supported, searched\)", _ldso_help().split("glibc-hwcaps", 1)[-1]
                           .split("Legacy HWCAP", 1)[0], re.MULTILINE)
    assert HOST.elf_hwcaps == tuple(supported)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env.update(LD_DEBUG="libs", LD_LIBRARY_PATH="/nonexistent-dw")
    debug = subprocess.run([LDSO, "--list", "/bin/true"], capture_output=True, text=True, env=env, check=False).stderr
    line = next(ln for ln in debug.splitlines() if "search path=/nonexistent-dw" in ln)
    dirs = line.split("search path=", 1)[1].split()[0].split(":")
    subs = [d.removeprefix("/nonexistent-dw").lstrip("/") for d in dirs]
    assert tuple(dict.fromkeys(s for s in subs if s)) == HOST.elf_subdirs()


@pytest.fixture(scope="module")
def hwcaps_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """D with libraries in its glibc-hwcaps and legacy subdirectories (and in D itself)."""
    d = tmp_path_factory.mktemp("hwcaps") / "d"
    best = HOST.elf_hwcaps[0] if HOST.elf_hwcaps else "x86-64-v2"
    legacy = HOST.elf_legacy_hwcaps[-1] if HOST.elf_legacy_hwcaps else "x86_64"
    places = {
        "libh1.so.1": ["glibc-hwcaps/x86-64-v2", ""],  # the lowest level beats the directory
        "libh2.so.1": [legacy, ""],  # a legacy subdirectory beats the directory
        "libh3.so.1": ["tls", f"glibc-hwcaps/{best}", "glibc-hwcaps/x86-64-v2"],  # the best level first
        "libh4.so.1": ["glibc-hwcaps/x86-64-v9", ""],  # a level glibc does not know: not searched
    }
    for name, subs in places.items():
        for sub in subs:
            elfbuild.shared_lib(d / sub / name, soname=name, func=name.split(".")[0])
    for c in d.rglob("*.c"):
        c.unlink()
    return d


def test_hwcaps_subdirectories_as_ld_so(hwcaps_dir: Path, tmp_path: Path) -> None:
    libs = [hwcaps_dir / name for name in ("libh1.so.1", "libh2.so.1", "libh4.so.1")]
    libs.append(hwcaps_dir / "glibc-hwcaps" / "x86-64-v2" / "libh3.so.1")
    for kind in ("runpath", "rpath"):
        root = elfbuild.shared_lib(tmp_path / kind / "libroot.so", needs=libs, **{kind: [str(hwcaps_dir)]})
        got = agree(root)
        if HOST.elf_hwcaps:
            assert got["libh1.so.1"] == str(hwcaps_dir / "glibc-hwcaps" / "x86-64-v2" / "libh1.so.1")
            assert got["libh3.so.1"] == str(hwcaps_dir / "glibc-hwcaps" / HOST.elf_hwcaps[0] / "libh3.so.1")
        assert got["libh4.so.1"] == str(hwcaps_dir / "libh4.so.1")
    # LD_LIBRARY_PATH directories have them too
    plain = elfbuild.shared_lib(tmp_path / "plain" / "libroot.so", needs=libs)
    env_search = SearchPaths.from_host({"LD_LIBRARY_PATH": str(hwcaps_dir)})
    mine = ours(analyze(FileTree(plain), env_search), str(plain))
    theirs = ldso_trace(plain, {"LD_LIBRARY_PATH": str(hwcaps_dir)})
    theirs.pop("ld-linux-x86-64.so.2", None)
    assert mine == theirs


def test_hwcaps_levels_are_settable_for_a_target(hwcaps_dir: Path, tmp_path: Path) -> None:
    """A target CPU with no glibc-hwcaps level (or a glibc without them) and no legacy
    subdirectories: only the directory itself is searched."""
    libs = [hwcaps_dir / n for n in ("libh1.so.1", "libh2.so.1")]
    root = elfbuild.shared_lib(tmp_path / "libroot.so", needs=libs, runpath=[str(hwcaps_dir)])
    v2 = SearchPaths(elf_hwcaps=("x86-64-v2",))
    got = ours(analyze(FileTree(root), v2), str(root))
    assert got["libh1.so.1"] == str(hwcaps_dir / "glibc-hwcaps" / "x86-64-v2" / "libh1.so.1")
    assert got["libh2.so.1"] == str(hwcaps_dir / "libh2.so.1")
    bare = ours(analyze(FileTree(root), SearchPaths()), str(root))
    assert bare["libh1.so.1"] == str(hwcaps_dir / "libh1.so.1")


def test_target_levels_as_ld_so_masks_them(hwcaps_dir: Path, tmp_path: Path) -> None:
    """A target CPU with fewer levels, by the real loader: `ld.so --glibc-hwcaps-mask LIST` searches only
    the levels of LIST (this CPU's legacy subdirectories stay); this host's SearchPaths with those
    levels gives the same closure."""
    from dataclasses import replace

    if len(HOST.elf_hwcaps) < 2:
        pytest.skip("this CPU has fewer than two glibc-hwcaps levels")
    libs = [hwcaps_dir / n for n in ("libh1.so.1", "libh2.so.1", "libh4.so.1")]
    libs.append(hwcaps_dir / "glibc-hwcaps" / "x86-64-v2" / "libh3.so.1")
    root = elfbuild.shared_lib(tmp_path / "libroot.so", needs=libs, runpath=[str(hwcaps_dir)])
    seen = set()
    for levels in (HOST.elf_hwcaps, ("x86-64-v2",), ()):
        theirs = ldso_trace(root, options=("--glibc-hwcaps-mask", ":".join(levels) or "none"))
        theirs.pop("ld-linux-x86-64.so.2", None)
        assert ours(analyze(FileTree(root), replace(HOST, elf_hwcaps=levels)), str(root)) == theirs, levels
        seen.add(theirs["libh3.so.1"])
    assert seen == {str(hwcaps_dir / sub / "libh3.so.1") for sub in (f"glibc-hwcaps/{HOST.elf_hwcaps[0]}",
                                                                     "glibc-hwcaps/x86-64-v2", "tls")}


@needs_chroot
def test_ld_so_cache_hwcaps_entries(tmp_path: Path) -> None:
    """ldconfig caches a library of a glibc-hwcaps or legacy subdirectory as extra entries of its
    name; ld.so takes the best level the CPU supports, else the first legacy entry whose bits it
    has, else the plain entry.  Checked in a chroot with the host's levels."""
    root = make_root(tmp_path / "root")
    (root / "etc" / "ld.so.conf").write_text("/opt/conf\n")
    conf = root / "opt" / "conf"
    best = HOST.elf_hwcaps[0] if HOST.elf_hwcaps else "x86-64-v2"
    places = {
        "libq.so.1": [f"glibc-hwcaps/{best}", "glibc-hwcaps/x86-64-v2", "tls", "x86_64", ""],
        "libleg.so.1": ["x86_64", ""],
        "libtl.so.1": ["tls", ""],
        "libpl.so.1": ["haswell", "xeon_phi", ""],  # platform entries: only for that platform
    }
    for name, subs in places.items():
        for sub in subs:
            elfbuild.shared_lib(conf / sub / name, soname=name, func=name.split(".")[0])
    for c in conf.rglob("*.c"):
        c.unlink()
    ldconfig(root)
    libs = [conf / name for name in places]
    elfbuild.shared_lib(root / "app" / "libapp.so", needs=libs)
    target = SearchPaths(sysroot=str(root), elf_hwcaps=HOST.elf_hwcaps, elf_legacy_hwcaps=HOST.elf_legacy_hwcaps,
                         elf_platform=HOST.elf_platform)
    got = agree_in_root(root, "/app/libapp.so", target)
    if HOST.elf_hwcaps:
        assert got["libq.so.1"] == str(conf / "glibc-hwcaps" / best / "libq.so.1")
    if HOST.elf_legacy_hwcaps:
        assert got["libleg.so.1"] == str(conf / "x86_64" / "libleg.so.1")
        assert got["libtl.so.1"] == str(conf / "tls" / "libtl.so.1")
    # a target without hwcaps levels or legacy subdirectories takes the plain entries
    plain = ours(analyze(FileTree(root / "app" / "libapp.so"), SearchPaths(sysroot=str(root))), f"{root}/app/libapp.so")
    assert [plain[n] for n in places] == [str(conf / n) for n in places]


def isa_note(path: Path, needed: int) -> Path:
    """An assembler file whose object carries GNU_PROPERTY_X86_ISA_1_NEEDED = `needed` (what
    `-z x86-64-vN` writes: bit 1 v2, bit 2 v3, bit 3 v4); linked in, the library says it needs it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\t.section .note.gnu.property,"a"\n\t.p2align 3\n'
                    "\t.long 4\n\t.long 16\n\t.long 5\n\t.asciz \"GNU\"\n"  # NT_GNU_PROPERTY_TYPE_0
                    f"\t.long 0xc0008002\n\t.long 4\n\t.long {needed:#x}\n\t.long 0\n")
    return path


@needs_chroot
def test_ld_so_cache_skips_hwcaps_entries_of_an_isa_level_the_cpu_lacks(tmp_path: Path) -> None:
    """ldconfig records a glibc-hwcaps library's x86 ISA level (its GNU property note) in the cache
    entry; ld.so skips an entry whose level the CPU lacks and takes the next entry of the name.
    libisa's x86-64-v2 copy claims a level beyond x86-64-v4 (bit 4: no CPU has it), libisc's claims
    x86-64-v2 (which the CPU has: its entry is taken)."""
    if "x86-64-v2" not in HOST.elf_hwcaps:
        pytest.skip("this CPU has no glibc-hwcaps level (x86-64-v2 needed)")
    root = make_root(tmp_path / "root")
    (root / "etc" / "ld.so.conf").write_text("/opt/conf\n")
    conf = root / "opt" / "conf"
    for name, needed in (("libisa.so.1", 1 << 4), ("libisc.so.1", 1 << 1)):
        note = isa_note(tmp_path / f"{name}.s", needed)
        elfbuild.shared_lib(conf / "glibc-hwcaps" / "x86-64-v2" / name, soname=name, func=name.split(".")[0],
                            extra=[str(note)])
        elfbuild.shared_lib(conf / name, soname=name, func=name.split(".")[0])
    for c in conf.rglob("*.c"):
        c.unlink()
    ldconfig(root)
    elfbuild.shared_lib(root / "app" / "libapp.so", needs=[conf / "libisa.so.1", conf / "libisc.so.1"])
    target = SearchPaths(sysroot=str(root), elf_hwcaps=HOST.elf_hwcaps)
    got = agree_in_root(root, "/app/libapp.so", target)
    assert got["libisa.so.1"] == str(conf / "libisa.so.1")
    assert got["libisc.so.1"] == str(conf / "glibc-hwcaps" / "x86-64-v2" / "libisc.so.1")


def test_dotdot_after_a_symlinked_directory(tmp_path: Path) -> None:
    """RUNPATH "$ORIGIN/link/../lib" with link -> ../other/deep: the kernel resolves link first, so
    ld.so opens other/lib, not the app/lib the text suggests (a decoy is there); also for an
    absolute RUNPATH, a DT_RPATH and a DT_NEEDED path."""
    app, other = tmp_path / "app", tmp_path / "other"
    decoy = elfbuild.shared_lib(app / "lib" / "libdd.so.1", soname="libdd.so.1")
    real = elfbuild.shared_lib(other / "lib" / "libdd.so.1", soname="libdd.so.1")
    (other / "deep").mkdir()
    (app / "link").symlink_to("../other/deep")
    cases = {"origin": {"runpath": ["$ORIGIN/link/../lib"]}, "absolute": {"runpath": [f"{app}/link/../lib"]},
             "rpath": {"rpath": ["$ORIGIN/link/../lib"]}}
    for kind, paths in cases.items():
        root = elfbuild.shared_lib(app / f"libroot_{kind}.so", needs=[decoy], **paths)  # type: ignore[arg-type]
        assert agree(root)["libdd.so.1"] == str(real), kind
    # a DT_NEEDED that is a path (a library without a soname, linked by its path)
    elfbuild.shared_lib(app / "lib" / "libnos.so")
    nos = elfbuild.shared_lib(other / "lib" / "libnos.so")
    wanted = f"{app}/link/../lib/libnos.so"
    needs = elfbuild.shared_lib(app / "libpath.so", extra=["-Wl,--no-as-needed", wanted])
    assert agree(needs)[wanted] == str(nos)


def test_dotdot_below_a_sysroot(tmp_path: Path) -> None:
    """The same through --sysroot: an absolute link in the root is followed inside the root."""
    root = tmp_path / "root"
    elfbuild.shared_lib(root / "opt" / "app" / "lib" / "libdd.so.1", soname="libdd.so.1")
    real = elfbuild.shared_lib(root / "opt" / "other" / "lib" / "libdd.so.1", soname="libdd.so.1")
    (root / "opt" / "other" / "deep").mkdir()
    (root / "opt" / "app" / "link").symlink_to("/opt/other/deep")  # absolute: re-rooted
    app = elfbuild.shared_lib(tmp_path / "tree" / "libroot.so", needs=[real], runpath=["/opt/app/link/../lib"])
    got = ours(analyze(FileTree(app), SearchPaths(sysroot=str(root))), str(app))
    assert got["libdd.so.1"] == str(real)


@needs_chroot
def test_dotdot_below_a_sysroot_as_ld_so_in_the_root(tmp_path: Path) -> None:
    """The same against ld.so in `chroot ROOT`: an absolute link inside the root is followed inside it,
    for an absolute RUNPATH and for $ORIGIN, and the decoy the text points to is not taken."""
    root = make_root(tmp_path / "root")
    decoy = elfbuild.shared_lib(root / "opt" / "app" / "lib" / "libdd.so.1", soname="libdd.so.1")
    real = elfbuild.shared_lib(root / "opt" / "other" / "lib" / "libdd.so.1", soname="libdd.so.1")
    (root / "opt" / "other" / "deep").mkdir()
    (root / "opt" / "app" / "link").symlink_to("/opt/other/deep")  # absolute: re-rooted
    elfbuild.shared_lib(root / "opt" / "app" / "libabs.so", needs=[decoy], runpath=["/opt/app/link/../lib"])
    elfbuild.shared_lib(root / "opt" / "app" / "liborg.so", needs=[decoy], runpath=["$ORIGIN/link/../lib"])
    for name in ("libabs.so", "liborg.so"):
        got = agree_in_root(root, f"/opt/app/{name}", SearchPaths.for_sysroot(str(root)))
        assert got["libdd.so.1"] == str(real), name


@needs_chroot
def test_hwcaps_through_the_sysroot_option(tmp_path: Path) -> None:
    """`show --sysroot ROOT` (and --glibc-hwcaps for another CPU): the glibc-hwcaps subdirectories of
    the root's default directories, as ld.so in `chroot ROOT` searches them (no cache here)."""
    import json

    from .conftest import run_cli

    root = make_root(tmp_path / "root")
    multiarch = root / "usr" / "lib" / "x86_64-linux-gnu"
    for sub in ("glibc-hwcaps/x86-64-v2", ""):
        elfbuild.shared_lib(multiarch / sub / "libhw.so.1", soname="libhw.so.1", func="libhw")
    for c in multiarch.rglob("*.c"):
        c.unlink()
    elfbuild.shared_lib(root / "app" / "libapp.so", needs=[multiarch / "libhw.so.1"])
    theirs = ldso_trace(Path("/app/libapp.so"), chroot=root)

    def hit(*options: str) -> str | None:
        result = run_cli("show", "--json", "--sysroot", root, *options, root / "app" / "libapp.so")
        edges = [e for w in json.loads(result.out)["walks"] for e in w["edges"] if e["request"] == "libhw.so.1"]
        return os.path.realpath(edges[0]["hit"]) if edges[0]["hit"] else None

    assert hit() == theirs["libhw.so.1"]
    if HOST.elf_hwcaps:
        assert theirs["libhw.so.1"] == str(multiarch / "glibc-hwcaps" / "x86-64-v2" / "libhw.so.1")
    assert hit("--glibc-hwcaps", "none") == str(multiarch / "libhw.so.1")


def sysroot_show_agrees(root: Path, needs: list[Path], runpath: list[str]) -> dict[str, str | None]:
    """Link ROOT/app/libapp.so against `needs` (their C sources removed from the root first) with
    `runpath`; `show --json --sysroot ROOT` of it must hit what ld.so lists in `chroot ROOT`: that."""
    import json

    from .conftest import run_cli

    for c in root.rglob("*.c"):
        c.unlink()
    elfbuild.shared_lib(root / "app" / "libapp.so", needs=needs, runpath=runpath)
    theirs = ldso_trace(Path("/app/libapp.so"), chroot=root)
    theirs.pop("ld-linux-x86-64.so.2", None)
    result = run_cli("show", "--json", "--sysroot", root, root / "app" / "libapp.so")
    mine = {e["request"]: os.path.realpath(e["hit"]) if e["hit"] else None
            for w in json.loads(result.out)["walks"] for e in w["edges"] if e["request"] != "ld-linux-x86-64.so.2"}
    assert mine == theirs
    return theirs


@needs_chroot
def test_the_roots_own_glibc_rules_through_the_sysroot_option(tmp_path: Path) -> None:
    """`show --sysroot ROOT` follows the glibc of ROOT (its version read from its libc.so.6), run on
    this CPU: here the host's glibc copied into a root, so legacy hwcaps subdirectories (glibc <= 2.36),
    $PLATFORM (haswell on Intel CPUs with AVX2, 2.26-2.36) and $LIB (Debian: lib/<triplet>) are the
    host's, and every hit equals ld.so's in `chroot ROOT`."""
    from dynawheel.search import glibc_release

    root = make_root(tmp_path / "root")
    assert glibc_release(str(root)) == glibc_release("/") is not None
    target = SearchPaths.for_sysroot(str(root))
    assert (target.elf_hwcaps, target.elf_legacy_hwcaps, target.elf_platform, target.elf_lib, target.elf_isa_check) \
        == (HOST.elf_hwcaps, HOST.elf_legacy_hwcaps, HOST.elf_platform, HOST.elf_lib, HOST.elf_isa_check)
    multiarch = root / "usr" / "lib" / "x86_64-linux-gnu"
    legacy = [sub for sub in ("x86_64", HOST.elf_platform, "tls") if sub in HOST.elf_legacy_hwcaps]
    needs = []
    for i, sub in enumerate(legacy):
        for where in (multiarch / sub, multiarch):
            needs.append(elfbuild.shared_lib(where / f"libleg{i}.so.1", soname=f"libleg{i}.so.1", func=f"libleg{i}"))
    needs.append(elfbuild.shared_lib(root / "opt" / HOST.elf_lib / "libdlib.so.1", soname="libdlib.so.1"))
    needs.append(elfbuild.shared_lib(root / "opt" / HOST.elf_platform / "libdplat.so.1", soname="libdplat.so.1"))
    theirs = sysroot_show_agrees(root, needs, ["/opt/$LIB", "/opt/$PLATFORM"])
    assert theirs["libdlib.so.1"] is not None and theirs["libdplat.so.1"] is not None
    for i, sub in enumerate(legacy):
        assert theirs[f"libleg{i}.so.1"] == str(multiarch / sub / f"libleg{i}.so.1")


# ---- an older glibc than the host's, from Debian: the rules of its release, checked by its own ld.so ----

# Debian 11 (bullseye)'s libc6, glibc 2.31: before glibc-hwcaps and the x86 ISA-level check (2.33), with
# legacy hwcaps subdirectories and $PLATFORM.  Pinned as Debian's Packages index gives it (Size, SHA256).
BULLSEYE_LIBC6 = ("http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.31-13+deb11u11_amd64.deb",
                  "05f7264da867b37f4c5ce49266b558ea1e81e05a9464f623152fca70f3550282")


@pytest.fixture(scope="session")
def bullseye_libc6(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian 11's libc6 .deb, downloaded once into pytest's cache (hash checked), unpacked."""
    import hashlib
    import shutil
    import urllib.request

    if shutil.which("dpkg-deb") is None:
        pytest.skip("needs dpkg-deb to unpack Debian's libc6 package")
    url, sha256 = BULLSEYE_LIBC6
    store = getattr(request.config, "cache", None)
    cache = Path(store.mkdir("dynawheel-debian")) if store else tmp_path_factory.mktemp("debian")
    deb = cache / url.rsplit("/", 1)[-1]
    if not deb.is_file() or hashlib.sha256(deb.read_bytes()).hexdigest() != sha256:
        with urllib.request.urlopen(url, timeout=120) as response:  # pinned: the hash is checked below
            data = response.read()
        assert hashlib.sha256(data).hexdigest() == sha256, f"{url}: not the pinned package"
        part = deb.with_suffix(f".part{os.getpid()}")
        part.write_bytes(data)
        part.replace(deb)
    tree = tmp_path_factory.mktemp("bullseye-libc6")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, capture_output=True)
    return tree


@needs_chroot
@pytest.mark.network
def test_an_older_glibc_through_the_sysroot_option(tmp_path: Path, bullseye_libc6: Path) -> None:
    """`show --sysroot ROOT` over Debian 11's real glibc 2.31 (not the host's 2.36) follows that release:
    it ignores glibc-hwcaps subdirectories, loads a library whose ISA level no CPU has (no check before
    2.33), searches the legacy subdirectories of this CPU and expands $PLATFORM as 2.31 does; every hit
    equals what that ld.so lists in `chroot ROOT`."""
    import shutil

    from dynawheel.search import glibc_release

    root = tmp_path / "root"
    shutil.copytree(bullseye_libc6, root, symlinks=True)
    multiarch = root / "usr" / "lib" / "x86_64-linux-gnu"
    multiarch.mkdir(parents=True, exist_ok=True)
    assert glibc_release(str(root)) == (2, 31)
    target = SearchPaths.for_sysroot(str(root))
    assert (target.elf_hwcaps, target.elf_isa_check) == ((), False)
    needs = []
    for sub in ("glibc-hwcaps/x86-64-v2", ""):  # 2.31 knows no glibc-hwcaps: the plain copy
        elfbuild.shared_lib(multiarch / sub / "libhw.so.1", soname="libhw.so.1", func="libhw")
    needs.append(multiarch / "libhw.so.1")
    note = isa_note(tmp_path / "isa.s", 1 << 4)  # a level beyond x86-64-v4: 2.33+ would refuse it
    needs.append(elfbuild.shared_lib(multiarch / "libisa.so.1", soname="libisa.so.1", extra=[str(note)]))
    for i, sub in enumerate(target.elf_legacy_hwcaps[:3]):
        for where in (multiarch / sub, multiarch):
            elfbuild.shared_lib(where / f"libleg{i}.so.1", soname=f"libleg{i}.so.1", func=f"libleg{i}")
        needs.append(multiarch / f"libleg{i}.so.1")
    needs.append(elfbuild.shared_lib(root / "opt" / target.elf_platform / "libdplat.so.1", soname="libdplat.so.1"))
    theirs = sysroot_show_agrees(root, needs, ["/opt/$PLATFORM"])
    assert theirs["libhw.so.1"] == str(multiarch / "libhw.so.1")
    assert theirs["libisa.so.1"] == str(multiarch / "libisa.so.1")
    assert theirs["libdplat.so.1"] == str(root / "opt" / target.elf_platform / "libdplat.so.1")
    for i, sub in enumerate(target.elf_legacy_hwcaps[:3]):
        assert theirs[f"libleg{i}.so.1"] == str(multiarch / sub / f"libleg{i}.so.1")
