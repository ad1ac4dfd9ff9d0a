"""Policy checks beyond symbol versions (issue 15): the x86-64 ISA level of GNU property notes, an
executable stack, the policies' blacklisted symbols, libpython in DT_NEEDED; each blocker explained.

Every binary is built here by gcc; the facts we read are checked against independent readers
(auditwheel's own ISA reading, pyelftools' segments), the verdicts against ``auditwheel show`` on the
same wheels, and the repaired wheels are installed with pip into a fresh venv and imported.

What this machine's toolchain does (Debian 12: gcc 12.2, binutils 2.40), checked by
``test_which_flags_write_the_isa_note``: ``-march=x86-64-v3`` or ``-mavx2`` alone write no
GNU property note at all; ``-Wa,-mx86-used-note=yes`` writes ``ISA_1_USED`` into the object, which the
linker drops when the crt objects lack the note (kept only with ``-nostartfiles``); only
``-Wl,-z,x86-64-v3`` writes ``GNU_PROPERTY_X86_ISA_1_NEEDED``, the property auditwheel (and glibc's
loader, >= 2.33) reads.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

import jsonschema
import pytest

from dynawheel.binary import BinaryFormat, Dependency, ElfFacts, FileKind, Image, StackFlag, X86Isa
from dynawheel.platform_tags import Content, Reason, elf_verdict, explain
from dynawheel.platforms.elf import parse_elf
from dynawheel.report import json_schema

from . import elfbuild
from .conftest import Venv, assert_user_error, run_cli

pytestmark = pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed to build the binaries")

AUDITWHEEL = Path(sys.executable).with_name("auditwheel")
SUFFIX = elfbuild.EXT_SUFFIX
MODULE = """#define PY_SSIZE_T_CLEAN
#include <Python.h>
{include}
static PyObject *value(PyObject *s, PyObject *a) {{ {body} }}
static PyMethodDef M[] = {{{{"value", value, METH_NOARGS, 0}}, {{0}}}};
static struct PyModuleDef D = {{PyModuleDef_HEAD_INIT, "_m", 0, -1, M}};
PyMODINIT_FUNC PyInit__m(void) {{ return PyModule_Create(&D); }}
"""
PLAIN = {"include": "", "body": "return PyLong_FromLong(7);"}
ZLIB = {"include": "#include <zlib.h>",
        "body": "unsigned char d[8]; unsigned long n = sizeof d, m = 0; "
                "return PyLong_FromLong(uncompress2(d, &n, d, &m));"}


def compile_so(out: Path, flags: list[str], source: dict[str, str] = PLAIN, libs: tuple[str, ...] = ()) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.parent / "_m.c"
    src.write_text(MODULE.format(**source))
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{elfbuild.PY_INCLUDE}", *flags, "-o", str(out), str(src),
                    *libs], check=True, capture_output=True)
    src.unlink()
    return out


def package(tmp_path: Path, name: str, flags: list[str], source: dict[str, str] = PLAIN,
            libs: tuple[str, ...] = ()) -> Path:
    """A wheel (built by dynawheel build: its best tag) holding one extension pkg/_m built with `flags`."""
    stage = tmp_path / f"stage-{name}"
    compile_so(stage / name / f"_m{SUFFIX}", flags, source, libs)
    (stage / name / "__init__.py").write_text("")
    result = run_cli("build", stage, "--name", name, "--version", "1", "-w", tmp_path / "dist")
    assert result.code == 0, result.err
    (wheel,) = (tmp_path / "dist").glob(f"{name}-1-*.whl")
    return wheel


def traits(path: Path) -> ElfFacts:
    with path.open("rb") as fp:
        image = parse_elf(fp, str(path)).images[0]
    assert isinstance(image.facts, ElfFacts)
    return image.facts


def auditwheel_show(wheel: Path, *flags: str) -> str:
    proc = subprocess.run([str(AUDITWHEEL), "show", *flags, str(wheel)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.split())


def show_json(target: Path, *flags: str) -> dict[str, object]:
    result = run_cli("show", "--json", *flags, target)
    doc: dict[str, object] = json.loads(result.out)
    jsonschema.validate(doc, json_schema())
    return doc


def elf_verdict_json(doc: dict[str, object]) -> dict[str, object]:
    verdicts = doc["verdicts"]
    assert isinstance(verdicts, list)
    (verdict,) = [v for v in verdicts if v["format"] == "elf"]
    assert isinstance(verdict, dict)
    return verdict


# ---- the facts, against independent readers ------------------------------------------------------

def test_which_flags_write_the_isa_note(tmp_path: Path) -> None:
    """Our reading of GNU_PROPERTY_X86_ISA_1_NEEDED equals auditwheel's (its lddtree, pyelftools notes)."""
    from auditwheel.lddtree import ldd

    builds = {
        "march": (["-march=x86-64-v3"], None),
        "mavx2": (["-mavx2", "-mfma"], None),
        "used-note": (["-march=x86-64-v3", "-Wa,-mx86-used-note=yes"], None),
        "z-v2": (["-Wl,-z,x86-64-v2"], X86Isa.V2),
        "z-v3": (["-march=x86-64-v3", "-Wl,-z,x86-64-v3"], X86Isa.V3),
        "z-v4": (["-Wl,-z,x86-64-v4"], X86Isa.V4),
    }
    theirs_names = {None: None, X86Isa.V2: "x86_64_v2", X86Isa.V3: "x86_64_v3", X86Isa.V4: "x86_64_v4"}
    for name, (flags, level) in builds.items():
        so = compile_so(tmp_path / name / "m.so", flags)
        assert traits(so).isa_needed is level, name
        ext = ldd(so).platform.extended_architecture
        assert (ext.value if ext else None) == theirs_names[level], name
    # ISA_1_USED (set by the assembler from the instructions it saw) survives the link only without the crt
    # objects, which carry no note
    src = tmp_path / "avx.c"
    src.write_text("#include <immintrin.h>\nfloat f(float *a) { __m256 x = _mm256_loadu_ps(a);"
                   " x = _mm256_fmadd_ps(x, x, x); return x[0]; }\n")
    for extra, level in (([], None), (["-nostartfiles"], X86Isa.V3)):
        out = tmp_path / f"avx{len(extra)}.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-march=x86-64-v3", "-Wa,-mx86-used-note=yes", *extra,
                        "-o", str(out), str(src)], check=True, capture_output=True)
        assert (traits(out).isa_used, traits(out).isa_needed) == (level, None), extra


