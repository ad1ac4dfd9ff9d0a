"""Platform tags from content: the one rule that `repair`, `build`, `check`, `tags` and `merge` apply.

A :class:`Content` is what a wheel's binaries are (every ELF image with the symbol versions it needs,
every Mach-O slice with its arch and minimum macOS, every PE image with its machine) and what they
load from outside the wheel.  Two questions are asked of it:

- :func:`best_platform`: the platform tag the content supports best (None: no binaries);
- :func:`blockers`: why a given platform tag (a compressed set ``a.b`` counts as each of its parts)
  is not supported; each reason names a file.

The rules (facts: PEP 600 / PEP 656 policies in ``data/manylinux-policy.json``; PEP 425; which macOS
tags pip installs: ``packaging.tags.mac_platforms``):

- **ELF**: ``manylinux_*`` / ``musllinux_*`` (and the legacy aliases) need every image of the tag's
  arch and libc family, every symbol version within the policy, every library kept from the system on
  the policy's list, and **nothing missing and nothing loaded from elsewhere** (a library found outside
  the wheel and outside the policy, or found nowhere); failing that the best tag is ``linux_<arch>``,
  which claims only the arch.
- **Mach-O**: ``macosx_<X>_<Y>_<arch>`` needs a slice of each arch the tag names in every Mach-O file
  (``universal2`` = arm64 + x86_64, ``intel`` = i386 + x86_64, ...) and each such slice's minimum macOS
  at most X.Y, except that an arm64 slice's minimum up to 11.0 constrains nothing (arm64 Macs start at
  11.0, so ``macosx_10_9_universal2`` is right for x86_64 10.9 + arm64 11.0).  pip installs thin arm64
  wheels only from ``macosx_11_0`` on, and from macOS 11 on only minor version 0 (``macosx_12_0``).
  The best tag: the archs every file has (both: ``universal2``), the highest minimum, raised by
  ``MACOSX_DEPLOYMENT_TARGET``.
- **PE**: ``win_amd64`` / ``win32`` / ``win_arm64`` need every image of that machine.
- ``any`` claims nothing about binaries (pip's own wheel ships Windows launchers); other platforms
  (``ios_*``, ``android_*``, ...) are not judged.  Binaries of another format than the tag's are not
  judged either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .binary import Image
from .errors import TagError
from .policy import Policy, PolicyDataError, best_elf_policy, blockers_for, family_of, get_policy

# wheel platform arch -> the Mach-O archs it promises (packaging.tags._mac_binary_formats, reversed)
MAC_ARCHS: dict[str, frozenset[str]] = {
    "x86_64": frozenset({"x86_64"}),
    "arm64": frozenset({"arm64"}),
    "universal2": frozenset({"arm64", "x86_64"}),
    "intel": frozenset({"i386", "x86_64"}),
    "i386": frozenset({"i386"}),
    "ppc": frozenset({"ppc"}),
    "ppc64": frozenset({"ppc64"}),
    "fat": frozenset({"i386", "ppc"}),
    "fat3": frozenset({"i386", "ppc", "x86_64"}),
    "fat64": frozenset({"ppc64", "x86_64"}),
    "universal": frozenset({"i386", "ppc", "ppc64", "x86_64"}),
}
WINDOWS_ARCHS = {"win_amd64": "x86_64", "win32": "i686", "win_arm64": "arm64"}
_MACOS_TAG = re.compile(r"macosx_(\d+)_(\d+)_([a-z0-9_]+)")
_LINUX_TAG = re.compile(r"linux_([a-z0-9_]+)")


@dataclass(frozen=True)
class Content:
    """The binaries of a wheel (or of a tree about to become one) and what they load from outside.

    Paths are wheel-relative.  `system`: base names of libraries the ELF images keep from the system
    (checked against a policy's list); `outside`: (dependent, library) found outside the wheel and not
    the system's; `missing`: (dependent, library) found nowhere."""

    elf: tuple[tuple[str, Image], ...] = ()
    macho: tuple[tuple[str, Image], ...] = ()
    pe: tuple[tuple[str, Image], ...] = ()
    system: frozenset[str] = frozenset()
    outside: tuple[tuple[str, str], ...] = ()
    missing: tuple[tuple[str, str], ...] = ()

    @property
    def has_binaries(self) -> bool:
        return bool(self.elf or self.macho or self.pe)


# ---- the best tag ----------------------------------------------------------------------------

def best_platform(content: Content, macos_target: str | None = None) -> str | None:
    """The platform tag the content supports best (a compressed set for manylinux aliases), or None
    when it holds no binaries.  TagError when no tag can fit (mixed arches, several formats)."""
    formats = [name for name, images in (("ELF", content.elf), ("Mach-O", content.macho), ("PE", content.pe))
               if images]
    if not formats:
        return None
    if len(formats) > 1:
        firsts = [images[0][0] for images in (content.elf, content.macho, content.pe) if images]
        raise TagError(f"the tree holds binaries of several formats ({', '.join(formats)}: "
                       f"{', '.join(map(repr, firsts))}): give the platform tag")
    if content.elf:
        return _best_elf(content)
    if content.macho:
        return _best_macos(content.macho, macos_target)
    return _best_windows(content.pe)


def _elf_arch(images: Sequence[tuple[str, Image]]) -> str:
    arches = sorted({i.arch for _p, i in images})
    if len(arches) > 1:
        by = {i.arch: p for p, i in images}
        raise TagError("no platform tag fits ELF binaries of several arches: "
                       + ", ".join(f"{by[a]!r} is {a}" for a in arches))
    return arches[0]


def _best_elf(content: Content) -> str:
    arch = _elf_arch(content.elf)
    if content.missing or content.outside:
        return f"linux_{arch}"
    verdict = best_elf_policy(content.elf, content.system)
    if verdict.policy is None:
        return verdict.tag
    return policy_tags(verdict.policy, arch)


def policy_tags(policy: Policy, arch: str) -> str:
    """'manylinux_2_17_x86_64.manylinux2014_x86_64': the policy's tag and its aliases, compressed."""
    return ".".join(f"{name}_{arch}" for name in (policy.name, *policy.aliases))


def _version(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.split(".")[:2] if p.isdigit()] + [0, 0]
    return parts[0], parts[1]


def _min_macos(image: Image) -> tuple[int, int]:
    return _version(image.macho.min_macos or "10.9")


def _by_file(images: Iterable[tuple[str, Image]]) -> dict[str, list[Image]]:
    out: dict[str, list[Image]] = {}
    for path, image in images:
        out.setdefault(path, []).append(image)
    return out


def _best_macos(images: Sequence[tuple[str, Image]], target: str | None) -> str:
    files = _by_file(images)
    common = set.intersection(*({i.arch for i in imgs} for imgs in files.values()))
    if {"arm64", "x86_64"} <= common:
        arch, archs = "universal2", {"arm64", "x86_64"}
    elif common:
        arch = next((x for x in ("arm64", "x86_64") if x in common), sorted(common)[0])
        archs = {arch}
    else:
        have = "; ".join(f"{p}: {'+'.join(i.arch for i in imgs)}" for p, imgs in sorted(files.items()))
        raise TagError(f"no architecture is common to every Mach-O binary, so no macOS tag fits ({have})")
    need = (11, 0) if arch == "arm64" else (10, 9)
    for imgs in files.values():
        for image in imgs:
            minimum = _min_macos(image)
            if image.arch in archs and not (image.arch == "arm64" and minimum <= (11, 0)):
                need = max(need, minimum)
    if target is not None and target.strip():  # an empty MACOSX_DEPLOYMENT_TARGET is no target
        if not re.fullmatch(r"\d+(\.\d+){0,2}", target.strip()):
            raise TagError(f"MACOSX_DEPLOYMENT_TARGET must look like 10.13 or 12.0, got {target!r}")
        need = max(need, _version(target.strip()))
    major, minor = need[0], (need[1] if need[0] < 11 else 0)
    return f"macosx_{major}_{minor}_{arch}"


def _best_windows(images: Sequence[tuple[str, Image]]) -> str:
    arches = {i.arch for _p, i in images}
    by_arch = {arch: tag for tag, arch in WINDOWS_ARCHS.items()}
    if len(arches) > 1 or not arches <= set(by_arch):
        raise TagError("no Windows platform tag fits these PE binaries: "
                       + ", ".join(f"{p!r} is {i.arch}" for p, i in images[:6]))
    return by_arch[next(iter(arches))]


# ---- judging a given tag ---------------------------------------------------------------------

def blockers(content: Content, platform: str) -> tuple[str, ...]:
    """Why the content does not support `platform` (each part of a compressed set); () when it does."""
    out: list[str] = []
    for part in platform.split("."):
        out.extend(_part_blockers(content, part))
    return tuple(dict.fromkeys(out))


def _part_blockers(content: Content, plat: str) -> list[str]:
    if plat == "any":
        return []
    if plat.startswith(("manylinux", "musllinux")):
        return _policy_blockers(content, plat)
    linux = _LINUX_TAG.fullmatch(plat)
    if linux:
        return _arch_blockers(content.elf, linux.group(1), plat)
    mac = _MACOS_TAG.fullmatch(plat)
    if mac:
        return _macos_blockers(content, int(mac.group(1)), int(mac.group(2)), mac.group(3), plat)
    if plat.startswith("macosx_"):
        return [f"{plat}: not a macOS tag (expected macosx_<major>_<minor>_<arch>)"]
    if plat in WINDOWS_ARCHS:
        return _arch_blockers(content.pe, WINDOWS_ARCHS[plat], plat)
    return []


def _arch_blockers(images: Sequence[tuple[str, Image]], arch: str, plat: str) -> list[str]:
    return [f"{plat}: {path!r} is {image.arch}, not {arch}" for path, image in images if image.arch != arch]


def _policy_blockers(content: Content, plat: str) -> list[str]:
    try:
        policy = get_policy(plat)
    except PolicyDataError:
        return [f"{plat}: unknown manylinux/musllinux policy"]
    names = (policy.name, *policy.aliases)
    arch = next((plat[len(n) + 1:] for n in names if plat.startswith(n + "_")), "")
    if not arch:
        return [f"{plat}: the tag names no arch (expected e.g. {policy.name}_x86_64)"]
    if not content.elf:
        return []
    out = _arch_blockers(content.elf, arch, plat)
    family = family_of(i for _p, i in content.elf)
    if family != policy.family:
        first = content.elf[0][0]
        out.append(f"{plat}: {first!r} is built for {family}, not {policy.family}")
    out.extend(f"{plat}: {dep!r} needs {lib!r}, which is neither in the wheel nor found anywhere (missing)"
               for dep, lib in content.missing)
    out.extend(f"{plat}: {dep!r} needs {lib!r} from outside the wheel, which the policy does not allow "
               "(vendor it: dynawheel repair)" for dep, lib in content.outside)
    out.extend(f"{plat}: {reason.split(': ', 1)[1]}" if reason.startswith(policy.name + ": ") else reason
               for reason in blockers_for(policy, [(p, i) for p, i in content.elf if i.arch == arch],
                                          content.system))
    return out


def _macos_blockers(content: Content, major: int, minor: int, arch: str, plat: str) -> list[str]:
    archs = MAC_ARCHS.get(arch)
    if archs is None:
        return [f"{plat}: unknown macOS arch {arch!r} (known: {', '.join(sorted(MAC_ARCHS))})"]
    out: list[str] = []
    if major >= 11 and minor != 0:
        out.append(f"{plat}: pip never installs it: from macOS 11 on, tags carry minor version 0 "
                   f"(macosx_{major}_0_{arch})")
    if arch == "arm64" and major < 11:
        out.append(f"{plat}: pip never installs it: arm64 wheels start at macosx_11_0 (arm64 Macs run "
                   "macOS >= 11; macosx_10_x is for x86_64 and universal2)")
    for path, imgs in sorted(_by_file(content.macho).items()):
        have = {i.arch for i in imgs}
        lacking = sorted(archs - have)
        if lacking:
            out.append(f"{plat}: {path!r} has no {'/'.join(lacking)} slice (it has {'+'.join(sorted(have))})")
        for image in imgs:
            minimum = _min_macos(image)
            if image.arch not in archs or (image.arch == "arm64" and minimum <= (11, 0)):
                continue
            if minimum > (major, minor):
                out.append(f"{plat}: {path!r} ({image.arch}) needs macOS {minimum[0]}.{minimum[1]}, "
                           f"newer than {major}.{minor}")
    return out
