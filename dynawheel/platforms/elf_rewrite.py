"""In-process ELF edits of a shared library: the repair edits (rename DT_NEEDED entries, set or
remove DT_RUNPATH / DT_RPATH, set DT_SONAME) without starting patchelf.

The layout follows patchelf's idea for libraries (a new PT_LOAD segment at the end), kept minimal:
the old bytes stay where they are, and the one new segment appended at the end of the file holds

- the program header table (one entry longer: the new segment's own),
- a copy of ``.dynstr`` with the new strings after the old ones (every old offset stays valid:
  symbol names, version needs and definitions keep pointing at the same text; the version needs
  of a renamed library, ``vn_file``, get its new name, as its DT_NEEDED entry does), and
- ``.dynamic``, only when the new entry list does not fit where the old one was.

DT_STRTAB/DT_STRSZ (and PT_DYNAMIC, PT_PHDR and the section headers of ``.dynstr`` and
``.dynamic``) point at the new places.  The new segment is writable when it holds ``.dynamic``
(glibc adjusts its pointers in place), and its address is congruent with its file offset modulo
the largest alignment of the existing PT_LOAD segments, so no padding is added to the file.
patchelf instead may shift a whole library by pages (7.5 MB on libLLVM).

:func:`plan` reads only the headers and dynamic tables (of a mapping) and returns the changed bytes
as a :class:`Patch`, applied to a kernel-made copy of the file.  It returns None for files it does
not handle, and the caller uses patchelf: anything but a shared library without an interpreter
(executables, static-pie ones included, are started by the kernel, which finds the program
headers at a fixed place on older kernels), big-endian files, machines other than x86-64, i386,
AArch64, ARM, ppc64le and RISC-V, files with unusual headers, and extended section numbering.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .edits import ElfEdits
from .elf import DT_NEEDED, DT_NULL, DT_RPATH, DT_RUNPATH, DT_SONAME, DT_STRTAB, DT_VERNEED, DT_VERNEEDNUM

if TYPE_CHECKING:
    from typing_extensions import Buffer

PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR = 1, 2, 3, 6
PF_W, PF_R = 2, 4
ET_DYN = 3
SHT_STRTAB, SHT_DYNAMIC = 3, 6
DT_STRSZ, DT_FLAGS_1, DF_1_PIE = 10, 0x6FFFFFFB, 0x08000000
VERNEED = struct.Struct("<HHIII")  # Elf32/64_Verneed (little-endian): version, cnt, file, aux, next
VN_FILE = struct.Struct("<I")
MAX_VERNEED = 4096
SPARE_DYNAMIC = 4  # DT_NULL entries after a moved .dynamic: room for later edits in place
MIN_ALIGN = 4096
# e_machine values edited here: x86-64, i386, AArch64, ARM, PowerPC 64 (little-endian), RISC-V.  Others
# (MIPS keeps .dynamic read-only and has entries relative to its address) go to patchelf.
MACHINES = frozenset({62, 3, 183, 40, 21, 243})


class _Headers:
    """The ELF, program and section headers of a file, and how to pack them back."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.wide = data[4] == 2
        end = "<" if data[5] == 1 else ">"
        if self.wide:
            self.ehdr = struct.Struct(end + "16sHHIQQQIHHHHHH")
            self.phdr = struct.Struct(end + "IIQQQQQQ")
            self.shdr = struct.Struct(end + "IIQQQQIIQQ")
            self.dyn = struct.Struct(end + "qQ")
        else:
            self.ehdr = struct.Struct(end + "16sHHIIIIIHHHHHH")
            self.phdr = struct.Struct(end + "IIIIIIII")
            self.shdr = struct.Struct(end + "IIIIIIIIII")
            self.dyn = struct.Struct(end + "iI")
        self.e = list(self.ehdr.unpack_from(data, 0))
        self.phoff, self.shoff = self.e[5], self.e[6]
        self.phentsize, self.phnum, self.shentsize, self.shnum = self.e[9], self.e[10], self.e[11], self.e[12]
        self.phdrs = [self._unpack_phdr(self.phoff + i * self.phentsize) for i in range(self.phnum)]

    # program headers as [type, flags, offset, vaddr, paddr, filesz, memsz, align] in both classes
    def _unpack_phdr(self, at: int) -> list[int]:
        f = list(self.phdr.unpack_from(self.data, at))
        return f if self.wide else [f[0], f[6], f[1], f[2], f[3], f[4], f[5], f[7]]

    def pack_phdr(self, p: list[int]) -> bytes:
        if self.wide:
            return self.phdr.pack(*p)
        return self.phdr.pack(p[0], p[2], p[3], p[4], p[5], p[6], p[1], p[7])

    def loads(self) -> list[list[int]]:
        return [p for p in self.phdrs if p[0] == PT_LOAD]

    def file_offset(self, vaddr: int, size: int) -> int | None:
        """The file offset of `size` bytes at `vaddr`, when one PT_LOAD holds them in the file."""
        for p in self.loads():
            if p[3] <= vaddr and vaddr + size <= p[3] + p[5]:
                return p[2] + vaddr - p[3]
        return None

    def sections(self) -> Iterator[tuple[int, list[int]]]:
        for i in range(self.shnum):
            at = self.shoff + i * self.shentsize
            yield at, list(self.shdr.unpack_from(self.data, at))


