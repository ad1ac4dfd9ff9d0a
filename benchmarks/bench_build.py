"""Case 5: `dynawheel build` of a big staged tree vs `wheel pack` on the same tree.

The tree: a copy of this machine's shared libraries (real binary content, a few hundred MB) and
of the Python standard library (thousands of small files).  `wheel pack` gets the .dist-info
(METADATA, WHEEL) it needs inside the tree; dynawheel packs the same tree.

    python benchmarks/bench_build.py [--runs 3] [--mb 300]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HEADER, Case, alternate, dynawheel_cmd, run, tool_cmd


def make_tree(root: Path, megabytes: int) -> Path:
    stage = root / "stage"
    libs = stage / "bigpkg" / "libs"
    libs.mkdir(parents=True)
    total = 0
    for lib in sorted(Path("/usr/lib/x86_64-linux-gnu").glob("*.so*")):
        if lib.is_file() and not lib.is_symlink() and total < megabytes << 20:
            shutil.copyfile(lib, libs / lib.name)
            total += lib.stat().st_size
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(stdlib, stage / "bigpkg" / "stdlib", ignore=shutil.ignore_patterns("__pycache__", "site-packages",
                                                                                        "test", "tests"))
    info = stage / "bigpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bigpkg\nVersion: 1.0\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\n"
                                "Tag: py3-none-linux_x86_64\n")
    return stage


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mb", type=int, default=300, help="megabytes of shared libraries in the tree")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stage = make_tree(root, args.mb)
        files = sum(1 for p in stage.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
        print(f"tree: {files} files, {size / 2**20:.0f} MB", file=sys.stderr)
        ours_out, theirs_out = root / "ours", root / "theirs"
        theirs_out.mkdir()
        a, b = alternate(
            lambda: run(dynawheel_cmd("build", stage, "-w", ours_out)),
            lambda: run(tool_cmd("wheel", "pack", stage, "-d", theirs_out)),
            args.runs,
        )
        case = Case(f"build: {files} files, {size / 2**20:.0f} MB", "wheel pack", a, b,
                    next(ours_out.glob("*.whl")).stat().st_size, next(theirs_out.glob("*.whl")).stat().st_size)
    print(HEADER)
    print(case.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
