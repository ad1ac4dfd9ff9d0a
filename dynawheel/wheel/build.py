"""`dynawheel build`: a wheel from a staged tree and/or copy steps, with no setup.py."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from ..errors import MetadataError, StageError, TagError, UsageError
from ..magic import format_of
from .archive import Packer
from .assemble import WheelSpec, assemble, existing_wheel_file, read_existing_metadata
from .metadata import (
    MetadataOptions,
    ProjectMetadata,
    from_metadata_text,
    from_options,
    from_project_table,
    read_pyproject,
)
from .stage import AddStep, StageFiles
from .tags import WheelTags, interpreter_tags, make_tags, parse_tags

log = logging.getLogger(__name__)

CONFIG_NAME = "pyproject.toml"


@dataclass(frozen=True)
class BuildOptions:
    stage: Path | None = None
    adds: tuple[AddStep, ...] = ()
    metadata: MetadataOptions = field(default_factory=MetadataOptions)
    pyproject: Path | None = None  # default: STAGE/pyproject.toml when it exists
    metadata_file: Path | None = None
    metadata_text: str | None = None
    tags: WheelTags | None = None
    root_is_purelib: bool | None = None
    build_number: str | None = None
    compression_level: int = 6
    deflate: str = "auto"  # 'auto' (zlib-ng when installed), 'zlib' (exactly zlib's bytes) or 'zlib-ng'
    exclude: tuple[str, ...] = ()
    files: StageFiles | None = None  # a Stage composed in Python (Stage().add(...)), packed first
    # the platform tag from the binaries' content (dynawheel.ops.build gives the rule repair applies);
    # None: this package knows no binaries, so a tree with binaries needs a tag and none is judged
    tag_rule: TagRule | None = None
    force_tag: bool = False  # write a platform tag the content does not support


class TagRule(Protocol):
    """What the binaries of a stage support (injected: wheel/ knows nothing of binaries)."""

    def platform(self, files: Mapping[str, Path]) -> str | None:
        """The best platform tag of these files (None: no binaries)."""
        ...

    def blockers(self, files: Mapping[str, Path], platform: str) -> tuple[str, ...]:
        """Why these files do not support `platform` (() when they do)."""
        ...


@dataclass(frozen=True)
class BuildResult:
    path: Path
    name: str
    version: str
    tags: WheelTags
    notes: tuple[str, ...] = ()


def _binary_kind(path: Path) -> str | None:
    try:
        with path.open("rb") as fp:
            head = fp.read(4)
    except OSError as exc:
        raise StageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    return format_of(head)


def _default_tags(stage: StageFiles, notes: list[str], rule: TagRule | None) -> WheelTags:
    if rule is not None:
        platform = rule.platform(stage.files)
        if platform is None:
            return parse_tags("py3-none-any")
        here = interpreter_tags()
        notes.append(f"platform tag {platform} from the binaries; python and ABI tags {here.python}-{here.abi} "
                     "after the running interpreter (pass --python-tag/--abi-tag to choose)")
        return make_tags(here.python, here.abi, platform)
    binaries = {name: kind for name, src in stage.files.items() if (kind := _binary_kind(src))}
    if not binaries:
        return parse_tags("py3-none-any")
    first = sorted(binaries)[0]
    if any(kind != "elf" for kind in binaries.values()):
        raise TagError(f"the tree holds non-ELF binaries ({first!r}, ...): give --tag, e.g. "
                       "cp311-cp311-win_amd64 or cp311-cp311-macosx_11_0_arm64")
    tags = interpreter_tags()
    notes.append(f"the tree holds binaries ({first!r}{', ...' if len(binaries) > 1 else ''}): tagged {tags} "
                 "after the running interpreter; pass --tag to choose")
    return tags


def _pyproject_path(opts: BuildOptions) -> Path | None:
    if opts.pyproject is not None:
        if not opts.pyproject.is_file():
            raise UsageError(f"--pyproject {str(opts.pyproject)!r} does not exist")
        return opts.pyproject
    if opts.stage is not None and (opts.stage / CONFIG_NAME).is_file():
        return opts.stage / CONFIG_NAME
    return None


def _tool_options(opts: BuildOptions, tool: dict[str, Any], base: Path) -> BuildOptions:
    """Apply [tool.dynawheel] (add, exclude, tag, root-is-purelib) under the command-line options."""
    adds = tuple(AddStep(str(item["from"]), str(item.get("to", "")), base) for item in _add_items(tool))
    tags = opts.tags or (parse_tags(str(tool["tag"])) if "tag" in tool else None)
    purelib = opts.root_is_purelib if opts.root_is_purelib is not None else tool.get("root-is-purelib")
    return replace(opts, adds=adds + opts.adds, tags=tags, root_is_purelib=purelib,
                   exclude=opts.exclude + tuple(tool.get("exclude", ())))


def _add_items(tool: dict[str, Any]) -> list[dict[str, Any]]:
    items = tool.get("add", [])
    if not isinstance(items, list) or not all(isinstance(i, dict) and "from" in i for i in items):
        raise MetadataError("[[tool.dynawheel.add]] entries need a 'from' key (and optionally 'to')")
    return items


def _metadata(opts: BuildOptions, project: dict[str, Any] | None, base: Path, stage: StageFiles) -> ProjectMetadata:
    if opts.metadata_text is not None:
        return from_metadata_text(opts.metadata_text, "(given text)", opts.metadata)
    if opts.metadata_file is not None:
        try:
            text = opts.metadata_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MetadataError(f"cannot read --metadata {str(opts.metadata_file)!r}: {exc}") from None
        return from_metadata_text(text, repr(str(opts.metadata_file)), opts.metadata)
    if project is not None:
        return from_project_table(project, base, opts.metadata)
    existing = read_existing_metadata(stage.files)
    if existing is not None:
        return from_metadata_text(existing[0], repr(existing[1]), opts.metadata)
    return from_options(opts.metadata)


def collect(opts: BuildOptions, config: Path | None) -> StageFiles:
    stage = StageFiles(dict(opts.files.files), dict(opts.files.origins)) if opts.files else StageFiles()
    if opts.stage is not None:
        skip = [CONFIG_NAME] if config is not None and config.parent.resolve() == opts.stage.resolve() else []
        stage.add_tree(opts.stage, exclude=[*skip, *opts.exclude])
    for step in opts.adds:
        stage.add_step(step)
    return stage


def build(opts: BuildOptions, out_dir: Path) -> BuildResult:
    """Build one wheel into `out_dir` (replacing a wheel of the same name atomically)."""
    sources = (opts.stage, opts.files, opts.metadata_text, opts.metadata_file, opts.pyproject)
    if all(s is None for s in sources) and not opts.adds and not opts.metadata.requires:
        raise UsageError("nothing to build: give a STAGE directory, --add steps or metadata")
    if not 0 <= opts.compression_level <= 9:
        raise UsageError(f"--compression-level {opts.compression_level!r} must be 0..9")
    config = _pyproject_path(opts)
    project, tool = read_pyproject(config) if config is not None else (None, {})
    base = config.parent if config is not None else (opts.stage or Path.cwd())
    opts = _tool_options(opts, tool, base)
    stage = collect(opts, config)
    meta = _metadata(opts, project, base, stage)
    notes: list[str] = []
    with Packer(opts.compression_level, opts.deflate) as packer:
        if opts.tag_rule is not None:  # performance: the stage compresses while its binaries are analysed
            _pack_ahead(packer, stage.files)
        spec = _spec(opts, meta, stage, notes)
        path, more = assemble(stage.files, spec, out_dir, packer)
    return BuildResult(path, meta.name, meta.version, spec.tags, tuple(notes + more))


def _pack_ahead(packer: Packer, files: Mapping[str, Path]) -> None:
    """Start compressing the stage's biggest files, within the packer's budget, on its workers (the longest
    first: wheel/pool.py), while this thread analyses the binaries for the platform tag (the content rule:
    ~0.4 s of one core on the benchmark's 1,118 files, which the writer waited for).  The writer takes each
    result for its file; the wheel's bytes do not depend on what was compressed ahead."""
    sizes = {}
    for source in set(files.values()):
        try:
            sizes[source] = source.stat().st_size
        except OSError:
            continue  # the writer meets it again, and says so
    for source in sorted(sizes, key=lambda s: (-sizes[s], s)):
        packer.pack_soon(source)


def _spec(opts: BuildOptions, meta: ProjectMetadata, stage: StageFiles, notes: list[str]) -> WheelSpec:
    old_tags, old_purelib = existing_wheel_file(stage.files)
    if opts.tags is not None and old_tags is not None and (
            set(opts.tags.expanded_text()) != set(old_tags.expanded_text())):
        raise StageError(f"the WHEEL file in the stage says Tag {old_tags}, but the build asks for {opts.tags}")
    if None not in (opts.root_is_purelib, old_purelib) and opts.root_is_purelib != old_purelib:
        raise StageError(f"the WHEEL file in the stage says Root-Is-Purelib: {old_purelib}, "
                         f"but the build asks for {opts.root_is_purelib}")
    tags = opts.tags or old_tags or _default_tags(stage, notes, opts.tag_rule)
    if opts.tag_rule is not None and (opts.tags or old_tags):
        _judge(opts.tag_rule, stage, tags, opts.force_tag, notes)
    purelib = opts.root_is_purelib if opts.root_is_purelib is not None else old_purelib
    if purelib is None:
        purelib = tags.is_pure
    return WheelSpec(meta, tags, purelib, opts.build_number, opts.compression_level, opts.deflate)


def _judge(rule: TagRule, stage: StageFiles, tags: WheelTags, force: bool, notes: list[str]) -> None:
    """Refuse a given platform tag the content does not support (a note instead with `force`)."""
    problems = rule.blockers(stage.files, tags.platform)
    if not problems:
        return
    text = "; ".join(problems[:8]) + (f" (and {len(problems) - 8} more)" if len(problems) > 8 else "")
    if force:
        notes.append(f"--force-tag: writing {tags.platform} although the content does not support it: {text}")
        return
    raise TagError(f"the content does not support platform tag {tags.platform!r}: {text} "
                   "(--force-tag writes it anyway)")


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
    """Build a wheel and return its path (the typed, keyword-only API)."""
    opts = BuildOptions(
        stage=Path(stage) if stage is not None else None,
        files=files,
        pyproject=Path(pyproject) if pyproject is not None else None,
        adds=tuple(AddStep(src, dest) for src, dest in add),
        metadata=MetadataOptions(name=name, version=version, summary=summary, requires=tuple(requires)),
        metadata_text=metadata_text,
        tags=parse_tags(tag) if tag else None,
        root_is_purelib=root_is_purelib,
        build_number=build_number,
        compression_level=compression_level,
        tag_rule=tag_rule,
        force_tag=force_tag,
    )
    return build(opts, Path(out_dir)).path


@dataclass
class Stage(StageFiles):
    """The files of a wheel-to-be (arcname -> file on disk), composed in Python, that can build itself.

    >>> Stage().add("build/lib/*.so", "pkg/").add_tree("src").build("dist", name="x", version="1")  # doctest: +SKIP
    """

    def build(self, out_dir: str | Path = "dist", **options: Any) -> Path:
        """Pack these files as a wheel; `options` are those of :func:`dynawheel.build_wheel`."""
        return build_wheel(None, out_dir, files=self, **options)
