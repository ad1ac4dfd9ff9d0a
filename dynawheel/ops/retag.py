"""`dynawheel tags`: a wheel under new tags, like ``wheel tags``, with its members copied raw.

Each of --python-tag/--abi-tag/--platform-tag takes ``TAG`` (replace), ``+TAG`` (add) or ``-TAG``
(remove); several tags are joined with dots.  WHEEL and RECORD are rewritten, everything else is
copied as compressed bytes (no inflate, no deflate), the file gets the name of its new tags.  A
platform tag that the binaries do not support (the rule of :mod:`dynawheel.platform_tags`, the one
`check` applies) is refused with its reasons unless ``force``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import OutputError, TagError
from ..search import SearchPaths
from ..wheel.rewrite import OpenWheel, open_wheel, output_path, write_from
from ..wheel.tags import WheelTags, make_tags
from .content import judge, wheel_content

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetagResult:
    path: Path
    tags: WheelTags
    build: str | None
    changed: bool  # False: the tags asked for are the wheel's own; nothing was written


def change_tags(current: str, change: str | None, kind: str) -> str:
    """`current` (a dotted set) changed by `change`: 'TAG' replaces, '+TAG' adds, '-TAG' removes."""
    if change is None:
        return current
    parts = current.split(".")
    if change.startswith("+"):
        new = parts + [t for t in change[1:].split(".") if t not in parts]
    elif change.startswith("-"):
        drop = set(change[1:].split("."))
        unknown = sorted(drop - set(parts))
        if unknown:
            raise TagError(f"--{kind}-tag {change!r}: the wheel has no {kind} tag {', '.join(unknown)} "
                           f"(it has {current})")
        new = [p for p in parts if p not in drop]
        if not new:
            raise TagError(f"--{kind}-tag {change!r} would leave no {kind} tag")
    else:
        new = change.split(".")
    if any(not t for t in new):
        raise TagError(f"--{kind}-tag {change!r}: empty tag")
    return ".".join(sorted(dict.fromkeys(new)))


def new_tags(old: WheelTags, python: str | None, abi: str | None, platform: str | None) -> WheelTags:
    return make_tags(change_tags(old.python, python, "python"), change_tags(old.abi, abi, "abi"),
                     change_tags(old.platform, platform, "platform"))


def refuse_unsupported(wheel: Path, old: WheelTags, tags: WheelTags, search: SearchPaths | None) -> None:
    """TagError when a platform tag added to `old` is one the wheel's binaries do not support."""
    added = [p for p in tags.platform.split(".") if p not in old.platform.split(".")]
    if not added:
        return
    content = wheel_content(wheel, search)
    problems = [b for p in added for b in judge(content, p)]
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise TagError(f"{wheel.name}: the content does not support platform tag "
                       f"{'.'.join(added)!r}: " + "; ".join(problems[:8]) + more
                       + " (--force-tag writes it anyway)")


def retag_wheel(
    wheel: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    python_tag: str | None = None,
    abi_tag: str | None = None,
    platform_tag: str | None = None,
    build: str | None = None,
    force: bool = False,
    remove: bool = False,
    search: SearchPaths | None = None,
) -> RetagResult:
    """Write `wheel` under new tags into `out_dir` (default: beside it); return where.

    `build`: a new build number ('' removes it; None keeps the wheel's).  `force`: write a platform
    tag the content does not support.  `remove`: delete the input once the new wheel is in place."""
    src = Path(wheel)
    with open_wheel(src) as opened:
        tags = new_tags(opened.tags, python_tag, abi_tag, platform_tag)
        number = opened.build if build is None else (build or None)
        dest = output_path(opened, Path(out_dir) if out_dir is not None else src.parent, tags, number)
        if _same_file(dest, src):
            return RetagResult(src, tags, number, changed=False)
        if not force:
            refuse_unsupported(src, opened.tags, tags, search)
        _write(opened, dest, tags, number)
    if remove:
        try:
            src.unlink()
        except OSError as exc:
            raise OutputError(f"wrote {dest.name} but cannot remove {str(src)!r}: {exc.strerror}") from None
    return RetagResult(dest, tags, number, changed=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _write(opened: OpenWheel, dest: Path, tags: WheelTags, number: str | None) -> None:
    write_from(opened, dest, tags, number)
    log.info("retagged %s -> %s", opened.path.name, dest.name)
