"""The symbols a binary imports from the Python interpreter, per format (for the stable-ABI audit).

- ELF: undefined dynamic symbols named ``Py*`` / ``_Py*`` (an extension module does not link
  libpython: its Python symbols are undefined and bound to the interpreter at load time).
- PE: every name imported from ``python3.dll`` or ``python3X.dll`` (``python3X_d.dll``).
- Mach-O: undefined external symbols named ``_Py*`` / ``__Py*`` (extensions are linked with
  ``-undefined dynamic_lookup``), reported without the leading underscore; every slice of a fat file.

Sizes and offsets come from the file and are checked against its size before anything is read.
"""

from __future__ import annotations

import re
import struct
from typing import BinaryIO

from ..binary import BinaryFormat, DepKind
from ..errors import BinaryFormatError

PYTHON_DLL = re.compile(r"python3\d*(_d)?\.dll", re.IGNORECASE)
MAX_SYMBOLS = 2_000_000  # more symbol entries than this: the header lies


def _is_python(name: str) -> bool:
    return name.startswith(("Py", "_Py"))


def _size(fp: BinaryIO) -> int:
    fp.seek(0, 2)
    size = fp.tell()
    fp.seek(0)
    return size


def _elf(fp: BinaryIO, path: str) -> frozenset[str]:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        elf = ELFFile(fp)
        dynsym = elf.get_section_by_name(".dynsym")
        if dynsym is None:
            return frozenset()
        return frozenset(sym.name for sym in dynsym.iter_symbols()  # type: ignore[attr-defined]
                         if sym["st_shndx"] == "SHN_UNDEF" and sym.name and _is_python(sym.name))
    except (ELFError, struct.error, ValueError) as exc:
        raise BinaryFormatError(f"{path!r}: cannot read its dynamic symbols: {exc}") from exc


def _pe(fp: BinaryIO, path: str) -> frozenset[str]:
    from .pe import PEView, import_slots, imported_names  # the PE reader, only for a PE file

    view = PEView(fp.read(), path)
    names: set[str] = set()
    for slot in import_slots(view):
        if slot.kind is DepKind.NEEDED and PYTHON_DLL.fullmatch(slot.name):
            names.update(imported_names(view, slot))
    return frozenset(names)


_FAT = {b"\xca\xfe\xba\xbe": 20, b"\xca\xfe\xba\xbf": 32}
_THIN = {b"\xce\xfa\xed\xfe": ("<", 32, 12), b"\xcf\xfa\xed\xfe": ("<", 64, 16),
         b"\xfe\xed\xfa\xce": (">", 32, 12), b"\xfe\xed\xfa\xcf": (">", 64, 16)}
LC_SYMTAB = 0x2
N_STAB, N_TYPE, N_EXT = 0xE0, 0x0E, 0x01


def _read(fp: BinaryIO, offset: int, size: int, total: int, path: str) -> bytes:
    if offset < 0 or size < 0 or offset + size > total:
        raise BinaryFormatError(f"{path!r}: a Mach-O table at {offset}+{size} runs past the end of the file ({total})")
    fp.seek(offset)
    return fp.read(size)


def _macho_slice(fp: BinaryIO, base: int, total: int, path: str) -> set[str]:
    magic = _read(fp, base, 4, total, path)
    end, bits, nsize = _THIN[magic]
    header = 32 if bits == 64 else 28
    ncmds, sizeofcmds = struct.unpack(end + "II", _read(fp, base + 16, 8, total, path))
    cmds = _read(fp, base + header, sizeofcmds, total, path)
    pos, names = 0, set[str]()
    for _ in range(ncmds):
        if pos + 8 > len(cmds):
            break
        cmd, cmdsize = struct.unpack_from(end + "II", cmds, pos)
        if cmd == LC_SYMTAB and pos + 24 <= len(cmds):
            symoff, nsyms, stroff, strsize = struct.unpack_from(end + "IIII", cmds, pos + 8)
            if nsyms > MAX_SYMBOLS:
                raise BinaryFormatError(f"{path!r}: LC_SYMTAB claims {nsyms} symbols")
            table = _read(fp, base + symoff, nsyms * nsize, total, path)
            strings = _read(fp, base + stroff, strsize, total, path)
            for i in range(nsyms):
                strx, ntype = struct.unpack_from(end + "IB", table, i * nsize)
                if ntype & N_STAB or ntype & N_TYPE or not ntype & N_EXT or strx >= len(strings):
                    continue
                name = strings[strx:strings.find(b"\0", strx)].decode("utf-8", "replace")
                if name.startswith("_") and _is_python(name[1:]):
                    names.add(name[1:])
        if cmdsize < 8:
            break
        pos += cmdsize
    return names


