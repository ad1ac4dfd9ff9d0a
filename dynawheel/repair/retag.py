"""Retag: the platform tag the repaired binaries meet (manylinux policy for ELF, the macOS version and
architectures for Mach-O), and the WHEEL file that carries it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ..analysis.graph import outside_names
from ..analysis.resolve import Status
from ..binary import BinaryFormat, Image
from ..errors import RepairError, TagError
from ..platform_tags import Content, Reason, best_platform, blockers, elf_verdict, policy_tags
from ..policy import PolicyDataError, get_policy
from ..wheel.tags import WheelTags
from .plan import Job

if TYPE_CHECKING:
    from .options import RepairOptions


def _images(job: Job, fmt: BinaryFormat) -> list[tuple[str, Image]]:
    """(path, image) of every `fmt` image of the repaired tree: the tree's binaries and the vendored copies."""
    a = job.analysis
    images = [(a.relpath(p) or p, i) for p in a.tree_binaries if p not in a.aliases
              for i in a.binaries[p].images if a.binaries[p].format is fmt]
    images += [(v.dest, i) for v in job.collection.vendored for i in a.binaries[v.source].images if v.format is fmt]
    return images


def repaired_content(job: Job, isa_check: bool = True) -> Content:
    """The Content of the tree once repaired: ELF, else Mach-O images (tree + vendored copies), the
    libraries kept from the system, and the missing ones that --allow-missing let through."""
    a = job.analysis
    elf = _images(job, BinaryFormat.ELF)
    if not elf:
        return Content(macho=tuple(_images(job, BinaryFormat.MACHO)))
    sources = {*a.tree_binaries, *(v.source for v in job.collection.vendored)}
    system = frozenset(outside_names((e for w in a.walks for e in w.edges), sources, (Status.SYSTEM,)))
    missing = tuple(sorted({(a.relpath(e.dependent) or e.dependent, e.request.name)
                            for e in job.collection.missing_allowed}))
    found = tuple(sorted({(e.request.name, e.hit) for w in a.walks for e in w.edges
                          if e.hit and e.status is Status.SYSTEM and e.dependent in sources}))
    return Content(elf=tuple(elf), system=system, missing=missing, found=found, blacklisted=job.blacklisted,
                   isa_check=isa_check)


def _given_platform(content: Content, plat: str) -> str:
    """--plat checked by the one rule; the policy's tag with its aliases."""
    try:
        policy = get_policy(plat)
    except PolicyDataError:
        raise RepairError(f"unknown --plat {plat!r}: expected e.g. manylinux_2_17_x86_64 or manylinux2014_x86_64") \
            from None
    arch = content.elf[0][1].arch
    if plat not in (policy.name, *policy.aliases) and not plat.endswith(f"_{arch}"):
        raise RepairError(f"--plat {plat!r} does not match the binaries' arch {arch!r}")
    tags = policy_tags(policy, arch)
    problems = blockers(content, tags)
    if problems:
        raise RepairError(f"the tree does not meet {plat!r}: " + "; ".join(problems[:8]))
    return tags


_TAG_ARCH = re.compile(r"[a-z0-9_]+")


def _check_machines(images: Sequence[tuple[str, Image]]) -> None:
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


def new_tags(job: Job, old: WheelTags, opts: RepairOptions) -> WheelTags:
    """The repaired wheel's tags: its platform tag by the one rule of :mod:`dynawheel.platform_tags`
    (the rule `build`, `check`, `tags` and `merge` apply); PE trees keep theirs."""
    content = repaired_content(job, opts.isa_check)
    if not content.has_binaries:
        return old
    _check_machines(content.elf)
    try:
        if content.elf and opts.plat is not None:
            platform: str | None = _given_platform(content, opts.plat)
        else:
            platform = best_platform(content, opts.macos_target)
            if content.elf:
                _refuse_unfit(content)
    except TagError as exc:
        raise RepairError(str(exc)) from None
    return replace(old, platform=platform) if platform else old


# what a rebuild fixes: refused when it keeps every manylinux/musllinux tag away (an arch no policy covers, or
# the missing libraries --allow-missing lets through, leave the wheel linux_<arch>, as they always did)
REFUSED = frozenset({Reason.SYMBOL_VERSION, Reason.BLACKLISTED, Reason.ISA, Reason.EXEC_STACK, Reason.LIBPYTHON})


def _refuse_unfit(content: Content) -> None:
    """No manylinux/musllinux tag at all fits the repaired ELF files, for a reason a rebuild fixes
    (:data:`REFUSED`): refused, each cause named with its fix (as auditwheel refuses a wheel no policy
    fits)."""
    verdict = elf_verdict(content)
    if verdict.policy is not None:
        return
    newest = verdict.blockers[-1].tag if verdict.blockers else ""
    causes = {(b.reason, b.file, b.subject): b for b in verdict.blockers
              if b.tag == newest and b.reason in REFUSED}
    if causes:
        shown = "; ".join(f"{b.detail} (fix: {b.fix})" for b in list(causes.values())[:8])
        more = f" (and {len(causes) - 8} more)" if len(causes) > 8 else ""
        raise RepairError(f"no manylinux/musllinux tag fits the repaired binaries, not even {newest}: {shown}{more}")


def wheel_text(text: bytes, tags: WheelTags) -> bytes:
    # a trailing blank line (setuptools writes one) would push the new Tag lines out of the header
    lines = [ln for ln in text.decode().splitlines() if ln.strip() and not ln.startswith("Tag:")]
    lines += [f"Tag: {t}" for t in tags.expanded_text()]
    return ("\n".join(lines) + "\n").encode()
