"""`dynawheel repair` on Mach-O trees and wheels, from this Linux host.

The binaries are linked at test time with clang-14 + ld64.lld-14 (as fixtures/macho/build.sh
does, from its sources and its libSystem.tbd stub).  The dylibs the extensions need live in a
temporary "build" directory OUTSIDE the tree, reached through an absolute install name, an
absolute LC_RPATH, an @rpath chain whose links come from the dylibs' own LC_RPATHs, or `-L`.
After the repair, nothing is trusted from dynawheel's writer alone:

* the hermetic audit (dyld's rules, no system paths, no -L) finds every dependency in the tree;
* `llvm-objdump-14 --macho --all-headers --arch=all` (a strict parser) reads every slice;
* every arm64 slice's ad-hoc signature verifies (every page hash recomputed);
* install names are `@loader_path/...`, vendored ids are set, LC_RPATHs pointing outside are gone;
* inputs are byte-identical afterwards; a header without room fails cleanly and writes nothing.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shutil
import subprocess
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import Status
from dynawheel.binary import BinaryFile
from dynawheel.errors import HeaderSpaceError
from dynawheel.platforms.codesign import verify_signature
from dynawheel.platforms.macho import BACKEND, CPU_TYPE_ARM64, LC_CODE_SIGNATURE, headers_of_bytes
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import repair_tree
from dynawheel.report import audit
from dynawheel.search import SearchPaths
from dynawheel.wheel.archive import Entry, write_wheel

from .conftest import run_cli
from .repairkit import extract, hash_tree, only_wheel

SRC = Path(__file__).resolve().parent.parent / "fixtures" / "macho" / "src"
BIN = Path(__file__).resolve().parent.parent / "fixtures" / "macho" / "bin"
TBD = SRC / "libSystem.tbd"
CLANG, LD64, LIPO, OBJDUMP = (shutil.which(t) for t in ("clang-14", "ld64.lld-14", "llvm-lipo-14", "llvm-objdump-14"))

pytestmark = pytest.mark.skipif(
    None in (CLANG, LD64, LIPO, OBJDUMP),
    reason="needs clang-14, ld64.lld-14 (apt-get install -y --no-install-recommends clang-14 lld-14) and llvm-14",
)

EXT = ".cpython-311-darwin.so"
CHAIN_EXT = """extern int chain_a(void);
extern int helper_value(void);
int PyInit__chain(void) { return chain_a() + helper_value(); }
"""
NO_DYLD_ENV = {"DYLD_LIBRARY_PATH": "", "DYLD_FALLBACK_LIBRARY_PATH": ""}  # the host's paths: no hidden input
VERSIONS = {"arm64": ("arm64-apple-macos11", "11.0"), "x86_64": ("x86_64-apple-macos10.9", "10.9")}


# ---- building --------------------------------------------------------------------------------

def _run(cmd: Sequence[str | Path], cwd: Path | None = None) -> None:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)


class Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.obj = root / "obj"
        self.obj.mkdir(parents=True)

    def cc(self, arch: str, source: Path) -> Path:
        out = self.obj / f"{source.stem}-{arch}.o"
        if not out.exists():
            _run([CLANG, f"--target={VERSIONS[arch][0]}", "-O2", "-fno-ident", "-fno-stack-protector", "-c",
                  source, "-o", out])
        return out

    def link(self, arch: str, out: Path, *args: str | Path, minos: str | None = None) -> Path:
        """ld64.lld-14, run in the output's directory (its base name becomes the signing identifier)."""
        out.parent.mkdir(parents=True, exist_ok=True)
        version = minos or VERSIONS[arch][1]
        _run([LD64, "-arch", arch, "-platform_version", "macos", version, version, "-o", out.name, *args, TBD],
             cwd=out.parent)
        return out

    def fat(self, out: Path, *slices: Path) -> Path:
        out.parent.mkdir(parents=True, exist_ok=True)
        _run([LIPO, "-create", *slices, "-output", out])
        return out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tmp/build: the dylibs (outside every tree) and tmp/build/bundles: the extensions.

    libhelper.dylib       absolute install name <build>/libhelper.dylib
    a/libchain_a.dylib    @rpath/libchain_a.dylib, LC_RPATH @loader_path/../b
    b/libchain_b.dylib    @rpath/libchain_b.dylib, LC_RPATH @loader_path/../c; needs @loader_path/libchain_c.dylib
    c/libchain_c.dylib    @loader_path/libchain_c.dylib (NOT beside b: found through -L); minimum macOS 13.0
    fat/libuhelper.dylib  universal2, @rpath/libuhelper.dylib
    bundles/_ext          arm64; needs <build>/libhelper.dylib; LC_RPATH <build> (absolute, outside)
    bundles/_chain        arm64; needs @rpath/libchain_a.dylib (LC_RPATH <build>/a) and libhelper; LC_RPATH @loader_path
    bundles/_fat          universal2 (x86_64 10.9 + arm64 11.0); needs @rpath/libuhelper.dylib (LC_RPATH <build>/fat)
    thin/<arch>/          the thin halves of the universal files
    """
    root = tmp_path_factory.mktemp("macho") / "build"
    b = Builder(root)
    chain_ext = root / "chainext.c"
    chain_ext.write_text(CHAIN_EXT)
    helper = b.link("arm64", root / "libhelper.dylib", "-dylib", "-install_name", str(root / "libhelper.dylib"),
                    b.cc("arm64", SRC / "helper.c"))
    c = b.link("arm64", root / "c/libchain_c.dylib", "-dylib", "-install_name", "@loader_path/libchain_c.dylib",
               b.cc("arm64", SRC / "chain_c.c"), minos="13.0")
    lib_b = b.link("arm64", root / "b/libchain_b.dylib", "-dylib", "-install_name", "@rpath/libchain_b.dylib",
                   "-rpath", "@loader_path/../c", b.cc("arm64", SRC / "chain_b.c"), c)
    a = b.link("arm64", root / "a/libchain_a.dylib", "-dylib", "-install_name", "@rpath/libchain_a.dylib",
               "-rpath", "@loader_path/../b", b.cc("arm64", SRC / "chain_a.c"), lib_b)
    thin = {arch: b.link(arch, root / f"thin/{arch}/libuhelper.dylib", "-dylib", "-install_name",
                         "@rpath/libuhelper.dylib", b.cc(arch, SRC / "helper.c")) for arch in VERSIONS}
    uhelper = b.fat(root / "fat/libuhelper.dylib", *thin.values())
    pad = "-headerpad_max_install_names"
    bundles = root / "bundles"
    b.link("arm64", bundles / f"_ext{EXT}", "-bundle", pad, "-rpath", str(root), b.cc("arm64", SRC / "ext.c"), helper)
    b.link("arm64", bundles / f"_chain{EXT}", "-bundle", pad, "-rpath", str(root / "a"), "-rpath", "@loader_path",
           b.cc("arm64", chain_ext), a, helper)
    slices = [b.link(arch, root / f"thin/{arch}/_fat{EXT}", "-bundle", pad, "-rpath", str(root / "fat"),
                     b.cc(arch, SRC / "ext.c"), uhelper) for arch in VERSIONS]
    b.fat(bundles / f"_fat{EXT}", *slices)
    return root


def stage(build: Path, dest: Path, *names: str) -> Path:
    """A staged tree: pkg/__init__.py, pkg/_ext, pkg/_fat, pkg/sub/_chain (the ones named)."""
    places = {"_ext": "pkg", "_fat": "pkg", "_chain": "pkg/sub"}
    (dest / "pkg").mkdir(parents=True)
    (dest / "pkg/__init__.py").write_text("")
    for name in names:
        (dest / places[name]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(build / "bundles" / f"{name}{EXT}", dest / places[name] / f"{name}{EXT}")
    return dest


def make_wheel(tree: Path, wheel_dir: Path, platform: str, name: str = "demo") -> Path:
    dist_info = f"{name}-1.0.dist-info"
    entries = [Entry(p.relative_to(tree).as_posix(), p) for p in sorted(tree.rglob("*")) if p.is_file()]
    entries += [
        Entry(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()),
        Entry(f"{dist_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                    f"Tag: cp311-cp311-{platform}\n".encode()),
    ]
    wheel_dir.mkdir(parents=True, exist_ok=True)
    return write_wheel(wheel_dir / f"{name}-1.0-cp311-cp311-{platform}.whl", entries, dist_info)


# ---- checking --------------------------------------------------------------------------------

def parse(path: Path) -> BinaryFile:
    with path.open("rb") as fp:
        return BACKEND.parse(fp, str(path))


def machos(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix in (".so", ".dylib")}


def objdump_rpaths(path: Path) -> list[str]:
    """LC_RPATHs of every slice as the strict parser reads them; it must not complain."""
    assert OBJDUMP is not None
    proc = subprocess.run([OBJDUMP, "--macho", "--all-headers", "--arch=all", str(path)], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and proc.stderr == "", (path, proc.stderr)
    assert proc.stdout.count("Mach header") == len(parse(path).images), proc.stdout[:2000]
    return re.findall(r"cmd LC_RPATH\n\s+cmdsize \d+\n\s+path (\S+) \(offset", proc.stdout)


def check_repaired(root: Path, build: Path) -> dict[str, Path]:
    """Every load command of every binary resolves inside `root` by dyld's rules, and the files are sound."""
    report = audit(root, SearchPaths(use_system=False))  # hermetic: no -L, no absolute paths, no DYLD_*
    analysis = report.analysis
    assert not analysis.bad
    assert not report.graph.missing() and not report.graph.external()
    for edge in report.graph.edges:
        if edge.status is Status.SYSTEM:
            assert edge.request.name.startswith("/usr/lib/"), edge
        else:
            assert edge.status is Status.IN_TREE and analysis.relpath(edge.hit or "") is not None, edge
    files = machos(root)
    assert files
    for rel, path in files.items():
        binary = parse(path)
        for image in binary.images:
            for dep in image.needed:
                assert dep.name.startswith(("@loader_path/", "/usr/lib/")), (rel, image.arch, dep.name)
            assert all(r.startswith("@loader_path") for r in image.rpaths), (rel, image.rpaths)
            assert str(build) not in " ".join([*image.rpaths, *(d.name for d in image.needed)])
            if rel.endswith(".dylib"):  # every dylib here is a vendored copy: its own id names it
                assert image.soname == f"@rpath/{path.name}", (rel, image.soname)
        for rpath in objdump_rpaths(path):
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), rpath[len("@loader_path"):].lstrip("/")))
            assert rpath.startswith("@loader_path") and not target.startswith(".."), (rel, rpath)
        data = path.read_bytes()
        assert verify_signature(data, rel) == [], rel
        _, headers = headers_of_bytes(data, rel)
        for sl in headers:
            if sl.cputype == CPU_TYPE_ARM64:
                assert sl.find(LC_CODE_SIGNATURE), (rel, "arm64 slice unsigned")
    return files


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- staged trees ----------------------------------------------------------------------------

