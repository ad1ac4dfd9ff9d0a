"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..search import SearchPaths


def add_deflate_option(p: Any) -> None:  # a parser or an argument group
    """--deflate; its default comes from $DYNAWHEEL_DEFLATE (read here, in the CLI, not in the library)."""
    from ..wheel.zipwriter import DEFLATE_CHOICES  # performance: not for `show`

    p.add_argument("--deflate", choices=DEFLATE_CHOICES, default=os.environ.get("DYNAWHEEL_DEFLATE", "auto"),
                   help="deflate implementation: auto (libdeflate for members up to 128 MiB: ~3x zlib's speed, "
                        "size within ~1%%; zlib-ng for larger ones: ~2.4x, ~2%% larger; each when installed), "
                        "libdeflate, zlib-ng, or zlib (the standard library's bytes); "
                        "default $DYNAWHEEL_DEFLATE or auto")


def add_search_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where loaders look (default: this host's paths)")
    g.add_argument("-L", "--lib-path", action="append", default=[], metavar="DIR", help="search DIR first")
    g.add_argument("--no-system-paths", action="store_true", help="hermetic: only the tree and -L dirs")
    g.add_argument("--sysroot", default="/", help="read paths outside the tree below this root")
    g.add_argument("--glibc-hwcaps", type=_hwcaps_levels, metavar="LEVELS",
                   help="glibc: the glibc-hwcaps subdirectories the target CPU supports, best first, "
                        "comma-separated (x86-64-v3,x86-64-v2), or 'none'; also the x86 ISA levels its "
                        "glibc (>= 2.33) lets a library need; default: this host's CPU's")
    g.add_argument("--dll-dir", action="append", default=[], metavar="DIR",
                   help="Windows: a directory added with os.add_dll_directory; relative: a directory of the "
                        "tree or wheel (pywin32_system32), absolute: a host directory")
    g.add_argument("--windows-path", action="append", default=[], metavar="DIR",
                   help="Windows: search PATH too (as Python <= 3.7 did; hits are flagged)")
    g.add_argument("--executable-path", metavar="DIR", help="macOS: what @executable_path means")


def _hwcaps_levels(text: str) -> tuple[str, ...]:
    levels = tuple(part.strip() for part in text.split(","))
    if text.strip() == "none":
        return ()
    if not all(levels) or any("/" in level or level in (".", "..") for level in levels):
        raise argparse.ArgumentTypeError(f"not a comma-separated list of glibc-hwcaps names: {text!r}")
    return levels


def search_from_args(args: argparse.Namespace) -> SearchPaths:
    from dataclasses import replace

    from ..search import host_glibc_hwcaps, host_isa_check

    # a sysroot runs on this host's CPU unless --glibc-hwcaps says otherwise; its glibc's legacy
    # hwcaps subdirectories are not assumed (this host's glibc is not the root's).  --glibc-hwcaps
    # describes a glibc >= 2.33 target: its levels are also the ISA levels its loader checks.
    base = (SearchPaths.from_host() if args.sysroot == "/"
            else SearchPaths(elf_hwcaps=host_glibc_hwcaps(), elf_isa_check=host_isa_check()))
    given = getattr(args, "glibc_hwcaps", None)
    hwcaps, isa_check = (base.elf_hwcaps, base.elf_isa_check) if given is None else (given, True)
    return replace(base, sysroot=args.sysroot, extra=tuple(args.lib_path), use_system=not args.no_system_paths,
                   elf_hwcaps=hwcaps, elf_isa_check=isa_check,
                   dll_directories=tuple(args.dll_dir), windows_path=tuple(args.windows_path),
                   executable_path=args.executable_path)


def add_isa_option(parser: Any) -> None:
    """--disable-isa-check (auditwheel's spelling --disable-isa-ext-check too)."""
    parser.add_argument("--disable-isa-check", "--disable-isa-ext-check", dest="disable_isa_check",
                        action="store_true",
                        help="do not refuse manylinux/musllinux for ELF files whose GNU property note needs an "
                             "x86-64 level above the baseline (x86-64-v2/v3/v4)")
