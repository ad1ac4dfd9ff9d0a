"""dynawheel as a PEP 517 / PEP 660 build backend, driven by the real front ends.

The example project (examples/cmake-ext: a C extension built by CMake that links a library of its own and the
system's libyaml) is built with `pip wheel .`, `pip install .`, `python -m build` (sdist, then the wheel from the
sdist) and `uv build`, each in its own isolated build environment. Those environments install `dynawheel` as a
build requirement: the front ends get it, with its dependencies, from a local wheelhouse made once from this
checkout (`pip wheel ROOT`), and `--no-index` (PIP_NO_INDEX) so that nothing else named dynawheel can be
picked. Each wheel is installed into a fresh venv and imported with the system's libyaml hidden (a private
mount namespace binds an empty file over it); /proc/self/maps says which copies were mapped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, make_venv, pypi_problem, run_cli, unshare_problem

EXAMPLE = ROOT / "examples" / "cmake-ext"
IMPORT = ("import json, yamlgreet; print(json.dumps([yamlgreet.greet('you'), yamlgreet.keys('a: 1\\nb: [2]\\nc: x'), "
          "yamlgreet.__file__, sorted({l.split()[-1] for l in open('/proc/self/maps') if '.so' in l})]))")


def _system_lib(soname: str) -> Path | None:
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if (Path(d) / soname).exists():
            return Path(os.path.realpath(Path(d) / soname))
    return None


def _needs_tools() -> None:
    if shutil.which("cmake") is None or not Path("/usr/include/yaml.h").exists():
        pytest.skip("cmake and libyaml-dev are needed (.ci/apt-packages.txt)")


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dynawheel's own wheel and its dependencies' wheels: what a front end installs for `requires = ["dynawheel"]`."""
    out = tmp_path_factory.mktemp("wheelhouse")
    source = tmp_path_factory.mktemp("dynawheel-src")  # a copy: workers may build at once, and setuptools
    for name in ("pyproject.toml", "README.md"):        # writes build/ and *.egg-info into the source tree
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "dynawheel", source / "dynawheel", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "-w", str(out),
                           str(source)], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        problem = pypi_problem("setuptools", "building dynawheel's wheel needs its build and run dependencies")
        if problem:
            pytest.skip(problem)
        raise AssertionError(proc.stdout + proc.stderr)
    assert sorted(out.glob("dynawheel-*.whl")), sorted(p.name for p in out.iterdir())
    return out


def _env(wheelhouse: Path, *more: Path) -> dict[str, str]:
    """Front ends and their isolated build environments install from the wheelhouse only."""
    links = " ".join(str(p) for p in (wheelhouse, *more))
    return {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": links,
            "UV_NO_CACHE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(cmd: list[str | Path], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}"
    return proc


def _copy_example(tmp_path: Path) -> Path:
    project = tmp_path / "cmake-ext"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("build", "__pycache__", "*.so"))
    return project


def _import_hidden(tmp_path: Path, python: Path) -> tuple[str, list[str], str, list[str]]:
    """Import yamlgreet with the system's libyaml replaced by an empty file; (greeting, keys, file, maps)."""
    problem = unshare_problem()
    if problem:
        pytest.skip(problem)
    yaml_lib = _system_lib("libyaml-0.so.2")
    assert yaml_lib is not None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    def hidden(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind "$1" "{yaml_lib}" && shift && exec "$@"',
                               "sh", str(empty), *map(str, cmd)], capture_output=True, text=True, cwd="/", timeout=120)

    control = hidden(sys.executable, "-c", "import ctypes; ctypes.CDLL('libyaml-0.so.2')")
    assert control.returncode != 0, "the system's libyaml is not hidden"
    run = hidden(python, "-I", "-c", IMPORT)
    assert run.returncode == 0, run.stderr
    greeting, keys, file, maps = json.loads(run.stdout)
    return greeting, keys, file, maps


def _check_installed(tmp_path: Path, python: Path) -> None:
    greeting, keys, file, maps = _import_hidden(tmp_path, python)
    assert greeting.startswith("hello, you (libyaml 0."), greeting
    assert keys == ["a", "b", "c"]
    site = str(Path(file).parent.parent)
    assert "/site-packages" in site, file
    yaml_maps = [m for m in maps if "libyaml" in m]
    greet_maps = [m for m in maps if "libgreet" in m]
    assert yaml_maps and all(m.startswith(site + "/") for m in yaml_maps), maps  # the vendored copy, only it
    assert greet_maps and all(m.startswith(site + "/") for m in greet_maps), maps
    assert not any("/build/" in m or "cmake-ext" in m for m in maps), maps  # nothing from the build tree