def test_stack_flag_against_pyelftools(tmp_path: Path) -> None:
    from elftools.elf.elffile import ELFFile

    plain = compile_so(tmp_path / "a" / "m.so", [])
    execstack = compile_so(tmp_path / "b" / "m.so", ["-Wl,-z,execstack"])
    for so, expected in ((plain, StackFlag.NOT_EXECUTABLE), (execstack, StackFlag.EXECUTABLE)):
        with so.open("rb") as fp:
            (stack,) = [s for s in ELFFile(fp).iter_segments() if s["p_type"] == "PT_GNU_STACK"]
            assert bool(stack["p_flags"] & 1) is (expected is StackFlag.EXECUTABLE)
        assert traits(so).stack is expected
    # no PT_GNU_STACK at all: its program header turned into PT_NULL (the loader then makes the stack executable)
    missing = tmp_path / "c.so"
    data = bytearray(plain.read_bytes())
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 0x6474E551:
            struct.pack_into("<I", data, phoff + i * phentsize, 0)
    missing.write_bytes(bytes(data))
    assert traits(missing).stack is StackFlag.MISSING


def test_libpython_rule_spares_programs() -> None:
    """Extensions must not link libpython; a program (an embedding launcher) may."""
    def elf(kind: FileKind) -> Image:
        return Image(BinaryFormat.ELF, "x86_64", kind, needed=(Dependency("libpython3.11.so.1.0"),
                                                              Dependency("libc.so.6")))

    ext = explain(Content(elf=(("pkg/_m.so", elf(FileKind.SHARED)),)), "manylinux_2_17_x86_64")
    assert [(b.reason, b.file, b.subject) for b in ext] == [(Reason.LIBPYTHON, "pkg/_m.so", "libpython3.11.so.1.0")]
    assert explain(Content(elf=(("bin/run", elf(FileKind.EXECUTABLE)),)), "manylinux_2_17_x86_64") == ()
    # and --disable-isa-check is a property of the judgment, not of the content's files
    v3 = Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED, facts=ElfFacts(isa_needed=X86Isa.V3))
    assert elf_verdict(Content(elf=(("a.so", v3),))).tag == "linux_x86_64"
    assert elf_verdict(Content(elf=(("a.so", v3),), isa_check=False)).tag == "manylinux_2_5_x86_64"


# ---- wheels: show and repair, against auditwheel, installed and imported --------------------------

