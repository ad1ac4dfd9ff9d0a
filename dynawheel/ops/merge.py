"""`dynawheel merge`: wheels of one project and version fused into one wheel, on any host.

Two kinds of merge, chosen by the content:

- **universal2**: thin macOS wheels (an arm64 one and an x86_64 one).  A path that holds a thin Mach-O
  file in several wheels becomes one universal file (:mod:`dynawheel.platforms.macho_fat`: slices
  ordered and aligned as lipo does, an arm64 slice without a valid signature signed ad hoc); a path in
  one wheel only is kept; identical members (by their RECORD hash) are kept once; other members that
  differ are an error listing them, unless ``prefer`` is 'first' or 'last' (which wheel's copy wins).
  The platform tag comes from the fused content by the one rule (``macosx_<min>_universal2``).
- **multi-tag**: wheels whose members are all identical: one wheel carrying every input's tags
  (``cp311-cp311-manylinux_2_17_x86_64.musllinux_1_2_x86_64``), when the union is exactly a product
  of the inputs' tags and the content supports each platform tag.

Nothing is written until every check has passed; the output is written atomically.
Bad input (one error each): different projects or versions, a fat Mach-O file already present, two
slices of one arch, a thin file of an arch its wheel is not tagged for, fewer than two wheels.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..binary import Image
from ..errors import BinaryFormatError, TagError, UsageError, WheelFormatError
from ..platform_tags import MAC_ARCHS, Content, best_platform, blockers
from ..platforms import backend_for
from ..platforms.macho_fat import Thin, fuse, is_fat_macho, is_thin_macho, signed_if_needed, thin
from ..search import SearchPaths
from ..wheel.archive import RawSource
from ..wheel.rewrite import OpenWheel, open_wheel, output_path, write_from
from ..wheel.tags import WheelTags, canonicalize_name, make_tags
from .content import wheel_content

log = logging.getLogger(__name__)

PREFER_CHOICES = ("first", "last")


class MergeError(WheelFormatError):
    """Wheels that cannot be merged."""


@dataclass(frozen=True)
class MergeResult:
    path: Path
    tags: WheelTags
    kind: str  # 'universal2' or 'multi-tag'
    fused: tuple[str, ...] = ()  # paths that became universal Mach-O files
    preferred: tuple[str, ...] = ()  # differing files taken from the preferred wheel


def merge_wheels(
    wheels: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    prefer: str | None = None,
    macos_target: str | None = None,
    search: SearchPaths | None = None,
) -> MergeResult:
    """Merge `wheels` (two or more, one project and version) into one wheel in `out_dir`."""
    paths = [Path(w) for w in wheels]
    if len(paths) < 2:
        raise UsageError(f"merge needs at least two wheels, got {len(paths)}")
    if prefer not in (None, *PREFER_CHOICES):
        raise UsageError(f"--prefer must be one of {', '.join(PREFER_CHOICES)}, not {prefer!r}")
    with ExitStack() as stack:
        opened = [stack.enter_context(open_wheel(p)) for p in paths]
        _same_project(opened)
        differing = _differing(opened)
        if not differing:
            return _multi_tag(opened, Path(out_dir), search)
        return _universal(opened, differing, Path(out_dir), prefer, macos_target)


def _same_project(opened: Sequence[OpenWheel]) -> None:
    first = opened[0]
    for other in opened[1:]:
        if canonicalize_name(other.name) != canonicalize_name(first.name) or other.version != first.version:
            raise MergeError(f"cannot merge wheels of different projects or versions: {first.path.name} is "
                             f"{first.name} {first.version}, {other.path.name} is {other.name} {other.version}")
        if other.build != first.build:
            raise MergeError(f"cannot merge wheels of different build numbers: {first.path.name} "
                             f"({first.build or 'none'}) and {other.path.name} ({other.build or 'none'})")
        if other.dist_info != first.dist_info:
            raise MergeError(f"the .dist-info directories differ: {first.dist_info} in {first.path.name}, "
                             f"{other.dist_info} in {other.path.name}")


def _differing(opened: Sequence[OpenWheel]) -> list[str]:
    """Paths whose content differs between the wheels, or that some wheels lack (WHEEL aside)."""
    wheel_file = f"{opened[0].dist_info}/WHEEL"
    names = sorted({n for w in opened for n in w.members} - {wheel_file})
    return [n for n in names if len({w.members[n].row.hash if n in w.members else None for w in opened}) > 1]


# ---- identical content: one wheel, every tag -------------------------------------------------

def _multi_tag(opened: Sequence[OpenWheel], out_dir: Path, search: SearchPaths | None) -> MergeResult:
    tags = _union_tags(opened)
    content = None
    for plat in tags.platform.split("."):
        if plat == "any":
            continue
        content = content or wheel_content(opened[0].path, search)
        problems = blockers(content, plat)
        if problems:
            raise TagError(f"the wheels' content does not support platform tag {plat!r}: " + "; ".join(problems[:8]))
    base = opened[0]
    dest = output_path(base, out_dir, tags, base.build)
    _refuse_overwriting_input(dest, opened)
    write_from(base, dest, tags, base.build)
    return MergeResult(dest, tags, "multi-tag")


def _union_tags(opened: Sequence[OpenWheel]) -> WheelTags:
    def join(values: list[str]) -> str:
        return ".".join(sorted({v for value in values for v in value.split(".")}))

    tags = make_tags(join([w.tags.python for w in opened]), join([w.tags.abi for w in opened]),
                     join([w.tags.platform for w in opened]))
    given = {t for w in opened for t in w.tags.expanded_text()}
    extra = sorted(str(t) for t in set(tags.expanded_text()) - given)
    if extra:
        raise MergeError(f"the wheels' tags do not combine into one tag set: {tags} would also claim "
                         f"{', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''}, which no input has")
    return tags


def _refuse_overwriting_input(dest: Path, opened: Sequence[OpenWheel]) -> None:
    for w in opened:
        if dest.resolve() == w.path.resolve():
            raise MergeError(f"the merged wheel {dest.name} would replace the input {str(w.path)!r}: "
                             "write it into another directory (-w)")


# ---- thin macOS wheels: universal2 -----------------------------------------------------------

@dataclass(frozen=True)
class _Plan:
    fused: dict[str, tuple[bytes, bool]]
    raw: dict[str, tuple[RawSource, bool]]
    preferred: list[str]


def _wheel_archs(w: OpenWheel) -> frozenset[str]:
    archs: set[str] = set()
    for plat in w.tags.platform.split("."):
        if not plat.startswith("macosx_"):
            raise MergeError(f"{w.path.name}: members differ between the wheels, so they must be thin macOS "
                             f"wheels to fuse, but this one is tagged {plat!r}")
        arch = plat.split("_", 3)[3] if plat.count("_") >= 3 else ""
        if arch not in ("arm64", "x86_64"):
            raise MergeError(f"{w.path.name}: tagged {plat!r}; only thin arm64 and x86_64 wheels are fused")
        archs.add(arch)
    return frozenset(archs)


def _universal(opened: Sequence[OpenWheel], differing: list[str], out_dir: Path, prefer: str | None,
               macos_target: str | None) -> MergeResult:
    archs = [_wheel_archs(w) for w in opened]
    first = opened[0]
    for w in opened[1:]:
        if (w.tags.python, w.tags.abi) != (first.tags.python, first.tags.abi):
            raise MergeError(f"cannot fuse wheels for different Pythons: {first.path.name} is "
                             f"{first.tags.python}-{first.tags.abi}, {w.path.name} is {w.tags.python}-{w.tags.abi}")
    plan = _Plan({}, {}, [])
    conflicts: list[str] = []
    for name in differing:
        holders = [(w, a) for w, a in zip(opened, archs) if name in w.members]
        if len(holders) == 1:
            w = holders[0][0]
            if w is not first:
                plan.raw[name] = (w.raw(name), w.members[name].executable)
            continue
        datas = [(w, a, w.read(name)) for w, a in holders]
        if all(is_thin_macho(d[:4]) or is_fat_macho(d[:8]) for _w, _a, d in datas):
            plan.fused[name] = (_fuse(name, datas), any(w.members[name].executable for w, _a, _d in datas))
        elif prefer is None:
            conflicts.append(f"{name} ({', '.join(w.path.name for w, _a, _d in datas)})")
        else:
            w = holders[0 if prefer == "first" else -1][0]
            plan.preferred.append(name)
            if w is not first:
                plan.raw[name] = (w.raw(name), w.members[name].executable)
    if conflicts:
        raise MergeError(f"{len(conflicts)} file(s) that are not Mach-O differ between the wheels (choose one "
                         "copy with --prefer first|last): " + "; ".join(conflicts[:10])
                         + (f" (and {len(conflicts) - 10} more)" if len(conflicts) > 10 else ""))
    tags = make_tags(first.tags.python, first.tags.abi, _universal_platform(opened, plan, macos_target))
    dest = output_path(first, out_dir, tags, first.build)
    _refuse_overwriting_input(dest, opened)
    write_from(first, dest, tags, first.build, replace=plan.fused, raw_from=plan.raw)
    return MergeResult(dest, tags, "universal2", tuple(sorted(plan.fused)), tuple(plan.preferred))


def _fuse(name: str, datas: list[tuple[OpenWheel, frozenset[str], bytes]]) -> bytes:
    parts: list[Thin] = []
    seen: dict[str, str] = {}
    for w, archs, data in datas:
        where = f"{name} in {w.path.name}"
        if is_fat_macho(data[:8]):
            raise MergeError(f"{where} is already a universal (fat) Mach-O file: fuse thin wheels only")
        try:
            t = thin(data, where)
        except BinaryFormatError as exc:
            raise MergeError(str(exc)) from None
        if t.arch not in archs:
            raise MergeError(f"{where} is {t.arch}, but the wheel is tagged for {'+'.join(sorted(archs))}")
        if t.arch in seen:
            raise MergeError(f"two {t.arch} slices for {name}: in {seen[t.arch]} and {w.path.name}")
        seen[t.arch] = w.path.name
        parts.append(signed_if_needed(t, where))
    return fuse(parts, name)


def _universal_platform(opened: Sequence[OpenWheel], plan: _Plan, macos_target: str | None) -> str:
    """The platform tag of the merged content, by the one rule; it must be universal2."""
    images: list[tuple[str, Image]] = []
    first = opened[0]
    for name in sorted(set(first.members) | {n for w in opened for n in w.members}):
        if name in plan.fused:
            data = plan.fused[name][0]
        else:
            owner = next(w for w in opened if name in w.members)
            if name in plan.raw:
                owner = next(w for w in opened if name in w.members and w.raw(name).info is plan.raw[name][0].info)
            head = owner.head(name, 8)
            if not (is_thin_macho(head[:4]) or is_fat_macho(head)):
                continue
            data = owner.read(name)
        backend = backend_for(data[:8])
        if backend is None:
            continue
        images.extend((name, image) for image in backend.parse(io.BytesIO(data), name).images)
    platform = best_platform(Content(macho=tuple(images)), macos_target)
    if platform is None or not platform.endswith("_universal2"):
        thin_files = sorted({p for p, _i in images if {i.arch for q, i in images if q == p} != MAC_ARCHS["universal2"]})
        raise MergeError(f"the merged wheel would not be universal2 (the rule gives {platform!r}): "
                         f"{', '.join(thin_files[:6])} hold only one arch")
    return platform
