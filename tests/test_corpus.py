"""The real-world corpus: published PyPI wheels of every platform family, pinned in
``tests/corpus_wheels.json`` (project, version, file name, sha256), downloaded once (in parallel)
into pytest's cache directory and checked against their hash.

For each wheel:

- ``dynawheel show`` exits 0, finds nothing missing (but what the entry documents as missing on
  a clean target, with the reason) and gives a verdict of the wheel's own platform family: one of
  its own manylinux/musllinux tags, "loads on Python >= 3.8" for the wheel's Windows arch, the
  wheel's macOS archs;
- every binary's needed list, delay imports, DT_RPATH/DT_RUNPATH, LC_RPATHs and soname equal what
  LIEF (an independent parser, a test dependency only) reads from the same member bytes, slice by
  slice for fat Mach-O files;
- ``dynawheel repair -w`` gives exactly one wheel that ``dynawheel check`` and ``python -m installer
  --validate-record all`` accept, that ``show`` still finds complete, and that a second repair
  reproduces byte for byte;
- the manylinux x86_64 cp311 wheels (the test Python's): the repaired wheel is pip-installed into a
  fresh venv and its extensions imported; every library mapped from a ``*.libs`` directory is the
  venv's copy (/proc/self/maps).

Linux wheels are shown with this host's search paths, the others hermetically
(``--no-system-paths``: nothing of this Linux host may satisfy a Windows or macOS import).
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from .conftest import make_venv, pypi_problem, run_cli

CORPUS_FILE = Path(__file__).with_name("corpus_wheels.json")
CORPUS: list[dict[str, Any]] = json.loads(CORPUS_FILE.read_text())["wheels"]
BY_FILE = {w["file"]: w for w in CORPUS}

pytestmark = [pytest.mark.network, pytest.mark.slow]



def family(wheel: dict[str, Any]) -> str:
    plat = wheel["file"][: -len(".whl")].split("-")[-1]
    for prefix, name in (("manylinux", "manylinux"), ("musllinux", "musllinux"), ("win", "windows"),
                         ("macosx", "macos")):
        if plat.startswith(prefix):
            return name
    raise AssertionError(f"unknown platform family of {wheel['file']}")


def platform_tags(wheel: dict[str, Any]) -> list[str]:
    return wheel["file"][: -len(".whl")].split("-")[-1].split(".")


def _ids(wheel: dict[str, Any]) -> str:
    return "-".join([*wheel["file"].split("-")[:2], platform_tags(wheel)[-1]])


# ---- the cache -------------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fp:
        for block in iter(lambda: fp.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(wheel: dict[str, Any], cache: Path) -> str | None:
    """Fetch one pinned wheel with pip into `cache`; the problem, or None."""
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--only-binary=:all:",
               "--platform", platform_tags(wheel)[-1], "--python-version", "3.11", "--implementation", "cp",
               "--disable-pip-version-check", "-q", "-d", tmp, f"{wheel['project']}=={wheel['version']}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        got = Path(tmp) / wheel["file"]
        if proc.returncode != 0 or not got.is_file():
            return f"pip download of {wheel['file']} failed: {proc.stderr.strip()[-400:]} {os.listdir(tmp)}"
        digest = _sha256(got)
        if digest != wheel["sha256"]:
            return f"{wheel['file']}: sha256 {digest}, pinned {wheel['sha256']}"
        got.replace(cache / wheel["file"])
    return None


@pytest.fixture(scope="session")
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """file name -> the pinned wheel in pytest's cache directory (downloaded in parallel once)."""
    store = getattr(request.config, "cache", None)
    cache = Path(store.mkdir("dynawheel-corpus-wheels")) if store else tmp_path_factory.mktemp("corpus")
    with open(cache / ".lock", "w") as lock:  # pytest-xdist workers share the cache
        fcntl.flock(lock, fcntl.LOCK_EX)
        todo = [w for w in CORPUS if not (cache / w["file"]).is_file() or _sha256(cache / w["file"]) != w["sha256"]]
        if todo:
            reason = pypi_problem(todo[0]["project"], f"CI downloads the {len(todo)} corpus wheels")
            if reason:
                pytest.skip(reason)
            with ThreadPoolExecutor(max_workers=8) as pool:
                problems = [p for p in pool.map(lambda w: _download(w, cache), todo) if p]
            assert not problems, "\n".join(problems)
    return {w["file"]: cache / w["file"] for w in CORPUS}


# ---- show ------------------------------------------------------------------------------------

def search_args(wheel: dict[str, Any]) -> list[str]:
    args = [] if family(wheel) in ("manylinux", "musllinux") else ["--no-system-paths"]
    for d in wheel.get("dll_dirs", ()):
        args += ["--dll-dir", d]
    return args


