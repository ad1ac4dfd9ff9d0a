"""Mach-O backend: a small struct-based reader and dyld's search rules.

The reader reads only the fat header and, per slice, the mach header plus its load
commands (never the whole file).  Every slice of a universal file becomes one
:class:`~dynawheel.binary.Image`.

How dyld finds a dependency (facts from dyld's documentation and ``man dyld``), as
:meth:`MachOBackend.candidates` implements them; ``chain[-1]`` is the image whose
load command is being resolved (the *loader*), ``chain[0]`` the first image loaded:

===========================  =====================================================
install name                 where dyld looks, in order
===========================  =====================================================
``/usr/lib/...``,            system: in the shared cache, may not exist on disk;
``/System/...``              never looked up, never missing (``macos-system.json``)
``@rpath/tail``              1. ``DYLD_LIBRARY_PATH`` dirs + leaf name
                             2. each ``LC_RPATH`` of the loader, in order, then of
                                the image that loaded it, and so on up the chain;
                                ``@loader_path`` inside an LC_RPATH is the directory
                                of the image that *holds* the LC_RPATH
                             3. ``DYLD_FALLBACK_LIBRARY_PATH`` dirs + leaf name
``@loader_path/tail``        directory of the loader + tail (1 and 3 apply too)
``@executable_path/tail``    directory of the main executable + tail: the
                             ``SearchPaths.executable_path`` if given, else
                             ``chain[0]`` when it is an MH_EXECUTE; otherwise (a
                             bundle loaded by an unknown Python) unresolvable,
                             nothing is tried
``/abs/path``                1, then the path as written (under the sysroot), then 3
``leaf.dylib`` (no slash)    1, then 3 (the cwd is not searched here)
===========================  =====================================================

``SearchPaths.extra`` (``-L``) is searched first, by leaf name, for every request.
DYLD_* directories come only from :class:`~dynawheel.search.SearchPaths`, never from
the environment.  ``LC_LOAD_WEAK_DYLIB`` misses are not fatal; ``LC_REEXPORT_DYLIB``,
``LC_LAZY_LOAD_DYLIB`` and ``LC_LOAD_UPWARD_DYLIB`` are searched like
``LC_LOAD_DYLIB``.  An already-loaded image satisfies a later request with the same
install name (:meth:`MachOBackend.loaded_key`).
"""

from __future__ import annotations

import functools
import io
import json
import os
import posixpath
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, BinaryIO

from ..binary import BinaryFile, BinaryFormat, Dependency, DepKind, FileKind, Image, MachoFacts
from ..errors import BinaryFormatError
from ..log import get_logger
from ..search import SearchPaths
from . import Candidate, LinuxSystem, Loaded

log = get_logger(__name__)

FAT_MAGIC = 0xCAFEBABE
FAT_MAGIC_64 = 0xCAFEBABF
MH_MAGIC = 0xFEEDFACE
MH_MAGIC_64 = 0xFEEDFACF
MAX_SIZEOFCMDS = 16 << 20  # bytes of load commands read at most (real headers: a few KiB; 0xfffffff0 is a lie)
MAX_FAT_ARCHS = 30  # more is not a fat file: 0xcafebabe + major >= 45 is a Java class

LC_REQ_DYLD = 0x80000000
LC_SEGMENT = 0x1
LC_SYMTAB = 0x2
LC_LOAD_DYLIB = 0xC
LC_ID_DYLIB = 0xD
LC_SEGMENT_64 = 0x19
LC_UUID = 0x1B
LC_LOAD_WEAK_DYLIB = 0x18 | LC_REQ_DYLD
LC_RPATH = 0x1C | LC_REQ_DYLD
LC_CODE_SIGNATURE = 0x1D
LC_REEXPORT_DYLIB = 0x1F | LC_REQ_DYLD
LC_LAZY_LOAD_DYLIB = 0x20
LC_DYLD_INFO = 0x22
LC_DYLD_INFO_ONLY = 0x22 | LC_REQ_DYLD
LC_LOAD_UPWARD_DYLIB = 0x23 | LC_REQ_DYLD
LC_VERSION_MIN_MACOSX = 0x24
LC_BUILD_VERSION = 0x32

