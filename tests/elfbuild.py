"""Build real ELF files with gcc at test time (they must match the running Python).

* :func:`shared_lib`: a helper library with ``-Wl,-soname``, optional DT_NEEDED on other
  helpers, DT_RPATH (``-Wl,--disable-new-dtags,-rpath,...``) or DT_RUNPATH
  (``-Wl,--enable-new-dtags,-rpath,...``).
* :func:`extension`: a CPython extension module (EXT_SUFFIX and include dir from
  :mod:`sysconfig`).
* :func:`i386_lib`: a wrong-class library.  This machine's gcc has no 32-bit multilib
  (``gcc -m32`` cannot link: no crti.o / libgcc), but it can compile with ``-m32 -c``;
  ``ld -m elf_i386 -shared`` links that object into a genuine ELFCLASS32 / EM_386
  shared object without any libc.
* :func:`patch_machine`: a copy of a built library with ``e_machine`` patched (for a
  wrong-machine, same-class library, e.g. EM_AARCH64).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sysconfig
from collections.abc import Sequence
from pathlib import Path

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
PY_INCLUDE = sysconfig.get_paths()["include"]


def have_gcc() -> bool:
    return shutil.which("gcc") is not None


def _run(cmd: Sequence[str]) -> None:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")


def _link_flags(
    needs: Sequence[Path], rpath: Sequence[str], runpath: Sequence[str], extra: Sequence[str]
) -> list[str]:
    flags: list[str] = []
    for lib in needs:
        flags += [f"-L{lib.parent}", f"-l:{lib.name}"]
    if rpath:
        flags.append("-Wl,--disable-new-dtags,-rpath," + ":".join(rpath))
    if runpath:
        flags.append("-Wl,--enable-new-dtags,-rpath," + ":".join(runpath))
    return flags + list(extra)


def shared_lib(
    out: Path,
    *,
    soname: str | None = None,
    func: str | None = None,
    needs: Sequence[Path] = (),
    rpath: Sequence[str] = (),
    runpath: Sequence[str] = (),
    extra: Sequence[str] = (),
) -> Path:
    """libX.so exporting `func()` which calls the first function of each needed helper."""
    out.parent.mkdir(parents=True, exist_ok=True)
    name = func or out.name.split(".")[0].replace("-", "_")
    calls = "".join(f"extern int {_fn(n)}(void); " for n in needs)
    body = " + ".join([f"{_fn(n)}()" for n in needs] + ["1"])
    src = out.with_suffix(out.suffix + ".c")
    src.write_text(f"#include <stdlib.h>\n{calls}int {name}(void) {{ return {body} + (getenv(\"DW_X\") != 0); }}\n")
    cmd = ["gcc", "-shared", "-fPIC", "-O1", "-o", str(out), str(src)]
    if soname:
        cmd.append(f"-Wl,-soname,{soname}")
    _run(cmd + _link_flags(needs, rpath, runpath, extra))
    return out


def _fn(lib: Path) -> str:
    return lib.name.split(".")[0].replace("-", "_")


def extension(
    pkg_dir: Path,
    modname: str,
    *,
    needs: Sequence[Path] = (),
    rpath: Sequence[str] = (),
    runpath: Sequence[str] = (),
) -> Path:
    """A real CPython extension `modname` in `pkg_dir` whose `value()` calls each helper."""
    pkg_dir.mkdir(parents=True, exist_ok=True)
    out = pkg_dir / f"{modname}{EXT_SUFFIX}"
    decls = "".join(f"extern int {_fn(n)}(void);\n" for n in needs)
    total = " + ".join([f"{_fn(n)}()" for n in needs] + ["0"])
    src = pkg_dir / f"{modname}.c"
    src.write_text(
        "#define PY_SSIZE_T_CLEAN\n#include <Python.h>\n" + decls
        + f"static PyObject *value(PyObject *s, PyObject *a) {{ return PyLong_FromLong({total}); }}\n"
        + 'static PyMethodDef M[] = {{"value", value, METH_NOARGS, 0}, {0}};\n'
        + f'static struct PyModuleDef D = {{PyModuleDef_HEAD_INIT, "{modname}", 0, -1, M}};\n'
        + f"PyMODINIT_FUNC PyInit_{modname}(void) {{ return PyModule_Create(&D); }}\n"
    )
    cmd = ["gcc", "-shared", "-fPIC", "-O1", f"-I{PY_INCLUDE}", "-o", str(out), str(src)]
    _run(cmd + _link_flags(needs, rpath, runpath, ()))
    src.unlink()
    return out


def executable(out: Path, *, needs: Sequence[Path] = (), pie: bool = True, runpath: Sequence[str] = (),
               rpath: Sequence[str] = ()) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(".c")
    decls = "".join(f"extern int {_fn(n)}(void);\n" for n in needs)
    total = " + ".join([f"{_fn(n)}()" for n in needs] + ["0"])
    src.write_text(f"{decls}int main(void) {{ return {total}; }}\n")
    cmd = ["gcc", "-O1", "-o", str(out), str(src), "-pie" if pie else "-no-pie"]
    _run(cmd + _link_flags(needs, rpath, runpath, ()))
    return out


def i386_lib(out: Path, soname: str) -> Path:
    """A genuine 32-bit (ELFCLASS32, EM_386) shared library, linked without libc."""
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_suffix(out.suffix + ".c")
    src.write_text(f"int {_fn(out)}(void) {{ return 32; }}\n")
    obj = src.with_suffix(".o")
    _run(["gcc", "-m32", "-fPIC", "-c", "-o", str(obj), str(src)])
    _run(["ld", "-m", "elf_i386", "-shared", "-soname", soname, "-o", str(out), str(obj)])
    return out


def patch_machine(src: Path, out: Path, machine: int) -> Path:
    """Copy `src` with e_machine set to `machine` (e.g. 183 = EM_AARCH64)."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<H", data, 18, machine)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(bytes(data))
    return out


def ldso_list(path: Path) -> dict[str, str | None]:
    """{request name: path or None} as glibc's ld.so --list prints it (the oracle)."""
    import os
    import re

    env = {k: v for k, v in os.environ.items() if not k.startswith("LD_")}
    env["LD_TRACE_LOADED_OBJECTS"] = "1"  # what ldd does: list, and print misses as "not found"
    proc = subprocess.run(["/lib64/ld-linux-x86-64.so.2", str(path)], capture_output=True,
                          text=True, env=env)
    out: dict[str, str | None] = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(\S+) => (?:(\S+) \(0x[0-9a-f]+\)|not found)", line)
        if m:
            out.setdefault(m.group(1), os.path.normpath(m.group(2)) if m.group(2) else None)
    return out