def test_staged_tree_absolute_names_rpath_chain_and_fat(build: Path, tmp_path: Path) -> None:
    """Absolute install name + absolute LC_RPATHs (host paths) and -L for the link dyld cannot find."""
    tree = stage(build, tmp_path / "stage", "_ext", "_chain", "_fat")
    before = {**hash_tree(tree), **{f"build/{k}": v for k, v in hash_tree(build).items()}}
    out = tmp_path / "out"
    done = run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build / "c", env=NO_DYLD_ENV)
    assert done.code == 0, done.err
    assert {**hash_tree(tree), **{f"build/{k}": v for k, v in hash_tree(build).items()}} == before
    files = check_repaired(out, build)
    names = sorted(re.sub(r"-[0-9a-f]{8}\.dylib$", ".dylib", rel) for rel in files)
    assert names == sorted([
        f"pkg/_ext{EXT}", f"pkg/_fat{EXT}", f"pkg/sub/_chain{EXT}",
        "demo.libs/libhelper.dylib",  # shared by pkg/ and pkg/sub/: one copy
        "pkg/libuhelper.dylib",  # only pkg/_fat needs it: beside it
        "pkg/sub/libchain_a.dylib", "pkg/sub/libchain_b.dylib", "pkg/sub/libchain_c.dylib",
    ])
    fat = next(rel for rel in files if "libuhelper" in rel)
    assert [i.arch for i in parse(files[fat]).images] == ["x86_64", "arm64"] and parse(files[fat]).fat
    chain = parse(files[f"pkg/sub/_chain{EXT}"]).images[0]
    assert chain.rpaths == ("@loader_path",)  # the LC_RPATH inside the tree is kept, the absolute one dropped
    assert next(d.name for d in parse(files[f"pkg/_ext{EXT}"]).images[0].needed).startswith(
        "@loader_path/../demo.libs/libhelper-")
    assert (out / "dynawheel-vendored.json").is_file()


