"""CLI: `dynawheel show` (the load chain of every binary)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..audit import audit, to_dot, to_json, to_text
from ..errors import EXIT_FINDINGS, EXIT_OK, UsageError
from ..search import SearchPaths
from ..tools import find_tool, run_tool


def register(sub: Any) -> None:
    p = sub.add_parser("show", help="the load chain of every ELF / PE / Mach-O binary",
                       description="Show, for every binary in PATH (a .whl, a staged or installed directory, or "
                                   "one file), what it needs, where each dependency resolves by its loader's "
                                   "rules (in the tree, system, external, MISSING) and where it looked.")
    p.add_argument("path", type=Path)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="versioned JSON (schema: dynawheel/data/show-schema.json)")
    out.add_argument("--dot", action="store_true", help="Graphviz DOT")
    out.add_argument("--svg", type=Path, metavar="FILE", help="render the graph to FILE with Graphviz's dot")
    add_search_options(p)
    p.set_defaults(func=run_show)


def add_search_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where loaders look (default: this host's paths)")
    g.add_argument("-L", "--lib-path", action="append", default=[], metavar="DIR", help="search DIR first")
    g.add_argument("--no-system-paths", action="store_true", help="hermetic: only the tree and -L dirs")
    g.add_argument("--sysroot", default="/", help="read paths outside the tree below this root")
    g.add_argument("--dll-dir", action="append", default=[], metavar="DIR",
                   help="Windows: a directory added with os.add_dll_directory")
    g.add_argument("--windows-path", action="append", default=[], metavar="DIR",
                   help="Windows: search PATH too (as Python <= 3.7 did; hits are flagged)")
    g.add_argument("--executable-path", metavar="DIR", help="macOS: what @executable_path means")


def search_from_args(args: argparse.Namespace) -> SearchPaths:
    from dataclasses import replace

    base = SearchPaths.from_host() if args.sysroot == "/" else SearchPaths()
    return replace(base, sysroot=args.sysroot, extra=tuple(args.lib_path), use_system=not args.no_system_paths,
                   dll_directories=tuple(args.dll_dir), windows_path=tuple(args.windows_path),
                   executable_path=args.executable_path)


def run_show(args: argparse.Namespace) -> int:
    if not args.path.exists():
        raise UsageError(f"no such file or directory: {str(args.path)!r}")
    report = audit(args.path, search_from_args(args))
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    elif args.dot:
        print(to_dot(report), end="")
    elif args.svg:
        dot = find_tool("dot", "install Graphviz (Debian: apt-get install graphviz) or use --dot")
        svg = run_tool([dot, "-Tsvg"], input=to_dot(report).encode())
        from ..fsutil import atomic_output

        with atomic_output(args.svg) as fp:
            fp.write(svg)
        print(f"wrote {args.svg}")
    else:
        sys.stdout.write(to_text(report))
    return EXIT_OK if report.ok else EXIT_FINDINGS