# linkedit_data_command kinds: (cmd, cmdsize, dataoff, datasize)
LINKEDIT_DATA_CMDS = frozenset({0x1D, 0x1E, 0x26, 0x29, 0x2B, 0x2E, 0x80000033, 0x80000034})

DYLIB_KINDS: dict[int, DepKind] = {
    LC_LOAD_DYLIB: DepKind.NEEDED,
    LC_LOAD_WEAK_DYLIB: DepKind.WEAK,
    LC_REEXPORT_DYLIB: DepKind.REEXPORT,
    LC_LAZY_LOAD_DYLIB: DepKind.LAZY,
    LC_LOAD_UPWARD_DYLIB: DepKind.UPWARD,
}

FILETYPES: dict[int, tuple[str, FileKind]] = {
    0x1: ("MH_OBJECT", FileKind.OTHER),
    0x2: ("MH_EXECUTE", FileKind.EXECUTABLE),
    0x6: ("MH_DYLIB", FileKind.SHARED),
    0x7: ("MH_DYLINKER", FileKind.OTHER),
    0x8: ("MH_BUNDLE", FileKind.BUNDLE),
    0x9: ("MH_DYLIB_STUB", FileKind.SHARED),
    0xA: ("MH_DSYM", FileKind.OTHER),
}

CPU_ARCH_ABI64 = 0x01000000
CPU_ARCH_ABI64_32 = 0x02000000
CPU_SUBTYPE_MASK = 0x00FFFFFF
CPU_TYPE_X86 = 7
CPU_TYPE_ARM = 12
CPU_TYPE_PPC = 18
CPU_TYPE_ARM64 = CPU_TYPE_ARM | CPU_ARCH_ABI64
CPU_TYPE_X86_64 = CPU_TYPE_X86 | CPU_ARCH_ABI64

_ARCHS: dict[tuple[int, int], str] = {
    (CPU_TYPE_X86, 3): "i386",
    (CPU_TYPE_X86_64, 3): "x86_64",
    (CPU_TYPE_X86_64, 8): "x86_64h",
    (CPU_TYPE_ARM64, 0): "arm64",
    (CPU_TYPE_ARM64, 1): "arm64",  # CPU_SUBTYPE_ARM64_V8
    (CPU_TYPE_ARM64, 2): "arm64e",
    (CPU_TYPE_ARM | CPU_ARCH_ABI64_32, 1): "arm64_32",
    (CPU_TYPE_ARM, 6): "armv6",
    (CPU_TYPE_ARM, 9): "armv7",
    (CPU_TYPE_ARM, 11): "armv7s",
    (CPU_TYPE_ARM, 12): "armv7k",
    (CPU_TYPE_PPC, 0): "ppc",
    (CPU_TYPE_PPC | CPU_ARCH_ABI64, 0): "ppc64",
}

PLATFORMS = {1: "macos", 2: "ios", 3: "tvos", 4: "watchos", 6: "maccatalyst"}


def arch_name(cputype: int, cpusubtype: int) -> str:
    """'x86_64', 'arm64', 'arm64e', 'i386', ...; unknown pairs as 'cpu<type>-<subtype>'."""
    sub = cpusubtype & CPU_SUBTYPE_MASK
    return _ARCHS.get((cputype, sub)) or _ARCHS.get((cputype, 0)) or f"cpu{cputype}-{sub}"


def version_string(packed: int) -> str:
    """Mach-O xxxx.yy.zz nibble-packed version -> '11.0' / '10.9.2'."""
    major, minor, patch = packed >> 16, (packed >> 8) & 0xFF, packed & 0xFF
    return f"{major}.{minor}.{patch}" if patch else f"{major}.{minor}"


@dataclass(frozen=True)
class LoadCommand:
    cmd: int
    offset: int  # from the start of the slice
    size: int