def test_hermetic_lib_paths_give_the_same_bytes(build: Path, tmp_path: Path) -> None:
    """--no-system-paths: absolute install names and LC_RPATHs are not followed; -L finds every
    library by its leaf name. Same inputs, same output, byte for byte."""
    tree = stage(build, tmp_path / "stage", "_ext", "_chain", "_fat")
    libs = [x for d in ("", "a", "b", "c", "fat") for x in ("-L", str(build / d))]
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    assert run_cli("repair", tree, "-o", out1, "--name", "demo", "--no-system-paths", *libs).code == 0
    check_repaired(out1, build)
    assert run_cli("repair", tree, "-o", out2, "--name", "demo", "-L", build / "c", env=NO_DYLD_ENV).code == 0
    assert hash_tree(out1) == hash_tree(out2)
    # without -L the hermetic run cannot find them: the error names every missing one at once
    done = run_cli("repair", tree, "-o", tmp_path / "o3", "--name", "demo", "--no-system-paths")
    assert done.code == 1 and "Traceback" not in done.err
    for lib in ("libhelper.dylib", "@rpath/libchain_a.dylib", "@rpath/libuhelper.dylib"):
        assert lib in done.err
    assert not (tmp_path / "o3").exists()


def test_thin_per_arch_copies_are_refused(build: Path, tmp_path: Path) -> None:
    """A universal extension whose slices find libuhelper in two thin per-arch files: one load
    command cannot name both; a clear error, nothing written."""
    tree = stage(build, tmp_path / "stage", "_fat")
    before = hash_tree(tree)
    done = run_cli("repair", tree, "-o", tmp_path / "out", "--name", "demo", "--no-system-paths",
                   "-L", build / "thin/x86_64", "-L", build / "thin/arm64")
    assert done.code == 1 and "Traceback" not in done.err, done.err
    assert "'@rpath/libuhelper.dylib' needed by 'pkg/_fat.cpython-311-darwin.so' is a different file per architecture" \
        in done.err and "llvm-lipo -create" in done.err
    assert hash_tree(tree) == before and not (tmp_path / "out").exists()


