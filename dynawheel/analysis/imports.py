"""Symbols the policies blacklist that a wheel's ELF files import.

A manylinux/musllinux policy allows some system libraries (``libz.so.1``, ``libc.so.6``) but
blacklists some of their symbols, which not every copy of the library has (auditwheel's policy
``blacklist``, in ``data/manylinux-policy.json``).  As auditwheel does, a file is judged on its
undefined dynamic symbols and the libraries it names in ``DT_NEEDED``: a blacklisted symbol of a
library it needs counts.  The symbols are read through the platforms registry
(:func:`platforms.undefined_symbols`), only from files that need a library some policy blacklists
symbols of, and only when that policy could take the file otherwise: glibc's blacklist is
manylinux2014's and older, which a file needing a newer ``GLIBC_2.x`` fails anyway (performance: a
file of a wheel is inflated again to read its symbols).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import BinaryIO

from ..binary import BinaryFormat, Image
from ..platforms import undefined_symbols
from ..policy import blacklisted_symbols, load_policies, newest_needs, versions_within

Blacklisted = tuple[tuple[str, str, str], ...]  # (file, library, symbol)


def blacklisted_imports(files: Iterable[tuple[str, Image, str]], opener: Callable[[str], BinaryIO]) -> Blacklisted:
    """(file, library, symbol) for each (file, image, where) whose image needs a library with
    blacklisted symbols and imports some of them; `opener(where)` opens the file (read once)."""
    listed = blacklisted_symbols()
    out: set[tuple[str, str, str]] = set()
    for path, image, where in files:
        if image.format is not BinaryFormat.ELF:
            continue
        libs = [d.name for d in image.needed if d.name in listed]
        if libs:  # performance: the image's newest versions read once, not once per policy and library
            needs = newest_needs(image)
            libs = [lib for lib in libs if _may_matter(lib, image, needs)]
        if not libs:
            continue
        imported = image.elf.undefined  # read with the file (platforms/elf.py)
        if imported is None:
            with opener(where) as fp:
                imported = undefined_symbols(image.format, fp, path)
        out.update((path, lib, symbol) for lib in libs for symbol in imported & listed[lib])
    return tuple(sorted(out))


def _may_matter(lib: str, image: Image, needs: Mapping[str, tuple[tuple[int, ...], str, str]]) -> bool:
    """Some policy that blacklists symbols of `lib` would take `image` (whose newest versions are `needs`) by
    its symbol versions."""
    return any(lib in p.blacklist and versions_within(p, image, needs) for p in load_policies())
