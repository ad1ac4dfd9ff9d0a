"""`dynawheel build`: metadata sources, tags, .data, copy steps, reproducibility, bad input."""

from __future__ import annotations

import email.parser
import hashlib
import os
import shutil
import struct
import subprocess
import zipfile
from pathlib import Path

import pytest

from dynawheel import Stage, build_wheel
from dynawheel.errors import DynawheelError, MetadataError, StageError, TagError
from dynawheel.platforms.macho import BACKEND
from dynawheel.wheel.check import check_wheels

from .conftest import FIXTURES, assert_user_error, run_cli


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def meta(wheel: Path, name: str = "METADATA") -> email.message.Message:
    data = next(v for k, v in members(wheel).items() if k.endswith(f".dist-info/{name}"))
    return email.parser.BytesParser().parsebytes(data)


PYPROJECT = """
[project]
name = "namespace.mod"
version = "2.0"
description = "from pyproject"
dependencies = ["packaging>=20"]
requires-python = ">=3.8"

[project.scripts]
mod-cli = "namespace.mod:main"

[project.entry-points."dynawheel.plugins"]
x = "namespace.mod:X"

[[tool.dynawheel.add]]
from = "extra/*.txt"
to = "namespace/mod/"
"""


def test_pyproject_metadata_entry_points_and_add_steps(tmp_path: Path) -> None:
    stage = tree(tmp_path / "stage", {"namespace/mod/__init__.py": "def main(): pass\n",
                                      "pyproject.toml": PYPROJECT, "extra/a.txt": "A", "extra/b.txt": "B"})
    result = run_cli("build", stage, "-w", tmp_path / "out")
    assert result.code == 0, result.err
    wheel = tmp_path / "out" / "namespace_mod-2.0-py3-none-any.whl"
    got = members(wheel)
    assert "pyproject.toml" not in got, "the config file is not packed"
    assert got["namespace/mod/a.txt"] == b"A" and got["namespace/mod/b.txt"] == b"B"
    md = meta(wheel)
    assert (md["Name"], md["Version"], md["Summary"]) == ("namespace.mod", "2.0", "from pyproject")
    assert md.get_all("Requires-Dist") == ["packaging>=20"] and md["Requires-Python"] == ">=3.8"
    assert float(md["Metadata-Version"]) >= 2.1
    ep = got["namespace_mod-2.0.dist-info/entry_points.txt"].decode()
    assert "[console_scripts]\nmod-cli = namespace.mod:main" in ep and "[dynawheel.plugins]\nx = namespace.mod:X" in ep
    wheel_file = meta(wheel, "WHEEL")
    assert wheel_file["Root-Is-Purelib"] == "true" and wheel_file.get_all("Tag") == ["py3-none-any"]
    assert check_wheels([wheel]).ok


def test_options_override_pyproject(tmp_path: Path) -> None:
    stage = tree(tmp_path / "stage", {"m.py": "", "pyproject.toml": PYPROJECT, "extra/a.txt": ""})
    result = run_cli("build", stage, "--version", "3.1", "--summary", "opt", "--requires", "wheel",
                     "--tag", "py2.py3-none-any", "--build-number", "7", "-w", tmp_path)
    assert result.code == 0, result.err
    wheel = tmp_path / "namespace_mod-3.1-7-py2.py3-none-any.whl"
    md = meta(wheel)
    assert (md["Version"], md["Summary"]) == ("3.1", "opt")
    assert md.get_all("Requires-Dist") == ["packaging>=20", "wheel"]
    wf = meta(wheel, "WHEEL")
    assert wf.get_all("Tag") == ["py2-none-any", "py3-none-any"] and wf["Build"] == "7"


