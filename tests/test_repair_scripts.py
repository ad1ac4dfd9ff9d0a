"""Executables in ``<name>-<ver>.data/scripts/``: their libraries are found from where they are installed.

Installers put ``.data/scripts/*`` into the scheme's scripts directory (``<venv>/bin``, ``~/.local/bin``,
``<prefix>/bin``, ``<target>/bin``), whose place relative to site-packages differs by scheme, so a
repaired executable gets its own copies of its libraries beside it (``$ORIGIN``), including a library the
package itself ships.  Proven with real binaries (gcc), real wheels installed by real pip (a venv, ``--user``
with a temporary HOME, ``--prefix``, ``--target``) and uv, the libraries' original copies then deleted,
and the installed program run by the real ld.so: it prints the lines of /proc/self/maps of its libraries.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynawheel.analysis.resolve import APART_FLAG

from . import elfbuild
from .conftest import make_venv, run_cli
from .repairkit import dynamic, members, only_wheel

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc(), reason="needs gcc to build the executable")

SCRIPTS = "demo-1.0.data/scripts"
MAIN = r"""
#include <stdio.h>
#include <string.h>
extern int libhelper(void);
extern int libpk(void);
int main(void) {
    char line[4096];
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps)) {
        char *path = strchr(line, '/');
        if (path && (strstr(path, "libhelper") || strstr(path, "libpk"))) fputs(path, stdout);
    }
    printf("value=%d\n", libhelper() + libpk());
    return 0;
}
"""


def stage_demo(root: Path) -> tuple[Path, Path]:
    """(stage, build): demo/_ext (needs libhelper), demo/libpk.so, and the program demo-tool in
    .data/scripts needing libhelper.so.1 (from build/, outside the stage) and the package's libpk.so
    (through a run path that reaches it only inside the stage)."""
    build, stage = root / "build", root / "stage"
    helper = elfbuild.shared_lib(build / "libhelper.so.1", soname="libhelper.so.1")
    pk = elfbuild.shared_lib(stage / "demo" / "libpk.so", soname="libpk.so")
    (stage / "demo" / "libpk.so.c").unlink()  # its source, written beside it
    elfbuild.extension(stage / "demo", "_ext", needs=[helper])
    (stage / "demo" / "__init__.py").write_text("")
    tool = stage / SCRIPTS / "demo-tool"
    tool.parent.mkdir(parents=True)
    source = build / "main.c"
    source.write_text(MAIN)
    subprocess.run(["gcc", "-O1", "-o", str(tool), str(source), f"-L{build}", "-l:libhelper.so.1", f"-L{pk.parent}",
                    "-l:libpk.so", "-Wl,--enable-new-dtags,-rpath,$ORIGIN/../../demo"], check=True)
    return stage, build


def tool_maps(program: Path, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """(paths of the libhelper/libpk files mapped by the running program, its value line)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    proc = subprocess.run([str(program)], capture_output=True, text=True, env={**clean, **(env or {})}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    return {line.strip() for line in lines[:-1]}, lines[-1]


def assert_own_copies(bin_dir: Path, mapped: set[str]) -> None:
    """The program mapped exactly one libhelper and one libpk, both its own copies beside it."""
    names = {Path(p).name for p in mapped}
    assert {Path(p).parent for p in mapped} == {bin_dir.resolve()}, mapped
    assert len(names) == 2 and any(re.fullmatch(r"libhelper-[0-9a-f]{8}\.so\.1", n) for n in names) and \
        any(re.fullmatch(r"libpk-[0-9a-f]{8}\.so", n) for n in names), names


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The repaired wheel two ways (repair of the built wheel; repair of the stage, then built), the
    installations of the first, made while build/ exists; then build/ and the stage are deleted."""
    root = tmp_path_factory.mktemp("scripts")
    stage, build = stage_demo(root)
    assert run_cli("build", stage, "--name", "demo", "--version", "1.0", "-w", root / "dist").code == 0
    fixed = run_cli("repair", only_wheel(root / "dist"), "-L", build, "-w", root / "wheelhouse")
    assert fixed.code == 0, fixed.err
    out = run_cli("repair", stage, "-L", build, "-o", root / "repaired-stage", "--name", "demo")
    assert out.code == 0, out.err
    assert run_cli("build", root / "repaired-stage", "--name", "demo", "--version", "1.0",
                   "-w", root / "dist2").code == 0
    shutil.rmtree(build)
    shutil.rmtree(stage)
    return {"wheel": only_wheel(root / "wheelhouse"), "stage": only_wheel(root / "dist2"), "root": root}


def test_the_program_and_its_copies_are_in_the_scripts_directory(wheels: dict[str, Path]) -> None:
    for wheel in (wheels["wheel"], wheels["stage"]):
        names = members(wheel)
        scripts = sorted(n for n in names if n.startswith(SCRIPTS + "/"))
        assert len(scripts) == 3, scripts  # demo-tool, libhelper-*.so.1, libpk-*.so
        package = [n for n in names if n.startswith("demo/libhelper-")]
        assert len(package) == 1 and package[0].rsplit("/", 1)[1] not in {s.rsplit("/", 1)[1] for s in scripts}


def test_the_stage_and_the_wheel_repair_alike(wheels: dict[str, Path], tmp_path: Path) -> None:
    trees = []
    for key in ("wheel", "stage"):
        shutil.unpack_archive(wheels[key], tmp_path / key, "zip")
        trees.append(sorted(p.relative_to(tmp_path / key).as_posix() for p in (tmp_path / key).rglob("*")
                            if p.is_file() and ".dist-info" not in p.as_posix()))
    assert trees[0] == trees[1]
    tool = dynamic(tmp_path / "wheel" / SCRIPTS / "demo-tool")
    assert tool.runpath == ("$ORIGIN",) and tool.rpath is None  # the stage-only '$ORIGIN/../../demo' is gone


def test_repairing_the_repaired_wheel_changes_nothing(wheels: dict[str, Path], tmp_path: Path) -> None:
    again = run_cli("repair", wheels["wheel"], "-w", tmp_path)  # build/ is gone: everything is in the wheel now
    assert again.code == 0, again.err
    assert only_wheel(tmp_path).read_bytes() == wheels["wheel"].read_bytes()


def _edges(wheel: Path, dependent: str, code: int = 0) -> list[dict[str, str]]:
    shown = run_cli("show", "--json", wheel)
    assert shown.code == code, shown.err
    report = json.loads(shown.out)
    return [e for w in report["walks"] for e in w["edges"] if e["dependent"] == dependent]


def test_show_resolves_the_repaired_program_in_its_own_directory(wheels: dict[str, Path]) -> None:
    edges = _edges(wheels["wheel"], f"{SCRIPTS}/demo-tool")
    ours = {e["request"]: e for e in edges if e["request"].startswith(("libhelper", "libpk"))}
    assert len(ours) == 2 and all(e["status"] == "in_tree" and e["flag"] is None for e in ours.values()), edges
    assert {posixpath.dirname(e["hit"]) for e in ours.values()} == {SCRIPTS}


def test_show_flags_a_library_the_program_finds_only_inside_the_wheel(wheels: dict[str, Path]) -> None:
    """Before the repair, demo-tool's '$ORIGIN/../../demo' finds the package's libpk.so in the wheel:
    installed, bin/ and site-packages are apart.  show says so on that edge."""
    edges = _edges(only_wheel(wheels["root"] / "dist"), f"{SCRIPTS}/demo-tool", 3)  # 3: libhelper is missing
    pk = [e for e in edges if e["request"] == "libpk.so"]
    assert len(pk) == 1 and pk[0]["status"] == "in_tree" and pk[0]["hit"] == "demo/libpk.so", edges
    assert pk[0]["flag"] == APART_FLAG
    text = run_cli("show", only_wheel(wheels["root"] / "dist")).out
    assert f"libpk.so => demo/libpk.so [in tree]  ! {APART_FLAG}" in text, text
    assert "summary: 2 missing, 1 installed apart, 0 external" in text, text  # libhelper: tool and _ext


@pytest.mark.slow
@pytest.mark.parametrize("source", ["wheel", "stage"])
def test_installed_program_loads_its_own_copies_in_a_venv(wheels: dict[str, Path], source: str, tmp_path: Path) -> None:
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--no-deps", wheels[source])
    mapped, value = tool_maps(venv.root / "bin" / "demo-tool")
    assert_own_copies(venv.root / "bin", mapped)
    assert value == "value=2"
    probe = venv.run("-c", "import demo._ext as e; print(e.value()); "
                     "print(*sorted({l.split()[-1] for l in open('/proc/self/maps') if 'libhelper' in l}))")
    value_line, libs = probe.splitlines()
    assert value_line == "1" and Path(libs).parent == (venv.site_packages / "demo").resolve()  # the package's copy


def pip_user_install(wheel: Path, tmp_path: Path) -> Path:
    """`pip install --user` by the interpreter this venv was made from (a venv has no user site), with a
    temporary HOME and PYTHONUSERBASE: the user base it installed into."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    home, userbase = tmp_path / "home", tmp_path / "userbase"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "PYTHONUSERBASE": str(userbase), "PIP_BREAK_SYSTEM_PACKAGES": "1"}
    user = subprocess.run([str(base), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                           "--no-index", "--no-deps", "--user", str(wheel)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert user.returncode == 0, user.stderr
    return userbase


@pytest.mark.slow
def test_installed_program_loads_its_own_copies_after_pip_user_prefix_and_target(wheels: dict[str, Path],
                                                                                  tmp_path: Path) -> None:
    userbase = pip_user_install(wheels["wheel"], tmp_path)
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--no-deps", "--prefix", tmp_path / "prefix", wheels["wheel"])
    venv.pip("install", "--no-index", "--no-deps", "--target", tmp_path / "target", wheels["wheel"])
    for bin_dir in (userbase / "bin", tmp_path / "prefix" / "bin", tmp_path / "target" / "bin"):
        mapped, value = tool_maps(bin_dir / "demo-tool")
        assert_own_copies(bin_dir, mapped)
        assert value == "value=2"


@pytest.mark.slow
def test_uv_installs_the_program_and_its_copies(wheels: dict[str, Path], tmp_path: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (.ci/pip-packages.txt installs it)")
    venv = make_venv(tmp_path / "venv", with_pip=False)
    subprocess.run([uv, "pip", "install", "--offline", "--no-deps", "--python", str(venv.python),
                    str(wheels["wheel"])], check=True, capture_output=True, timeout=300)
    mapped, value = tool_maps(venv.root / "bin" / "demo-tool")
    assert_own_copies(venv.root / "bin", mapped)
    assert value == "value=2"


@pytest.mark.slow
def test_auditwheels_wrapper_misses_user_and_prefix_installs(tmp_path: Path) -> None:
    """The README's claim about the incumbent, checked: auditwheel moves the program into site-packages and
    leaves a '#!python' script that execs it from sysconfig.get_path('platlib'), which is not where
    `pip install --user` or `--prefix` put it.  (If auditwheel changes this, this test fails: update the README.)"""
    auditwheel = shutil.which("auditwheel", path=str(Path(sys.executable).parent))
    if auditwheel is None:
        pytest.skip("auditwheel is not installed (.ci/pip-packages.txt installs it)")
    stage, build = stage_demo(tmp_path)
    assert run_cli("build", stage, "--name", "demo", "--version", "1.0", "-w", tmp_path / "dist").code == 0
    env = {**os.environ, "LD_LIBRARY_PATH": f"{build}:{stage / 'demo'}",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run([auditwheel, "repair", str(only_wheel(tmp_path / "dist")), "-w", str(tmp_path / "aw")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    wheel = only_wheel(tmp_path / "aw")
    assert f"{SCRIPTS}/demo-tool" in members(wheel) and "demo.scripts/demo-tool" in members(wheel)
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--no-deps", "--prefix", tmp_path / "prefix", wheel)
    for bin_dir in (tmp_path / "prefix" / "bin", pip_user_install(wheel, tmp_path) / "bin"):
        proc = subprocess.run([str(bin_dir / "demo-tool")], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONUSERBASE": str(tmp_path / "userbase")})
        assert proc.returncode != 0 and "FileNotFoundError" in proc.stderr, (bin_dir, proc.returncode, proc.stderr)
