"""ELF backend: a header-only reader (struct; pyelftools' names) and glibc ld.so's search rules.

The reader reads the ELF header, the program headers (``PT_GNU_STACK``'s flags among them), the
``PT_INTERP`` string, the ``PT_DYNAMIC`` entries, the version-need records that ``DT_VERNEED``
points to and, on x86, the ``NT_GNU_PROPERTY_TYPE_0`` note (``PT_GNU_PROPERTY``, else the
``PT_NOTE`` segments) for its ISA level.  It never reads section headers or symbol tables, so a
400 MB library costs a few reads.

How glibc's ld.so finds ``DT_NEEDED`` name ``N`` of the object ``L`` (``chain[-1]``) that
was itself loaded by ``chain[-2]`` ... ``chain[0]`` (facts from glibc ``elf/dl-load.c``
and ``ld.so(8)``), as :meth:`ElfBackend.candidates` yields them:

=====================================  ==============================================
case                                   where ld.so looks, in order
=====================================  ==============================================
``N`` is the program interpreter       already loaded at its ``PT_INTERP`` path
``N`` contains ``/`` (after DSTs)      that path only (a relative one would be
                                       relative to the process's cwd: not searched)
otherwise                              1. ``-L`` dirs (``SearchPaths.extra``: ours)
                                       2. if ``L`` has no ``DT_RUNPATH``: the
                                          ``DT_RPATH`` of ``L``, then of its loader and
                                          on up the chain (an object that has a
                                          ``DT_RUNPATH`` contributes no ``DT_RPATH``)
                                       3. ``LD_LIBRARY_PATH``
                                       4. ``DT_RUNPATH`` of ``L`` only (not inherited)
                                       5. ``ld.so.cache`` (entries of ``L``'s class and
                                          machine); without a cache file: the
                                          ``ld.so.conf`` dirs (an approximation)
                                       6. the default dirs (Debian: ``/lib/<triplet>``,
                                          ``/usr/lib/<triplet>``, ``/lib``, ``/usr/lib``)
                                       5 and 6 are skipped when ``L`` has
                                       ``DF_1_NODEFLIB``.
                                       In each directory of 2, 3, 4 and 6 its
                                       ``glibc-hwcaps/<level>`` (the target CPU's
                                       levels) and legacy hwcaps subdirectories
                                       come first (``SearchPaths.elf_subdirs``).
=====================================  ==============================================

The first file found (of the right class and machine) is taken: if its GNU property note needs an x86
ISA level the target CPU lacks, glibc >= 2.33 does not search on but fails the load ("CPU ISA level is
lower than required", :meth:`ElfBackend.refusal`); only glibc-hwcaps entries of ``ld.so.cache`` are
skipped for their level (``search._cache_pick``).

``$ORIGIN``/``${ORIGIN}`` expands to the directory of the object holding the string,
``$LIB`` and ``$PLATFORM`` to ``SearchPaths.elf_lib`` / ``elf_platform``.  A candidate
of another class or machine is skipped (the resolver checks :attr:`Image.arch`).  Not
modelled: secure (setuid) mode, ``GLIBC_TUNABLES``.

An already-loaded object satisfies a request equal to its request name, its path or
its ``DT_SONAME`` (:attr:`ElfBackend.match_soname`).

musl's loader (facts from musl ``ldso/dynlink.c``, checked against ``ld-musl-x86_64.so.1
--list`` in tests/test_musl.py) is used for a chain whose program uses ``ld-musl-*`` or
whose objects need musl's libc by any of its names (``libc.so``, Alpine's ``libc.musl-ARCH.so.1``,
``ld-musl-ARCH.so.1``: the musllinux tell, :meth:`LinuxSystem.family`); those names are the system
whatever the host has (:meth:`ElfBackend.is_system`):

=====================================  ==============================================
``N`` is ``libc.so``, ``libm.so``, ...  the loader itself (musl's libc: one file)
``N`` contains ``/``                   that path only
otherwise                              1. ``-L`` dirs (ours)
                                       2. ``LD_LIBRARY_PATH``
                                       3. the ``DT_RUNPATH`` (else ``DT_RPATH``) of
                                          ``L``, then of its loader and on up the
                                          chain: both are inherited; a list with a
                                          ``$`` other than ``$ORIGIN`` is ignored
                                       4. ``/etc/ld-musl-ARCH.path`` (``:`` or newline
                                          separated), else ``/lib``, ``/usr/local/lib``,
                                          ``/usr/lib``
=====================================  ==============================================

Not modelled for musl: it takes the first file that opens, even of another class (the load
then fails); the resolver skips such a file as for glibc.
"""

from __future__ import annotations

import array
import functools
import itertools
import posixpath
import re
import struct
import sys
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import BinaryIO, NamedTuple

from ..binary import (
    BinaryFile,
    BinaryFormat,
    Dependency,
    DynamicTables,
    ElfFacts,
    FileKind,
    Image,
    StackFlag,
    X86Isa,
)
from ..errors import BinaryFormatError
from ..log import get_logger
from ..search import SearchPaths
from . import Candidate, LinuxSystem, Loaded

log = get_logger(__name__)

