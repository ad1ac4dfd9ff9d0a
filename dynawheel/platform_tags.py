"""Platform tags from content: the one rule that `show`, `repair`, `build`, `check`, `tags` and `merge` apply.

A :class:`Content` is what a wheel's binaries are (every ELF image with the symbol versions it needs,
every Mach-O slice with its arch and minimum macOS, every PE image with its machine) and what they
load from outside the wheel.  Three questions are asked of it:

- :func:`best_platform`: the platform tag the content supports best (None: no binaries);
- :func:`explain` (:func:`blockers` as text): why a given platform tag (a compressed set ``a.b``
  counts as each of its parts) is not supported, as typed :class:`Blocker` records: the rule
  (:class:`Reason`), the file, the subject (symbol version, symbol, library, ISA level, segment), the
  library that provides it (or where a library was found) and the fix;
- :func:`elf_verdict`: the best manylinux/musllinux tag and the blockers of every better one
  (`dynawheel show`'s ELF verdict).

The rules (facts: PEP 600 / PEP 656 policies in ``data/manylinux-policy.json``; PEP 425; which macOS
tags pip installs: ``packaging.tags.mac_platforms``):

- **ELF**: ``manylinux_*`` / ``musllinux_*`` (and the legacy aliases) need every image of the tag's
  arch and libc family, every symbol version within the policy, every library kept from the system on
  the policy's list, and **nothing missing and nothing loaded from elsewhere** (a library found outside
  the wheel and outside the policy, or found nowhere); failing that the best tag is ``linux_<arch>``,
  which claims only the arch.  Also (issue 15):

  - no image imports a symbol the policy blacklists for a library it needs (auditwheel's ``blacklist``:
    undefined dynamic symbols against the libraries named in ``DT_NEEDED``, as auditwheel judges them);
  - on x86_64, no image needs an ISA level above the baseline (``GNU_PROPERTY_X86_ISA_1_NEEDED``;
    auditwheel >= 6.1 reads the same property and, its target being the baseline ``x86_64`` unless told
    otherwise, drops to ``linux`` for a file of the wheel or a library it grafts; a library the policy
    lets stay on the system is not judged, here neither: only the wheel's files and the vendored copies
    are in the content).  ``Content.isa_check`` False is ``--disable-isa-check``;
  - no image with an executable stack (``PT_GNU_STACK`` with ``PF_X``, or none: the loader then makes the
    stack executable, and glibc >= 2.41 refuses to ``dlopen`` it; auditwheel does not check this);
  - no shared library (an extension) that links libpython (``DT_NEEDED libpython3.X.so``); a program
    may.
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

import enum
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .binary import FileKind, Image, StackFlag, X86Isa
from .errors import TagError
from .policy import (
    MUSL_UNPROVABLE,
    Policy,
    PolicyDataError,
    family_of,
    get_policy,
    limit_key,
    load_policies,
    loader_names,
    musl_libc_names,
    newest_needs,
)

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
# compiled when used (a manylinux tag needs neither; ~0.5 ms of CPU a regex)
_MACOS_TAG = r"macosx_(\d+)_(\d+)_([a-z0-9_]+)"
_LINUX_TAG = r"linux_([a-z0-9_]+)"


# a NamedTuple, not a frozen dataclass: as immutable and typed, ~5x cheaper to define at import (repair's start-up)
class Content(NamedTuple):
    """The binaries of a wheel (or of a tree about to become one) and what they load from outside.

    Paths are wheel-relative.  `system`: base names of libraries the ELF images keep from the system
    (checked against a policy's list); `outside`: (dependent, library) found outside the wheel and not
    the system's; `missing`: (dependent, library) found nowhere; `refused`: (dependent, library, why) of
    the missing ones the loader finds but will not load (why: the file and the loader's reason, e.g. glibc's
    "CPU ISA level is lower than required"); `found`: (library, path) where the
    outside and system libraries were found (named in explanations); `blacklisted`: (file, library,
    symbol) of the symbols an ELF file imports that some policy blacklists for a library it needs;
    `isa_check`: False to let images that need an x86-64 level above the baseline through
    (``--disable-isa-check``)."""

    elf: tuple[tuple[str, Image], ...] = ()
    macho: tuple[tuple[str, Image], ...] = ()
    pe: tuple[tuple[str, Image], ...] = ()
    system: frozenset[str] = frozenset()
    outside: tuple[tuple[str, str], ...] = ()
    missing: tuple[tuple[str, str], ...] = ()
    refused: tuple[tuple[str, str, str], ...] = ()
    found: tuple[tuple[str, str], ...] = ()
    blacklisted: tuple[tuple[str, str, str], ...] = ()
    isa_check: bool = True

    @property
    def has_binaries(self) -> bool:
        return bool(self.elf or self.macho or self.pe)


class Reason(str, enum.Enum):
    """Why a platform tag is refused: one member per rule."""

    TAG = "tag"  # the tag itself is unknown or never installed by pip
    ARCH = "arch"  # a binary of another arch (or a slice missing)
    LIBC = "libc"  # glibc binaries for a musllinux tag, or the reverse
    MISSING = "missing"  # a needed library found nowhere
    OUTSIDE = "outside"  # a needed library found outside the wheel, not the policy's
    NOT_ALLOWED = "library-not-allowed"  # a library kept from the system that the policy does not list
    SYMBOL_VERSION = "symbol-version"  # a symbol version newer than the policy's
    BLACKLISTED = "blacklisted-symbol"  # a symbol the policy blacklists for a library it allows
    ISA = "isa-level"  # an x86-64 level above the tag's baseline (GNU property note)
    EXEC_STACK = "executable-stack"  # PT_GNU_STACK with PF_X, or none
    LIBPYTHON = "libpython"  # a library (an extension) that links libpython
    MUSL_UNPROVABLE = "musl-unprovable"  # an older musllinux policy (no symbol versions to prove it)
    MACOS_VERSION = "macos-version"  # a slice that needs a newer macOS than the tag


@dataclass(frozen=True)
class Blocker:
    """Why `tag` is refused: the `file` (wheel-relative) and the `subject` (symbol version, symbol,
    library, ISA level, segment) at fault, the `provider` (the library that provides the subject, or
    where a library was found), and the `fix`.  ``str()`` is the one-line text (``tag: detail``)."""

    tag: str
    reason: Reason
    detail: str
    fix: str
    file: str | None = None
    subject: str | None = None
    provider: str | None = None

    def __str__(self) -> str:
        return f"{self.tag}: {self.detail}"


def _blocker(tag: str, reason: Reason, detail: str, fix: str, file: str | None, subject: str | None,
             provider: str | None) -> Blocker:
    """``Blocker(tag, reason, detail, fix, file, subject, provider)``, made without the frozen dataclass's seven
    ``object.__setattr__`` calls: the same value (performance: show /usr/lib/x86_64-linux-gnu makes 33k, 16
    policies x 2,090 libraries from outside)."""
    blocker = _new_object(Blocker)
    blocker.__dict__.update(tag=tag, reason=reason, detail=detail, fix=fix, file=file, subject=subject,
                            provider=provider)
    return blocker


_new_object = object.__new__


class ElfVerdict(NamedTuple):
    """The best manylinux/musllinux tag of ELF content (`tag`: the policy's own name, `platform`: with
    its aliases, compressed; ``linux_<arch>`` for both when none fits) and why each better tag is not."""

    tag: str
    platform: str
    blockers: tuple[Blocker, ...]
    policy: Policy | None = None


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
    _elf_arch(content.elf)
    return elf_verdict(content).platform


def elf_verdict(content: Content) -> ElfVerdict:
    """The best policy the ELF content meets (best first within its libc family), and the blockers of
    every better one.  An older musllinux policy is never the verdict (:data:`MUSL_UNPROVABLE`)."""
    arches = sorted({i.arch for _p, i in content.elf})
    arch = "+".join(arches) or "any"
    out: list[Blocker] = []
    if len(arches) > 1:
        out.extend(Blocker(f"linux_{a}", Reason.ARCH, f"{p!r} is {a}: the tree mixes arches {arches!r}",
                           "build every binary for one arch", p, a)
                   for a, p in sorted({i.arch: p for p, i in content.elf}.items()))
        return ElfVerdict(f"linux_{arch}", f"linux_{arch}", tuple(out))
    family = family_of(i for _p, i in content.elf)
    newest_musl = min((p.priority for p in load_policies() if p.family == "musllinux"), default=None)
    judge = _ElfJudge(content)
    for policy in load_policies():
        if policy.family != family:
            continue
        if family == "musllinux" and policy.priority != newest_musl:
            out.append(Blocker(policy.tag(arch), Reason.MUSL_UNPROVABLE, MUSL_UNPROVABLE,
                               "nothing to fix: the newest musllinux policy is the verdict"))
            continue
        reasons = judge.policy(policy, arch, policy.tag(arch))
        if not reasons:
            return ElfVerdict(policy.tag(arch), policy_tags(policy, arch), tuple(out), policy)
        out.extend(reasons)
    return ElfVerdict(f"linux_{arch}", f"linux_{arch}", tuple(out))


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


def _macos_floor(arch: str) -> tuple[int, int]:
    """The oldest macOS a tag of `arch` names: 11.0 for arm64 (arm64 Macs run macOS >= 11), else 10.9."""
    return (11, 0) if arch == "arm64" else (10, 9)


def macos_blockers(content: Content) -> tuple[Blocker, ...]:
    """Why the Mach-O content's tag is not the oldest one its arch has (macosx_10_9, macosx_11_0 for arm64):
    that tag's blockers (file, slice, the macOS it needs, the fix); () when it gets it or no tag fits."""
    try:
        best = _best_macos(content.macho, None)
    except TagError:
        return ()
    arch = best.split("_", 3)[3]
    major, minor = _macos_floor(arch)
    floor = f"macosx_{major}_{minor}_{arch}"
    return () if best == floor else explain(content, floor)


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
    need = _macos_floor(arch)
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

def explain(content: Content, platform: str) -> tuple[Blocker, ...]:
    """Why the content does not support `platform` (each part of a compressed set), as typed
    blockers; () when it does."""
    out: list[Blocker] = []
    for part in platform.split("."):
        out.extend(_part_blockers(content, part))
    return tuple(dict.fromkeys(out))


def blockers(content: Content, platform: str) -> tuple[str, ...]:
    """Why the content does not support `platform`, one line each (:func:`explain` as text)."""
    return tuple(dict.fromkeys(str(b) for b in explain(content, platform)))


def _part_blockers(content: Content, plat: str) -> list[Blocker]:
    if plat == "any":
        return []
    if plat.startswith(("manylinux", "musllinux")):
        return _policy_blockers(content, plat)
    linux = re.fullmatch(_LINUX_TAG, plat)
    if linux:
        return _arch_blockers(content.elf, linux.group(1), plat)
    mac = re.fullmatch(_MACOS_TAG, plat)
    if mac:
        return _macos_blockers(content, int(mac.group(1)), int(mac.group(2)), mac.group(3), plat)
    if plat.startswith("macosx_"):
        return [_tag_blocker(plat, "not a macOS tag (expected macosx_<major>_<minor>_<arch>)")]
    if plat in WINDOWS_ARCHS:
        return _arch_blockers(content.pe, WINDOWS_ARCHS[plat], plat)
    return []


def _tag_blocker(plat: str, detail: str, fix: str = "give a valid platform tag") -> Blocker:
    return Blocker(plat, Reason.TAG, detail, fix)


def _arch_blockers(images: Sequence[tuple[str, Image]], arch: str, plat: str) -> list[Blocker]:
    return [Blocker(plat, Reason.ARCH, f"{path!r} is {image.arch}, not {arch}", f"build it for {arch}", path,
                    image.arch)
            for path, image in images if image.arch != arch]


def _policy_blockers(content: Content, plat: str) -> list[Blocker]:
    try:
        policy = get_policy(plat)
    except PolicyDataError:
        return [_tag_blocker(plat, "unknown manylinux/musllinux policy")]
    names = (policy.name, *policy.aliases)
    arch = next((plat[len(n) + 1:] for n in names if plat.startswith(n + "_")), "")
    if not arch:
        return [_tag_blocker(plat, f"the tag names no arch (expected e.g. {policy.name}_x86_64)")]
    if not content.elf:
        return []
    out = _arch_blockers(content.elf, arch, plat)
    family = family_of(i for _p, i in content.elf)
    if family != policy.family:
        first = content.elf[0][0]
        other = "a manylinux image (glibc)" if policy.family == "manylinux" else "a musllinux image (musl, e.g. Alpine)"
        out.append(Blocker(plat, Reason.LIBC, f"{first!r} is built for {family}, not {policy.family}",
                           f"build it on {other}", first, family))
    return out + _ElfJudge(content).policy(policy, arch, plat)


class _ElfJudge:
    """The policy rules over one Content (what each image needs, read once for all policies)."""

    def __init__(self, content: Content) -> None:
        self.content = content
        self.found = dict(content.found)
        self.needs = [(p, i, newest_needs(i)) for p, i in content.elf]
        self.extension_libpython = {d.name for _p, i in content.elf if i.kind is not FileKind.EXECUTABLE
                                    for d in i.needed if LIBPYTHON.fullmatch(d.name)}

    def policy(self, policy: Policy, arch: str, plat: str) -> list[Blocker]:
        """Every rule of `policy` for the images of `arch`, in a fixed order."""
        return [*self.libraries(policy, plat), *self.versions(policy, arch, plat), *self.blacklist(policy, plat),
                *self.isa(arch, plat), *self.stack(plat), *self.libpython(plat)]

    def libraries(self, policy: Policy, plat: str) -> Iterator[Blocker]:
        c = self.content
        refused = {(dep, lib): why for dep, lib, why in c.refused}
        for dep, lib in c.missing:
            why = refused.get((dep, lib))
            if why is not None:
                yield Blocker(plat, Reason.MISSING, f"{dep!r} needs {lib!r}: the loader finds {why}, and refuses it "
                              "(missing)", f"give a build of {lib} that the target loads (or describe the target's "
                              "CPU: --glibc-hwcaps), then vendor it: dynawheel repair", dep, lib)
                continue
            yield Blocker(plat, Reason.MISSING, f"{dep!r} needs {lib!r}, which is neither in the wheel nor found "
                          "anywhere (missing)", f"install {lib} (or give its directory with -L), then vendor it: "
                          "dynawheel repair", dep, lib)
        for detail, fix, dep, lib, provider in self._outside:
            yield _blocker(plat, Reason.OUTSIDE, detail, fix, dep, lib, provider)
        allowed = policy.lib_whitelist | loader_names()
        if policy.family == "musllinux":
            allowed |= musl_libc_names()
        for lib in sorted(c.system - allowed - self.extension_libpython):
            user = next((p for p, i in c.elf if any(d.name == lib for d in i.needed)), None)
            yield Blocker(plat, Reason.NOT_ALLOWED, f"external library {lib!r} is not allowed",
                          f"vendor {lib}: dynawheel repair", user, lib, self.found.get(lib))

    @functools.cached_property
    def _outside(self) -> list[tuple[str, str, str, str, str | None]]:
        """(detail, fix, file, library, provider) of each library from outside the wheel, the same for every
        policy (performance: 16 policies x 2,090 for show /usr/lib/x86_64-linux-gnu, made once)."""
        return [(f"{dep!r} needs {lib!r} from outside the wheel, which the policy does not allow (vendor it: "
                 "dynawheel repair)", f"vendor {lib}: dynawheel repair", dep, lib, self.found.get(lib))
                for dep, lib in self.content.outside
                if lib not in self.extension_libpython]  # the libpython rule names it (vendoring it is no fix)

    def versions(self, policy: Policy, arch: str, plat: str) -> Iterator[Blocker]:
        """The newest symbol version per prefix (GLIBC, GLIBCXX, ...) beyond the policy, with the files."""
        worst: dict[str, tuple[tuple[int, ...], str, str, list[str]]] = {}
        table = self._table(policy, arch)
        limits = None if table is None else {prefix: limit_key(text) for prefix, text in table.items()}
        for path, image, needs in self.needs:
            if image.arch != arch:
                continue
            if limits is None:
                yield Blocker(plat, Reason.ARCH, f"arch {image.arch!r} of {path!r} is not covered",
                              "no fix: the policy has no such arch", path, image.arch)
                continue
            for prefix, (key, symver, lib) in needs.items():
                limit = limits.get(prefix, key)
                if limit is not None and key <= limit:
                    continue
                if prefix not in worst or key > worst[prefix][0]:
                    worst[prefix] = (key, symver, lib, [path])
                elif key == worst[prefix][0]:
                    worst[prefix][3].append(path)
        for prefix, (_key, symver, lib, paths) in sorted(worst.items()):
            limit_text = policy.symbol_versions[arch][prefix]
            more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
            allowed_text = f"max {prefix}_{limit_text}" if limit_text else f"no {prefix} version allowed"
            yield Blocker(plat, Reason.SYMBOL_VERSION, f"{paths[0]!r}{more} needs {symver} ({allowed_text})",
                          f"build on {policy.name} or older (a {policy.name} build image)", paths[0], symver, lib)

    @staticmethod
    def _table(policy: Policy, arch: str) -> Mapping[str, str | None] | None:
        return policy.symbol_versions.get(arch)

    def blacklist(self, policy: Policy, plat: str) -> Iterator[Blocker]:
        for path, lib, symbol in self.content.blacklisted:
            if symbol in policy.blacklist.get(lib, ()):
                yield Blocker(plat, Reason.BLACKLISTED, f"{path!r} imports {symbol!r} from {lib!r}, which "
                              f"{policy.name} blacklists (some systems' {lib} lacks it)",
                              f"vendor your own {lib} (link it in statically) or do not call {symbol}", path, symbol,
                              lib)

    def isa(self, arch: str, plat: str) -> Iterator[Blocker]:
        """x86-64 policies promise the baseline ISA: an image whose GNU property note asks for more is
        refused by glibc's loader (>= 2.33) on an older CPU (``--disable-isa-check`` lets it through)."""
        if arch != "x86_64" or not self.content.isa_check:
            return
        for path, level in self._above_baseline:
            yield Blocker(plat, Reason.ISA, f"{path!r} needs the {level} instruction set (GNU property "
                          "note), not the x86-64 baseline", "build with -march=x86-64 (or -march=x86-64-v2 "
                          f"into glibc-hwcaps/) and link without -z {level}; or --disable-isa-check", path, level)

    def stack(self, plat: str) -> Iterator[Blocker]:
        for path, how in self._executable_stacks:
            yield Blocker(plat, Reason.EXEC_STACK, f"{path!r} {how}", "relink with -z noexecstack", path,
                          "PT_GNU_STACK")

    def libpython(self, plat: str) -> Iterator[Blocker]:
        """An extension (any shared library) must not link libpython: the interpreter provides its
        symbols, and may have none to load (a static Python).  Programs may."""
        for path, name in self._libpython_links:
            yield Blocker(plat, Reason.LIBPYTHON, f"{path!r} links {name!r} (extensions must not link libpython)",
                          "link without libpython (no -lpython3.X: python3-config --ldflags without --embed)", path,
                          name, self.found.get(name))

    # The images each rule below blames, the same for every policy (performance: read once, not once per
    # policy: 16 policies x 1,036 images for show /usr/lib/x86_64-linux-gnu)
    @functools.cached_property
    def _above_baseline(self) -> list[tuple[str, str]]:
        """(file, level) of the images whose GNU property note needs more than the x86-64 baseline."""
        return [(path, needed.label) for path, image in self.content.elf
                if (needed := image.elf.isa_needed) is not None and needed > X86Isa.BASELINE]

    @functools.cached_property
    def _executable_stacks(self) -> list[tuple[str, str]]:
        """(file, how) of the images whose stack is executable."""
        return [(path, "has no PT_GNU_STACK (the loader then makes the stack executable)"
                 if image.elf.stack is StackFlag.MISSING else "asks for an executable stack (PT_GNU_STACK with X)")
                for path, image in self.content.elf if image.elf.stack.executable]

    @functools.cached_property
    def _libpython_links(self) -> list[tuple[str, str]]:
        """(file, library) of the libraries (not programs) that link libpython."""
        return [(path, dep.name) for path, image in self.content.elf if image.kind is not FileKind.EXECUTABLE
                for dep in image.needed if LIBPYTHON.fullmatch(dep.name)]


# libpython3.11.so.1.0, libpython3.13t.so, libpython3.8d.so (auditwheel: LIBPYTHON_RE, with the ABI flags)
LIBPYTHON = re.compile(r"libpython\d+\.\d+[dmt]*\.so(\.\d+)*")


def _macos_blockers(content: Content, major: int, minor: int, arch: str, plat: str) -> list[Blocker]:
    archs = MAC_ARCHS.get(arch)
    if archs is None:
        return [_tag_blocker(plat, f"unknown macOS arch {arch!r} (known: {', '.join(sorted(MAC_ARCHS))})")]
    out: list[Blocker] = []
    if major >= 11 and minor != 0:
        out.append(_tag_blocker(plat, "pip never installs it: from macOS 11 on, tags carry minor version 0 "
                                f"(macosx_{major}_0_{arch})", f"use macosx_{major}_0_{arch}"))
    if arch == "arm64" and major < 11:
        out.append(_tag_blocker(plat, "pip never installs it: arm64 wheels start at macosx_11_0 (arm64 Macs run "
                                "macOS >= 11; macosx_10_x is for x86_64 and universal2)", "use macosx_11_0_arm64"))
    for path, imgs in sorted(_by_file(content.macho).items()):
        have = {i.arch for i in imgs}
        lacking = sorted(archs - have)
        if lacking:
            out.append(Blocker(plat, Reason.ARCH, f"{path!r} has no {'/'.join(lacking)} slice (it has "
                               f"{'+'.join(sorted(have))})", "build it with " + " ".join(f"-arch {a}" for a in
                                                                                         sorted(archs)),
                               path, "/".join(lacking)))
        for image in imgs:
            minimum = _min_macos(image)
            if image.arch not in archs or (image.arch == "arm64" and minimum <= (11, 0)):
                continue
            if minimum > (major, minor):
                out.append(Blocker(plat, Reason.MACOS_VERSION, f"{path!r} ({image.arch}) needs macOS "
                                   f"{minimum[0]}.{minimum[1]}, newer than {major}.{minor}",
                                   f"build with MACOSX_DEPLOYMENT_TARGET={major}.{minor}", path,
                                   f"macOS {minimum[0]}.{minimum[1]}"))
    return out