def _supported(h: _Headers) -> bool:
    """Whether `h` is a shared library whose headers this editor understands."""
    loads = h.loads()
    sizes_ok = h.phentsize == h.phdr.size and (h.shnum == 0 or h.shentsize == h.shdr.size)
    in_file = (h.phoff + h.phnum * h.phentsize <= len(h.data)
               and h.shoff + h.shnum * h.shentsize <= len(h.data))
    aligned = all(p[7] >= MIN_ALIGN and p[7] & (p[7] - 1) == 0 for p in loads)
    ordered = all(a[3] < b[3] for a, b in zip(loads, loads[1:], strict=False))
    return (h.e[1] == ET_DYN and h.e[2] in MACHINES and sizes_ok and in_file and bool(loads) and aligned and ordered
            and 0 < h.phnum < 0xFFFE and not (h.shnum == 0 and h.shoff != 0)
            and sum(p[0] == PT_DYNAMIC for p in h.phdrs) == 1 and not any(p[0] == PT_INTERP for p in h.phdrs))


def _dynamic(h: _Headers, dyn_phdr: list[int]) -> list[tuple[int, int]] | None:
    """The entries of PT_DYNAMIC up to DT_NULL, or None when it does not end inside the file."""
    out: list[tuple[int, int]] = []
    start, size = dyn_phdr[2], dyn_phdr[5]
    if start + size > len(h.data):
        return None
    for at in range(start, start + size - h.dyn.size + 1, h.dyn.size):
        tag, val = h.dyn.unpack_from(h.data, at)
        if tag == DT_NULL:
            return out
        out.append((tag, val))
    return None


class _Strings:
    """A copy of .dynstr that new strings are appended to (old offsets stay valid)."""

    def __init__(self, old: bytes) -> None:
        self.old = old
        self.table = bytearray(old)
        self.added: dict[str, int] = {}

    def text(self, offset: int) -> str | None:
        end = self.old.find(b"\0", offset)
        return None if offset >= len(self.old) or end < 0 else self.old[offset:end].decode("utf-8", "surrogateescape")

    def add(self, text: str) -> int:
        """The offset of `text` appended (once) to the table."""
        if text not in self.added:
            self.added[text] = len(self.table)
            self.table += text.encode("utf-8", "surrogateescape") + b"\0"
        return self.added[text]


def _edited_entries(entries: list[tuple[int, int]], edits: ElfEdits,
                    strings: _Strings) -> list[tuple[int, int]] | None:
    """The new .dynamic entries (without DT_NULL); None when a string entry points outside .dynstr."""
    renames = dict(edits.replace_needed)
    out: list[tuple[int, int]] = []
    has_soname = False
    for tag, val in entries:
        if tag in (DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH) and strings.text(val) is None:
            return None
        if tag == DT_NEEDED and strings.text(val) in renames:
            val = strings.add(renames[str(strings.text(val))])
        elif tag == DT_SONAME and edits.soname is not None:
            val, has_soname = strings.add(edits.soname), True
        elif tag in (DT_RPATH, DT_RUNPATH) and edits.runpath is not None:
            continue  # replaced (or removed) below
        out.append((tag, val))
    if edits.soname is not None and not has_soname:
        out.append((DT_SONAME, strings.add(edits.soname)))
    if edits.runpath:
        out.append((DT_RPATH if edits.force_rpath else DT_RUNPATH, strings.add(":".join(edits.runpath))))
    return out


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