MAGIC = b"\x7fELF"
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE = 1, 2, 3, 4
PT_GNU_STACK, PT_GNU_PROPERTY = 0x6474E551, 0x6474E553
PF_X = 0x1
NT_GNU_PROPERTY_TYPE_0 = 5
# binutils' include/elf/common.h (GNU_PROPERTY_X86_UINT32_OR_LO + 2, GNU_PROPERTY_X86_UINT32_OR_AND_LO + 2)
GNU_PROPERTY_X86_ISA_1_NEEDED, GNU_PROPERTY_X86_ISA_1_USED = 0xC0008002, 0xC0010002
_X86_MACHINES = frozenset({3, 62})  # EM_386, EM_X86_64
MAX_NOTES = 1 << 16  # bytes of a note segment read at most (a property note is 32-48 bytes)
MAX_SYMBOLS = 2_000_000  # dynamic symbols read at most (a header that claims more lies)
DT_NULL = 0
DT_NEEDED = 1
DT_HASH = 4
DT_STRTAB = 5
DT_SYMTAB = 6
DT_STRSZ = 10
DT_GNU_HASH = 0x6FFFFEF5
DT_SONAME = 14
DT_RPATH = 15
DT_RUNPATH = 29
_STRING_TAGS = frozenset({DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH})
MAX_PHDR_TABLE = 4 << 20  # bytes of program headers read at most (real files: < 1 KiB; 0xffff x 56 fits)
MAX_DYNAMIC = 1 << 16  # entries; real files have well under 100
DT_VERNEED = 0x6FFFFFFE
DT_VERNEEDNUM = 0x6FFFFFFF
DT_FLAGS_1 = 0x6FFFFFFB
DF_1_NODEFLIB = 0x800
DF_1_PIE = 0x08000000
_VER = struct.Struct("HHIII")  # Elf_Verneed and Elf_Vernaux have the same 16-byte shape
MAX_VERNEED = 4096

# e_machine -> (name for ELFCLASS32, name for ELFCLASS64); little-endian unless noted.
_MACHINES: dict[int, tuple[str, str]] = {
    3: ("i686", "i686-64"),
    62: ("x32", "x86_64"),
    183: ("aarch64-32", "aarch64"),
    40: ("armv7l", "armv7l-64"),
    21: ("ppc64-32", "ppc64le"),
    20: ("ppc", "ppc-64"),
    22: ("s390", "s390x"),
    243: ("riscv32", "riscv64"),
    258: ("loongarch32", "loongarch64"),
    8: ("mips", "mips64"),
    2: ("sparc", "sparc-64"),
    43: ("sparc64-32", "sparc64"),
}
_BIG_ENDIAN_NAMES = {"ppc64le": "ppc64", "armv7l": "armv7b", "aarch64": "aarch64_be", "mips64": "mips64"}
_LITTLE_ENDIAN_NAMES = {"mips": "mipsel", "mips64": "mips64el"}
_NATIVE_BIG = {"s390", "s390x", "sparc", "sparc64", "ppc", "mips", "mips64"}
_DST = re.compile(r"\$(\{(ORIGIN|LIB|PLATFORM)\}|(ORIGIN|LIB|PLATFORM)(?![A-Za-z0-9_]))")


def normalize_arch(machine: int, elfclass: int, little: bool) -> str:
    """Our arch name for an ELF header; the class is part of it so 32 and 64 bit never match."""
    names = _MACHINES.get(machine)
    if names is None:
        return f"em{machine}-{elfclass}{'le' if little else 'be'}"
    name = names[1] if elfclass == 64 else names[0]
    if not little:
        return name if name in _NATIVE_BIG else _BIG_ENDIAN_NAMES.get(name, name + "-be")
    return _LITTLE_ENDIAN_NAMES.get(name, name)


def _size(fp: BinaryIO) -> int:
    fp.seek(0, 2)
    return fp.tell()


def _check_header(fp: BinaryIO, path: str) -> tuple[int, bool, int]:
    """Validate what ld.so validates first; return (class, little endian, e_machine)."""
    size = _size(fp)
    fp.seek(0)
    ident = fp.read(64)
    if not MAGIC.startswith(ident[:4]):
        raise BinaryFormatError(f"cannot parse {path!r}: not an ELF file (magic {ident[:4]!r})")
    if len(ident) < 16:
        raise BinaryFormatError(f"cannot parse {path!r}: truncated ELF identification ({size} bytes, need 16)")
    elfclass = {1: 32, 2: 64}.get(ident[4])
    if elfclass is None:
        raise BinaryFormatError(f"cannot parse {path!r}: invalid ELF class byte {ident[4]!r}")
    if ident[5] not in (1, 2):
        raise BinaryFormatError(f"cannot parse {path!r}: invalid ELF data encoding byte {ident[5]!r}")
    need = 52 if elfclass == 32 else 64
    if size < need:
        raise BinaryFormatError(f"cannot parse {path!r}: truncated ELF header ({size} bytes, need {need})")
    little = ident[5] == 1
    end = "<" if little else ">"
    phdrs_end = _phdrs_end(ident, elfclass, end)
    if phdrs_end > size:
        raise BinaryFormatError(
            f"cannot parse {path!r}: program headers end at byte {phdrs_end}, "
            f"beyond the end of the file ({size} bytes)"
        )
    return elfclass, little, struct.unpack_from(end + "H", ident, 18)[0]


def _phdrs_end(ident: bytes, elfclass: int, end: str) -> int:
    """Offset just past the program header table (e_phoff + e_phentsize * e_phnum)."""
    off_fmt, off_at, sizes_at = ("Q", 32, 54) if elfclass == 64 else ("I", 28, 42)
    (phoff,) = struct.unpack_from(end + off_fmt, ident, off_at)
    phentsize, phnum = struct.unpack_from(end + "HH", ident, sizes_at)
    return int(phoff + phentsize * phnum) if phnum else 0


def _read_cstr(fp: BinaryIO, offset: int, path: str) -> str:
    fp.seek(offset)
    out = b""
    while True:
        chunk = fp.read(256)
        if not chunk:
            raise BinaryFormatError(f"cannot parse {path!r}: unterminated string at byte {offset}")
        nul = chunk.find(b"\0")
        if nul >= 0:
            return (out + chunk[:nul]).decode("utf-8", "surrogateescape")
        out += chunk
        if len(out) > 65536:
            raise BinaryFormatError(f"cannot parse {path!r}: string at byte {offset} is too long")