def show(wheel: dict[str, Any], path: Path) -> tuple[int, dict[str, Any]]:
    result = run_cli("show", "--json", *search_args(wheel), path)
    assert result.code in (0, 3), result.err
    doc: dict[str, Any] = json.loads(result.out)
    return result.code, doc


def missing_names(doc: dict[str, Any]) -> set[str]:
    return {m.rsplit(": ", 1)[1].lower() for m in doc["missing"]}


def check_complete(wheel: dict[str, Any], code: int, doc: dict[str, Any]) -> None:
    """Nothing missing but what the entry documents."""
    known = {n.lower() for n in wheel.get("known_missing", {})}
    missing = missing_names(doc)
    assert doc["bad"] == [] and doc["external"] == [], (doc["bad"], doc["external"])
    assert known <= missing, f"documented as missing but found: {sorted(known - missing)}"
    assert missing <= known, sorted(missing - known)
    if not missing:
        assert code == 0 and doc["ok"] is True


def check_verdict(wheel: dict[str, Any], doc: dict[str, Any]) -> None:
    summaries = {v["format"]: v["summary"] for v in doc["verdicts"]}
    fam = family(wheel)
    tags = platform_tags(wheel)
    if fam in ("manylinux", "musllinux"):
        assert set(summaries) == {"elf"}, summaries
        assert summaries["elf"] in tags, (summaries["elf"], tags)  # one of the tags the wheel was given
        return
    archs = {i["arch"] for b in doc["binaries"] if b["in_tree"] for i in b["images"]}
    if fam == "windows":
        want = {"win_amd64": "x86_64", "win32": "i686", "win_arm64": "arm64"}[tags[-1]]
        assert set(summaries) == {"pe"} and archs == {want}, (summaries, archs)
        if not missing_names(doc):
            assert summaries["pe"] == "loads on Python >= 3.8", summaries
        return
    assert set(summaries) == {"macho"}, summaries
    plat = tags[-1]
    want = next(archs for end, archs in (("universal2", "arm64+x86_64"), ("arm64", "arm64"), ("x86_64", "x86_64"))
                if plat.endswith(end))
    assert summaries["macho"].split(",")[0] == want, (summaries["macho"], plat)
    assert re.fullmatch(r"[\w+]+, macOS >= \d+\.\d+", summaries["macho"]), summaries["macho"]


# ---- LIEF, the independent parser --------------------------------------------------------------

def lief_images(data: bytes) -> Iterator[dict[str, Any]]:
    """What LIEF reads from a binary: per image (per slice of a fat Mach-O file) its arch, needed
    list with kinds, rpaths, runpaths and soname, in the shape of `show --json`'s images."""
    import lief

    lief.logging.disable()
    if data[:4] == b"\x7fELF":
        elf = lief.ELF.parse(list(data))
        assert elf is not None
        tag = lief.ELF.DynamicEntry.TAG
        entries = list(elf.dynamic_entries)
        soname = [e.name for e in entries if e.tag == tag.SONAME]
        yield {"needed": [{"name": n, "kind": "needed"} for n in elf.libraries],
               "rpaths": [p for e in entries if e.tag == tag.RPATH for p in e.paths],
               "runpaths": [p for e in entries if e.tag == tag.RUNPATH for p in e.paths],
               "soname": soname[0] if soname else None}
    elif data[:2] == b"MZ":
        pe = lief.PE.parse(list(data))
        assert pe is not None
        yield {"needed": [{"name": i.name, "kind": "needed"} for i in pe.imports]
               + [{"name": i.name, "kind": "delay"} for i in pe.delay_imports], "rpaths": [], "runpaths": []}
    else:
        fat = lief.MachO.parse(list(data))
        assert fat is not None
        kinds = {"LOAD_DYLIB": "needed", "LOAD_WEAK_DYLIB": "weak", "REEXPORT_DYLIB": "reexport",
                 "LAZY_LOAD_DYLIB": "lazy", "LOAD_UPWARD_DYLIB": "upward"}
        for macho in fat:
            libs = list(macho.libraries)
            ids = [lib.name for lib in libs if lib.command.name == "ID_DYLIB"]
            yield {"arch": {"X86_64": "x86_64", "ARM64": "arm64", "X86": "i386"}[macho.header.cpu_type.name],
                   "needed": [{"name": lib.name, "kind": kinds[lib.command.name]} for lib in libs
                              if lib.command.name != "ID_DYLIB"],
                   "rpaths": [r.path for r in macho.rpaths], "runpaths": [],
                   "soname": ids[0] if ids else None}


