"""Command line: the only code in dynawheel that prints or exits.

Each sub-module registers its subcommands with ``register(subparsers)`` and sets
``func`` (``Callable[[argparse.Namespace], int]``) on its parser.  Exit codes are
documented in :mod:`dynawheel.errors` and the README.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import EXIT_ERROR, EXIT_INTERNAL, DynawheelError


def _parser() -> argparse.ArgumentParser:
    from . import build, publish, repair, show

    parser = argparse.ArgumentParser(
        prog="dynawheel",
        description="Build, repair, audit and publish wheels that ship shared libraries.",
    )
    parser.add_argument("--version", action="version", version=f"dynawheel {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (build, show, repair, publish):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose > 1 else
                                               logging.INFO if args.verbose else logging.WARNING)
    logging.basicConfig(level=level, format="dynawheel: %(levelname)s: %(message)s")
    try:
        return int(args.func(args))
    except DynawheelError as exc:
        print(f"dynawheel: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("dynawheel: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: show the traceback, say so
        logging.getLogger("dynawheel").exception("internal error (please report this)")
        return EXIT_INTERNAL