class Patch:
    """The edits of one file as writes: bytes at offsets, and a new end of file."""

    def __init__(self, size: int) -> None:
        self.writes: list[tuple[int, bytes]] = []
        self.size = size  # the file's new length (the writes may extend it)

    def put(self, offset: int, data: bytes) -> None:
        self.writes.append((offset, data))

    def apply(self, fd: int) -> None:
        """Apply to the open file `fd` (a copy of the original)."""
        os.ftruncate(fd, self.size)
        for offset, data in self.writes:
            os.pwrite(fd, data, offset)

    def applied(self, data: bytes) -> bytes:
        """The patched file as bytes."""
        out = bytearray(data) + bytes(max(0, self.size - len(data)))
        for offset, piece in self.writes:
            out[offset : offset + len(piece)] = piece
        return bytes(out[: self.size])


def rewrite(data: bytes, edits: ElfEdits) -> bytes | None:
    """`data` (an ELF file) with `edits` applied, or None when it is not a file this editor handles."""
    patch = plan(data, edits)
    return None if patch is None else patch.applied(data)


def plan(data: Buffer, edits: ElfEdits) -> Patch | None:
    """The writes that apply `edits` to `data` (an ELF file: bytes or a read-only mapping; only its
    headers and dynamic tables are read), or None when it is not a file this editor handles."""
    with memoryview(data).cast("B") as view:
        return _plan(view, edits)


def _plan(view: memoryview, edits: ElfEdits) -> Patch | None:
    if len(view) < 64 or bytes(view[:4]) != b"\x7fELF" or view[4] not in (1, 2) or view[5] != 1:
        return None  # big-endian files: patchelf (no big-endian linker here to prove this editor on)
    h = _Headers(view)
    if not _supported(h):
        return None
    dyn_phdr = next(p for p in h.phdrs if p[0] == PT_DYNAMIC)
    entries = _dynamic(h, dyn_phdr)
    if entries is None:
        return None
    tags = dict(entries)
    if tags.get(DT_FLAGS_1, 0) & DF_1_PIE:  # an executable without an interpreter (static-pie)
        return None
    strtab, strsz = tags.get(DT_STRTAB), tags.get(DT_STRSZ)
    str_at = None if strtab is None or strsz is None else h.file_offset(strtab, strsz)
    if strtab is None or strsz is None or str_at is None:
        return None
    strings = _Strings(bytes(view[str_at : str_at + strsz]))
    new_entries = _edited_entries(entries, edits, strings)
    files = _version_need_files(h, tags, dict(edits.replace_needed), strings)
    if new_entries is None or files is None:
        return None
    patch = _Writer(h, dyn_phdr, strtab).write(new_entries, strings)
    for at, offset in files:
        patch.put(at, VN_FILE.pack(offset))
    return patch


def _version_need_files(h: _Headers, tags: dict[int, int], renames: dict[str, str],
                        strings: _Strings) -> list[tuple[int, int]] | None:
    """(file offset, new string offset) of each vn_file of DT_VERNEED that names a renamed library:
    the loader matches version needs to loaded objects by that name (glibc asserts when none has
    it), so it is renamed with the DT_NEEDED entry, as patchelf does.  None when the table is broken."""
    out: list[tuple[int, int]] = []
    vaddr, count = tags.get(DT_VERNEED), tags.get(DT_VERNEEDNUM, 0)
    at = None if vaddr is None else h.file_offset(vaddr, VERNEED.size)
    if vaddr is None or not renames:
        return out
    for _ in range(min(count, MAX_VERNEED)):
        if at is None or at + VERNEED.size > len(h.data):
            return None
        _version, _cnt, vn_file, _aux, vn_next = VERNEED.unpack_from(h.data, at)
        name = strings.text(vn_file)
        if name is None:
            return None
        if name in renames:
            out.append((at + 4, strings.add(renames[name])))  # vn_file follows vn_version and vn_cnt
        if vn_next == 0:
            break
        at += vn_next
    return out