def _check_wheel(wheel: Path) -> list[str]:
    assert "manylinux" in wheel.name, wheel.name
    names = zipfile.ZipFile(wheel).namelist()
    assert "yamlgreet/__init__.py" in names
    assert any(n.startswith("yamlgreet/_yamlgreet.cpython-") for n in names), names
    assert any("libyaml" in n for n in names) and any("libgreet" in n for n in names), names
    assert run_cli("check", wheel).code == 0
    return names


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
def test_pip_wheel_and_pip_install(tmp_path: Path, wheelhouse: Path) -> None:
    _needs_tools()
    project = _copy_example(tmp_path)
    env = _env(wheelhouse)
    proc = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", ".", "-w", tmp_path / "out"], env, project)
    assert "dynawheel: run step 2 of 2: cmake --build build" in proc.stdout + proc.stderr  # the steps' output shown
    assert "Linking C shared module _yamlgreet" in proc.stdout + proc.stderr
    _check_wheel(next((tmp_path / "out").glob("yamlgreet-*.whl")))
    venv = make_venv(tmp_path / "venv")
    _run([venv.python, "-m", "pip", "install", "."], env, project)
    _check_installed(tmp_path, venv.python)


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
def test_python_m_build_sdist_then_wheel_from_it(tmp_path: Path, wheelhouse: Path) -> None:
    _needs_tools()
    project = _copy_example(tmp_path)
    (project / "build").mkdir()  # a stale build directory stays out of the sdist
    (project / "build" / "junk.o").write_bytes(b"junk")
    _run([sys.executable, "-m", "build", "--outdir", tmp_path / "dist", "."], _env(wheelhouse), project)
    sdist = tmp_path / "dist" / "yamlgreet-1.0.0.tar.gz"
    with tarfile.open(sdist) as tar:
        members = sorted(tar.getnames())
    assert members == ["yamlgreet-1.0.0/CMakeLists.txt", "yamlgreet-1.0.0/PKG-INFO", "yamlgreet-1.0.0/README.md",
                       "yamlgreet-1.0.0/pyproject.toml", "yamlgreet-1.0.0/python/yamlgreet/__init__.py",
                       "yamlgreet-1.0.0/src/_yamlgreet.c", "yamlgreet-1.0.0/src/greet.c",
                       "yamlgreet-1.0.0/src/greet.h"]
    wheel = next((tmp_path / "dist").glob("yamlgreet-*.whl"))
    _install_and_check(tmp_path, wheel)


def _install_and_check(tmp_path: Path, wheel: Path) -> None:
    """The built wheel is complete, installs into a fresh venv and imports with libyaml hidden."""
    _check_wheel(wheel)
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", wheel)
    _check_installed(tmp_path, venv.python)


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
def test_uv_build(tmp_path: Path, wheelhouse: Path) -> None:
    _needs_tools()
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    project = _copy_example(tmp_path)
    _run([uv, "build", "--python", sys.executable, "--no-index", "--find-links", wheelhouse, "--out-dir",
          tmp_path / "dist", "."], _env(wheelhouse), project)
    assert (tmp_path / "dist" / "yamlgreet-1.0.0.tar.gz").exists()
    wheel = next((tmp_path / "dist").glob("yamlgreet-*.whl"))
    _install_and_check(tmp_path, wheel)


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
def test_editable_install_is_live(tmp_path: Path, wheelhouse: Path) -> None:
    _needs_tools()
    project = _copy_example(tmp_path)
    venv = make_venv(tmp_path / "venv")
    _run([venv.python, "-m", "pip", "install", "-e", "."], _env(wheelhouse), project)
    out = venv.run("-I", "-c", IMPORT, env={"PYTHONDONTWRITEBYTECODE": "1"})
    greeting, keys, file, _maps = json.loads(out.strip().splitlines()[-1])
    assert Path(file) == project / "python" / "yamlgreet" / "__init__.py"  # imported from the sources
    assert keys == ["a", "b", "c"] and greeting.startswith("hello, you")
    assert list((project / "python" / "yamlgreet").glob("_yamlgreet.cpython-*.so")), "the extension built into place"
    (project / "python" / "yamlgreet" / "extra.py").write_text("VALUE = 'live'\n")
    assert venv.run("-I", "-c", "import yamlgreet.extra as e; print(e.VALUE)").strip() == "live"


def _hook(project: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", f"import dynawheel.backend as b; {code}"], cwd=project,
                          capture_output=True, text=True, timeout=300)


def _tiny(tmp_path: Path, tool: str) -> Path:
    project = tmp_path / "tiny"
    (project / "tiny").mkdir(parents=True)
    (project / "tiny" / "__init__.py").write_text("X = 1\n")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["dynawheel"]\nbuild-backend = "dynawheel.backend"\n\n'
        '[project]\nname = "tiny"\nversion = "0.1"\n\n'
        f'[tool.dynawheel]\nadd = [{{ from = "tiny", to = "tiny" }}]\n{tool}\n')
    return project


