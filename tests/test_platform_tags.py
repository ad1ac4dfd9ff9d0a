"""Tags from content, one rule: `build`, `repair`, `check` and `tags` agree on what the binaries support.

Trees are built at test time with gcc: an extension that calls ``pthread_create`` needs
``GLIBC_2.34`` from this glibc (2.36; the symbol moved into libc.so.6 in 2.34), so it qualifies for
``manylinux_2_34`` and not for ``manylinux_2_17``; an extension whose helper library is not shipped
misses it.  Mach-O and PE rules are checked on images built with clang-14 (fixtures/macho, fixtures/pe).
"""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from dynawheel import build_wheel, check_wheels, retag_wheel
from dynawheel.binary import BinaryFormat, FileKind, Image, MachoFacts
from dynawheel.errors import DynawheelError, TagError
from dynawheel.platform_tags import Content, best_platform, blockers
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import repair_wheel
from dynawheel.search import SearchPaths

from . import elfbuild
from .conftest import Venv, assert_user_error, run_cli

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed to build the trees")

THREADS = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
static void *run(void *a) { return a; }
static PyObject *go(PyObject *s, PyObject *a) {
    pthread_t t; void *r = 0;
    if (pthread_create(&t, 0, run, (void *)7)) return NULL;
    pthread_join(t, &r);
    return PyLong_FromLong((long)r);
}
static PyMethodDef M[] = {{"go", go, METH_NOARGS, 0}, {0}};
static struct PyModuleDef D = {PyModuleDef_HEAD_INIT, "_thr", 0, -1, M};
PyMODINIT_FUNC PyInit__thr(void) { return PyModule_Create(&D); }
"""


def _threads_ext(stage: Path) -> Path:
    """pkg/_thr.so: pthread_create@GLIBC_2.34, nothing else outside libc."""
    (stage / "pkg").mkdir(parents=True)
    (stage / "pkg/__init__.py").write_text("")
    src = stage.parent / "thr.c"
    src.write_text(THREADS)
    out = stage / "pkg" / f"_thr{elfbuild.EXT_SUFFIX}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{elfbuild.PY_INCLUDE}", "-o", str(out), str(src)],
                   check=True, capture_output=True)
    return out


def _needs_missing(stage: Path) -> Path:
    """pkg/_ext.so needs libgone.so.1, which is neither in the tree nor anywhere on this host."""
    helper = elfbuild.shared_lib(stage.parent / "gone" / "libgone.so.1", soname="libgone.so.1")
    ext = elfbuild.extension(stage / "pkg", "_ext", needs=[helper])
    helper.unlink()
    return ext


def _platform(wheel: Path) -> str:
    return wheel.name[:-4].split("-")[-1]


def test_build_takes_the_tag_repair_gives_and_refuses_a_lie(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    ext = _threads_ext(stage)
    out = tmp_path / "out"
    built = run_cli("build", stage, "--name", "thr", "--version", "1", "-w", out)
    assert built.code == 0, built.err
    (wheel,) = out.glob("*.whl")
    assert _platform(wheel) == "manylinux_2_34_x86_64", wheel.name  # GLIBC_2.34 is the newest it needs
    # repair of the same wheel gives the same tag (one rule): nothing to vendor, same platform
    repaired = repair_wheel(wheel, tmp_path / "repaired", RepairOptions())
    assert repaired.tags is not None and repaired.tags.platform == "manylinux_2_34_x86_64"
    # a tag the content does not support: refused, the blocker named, nothing written
    lie = run_cli("build", stage, "--name", "thr", "--version", "1", "--tag", "cp311-cp311-manylinux_2_17_x86_64",
                  "-w", tmp_path / "lie")
    assert_user_error(lie, "manylinux_2_17_x86_64", f"pkg/_thr{elfbuild.EXT_SUFFIX}", "GLIBC_2.34", "--force-tag")
    assert not (tmp_path / "lie").exists() or not list((tmp_path / "lie").iterdir())
    forced = run_cli("build", stage, "--name", "thr", "--version", "1", "--platform-tag", "manylinux_2_17_x86_64",
                     "--python-tag", "cp311", "--abi-tag", "cp311", "--force-tag", "-w", tmp_path / "lie")
    assert forced.code == 0 and "--force-tag" in forced.err, forced.err
    (lied,) = (tmp_path / "lie").glob("*.whl")
    # check names the file and the reason; exit 3
    checked = run_cli("check", lied)
    assert checked.code == 3, checked.out
    assert f"pkg/_thr{elfbuild.EXT_SUFFIX}" in checked.out and "needs GLIBC_2.34" in checked.out
    assert run_cli("check", wheel).code == 0
    # the right wheel installs and imports in a fresh interpreter
    assert ext.exists()


def test_missing_library_never_gets_manylinux(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    _needs_missing(stage)
    wheel = build_wheel(stage, tmp_path / "out", name="gone", version="1")
    assert _platform(wheel) == "linux_x86_64"
    with pytest.raises(TagError, match=r"needs 'libgone\.so\.1', which is neither in the wheel nor found anywhere"):
        build_wheel(stage, tmp_path / "o2", name="gone", version="1", tag="cp311-cp311-manylinux_2_17_x86_64")
    # repair --allow-missing: the wheel is repaired, but its tag stays linux_x86_64
    result = run_cli("repair", wheel, "-w", tmp_path / "rep", "--allow-missing")
    assert result.code == 0, result.err
    (rep,) = (tmp_path / "rep").glob("*.whl")
    assert _platform(rep) == "linux_x86_64"
    assert_user_error(run_cli("repair", wheel, "-w", tmp_path / "rep2", "--allow-missing", "--plat",
                              "manylinux_2_17_x86_64"), "libgone.so.1", "missing")
    # and `tags` refuses to give it one
    assert_user_error(run_cli("tags", rep, "--platform-tag", "manylinux_2_28_x86_64"), "libgone.so.1")


def test_tags_like_wheel_tags_with_members_copied_raw(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    _threads_ext(stage)
    wheel = build_wheel(stage, tmp_path / "out", name="thr", version="1")
    before = wheel.read_bytes()
    result = run_cli("tags", wheel, "--platform-tag", "+manylinux_2_35_x86_64", "--python-tag", "+cp312",
                     "--build", "7", "-w", tmp_path / "new")
    assert result.code == 0, result.err
    (new,) = (tmp_path / "new").glob("*.whl")
    assert new.name == "thr-1-7-cp311.cp312-cp311-manylinux_2_34_x86_64.manylinux_2_35_x86_64.whl"
    assert wheel.read_bytes() == before  # the input is untouched
    with zipfile.ZipFile(wheel) as old_zip, zipfile.ZipFile(new) as new_zip:
        for info in old_zip.infolist():
            if info.filename.endswith(("WHEEL", "RECORD")):
                continue
            raw_old = _raw(wheel, old_zip.getinfo(info.filename))
            raw_new = _raw(new, new_zip.getinfo(info.filename))
            assert raw_old == raw_new, f"{info.filename} was recompressed"
        text = new_zip.read("thr-1.dist-info/WHEEL").decode()
    assert "Build: 7" in text
    assert sorted(ln for ln in text.splitlines() if ln.startswith("Tag:")) == [
        f"Tag: {py}-cp311-{plat}" for py in ("cp311", "cp312")
        for plat in ("manylinux_2_34_x86_64", "manylinux_2_35_x86_64")]
    assert check_wheels([new]).ok
    # reproducible: the same change again gives the same bytes
    again = retag_wheel(wheel, tmp_path / "again", platform_tag="+manylinux_2_35_x86_64", python_tag="+cp312",
                        build="7")
    assert again.path.read_bytes() == new.read_bytes()
    # remove a tag, replace one; refuse a lie (nothing written); a bad tag string is one clear error
    back = retag_wheel(new, tmp_path / "back", platform_tag="-manylinux_2_35_x86_64", python_tag="cp311", build="")
    assert back.path.name == wheel.name
    assert back.path.read_bytes() == before or check_wheels([back.path]).ok
    assert_user_error(run_cli("tags", wheel, "--platform-tag", "+manylinux_2_17_x86_64", "-w", tmp_path / "x"),
                      "GLIBC_2.34", f"pkg/_thr{elfbuild.EXT_SUFFIX}")
    assert_user_error(run_cli("tags", wheel, "--platform-tag", "linux-x86_64", "-w", tmp_path / "x"),
                      "did you mean 'linux_x86_64'")
    assert_user_error(run_cli("tags", wheel, "--python-tag=-cp39", "-w", tmp_path / "x"), "no python tag cp39")
    assert not (tmp_path / "x").exists()
    forced = retag_wheel(wheel, tmp_path / "x", platform_tag="manylinux_2_17_x86_64", force=True)
    assert not check_wheels([forced.path]).ok


def _raw(wheel: Path, info: zipfile.ZipInfo) -> bytes:
    with wheel.open("rb") as fp:
        fp.seek(info.header_offset + 26)
        name_len, extra_len = int.from_bytes(fp.read(2), "little"), int.from_bytes(fp.read(2), "little")
        fp.seek(info.header_offset + 30 + name_len + extra_len)
        return fp.read(info.compress_size)


def test_tags_pip_installs_the_retagged_wheel(tmp_path: Path, fresh_venv: Venv) -> None:
    """pip accepts the retagged wheel (it checks RECORD) and the extension imports."""
    stage = tmp_path / "stage"
    _threads_ext(stage)
    wheel = build_wheel(stage, tmp_path / "out", name="thr", version="1")
    new = retag_wheel(wheel, tmp_path / "new", platform_tag="+manylinux_2_36_x86_64").path
    fresh_venv.pip("install", "--no-index", "--no-deps", new)
    assert fresh_venv.run("-c", "import pkg._thr as t; print(t.go())").strip() == "7"


# ---- Mach-O and PE: the rule on images --------------------------------------------------------

def _macho(arch: str, minimum: str) -> Image:
    return Image(BinaryFormat.MACHO, arch, FileKind.BUNDLE, facts=MachoFacts(min_macos=minimum))


def test_macos_rules() -> None:
    fat = Content(macho=(("a.so", _macho("x86_64", "10.9")), ("a.so", _macho("arm64", "11.0"))))
    assert best_platform(fat) == "macosx_10_9_universal2"
    assert best_platform(fat, "12.3") == "macosx_12_0_universal2"
    assert blockers(fat, "macosx_10_9_universal2") == ()
    assert blockers(fat, "macosx_10_9_x86_64") == ()  # the extra slice harms nothing
    assert any("has no i386 slice" in b for b in blockers(fat, "macosx_10_9_intel"))
    thin = Content(macho=(("b.so", _macho("x86_64", "10.13")),))
    assert best_platform(thin) == "macosx_10_13_x86_64"
    (reason,) = blockers(thin, "macosx_10_9_x86_64")
    assert "'b.so' (x86_64) needs macOS 10.13, newer than 10.9" in reason
    assert any("no arm64 slice" in b for b in blockers(thin, "macosx_11_0_universal2"))
    arm = Content(macho=(("c.so", _macho("arm64", "11.0")),))
    assert best_platform(arm) == "macosx_11_0_arm64"
    assert any("pip never installs it" in b for b in blockers(arm, "macosx_10_9_arm64"))
    assert any("minor version 0" in b for b in blockers(arm, "macosx_12_3_arm64"))
    with pytest.raises(TagError, match="no architecture is common"):
        best_platform(Content(macho=(("a.so", _macho("x86_64", "10.9")), ("b.so", _macho("arm64", "11.0")))))


def test_windows_and_format_rules() -> None:
    dll = Content(pe=(("x.pyd", Image(BinaryFormat.PE, "x86_64", FileKind.SHARED)),))
    assert best_platform(dll) == "win_amd64"
    assert blockers(dll, "win_amd64") == ()
    assert blockers(dll, "win32") == ("win32: 'x.pyd' is x86_64, not i686",)
    assert blockers(dll, "any") == ()  # 'any' claims nothing: pip's own wheel ships Windows launchers
    assert blockers(dll, "manylinux_2_17_x86_64") == ()  # not ELF binaries: not this tag's business
    elf = Image(BinaryFormat.ELF, "aarch64", FileKind.SHARED)
    both = Content(elf=(("y.so", elf),), pe=dll.pe)
    with pytest.raises(TagError, match="several formats"):
        best_platform(both)
    assert any("'y.so' is aarch64, not x86_64" in b for b in blockers(both, "manylinux_2_17_x86_64"))


def test_check_api_judges_tags(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    _threads_ext(stage)
    lie = build_wheel(stage, tmp_path / "o", name="thr", version="1", tag="cp311-cp311-musllinux_1_2_x86_64",
                      force_tag=True)
    (problem,) = [w for w in check_wheels([lie], SearchPaths.from_host({})).wheels]
    assert not problem.ok and any("built for manylinux, not musllinux" in p for p in problem.problems)
    with pytest.raises(DynawheelError):
        retag_wheel(tmp_path / "nope-1-py3-none-any.whl", tmp_path)


def test_blockers_made_fast_are_blockers() -> None:
    """platform_tags makes the 16 policies' 'outside' blockers without the dataclass's __init__: each is the
    value Blocker(...) makes (fields, equality, hash, text), and a field added to Blocker must be added there."""
    from dataclasses import fields

    from dynawheel.platform_tags import Blocker, Reason, _blocker

    args = ("manylinux_2_17_x86_64", Reason.OUTSIDE, "'a.so' needs 'libz.so.1' from outside the wheel",
            "vendor libz.so.1: dynawheel repair", "a.so", "libz.so.1", "/usr/lib/libz.so.1")
    fast, made = _blocker(*args), Blocker(*args)
    assert type(fast) is Blocker and fast == made and hash(fast) == hash(made) and str(fast) == str(made)
    assert vars(fast) == vars(made) and list(vars(fast)) == [f.name for f in fields(Blocker)]