@dataclass(frozen=True)
class SliceHeader:
    """The mach header and load commands of one slice (thin file = one slice at 0)."""

    offset: int  # of the slice in the file
    size: int  # of the slice; 0 when unknown (a thin file read from a stream of unknown length)
    endian: str  # '<' or '>' (struct prefix)
    is64: bool
    cputype: int
    cpusubtype: int
    filetype: int
    flags: int
    header_size: int  # 28 or 32
    sizeofcmds: int
    commands: tuple[LoadCommand, ...]
    raw: bytes  # header + load commands, exactly as in the file

    @property
    def arch(self) -> str:
        return arch_name(self.cputype, self.cpusubtype)

    @property
    def cmds_end(self) -> int:
        return self.header_size + self.sizeofcmds

    def unpack(self, fmt: str, offset: int) -> tuple[Any, ...]:
        return struct.unpack_from(self.endian + fmt, self.raw, offset)

    def find(self, *cmds: int) -> list[LoadCommand]:
        return [c for c in self.commands if c.cmd in cmds]

    def lc_str(self, lc: LoadCommand, field_at: int, path: str) -> str:
        """The NUL-terminated string of an lc_str field at `field_at` bytes into `lc`."""
        (rel,) = self.unpack("I", lc.offset + field_at)
        if rel < field_at + 4 or rel >= lc.size:
            raise BinaryFormatError(
                f"{path!r} ({self.arch}): string offset {rel} outside its load command 0x{lc.cmd:x} of {lc.size} bytes"
            )
        body = self.raw[lc.offset + rel : lc.offset + lc.size]
        end = body.find(b"\0")
        text = body if end < 0 else body[:end]
        return text.decode("utf-8", "surrogateescape")

    def low_offset(self) -> int:
        """Lowest file offset (in the slice) of section/segment/linkedit data after the header."""
        offsets = [v for lc in self.commands for v in self._data_offsets(lc) if v > 0]
        if self.size:
            offsets.append(self.size)
        return min(offsets, default=self.cmds_end)

    def _data_offsets(self, lc: LoadCommand) -> list[int]:
        if lc.cmd in (LC_SEGMENT, LC_SEGMENT_64):
            return self._segment_offsets(lc)
        if lc.cmd in LINKEDIT_DATA_CMDS:
            dataoff, datasize = self.unpack("II", lc.offset + 8)
            return [dataoff] if datasize else []
        if lc.cmd == LC_SYMTAB:
            symoff, nsyms, stroff, strsize = self.unpack("IIII", lc.offset + 8)
            return [v for v, n in ((symoff, nsyms), (stroff, strsize)) if n]
        if lc.cmd in (LC_DYLD_INFO, LC_DYLD_INFO_ONLY):
            vals = self.unpack("10I", lc.offset + 8)
            return [vals[i] for i in range(0, 10, 2) if vals[i + 1]]
        return []

    def _segment_offsets(self, lc: LoadCommand) -> list[int]:
        seg = segment(self, lc)
        offsets = [s.offset for s in seg.sections if s.offset and s.size and not s.zerofill]
        if not seg.sections and seg.filesize and seg.fileoff:
            offsets.append(seg.fileoff)
        return offsets

    def free_header_space(self) -> int:
        return self.low_offset() - self.cmds_end


@dataclass(frozen=True)
class Section:
    name: str
    offset: int
    size: int
    zerofill: bool


@dataclass(frozen=True)
class Segment:
    name: str
    vmaddr: int
    vmsize: int
    fileoff: int
    filesize: int
    sections: tuple[Section, ...]


_ZEROFILL_TYPES = frozenset({0x1, 0xC, 0x12})  # S_ZEROFILL, S_GB_ZEROFILL, S_THREAD_LOCAL_ZEROFILL


def segment(sl: SliceHeader, lc: LoadCommand) -> Segment:
    """Decode an LC_SEGMENT(_64) command and its sections."""
    if sl.is64:
        name, vmaddr, vmsize, fileoff, filesize, _, _, nsects, _ = sl.unpack("16sQQQQiiII", lc.offset + 8)
        first, sect_size, sect_fmt = 72, 80, "16s16sQQIIIIIIII"
    else:
        name, vmaddr, vmsize, fileoff, filesize, _, _, nsects, _ = sl.unpack("16sIIIIiiII", lc.offset + 8)
        first, sect_size, sect_fmt = 56, 68, "16s16sIIIIIIIII"
    if first + nsects * sect_size > lc.size:
        raise BinaryFormatError(f"{nsects} sections do not fit in segment command of {lc.size} bytes")
    sections = []
    for i in range(nsects):
        fields = sl.unpack(sect_fmt, lc.offset + first + i * sect_size)
        sectname, size, offset, flags = fields[0], fields[3], fields[4], fields[8]
        sections.append(Section(_cstr(sectname), offset, size, (flags & 0xFF) in _ZEROFILL_TYPES))
    return Segment(_cstr(name), vmaddr, vmsize, fileoff, filesize, tuple(sections))


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace")


