"""`dynawheel build` with the platform tag from content: the stage's binaries are analysed as repair
analyses a tree, and the one rule (:mod:`dynawheel.platform_tags`) gives the tag or refuses a given one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..platform_tags import Content
from ..search import SearchPaths
from ..wheel import build as wheel_build
from ..wheel.build import BuildOptions, BuildResult, TagRule
from ..wheel.stage import StageFiles
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


def build_wheel(
    stage: str | Path | None,
    out_dir: str | Path = "dist",
    *,
    name: str | None = None,
    version: str | None = None,
    summary: str | None = None,
    requires: tuple[str, ...] = (),
    tag: str | None = None,
    root_is_purelib: bool | None = None,
    build_number: str | None = None,
    metadata_text: str | None = None,
    add: tuple[tuple[str, str], ...] = (),
    compression_level: int = 6,
    pyproject: str | Path | None = None,
    files: StageFiles | None = None,
    tag_rule: TagRule | None = None,
    force_tag: bool = False,
) -> Path:
    """Build a wheel and return its path; the platform tag comes from the binaries (`tag_rule` None: the
    content rule; ``force_tag=True`` writes a given tag the content does not support).  The options are
    those of :func:`dynawheel.wheel.build.build_wheel`, spelled out: the public API's signature, for
    readers and type checkers (tests/test_build.py holds the two lists equal)."""
    return wheel_build.build_wheel(
        stage, out_dir, name=name, version=version, summary=summary, requires=requires, tag=tag,
        root_is_purelib=root_is_purelib, build_number=build_number, metadata_text=metadata_text, add=add,
        compression_level=compression_level, pyproject=pyproject, files=files,
        tag_rule=ContentRule() if tag_rule is None else tag_rule, force_tag=force_tag)