def ours(image: dict[str, Any], fmt: str) -> dict[str, Any]:
    out = {"needed": image["needed"], "rpaths": image["rpaths"], "runpaths": image["runpaths"]}
    if fmt == "pe":  # imports first, then delay imports (LIEF's order of the two tables)
        out["needed"] = [d for d in image["needed"] if d["kind"] != "delay"] + [
            d for d in image["needed"] if d["kind"] == "delay"]
    else:
        out["soname"] = image["soname"]
    if fmt == "macho":
        out["arch"] = image["arch"]
    return out


def lief_agreement(wheel_path: Path, doc: dict[str, Any]) -> tuple[int, int]:
    """Assert every in-tree binary's parse equals LIEF's; (binaries, entries compared)."""
    binaries = entries = 0
    with zipfile.ZipFile(wheel_path) as zf:
        for binary in (b for b in doc["binaries"] if b["in_tree"]):
            theirs = list(lief_images(zf.read(binary["path"])))
            mine = [ours(i, binary["format"]) for i in binary["images"]]
            if binary["format"] == "macho":
                theirs.sort(key=lambda i: i["arch"])
                mine.sort(key=lambda i: i["arch"])
            assert mine == theirs, binary["path"]
            binaries += 1
            entries += sum(len(i["needed"]) + len(i["rpaths"]) + len(i["runpaths"]) for i in mine)
    return binaries, entries


# ---- the tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("wheel", CORPUS, ids=_ids)
def test_show_is_complete_and_parses_as_lief_does(wheel: dict[str, Any], corpus: dict[str, Path]) -> None:
    pytest.importorskip("lief", reason="LIEF is a test dependency (pyproject [test])")
    path = corpus[wheel["file"]]
    code, doc = show(wheel, path)
    binaries, _entries = lief_agreement(path, doc)
    assert binaries >= 1
    check_verdict(wheel, doc)
    check_complete(wheel, code, doc)


def repair(wheel: dict[str, Any], path: Path, out: Path) -> Path:
    excludes = [a for n in sorted(set(wheel.get("known_missing", {})))
                for a in ("--exclude", n)] if family(wheel) == "windows" else []
    result = run_cli("repair", *search_args(wheel), *excludes, path, "-w", out)
    assert result.code == 0, result.err
    made = sorted(out.iterdir())
    assert len(made) == 1 and made[0].suffix == ".whl", made
    return made[0]


