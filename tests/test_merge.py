"""`dynawheel merge`: thin macOS wheels fused into universal2 on this Linux host, and identical wheels
merged into one with every tag.

The thin wheels are linked at test time with clang-14 + ld64.lld-14 (as fixtures/macho/build.sh does):
an extension bundle and a vendored dylib per arch.  Nothing is trusted from dynawheel's own writer:
every fused file is compared byte for byte with ``llvm-lipo-14 -create`` of the same thin files,
parsed by LIEF (an independent parser), read by ``llvm-objdump-14 --macho --all-headers`` (a strict
one), and its arm64 signature is verified page by page.  Published wheels of one project (Pillow
11.0.0, arm64 and x86_64, with 17 vendored dylibs that differ by arch) are fused too (marked network).
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from dynawheel.errors import DynawheelError
from dynawheel.ops.merge import merge_wheels
from dynawheel.platforms.codesign import verify_signature
from dynawheel.platforms.macho import headers_of_bytes
from dynawheel.report import audit
from dynawheel.wheel.archive import Entry, write_wheel
from dynawheel.wheel.check import check_wheels

from .conftest import assert_user_error, pypi_problem, run_cli

SRC = Path(__file__).resolve().parent.parent / "fixtures" / "macho" / "src"
TBD = SRC / "libSystem.tbd"
CLANG, LD64, LIPO, OBJDUMP = (shutil.which(t) for t in ("clang-14", "ld64.lld-14", "llvm-lipo-14", "llvm-objdump-14"))
TARGETS = {"arm64": ("arm64-apple-macos11", "11.0"), "x86_64": ("x86_64-apple-macos10.9", "10.9")}
EXT = ".cpython-311-darwin.so"
PLATS = {"arm64": "macosx_11_0_arm64", "x86_64": "macosx_10_9_x86_64"}

needs_llvm = pytest.mark.skipif(
    None in (CLANG, LD64, LIPO, OBJDUMP),
    reason="needs clang-14, ld64.lld-14 (apt-get install -y --no-install-recommends clang-14 lld-14) and llvm-14",
)


def _run(cmd: list[str | Path], cwd: Path | None = None) -> None:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)


def _link(arch: str, out: Path, source: Path, *args: str | Path, minos: str | None = None) -> Path:
    target, version = TARGETS[arch]
    version = minos or version
    out.parent.mkdir(parents=True, exist_ok=True)
    obj = out.parent / f"{out.name}.o"
    _run([CLANG, f"--target={target}", "-O2", "-fno-ident", "-fno-stack-protector", "-c", source, "-o", obj])
    _run([LD64, "-arch", arch, "-platform_version", "macos", version, version, "-o", out.name, obj, *args, TBD],
         cwd=out.parent)
    obj.unlink()
    return out


def _thin_tree(root: Path, arch: str, *, value: int = 1, minos: str | None = None) -> dict[str, Path]:
    """pkg/_ext (bundle) -> @loader_path/.dylibs/libhelper.dylib, the shape delocate gives a wheel."""
    lib = root / arch / "pkg/.dylibs/libhelper.dylib"
    root.mkdir(parents=True, exist_ok=True)
    helper_c = root / f"helper{value}.c"
    helper_c.write_text(f"int helper_value(void) {{ return {value}; }}\n")
    _link(arch, lib, helper_c, "-dylib", "-install_name", "@loader_path/.dylibs/libhelper.dylib", minos=minos)
    ext_c = root / "ext.c"
    ext_c.write_text("extern int helper_value(void);\nint PyInit__ext(void) { return helper_value(); }\n")
    ext = _link(arch, root / arch / f"pkg/_ext{EXT}", ext_c, "-bundle", "-headerpad_max_install_names", lib,
                minos=minos)
    init = root / arch / "pkg/__init__.py"
    init.write_text("")
    return {"pkg/__init__.py": init, f"pkg/_ext{EXT}": ext, "pkg/.dylibs/libhelper.dylib": lib}


def _wheel(out_dir: Path, files: dict[str, Path | bytes], platform: str, name: str = "fuseme",
           version: str = "1.0", python: str = "cp311-cp311") -> Path:
    dist_info = f"{name}-{version}.dist-info"
    entries = [Entry(arc, src) for arc, src in files.items()]
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    entries.append(Entry(f"{dist_info}/METADATA", metadata.encode()))
    entries.append(Entry(f"{dist_info}/WHEEL", (f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\n"
                                                f"Tag: {python}-{platform}\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    return write_wheel(out_dir / f"{name}-{version}-{python}-{platform}.whl", entries, dist_info)


@pytest.fixture(scope="module")
def thin_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("fuse")
    out = {}
    for arch, value in (("arm64", 64), ("x86_64", 86)):
        out[arch] = _wheel(root / "in", dict(_thin_tree(root / "src", arch, value=value)), PLATS[arch])
    return out


def _members(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _lief_archs(data: bytes) -> list[str]:
    lief = pytest.importorskip("lief", reason="LIEF (test dependency, pip install lief) is the independent parser")
    lief.logging.disable()
    fat = lief.MachO.parse(list(data))
    assert fat is not None
    return sorted(str(b.header.cpu_type).rsplit(".", 1)[-1] for b in fat)


def _assert_fused(path: str, data: bytes, thin: list[bytes], tmp: Path) -> None:
    """`data` is what llvm-lipo-14 makes of `thin`; LIEF and llvm-objdump read it; signatures verify."""
    for i, piece in enumerate(thin):
        (tmp / f"s{i}").write_bytes(piece)
    _run([LIPO, "-create", *(tmp / f"s{i}" for i in range(len(thin))), "-output", tmp / "ref"])
    assert data == (tmp / "ref").read_bytes(), f"{path}: differs from llvm-lipo-14 -create"
    assert _lief_archs(data) == ["ARM64", "X86_64"], path
    (tmp / "fused").write_bytes(data)
    _run([OBJDUMP, "--macho", "--all-headers", "--arch=all", tmp / "fused"])
    assert verify_signature(data, path) == [], path
    is_fat, headers = headers_of_bytes(data, path)
    assert is_fat and [h.arch for h in headers] == ["x86_64", "arm64"]  # arm64 last, as lipo orders them
    assert [h.offset % (1 << a) for h, a in zip(headers, (12, 14))] == [0, 0]


@needs_llvm
def test_merge_thin_wheels_into_universal2(thin_wheels: dict[str, Path], tmp_path: Path) -> None:
    inputs = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in thin_wheels.values()}
    result = run_cli("merge", thin_wheels["arm64"], thin_wheels["x86_64"], "-w", tmp_path / "out")
    assert result.code == 0, result.err
    (merged,) = (tmp_path / "out").glob("*.whl")
    # x86_64 10.9 + arm64 11.0: the rule of repair gives macosx_10_9_universal2
    assert merged.name == "fuseme-1.0-cp311-cp311-macosx_10_9_universal2.whl"
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in inputs} == inputs  # inputs untouched
    got = _members(merged)
    arm, x86 = _members(thin_wheels["arm64"]), _members(thin_wheels["x86_64"])
    for name in (f"pkg/_ext{EXT}", "pkg/.dylibs/libhelper.dylib"):
        _assert_fused(name, got[name], [arm[name], x86[name]], tmp_path)
    assert got["pkg/__init__.py"] == b""
    assert "Tag: cp311-cp311-macosx_10_9_universal2" in got["fuseme-1.0.dist-info/WHEEL"].decode()
    report = audit(merged)
    assert report.ok and not report.graph.missing()
    assert {w.arch for w in report.analysis.walks} == {"arm64", "x86_64"}
    assert check_wheels([merged]).ok
    assert run_cli("check", merged).code == 0
    # the same inputs in the other order give the same bytes
    again = merge_wheels([thin_wheels["x86_64"], thin_wheels["arm64"]], tmp_path / "again")
    assert again.path.read_bytes() == merged.read_bytes()


@needs_llvm
def test_merge_signs_an_unsigned_arm64_slice(tmp_path: Path) -> None:
    files = _thin_tree(tmp_path / "src", "arm64")
    lib = files["pkg/.dylibs/libhelper.dylib"]
    data = bytearray(lib.read_bytes())
    data[-64] ^= 0xFF  # break the linker's signature: the fused file must carry a valid one again
    assert verify_signature(bytes(data), "lib")
    arm = _wheel(tmp_path / "a", {**files, "pkg/.dylibs/libhelper.dylib": bytes(data)}, PLATS["arm64"])
    x86 = _wheel(tmp_path / "x", dict(_thin_tree(tmp_path / "src", "x86_64")), PLATS["x86_64"])
    merged = merge_wheels([arm, x86], tmp_path / "out")
    fused = _members(merged.path)["pkg/.dylibs/libhelper.dylib"]
    assert verify_signature(fused, "fused") == []
    assert _lief_archs(fused) == ["ARM64", "X86_64"]


@needs_llvm
def test_merge_identical_wheels_into_one_with_both_tags(tmp_path: Path) -> None:
    files = {"pkg/__init__.py": b"x = 1\n", "pkg/data.txt": b"same\n"}
    a = _wheel(tmp_path / "a", files, "any", python="py2-none")
    b = _wheel(tmp_path / "b", files, "any", python="py3-none")
    merged = merge_wheels([a, b], tmp_path / "out")
    assert merged.path.name == "fuseme-1.0-py2.py3-none-any.whl" and merged.kind == "multi-tag"
    assert check_wheels([merged.path]).ok
    bad = _wheel(tmp_path / "c", files, "linux_x86_64", python="cp312-cp312")
    with pytest.raises(DynawheelError, match="would also claim"):
        merge_wheels([a, bad], tmp_path / "out2")
    assert not (tmp_path / "out2").exists() or not list((tmp_path / "out2").iterdir())


@needs_llvm
def test_merge_bad_input_one_clear_error_nothing_written(thin_wheels: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "src"
    arm, x86 = thin_wheels["arm64"], thin_wheels["x86_64"]
    other = _wheel(tmp_path / "o", dict(_thin_tree(src, "x86_64")), PLATS["x86_64"], name="another")
    newer = _wheel(tmp_path / "n", dict(_thin_tree(src, "x86_64")), PLATS["x86_64"], version="1.1")
    arm2 = _wheel(tmp_path / "a2", dict(_thin_tree(src / "again", "arm64", value=7)), PLATS["arm64"])
    fat_files = dict(_thin_tree(src / "f", "x86_64"))
    fat_lib = tmp_path / "libhelper-fat.dylib"
    _run([LIPO, "-create", fat_files["pkg/.dylibs/libhelper.dylib"],
          _thin_tree(src / "g", "arm64")["pkg/.dylibs/libhelper.dylib"], "-output", fat_lib])
    fat = _wheel(tmp_path / "fat", {**fat_files, "pkg/.dylibs/libhelper.dylib": fat_lib}, PLATS["x86_64"])
    haswell = dict(_thin_tree(src / "h", "x86_64"))
    data = bytearray(haswell["pkg/.dylibs/libhelper.dylib"].read_bytes())
    data[8:12] = (8).to_bytes(4, "little")  # cpusubtype CPU_SUBTYPE_X86_64_H: arch x86_64h, neither of the two
    neither = _wheel(tmp_path / "i", {**haswell, "pkg/.dylibs/libhelper.dylib": bytes(data)}, PLATS["x86_64"])
    text = dict(_thin_tree(src / "t", "x86_64"))
    differing = _wheel(tmp_path / "t", {**text, "pkg/__init__.py": b"different = True\n"}, PLATS["x86_64"])
    cases = [
        ([arm, other], "different projects or versions"),
        ([arm, newer], "different projects or versions"),
        ([arm, arm2], "two arm64 slices for pkg/"),
        ([arm, fat], "already a universal (fat) Mach-O file"),
        ([arm, neither], "is x86_64h, but the wheel is tagged for x86_64"),
        ([arm, differing], "pkg/__init__.py"),
        ([arm], "at least two wheels"),
    ]
    out = tmp_path / "out"
    for wheels, fragment in cases:
        result = run_cli("merge", *wheels, "-w", out)
        assert_user_error(result, fragment)
        assert not out.exists() or not list(out.iterdir()), (fragment, list(out.iterdir()))
    assert run_cli("merge", arm, x86, "-w", out, "--prefer", "middle").code == 2
    # --prefer picks one copy of the differing text file
    done = merge_wheels([arm, differing], out, prefer="last")
    assert _members(done.path)["pkg/__init__.py"] == b"different = True\n"
    assert done.preferred == ("pkg/__init__.py",)


# ---- published wheels ------------------------------------------------------------------------------

PILLOW = "11.0.0"
PILLOW_PLATFORMS = {"arm64": "macosx_11_0_arm64", "x86_64": "macosx_10_10_x86_64"}


def _pillow(cache: Path, arch: str) -> Path:
    pattern = f"pillow-{PILLOW}-cp311-cp311-{PILLOW_PLATFORMS[arch]}.whl"
    with open(cache / ".lock", "w") as lock:  # pytest-xdist workers share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = sorted(cache.glob(pattern))
        if found:
            return found[0]
        reason = pypi_problem("pillow", f"the merge proof downloads the Pillow {PILLOW} macOS wheels")
        if reason:
            pytest.skip(reason)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--only-binary=:all:",
                            "--platform", PILLOW_PLATFORMS[arch], "--python-version", "3.11", "--implementation",
                            "cp", "--disable-pip-version-check", "-q", "-d", tmp, f"pillow=={PILLOW}"],
                           check=True, capture_output=True, timeout=600)
            (wheel,) = Path(tmp).glob(pattern)
            return wheel.replace(cache / wheel.name)


@pytest.mark.network
@needs_llvm
def test_merge_published_pillow_wheels(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    cache_obj = getattr(request.config, "cache", None)
    cache = Path(cache_obj.mkdir("dynawheel-merge-wheels")) if cache_obj is not None else tmp_path
    arm, x86 = _pillow(cache, "arm64"), _pillow(cache, "x86_64")
    result = run_cli("merge", arm, x86, "-w", tmp_path / "out")
    assert result.code == 0, result.err
    merged = tmp_path / "out" / f"pillow-{PILLOW}-cp311-cp311-macosx_10_10_universal2.whl"
    assert merged.is_file(), list((tmp_path / "out").iterdir())
    got, a, x = _members(merged), _members(arm), _members(x86)
    fused = [n for n in got if n.endswith((".so", ".dylib"))]
    assert len(fused) == 24 and sum(n.startswith("PIL/.dylibs/") for n in fused) == 17
    for name in fused:
        _assert_fused(name, got[name], [a[name], x[name]], tmp_path)
    report = audit(merged)
    assert report.ok and not report.graph.missing(), report.graph.missing()
    assert {w.arch for w in report.analysis.walks} == {"arm64", "x86_64"}
    assert run_cli("check", merged).code == 0
    shown = run_cli("show", merged)
    assert shown.code == 0 and "arm64+x86_64" in shown.out
