"""Format-neutral model of a binary, as the readers in :mod:`dynawheel.platforms` report it.

A file on disk is a :class:`BinaryFile`; it holds one :class:`Image` per architecture
(one for ELF and PE, one per slice for a fat Mach-O).  Everything is frozen: the
resolver and the planner only ever read these records.
"""

from __future__ import annotations

import enum
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar, Union


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
class DynamicTables:
    """Where an ELF file's dynamic symbol table, its strings and its hash table are (file offsets, from
    ``DT_SYMTAB``, ``DT_STRTAB``/``DT_STRSZ``, ``DT_GNU_HASH``/``DT_HASH``; 0: absent)."""

    symtab: int
    strtab: int
    strsz: int
    gnu_hash: int = 0
    hash: int = 0


# in show --json's 'elf_traits' (or nowhere), not in 'details'
_POLICY_FACTS = ("stack", "isa_needed", "isa_used", "isa_bits", "undefined")


def _fields_of(record: Any) -> dict[str, Any]:
    """A frozen record's fields by name, in declaration order (shallow: the caller turns tuples to lists)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


@dataclass(frozen=True)
class ElfFacts:
    """What the ELF reader finds beyond the dependencies (the defaults: a hand-built image's)."""

    elfclass: int = 64  # 32 or 64
    endian: str = "little"  # 'little' | 'big'
    machine: str = "EM_X86_64"  # e_machine, pyelftools' name (or the number as text)
    osabi: str = "ELFOSABI_SYSV"  # EI_OSABI, pyelftools' name
    type: str = "ET_DYN"  # e_type, pyelftools' name
    interp: str | None = None  # PT_INTERP
    flags_1: int = 0  # DT_FLAGS_1
    nodeflib: bool = False  # DF_1_NODEFLIB is set: no default directories
    # DT_VERNEED: {library: (versions, ...)}
    version_needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)  # read-only by type
    # For the policy checks: PT_GNU_STACK; the highest x86-64 level in GNU_PROPERTY_X86_ISA_1_NEEDED / _USED
    # of the NT_GNU_PROPERTY_TYPE_0 note (None: no such property; the linker writes NEEDED for
    # `ld -z x86-64-v3`, and glibc >= 2.33 refuses to load the image on a CPU below it); the NEEDED bits.
    stack: StackFlag = StackFlag.NOT_EXECUTABLE
    isa_needed: X86Isa | None = None
    isa_used: X86Isa | None = None
    isa_bits: int = 0
    # the undefined dynamic symbols (None: not read: an image built by hand, a file without a hash table)
    undefined: frozenset[str] | None = field(default=None, hash=False, repr=False)

    def json(self) -> dict[str, Any]:
        """The `details` of show --json (the policy facts are its `elf_traits`: see :meth:`traits_json`)."""
        out = {k: v for k, v in _fields_of(self).items() if k not in _POLICY_FACTS}
        out["version_needs"] = {lib: list(v) for lib, v in self.version_needs.items()}
        return out

    def traits_json(self) -> dict[str, Any]:
        return {"stack": self.stack.value, "isa_needed": self.isa_needed.label if self.isa_needed else None,
                "isa_used": self.isa_used.label if self.isa_used else None}


# Each format's facts record.  ELF's is above (every ELF image has it); PE's and Mach-O's are in modules of
# their own, imported when such an image is read or built, or the name is asked for (module __getattr__):
# performance, an ELF repair defines neither (~1 ms a frozen dataclass at import).
_FACTS_CLASS: dict[BinaryFormat, type[Any]] = {BinaryFormat.ELF: ElfFacts}
_FACTS_MODULES = {BinaryFormat.PE: ("pe_facts", "PeFacts"), BinaryFormat.MACHO: ("macho_facts", "MachoFacts")}

if TYPE_CHECKING:
    from .macho_facts import MachoFacts as MachoFacts
    from .pe_facts import PeFacts as PeFacts

    Facts = Union[ElfFacts, PeFacts, MachoFacts]
    _F = TypeVar("_F", ElfFacts, PeFacts, MachoFacts)


def _facts_class(fmt: BinaryFormat) -> type[Any]:
    """The facts record of format `fmt` (its module imported now, the first time)."""
    cls = _FACTS_CLASS.get(fmt)
    if cls is None:
        module, name = _FACTS_MODULES[fmt]
        cls = _FACTS_CLASS[fmt] = getattr(importlib.import_module(f"{__package__}.{module}"), name)
    return cls


def _facts_of(kind: type[Any], fmt: BinaryFormat) -> bool:
    """Is `kind` the facts record of `fmt`?  (A function: `kind is _facts_class(fmt)` in place would narrow
    `kind` to type[Any] for mypy.)"""
    return kind is _facts_class(fmt)


def __getattr__(name: str) -> Any:
    """PEP 562: PeFacts, MachoFacts and Facts (their Union with ElfFacts), their modules imported on first use."""
    for fmt, (_module, facts) in _FACTS_MODULES.items():
        if name == facts:
            return _facts_class(fmt)
    if name == "Facts":
        return Union[ElfFacts, _facts_class(BinaryFormat.PE), _facts_class(BinaryFormat.MACHO)]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    # The format's own facts, as its reader found them; None for an image built by hand.
    facts: Facts | None = field(default=None, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.facts is not None and type(self.facts) is not _facts_class(self.format):
            raise TypeError(f"{type(self.facts).__name__} given for a {self.format.value} image")

    @property
    def elf(self) -> ElfFacts:
        """The ELF facts of an ELF image (the defaults when it was built by hand)."""
        facts = self.facts
        if type(facts) is ElfFacts:  # performance: the loader rules ask it per request (40k times for a directory)
            return facts
        return self._facts(ElfFacts)

    @property
    def pe(self) -> PeFacts:
        """The PE facts of a PE image (the defaults when it was built by hand)."""
        from .pe_facts import PeFacts

        return self._facts(PeFacts)

    @property
    def macho(self) -> MachoFacts:
        """The Mach-O facts of a Mach-O slice (the defaults when it was built by hand)."""
        from .macho_facts import MachoFacts

        return self._facts(MachoFacts)

    def _facts(self, kind: type[_F]) -> _F:
        if not _facts_of(kind, self.format):
            raise TypeError(f"a {self.format.value} image has no {kind.__name__}")
        return self.facts if isinstance(self.facts, kind) else kind()

    @property
    def details(self) -> dict[str, Any]:
        """The facts as JSON-ready values (str/int/bool/None/lists/dicts), as `dynawheel show --json`
        prints them; {} for an image built by hand."""
        return {} if self.facts is None else self.facts.json()


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
