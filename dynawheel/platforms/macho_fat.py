"""Universal ("fat") Mach-O files made from thin ones, on any host: what ``lipo -create`` does.

Layout facts (Apple's ``<mach-o/fat.h>``; cctools ``lipo.c``; LLVM ``MachOUniversalWriter.cpp``, whose
``llvm-lipo`` writes byte for byte what cctools' lipo writes for these inputs; the tests compare with
``llvm-lipo-14 -create``):

- a big-endian ``fat_header`` (``0xcafebabe``, ``nfat_arch``) and one ``fat_arch`` record per slice
  (cputype, cpusubtype as in the slice's own mach header, offset, size, ``align`` as a power of 2);
  ``0xcafebabf`` with 64-bit offsets and sizes only when a slice lies past 4 GiB;
- each slice starts at the first offset after the previous one that is a multiple of ``2**align``:
  ``align`` is 12 (4 KiB pages) for i386, x86_64 and PowerPC, 14 (16 KiB pages) for ARM and arm64;
- slices are ordered: same cputype by cpusubtype, the arm64 family after all others, the rest by
  alignment (cctools puts arm64 last; x86_64 then arm64 for universal2);
- the bytes between slices are zeros and the file ends with the last slice.

Code signatures live inside each slice and cover only its bytes, so fusing keeps them valid.  An
arm64 slice that carries no valid signature is given an ad-hoc one (the kernel refuses to run
unsigned arm64 code); a valid signature (ad hoc or a developer's) is kept untouched.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import BinaryFormatError
from .codesign import sign_slice, verify_signature
from .macho import (
    CPU_TYPE_ARM,
    CPU_TYPE_ARM64,
    CPU_TYPE_PPC,
    CPU_TYPE_X86,
    CPU_TYPE_X86_64,
    FAT_MAGIC,
    FAT_MAGIC_64,
    MH_MAGIC,
    MH_MAGIC_64,
    parse_slice_header,
)

CPU_ARCH_MASK = 0xFF000000
_PAGE_4K = 12
_PAGE_16K = 14
_U32 = 1 << 32


@dataclass(frozen=True)
class Thin:
    """One thin Mach-O file to become a slice."""

    data: bytes
    cputype: int
    cpusubtype: int
    arch: str
    align: int  # power of 2


def is_thin_macho(head: bytes) -> bool:
    """True when `head` starts a thin Mach-O file (either byte order)."""
    if len(head) < 4:
        return False
    return struct.unpack_from("<I", head)[0] in (MH_MAGIC, MH_MAGIC_64) or \
        struct.unpack_from(">I", head)[0] in (MH_MAGIC, MH_MAGIC_64)


def is_fat_macho(head: bytes) -> bool:
    """True when `head` starts a fat Mach-O header (not a Java class: those claim >= 45 "archs")."""
    if len(head) < 8:
        return False
    magic, count = struct.unpack_from(">II", head)
    return magic in (FAT_MAGIC, FAT_MAGIC_64) and 0 < count < 45


def slice_alignment(cputype: int) -> int:
    """The power of 2 a slice of this CPU type is aligned to in a fat file (its page size)."""
    if cputype in (CPU_TYPE_X86, CPU_TYPE_X86_64, CPU_TYPE_PPC, CPU_TYPE_PPC | 0x01000000):
        return _PAGE_4K
    if cputype & ~CPU_ARCH_MASK == CPU_TYPE_ARM:
        return _PAGE_16K
    return _PAGE_4K


def thin(data: bytes, path: str) -> Thin:
    """Read a thin Mach-O file's CPU type (a fat file or anything else is a BinaryFormatError)."""
    if is_fat_macho(data[:8]):
        raise BinaryFormatError(f"{path!r} is already a universal (fat) Mach-O file")
    if not is_thin_macho(data[:4]):
        raise BinaryFormatError(f"{path!r} is not a Mach-O file")
    sl = parse_slice_header(data, 0, len(data), path)
    return Thin(data, sl.cputype, sl.cpusubtype, sl.arch, slice_alignment(sl.cputype))


def _order_key(t: Thin) -> tuple[int, int, int, int]:
    arm64 = 1 if t.cputype == CPU_TYPE_ARM64 else 0
    return (arm64, t.align if not arm64 else 0, t.cputype, t.cpusubtype & 0x00FFFFFF)


def signed_if_needed(t: Thin, path: str) -> Thin:
    """`t`, with an ad-hoc signature when it is arm64 and has no valid one."""
    if t.cputype != CPU_TYPE_ARM64 or not verify_signature(t.data, path):
        return t
    return Thin(sign_slice(t.data, path=path), t.cputype, t.cpusubtype, t.arch, t.align)


def fuse(parts: Sequence[Thin], path: str) -> bytes:
    """The universal file holding `parts` (thin files of distinct archs), as lipo -create lays it out."""
    if len(parts) < 2:
        raise BinaryFormatError(f"{path!r}: a universal file needs at least two slices, got {len(parts)}")
    seen: dict[tuple[int, int], str] = {}
    for t in parts:
        key = (t.cputype, t.cpusubtype & 0x00FFFFFF)
        if key in seen:
            raise BinaryFormatError(f"{path!r}: two slices of arch {t.arch!r}")
        seen[key] = t.arch
    ordered = sorted(parts, key=_order_key)
    placed: list[tuple[Thin, int]] = []
    end = 8 + 20 * len(ordered)
    for t in ordered:
        step = 1 << t.align
        offset = (end + step - 1) // step * step
        placed.append((t, offset))
        end = offset + len(t.data)
    wide = end >= _U32
    rec = 32 if wide else 20
    if wide:  # a bigger header may move the first slice: lay out again with 32-byte records
        placed, end = [], 8 + rec * len(ordered)
        for t in ordered:
            step = 1 << t.align
            offset = (end + step - 1) // step * step
            placed.append((t, offset))
            end = offset + len(t.data)
    out = bytearray(end)
    struct.pack_into(">II", out, 0, FAT_MAGIC_64 if wide else FAT_MAGIC, len(placed))
    for i, (t, offset) in enumerate(placed):
        if wide:
            struct.pack_into(">IIQQII", out, 8 + i * rec, t.cputype & 0xFFFFFFFF, t.cpusubtype & 0xFFFFFFFF,
                             offset, len(t.data), t.align, 0)
        else:
            struct.pack_into(">IIIII", out, 8 + i * rec, t.cputype & 0xFFFFFFFF, t.cpusubtype & 0xFFFFFFFF,
                             offset, len(t.data), t.align)
        out[offset:offset + len(t.data)] = t.data
    return bytes(out)