def _macho(fp: BinaryIO, path: str) -> frozenset[str]:
    total = _size(fp)
    magic = _read(fp, 0, 4, total, path)
    if magic in _FAT:
        (count,) = struct.unpack(">I", _read(fp, 4, 4, total, path))
        entry = _FAT[magic]
        raw = _read(fp, 8, count * entry, total, path)
        offsets = [struct.unpack_from(">Q" if entry == 32 else ">I", raw, i * entry + 8)[0] for i in range(count)]
        return frozenset(n for off in offsets for n in _macho_slice(fp, off, total, path))
    if magic not in _THIN:
        raise BinaryFormatError(f"{path!r} is not a Mach-O file")
    return frozenset(_macho_slice(fp, 0, total, path))


_READERS = {BinaryFormat.ELF: _elf, BinaryFormat.PE: _pe, BinaryFormat.MACHO: _macho}

SHT_DYNSYM = 11
MAX_SECTIONS = 1 << 16


def elf_undefined(fp: BinaryIO, path: str) -> frozenset[str]:
    """The names of the undefined symbols of an ELF file's dynamic symbol table (``.dynsym``, found by
    its section header: ``SHT_DYNSYM``, its strings in the section ``sh_link`` names); every size and
    offset checked against the file's size before it is read."""
    total = _size(fp)
    ident = _read_elf(fp, 0, 64, total, path)
    end = "<" if ident[5] == 1 else ">"
    wide = ident[4] == 2
    shoff, = struct.unpack_from(end + ("Q" if wide else "I"), ident, 40 if wide else 32)
    shentsize, shnum = struct.unpack_from(end + "HH", ident, 58 if wide else 46)
    if not shoff or not shnum or shnum > MAX_SECTIONS:
        return frozenset()
    shdr = struct.Struct(end + ("IIQQQQIIQQ" if wide else "IIIIIIIIII"))
    if shentsize < shdr.size:
        raise BinaryFormatError(f"{path!r}: section header size {shentsize} < {shdr.size}")
    table = _read_elf(fp, shoff, shentsize * shnum, total, path)
    sections = [shdr.unpack_from(table, i * shentsize) for i in range(shnum)]
    for sh in sections:
        if sh[1] == SHT_DYNSYM and sh[6] < shnum:
            strtab = sections[sh[6]]
            strings = _read_elf(fp, strtab[4], strtab[5], total, path)
            return _undefined_names(_read_elf(fp, sh[4], sh[5], total, path), strings, end, wide)
    return frozenset()


def _undefined_names(symbols: bytes, strings: bytes, end: str, wide: bool) -> frozenset[str]:
    """Elf64_Sym: st_name, st_info, st_other, st_shndx, st_value, st_size; Elf32_Sym: st_name, st_value,
    st_size, st_info, st_other, st_shndx.  Undefined: st_shndx SHN_UNDEF (0), a name."""
    entry = struct.Struct(end + ("IBBHQQ" if wide else "IIIBBH"))
    at_shndx = 3 if wide else 5
    names: set[str] = set()
    for fields in entry.iter_unpack(symbols[: len(symbols) - len(symbols) % entry.size]):
        st_name = fields[0]
        if fields[at_shndx] == 0 and 0 < st_name < len(strings):
            names.add(strings[st_name:strings.find(b"\0", st_name)].decode("utf-8", "surrogateescape"))
    return frozenset(names)


def _read_elf(fp: BinaryIO, offset: int, size: int, total: int, path: str) -> bytes:
    if offset < 0 or size < 0 or offset + size > total:
        raise BinaryFormatError(f"{path!r}: an ELF table at {offset}+{size} runs past the end of the file ({total})")
    fp.seek(offset)
    return fp.read(size)


def python_imports(fmt: BinaryFormat, fp: BinaryIO, path: str) -> frozenset[str]:
    """The names of the Python C API symbols a binary of format `fmt` imports (see the module doc)."""
    fp.seek(0)
    return _READERS[fmt](fp, path)