@pytest.mark.parametrize("wheel", CORPUS, ids=_ids)
def test_repair_is_accepted_complete_and_reproducible(wheel: dict[str, Any], corpus: dict[str, Path],
                                                      tmp_path: Path) -> None:
    repaired = repair(wheel, corpus[wheel["file"]], tmp_path / "w1")
    checked = run_cli("check", repaired)
    assert checked.code == 0, checked.out
    installed = subprocess.run([sys.executable, "-m", "installer", "--validate-record", "all", "--no-compile-bytecode",
                                "--destdir", tmp_path / "dest", repaired], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    code, doc = show(wheel, repaired)
    check_complete(wheel, code, doc)
    check_verdict(wheel, doc)
    again = repair(wheel, repaired, tmp_path / "w2")
    assert again.name == repaired.name and again.read_bytes() == repaired.read_bytes(), "a second repair differs"


MAPS_PROBE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print("\\n".join(sorted({l.split()[-1] for l in open("/proc/self/maps") if "/" in l.split()[-1]})))
"""


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64" or sys.version_info[:2] != (3, 11),
                    reason="the manylinux x86_64 cp311 wheels install on Linux x86_64 CPython 3.11 only")
@pytest.mark.parametrize("wheel", [w for w in CORPUS if w.get("imports")], ids=_ids)
def test_repaired_manylinux_wheel_installs_and_imports(wheel: dict[str, Any], corpus: dict[str, Path],
                                                       tmp_path: Path) -> None:
    repaired = repair(wheel, corpus[wheel["file"]], tmp_path / "w")
    venv = make_venv(tmp_path / "venv", with_pip=False)
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv.python), "install", "--isolated",
                           "--no-deps", "--no-index", "--disable-pip-version-check", "-q", str(repaired)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(venv.python), "-I", "-c", MAPS_PROBE, *wheel["imports"]], capture_output=True,
                          text=True, timeout=120, cwd="/")
    assert proc.returncode == 0, proc.stderr
    site = str(venv.site_packages)
    vendored = [m for m in proc.stdout.split() if ".libs/" in m]
    assert all(m.startswith(site + "/") for m in vendored), vendored
    if wheel.get("vendors"):
        assert vendored, "the wheel's vendored libraries were not mapped"


def test_corpus_covers_every_platform_family() -> None:
    plats = {platform_tags(w)[-1] for w in CORPUS}
    assert len(CORPUS) >= 30 and len({w["file"] for w in CORPUS}) == len(CORPUS)
    for want in ("x86_64", "aarch64"):
        assert any(p.startswith("manylinux") and p.endswith(want) for p in plats), want
    assert any(p.startswith("musllinux") for p in plats)
    assert {"win_amd64", "win32", "win_arm64"} <= plats
    for want in ("arm64", "x86_64", "universal2"):
        assert any(p.startswith("macosx") and p.endswith(want) for p in plats), want
    assert any(re.search(r"[A-Z]", w["file"].split("-")[0]) for w in CORPUS), "a capitalized .dist-info"
    assert all(re.fullmatch(r"[0-9a-f]{64}", w["sha256"]) for w in CORPUS)


def test_corpus_has_the_hard_cases(corpus: dict[str, Path]) -> None:
    """The kinds of wheel the issue asks for, found in the wheels themselves (LIEF reads them, not
    us): delay-loaded DLLs, DLL directories added at start-up (os.add_dll_directory in the
    package's code), fat Mach-O files, vendored libraries (a .libs or .dylibs directory), many of
    them (five or more) in some."""
    lief = pytest.importorskip("lief", reason="LIEF is a test dependency (pyproject [test])")
    lief.logging.disable()
    found: dict[str, set[str]] = {"delay": set(), "dll_dir": set(), "fat": set(), "vendors": set(), "many": set()}
    for wheel in CORPUS:
        with zipfile.ZipFile(corpus[wheel["file"]]) as zf:
            names = zf.namelist()
            vendored = [n for n in names if re.search(r"\.(libs|dylibs)/[^/]+$", n)]
            if vendored:
                found["vendors"].add(wheel["file"])
            if len(vendored) >= 5:
                found["many"].add(wheel["file"])
            for name in names:
                data = zf.read(name) if name.endswith((".py", ".pth", ".pyd", ".dll", ".exe", ".so")) else b""
                if data[:4] == b"\xca\xfe\xba\xbe" and lief.MachO.parse(list(data)).size > 1:
                    found["fat"].add(wheel["file"])
                elif data[:2] == b"MZ" and (pe := lief.PE.parse(list(data))) is not None and pe.delay_imports:
                    found["delay"].add(wheel["file"])
                elif name.endswith((".py", ".pth")) and b"add_dll_directory" in data:
                    found["dll_dir"].add(wheel["file"])
    assert all(len(files) >= 1 for files in found.values()), found
    assert {w["file"] for w in CORPUS if w.get("dll_dirs")} <= found["dll_dir"]
    assert {w["file"] for w in CORPUS if w.get("vendors")} <= found["vendors"]


@pytest.mark.parametrize("wheel", [w for w in CORPUS if family(w) in ("manylinux", "musllinux")], ids=_ids)
def test_linux_verdict_equals_auditwheel_show(wheel: dict[str, Any], corpus: dict[str, Path]) -> None:
    """The incumbent's answer: `auditwheel show` (on a host without musl it assumes the newest musl,
    as dynawheel's musllinux verdict does) gives the same tag as our verdict."""
    proc = subprocess.run([sys.executable, "-m", "auditwheel", "show", corpus[wheel["file"]]], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    theirs = re.search(r'consistent with the following platform tag: "([^"]+)"', " ".join(proc.stdout.split()))
    assert theirs is not None, proc.stdout
    _code, doc = show(wheel, corpus[wheel["file"]])
    assert [v["summary"] for v in doc["verdicts"]] == [theirs.group(1)]


@pytest.mark.parametrize("wheel", [w for w in CORPUS if family(w) == "windows"], ids=_ids)
def test_python_symbols_of_pe_binaries_equal_liefs(wheel: dict[str, Any], corpus: dict[str, Path]) -> None:
    """The names each PE binary imports from python3.dll / python3X.dll (what the stable-ABI audit of
    an abi3 wheel judges: read by our import-table walk, not pefile) equal LIEF's."""
    lief = pytest.importorskip("lief", reason="LIEF is a test dependency (pyproject [test])")
    from dynawheel.binary import BinaryFormat
    from dynawheel.platforms import python_imports
    from dynawheel.platforms.symbols import PYTHON_DLL

    lief.logging.disable()
    checked = 0
    with zipfile.ZipFile(corpus[wheel["file"]]) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            if data[:2] != b"MZ" or not name.lower().endswith((".pyd", ".dll", ".exe")):
                continue
            pe = lief.PE.parse(list(data))
            assert pe is not None, name
            theirs = {e.name for i in pe.imports if PYTHON_DLL.fullmatch(i.name) for e in i.entries
                      if not e.is_ordinal and e.name}
            assert python_imports(BinaryFormat.PE, io.BytesIO(data), name) == theirs, name
            checked += bool(theirs)
    assert checked >= 1  # every Windows wheel of the corpus has an extension importing from Python