def test_failing_step_is_named_with_its_exit_code(tmp_path: Path) -> None:
    project = _tiny(tmp_path, "run = [\"echo step-one-output\", \"echo to-stderr >&2; exit 7\", \"touch never\"]")
    proc = _hook(project, f"b.build_wheel({str(tmp_path / 'out')!r})")
    assert proc.returncode != 0
    assert "step-one-output" in proc.stdout and "to-stderr" in proc.stderr  # the steps' output is shown
    last = proc.stderr.strip().splitlines()[-1]
    assert last == ("dynawheel.errors.BuildStepError: [tool.dynawheel] run step 2 of 3 failed with exit code 7: "
                    f"'echo to-stderr >&2; exit 7' (in {str(project)!r})"), proc.stderr
    assert not (project / "never").exists() and not (tmp_path / "out").exists()


def test_steps_run_in_the_project_root_with_the_building_python(tmp_path: Path) -> None:
    project = _tiny(tmp_path, 'run = [["sh", "-c", "pwd > tiny/where.txt"], \'"$PYTHON" -c "import sys; '
                              'open(\\"tiny/py.txt\\", \\"w\\").write(sys.executable)"\']')
    other = tmp_path / "elsewhere"
    other.mkdir()
    proc = _hook(project, f"print(b.build_wheel({str(tmp_path / 'out')!r}))")
    assert proc.returncode == 0, proc.stderr
    wheel = tmp_path / "out" / proc.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("tiny/where.txt").decode().strip() == str(project)
        assert zf.read("tiny/py.txt").decode() == sys.executable


def test_metadata_hook_matches_the_wheel_and_sdist_is_reproducible(tmp_path: Path) -> None:
    project = _tiny(tmp_path, 'build-requires = ["cmake>=3.18", "ninja"]')
    (project / "tiny" / "__pycache__").mkdir()
    (project / "tiny" / "__pycache__" / "x.pyc").write_bytes(b"x")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref")
    code = (f"print(b.get_requires_for_build_wheel(), b.get_requires_for_build_editable(), "
            f"b.get_requires_for_build_sdist()); print(b.prepare_metadata_for_build_wheel({str(tmp_path / 'md')!r})); "
            f"print(b.build_wheel({str(tmp_path / 'w')!r})); print(b.build_sdist({str(tmp_path / 's1')!r}))")
    proc = _hook(project, code)
    assert proc.returncode == 0, proc.stderr
    requires, dist_info, wheel, sdist = proc.stdout.strip().splitlines()[-4:]
    assert requires == "['cmake>=3.18', 'ninja'] ['cmake>=3.18', 'ninja'] []"
    assert dist_info == "tiny-0.1.dist-info"
    with zipfile.ZipFile(tmp_path / "w" / wheel) as zf:
        assert zf.read("tiny-0.1.dist-info/METADATA") == (tmp_path / "md" / dist_info / "METADATA").read_bytes()
    os.utime(project / "tiny" / "__init__.py", (1e9, 1e9))  # other times, same content: the same sdist
    again = _hook(project, f"print(b.build_sdist({str(tmp_path / 's2')!r}))")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "s1" / sdist).read_bytes() == (tmp_path / "s2" / sdist).read_bytes()
    with tarfile.open(tmp_path / "s1" / sdist) as tar:
        assert tar.getnames() == ["tiny-0.1/PKG-INFO", "tiny-0.1/pyproject.toml", "tiny-0.1/tiny/__init__.py"]
        assert {(m.uid, m.gid, m.mtime, m.mode) for m in tar.getmembers()} == {(0, 0, 315532800, 0o644)}


@pytest.mark.network  # downloads from PyPI
@pytest.mark.slow
def test_build_requires_are_installed_by_the_front_end(tmp_path: Path, wheelhouse: Path) -> None:
    helper = tmp_path / "helper"
    (helper / "buildhelper").mkdir(parents=True)
    (helper / "buildhelper" / "__init__.py").write_text("WORD = 'from-a-build-requirement'\n")
    extra = tmp_path / "extra"
    assert run_cli("build", helper, "--name", "buildhelper", "--version", "1.0", "-w", extra).code == 0
    project = _tiny(tmp_path, 'build-requires = ["buildhelper"]\nrun = [\'"$PYTHON" -c "import buildhelper; '
                              'open(\\"tiny/word.txt\\", \\"w\\").write(buildhelper.WORD)"\']')
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", ".", "-w", tmp_path / "out"], _env(wheelhouse, extra),
         project)
    with zipfile.ZipFile(next((tmp_path / "out").glob("tiny-*.whl"))) as zf:
        assert zf.read("tiny/word.txt") == b"from-a-build-requirement"
