"""`dynawheel tags` vs `wheel tags` on the same large wheel: retag, side by side.

The wheel: the torch 2.13 CPU wheel found on this disk (/opt/wheels, ~), else ``pip download --no-deps
"torch==2.13.0+cpu"``, else scipy's manylinux wheel from PyPI (bench_repair.find_big_wheel).  Both tools
run from the benchmark venv and write into a fresh directory each run.  Two cases:

- ``--platform-tag +linux_x86_64``: dynawheel judges the added platform tag against the binaries
  (every ELF header read, as `show` reads them) before it copies; `wheel tags` does not look.
  (A manylinux tag is refused on torch: its test binaries ``torch/bin/test_*`` need libtorch.so, which
  their RUNPATH does not find; `dynawheel check` reports the same.)
- ``--python-tag +cp312 --build 1``: no platform change, nothing to judge: the copy alone.

dynawheel copies every member as compressed bytes; `wheel tags` (wheel >= 0.40) rewrites the archive
through ``WheelFile``, reading and recompressing each member.

    python benchmarks/bench_tags.py [--runs 3] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import HEADER, Case, alternate, dynawheel_cmd, run, tool_cmd
from bench_repair import find_big_wheel

CASES = {
    "platform +linux_x86_64 (judged)": (["--platform-tag", "+linux_x86_64"], ["--platform-tag", "+linux_x86_64"]),
    "python +cp312, build 1": (["--python-tag", "+cp312", "--build", "1"], ["--python-tag", "+cp312", "--build", "1"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wheel", type=Path, help="benchmark this wheel")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tags-") as tmp:
        root = Path(tmp)
        wheel = find_big_wheel(root, args.wheel)
        print(f"tags: {wheel.name} ({wheel.stat().st_size / 2**20:.0f} MB)", file=sys.stderr)
        counter = itertools.count()
        sizes: dict[str, int] = {}

        def ours(opts: list[str]) -> object:
            out = root / f"ours-{next(counter)}"
            timing = run(dynawheel_cmd("tags", wheel, *opts, "-w", out))
            sizes["ours"] = next(out.glob("*.whl")).stat().st_size
            shutil.rmtree(out)
            return timing

        def theirs(opts: list[str]) -> object:
            out = root / f"theirs-{next(counter)}"
            out.mkdir()
            copy = out / wheel.name  # `wheel tags` writes beside its input
            copy.symlink_to(wheel)
            timing = run(tool_cmd("wheel", "tags", *opts, copy))
            made = [p for p in out.glob("*.whl") if p.name != wheel.name]
            sizes["theirs"] = made[0].stat().st_size
            shutil.rmtree(out)
            return timing

        for label, (mine, other) in CASES.items():
            a, b = alternate(lambda m=mine: ours(m), lambda o=other: theirs(o), args.runs)  # type: ignore[misc]
            rows.append(Case(f"tags {label}: {wheel.name}", "wheel tags", a, b, sizes.get("ours"),
                             sizes.get("theirs")))
    print(HEADER)
    for case in rows:
        print(case.row())
    return 0


if __name__ == "__main__":
    sys.exit(main())