def test_repairing_the_output_again_changes_nothing(build: Path, tmp_path: Path) -> None:
    tree = stage(build, tmp_path / "stage", "_ext", "_chain", "_fat")
    out = tmp_path / "out"
    assert run_cli("repair", tree, "-o", out, "--name", "demo", "-L", build / "c", env=NO_DYLD_ENV).code == 0
    first = hash_tree(out)
    done = run_cli("repair", out, "--in-place", "--name", "demo", "--no-system-paths")
    assert done.code == 0, done.err
    assert hash_tree(out) == first


# ---- wheels and tags -------------------------------------------------------------------------

@pytest.mark.parametrize(("names", "target", "platform"), [
    (("_ext", "_chain", "_fat"), None, "macosx_13_0_arm64"),  # arm64 common to all; libchain_c needs 13.0
    (("_ext", "_chain", "_fat"), "14.2", "macosx_14_0_arm64"),
    (("_fat",), None, "macosx_10_9_universal2"),  # x86_64 10.9; arm64's 11.0 is no constraint on arm64
    (("_fat",), "10.13", "macosx_10_13_universal2"),
    (("_fat",), "12.0", "macosx_12_0_universal2"),
])
def test_wheel_is_repaired_and_retagged(build: Path, tmp_path: Path, names: tuple[str, ...], target: str | None,
                                        platform: str) -> None:
    wheel = make_wheel(stage(build, tmp_path / "stage", *names), tmp_path / "in", "macosx_10_9_x86_64")
    before = sha(wheel)
    env = {"MACOSX_DEPLOYMENT_TARGET": target or ""}  # "" (CI may set it): no target
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", "-L", build / "c", env={**NO_DYLD_ENV, **env})
    assert done.code == 0, done.err
    assert sha(wheel) == before
    out = only_wheel(tmp_path / "wh")
    assert out.name == f"demo-1.0-cp311-cp311-{platform}.whl"
    with zipfile.ZipFile(out) as zf:
        assert f"Tag: cp311-cp311-{platform}" in zf.read("demo-1.0.dist-info/WHEEL").decode().splitlines()
    check_repaired(extract(out, tmp_path / "x"), build)
    # repairing the repaired wheel gives the same wheel, byte for byte (hermetic: it needs nothing outside)
    done = run_cli("repair", out, "-w", tmp_path / "wh2", "--no-system-paths", env=env)
    assert done.code == 0, done.err
    assert only_wheel(tmp_path / "wh2").read_bytes() == out.read_bytes()


