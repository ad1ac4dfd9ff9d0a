"""Retag: the platform tag the repaired binaries meet (manylinux policy for ELF, the macOS version and
architectures for Mach-O), and the WHEEL file that carries it."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from ..analysis.graph import outside_names
from ..analysis.resolve import Status
from ..binary import BinaryFormat, Image
from ..errors import RepairError
from ..policy import Policy, PolicyDataError, best_elf_policy, blockers_for, get_policy
from ..wheel.tags import WheelTags
from .plan import Job

if TYPE_CHECKING:
    from .options import RepairOptions


def _elf_images(job: Job) -> tuple[list[tuple[str, Image]], set[str]]:
    a = job.analysis
    images = [(a.relpath(p) or p, i) for p in a.tree_binaries for i in a.binaries[p].images
              if a.binaries[p].format is BinaryFormat.ELF]
    images += [(v.dest, i) for v in job.collection.vendored for i in a.binaries[v.source].images
               if v.format is BinaryFormat.ELF]
    sources = {*a.tree_binaries, *(v.source for v in job.collection.vendored)}
    external = outside_names((e for w in a.walks for e in w.edges), sources, (Status.SYSTEM,))
    return images, external


_TAG_ARCH = re.compile(r"[a-z0-9_]+")


def _check_machines(images: list[tuple[str, Image]]) -> None:
    """One machine for every ELF file, and one a platform tag can name: else a RepairError naming the
    files (an i686 library among x86_64 ones, an unknown e_machine), never a tag like 'linux_i686+x86_64'."""
    by_arch: dict[str, list[str]] = {}
    for path, image in images:
        by_arch.setdefault(image.arch, []).append(path)

    def files(arch: str) -> str:
        paths = sorted(set(by_arch[arch]))
        return f"{arch}: {paths[0]!r}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")

    if len(by_arch) > 1:
        raise RepairError("the ELF files are for different machines, no one wheel tag fits them: "
                          + "; ".join(files(arch) for arch in sorted(by_arch)))
    for arch in by_arch:
        if not _TAG_ARCH.fullmatch(arch) or re.fullmatch(r"em[0-9]+.*", arch):
            raise RepairError(f"unknown or unsupported ELF machine/class, no platform tag names it: {files(arch)}")


def _policy_platform(job: Job, plat: str | None) -> str | None:
    images, external = _elf_images(job)
    if not images:
        return None
    _check_machines(images)
    policy: Policy | None
    if plat is None:
        verdict = best_elf_policy(images, external)
        policy = verdict.policy
        if policy is None:
            return verdict.tag
    else:
        policy = _find_policy(plat)
        problems = blockers_for(policy, images, external)
        if problems:
            raise RepairError(f"the tree does not meet {plat!r}: " + "; ".join(problems[:8]))
    arch = images[0][1].arch
    if plat is not None and plat not in (policy.name, *policy.aliases) and not plat.endswith(f"_{arch}"):
        raise RepairError(f"--plat {plat!r} does not match the binaries' arch {arch!r}")
    return ".".join(f"{name}_{arch}" for name in (policy.name, *policy.aliases))


def _find_policy(plat: str) -> Policy:
    try:
        return get_policy(plat)
    except PolicyDataError:
        raise RepairError(f"unknown --plat {plat!r}: expected e.g. manylinux_2_17_x86_64 or manylinux2014_x86_64") \
            from None


def _macos_platform(job: Job, target: str | None) -> str | None:
    """macosx_<min>_<arch> on which every Mach-O of the repaired tree (vendored copies too) loads.

    arch: what every binary has (arm64 + x86_64: universal2; a thin extension makes the wheel thin).
    min: the highest minimum macOS of those slices, where an arm64 slice's 11.0 constrains nothing
    (arm64 Macs start there): x86_64 10.9 + arm64 11.0 is macosx_10_9_universal2, which pip accepts
    on both.  MACOSX_DEPLOYMENT_TARGET only raises it.
    """
    a = job.analysis
    paths = [p for p in a.tree_binaries if a.binaries[p].format is BinaryFormat.MACHO]
    paths += [v.source for v in job.collection.vendored if v.format is BinaryFormat.MACHO]
    if not paths:
        return None
    common = set.intersection(*({i.arch for i in a.binaries[p].images} for p in paths))
    if {"arm64", "x86_64"} <= common:
        arch, archs = "universal2", {"arm64", "x86_64"}
    elif common:
        arch = next((x for x in ("arm64", "x86_64") if x in common), sorted(common)[0])
        archs = {arch}
    else:
        have = "; ".join(f"{a.relpath(p) or p}: {'+'.join(i.arch for i in a.binaries[p].images)}" for p in paths)
        raise RepairError(f"no architecture is common to every Mach-O binary, so no macOS tag fits ({have})")
    need = (11, 0) if arch == "arm64" else (10, 9)
    for p in paths:
        for image in a.binaries[p].images:
            minimum = _ver(str(image.details.get("min_macos") or "10.9"))
            if image.arch in archs and not (image.arch == "arm64" and minimum <= (11, 0)):
                need = max(need, minimum)
    if target is not None and target.strip():  # an empty MACOSX_DEPLOYMENT_TARGET is no target
        if not re.fullmatch(r"\d+(\.\d+){0,2}", target.strip()):
            raise RepairError(f"MACOSX_DEPLOYMENT_TARGET must look like 10.13 or 12.0, got {target!r}")
        need = max(need, _ver(target.strip()))
    major, minor = need[0], (need[1] if need[0] < 11 else 0)
    return f"macosx_{major}_{minor}_{arch}"


def _ver(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.split(".")[:2] if p.isdigit()] + [0, 0]
    return parts[0], parts[1]


def new_tags(job: Job, old: WheelTags, opts: RepairOptions) -> WheelTags:
    platform = _policy_platform(job, opts.plat) or _macos_platform(job, opts.macos_target)
    return replace(old, platform=platform) if platform else old


def wheel_text(text: bytes, tags: WheelTags) -> bytes:
    # a trailing blank line (setuptools writes one) would push the new Tag lines out of the header
    lines = [ln for ln in text.decode().splitlines() if ln.strip() and not ln.startswith("Tag:")]
    lines += [f"Tag: {t}" for t in tags.expanded()]
    return ("\n".join(lines) + "\n").encode()
