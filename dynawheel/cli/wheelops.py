"""CLI: `dynawheel tags` (retag a wheel, members copied raw) and `dynawheel merge` (universal2, multi-tag)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import EXIT_OK
from ..ops.merge import PREFER_CHOICES, merge_wheels
from ..ops.retag import retag_wheel


def register(sub: Any) -> None:
    t = sub.add_parser("tags",
                       description="Change a wheel's tags: TAG replaces, +TAG adds, -TAG removes (several joined "
                                   "with dots).  Members are copied as compressed bytes; WHEEL and RECORD are "
                                   "rewritten and the file renamed.  A platform tag the binaries do not support "
                                   "is refused (the rule of `dynawheel check`) unless --force-tag.")
    t.add_argument("wheels", nargs="+", type=Path, metavar="WHEEL")
    t.add_argument("--python-tag", metavar="[+-]TAG", help="python tag(s), e.g. py3, +cp312, -cp310")
    t.add_argument("--abi-tag", metavar="[+-]TAG", help="ABI tag(s), e.g. abi3, none")
    t.add_argument("--platform-tag", metavar="[+-]TAG", help="platform tag(s), e.g. manylinux_2_28_x86_64")
    t.add_argument("--build", metavar="NUMBER", help="build number (starts with a digit; '' removes it)")
    t.add_argument("-w", "--wheel-dir", type=Path, metavar="DIR", help="output directory (default: beside the input)")
    t.add_argument("--remove", action="store_true", help="delete the input once the new wheel is written")
    t.add_argument("--force-tag", action="store_true",
                   help="write a platform tag even when the binaries do not support it")
    t.set_defaults(func=run_tags)

    m = sub.add_parser("merge",
                       description="Merge wheels of one project and version.  Thin macOS wheels (arm64 + x86_64) "
                                   "become one universal2 wheel: Mach-O files at the same path become universal "
                                   "files, identical files are kept once, files of one wheel are kept.  Wheels "
                                   "with identical content become one wheel carrying all their tags.")
    m.add_argument("wheels", nargs="+", type=Path, metavar="WHEEL")
    m.add_argument("-w", "--wheel-dir", type=Path, default=Path("dist"), metavar="DIR",
                   help="output directory (default: dist)")
    m.add_argument("--prefer", choices=PREFER_CHOICES,
                   help="for other files that differ between the wheels: keep the first (or last) wheel's copy")
    m.set_defaults(func=run_merge)


def run_tags(args: argparse.Namespace) -> int:
    for wheel in args.wheels:
        result = retag_wheel(wheel, args.wheel_dir, python_tag=args.python_tag, abi_tag=args.abi_tag,
                             platform_tag=args.platform_tag, build=args.build, force=args.force_tag,
                             remove=args.remove)
        print(f"wrote {result.path}" if result.changed else f"unchanged {result.path}")
    return EXIT_OK


def run_merge(args: argparse.Namespace) -> int:
    result = merge_wheels(args.wheels, args.wheel_dir, prefer=args.prefer,
                          macos_target=os.environ.get("MACOSX_DEPLOYMENT_TARGET"))
    if result.fused:
        print(f"fused {len(result.fused)} Mach-O file(s) into universal files")
    for name in result.preferred:
        print(f"note: {name} differs between the wheels: kept the {args.prefer} wheel's copy")
    print(f"wrote {result.path}")
    return EXIT_OK
