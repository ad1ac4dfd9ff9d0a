"""Command line: the only code in dynawheel that prints or exits.

Each sub-module registers its subcommands with ``register(subparsers)`` and sets
``func`` (``Callable[[argparse.Namespace], int]``) on its parser.  Exit codes are
documented in :mod:`dynawheel.errors` and the README.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import itertools
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..errors import EXIT_ERROR, EXIT_INTERNAL, DynawheelError
from ..log import DEBUG, ERROR, INFO, WARNING, configure, get_logger

# command -> (the module that registers it, its line in `dynawheel --help`).  Only the module of the
# command given is imported (all of them cost ~130 ms, more than `show` on a small wheel takes in all);
# the other commands are listed by name and help alone, so `--version` and `--help` import none.
_COMMANDS = {
    "build": ("build", "make a wheel from a staged directory (no setup.py)"),
    "check": ("build", "validate wheels; report files that several wheels would install"),
    "show": ("show", "the load chain of every ELF / PE / Mach-O binary"),
    "repair": ("repair", "vendor the libraries binaries need beside them (ELF, PE, Mach-O)"),
    "index": ("publish", "write a static package index (PEP 503/691/658) for a wheelhouse"),
    "serve": ("publish", "serve a wheelhouse as a package index that takes twine uploads"),
    "tags": ("wheelops", "write a wheel under new tags (like `wheel tags`; members copied raw)"),
    "merge": ("wheelops", "fuse thin macOS wheels into universal2, or identical wheels into one"),
}


class _Subcommands:
    """What a command module's ``register`` is given: ``add_parser`` with the command's help line."""

    def __init__(self, sub: Any) -> None:  # argparse._SubParsersAction
        self._sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._sub.add_parser(name, help=_COMMANDS[name][1], **kwargs)
        return parser


def _command(argv: Sequence[str] | None) -> str | None:
    """The command named on the line (the main parser's own options take no values)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return next((a for a in args if not a.startswith("-")), None)


def _only_verbosity_first(argv: Sequence[str] | None) -> bool:
    """Whether the main parser's options before the command are only -v/-q (spelled whole): it then parses the
    command given and prints neither its help nor its list of commands, and the commands not given need no
    parser (performance: ~0.8 M instructions each, with its -v/-q; ~6 M of a repair's start)."""
    args = sys.argv[1:] if argv is None else list(argv)
    before = itertools.takewhile(lambda a: a.startswith("-"), args)
    return all(a in ("--verbose", "-q", "--quiet") or (len(a) > 1 and a == "-" + "v" * (len(a) - 1)) for a in before)


def _parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dynawheel",
        description="Build, repair, audit and publish wheels that ship shared libraries.",
    )
    parser.add_argument("--version", action="version", version=f"dynawheel {__version__}")
    _add_verbosity(parser, default=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    given = _COMMANDS.get(_command(argv) or "")
    listed = given is None or not _only_verbosity_first(argv)
    for name, (module, line) in _COMMANDS.items():
        if name in sub.choices:
            continue  # registered with its module's other command
        if given is not None and module == given[0]:
            importlib.import_module(f"{__name__}.{module}").register(_Subcommands(sub))
        elif listed:
            sub.add_parser(name, help=line)  # listed only: a command not given is never parsed
    for command in sub.choices.values():  # `dynawheel repair -v ...` as well as `dynawheel -v repair ...`
        _add_verbosity(command, default=False)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, *, default: bool) -> None:
    """-v/-q; a subcommand's own leave the values of the main parser alone unless they are given, and a
    subcommand that gives one of these letters its own meaning (serve -q: no access log) keeps it."""
    g = parser.add_argument_group("verbosity")
    taken = set(parser._option_string_actions)
    if not taken & {"-v", "--verbose"}:
        g.add_argument("-v", "--verbose", action="count", default=0 if default else argparse.SUPPRESS,
                       help="more log output (-vv: debug)")
    if not taken & {"-q", "--quiet"}:
        g.add_argument("-q", "--quiet", action="store_true", default=False if default else argparse.SUPPRESS,
                       help="only errors: no progress, notes or 'wrote'/'repaired' lines")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line; return its exit code (for tests and embedding: see `program`)."""
    return _run(_parse(argv))


def program() -> NoReturn:
    """The `dynawheel` program (console script and ``python -m dynawheel``): `main` tuned for a
    short-lived process.  Start-up imports create ~100k long-lived objects and no garbage, so the
    collector is off until they are in (saves ~30 collections, ~8 ms) and then freezes them; at
    the end the streams are flushed and the process exits without tearing the interpreter down
    (~15 ms: every output is already complete and renamed into place, every temporary directory
    removed by its context manager, and no worker thread outlives its command)."""
    gc.disable()
    try:
        args = _parse(None)
    finally:
        gc.freeze()
        gc.enable()
    code = _run(args)
    if "logging" in sys.modules:  # imported only when a record was emitted (dynawheel.log)
        sys.modules["logging"].shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (dynawheel show | head): nothing left to say
            code = code or EXIT_ERROR
    os._exit(code)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = _parser(argv)
    args = parser.parse_args(argv)
    level = ERROR if args.quiet else (DEBUG if args.verbose > 1 else INFO if args.verbose else WARNING)

    def setup() -> None:
        import logging

        logging.basicConfig(level=level, format="dynawheel: %(levelname)s: %(message)s")

    configure(level, setup)  # performance: logging is imported when a record at `level` is emitted
    return args


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except DynawheelError as exc:
        print(f"dynawheel: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("dynawheel: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: show the traceback, say so
        get_logger("dynawheel").exception("internal error (please report this)")
        return EXIT_INTERNAL