def test_metadata_file_and_existing_dist_info_completed(tmp_path: Path) -> None:
    stage = tree(tmp_path / "stage", {
        "pkg/__init__.py": "",
        "pkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n\nlong text\n",
        "pkg-1.0.dist-info/licenses/LICENSE": "MIT\n",
        "pkg-1.0.dist-info/INSTALLER": "pip\n",
    })
    wheel = build_wheel(stage, tmp_path / "out")
    names = list(members(wheel))
    assert [n for n in names if ".dist-info/" in n] == [
        "pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/WHEEL", "pkg-1.0.dist-info/licenses/LICENSE",
        "pkg-1.0.dist-info/RECORD"], "completed, INSTALLER dropped, nothing duplicated"
    assert names[-1] == "pkg-1.0.dist-info/RECORD"
    assert members(wheel)["pkg-1.0.dist-info/METADATA"].endswith(b"long text\n")
    mdfile = tmp_path / "METADATA"
    mdfile.write_text("Metadata-Version: 1.0\nName: other\nVersion: 5\n")
    assert run_cli("build", tmp_path / "stage", "--metadata", mdfile, "--name", "renamed", "-w", tmp_path).code == 0
    md = meta(tmp_path / "renamed-5-py3-none-any.whl")
    assert (md["Metadata-Version"], md["Name"]) == ("2.1", "renamed")


def test_meta_package_without_files(tmp_path: Path) -> None:
    wheel = build_wheel(None, tmp_path, name="meta.pkg", version="1", requires=("packaging",))
    assert {n.split("/")[-1] for n in members(wheel)} == {"METADATA", "WHEEL", "RECORD"}
    assert check_wheels([wheel]).ok


def test_stage_api_composes_scattered_files(tmp_path: Path) -> None:
    tree(tmp_path / "build/lib", {"a.so": "x", "b.so": "y"})
    tree(tmp_path / "py", {"ns/sub/mod.py": "", "top.py": ""})
    wheel = (Stage().add(tmp_path / "build/lib/*.so", "anamespace/")
             .add(tmp_path / "py/ns", "anamespace/")
             .add(tmp_path / "py/top.py", "")
             .build(tmp_path / "out", name="composed", version="1", tag="py3-none-any"))
    assert sorted(n for n in members(wheel) if ".dist-info" not in n) == [
        "anamespace/a.so", "anamespace/b.so", "anamespace/ns/sub/mod.py", "top.py"]


