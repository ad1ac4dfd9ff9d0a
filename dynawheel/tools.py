"""The one wrapper for external tools: failures become ToolError with the tool's own output."""

from __future__ import annotations

import shutil
from collections.abc import Sequence

from .errors import ToolError
from .log import get_logger

log = get_logger(__name__)


def find_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolError(f"{name!r} is not installed: {hint}")
    return path


def run_tool(cmd: Sequence[str], *, input: bytes | None = None, timeout: float = 600) -> bytes:
    """Run `cmd`; return stdout; raise ToolError naming the command, exit code and stderr."""
    import subprocess  # performance: only when a tool runs (importing this module is free for `show`)

    log.debug("running %s", " ".join(cmd))
    try:
        proc = subprocess.run(list(cmd), input=input, capture_output=True, timeout=timeout, check=False)
    except OSError as exc:
        raise ToolError(f"cannot run {cmd[0]!r}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{cmd[0]!r} did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
        raise ToolError(f"{' '.join(cmd[:3])}... failed with exit code {proc.returncode}: {err}")
    return proc.stdout