def test_bad_deployment_target_is_a_user_error(build: Path, tmp_path: Path) -> None:
    wheel = make_wheel(stage(build, tmp_path / "stage", "_fat"), tmp_path / "in", "macosx_10_9_x86_64")
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", env={"MACOSX_DEPLOYMENT_TARGET": "eleven"})
    assert done.code == 1 and "Traceback" not in done.err
    assert "MACOSX_DEPLOYMENT_TARGET must look like 10.13 or 12.0, got 'eleven'" in done.err, done.err
    assert not list((tmp_path / "wh").glob("*.whl"))


# ---- not enough header space -----------------------------------------------------------------

def tight_stage(tmp_path: Path) -> tuple[Path, Path]:
    """fixtures/macho/bin: two lld-default (32 free bytes) binaries in two directories sharing
    libhelper.dylib, which lives in a build directory: the shared-directory install name is too long."""
    tree, build = tmp_path / "stage", tmp_path / "build"
    (tree / "pkg/sub").mkdir(parents=True)
    build.mkdir()
    shutil.copyfile(BIN / f"pkg/_ext{EXT}", tree / f"pkg/_ext{EXT}")
    shutil.copyfile(BIN / "header/libtight.dylib", tree / "pkg/sub/libtight.dylib")
    shutil.copyfile(BIN / "libs/libhelper.dylib", build / "libhelper.dylib")
    return tree, build


def test_tight_header_fails_cleanly(tmp_path: Path) -> None:
    tree, build = tight_stage(tmp_path)
    before = {**hash_tree(tree), **hash_tree(build)}
    args = ("--name", "tight_header_demo", "--no-system-paths", "-L", build)
    done = run_cli("repair", tree, "-o", tmp_path / "out", *args)
    assert done.code == 1 and "Traceback" not in done.err, done.err
    assert "header too small" in done.err and "-headerpad_max_install_names" in done.err, done.err
    assert f"'pkg/_ext{EXT}'" in done.err, done.err  # the tree path, not a private temporary copy
    assert not (tmp_path / "out").exists()
    done = run_cli("repair", tree, "--in-place", *args)
    assert done.code == 1 and "header too small" in done.err
    wheel = make_wheel(tree, tmp_path / "in", "macosx_11_0_arm64", "tight_header_demo")
    before_wheel = sha(wheel)
    done = run_cli("repair", wheel, "-w", tmp_path / "wh", *args)
    assert done.code == 1 and "header too small" in done.err
    assert not list((tmp_path / "wh").iterdir()) if (tmp_path / "wh").exists() else True
    assert {**hash_tree(tree), **hash_tree(build)} == before and sha(wheel) == before_wheel
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary leftovers
    opts = RepairOptions(search=SearchPaths(extra=(str(build),), use_system=False))
    with pytest.raises(HeaderSpaceError, match="header too small"):
        repair_tree(tree, tmp_path / "out2", opts, dist="tight_header_demo")
    assert not (tmp_path / "out2").exists()
    # the same tree with a short distribution name fits (32 free bytes are enough there) and verifies
    assert run_cli("repair", tree, "-o", tmp_path / "ok", "--name", "t", "--no-system-paths", "-L", build).code == 0
    check_repaired(tmp_path / "ok", build)


def test_in_tree_library_reached_through_a_dropped_rpath(build: Path, tmp_path: Path) -> None:
    """The staging dir was the install prefix: an absolute LC_RPATH points INTO the tree. It is
    dropped (it will not exist on the user's machine), so the @rpath dependency it served must
    become @loader_path-relative; the library already in the tree keeps its name."""
    b = Builder(tmp_path / "b")
    tree = tmp_path / "stage"
    libs = tree / "pkg" / ".dylibs"
    inner = b.link("arm64", libs / "libinside.dylib", "-dylib", "-install_name", "@rpath/libinside.dylib",
                   "-headerpad_max_install_names", b.cc("arm64", SRC / "helper.c"))
    b.link("arm64", tree / "pkg" / f"_ext{EXT}", "-bundle", "-headerpad_max_install_names", "-rpath", str(libs),
           b.cc("arm64", SRC / "ext.c"), inner)
    out = tmp_path / "out"
    done = run_cli("repair", tree, "-o", out, "--name", "demo", env=NO_DYLD_ENV)  # the absolute LC_RPATH is followed
    assert done.code == 0, done.err
    check_repaired(out, build)
    ext = parse(out / "pkg" / f"_ext{EXT}").images[0]
    assert ext.rpaths == () and ext.needed[0].name == "@loader_path/.dylibs/libinside.dylib"
    assert sorted(machos(out)) == ["pkg/.dylibs/libinside.dylib", f"pkg/_ext{EXT}"]
