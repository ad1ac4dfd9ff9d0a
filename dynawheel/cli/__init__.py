"""Command line: the only code in dynawheel that prints or exits.

Each sub-module registers its subcommands with ``register(subparsers)`` and sets
``func`` (``Callable[[argparse.Namespace], int]``) on its parser.  Exit codes are
documented in :mod:`dynawheel.errors` and the README.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..errors import EXIT_ERROR, EXIT_INTERNAL, DynawheelError

# command -> the module that registers it: only that module is imported when the command is known
# (importing all of them costs ~60 ms, a fifth of a small repair); anything else imports them all
_COMMANDS = {"build": "build", "check": "build", "show": "show", "repair": "repair", "index": "publish",
             "serve": "publish"}


def _modules(argv: Sequence[str] | None) -> list[Any]:
    args = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in args if not a.startswith("-")), None)
    names = [_COMMANDS[command]] if command in _COMMANDS else ["build", "show", "repair", "publish"]
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynawheel",
        description="Build, repair, audit and publish wheels that ship shared libraries.",
    )
    parser.add_argument("--version", action="version", version=f"dynawheel {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _modules(argv):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(argv)
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