def repair_install_import(venv: Venv, wheel: Path, out: Path, tag: str, name: str, *options: str) -> None:
    """`dynawheel repair WHEEL -w OUT OPTIONS` succeeds with one wheel tagged `tag`, which installs and imports."""
    ok = run_cli("repair", wheel, "-w", out, *options)
    assert ok.code == 0, ok.err
    (repaired,) = out.glob("*.whl")
    assert tag in repaired.name
    install_and_import(venv, repaired, name)


def install_and_import(venv: Venv, wheel: Path, name: str) -> None:
    venv.pip("install", "--no-index", "--no-deps", str(wheel))
    assert venv.run("-I", "-c", f"import {name}._m as m; print(m.value())", env={"PYTHONPATH": ""}).split()[-1] \
        in ("7", "-5", "-3", "0")


@pytest.mark.skipif(not AUDITWHEEL.exists(), reason="auditwheel (.ci/pip-packages.txt) is needed for the comparison")
def test_isa_level_blocks_manylinux_like_auditwheel(tmp_path: Path, fresh_venv: Venv) -> None:
    wheel = package(tmp_path, "isav3", ["-march=x86-64-v3", "-Wl,-z,x86-64-v3"])
    assert wheel.name.endswith("-linux_x86_64.whl")  # build's best tag: the same rule
    verdict = elf_verdict_json(show_json(wheel))
    assert verdict["summary"] == "linux_x86_64"
    assert 'platform tag: "linux_x86_64"' in auditwheel_show(wheel)
    first = verdict["explanations"][0]
    assert (first["reason"], first["file"], first["subject"]) == ("isa-level", f"isav3/_m{SUFFIX}", "x86-64-v3")
    assert "-march=x86-64" in first["fix"] and "--disable-isa-check" in first["fix"]
    text = run_cli("show", wheel).out
    assert "needs the x86-64-v3 instruction set" in text and "fix: build with -march=x86-64" in text
    # with the check disabled, both tools give the same manylinux tag
    assert elf_verdict_json(show_json(wheel, "--disable-isa-check"))["summary"] == "manylinux_2_5_x86_64"
    assert 'platform tag: "manylinux_2_5_x86_64"' in auditwheel_show(wheel, "--disable-isa-ext-check")
    # repair refuses, names the file and the fix; --disable-isa-check repairs, and the wheel imports here
    assert_user_error(run_cli("repair", wheel, "-w", tmp_path / "no"), "x86-64-v3", f"isav3/_m{SUFFIX}",
                      "-march=x86-64")
    assert not (tmp_path / "no").exists() or not list((tmp_path / "no").iterdir())
    # this CPU has AVX2 (x86-64-v3): it loads
    repair_install_import(fresh_venv, wheel, tmp_path / "yes", "manylinux_2_5_x86_64", "isav3", "--disable-isa-check")


@pytest.mark.skipif(not AUDITWHEEL.exists(), reason="auditwheel (.ci/pip-packages.txt) is needed for the comparison")
def test_executable_stack_is_refused_for_manylinux(tmp_path: Path, fresh_venv: Venv) -> None:
    wheel = package(tmp_path, "xstack", ["-Wl,-z,execstack"])
    verdict = elf_verdict_json(show_json(wheel))
    assert verdict["summary"] == "linux_x86_64"
    assert {(e["reason"], e["file"], e["fix"]) for e in verdict["explanations"]} == {
        ("executable-stack", f"xstack/_m{SUFFIX}", "relink with -z noexecstack")}
    # auditwheel 6.x does not check PT_GNU_STACK: it calls the same wheel manylinux (a difference by design)
    assert 'platform tag: "manylinux_2_5_x86_64"' in auditwheel_show(wheel)
    assert_user_error(run_cli("repair", wheel, "-w", tmp_path / "no"), "executable stack",
                      "relink with -z noexecstack")
    fixed = package(tmp_path / "fixed", "xstack", ["-Wl,-z,execstack", "-Wl,-z,noexecstack"])  # the fix, applied
    repair_install_import(fresh_venv, fixed, tmp_path / "yes", "manylinux_2_5_x86_64", "xstack")


