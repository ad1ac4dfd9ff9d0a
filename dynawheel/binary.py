"""Format-neutral model of a binary, as the readers in :mod:`dynawheel.platforms` report it.

A file on disk is a :class:`BinaryFile`; it holds one :class:`Image` per architecture
(one for ELF and PE, one per slice for a fat Mach-O).  Everything is frozen: the
resolver and the planner only ever read these records.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class BinaryFormat(str, enum.Enum):
    ELF = "elf"
    PE = "pe"
    MACHO = "macho"


class DepKind(str, enum.Enum):
    """How a dependency is requested; the loaders treat some kinds differently."""

    NEEDED = "needed"  # ELF DT_NEEDED, PE import, Mach-O LC_LOAD_DYLIB
    DELAY = "delay"  # PE delay-load import (loaded at first call)
    WEAK = "weak"  # Mach-O LC_LOAD_WEAK_DYLIB (a miss is not fatal)
    REEXPORT = "reexport"  # Mach-O LC_REEXPORT_DYLIB
    LAZY = "lazy"  # Mach-O LC_LAZY_LOAD_DYLIB
    UPWARD = "upward"  # Mach-O LC_LOAD_UPWARD_DYLIB


class FileKind(str, enum.Enum):
    EXECUTABLE = "executable"
    SHARED = "shared"  # .so / .dll / .dylib
    BUNDLE = "bundle"  # Mach-O MH_BUNDLE (macOS Python extensions)
    OTHER = "other"  # relocatable objects, core files, ...


@dataclass(frozen=True)
class Dependency:
    """One library an image asks its loader for, and how (needed, delay-loaded, weak, ...)."""

    name: str  # exactly as written in the binary: 'libfoo.so.1', 'KERNEL32.dll', '@rpath/libx.dylib'
    kind: DepKind = DepKind.NEEDED

    @property
    def optional(self) -> bool:
        """A miss of this dependency does not stop the image from loading."""
        return self.kind is DepKind.WEAK


class X86Isa(enum.IntEnum):
    """An x86-64 micro-architecture level (the psABI's levels; ``GNU_PROPERTY_X86_ISA_1_V*`` bits)."""

    BASELINE = 1
    V2 = 2
    V3 = 3
    V4 = 4

    @property
    def label(self) -> str:
        """'x86-64' / 'x86-64-v3': as gcc's ``-march`` and glibc's hwcaps directories name it."""
        return "x86-64" if self is X86Isa.BASELINE else f"x86-64-v{self.value}"


class StackFlag(str, enum.Enum):
    """What ``PT_GNU_STACK`` asks of the loader."""

    NOT_EXECUTABLE = "not-executable"  # PT_GNU_STACK without PF_X
    EXECUTABLE = "executable"  # PT_GNU_STACK with PF_X (gcc -z execstack)
    MISSING = "missing"  # no PT_GNU_STACK: the Linux loaders then make the stack executable

    @property
    def executable(self) -> bool:
        return self is not StackFlag.NOT_EXECUTABLE


@dataclass(frozen=True)
class ElfTraits:
    """Facts of an ELF image the policy checks read, from its program headers and notes.

    `isa_needed` / `isa_used`: the highest x86-64 level in ``GNU_PROPERTY_X86_ISA_1_NEEDED`` /
    ``_USED`` of its ``NT_GNU_PROPERTY_TYPE_0`` note (None: no such property; the linker writes
    NEEDED for ``ld -z x86-64-v3``, glibc >= 2.33 refuses to load the image on a CPU below it).
    `stack`: its ``PT_GNU_STACK``.  `isa_bits`: the NEEDED bits as written (unknown bits kept)."""

    stack: StackFlag = StackFlag.NOT_EXECUTABLE
    isa_needed: X86Isa | None = None
    isa_used: X86Isa | None = None
    isa_bits: int = 0


@dataclass(frozen=True)
class Image:
    """One loadable image: a whole ELF/PE file or one slice of a Mach-O file."""

    format: BinaryFormat
    arch: str  # normalized: x86_64, i686, aarch64, arm64, armv7l, ppc64le, s390x, ...
    kind: FileKind
    needed: tuple[Dependency, ...] = ()
    rpaths: tuple[str, ...] = ()  # ELF DT_RPATH, Mach-O LC_RPATH (in order)
    runpaths: tuple[str, ...] = ()  # ELF DT_RUNPATH
    soname: str | None = None  # ELF DT_SONAME, Mach-O LC_ID_DYLIB, PE export-directory name
    # Format-specific facts, JSON-ready (str/int/bool/None/lists/dicts of them).
    # ELF: elfclass, osabi, interp, version_needs {lib: [versions]}
    # PE: exports, python_extension, dependent_load_flags, subsystem
    # Mach-O: cputype, min_macos, code_signature, free_header_space, filetype
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    elf_traits: ElfTraits | None = None  # ELF only: stack and ISA level (policy checks)


@dataclass(frozen=True)
class BinaryFile:
    """A parsed ELF, PE or Mach-O file: one image, or several in a universal (fat) Mach-O."""

    path: str  # as the caller named it (tree-relative posix path, or absolute)
    format: BinaryFormat
    images: tuple[Image, ...]
    fat: bool = False  # Mach-O universal file

    def image_for(self, arch: str) -> Image | None:
        for image in self.images:
            if image.arch == arch:
                return image
        return None