# ---------------------------------------------------------------- reading headers


def _known_size(fp: BinaryIO) -> int | None:
    """Size of a real file or an in-memory buffer; None for other streams (zip members),
    which are not seeked to their end: that would decompress them whole."""
    try:
        return os.fstat(fp.fileno()).st_size
    except (AttributeError, OSError, io.UnsupportedOperation):
        pass
    if isinstance(fp, io.BytesIO):
        return fp.getbuffer().nbytes
    return None


def _read_at(fp: BinaryIO, offset: int, size: int) -> bytes:
    fp.seek(offset)
    return fp.read(size)


def fat_slices(head: bytes, file_size: int | None, path: str) -> list[tuple[int, int]] | None:
    """(offset, size) of every slice of a fat file, or None when `head` is not a fat header.

    `head` must hold the fat header and all fat_arch records; slices are checked against
    `file_size` when it is known.
    """
    if len(head) < 8:
        return None
    magic, nfat = struct.unpack_from(">II", head)
    if magic not in (FAT_MAGIC, FAT_MAGIC_64):
        return None
    if nfat == 0 or nfat > MAX_FAT_ARCHS:
        raise BinaryFormatError(f"{path!r}: fat header announces {nfat} architectures")
    fmt, rec = (">iiQQII", 32) if magic == FAT_MAGIC_64 else (">iiIII", 20)
    if len(head) < 8 + nfat * rec:
        raise BinaryFormatError(f"{path!r}: truncated fat header ({nfat} architectures)")
    slices = []
    for i in range(nfat):
        _, _, offset, size = struct.unpack_from(fmt, head, 8 + i * rec)[:4]
        if offset < 8 + nfat * rec or (file_size is not None and offset + size > file_size):
            raise BinaryFormatError(
                f"{path!r}: fat slice {i} at {offset}+{size} lies outside the file of {file_size} bytes"
            )
        slices.append((offset, size))
    return slices


def parse_slice_header(data: bytes, offset: int, size: int, path: str) -> SliceHeader:
    """Parse a mach header + load commands from `data` (starting at the slice start).

    `size` is the slice's size, 0 when unknown (then `data` must hold all it can).
    """
    if len(data) < 28:
        raise BinaryFormatError(f"{path!r}: truncated Mach-O header ({len(data)} bytes)")
    magic_le = struct.unpack_from("<I", data)[0]
    endian = "<" if magic_le in (MH_MAGIC, MH_MAGIC_64) else ">"
    magic = struct.unpack_from(endian + "I", data)[0]
    if magic not in (MH_MAGIC, MH_MAGIC_64):
        raise BinaryFormatError(f"{path!r}: bad Mach-O magic 0x{magic_le:08x} at offset {offset}")
    is64 = magic == MH_MAGIC_64
    header_size = 32 if is64 else 28
    cputype, cpusubtype, filetype, ncmds, sizeofcmds, flags = struct.unpack_from(endian + "iIIIII", data, 4)
    arch = arch_name(cputype, cpusubtype)
    if sizeofcmds > MAX_SIZEOFCMDS and not (size and header_size + sizeofcmds > size):
        raise BinaryFormatError(f"{path!r} ({arch}): load commands claim {sizeofcmds} bytes (at most "
                                f"{MAX_SIZEOFCMDS} are read)")
    if header_size + sizeofcmds > (min(size, len(data)) if size else len(data)):
        raise BinaryFormatError(
            f"{path!r} ({arch}): load commands ({sizeofcmds} bytes) run past the end of the "
            f"{'slice' if offset else 'file'} ({size or len(data)} bytes)"
        )
    raw = bytes(data[: header_size + sizeofcmds])
    commands = _split_commands(raw, endian, header_size, ncmds, f"{path!r} ({arch})")
    return SliceHeader(
        offset,
        size,
        endian,
        is64,
        cputype,
        cpusubtype,
        filetype,
        flags,
        header_size,
        sizeofcmds,
        commands,
        raw,
    )