def _names(table: Mapping[str, int]) -> dict[int, str]:
    """pyelftools' name table for a header field, reversed (value -> 'ET_DYN', 'EM_X86_64', ...)."""
    return {value: name for name, value in table.items() if not name.startswith("_")}


@functools.lru_cache(maxsize=1)
def _enum_names() -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    from elftools.elf.enums import ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_EI_OSABI

    return _names(ENUM_E_TYPE), _names(ENUM_E_MACHINE), _names(ENUM_EI_OSABI)


# Performance: pyelftools' names of the common values (tests/test_elf.py checks them against
# pyelftools), so that parsing the usual files does not import pyelftools (~5 ms); any other value
# is looked up in pyelftools' tables.
_COMMON_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_COMMON_MACHINES = {3: "EM_386", 8: "EM_MIPS", 20: "EM_PPC", 21: "EM_PPC64", 22: "EM_S390", 40: "EM_ARM",
                    62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV", 258: "EM_LOONGARCH"}
_COMMON_OSABIS = {0: "ELFOSABI_SYSV", 3: "ELFOSABI_LINUX"}


def _enum_name(common: Mapping[int, str], which: int, value: int) -> str:
    """pyelftools' name of a header value (`which`: 0 e_type, 1 e_machine, 2 EI_OSABI), else the number."""
    name = common.get(value)
    return name if name is not None else _enum_names()[which].get(value, str(value))


_IS_ZERO = bytes([1]) + bytes(255)  # bytes.translate table: 0 -> 1, anything else -> 0


class _Reader:
    """One parse, from the program headers alone (section headers are never read).

    Reads go in file order where it matters: a compressed wheel member is read as a stream,
    and every backward seek restarts its decompression.  So: the headers, ``PT_INTERP`` and
    ``PT_DYNAMIC`` first; then the version-need records; then every string, sorted by offset.
    """

    def __init__(self, fp: BinaryIO, path: str) -> None:
        self.fp, self.path = fp, path
        self.elfclass, self.little, self.machine = _check_header(fp, path)
        self.end = "<" if self.little else ">"
        self.header = self._at(0, 52 if self.elfclass == 32 else 64, what="ELF header")
        self.loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset)

    def offset_of(self, vaddr: int) -> int:
        for start, filesz, offset in self.loads:
            if start <= vaddr < start + filesz:
                return offset + vaddr - start
        raise BinaryFormatError(f"cannot parse {self.path!r}: address {vaddr:#x} is not in any PT_LOAD segment")

    def _program_headers(self) -> Iterator[_Segment]:
        """Every program header (type, flags, offset, vaddr, filesz, align)."""
        if self.elfclass == 64:
            phoff, = struct.unpack_from(self.end + "Q", self.header, 32)
            phentsize, phnum = struct.unpack_from(self.end + "HH", self.header, 54)
            fmt, order = struct.Struct(self.end + "IIQQQQQQ"), (0, 1, 2, 3, 5, 7)
        else:
            phoff, = struct.unpack_from(self.end + "I", self.header, 28)
            phentsize, phnum = struct.unpack_from(self.end + "HH", self.header, 42)
            fmt, order = struct.Struct(self.end + "IIIIIIII"), (0, 6, 1, 2, 4, 7)
        if phnum and phentsize < fmt.size:
            raise BinaryFormatError(f"cannot parse {self.path!r}: program header size {phentsize} < {fmt.size}")
        if phentsize * phnum > MAX_PHDR_TABLE:  # a header field, never trusted to size a read
            raise BinaryFormatError(f"cannot parse {self.path!r}: program header table of {phnum} x {phentsize} "
                                    f"bytes (at most {MAX_PHDR_TABLE} are read)")
        table = self._at(phoff, phentsize * phnum, what="program headers") if phnum else b""
        for i in range(phnum):
            fields = fmt.unpack_from(table, i * phentsize)
            yield _Segment(*(fields[k] for k in order))

    def read(self) -> Image:
        interp: str | None = None
        dynamic: tuple[int, int] | None = None
        stack = StackFlag.MISSING
        notes: list[_Segment] = []
        for seg in self._program_headers():
            if seg.type == PT_LOAD:
                self.loads.append((seg.vaddr, seg.filesz, seg.offset))
            elif seg.type == PT_DYNAMIC:
                dynamic = (seg.offset, seg.filesz)
            elif seg.type == PT_GNU_STACK:
                stack = StackFlag.EXECUTABLE if seg.flags & PF_X else StackFlag.NOT_EXECUTABLE
            elif seg.type in (PT_INTERP, PT_NOTE, PT_GNU_PROPERTY):
                notes.append(seg)
        if any(seg.type == PT_GNU_PROPERTY for seg in notes):  # the linker's own pointer to the property note
            notes = [seg for seg in notes if seg.type != PT_NOTE]
        isa = (0, 0)
        fields = _DynFields()
        if dynamic is not None:
            notes.append(_Segment(PT_DYNAMIC, 0, dynamic[0], 0, dynamic[1], 0))
        for seg in sorted(notes, key=lambda seg: seg.offset):  # file order: a wheel member is a stream
            if seg.type == PT_INTERP:
                interp = _read_cstr(self.fp, seg.offset, self.path)
            elif seg.type == PT_DYNAMIC:
                fields = self._dynamic(seg.offset, seg.filesz)
            elif self.machine in _X86_MACHINES:
                isa = self._x86_isa(seg, isa)
        tables = self.tables(fields)
        needs, table, strings = self._tables_in_file_order(fields, tables)
        wanted = {off for _tag, off in fields.strings} | {off for lib, names in needs for off in (lib, *names)}
        text = self._strings(fields, wanted, strings)
        for d_tag, off in fields.strings:
            fields.add(d_tag, text[off])
        versions: dict[str, list[str]] = {}
        for lib, names in needs:
            versions.setdefault(text[lib], []).extend(text[n] for n in names)
        undefined = self._undefined(table, strings) if table is not None else None
        return self._image(interp, fields, versions, stack, isa, undefined)

    def _tables_in_file_order(self, fields: _DynFields, tables: DynamicTables | None
                              ) -> tuple[list[tuple[int, list[int]]], bytes | None, bytes]:
        """The version records, the dynamic symbol table (None: no hash table to count it by) and the
        string table, each read in file order (a wheel member is a stream: a backward seek inflates it
        again from the start; patchelf moves tables to the end of the file).  The symbol table may come
        before the hash table that counts it: it is read up to the next table, then cut to its count."""
        needs: list[tuple[int, list[int]]] = []
        steps: list[tuple[int, str]] = []
        if fields.verneed and fields.strtab and fields.verneednum:
            steps.append((self.offset_of(fields.verneed), "versions"))
        if tables is not None:
            steps += [(o, k) for o, k in ((tables.symtab, "symbols"), (tables.strtab, "strings"),
                                          (tables.gnu_hash or tables.hash, "count")) if o]
        count: int | None = None
        table = b""
        strings = b""
        for offset, step in sorted(steps):
            if step == "versions":
                needs = self._version_records(fields)
            elif step == "count" and tables is not None:
                count = self._symbol_count(tables)
            elif step == "symbols":
                after = [o for o, _k in steps if o > offset]
                size = self._symbols_size(count) if count is not None else min(after, default=offset) - offset
                table = self._at(offset, min(size, MAX_SYMBOLS * 24), what="dynamic symbols")
            elif tables is not None:
                strings = self._at(tables.strtab, tables.strsz, what="dynamic strings")
        if count is None or tables is None:
            return needs, None, strings
        size = self._symbols_size(count)
        if len(table) < size:  # the next table starts inside it: read it whole (one more pass at worst)
            table = self._at(tables.symtab, size, what="dynamic symbols")
        return needs, table[:size], strings

    def _symbols_size(self, count: int) -> int:
        if count > MAX_SYMBOLS:
            raise BinaryFormatError(f"cannot parse {self.path!r}: its hash table claims {count} dynamic symbols")
        return count * (24 if self.elfclass == 64 else 16)

    def tables(self, fields: _DynFields) -> DynamicTables | None:
        """The file offsets of the symbol, string and hash tables (None: no symbol table or strings)."""
        symtab, strsz = fields.tables.get(DT_SYMTAB), fields.tables.get(DT_STRSZ)
        if not symtab or not fields.strtab or not strsz:
            return None
        try:
            return DynamicTables(self.offset_of(symtab), self.offset_of(fields.strtab), strsz,
                                 *(self.offset_of(fields.tables[t]) if fields.tables.get(t) else 0
                                   for t in (DT_GNU_HASH, DT_HASH)))
        except BinaryFormatError:
            return None  # an address outside every PT_LOAD: no table to read

    def undefined(self) -> frozenset[str] | None:
        """The undefined dynamic symbols (see :meth:`_symbol_table`), the tables found from the dynamic segment."""
        dynamic = None
        for seg in self._program_headers():
            if seg.type == PT_LOAD:
                self.loads.append((seg.vaddr, seg.filesz, seg.offset))
            elif seg.type == PT_DYNAMIC:
                dynamic = (seg.offset, seg.filesz)
        tables = self.tables(self._dynamic(*dynamic)) if dynamic is not None else None
        table = self._symbol_table(tables) if tables is not None else None
        if tables is None or table is None:
            return None
        return self._undefined(table, self._at(tables.strtab, tables.strsz, what="dynamic strings"))

    def _symbol_table(self, tables: DynamicTables) -> bytes | None:
        """The dynamic symbol table, as many entries long as ``DT_HASH``'s nchain, or as the highest index
        ``DT_GNU_HASH``'s buckets and chains reach (None: no table to count by); never the section headers
        (a wheel member read as a stream is inflated only up to these tables, not to its end)."""
        count = self._symbol_count(tables)
        if count is None:
            return None
        return self._at(tables.symtab, self._symbols_size(count), what="dynamic symbols")

    def _undefined(self, table: bytes, strings: bytes) -> frozenset[str]:
        """The names of the undefined entries (st_shndx SHN_UNDEF) of a dynamic symbol table."""
        # performance: no Python step per symbol (libtorch_cpu.so defines 100k+): st_name of every entry by a
        # strided view, st_shndx == 0 found by OR-ing its two bytes as big integers (either byte order), the
        # undefined entries picked in C (itertools.compress; a map of operator.not_ cost ~400 instructions a symbol)
        names32 = array.array("I", table)
        if (sys.byteorder == "little") != self.little:
            names32.byteswap()
        size, at = (24, 6) if self.elfclass == 64 else (16, 14)
        name_at, low, high = names32[0::size // 4], table[at::size], table[at + 1::size]
        shndx = (int.from_bytes(low, "little") | int.from_bytes(high, "little")).to_bytes(len(low), "little")
        undefined = itertools.compress(name_at, shndx.translate(_IS_ZERO))
        end = len(strings)
        if strings.isascii():  # the usual case: one decode, then str slices (same text as per-name decodes)
            text = strings.decode("ascii")
            return frozenset([text[n:text.find("\0", n)] for n in undefined if 0 < n < end])
        return frozenset([strings[n:strings.find(b"\0", n)].decode("utf-8", "surrogateescape")
                          for n in undefined if 0 < n < end])

    def _symbol_count(self, tables: DynamicTables) -> int | None:
        if tables.hash:
            _nbucket, nchain = struct.unpack(self.end + "II", self._at(tables.hash, 8, what="DT_HASH"))
            return int(nchain)
        if not tables.gnu_hash:
            return None
        at = tables.gnu_hash
        nbuckets, symoffset, bloom_size, _shift = struct.unpack(self.end + "IIII", self._at(at, 16, what="DT_GNU_HASH"))
        if nbuckets > MAX_SYMBOLS or bloom_size > MAX_SYMBOLS:
            raise BinaryFormatError(f"cannot parse {self.path!r}: DT_GNU_HASH of {nbuckets} buckets")
        at += 16 + bloom_size * (8 if self.elfclass == 64 else 4)
        buckets = struct.unpack(f"{self.end}{nbuckets}I", self._at(at, 4 * nbuckets, what="DT_GNU_HASH"))
        last = max(buckets, default=0)
        if last < symoffset:
            return None  # nothing hashed: the table does not tell how many symbols there are
        chain = at + 4 * nbuckets + 4 * (last - symoffset)  # the last bucket's chain ends at an odd hash
        while True:
            if last - symoffset > MAX_SYMBOLS:
                raise BinaryFormatError(f"cannot parse {self.path!r}: DT_GNU_HASH chain does not end")
            (value,) = struct.unpack(self.end + "I", self._at(chain, 4, what="DT_GNU_HASH"))
            if value & 1:
                return int(last) + 1
            last, chain = last + 1, chain + 4

    def _x86_isa(self, seg: _Segment, isa: tuple[int, int]) -> tuple[int, int]:
        """(NEEDED bits, USED bits) of the GNU property notes in a note segment, OR-ed into `isa`."""
        data = self._at(seg.offset, min(seg.filesz, MAX_NOTES), what="note segment")
        align = 8 if seg.align == 8 or (seg.type == PT_GNU_PROPERTY and self.elfclass == 64) else 4
        needed, used = isa
        for name, n_type, desc in _notes(data, self.end, align):
            if name != b"GNU" or n_type != NT_GNU_PROPERTY_TYPE_0:
                continue
            for pr_type, value in _properties(desc, self.end, 8 if self.elfclass == 64 else 4):
                if pr_type == GNU_PROPERTY_X86_ISA_1_NEEDED:
                    needed |= value
                elif pr_type == GNU_PROPERTY_X86_ISA_1_USED:
                    used |= value
        return needed, used

    def _dynamic(self, offset: int, size: int) -> _DynFields:
        """The dynamic entries (Elf_Dyn: d_tag, d_val), up to DT_NULL; strings stay offsets."""
        entry = struct.Struct(self.end + ("qQ" if self.elfclass == 64 else "iI"))
        data = self._at(offset, min(size, MAX_DYNAMIC * entry.size), what="dynamic segment")
        out = _DynFields()
        for d_tag, d_val in entry.iter_unpack(data[: len(data) - len(data) % entry.size]):
            if d_tag == DT_NULL:
                break
            if d_tag in _STRING_TAGS:
                out.strings.append((d_tag, d_val))
            elif d_tag == DT_STRTAB:
                out.strtab = d_val
            elif d_tag == DT_VERNEED:
                out.verneed = d_val
            elif d_tag == DT_VERNEEDNUM:
                out.verneednum = d_val
            elif d_tag == DT_FLAGS_1:
                out.flags_1 = d_val
            elif d_tag in (DT_SYMTAB, DT_HASH, DT_GNU_HASH, DT_STRSZ):
                out.tables[d_tag] = d_val
        if out.strings and not out.strtab:
            raise BinaryFormatError(f"cannot parse {self.path!r}: dynamic segment has strings but no DT_STRTAB")
        return out

    def _version_records(self, fields: _DynFields) -> list[tuple[int, list[int]]]:
        """(file name offset, [version name offsets]) of each Elf_Verneed, in record order."""
        if not (fields.verneed and fields.strtab and fields.verneednum):
            return []
        fmt = struct.Struct(self.end + _VER.format)
        out: list[tuple[int, list[int]]] = []
        pos = self.offset_of(fields.verneed)
        for _ in range(min(fields.verneednum, MAX_VERNEED)):
            _ver, cnt, file_off, aux, nxt = fmt.unpack(self._at(pos, fmt.size))
            names: list[int] = []
            apos = pos + aux
            for _ in range(min(cnt, MAX_VERNEED)):
                _hash, _flags, _other, name_off, anext = fmt.unpack(self._at(apos, fmt.size))
                names.append(name_off)
                if not anext:
                    break
                apos += anext
            out.append((file_off, names))
            if not nxt:
                break
            pos += nxt
        return out

    def _strings(self, fields: _DynFields, offsets: set[int], table: bytes = b"") -> dict[int, str]:
        """The strings at these DT_STRTAB offsets: from the table already read, else read in file order."""
        if not offsets:
            return {}
        out: dict[int, str] = {}
        base = None
        for off in sorted(offsets):
            nul = table.find(b"\0", off) if off < len(table) else -1
            if nul >= 0:
                out[off] = table[off:nul].decode("utf-8", "surrogateescape")
            else:
                base = self.offset_of(fields.strtab) if base is None else base
                out[off] = _read_cstr(self.fp, base + off, self.path)
        return out

    def _at(self, offset: int, size: int, what: str = "version records") -> bytes:
        self.fp.seek(offset)
        data = self.fp.read(size)
        if len(data) != size:
            raise BinaryFormatError(
                f"cannot parse {self.path!r}: truncated {what} ({len(data)} of {size} bytes at byte {offset})")
        return data

    def _image(self, interp: str | None, fields: _DynFields, versions: dict[str, list[str]],
               stack: StackFlag, isa: tuple[int, int], undefined: frozenset[str] | None) -> Image:
        e_type, = struct.unpack_from(self.end + "H", self.header, 16)
        etype = _enum_name(_COMMON_TYPES, 0, e_type)
        facts = ElfFacts(
            elfclass=self.elfclass, endian="little" if self.little else "big",
            machine=_enum_name(_COMMON_MACHINES, 1, self.machine), osabi=_enum_name(_COMMON_OSABIS, 2, self.header[7]),
            type=etype, interp=interp, flags_1=fields.flags_1, nodeflib=bool(fields.flags_1 & DF_1_NODEFLIB),
            version_needs={lib: tuple(names) for lib, names in versions.items()},
            stack=stack, isa_needed=_isa_level(isa[0]), isa_used=_isa_level(isa[1]), isa_bits=isa[0],
            undefined=undefined,
        )
        return Image(
            format=BinaryFormat.ELF, arch=normalize_arch(self.machine, self.elfclass, self.little),
            kind=_kind(etype, interp, fields), needed=tuple(Dependency(n) for n in fields.needed),
            rpaths=tuple(fields.rpaths), runpaths=tuple(fields.runpaths),
            soname=fields.soname, facts=facts,
        )


class _Segment:
    """A program header's fields (a private record: a plain class, no NamedTuple to create at import)."""

    __slots__ = ("align", "filesz", "flags", "offset", "type", "vaddr")

    def __init__(self, type: int, flags: int, offset: int, vaddr: int, filesz: int, align: int) -> None:
        self.type, self.flags, self.offset = type, flags, offset
        self.vaddr, self.filesz, self.align = vaddr, filesz, align


def _notes(data: bytes, end: str, align: int) -> Iterator[tuple[bytes, int, bytes]]:
    """(name without its NUL, n_type, descriptor) of each note (Elf_Nhdr + padded name + padded desc)."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, n_type = struct.unpack_from(end + "III", data, pos)
        name_at = pos + 12
        desc_at = name_at + -(-namesz // 4) * 4
        nxt = desc_at + -(-descsz // align) * align
        if desc_at + descsz > len(data):
            return  # a truncated note: nothing more to read, as readelf stops
        yield data[name_at:name_at + namesz].rstrip(b"\0"), n_type, data[desc_at:desc_at + descsz]
        pos = nxt


def _properties(desc: bytes, end: str, align: int) -> Iterator[tuple[int, int]]:
    """(pr_type, 32-bit value) of each property of an NT_GNU_PROPERTY_TYPE_0 descriptor."""
    pos = 0
    while pos + 8 <= len(desc):
        pr_type, datasz = struct.unpack_from(end + "II", desc, pos)
        if datasz == 4 and pos + 12 <= len(desc):
            yield pr_type, struct.unpack_from(end + "I", desc, pos + 8)[0]
        pos += 8 + -(-datasz // align) * align


def _isa_level(bits: int) -> X86Isa | None:
    """The highest level among GNU_PROPERTY_X86_ISA_1_{BASELINE,V2,V3,V4} (bits 0-3); None: none set."""
    for level in (X86Isa.V4, X86Isa.V3, X86Isa.V2, X86Isa.BASELINE):
        if bits & (1 << (level.value - 1)):
            return level
    return None


def _isa_label(bits: int) -> str:
    """GNU_PROPERTY_X86_ISA_1_NEEDED bits as a level ('x86-64-v4'), with any bit no level names."""
    level = _isa_level(bits & 0xF)
    unknown = bits & ~0xF
    named = [level.label] if level is not None and level > X86Isa.BASELINE else []
    return " and ".join([*named, *([f"ISA bits {unknown:#x} (no level glibc knows)"] if unknown else [])]) \
        or "x86-64"


class _DynFields:
    def __init__(self) -> None:
        self.needed: list[str] = []
        self.rpaths: list[str] = []
        self.runpaths: list[str] = []
        self.soname: str | None = None
        self.strings: list[tuple[int, int]] = []  # (d_tag, DT_STRTAB offset) in entry order
        self.strtab = 0
        self.verneed = 0
        self.verneednum = 0
        self.flags_1 = 0
        self.tables: dict[int, int] = {}  # DT_SYMTAB, DT_HASH, DT_GNU_HASH -> address; DT_STRSZ -> size

    def add(self, d_tag: int, text: str) -> None:
        if d_tag == DT_NEEDED:
            self.needed.append(text)
        elif d_tag == DT_SONAME:
            self.soname = text
        elif d_tag == DT_RPATH:
            self.rpaths.extend(p for p in text.split(":") if p)
        elif d_tag == DT_RUNPATH:
            self.runpaths.extend(p for p in text.split(":") if p)


def _kind(etype: str, interp: str | None, fields: _DynFields) -> FileKind:
    if etype == "ET_EXEC":
        return FileKind.EXECUTABLE
    if etype != "ET_DYN":
        return FileKind.OTHER
    if fields.flags_1 & DF_1_PIE or (interp is not None and fields.soname is None):
        return FileKind.EXECUTABLE
    return FileKind.SHARED


def parse_elf(fp: BinaryIO, path: str) -> BinaryFile:
    """Read one ELF file; any defect becomes a BinaryFormatError naming `path`."""
    try:
        image = _Reader(fp, path).read()
    except BinaryFormatError:
        raise
    except (struct.error, ValueError, KeyError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise BinaryFormatError(f"cannot parse {path!r}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # anything else a corrupt file can cause
        raise BinaryFormatError(f"cannot parse {path!r}: corrupted ELF data ({type(exc).__name__}: {exc})") from None
    return BinaryFile(path=path, format=BinaryFormat.ELF, images=(image,))


def undefined_symbols(fp: BinaryIO, path: str) -> frozenset[str] | None:
    """The names of an ELF file's undefined dynamic symbols (see :meth:`_Reader._symbol_table`); None when
    it has no hash table to count them by."""
    try:
        return _Reader(fp, path).undefined()
    except BinaryFormatError:
        raise
    except (struct.error, ValueError, KeyError, IndexError, UnicodeDecodeError, OSError) as exc:
        raise BinaryFormatError(f"cannot read the dynamic symbols of {path!r}: {type(exc).__name__}: {exc}") from None


# ---------------------------------------------------------------- search rules
def default_interpreter(image: Image, linux: LinuxSystem) -> str | None:
    """The PT_INTERP of `image`, else the standard glibc interpreter for its arch."""
    interp = image.elf.interp
    if interp is not None:
        return interp
    return linux.interpreters.get("manylinux", {}).get(image.arch)


def expand_dst(text: str, origin: str, search: SearchPaths) -> str:
    """Expand $ORIGIN, $LIB, $PLATFORM (and the ${...} forms)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(2) or m.group(3)
        return {"ORIGIN": origin, "LIB": search.elf_lib, "PLATFORM": search.elf_platform}[name]

    return _DST.sub(sub, text)


def _dirs(entries: Sequence[str], holder: Loaded, search: SearchPaths) -> Iterator[str]:
    """Directories of an RPATH/RUNPATH list in the resolver's namespace."""
    origin = posixpath.dirname(holder.path)
    for entry in entries:
        has_origin = any((m.group(2) or m.group(3)) == "ORIGIN" for m in _DST.finditer(entry))
        expanded = expand_dst(entry, origin, search)
        if not expanded.startswith("/"):
            log.debug("%r in %r is relative to the cwd: not searched", entry, holder.path)
            continue
        if has_origin:  # '..' after a symlinked directory: the kernel's answer, not the text's
            yield search.kernel_path(expanded)
        elif search.use_system:
            yield search.kernel_path(search.host_path(expanded))


class ElfBackend:
    """The ELF reader and loader rules; the rules need the policy data (`linux`: which libraries the
    system provides, the program interpreters), given by the core (:meth:`with_policy`)."""

    format = BinaryFormat.ELF
    match_soname = True  # an already-loaded object also answers to its DT_SONAME
    needs_policy = True
    stops_at_bad_file = True  # ld.so fails ("invalid ELF header") instead of searching on
    case_insensitive = False

    def __init__(self, linux: LinuxSystem | None = None) -> None:
        self._linux = linux
        # arch -> (the SearchPaths asked, what it answers per request: _Host); one per backend with the policy
        # data (one per analysis): performance, each was read (a stat, an isdir) per request
        self._hosts: dict[str, tuple[SearchPaths, _Host]] = {}

    def _host(self, search: SearchPaths, arch: str) -> _Host:
        """What `search` says of the host for `arch` that the search rules read per request, read once per
        SearchPaths (the one asked is kept: its identity is the key)."""
        known = self._hosts.get(arch)
        if known is not None and known[0] is search:
            return known[1]
        host = _Host(search.elf_subdirs(), search.elf_default_dirs_for(arch), search.elf_cache(arch),
                     search.elf_isa_bits())
        self._hosts[arch] = (search, host)
        return host

    def with_policy(self, linux: LinuxSystem) -> ElfBackend:
        return ElfBackend(linux)

    @property
    def linux(self) -> LinuxSystem:
        if self._linux is None:
            raise RuntimeError("the ELF loader rules need the policy data: BACKEND.with_policy(policy.linux_system())")
        return self._linux

    def sniff(self, head: bytes) -> bool:
        return head[:4] == MAGIC

    def parse(self, fp: BinaryIO, path: str) -> BinaryFile:
        return parse_elf(fp, path)

    def is_system(self, request: Dependency, loader: Image, search: SearchPaths) -> bool:
        name = posixpath.basename(request.name)
        linux = self.linux
        if name in linux.libraries or name in linux.musl_libc:
            return True
        if _MUSL_SELF.match(name) and linux.family((loader,)) == "musllinux":
            return True  # musl's loader answers libm.so, libpthread.so, ... itself
        interp = default_interpreter(loader, linux)
        return name in linux.loaders or (
            interp is not None and name == posixpath.basename(interp)
        )

    def loaded_key(self, name: str) -> str:
        return name

    def lookup_key(self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths) -> Hashable | None:
        """The request's name; the loader (its path: ``$ORIGIN``; its image: RUNPATH, DF_1_NODEFLIB, arch, ISA,
        system names); the root's interpreter and arch; the family (musl's search and ISA check); and the
        RPATHs the search reads: those of the chain's images without a RUNPATH, with their paths (``$ORIGIN``,
        the attempts' texts), unless the loader has a RUNPATH; musl reads every image's.  Performance: the
        roots of a directory (show /usr/lib/x86_64-linux-gnu: 1,336) share most of their closures."""
        if not chain:
            return None
        loader, first = chain[-1], chain[0].image
        family = self.linux.family(link.image for link in chain)
        if family == "musllinux":
            holders: tuple[tuple[str, int], ...] = tuple((link.path, id(link.image)) for link in chain)
        elif loader.image.runpaths:
            holders = ()
        else:
            holders = tuple((link.path, id(link.image)) for link in chain
                            if link.image.rpaths and not link.image.runpaths)
        return (request.name, loader.path, id(loader.image), default_interpreter(first, self.linux), first.arch,
                family, holders)

    def missing_note(self, name: str) -> str | None:
        return None

    def refusal(self, image: Image, chain: Sequence[Loaded], search: SearchPaths) -> str | None:
        """glibc >= 2.33 on x86 (sysdeps/x86/dl-prop.h, dl_isa_level_check): a library whose
        GNU_PROPERTY_X86_ISA_1_NEEDED bits are not all the CPU's is loaded from the first place the
        search finds it and the load then fails, "CPU ISA level is lower than required": the search
        does not go on to the next directory (checked with ld.so's trace and a real exec in
        tests/test_ldso_isa.py; ``ld.so --list`` shows the library found).  The target CPU is
        ``SearchPaths.elf_hwcaps``.  musl makes no such check."""
        need = image.elf.isa_bits
        have = self._host(search, image.arch).isa_bits if need else None
        if have is None or not need or need & have == need or self.linux.family(link.image for link in chain) \
                == "musllinux":
            return None
        cpu = ", ".join(search.elf_hwcaps) or "x86-64 (baseline) only"
        return (f"CPU ISA level is lower than required (glibc): its GNU property note needs {_isa_label(need)}, "
                f"the target CPU has {cpu} (--glibc-hwcaps)")

    def candidates(
        self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths
    ) -> Iterator[Candidate]:
        if not chain:
            return
        loader = chain[-1]
        name = expand_dst(request.name, posixpath.dirname(loader.path), search)
        linux = self.linux
        interp = default_interpreter(chain[0].image, linux)
        if interp is not None and name == posixpath.basename(interp) and search.use_system:
            yield Candidate(search.host_path(interp), "program interpreter (loaded first)")
            return
        musl = linux.family(link.image for link in chain) == "musllinux"
        if musl and "/" not in name and _MUSL_SELF.match(name):
            musl_loader = linux.interpreters.get("musllinux", {}).get(chain[0].image.arch)
            if musl_loader is not None and search.use_system:
                yield Candidate(search.host_path(musl_loader), "musl's loader (it is the C library)")
            return
        if "/" in name:
            yield from _direct(name, request.name, loader, search)
            return
        for d in search.extra:
            yield Candidate(posixpath.join(d, name), "extra library path (-L)")
        if musl:
            yield from _musl_search(name, chain, search)
        else:
            yield from _search(name, chain, search, self._host(search, loader.image.arch))


def _direct(name: str, raw: str, loader: Loaded, search: SearchPaths) -> Iterator[Candidate]:
    if not name.startswith("/"):
        log.debug("DT_NEEDED %r of %r is relative to the cwd: not searched", raw, loader.path)
        return
    if name != raw:  # came from $ORIGIN: already in the resolver's namespace
        yield Candidate(search.kernel_path(name), f"DT_NEEDED path of {loader.path}")
    elif search.use_system:
        yield Candidate(search.host_path(name), f"DT_NEEDED path of {loader.path}")


def _in(d: str, name: str, subdirs: tuple[str, ...], via: str) -> Candidate:
    """`name` in `d`, after the glibc-hwcaps and legacy subdirectories of `d` (up to 18 on x86-64 hosts;
    the resolver tries those that exist, misses there not recorded)."""
    # posixpath.join's result, spelled out (`name` has no '/')
    base = d + "/" if d and not d.endswith("/") else d
    return Candidate(base + name, via, None, subdirs)


class _Host(NamedTuple):
    """What the search rules read of the host per request (SearchPaths' answers for one arch)."""

    subdirs: tuple[str, ...]  # elf_subdirs()
    defaults: tuple[str, ...]  # elf_default_dirs_for(arch)
    cache: Mapping[str, str] | None  # elf_cache(arch)
    isa_bits: int | None  # elf_isa_bits()


def _search(name: str, chain: Sequence[Loaded], search: SearchPaths, host: _Host) -> Iterator[Candidate]:
    loader = chain[-1]
    subdirs = host.subdirs
    if not loader.image.runpaths:
        for holder in reversed(chain):
            if holder.image.runpaths or not holder.image.rpaths:
                continue
            for d in _dirs(holder.image.rpaths, holder, search):
                yield _in(d, name, subdirs, f"DT_RPATH of {holder.path}")
    for d in search.elf_ld_library_path():
        yield _in(d, name, subdirs, "LD_LIBRARY_PATH")
    if loader.image.runpaths:
        for d in _dirs(loader.image.runpaths, loader, search):
            yield _in(d, name, subdirs, f"DT_RUNPATH of {loader.path}")
    # DF_1_NODEFLIB (glibc dl-load.c): no default directories, and no ld.so.cache entry that
    # lies in one of them (a prefix test); cache entries elsewhere still count.
    nodeflib = loader.image.elf.nodeflib
    defaults = host.defaults
    cache = host.cache
    if cache is not None:
        hit = cache.get(name)
        if hit is not None and not (nodeflib and hit.startswith(tuple(d.rstrip("/") + "/" for d in defaults))):
            yield Candidate(hit, "ld.so.cache")
    elif not search.use_ld_so_cache:  # an explicit stand-in: the ld.so.conf dirs as ldconfig would cache them
        for d in search.elf_conf_dirs():
            yield Candidate(posixpath.join(d, name), "ld.so.conf (standing in for ld.so.cache)")
    if nodeflib:
        return
    for d in defaults:
        yield _in(d, name, subdirs, "default directory")


# names musl's loader answers itself (dynlink.c: "lib" + c. pthread. rt. m. dl. util. xnet.)
_MUSL_SELF = re.compile(r"lib(c|pthread|rt|m|dl|util|xnet)\.")


def _musl_expands(entries: Sequence[str]) -> bool:
    """Whether musl uses this RPATH/RUNPATH: every '$' starts '$ORIGIN' or '${ORIGIN}'."""
    text = ":".join(entries)
    return all(text.startswith(("$ORIGIN", "${ORIGIN}"), i) for i, c in enumerate(text) if c == "$")


def _musl_search(name: str, chain: Sequence[Loaded], search: SearchPaths) -> Iterator[Candidate]:
    for d in search.elf_ld_library_path():
        yield Candidate(posixpath.join(d, name), "LD_LIBRARY_PATH")
    for holder in reversed(chain):  # the requester, then what loaded it (musl's needed_by chain)
        kind, entries = (("DT_RUNPATH", holder.image.runpaths) if holder.image.runpaths
                         else ("DT_RPATH", holder.image.rpaths))
        if not _musl_expands(entries):
            log.debug("%s of %r has a $ other than $ORIGIN: musl ignores it", kind, holder.path)
            continue
        for d in _dirs(entries, holder, search):
            yield Candidate(posixpath.join(d, name), f"{kind} of {holder.path} (musl)")
    for d in search.musl_dirs(chain[-1].image.arch):
        yield Candidate(posixpath.join(d, name), "musl system path")


BACKEND = ElfBackend()
