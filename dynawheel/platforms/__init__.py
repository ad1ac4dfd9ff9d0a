"""Registry of binary-format backends, selected by magic bytes (never by file name), and of their editors.

Each reader module here (elf, pe, macho) provides one object satisfying :class:`Backend`; each editor
module (elf_edit, pe_edit, macho_edit) a ``make_editor()`` returning an :class:`Editor`, which takes
the frozen edit record of its format (:class:`ElfEdits`, :class:`MachoEdits`, :class:`PeEdits`).
The core (analysis, repair, audit) only talks to these interfaces.
"""

from __future__ import annotations

import functools
import importlib
import operator
import posixpath
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol

from ..binary import BinaryFile, BinaryFormat, Dependency, Image
from ..log import get_logger
from ..magic import MAGIC_PREFIXES
from ..search import SearchPaths

if TYPE_CHECKING:
    from .edits import EditJob, Editor, Edits, ElfEdits, MachoEdits, PeEdits, make_editor

__all__ = ["BACKEND_MODULES", "MAGIC_READ", "PATH_FLAG", "Backend", "Candidate", "EditJob", "Editor", "Edits",
           "ElfEdits", "LinuxSystem", "Loaded", "MachoEdits", "PeEdits", "backend_for", "backend_of",
           "make_editor", "python_imports", "undefined_symbols"]

log = get_logger(__name__)

_NAME = operator.attrgetter("name")
MAGIC_READ = 8  # bytes enough for every sniff()


# Loaded and Candidate are NamedTuples (frozen, typed; performance: the resolver makes one Candidate per
# path a loader tries, 62k on the torch wheel (18 hwcaps subdirectories per search directory), and a
# NamedTuple is built ~4x faster than a frozen dataclass, which sets each field through object.__setattr__)
class Loaded(NamedTuple):
    """An image in the chain of loaders: path is absolute in the resolver's namespace."""

    path: str
    image: Image


PATH_FLAG = "loads on Python <= 3.7 only"  # Candidate.flag of a hit found only through PATH (PE)


class Candidate(NamedTuple):
    """A path the loader would try for one request, and why it tries it there."""

    path: str  # absolute path to try, in the resolver's namespace (posix)
    via: str  # why it is tried: 'DT_RUNPATH of pkg/_ext.so', 'LD_LIBRARY_PATH', 'ld.so.conf', ...
    flag: str | None = None  # a warning attached to a hit here ('loads on Python <= 3.7 only')
    # subdirectories of the path's directory the loader tries first, in order (glibc-hwcaps and legacy
    # hwcaps subdirectories: tried in every search directory, present in few); a miss there is not an
    # attempt, and the resolver looks only in those that exist (one test per directory)
    subdirs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LinuxSystem:
    """What the manylinux/musllinux policy data says a Linux target provides, given to the ELF
    backend (platforms/ never reads policy.py: the core injects this, as policy.linux_system() builds it)."""

    libraries: frozenset[str]  # the names some policy lets stay outside a wheel: the system's
    musl_libc: frozenset[str]  # every name of musl's C library (the loader itself)
    interpreters: Mapping[str, Mapping[str, str]]  # family ('manylinux', 'musllinux') -> arch -> PT_INTERP
    loaders: frozenset[str] = field(init=False)  # the file names of every family's interpreters

    def __post_init__(self) -> None:
        names = {posixpath.basename(p) for table in self.interpreters.values() for p in table.values()}
        object.__setattr__(self, "loaders", frozenset(names))

    def family(self, images: Iterable[Image]) -> str:
        """musllinux when an image uses musl's loader or needs musl's libc (by any of its names:
        Alpine-built extensions have no PT_INTERP and need ``libc.musl-<arch>.so.1``), else manylinux."""
        for image in images:  # (asked once per ELF request: the names matched in C, by map and isdisjoint)
            if "ld-musl-" in (image.elf.interp or "") or not self.musl_libc.isdisjoint(map(_NAME, image.needed)):
                return "musllinux"
        return "manylinux"