def _split_commands(raw: bytes, endian: str, start: int, ncmds: int, where: str) -> tuple[LoadCommand, ...]:
    commands = []
    pos = start
    for i in range(ncmds):
        if pos + 8 > len(raw):
            raise BinaryFormatError(f"{where}: load command {i} of {ncmds} lies past sizeofcmds")
        cmd, cmdsize = struct.unpack_from(endian + "II", raw, pos)
        if cmdsize < 8 or cmdsize % 4 or pos + cmdsize > len(raw):
            raise BinaryFormatError(f"{where}: load command {i} (0x{cmd:x}) has invalid size {cmdsize}")
        commands.append(LoadCommand(cmd, pos, cmdsize))
        pos += cmdsize
    return tuple(commands)


def read_headers(fp: BinaryIO, path: str) -> tuple[bool, list[SliceHeader]]:
    """(is_fat, slice headers) of a Mach-O file, reading only the headers."""
    file_size = _known_size(fp)
    head = _read_at(fp, 0, 8 + MAX_FAT_ARCHS * 32)
    ranges = fat_slices(head, file_size, path)
    is_fat = ranges is not None
    headers = []
    for offset, size in ranges or [(0, file_size or 0)]:
        first = _read_at(fp, offset, 32)
        if len(first) < 28:
            raise BinaryFormatError(f"{path!r}: truncated Mach-O header at offset {offset}")
        sizeofcmds = struct.unpack_from("<I" if first[0] in (0xCE, 0xCF) else ">I", first, 20)[0]
        too_big = (size and 28 + sizeofcmds > size) or sizeofcmds > MAX_SIZEOFCMDS  # never read what a header asks
        data = first if too_big else _read_at(fp, offset, 32 + sizeofcmds)
        headers.append(parse_slice_header(data, offset, size, path))
    return is_fat, headers


def headers_of_bytes(data: bytes, path: str) -> tuple[bool, list[SliceHeader]]:
    """Like :func:`read_headers` for a file already in memory."""
    ranges = fat_slices(data[: 8 + MAX_FAT_ARCHS * 32], len(data), path)
    is_fat = ranges is not None
    if ranges is None:
        ranges = [(0, len(data))]
    return is_fat, [parse_slice_header(data[o : o + s], o, s, path) for o, s in ranges]