def test_reproducible_and_source_date_epoch(tmp_path: Path) -> None:
    stage = tree(tmp_path / "s", {"a/b.py": "x = 1\n", "a/c.txt": "c", "z.py": ""})
    (stage / "a" / "run.sh").write_text("#!/bin/sh\n")
    (stage / "a" / "run.sh").chmod(0o755)
    first = build_wheel(stage, tmp_path / "1", name="r", version="1")
    copy = tmp_path / "copy"
    shutil.copytree(stage, copy)
    os.utime(copy / "a" / "b.py", (1_700_000_000, 1_700_000_000))
    second = build_wheel(copy, tmp_path / "2", name="r", version="1")
    assert hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    with zipfile.ZipFile(first) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert infos["a/run.sh"].external_attr >> 16 & 0o777 == 0o755
    assert infos["a/b.py"].external_attr >> 16 & 0o777 == 0o644
    assert infos["a/b.py"].date_time == (1980, 1, 1, 0, 0, 0)
    result = run_cli("build", stage, "--name", "r", "--version", "1", "-w", tmp_path / "3",
                     env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert result.code == 0
    with zipfile.ZipFile(tmp_path / "3" / first.name) as zf:
        assert zf.getinfo("a/b.py").date_time == (2023, 11, 14, 22, 13, 20)
    old = run_cli("build", stage, "--name", "r", "--version", "1", "-w", tmp_path / "4",
                  env={"SOURCE_DATE_EPOCH": "0"})
    assert old.code == 0
    assert (tmp_path / "4" / first.name).read_bytes() == first.read_bytes(), "clamped to 1980"


def test_symlinks_stored_as_content_and_escapes_refused(tmp_path: Path) -> None:
    stage = tree(tmp_path / "s", {"pkg/real.py": "R"})
    (stage / "pkg" / "link.py").symlink_to("real.py")
    wheel = build_wheel(stage, tmp_path, name="l", version="1")
    assert members(wheel)["pkg/link.py"] == b"R"
    (tmp_path / "outside.txt").write_text("secret")
    (stage / "pkg" / "escape.txt").symlink_to(tmp_path / "outside.txt")
    with pytest.raises(StageError, match=r"escape\.txt.*leaves the staged tree"):
        build_wheel(stage, tmp_path, name="l", version="1")
    (stage / "pkg" / "escape.txt").unlink()
    (stage / "pkg" / "loop").symlink_to("..")
    assert_user_error(run_cli("build", stage, "--name", "l", "--version", "1", "-w", tmp_path), "symlink loop",
                      "pkg/loop")


def test_binaries_get_the_platform_tag_of_their_content(tmp_path: Path, seed_tree: Path) -> None:
    """The seed's extension needs GLIBC_2.34 (built here) and its support.so sits beside it: the tag repair
    would give, manylinux_2_34, and the interpreter's python/ABI tags, with a note saying so."""
    result = run_cli("build", seed_tree / "pkg1" / "src", "--name", "b", "--version", "1", "-w", tmp_path)
    assert result.code == 0, result.err
    assert "note: platform tag manylinux_2_" in result.err and "after the running interpreter" in result.err
    wheel = next(tmp_path.glob("b-1-*.whl"))
    assert "-cp3" in wheel.name and "manylinux_2_" in wheel.name
    assert run_cli("check", wheel).code == 0
    assert meta(wheel, "WHEEL")["Root-Is-Purelib"] == "false"


def test_compressed_ahead_of_the_tag_or_not_the_wheel_is_the_same(tmp_path: Path, seed_tree: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage's biggest files compress while its binaries are analysed for the tag (wheel/build.py
    _pack_ahead): the wheel is byte for byte the one written without that, and every packed file was taken."""
    from dynawheel.wheel import archive, build

    stage = shutil.copytree(seed_tree / "pkg1" / "src", tmp_path / "stage")  # the fixture is shared: a copy
    (stage / "big.bin").write_bytes(os.urandom(1 << 20) + bytes(3 << 20))  # above DIGESTS_APART_MIN
    taken: list[object] = []
    real_take = archive.Packer.take
    monkeypatch.setattr(archive.Packer, "take", lambda self, source: taken.append(real_take(self, source)) or taken[-1])
    ahead = build_wheel(stage, tmp_path / "ahead", name="b", version="1")
    assert sum(t is not None for t in taken) >= 2  # the extension and big.bin at least came from the early packing
    monkeypatch.setattr(build, "_pack_ahead", lambda packer, files: None)
    plain = build_wheel(stage, tmp_path / "plain", name="b", version="1")
    assert ahead.name == plain.name and "manylinux_2_" in ahead.name
    assert ahead.read_bytes() == plain.read_bytes()


@pytest.mark.parametrize(("args", "fragments"), [
    (["--version", "1"], ["no name given"]),
    (["--name", "x"], ["no version given"]),
    (["--name", "x y", "--version", "1"], ["invalid distribution name 'x y'"]),
    (["--name", "x", "--version", "1..0"], ["invalid version '1..0'"]),
    (["--name", "x", "--version", "v1.0x"], ["invalid version 'v1.0x'"]),
    (["--name", "x", "--version", "1", "--tag", "py3.8-none-any"], ["py3.8", "did you mean 'py38'"]),
    (["--name", "x", "--version", "1", "--tag", "py3-none"], ["invalid wheel tag 'py3-none'"]),
    (["--name", "x", "--version", "1", "--platform-tag", "linux-x86_64"], ["did you mean 'linux_x86_64'"]),
    (["--name", "x", "--version", "1", "--requires", "foo >>= 1"], ["invalid requirement 'foo >>= 1'"]),
])
def test_bad_metadata_and_tags(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    stage = tree(tmp_path / "s", {"m.py": ""})
    assert_user_error(run_cli("build", stage, *args, "-w", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_stages(tmp_path: Path) -> None:
    assert_user_error(run_cli("build", tmp_path / "missing", "--name", "x", "--version", "1"),
                      "does not exist", "missing")
    (tmp_path / "empty").mkdir()
    assert_user_error(run_cli("build", tmp_path / "empty", "--name", "x", "--version", "1", "-w", tmp_path),
                      "nothing to install")
    bad = tree(tmp_path / "bad", {"x-1.data/bogus/f": "", "m.py": ""})
    assert_user_error(run_cli("build", bad, "--name", "x", "--version", "1", "-w", tmp_path),
                      "unknown .data scheme 'bogus'", "purelib, platlib, headers, scripts, data")
    two = tree(tmp_path / "two", {"a-1.data/data/f": "", "b-1.data/data/g": ""})
    assert_user_error(run_cli("build", two, "--name", "x", "--version", "1", "-w", tmp_path), "2 .data directories")
    fifo = tree(tmp_path / "fifo", {"m.py": ""})
    os.mkfifo(fifo / "pipe")
    assert_user_error(run_cli("build", fifo, "--name", "x", "--version", "1", "-w", tmp_path),
                      "'pipe' is not a regular file")


def test_stage_record_or_wheel_that_disagrees(tmp_path: Path) -> None:
    stage = tree(tmp_path / "s", {"m.py": "new\n", "x-1.dist-info/METADATA": "Metadata-Version: 2.1\nName: x\n"
                                  "Version: 1\n", "x-1.dist-info/RECORD": "m.py,sha256=AAAA,4\n"})
    assert_user_error(run_cli("build", stage, "-w", tmp_path), "RECORD in the stage disagrees", "m.py")
    (stage / "x-1.dist-info/RECORD").unlink()
    (stage / "x-1.dist-info/WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    assert_user_error(run_cli("build", stage, "--tag", "cp311-cp311-linux_x86_64", "-w", tmp_path),
                      "WHEEL file in the stage says Tag py3-none-any")
    assert run_cli("build", stage, "-w", tmp_path).code == 0


def test_unsafe_names_and_outputs(tmp_path: Path) -> None:
    stage = tree(tmp_path / "s", {"ok.py": ""})
    (stage / "back\\slash.py").write_text("")
    assert_user_error(run_cli("build", stage, "--name", "x", "--version", "1", "-w", tmp_path / "o"),
                      "invalid path in wheel", "back\\\\slash.py")
    (stage / "back\\slash.py").unlink()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_user_error(run_cli("build", stage, "--name", "x", "--version", "1", "-w", blocker / "out"),
                      "cannot write to")
    out = tmp_path / "o"
    first = build_wheel(stage, out, name="x", version="1")
    inode = first.stat().st_ino
    (stage / "ok.py").write_text("changed")
    second = build_wheel(stage, out, name="x", version="1")
    assert second == first and second.stat().st_ino != inode, "replaced by rename, not rewritten"
    assert [p.name for p in out.iterdir()] == [first.name], "no temporary files left behind"


def test_api_errors_are_dynawheel_errors(tmp_path: Path) -> None:
    with pytest.raises(MetadataError):
        build_wheel(tree(tmp_path / "s", {"a.py": ""}), tmp_path, name="x", version="not a version")
    with pytest.raises(TagError):
        build_wheel(tmp_path / "s", tmp_path, name="x", version="1", tag="py3.8-none-any")
    with pytest.raises(DynawheelError):
        Stage().add(tmp_path / "nothing-*.so", "x/")


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: file permissions do not stop root from reading")
def test_unreadable_file(tmp_path: Path) -> None:
    stage = tree(tmp_path / "s", {"secret.py": "x"})
    (stage / "secret.py").chmod(0)
    assert_user_error(run_cli("build", stage, "--name", "x", "--version", "1", "-w", tmp_path / "o"), "secret.py")


def test_add_globs_from_the_command_line(tmp_path: Path) -> None:
    tree(tmp_path / "build/lib", {"liba.so": "a", "libb.so": "b", "notes.txt": "n"})
    tree(tmp_path / "py", {"anamespace/mod.py": ""})
    result = run_cli("build", "--add", "build/lib/*.so:anamespace/", "--add", "py/anamespace:anamespace",
                     "--add", "build/lib/notes.txt:anamespace/README", "--name", "added", "--version", "1",
                     "-w", tmp_path / "out", cwd=tmp_path)
    assert result.code == 0, result.err
    got = members(tmp_path / "out" / "added-1-py3-none-any.whl")
    assert {n for n in got if ".dist-info" not in n} == {"anamespace/liba.so", "anamespace/libb.so",
                                                        "anamespace/mod.py", "anamespace/README"}
    bad = run_cli("build", "--add", "build/lib/*.so:anamespace/one.so", "--name", "x", "--version", "1", cwd=tmp_path)
    assert_user_error(bad, "matches 2 files", "must end in '/'")


def _fat64(fat: bytes) -> bytes:
    """The same universal file with a 64-bit fat header (FAT_MAGIC_64: 64-bit offsets and sizes)."""
    magic, count = struct.unpack_from(">II", fat)
    assert magic == 0xCAFEBABE
    archs = [struct.unpack_from(">iiIII", fat, 8 + 20 * i) for i in range(count)]
    header = struct.pack(">II", 0xCAFEBABF, count) + b"".join(
        struct.pack(">iiQQII", cpu, sub, offset, size, align, 0) for cpu, sub, offset, size, align in archs)
    assert len(header) <= min(a[2] for a in archs), "the slices stay where they are"
    return header + fat[len(header):]


def test_a_64bit_fat_macho_is_a_binary(tmp_path: Path) -> None:
    """Every magic-byte table is one table: a universal Mach-O with a 64-bit fat header is a binary
    for the build's default tag (its content's macOS tag), not py3-none-any."""
    lib = tmp_path / "s" / "pk" / "libuniversal.dylib"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(_fat64((FIXTURES / "macho" / "bin" / "fat" / "libuniversal.dylib").read_bytes()))
    objdump = shutil.which("llvm-objdump-14") or shutil.which("llvm-objdump")
    if objdump is not None:  # an independent reader agrees that it is a 64-bit fat file of two slices
        text = subprocess.run([objdump, "--macho", "--universal-headers", str(lib)], capture_output=True,
                              text=True, check=True).stdout
        assert "FAT_MAGIC_64" in text and "nfat_arch 2" in text
    with lib.open("rb") as fp:
        assert [i.arch for i in BACKEND.parse(fp, str(lib)).images] == ["x86_64", "arm64"]
    # its slices (x86_64 10.9, arm64 11.0) give the platform tag, as repair gives it
    assert build_wheel(tmp_path / "s", tmp_path / "o", name="x", version="1").name.endswith(
        "-macosx_10_9_universal2.whl")
    with pytest.raises(TagError, match="has no i386 slice"):
        build_wheel(tmp_path / "s", tmp_path / "o2", name="x", version="1", tag="cp311-cp311-macosx_10_9_intel")
    assert [p.name for p in build_wheel(tmp_path / "s", tmp_path / "o2", name="x", version="1",
                                        tag="cp311-cp311-macosx_11_0_universal2").parent.iterdir()] \
        == ["x-1-cp311-cp311-macosx_11_0_universal2.whl"]


def test_public_build_wheel_spells_out_every_option_of_the_wheel_layer() -> None:
    """dynawheel.build_wheel (ops/build.py: the content rule by default) shows each option of
    dynawheel.wheel.build.build_wheel with its default and annotation (help(), inspect): not a bare **options
    that a reader cannot see through."""
    import inspect

    from dynawheel.wheel import build as wheel_build

    public, layer = inspect.signature(build_wheel), inspect.signature(wheel_build.build_wheel)
    assert not any(p.kind is p.VAR_KEYWORD for p in public.parameters.values())
    assert [(p.name, p.kind, p.default, p.annotation) for p in public.parameters.values()] == \
        [(p.name, p.kind, p.default, p.annotation) for p in layer.parameters.values()]
    assert public.return_annotation == layer.return_annotation
