"""CLI: `dynawheel show` (the load chain of every binary)."""

from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any

from ..errors import EXIT_FINDINGS, EXIT_OK, UsageError
from ..report import audit, audit_to_print, to_dot, to_json, to_text
from .options import add_isa_option, add_search_options, search_from_args


def register(sub: Any) -> None:
    p = sub.add_parser("show",
                       description="Show, for every binary in PATH (a .whl, a staged or installed directory, or "
                                   "one file), what it needs, where each dependency resolves by its loader's "
                                   "rules (in the tree, system, external, MISSING) and where it looked.")
    p.add_argument("path")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="versioned JSON (schema: dynawheel/data/show-schema.json)")
    out.add_argument("--dot", action="store_true", help="Graphviz DOT")
    out.add_argument("--svg", metavar="FILE", help="render the graph to FILE with Graphviz's dot")
    add_isa_option(p)
    add_search_options(p)
    p.set_defaults(func=run_show)


def run_show(args: argparse.Namespace) -> int:
    if not os.path.exists(args.path):
        raise UsageError(f"no such file or directory: {args.path!r}")
    # Performance: show builds a few hundred thousand objects that live to its end and makes next to no cyclic
    # garbage, so the cycle collector only rescans them (show /usr/lib/x86_64-linux-gnu: ~300 collections,
    # ~10 % of its CPU time); it is off while the report is made and printed.
    gc.disable()
    try:
        return _show(args)
    finally:
        gc.enable()


def _show(args: argparse.Namespace) -> int:
    text = not (args.json or args.dot or args.svg)
    report = (audit_to_print if text else audit)(args.path, search_from_args(args),
                                                 isa_check=not args.disable_isa_check)
    single = os.path.isfile(args.path) and not str(args.path).endswith(".whl")
    if single and not report.analysis.tree_binaries and not report.analysis.bad:
        raise UsageError(f"{str(args.path)!r} is not a binary (not an ELF, PE or Mach-O file): show reads a binary, "
                         "a .whl or a directory")
    if args.json:
        import json

        print(json.dumps(to_json(report), indent=2))
    elif args.dot:
        print(to_dot(report), end="")
    elif args.svg:
        from ..tools import find_tool, run_tool  # performance: subprocess only when it runs

        dot = find_tool("dot", "install Graphviz (Debian: apt-get install graphviz) or use --dot")
        svg = run_tool([dot, "-Tsvg"], input=to_dot(report).encode())
        from ..fsutil import atomic_output

        with atomic_output(args.svg) as fp:
            fp.write(svg)
        print(f"wrote {args.svg}")
    else:
        sys.stdout.write(to_text(report))
    return EXIT_OK if report.ok else EXIT_FINDINGS
