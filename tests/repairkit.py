"""Helpers for the repair tests: hash trees, read dynamic sections with readelf, probe a venv.

Kept independent of dynawheel's own ELF reader: `readelf` (binutils) is the second opinion,
/proc/self/maps in the importing process is the ground truth of what was loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .conftest import Venv

PROBE = """
import importlib, json, sys
values = {}
for name in sys.argv[1:]:
    mod = importlib.import_module(name)
    values[name] = mod.value() if hasattr(mod, "value") else None
maps = sorted({line.split()[-1] for line in open("/proc/self/maps") if "/" in line.split()[-1]})
print(json.dumps({"values": values, "maps": maps}))
"""


def have_patchelf() -> bool:
    return shutil.which("patchelf") is not None


def hash_tree(path: Path) -> dict[str, str]:
    """{relative path: sha256 or 'link:<target>'} of every file and symlink under `path` (or of one file)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    out: dict[str, str] = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_symlink():
            out[rel] = "link:" + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel + "/"] = "dir"
    return out


@dataclass(frozen=True)
class Dynamic:
    needed: tuple[str, ...]
    soname: str | None
    rpath: tuple[str, ...] | None  # DT_RPATH entries, None when absent
    runpath: tuple[str, ...] | None  # DT_RUNPATH entries, None when absent


def dynamic(path: Path | str) -> Dynamic:
    """The dynamic section as binutils' readelf reads it."""
    text = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True, check=True).stdout
    needed = tuple(re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", text))
    soname = re.search(r"\(SONAME\)\s+Library soname: \[(.*)\]", text)
    rpath = re.search(r"\(RPATH\)\s+Library rpath: \[(.*)\]", text)
    runpath = re.search(r"\(RUNPATH\)\s+Library runpath: \[(.*)\]", text)
    return Dynamic(needed, soname.group(1) if soname else None,
                   tuple(rpath.group(1).split(":")) if rpath else None,
                   tuple(runpath.group(1).split(":")) if runpath else None)


def extract(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    return dest


def members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def read_member(wheel: Path, name: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name)


def only_wheel(directory: Path) -> Path:
    wheels = sorted(directory.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def probe(venv: Venv, *modules: str, env: dict[str, str] | None = None) -> dict[str, object]:
    """Import `modules` in the venv's interpreter (isolated mode, cwd '/'), call value(); the maps."""
    cmd = [str(venv.python), "-I", "-c", PROBE, *modules]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", env={**os.environ, **(env or {})},
                          timeout=120)
    assert proc.returncode == 0, (cmd, proc.stdout, proc.stderr)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def libs_mapped(result: dict[str, object], name_prefix: str) -> list[str]:
    maps = result["maps"]
    assert isinstance(maps, list)
    return [m for m in maps if os.path.basename(m).startswith(name_prefix)]
