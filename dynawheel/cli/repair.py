"""CLI: `dynawheel repair` (vendor the libraries binaries need beside them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import EXIT_FINDINGS, EXIT_OK, UsageError
from ..repair.collect import Choices
from ..repair.options import RepairOptions
from ..repair.pipeline import RepairResult, repair_tree, repair_wheel
from ..wording import counted
from .options import add_deflate_option, add_isa_option, add_search_options, search_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("repair",
                       description="Copy every non-system library the binaries of TARGET need next to them, "
                                   "rewrite RUNPATH ($ORIGIN) / install names (@loader_path) / DLL imports, add the "
                                   "Windows os.add_dll_directory shim where needed, and retag wheels.")
    p.add_argument("targets", nargs="+", type=Path, metavar="TARGET", help="a staged directory, or .whl files")
    p.add_argument("--collect-deps", action="store_true", help="vendor dependencies (the default action)")
    out = p.add_argument_group("output")
    out.add_argument("-w", "--wheel-dir", type=Path, default=Path("wheelhouse"),
                     help="for wheels (default: wheelhouse)")
    out.add_argument("-o", "--output", type=Path, metavar="DIR", help="for a staged directory: write the result here")
    out.add_argument("--in-place", action="store_true", help="for a staged directory: modify it")
    out.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    out.add_argument("--json", action="store_true", help="with --dry-run: the plan as JSON")
    ch = p.add_argument_group("choices")
    ch.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="do not vendor (prunes its subtree)")
    ch.add_argument("--include", action="append", default=[], metavar="GLOB", help="vendor even a system library")
    ch.add_argument("--no-mangle", action="append", default=[], metavar="GLOB", help="keep this library's name")
    ch.add_argument("--no-mangle-all", action="store_true", help="keep every vendored library's name")
    ch.add_argument("--lib-dir", default="", metavar="DIR", help="shared directory (default: <dist>.libs)")
    ch.add_argument("--allow-missing", action="store_true", help="go on when a library cannot be found")
    ch.add_argument("--allow-abi3-violations", action="store_true",
                    help="repair a wheel tagged abi3/abi3t although it uses symbols outside that stable ABI")
    ch.add_argument("--provided-by", action="append", default=[], type=Path, metavar="WHEEL",
                    help="libraries this wheel installs are not vendored; a Requires-Dist on it is added")
    ch.add_argument("--plat", metavar="TAG", help="ELF policy to meet (default: the best the tree qualifies for)")
    add_isa_option(ch)
    ch.add_argument("--name", help="distribution name of a staged directory (for <dist>.libs)")
    ch.add_argument("--no-sbom", action="store_true",
                    help="do not write .dist-info/sboms/dynawheel.cdx.json (the CycloneDX SBOM of the vendored "
                         "libraries, PEP 770)")
    ch.add_argument("--compression-level", type=int, default=6, metavar="0-9")
    add_deflate_option(ch)
    ch.add_argument("--elf-editor", choices=("auto", "patchelf"), default="auto",
                    help="auto (default): shared libraries are edited in this process, executables by patchelf; "
                         "patchelf: every ELF file by patchelf")
    add_search_options(p)
    p.set_defaults(func=run_repair)


def _progress(args: argparse.Namespace) -> Any:
    if args.quiet or os.environ.get("CI") or not sys.stderr.isatty():
        return None
    return lambda message: print(f"dynawheel: {message}", file=sys.stderr, flush=True)


def options_from_args(args: argparse.Namespace) -> RepairOptions:
    choices = Choices(exclude=tuple(args.exclude), include=tuple(args.include), no_mangle=tuple(args.no_mangle),
                      mangle=not args.no_mangle_all, lib_dir=args.lib_dir, allow_missing=args.allow_missing)
    search = search_from_args(args)  # -L DIR relative to the working directory, as a user means it
    search = replace(search, extra=tuple(os.path.abspath(d) for d in search.extra))
    return RepairOptions(choices=choices, search=search, plat=args.plat,
                         macos_target=os.environ.get("MACOSX_DEPLOYMENT_TARGET"),
                         provided_by=tuple(args.provided_by), compression_level=args.compression_level,
                         deflate=args.deflate, elf_editor=args.elf_editor,
                         dry_run=args.dry_run, sbom=not args.no_sbom, allow_abi3_violations=args.allow_abi3_violations,
                         isa_check=not args.disable_isa_check,
                         progress=_progress(args))


def plan_json(result: RepairResult) -> dict[str, Any]:
    return {
        "version": 1,
        "target": str(result.target),
        "tags": str(result.tags) if result.tags else None,
        "vendored": [{"source": v.source, "dest": v.dest, "name": v.name, "requested_as": list(v.requests),
                      "needed_by": list(v.consumers)} for v in result.collection.vendored],
        "provided": [{"needed_by": d, "request": r, "path": p} for d, r, p in result.collection.provided],
        "edits": {rel: {"renames": e.renames, "runpath": e.runpath, "own_name": e.own_name,
                        "delete_rpaths": list(e.delete_rpaths)} for rel, e in sorted(result.plan.files.items())},
        "shim": {"init_files": {k: list(v) for k, v in result.shim.init_files.items()},
                 "pth_dirs": list(result.shim.pth_dirs)},
    }


def _print_plan(result: RepairResult) -> None:
    print(f"{result.target}:")
    for v in result.collection.vendored:
        print(f"  vendor {v.source} -> {v.dest} (for {', '.join(v.consumers)})")
    for dependent, request, path in result.collection.provided:
        print(f"  provided by another wheel: {request} -> {path} (for {dependent})")
    for rel, e in sorted(result.plan.files.items()):
        bits = [f"{o} -> {n}" for o, n in sorted(e.renames.items())]
        if e.runpath is not None:
            bits.append(f"search path {':'.join(e.runpath) or '(none)'}")
        if e.own_name:
            bits.append(f"own name {e.own_name}")
        bits += [f"drop rpath {r}" for r in e.delete_rpaths]
        print(f"  patch {rel}: {'; '.join(bits)}")
    for init, dirs in result.shim.init_files.items():
        print(f"  shim in {init}: os.add_dll_directory({', '.join(dirs)})")
    if result.tags:
        print(f"  tags: {result.tags}")


def _missing(results: list[RepairResult]) -> list[dict[str, Any]]:
    unique = {(e.dependent, e.request.name): e for r in results for e in r.collection.missing_allowed}
    return [{"request": e.request.name, "needed_by": e.dependent,
             "searched": [f"{a.path} ({a.via}): {a.outcome}" for a in e.tried]} for e in unique.values()]


def _report_dry_run(args: argparse.Namespace, results: list[RepairResult], strict: bool) -> int:
    """Print the plan; exit 3 when libraries are missing (and --allow-missing was not given)."""
    missing = _missing(results)
    if args.json:
        print(json.dumps([{**plan_json(r), "missing": _missing([r])} for r in results], indent=2))
    else:
        for result in results:
            _print_plan(result)
    if not (missing and strict):
        return EXIT_OK
    for m in missing:  # one line per library, then one per place searched
        print(f"dynawheel: missing: {m['request']!r} needed by {m['needed_by']!r}"
              f"{', searched:' if m['searched'] else ': nowhere to look'}", file=sys.stderr)
        for place in m["searched"]:
            print(f"    {place}", file=sys.stderr)
    return EXIT_FINDINGS


def run_repair(args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    strict = not opts.choices.allow_missing
    if args.dry_run:  # a plan in spite of missing libraries; they are reported and the exit code says so
        opts = replace(opts, choices=replace(opts.choices, allow_missing=True))
    wheels = [t for t in args.targets if t.suffix == ".whl"]
    dirs = [t for t in args.targets if t.suffix != ".whl"]
    if (wheels and dirs) or len(dirs) > 1:
        raise UsageError("give one staged directory, or one or more .whl files")
    if dirs and not args.dry_run and (args.output is None) == (not args.in_place):
        raise UsageError("for a staged directory give exactly one of -o DIR and --in-place")
    results = [repair_wheel(w, args.wheel_dir, opts) for w in wheels] or [
        repair_tree(dirs[0], args.output, opts, in_place=args.in_place, dist=args.name)]
    if args.dry_run:
        return _report_dry_run(args, results, strict)
    for result in [] if args.quiet else results:  # -q: only errors
        for note in result.notes:
            print(f"note: {note}", file=sys.stderr)
        if result.licenses.missing:
            libs = counted(len(result.licenses.missing), "vendored library", "vendored libraries")
            print(f"note: no license file found for {libs} (package unknown, or it ships none): "
                  f"{', '.join(result.licenses.missing)}", file=sys.stderr)
        vendored = len(result.collection.vendored)
        print(f"repaired {result.target} -> {result.output} ({vendored} vendored)")
    return EXIT_OK
