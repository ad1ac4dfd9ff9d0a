"""`dynawheel check`: the zip and metadata checks of :mod:`dynawheel.wheel.check`, plus the wheel's
platform tags judged against its binaries by the one rule (:mod:`dynawheel.platform_tags`): a tag the
content does not support is a problem naming the file and the reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from ..errors import DynawheelError
from ..search import SearchPaths
from ..wheel import check as wheel_check
from ..wheel.check import CheckReport, WheelCheck
from ..wheel.tags import parse_filename
from .content import judge, wheel_content


def tag_problems(path: Path, search: SearchPaths | None = None) -> tuple[str, ...]:
    """Why the binaries of the wheel `path` do not support the platform tags of its file name."""
    try:
        tags = parse_filename(path.name)[3]
    except DynawheelError:
        return ()  # the name itself is reported by the zip checks
    platforms = [p for p in tags.platform.split(".") if p != "any"]
    if not platforms:
        return ()
    try:
        content = wheel_content(path, search)
    except DynawheelError as exc:
        return (f"the binaries cannot be read to judge the platform tag: {exc}",)
    return tuple(f"platform tag {b}" for p in platforms for b in judge(content, p))


def check_wheels(paths: Iterable[str | Path], search: SearchPaths | None = None) -> CheckReport:
    """Validate wheels (zip, RECORD, names, tags, `.data`, paths; platform tags against the binaries)
    and find files that several of them would install."""
    report = wheel_check.check_wheels(paths)
    wheels: list[WheelCheck] = []
    for wheel in report.wheels:
        more = tag_problems(wheel.path, search) if wheel.ok else ()
        wheels.append(replace(wheel, problems=wheel.problems + more) if more else wheel)
    return CheckReport(tuple(wheels), report.conflicts)
