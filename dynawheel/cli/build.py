"""CLI: `dynawheel build` and `dynawheel check`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import EXIT_FINDINGS, EXIT_OK, UsageError
from ..ops.build import build
from ..ops.check import check_wheels
from ..wheel.build import BuildOptions
from ..wheel.check import CheckReport
from ..wheel.metadata import MetadataOptions
from ..wheel.stage import AddStep
from ..wheel.tags import WheelTags, make_tags, parse_tags
from ..wording import counted
from .options import add_deflate_option


def register(sub: Any) -> None:
    p = sub.add_parser("build",
                       description="Pack STAGE (the tree you want in site-packages, plus NAME-VER.data/) "
                                   "and/or --add copy steps into a wheel.")
    p.add_argument("stage", nargs="?", type=Path, help="staged directory (optional with --add)")
    p.add_argument("-w", "--wheel-dir", type=Path, default=Path("dist"), help="output directory (default: dist)")
    meta = p.add_argument_group("metadata (options override pyproject.toml / METADATA)")
    meta.add_argument("--name")
    meta.add_argument("--version", dest="dist_version", metavar="VERSION")
    meta.add_argument("--summary")
    meta.add_argument("--requires", action="append", default=[], metavar="REQ", help="Requires-Dist (repeatable)")
    meta.add_argument("--requires-python", metavar="SPEC")
    meta.add_argument("--field", action="append", default=[], metavar="KEY:VALUE",
                      help="extra core-metadata field, e.g. 'Classifier: Environment :: Console'")
    meta.add_argument("--pyproject", type=Path, metavar="FILE", help="PEP 621 file (default: STAGE/pyproject.toml)")
    meta.add_argument("--metadata", type=Path, metavar="FILE", help="a ready METADATA file")
    tags = p.add_argument_group("tags (default: py3-none-any; with binaries: the platform tag from their content, "
                                "as repair computes it, and the interpreter's python/ABI tags)")
    tags.add_argument("--tag", metavar="PY-ABI-PLAT", help="e.g. py3-none-any, cp311-cp311-manylinux_2_17_x86_64")
    tags.add_argument("--python-tag")
    tags.add_argument("--abi-tag")
    tags.add_argument("--platform-tag")
    tags.add_argument("--force-tag", action="store_true",
                      help="write a given platform tag even when the binaries do not support it")
    root = tags.add_mutually_exclusive_group()
    root.add_argument("--root-is-purelib", dest="purelib", action="store_const", const=True, default=None)
    root.add_argument("--root-is-platlib", dest="purelib", action="store_const", const=False)
    p.add_argument("--build-number", metavar="N")
    p.add_argument("--compression-level", type=int, default=6, metavar="0-9")
    add_deflate_option(p)
    p.add_argument("--add", action="append", default=[], metavar="SRC:DEST",
                   help="copy SRC (file, dir or glob) to DEST in the wheel; DEST ending in / is a directory")
    p.add_argument("--exclude", action="append", default=[], metavar="REL", help="leave out this stage path")
    p.set_defaults(func=run_build)

    c = sub.add_parser("check")
    c.add_argument("wheels", nargs="+", type=Path, metavar="WHEEL")
    c.add_argument("--json", action="store_true", help="machine-readable report")
    c.set_defaults(func=run_check)


def _tags(args: argparse.Namespace) -> WheelTags | None:
    parts = (args.python_tag, args.abi_tag, args.platform_tag)
    if args.tag and any(parts):
        raise UsageError("give either --tag or --python-tag/--abi-tag/--platform-tag, not both")
    if args.tag:
        return parse_tags(args.tag)
    if any(parts):
        return make_tags(args.python_tag or "py3", args.abi_tag or "none", args.platform_tag or "any")
    return None


def _fields(items: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        key, sep, value = item.partition(":")
        if not sep or not key.strip():
            raise UsageError(f"--field {item!r}: expected KEY:VALUE")
        out.append((key.strip(), value.strip()))
    return tuple(out)


def options_from_args(args: argparse.Namespace) -> BuildOptions:
    return BuildOptions(
        stage=args.stage,
        adds=tuple(AddStep.parse(spec) for spec in args.add),
        metadata=MetadataOptions(
            name=args.name, version=args.dist_version, summary=args.summary, requires=tuple(args.requires),
            requires_python=args.requires_python, extra_fields=_fields(args.field),
        ),
        pyproject=args.pyproject,
        metadata_file=args.metadata,
        tags=_tags(args),
        root_is_purelib=args.purelib,
        build_number=args.build_number,
        compression_level=args.compression_level,
        deflate=args.deflate,
        exclude=tuple(args.exclude),
        force_tag=args.force_tag,
    )


def run_build(args: argparse.Namespace) -> int:
    result = build(options_from_args(args), args.wheel_dir, macos_target=os.environ.get("MACOSX_DEPLOYMENT_TARGET"))
    if args.quiet:  # only errors
        return EXIT_OK
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {result.path}")
    return EXIT_OK


def report_json(report: CheckReport) -> dict[str, Any]:
    return {
        "version": 1,
        "ok": report.ok,
        "wheels": [{"path": str(w.path), "problems": list(w.problems)} for w in report.wheels],
        "conflicts": [{"path": c.path, "wheels": list(c.wheels)} for c in report.conflicts],
    }


def run_check(args: argparse.Namespace) -> int:
    for path in args.wheels:  # a path that is not there is a mistyped argument, not a broken wheel
        if not path.exists():
            raise UsageError(f"no such file: {str(path)!r}")
        if path.is_dir():
            raise UsageError(f"{str(path)!r} is a directory: check takes .whl files")
    report = check_wheels(args.wheels)
    if args.json:
        print(json.dumps(report_json(report), indent=2))
        return EXIT_OK if report.ok else EXIT_FINDINGS
    for wheel in report.wheels:
        print(f"{wheel.path.name}: {'ok' if wheel.ok else counted(len(wheel.problems), 'problem')}")
        for problem in wheel.problems:
            print(f"  - {problem}")
    for conflict in report.conflicts:
        print(f"conflict: {conflict.path} is installed by {', '.join(conflict.wheels)}")
    return EXIT_OK if report.ok else EXIT_FINDINGS
