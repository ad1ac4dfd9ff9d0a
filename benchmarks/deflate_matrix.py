"""Deflate backends side by side on real files: speed and size of each backend and level against
the standard library's zlib at level 6 (what `wheel pack` and `auditwheel repair` write).  This is
the measurement behind the writer's choices (dynawheel/wheel/zipwriter.py): libdeflate for whole
members, zlib-ng for streamed ones.  One thread; the writer runs one such job per core.

    python benchmarks/deflate_matrix.py [FILE ...]   # default: libLLVM-14 if present, and the stdlib
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

Compress = Callable[[bytes], bytes]


def _stream(module: Any, level: int) -> Compress:
    def run(data: bytes) -> bytes:
        comp = module.compressobj(level, zlib.DEFLATED, -15)
        return bytes(comp.compress(data) + comp.flush())
    return run


def backends() -> dict[str, Compress]:
    found: dict[str, Compress] = {f"zlib {lvl}": _stream(zlib, lvl) for lvl in (1, 6, 9)}
    try:
        from zlib_ng import zlib_ng
        found.update({f"zlib-ng {lvl}": _stream(zlib_ng, lvl) for lvl in (2, 4, 5, 6, 9)})
    except ImportError:
        print("zlib-ng is not installed", file=sys.stderr)
    try:
        import deflate
        found.update({f"libdeflate {lvl}": (lambda d, lvl=lvl: bytes(deflate.deflate_compress(d, lvl)))
                      for lvl in (1, 4, 5, 6, 9)})
    except ImportError:
        print("libdeflate (PyPI deflate) is not installed", file=sys.stderr)
    return found


def default_inputs() -> list[Path]:
    llvm = Path("/usr/lib/x86_64-linux-gnu/libLLVM-14.so.1")
    stdlib = sorted(Path(os.__file__).parent.glob("*.py"))
    return ([llvm] if llvm.exists() else []) + stdlib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    data = [p.read_bytes() for p in (args.files or default_inputs())]
    total = sum(map(len, data))
    print(f"{len(data)} files, {total / 2**20:.1f} MB; ratios against zlib 6 (speed: higher is faster)")
    rows = []
    for name, fn in backends().items():
        start = time.perf_counter()
        size = sum(len(fn(d)) for d in data)
        rows.append((name, size, time.perf_counter() - start))
    base = next(r for r in rows if r[0] == "zlib 6")
    print("| backend, level | size vs zlib 6 | speed vs zlib 6 | MB/s |\n|---|---|---|---|")
    for name, size, seconds in rows:
        print(f"| {name} | {size / base[1] - 1:+.1%} | {base[2] / seconds:.2f}x | {total / seconds / 2**20:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
