"""CLI: ``dynawheel index`` and ``dynawheel serve``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..errors import EXIT_FINDINGS, EXIT_OK, UsageError
from ..publish.index import STATUSES, IndexResult, ProjectStatus, build_index, normalize_name
from ..wording import counted

if TYPE_CHECKING:  # `dynawheel index` does not import the server (a no-op index run is mostly start-up)
    from ..publish.serve import IndexServer

_MAX_UPLOAD_HELP = 512 * 1024 * 1024  # serve.DEFAULT_MAX_UPLOAD, shown in --help (tests/test_index.py checks it)


def register(sub: Any) -> None:  # argparse._SubParsersAction
    index = sub.add_parser("index",
                           description="Write simple/ pages, PEP 691 JSON and .metadata files for WHEELHOUSE.")
    index.add_argument("wheelhouse", type=Path, metavar="WHEELHOUSE")
    index.add_argument("-o", "--output", type=Path, metavar="SITE",
                       help="where to write the site (default: the wheelhouse itself; files go to SITE/files/)")
    index.add_argument("--flat", action="store_true",
                       help="SITE/<name>/{index.html,*.whl}: serve SITE with any static server as --index-url")
    index.add_argument("--yank", action="append", default=[], metavar="FILE[=REASON]",
                       help="mark a file as yanked (PEP 592); repeatable")
    index.add_argument("--status", action="append", default=[], metavar="PROJECT=STATUS[:REASON]",
                       help="PEP 792 project status: active, archived (no uploads), quarantined (no files, no "
                            "uploads) or deprecated; repeatable")
    index.add_argument("--base-url", metavar="URL",
                       help="the site's public https URL: PEP 740 provenance links become absolute (default: "
                            "relative to the page)")
    index.add_argument("--no-cache", action="store_true",
                       help="read and hash every file again (the cache in SITE is rewritten either way)")
    index.set_defaults(func=_index)

    serve = sub.add_parser("serve",
                           description="Serve WHEELHOUSE to pip/uv (HTML + PEP 691 JSON) and accept twine uploads.")
    serve.add_argument("wheelhouse", type=Path, metavar="WHEELHOUSE", nargs="?")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=8087, help="port (0 = any free one; default: %(default)s)")
    serve.add_argument("--password-file", type=Path, metavar="FILE", help="users allowed to upload (see --add-user)")
    serve.add_argument("--allow-anonymous-upload", action="store_true", help="accept uploads without a password")
    serve.add_argument("--allow-overwrite", action="store_true", help="let an upload replace an existing file")
    serve.add_argument("--max-upload-size", type=int, metavar="BYTES",
                       help=f"largest accepted upload request (default: {_MAX_UPLOAD_HELP})")
    serve.add_argument("--base-url", metavar="URL",
                       help="the server's public https URL (e.g. behind a TLS proxy): absolute PEP 740 provenance "
                            "links (default: relative to the page)")
    serve.add_argument("--add-user", metavar="NAME",
                       help="add NAME to --password-file (password from --password, stdin or a prompt) and exit")
    serve.add_argument("--password", help="password for --add-user (visible in the process list: prefer stdin)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes serving the same port, like a web server's workers (POSIX; default: 1)")
    serve.add_argument("-q", "--quiet", dest="no_access_log", action="store_true",
                       help="no access log (by default one line per request, common log format, on stderr)")
    serve.set_defaults(func=_serve)


def _parse_yanks(values: list[str]) -> dict[str, str]:
    yanked = {}
    for value in values:
        name, _, reason = value.partition("=")
        if not name:
            raise UsageError(f"--yank needs FILE or FILE=REASON: {value!r}")
        yanked[name] = reason
    return yanked


def _parse_statuses(values: list[str]) -> dict[str, ProjectStatus]:
    statuses = {}
    for value in values:
        project, sep, rest = value.partition("=")
        status, _, reason = rest.partition(":")
        if not project or not sep or status not in STATUSES:
            raise UsageError(f"--status needs PROJECT=STATUS[:REASON] with STATUS one of {', '.join(STATUSES)}: "
                             f"{value!r}")
        statuses[normalize_name(project)] = ProjectStatus(status, reason or None)
    return statuses


def _index(args: argparse.Namespace) -> int:
    result = build_index(args.wheelhouse, args.output, flat=args.flat, yanked=_parse_yanks(args.yank),
                         use_cache=not args.no_cache, statuses=_parse_statuses(args.status), base_url=args.base_url)
    _report(result)
    return EXIT_OK if result.ok else EXIT_FINDINGS


def _report(result: IndexResult) -> None:
    files, projects = counted(len(result.files), "file"), counted(len(result.projects), "project")
    print(f"index: {files} in {projects} at {result.simple}/ "
          f"({len(result.written)} written, {len(result.removed)} removed)")
    for skipped in result.skipped:
        print(f"skipped: {skipped.path.name}: {skipped.reason}", file=sys.stderr)
    for conflict in result.conflicts:
        names = ", ".join(p.name for p in conflict.files)
        print(f"conflict: {conflict.reason}: {names} (left out of the index)", file=sys.stderr)
    for name in result.unknown_yanked:
        print(f"warning: --yank names no indexed file: {name}", file=sys.stderr)


def _serve(args: argparse.Namespace) -> int:
    from ..publish.serve import DEFAULT_MAX_UPLOAD, ServeConfig, make_server, serve_forever

    if args.add_user:
        return _add_user(args)
    if args.wheelhouse is None:
        raise UsageError("serve needs a WHEELHOUSE (or --add-user NAME --password-file FILE)")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers must be between 1 and 64: {args.workers}")
    config = ServeConfig(password_file=args.password_file, allow_anonymous_upload=args.allow_anonymous_upload,
                         allow_overwrite=args.allow_overwrite,
                         max_upload_size=DEFAULT_MAX_UPLOAD if args.max_upload_size is None else args.max_upload_size,
                         base_url=args.base_url)
    if not (args.no_access_log or args.quiet):
        _access_log_to_stderr()
    server = make_server(args.wheelhouse, args.host, args.port, config)
    _pin_malloc_threshold()
    print(_banner(server), flush=True)
    with _stop_on_signals():
        serve_forever(server, args.workers)
    print("dynawheel: server stopped", file=sys.stderr)
    return EXIT_OK


def _pin_malloc_threshold() -> None:
    """glibc raises its mmap threshold to the largest block freed (scrypt's 16 MiB, a 1 MiB read of an
    upload being checked), after which freed buffers linger in each thread's arena: 8 concurrent
    uploads then peak at 60-130 MB instead of ~60.  The server pins it at the default 128 KiB."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (musl has no mallopt: AttributeError)