class _Writer:
    """Lays out the new segment and patches the headers."""

    def __init__(self, h: _Headers, dyn_phdr: list[int], strtab: int) -> None:
        self.h = h
        self.dyn_phdr = dyn_phdr
        self.strtab = strtab
        self.patch = Patch(len(h.data))

    def write(self, entries: list[tuple[int, int]], strings: _Strings) -> Patch:
        h = self.h
        capacity = self.dyn_phdr[5] // h.dyn.size
        grown = len(strings.table) > len(strings.old)
        if not grown and len(entries) < capacity:  # nothing new to place: .dynamic in place
            self._put_dynamic(self.dyn_phdr[2], entries, capacity)
            return self.patch
        move_dynamic = len(entries) >= capacity
        align = max(p[7] for p in h.loads())
        seg_off = _align(len(h.data), 16)
        end_vaddr = max(p[3] + p[6] for p in h.loads())
        seg_vaddr = _align(end_vaddr, align) + seg_off % align
        phdr_size = (h.phnum + 1) * h.phentsize
        str_off = seg_off + phdr_size
        dyn_off = _align(str_off + len(strings.table), 8)
        dyn_count = len(entries) + SPARE_DYNAMIC if move_dynamic else 0
        seg_end = dyn_off + dyn_count * h.dyn.size if move_dynamic else str_off + len(strings.table)

        def vaddr_of(offset: int) -> int:
            return seg_vaddr + offset - seg_off

        new_str_vaddr = vaddr_of(str_off)
        entries = [(DT_STRTAB, new_str_vaddr) if t == DT_STRTAB else (DT_STRSZ, len(strings.table)) if t == DT_STRSZ
                   else (t, v) for t, v in entries]
        self.patch.size = seg_end
        self.patch.put(str_off, bytes(strings.table))
        if move_dynamic:
            self._put_dynamic(dyn_off, entries, dyn_count)
            self.dyn_phdr[2:7] = [dyn_off, vaddr_of(dyn_off), vaddr_of(dyn_off), dyn_count * h.dyn.size,
                                  dyn_count * h.dyn.size]
        else:
            self._put_dynamic(self.dyn_phdr[2], entries, capacity)
        flags = PF_R | (PF_W if move_dynamic else 0)
        size = seg_end - seg_off
        phdrs = [*h.phdrs, [PT_LOAD, flags, seg_off, seg_vaddr, seg_vaddr, size, size, align]]
        for p in phdrs:
            if p[0] == PT_PHDR:
                p[2:7] = [seg_off, seg_vaddr, seg_vaddr, phdr_size, phdr_size]
        self.patch.put(seg_off, b"".join(h.pack_phdr(p) for p in phdrs))
        e = list(h.e)
        e[5], e[10] = seg_off, h.phnum + 1
        self.patch.put(0, h.ehdr.pack(*e))
        self._fix_sections(str_off, new_str_vaddr, len(strings.table), move_dynamic)
        return self.patch

    def _put_dynamic(self, at: int, entries: list[tuple[int, int]], count: int) -> None:
        pack = self.h.dyn.pack
        padded = [*entries, *([(DT_NULL, 0)] * (count - len(entries)))]
        self.patch.put(at, b"".join(pack(t, v) for t, v in padded))

    def _fix_sections(self, str_off: int, str_vaddr: int, str_size: int, move_dynamic: bool) -> None:
        """Point the section headers of .dynstr (and of a moved .dynamic) at the new places."""
        h = self.h
        for at, s in h.sections():
            if s[1] == SHT_STRTAB and s[3] == self.strtab and s[3] != 0:
                s[3:6] = [str_vaddr, str_off, str_size]
            elif s[1] == SHT_DYNAMIC and move_dynamic:
                s[3:6] = [self.dyn_phdr[3], self.dyn_phdr[2], self.dyn_phdr[5]]
            else:
                continue
            self.patch.put(at, h.shdr.pack(*s))
