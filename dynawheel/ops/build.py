"""`dynawheel build` with the platform tag from content: the stage's binaries are analysed as repair
analyses a tree, and the one rule (:mod:`dynawheel.platform_tags`) gives the tag or refuses a given one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

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


def build_wheel(stage: str | Path | None, out_dir: str | Path = "dist", **options: Any) -> Path:
    """Build a wheel and return its path; the platform tag comes from the binaries (see
    :func:`dynawheel.wheel.build.build_wheel` for the options; ``force_tag=True`` writes a given tag the
    content does not support)."""
    options.setdefault("tag_rule", ContentRule())
    return wheel_build.build_wheel(stage, out_dir, **options)