def _access_log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    access = logging.getLogger("dynawheel.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    access.propagate = False


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    import signal

    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM stop the server, even when SIGINT came in ignored (``serve ... &`` from a script)."""
    import signal

    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _add_user(args: argparse.Namespace) -> int:
    from ..publish.serve import add_user

    if args.password_file is None:
        raise UsageError("--add-user needs --password-file FILE")
    password = args.password
    if password is None:
        if sys.stdin.isatty():
            import getpass

            password = getpass.getpass(f"password for {args.add_user}: ")
        else:
            password = sys.stdin.readline().rstrip("\r\n")
    add_user(args.password_file, args.add_user, password)
    print(f"user {args.add_user} written to {args.password_file}")
    return EXIT_OK


def _public_url(server: IndexServer) -> tuple[str, str]:
    """The URL to tell clients, and its host (a wildcard bind address becomes this machine's name)."""
    import socket

    host, port = str(server.server_address[0]), int(server.server_address[1])
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/", host


def _banner(server: IndexServer) -> str:
    url, host = _public_url(server)
    config = server.config
    user = "NAME" if config.password_file else "anonymous"
    refused = config.password_file is None and not config.allow_anonymous_upload
    uploads = "uploads refused: no --password-file" if refused else f"uploads: twine to {url}"
    lines = [
        f"dynawheel: serving {server.wheelhouse} at {url}simple/ ({uploads}; Ctrl-C stops)",
        "",
        "install:",
        f"  pip install --index-url {url}simple/ NAME",
        "make it pip's only index (nothing is ever looked up on PyPI):",
        f"  pip config set global.index-url {url}simple/",
        "or add it beside PyPI (then a same-named project on PyPI competes: dependency confusion):",
        f"  pip config set global.extra-index-url {url}simple/",
        "plain http from another machine also needs:",
        f"  pip config set global.trusted-host {host}",
    ]
    if refused:  # no upload instructions for a server that refuses uploads
        return "\n".join(lines)
    return "\n".join([*lines,
        "",
        "upload with twine: put this in ~/.pypirc, then `twine upload --repository dynawheel dist/*`",
        "  [distutils]",
        "  index-servers = dynawheel",
        "  [dynawheel]",
        f"  repository = {url}",
        f"  username = {user}",
    ])