def replace_slices(data: bytes, slices: Sequence[bytes], path: str) -> bytes:
    """A fat file like `data` holding `slices` (same order, possibly new sizes).

    Slices keep their offsets when they still fit; later ones move up to the next
    offset aligned as their fat_arch ``align`` says.
    """
    magic, nfat = struct.unpack_from(">II", data)
    if nfat != len(slices):
        raise ValueError(f"{path!r}: {len(slices)} slices for {nfat} fat_arch records")
    fmt, rec = (">iiQQII", 32) if magic == FAT_MAGIC_64 else (">iiIII", 20)
    header = bytearray(data[: 8 + nfat * rec])
    records = [list(struct.unpack_from(fmt, data, 8 + i * rec)) for i in range(nfat)]
    order = sorted(range(nfat), key=lambda i: records[i][2])
    end = len(header)
    placed: dict[int, int] = {}
    for i in order:
        align = 1 << records[i][4]
        offset = max(records[i][2], (end + align - 1) // align * align)
        placed[i] = offset
        end = offset + len(slices[i])
    out = bytearray(end)
    for i in range(nfat):
        records[i][2], records[i][3] = placed[i], len(slices[i])
        struct.pack_into(fmt, header, 8 + i * rec, *records[i])
        out[placed[i] : placed[i] + len(slices[i])] = slices[i]
    out[: len(header)] = header
    return bytes(out)


# ---------------------------------------------------------------- slice -> Image


def image_of(sl: SliceHeader, path: str) -> Image:
    where = f"{path!r} ({sl.arch})"
    needed: list[Dependency] = []
    rpaths: list[str] = []
    soname: str | None = None
    try:
        for lc in sl.commands:
            if lc.cmd in DYLIB_KINDS:
                needed.append(Dependency(sl.lc_str(lc, 8, path), DYLIB_KINDS[lc.cmd]))
            elif lc.cmd == LC_ID_DYLIB:
                soname = sl.lc_str(lc, 8, path)
            elif lc.cmd == LC_RPATH:
                rpaths.append(sl.lc_str(lc, 8, path))
        facts = _facts(sl)
    except struct.error as exc:
        raise BinaryFormatError(f"{where}: load command too short ({exc})") from None
    except BinaryFormatError as exc:
        msg = str(exc)
        raise BinaryFormatError(msg if msg.startswith(repr(path)) else f"{where}: {msg}") from None
    return Image(
        format=BinaryFormat.MACHO,
        arch=sl.arch,
        kind=FILETYPES.get(sl.filetype, ("", FileKind.OTHER))[1],
        needed=tuple(needed),
        rpaths=tuple(rpaths),
        soname=soname,
        facts=facts,
    )


def _facts(sl: SliceHeader) -> MachoFacts:
    """The slice's facts; of repeated load commands the last one counts (min_macos: the last macOS one)."""
    signature_size: int | None = None
    platform: str | None = None
    sdk: str | None = None
    min_macos: str | None = None
    uuid: str | None = None
    for lc in sl.commands:
        if lc.cmd == LC_CODE_SIGNATURE:
            (signature_size,) = sl.unpack("I", lc.offset + 12)
        elif lc.cmd in (LC_BUILD_VERSION, LC_VERSION_MIN_MACOSX):
            platform, minos, sdk_version = _version_command(sl, lc)
            sdk = version_string(sdk_version)
            if platform == "macos":
                min_macos = version_string(minos)
        elif lc.cmd == LC_UUID:
            uuid = sl.raw[lc.offset + 8 : lc.offset + 24].hex()
    return MachoFacts(
        cputype=sl.cputype, cpusubtype=sl.cpusubtype & CPU_SUBTYPE_MASK, slice_offset=sl.offset,
        header_size=sl.cmds_end, free_header_space=sl.free_header_space(),
        code_signature=signature_size is not None, min_macos=min_macos, sdk=sdk, platform=platform, uuid=uuid,
        code_signature_size=signature_size,
        filetype=FILETYPES.get(sl.filetype, (f"0x{sl.filetype:x}", FileKind.OTHER))[0],
    )


def _version_command(sl: SliceHeader, lc: LoadCommand) -> tuple[str, int, int]:
    """(platform, minimum OS version, SDK version) of an LC_BUILD_VERSION or LC_VERSION_MIN_MACOSX."""
    if lc.cmd == LC_BUILD_VERSION:
        platform, minos, sdk = sl.unpack("III", lc.offset + 8)
        return PLATFORMS.get(platform, str(platform)), minos, sdk
    minos, sdk = sl.unpack("II", lc.offset + 8)
    return "macos", minos, sdk


# ---------------------------------------------------------------- the backend


@functools.lru_cache(maxsize=1)
def system_prefixes() -> tuple[str, ...]:
    """Install-name prefixes of the OS (dynawheel/data/macos-system.json)."""
    text = resources.files("dynawheel").joinpath("data/macos-system.json").read_text("utf-8")
    data = json.loads(text)
    if data.get("version") != 1:
        raise ValueError(f"unsupported macos-system.json version {data.get('version')!r}")
    return tuple(str(p) for p in data["prefixes"])


class MachOBackend:
    format = BinaryFormat.MACHO
    match_soname = False  # dyld matches install names as paths
    needs_policy = False
    stops_at_bad_file = False
    case_insensitive = False

    def with_policy(self, linux: LinuxSystem) -> MachOBackend:
        return self  # its system libraries are macOS's own data (data/macos-system.json), not policy

    def sniff(self, head: bytes) -> bool:
        if len(head) < 4:
            return False
        if head[:4] in (b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xfe\xed\xfa\xce"):
            return True
        if head[:4] in (b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf") and len(head) >= 8:
            nfat: int = struct.unpack_from(">I", head, 4)[0]
            return 0 < nfat <= MAX_FAT_ARCHS
        return False

    def parse(self, fp: BinaryIO, path: str) -> BinaryFile:
        try:
            is_fat, headers = read_headers(fp, path)
        except struct.error as exc:
            raise BinaryFormatError(f"{path!r}: truncated Mach-O data ({exc})") from None
        images = tuple(image_of(sl, path) for sl in headers)
        return BinaryFile(path=path, format=BinaryFormat.MACHO, images=images, fat=is_fat)

    def is_system(self, request: Dependency, loader: Image, search: SearchPaths) -> bool:
        return request.name.startswith(system_prefixes())

    def loaded_key(self, name: str) -> str:
        return name

    def lookup_key(self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths) -> None:
        return None  # @executable_path and @rpath read the whole chain: searched every time

    def missing_note(self, name: str) -> str | None:
        return None

    def refusal(self, image: Image, chain: Sequence[Loaded], search: SearchPaths) -> str | None:
        return None  # a slice of the right arch loads

    def candidates(self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths) -> Iterator[Candidate]:
        name = request.name
        leaf = posixpath.basename(name)
        yield from _in_dirs(search.extra, leaf, "extra library path (-L)")
        if search.use_system:
            yield from _in_dirs(_under(search, search.dyld_library_path), leaf, "DYLD_LIBRARY_PATH")
        yield from _variants(name, chain, search)
        if search.use_system:
            fallback = _under(search, search.dyld_fallback_library_path)
            yield from _in_dirs(fallback, leaf, "DYLD_FALLBACK_LIBRARY_PATH")


def _in_dirs(dirs: Sequence[str], leaf: str, via: str) -> Iterator[Candidate]:
    for d in dirs:
        yield Candidate(posixpath.join(d, leaf), via)


def _under(search: SearchPaths, paths: Sequence[str]) -> list[str]:
    """Host paths as seen below the sysroot."""
    if search.sysroot in ("", "/"):
        return list(paths)
    return [posixpath.join(search.sysroot, p.lstrip("/")) for p in paths]


def _executable_dir(chain: Sequence[Loaded], search: SearchPaths) -> str | None:
    if search.executable_path is not None:
        return posixpath.dirname(search.executable_path)
    if chain and chain[0].image.kind is FileKind.EXECUTABLE:
        return posixpath.dirname(chain[0].path)
    return None


def _expand(path: str, holder: Loaded, chain: Sequence[Loaded], search: SearchPaths) -> str | None:
    """Expand @loader_path (the holder's directory) and @executable_path; None if unknown."""
    if path.startswith("@loader_path"):
        return posixpath.normpath(posixpath.dirname(holder.path) + path[len("@loader_path") :])
    if path.startswith("@executable_path"):
        exe_dir = _executable_dir(chain, search)
        if exe_dir is None:
            log.debug("@executable_path is unknown: %r cannot be resolved", path)
            return None
        return posixpath.normpath(exe_dir + path[len("@executable_path") :])
    if path.startswith("/"):
        if not search.use_system:
            return None
        return posixpath.normpath(_under(search, [path])[0])
    log.debug("relative path %r is not searched (dyld would use the cwd)", path)
    return None


def _variants(name: str, chain: Sequence[Loaded], search: SearchPaths) -> Iterator[Candidate]:
    if not chain:
        return
    loader = chain[-1]
    if name.startswith("@rpath/"):
        tail = name[len("@rpath/") :]
        for holder in reversed(chain):
            for rpath in holder.image.rpaths:
                base = _expand(rpath, holder, chain, search)
                if base is not None:
                    via = f"LC_RPATH {rpath} of {holder.path}"
                    yield Candidate(posixpath.normpath(posixpath.join(base, tail)), via)
        return
    if name.startswith(("@loader_path", "@executable_path", "/")):
        expanded = _expand(name, loader, chain, search)
        if expanded is not None:
            via = "absolute install name" if name.startswith("/") else f"{name} from {loader.path}"
            yield Candidate(expanded, via)


BACKEND = MachOBackend()
