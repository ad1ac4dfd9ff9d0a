"""Case 1: `dynawheel show` on a large real wheel vs `auditwheel show` on the same wheel.

The wheel: the PyTorch CPU wheel from this machine's configured package sources
(``pip download --no-deps "torch==2.13.0+cpu"``: about 190 MB, 12 000 members, one 414 MB
library), else a scipy manylinux wheel from PyPI.  Both tools run from the benchmark venv
(``_common.bench_venv()``).  dynawheel exits 3 when it finds missing libraries (torch's test binaries have
some); that is a finding, not a failure.

    python benchmarks/bench_show.py [--runs 3] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HEADER, Case, alternate, dynawheel_cmd, run, tool_cmd

TORCH = "torch==2.13.0+cpu"
SCIPY = "scipy==1.17.1"  # cp311 manylinux_2_27/2_28 x86_64 wheel on PyPI


def _pip(*args: str) -> bool:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"pip {' '.join(args)} failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
    return proc.returncode == 0


def fetch_wheel(dest: Path) -> Path:
    """The torch CPU wheel if the configured sources have it, else scipy's manylinux wheel."""
    if _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(dest), TORCH):
        return next(dest.glob("torch-*.whl"))
    print("no torch CPU wheel here: using scipy from PyPI", file=sys.stderr)
    if not _pip("download", "--no-deps", "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
                "--python-version", "3.11", "-d", str(dest), SCIPY):
        raise SystemExit("cannot download a wheel to benchmark")
    return next(dest.glob("scipy-*.whl"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wheel", type=Path, help="benchmark this wheel instead of downloading one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or fetch_wheel(Path(tmp))
        label = f"show: {wheel.name} ({wheel.stat().st_size / 2**20:.0f} MB)"
        print(label, file=sys.stderr)
        a, b = alternate(
            lambda: run(dynawheel_cmd("show", wheel), accept=(0, 3)),
            lambda: run(tool_cmd("auditwheel", "show", wheel)),
            args.runs,
        )
    case = Case(label, "auditwheel show", a, b)
    print(HEADER)
    print(case.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