@pytest.mark.skipif(not AUDITWHEEL.exists(), reason="auditwheel (.ci/pip-packages.txt) is needed for the comparison")
@pytest.mark.skipif(not Path("/usr/include/zlib.h").exists(), reason="zlib1g-dev (.ci/apt-packages.txt) is needed")
def test_blacklisted_symbol_blocks_the_tags_that_list_it(tmp_path: Path, fresh_venv: Venv) -> None:
    """uncompress2 (zlib 1.2.9) is blacklisted for libz.so.1 up to manylinux_2_31 in auditwheel's data."""
    wheel = package(tmp_path, "zbl", [], ZLIB, ("-lz",))
    verdict = elf_verdict_json(show_json(wheel))
    theirs = auditwheel_show(wheel)
    assert f'platform tag: "{verdict["summary"]}"' in theirs, theirs
    assert verdict["summary"] == "manylinux_2_34_x86_64"
    black = [e for e in verdict["explanations"] if e["reason"] == "blacklisted-symbol"]
    assert {e["tag"] for e in black} == {f"manylinux_2_{v}_x86_64" for v in (5, 12, 17, 24, 26, 27, 28, 31)}
    assert {(e["file"], e["subject"], e["provider"]) for e in black} == {(f"zbl/_m{SUFFIX}", "uncompress2",
                                                                          "libz.so.1")}
    assert all("vendor your own libz.so.1" in e["fix"] for e in black)
    # asked for a tag the blacklist refuses: repair names the symbol; the best tag repairs and imports
    assert_user_error(run_cli("repair", wheel, "-w", tmp_path / "no", "--plat", "manylinux_2_28_x86_64"),
                      "uncompress2", "libz.so.1")
    repair_install_import(fresh_venv, wheel, tmp_path / "yes", "manylinux_2_34_x86_64", "zbl")


@pytest.mark.skipif(not AUDITWHEEL.exists(), reason="auditwheel (.ci/pip-packages.txt) is needed for the comparison")
def test_extension_linking_libpython_is_refused(tmp_path: Path) -> None:
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    lib = next((d for d in (libdir, "/usr/lib/x86_64-linux-gnu") if Path(d, f"libpython{version}.so").exists()), None)
    if lib is None:
        pytest.skip(f"no libpython{version}.so to link against (a Python built without --enable-shared)")
    wheel = package(tmp_path, "lpy", [f"-L{lib}"], PLAIN, (f"-lpython{version}",))
    verdict = elf_verdict_json(show_json(wheel))
    assert verdict["summary"] == "linux_x86_64"
    assert 'platform tag: "linux_x86_64"' in auditwheel_show(wheel)  # auditwheel: an external library
    reasons = {(e["reason"], e["subject"]) for e in verdict["explanations"]}
    soname = next(s for r, s in reasons if r == "libpython")
    assert reasons == {("libpython", soname)}, reasons  # not also "vendor it": vendoring libpython is no fix
    # auditwheel repair drops the DT_NEEDED; dynawheel refuses and says how to link instead (never vendors it)
    assert_user_error(run_cli("repair", wheel, "-w", tmp_path / "no"), soname, "link without libpython")


def _is_elf(path: Path) -> bool:
    with path.open("rb") as fp:
        return fp.read(4) == b"\x7fELF"


def test_undefined_symbols_against_pyelftools(tmp_path: Path) -> None:
    """The blacklist rule's reading (DT_SYMTAB counted by DT_HASH / DT_GNU_HASH, no section headers) equals
    pyelftools' .dynsym on the host's libraries and programs, and on gcc-built files (-lz: uncompress2)."""
    from elftools.elf.elffile import ELFFile

    from dynawheel.platforms import undefined_symbols

    built = compile_so(tmp_path / "z" / "m.so", [], ZLIB, ("-lz",)) if Path("/usr/include/zlib.h").exists() else None
    host = [p for p in sorted(p for d in ("/usr/lib/x86_64-linux-gnu", "/usr/bin") for p in Path(d).glob("*")
                              if p.is_file() and not p.is_symlink())[:800] if _is_elf(p)]
    assert len(host) > 50
    for path in [*host, *([built] if built else [])]:
        with path.open("rb") as fp:
            ours = undefined_symbols(BinaryFormat.ELF, fp, str(path))
            dynsym = ELFFile(fp).get_section_by_name(".dynsym")
            symbols = dynsym.iter_symbols() if dynsym is not None else []
            theirs = {s.name for s in symbols if s["st_shndx"] == "SHN_UNDEF" and s.name}
        assert ours == theirs, path
    if built:
        with built.open("rb") as fp:
            assert "uncompress2" in undefined_symbols(BinaryFormat.ELF, fp, str(built))