class Backend(Protocol):
    """One binary format: its reader and its loader's search rules."""

    format: BinaryFormat
    # an already-loaded image also satisfies a request equal to its Image.soname (glibc matches
    # DT_SONAME; Windows and dyld do not)
    match_soname: bool
    # a candidate that exists but cannot be parsed ends the search (glibc: "invalid ELF header")
    # instead of being skipped
    stops_at_bad_file: bool
    # a candidate path matches a file of the tree whose name differs only in case (Windows' file
    # lookup; on the host, the backend spells paths itself)
    case_insensitive: bool

    # with_policy() gives this backend what it needs (ELF); False: it needs nothing and the core does not
    # load the policy data for it (performance: `show` of a Windows or macOS wheel never reads it)
    needs_policy: bool

    def with_policy(self, linux: LinuxSystem) -> Backend:
        """This backend with the policy data its loader rules need (ELF: a new one; the others need none)."""
        ...

    def sniff(self, head: bytes) -> bool:
        """True if these first bytes (MAGIC_READ of them) start a file of this format."""
        ...

    def parse(self, fp: BinaryIO, path: str) -> BinaryFile:
        """Read the headers from a seekable file; raise BinaryFormatError naming `path`."""
        ...

    def is_system(self, request: Dependency, loader: Image, search: SearchPaths) -> bool:
        """The OS provides it: never looked up, never vendored, never 'missing'."""
        ...

    def candidates(
        self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths
    ) -> Iterator[Candidate]:
        """Where the loader looks for `request`, in order; chain[-1] is the direct loader."""
        ...

    def loaded_key(self, name: str) -> str:
        """Key under which an already-loaded library satisfies a later request."""
        ...

    def lookup_key(self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths) -> Hashable | None:
        """Everything the search for `request` from chain[-1] depends on (:meth:`candidates`, :meth:`refusal`,
        :meth:`is_system` and the arch chain[-1] wants), `search` aside: two requests of one analysis with the
        same key find the same files after the same attempts, so the resolver searches once per key.  Images
        count by identity (``id``: the analysis keeps each alive).  None: search every time."""
        ...

    def refusal(self, image: Image, chain: Sequence[Loaded], search: SearchPaths) -> str | None:
        """Why the loader, having found `image` (of the right arch) for chain[-1], refuses to load it (glibc:
        "CPU ISA level is lower than required"); None: it loads.  A refusal ends the search when
        ``stops_at_bad_file`` (the load fails), else the loader searches on."""
        ...

    def missing_note(self, name: str) -> str | None:
        """What to tell about a dependency nothing provides (PE: the Visual C++ runtime must be shipped)."""
        ...


BACKEND_MODULES = ("elf", "pe", "macho")
_FORMAT_MODULES = {BinaryFormat.ELF: "elf", BinaryFormat.PE: "pe", BinaryFormat.MACHO: "macho"}
# Performance: a backend is imported only when a file's first bytes may be of its format
# (magic.MAGIC_PREFIXES; macho needs its data tables), and its own sniff() decides.


@functools.cache
def _load_backend(name: str) -> Backend | None:
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ImportError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        log.debug("backend module %r is not available", name)
        return None
    backend: Backend = module.BACKEND
    return backend


def backend_for(head: bytes) -> Backend | None:
    """The backend whose magic matches `head`, or None for a non-binary file."""
    for name in BACKEND_MODULES:
        if head.startswith(MAGIC_PREFIXES.get(name, (b"",))):
            backend = _load_backend(name)
            if backend is not None and backend.sniff(head):
                return backend
    return None


def backend_of(fmt: BinaryFormat) -> Backend:
    name = _FORMAT_MODULES.get(fmt)
    backend = _load_backend(name) if name is not None else None
    if backend is None or backend.format is not fmt:
        raise KeyError(fmt)
    return backend


# ---- editors: platforms/edits.py, imported on first use (performance: `show` edits nothing) ---------

_EDIT_NAMES = frozenset({"EditJob", "Editor", "Edits", "ElfEdits", "MachoEdits", "PeEdits", "make_editor"})


def __getattr__(name: str) -> Any:
    if name not in _EDIT_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import edits

    return getattr(edits, name)


# ---- symbols -------------------------------------------------------------------------------------

def python_imports(fmt: BinaryFormat, fp: BinaryIO, path: str) -> frozenset[str]:
    """The Python C API symbols a binary imports (ELF/Mach-O: undefined ``Py*``/``_Py*`` symbols, the
    Mach-O underscore removed; PE: the names imported from python3.dll / python3X.dll)."""
    module = importlib.import_module(f"{__name__}.symbols")
    names: frozenset[str] = module.python_imports(fmt, fp, path)
    return names


def undefined_symbols(fmt: BinaryFormat, fp: BinaryIO, path: str) -> frozenset[str]:
    """The undefined dynamic symbols of a binary (ELF: by ``DT_SYMTAB`` and its hash table, else by the
    ``.dynsym`` section); other formats: none read yet.  (The ELF reader keeps them too: ``ElfFacts.undefined``.)"""
    if fmt is not BinaryFormat.ELF:
        return frozenset()
    names: frozenset[str] | None = importlib.import_module(f"{__name__}.elf").undefined_symbols(fp, path)
    if names is None:
        names = importlib.import_module(f"{__name__}.symbols").elf_undefined(fp, path)
    return names
