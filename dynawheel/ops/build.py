"""`dynawheel build` with the platform tag from content: the stage's binaries are analysed as repair
analyses a tree, and the one rule (:mod:`dynawheel.platform_tags`) gives the tag or refuses a given one."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ParamSpec

from ..platform_tags import Content
from ..search import SearchPaths
from ..wheel import build as wheel_build
from ..wheel.build import BuildOptions, BuildResult
from .content import MappedTree, best, judge, tree_content


@dataclass
class ContentRule:
    """The tag rule for a build: the stage's files analysed once (with `search`), then judged.
    `macos_target`: MACOSX_DEPLOYMENT_TARGET, as for repair."""

    search: SearchPaths | None = None
    macos_target: str | None = None
    _seen: dict[tuple[tuple[str, str], ...], Content] = field(default_factory=dict)

    def content(self, files: Mapping[str, Path]) -> Content:
        key = tuple(sorted((rel, os.fspath(src)) for rel, src in files.items()))
        if key not in self._seen:
            self._seen[key] = tree_content(MappedTree(files), self.search)
        return self._seen[key]

    def platform(self, files: Mapping[str, Path]) -> str | None:
        return best(self.content(files), self.macos_target)

    def blockers(self, files: Mapping[str, Path], platform: str) -> tuple[str, ...]:
        return judge(self.content(files), platform)


def build(opts: BuildOptions, out_dir: Path, search: SearchPaths | None = None,
          macos_target: str | None = None) -> BuildResult:
    """:func:`dynawheel.wheel.build.build` with the content rule (unless `opts` brings its own)."""
    if opts.tag_rule is None:
        opts = replace(opts, tag_rule=ContentRule(search, macos_target))
    return wheel_build.build(opts, out_dir)


_P = ParamSpec("_P")


def _content_rule_default(layer: Callable[_P, Path]) -> Callable[_P, Path]:
    """`layer` (the wheel layer's build_wheel) with the content rule as its `tag_rule` unless one is given:
    the same signature, which type checkers (ParamSpec) and help()/inspect (``__wrapped__``) see."""

    @functools.wraps(layer)
    def build_wheel(*args: _P.args, **options: _P.kwargs) -> Path:
        options.setdefault("tag_rule", ContentRule())
        return layer(*args, **options)

    build_wheel.__doc__ = """Build a wheel and return its path; the platform tag comes from the binaries (the content
    rule, unless `tag_rule` is given; ``force_tag=True`` writes a given tag the content does not support)."""
    return build_wheel


build_wheel = _content_rule_default(wheel_build.build_wheel)
