"""Registry of binary-format backends, selected by magic bytes (never by file name).

Each module here (elf, pe, macho) provides one object satisfying :class:`Backend`.
The core (resolve, repair) only talks to this interface.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from ..binary import MAGIC_PREFIXES, BinaryFile, BinaryFormat, Dependency, Image
from ..search import SearchPaths

log = logging.getLogger(__name__)

MAGIC_READ = 8  # bytes enough for every sniff()


@dataclass(frozen=True)
class Loaded:
    """An image in the chain of loaders: path is absolute in the resolver's namespace."""

    path: str
    image: Image


@dataclass(frozen=True)
class Candidate:
    """A path the loader would try for one request, and why it tries it there."""

    path: str  # absolute path to try, in the resolver's namespace (posix)
    via: str  # why it is tried: 'DT_RUNPATH of pkg/_ext.so', 'LD_LIBRARY_PATH', 'ld.so.conf', ...
    flag: str | None = None  # a warning attached to a hit here ('loads on Python <= 3.7 only')
    # a miss here is not recorded as an attempt (glibc-hwcaps and legacy hwcaps subdirectories:
    # tried in every search directory, present in few)
    quiet: bool = False


class Backend(Protocol):
    """One binary format.  Optional class attributes the resolver reads with ``getattr``:

    ``match_soname`` (default False): an already-loaded image also satisfies a request
    equal to its :attr:`Image.soname` (glibc matches DT_SONAME; Windows does not).
    ``stops_at_bad_file`` (default False): a candidate that exists but cannot be parsed
    ends the search (glibc: "invalid ELF header") instead of being skipped.
    ``case_insensitive`` (default False): a candidate path matches a file of the tree whose name
    differs only in case (Windows' file lookup; on the host, the backend spells paths itself).
    """

    format: BinaryFormat

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


BACKEND_MODULES = ("elf", "pe", "macho")
_FORMAT_MODULES = {BinaryFormat.ELF: "elf", BinaryFormat.PE: "pe", BinaryFormat.MACHO: "macho"}
# Performance: a backend is imported only when a file's first bytes may be of its format
# (binary.MAGIC_PREFIXES; pe needs pefile, ~3 ms; macho its data tables), and its own sniff() decides.


def backends() -> tuple[Backend, ...]:
    """Every backend whose module is present (a module still missing is skipped)."""
    return tuple(b for b in map(_load_backend, BACKEND_MODULES) if b is not None)


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
