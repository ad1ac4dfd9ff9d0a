"""Ad-hoc code signing of Mach-O files in pure Python, and a verifier.

Format facts (Apple's ``cs_blobs.h``; all fields big-endian):

- ``LC_CODE_SIGNATURE`` (linkedit_data_command) points at an embedded-signature
  SuperBlob (magic ``0xfade0cc0``, length, count, then ``count`` (type, offset)
  indexes) placed at the end of ``__LINKEDIT``, 16-byte aligned.
- The CodeDirectory blob (magic ``0xfade0c02``, slot type 0) version ``0x20400``
  (execSeg fields) holds: flags (``ADHOC`` 0x2, ``LINKER_SIGNED`` 0x20000), the
  identifier (NUL-terminated, at identOffset), ``nSpecialSlots`` hashes *before*
  hashOffset (slot -1 Info.plist, -2 requirements, ...), ``nCodeSlots`` SHA-256
  hashes (hashType 2, hashSize 32) of each 4 KiB page (pageSize = log2 = 12) of the
  slice up to ``codeLimit`` (= the signature's offset; the last page is hashed
  short), and execSegBase/Limit = ``__TEXT`` fileoff/filesize, execSegFlags
  ``MAIN_BINARY`` (0x1) for executables.
- Linker signatures (ld64, lld) contain only the CodeDirectory: the SuperBlob
  header is padded to 24 bytes, the identifier padded so that the hashes start on
  16 bytes, no special slots.  ``codesign -s -`` style signatures add an empty
  requirements blob (``0xfade0c01``, slot 2) whose hash is special slot -2.

Which slices are signed: every arm64/arm64e slice (the kernel refuses to run
unsigned arm64 code) and any other slice that was already signed.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .. import fsutil
from ..errors import BinaryFormatError, HeaderSpaceError, RepairError
from .macho import (
    CPU_TYPE_ARM64,
    LC_CODE_SIGNATURE,
    LC_SEGMENT,
    LC_SEGMENT_64,
    SliceHeader,
    headers_of_bytes,
    parse_slice_header,
    replace_slices,
    segment,
)

log = logging.getLogger(__name__)

CSMAGIC_EMBEDDED_SIGNATURE = 0xFADE0CC0
CSMAGIC_CODEDIRECTORY = 0xFADE0C02
CSMAGIC_REQUIREMENTS = 0xFADE0C01
CSSLOT_CODEDIRECTORY = 0
CSSLOT_REQUIREMENTS = 2
CS_ADHOC = 0x2
CS_LINKER_SIGNED = 0x20000
CS_EXECSEG_MAIN_BINARY = 0x1
CS_HASHTYPE_SHA256 = 2
# cs_blobs.h hash types -> (hashlib name, stored size): Apple's `codesign` writes a SHA-1 CodeDirectory
# in slot 0 and a SHA-256 one as an alternate (slots 0x1000...); linkers write one SHA-256 directory
HASH_TYPES = {1: ("sha1", 20), 2: ("sha256", 32), 3: ("sha256", 20), 4: ("sha384", 48)}
CSSLOT_ALTERNATE_CODEDIRECTORIES = 0x1000
CS_VERSION_EXECSEG = 0x20400
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
HASH_SIZE = 32
CD_HEADER_SIZE = 88  # CodeDirectory up to and including execSegFlags (version 0x20400)
_CD_FORMAT = ">IIIIIIIIIBBBBIIIIQQQQ"
MH_EXECUTE = 0x2
EMPTY_REQUIREMENTS = struct.pack(">III", CSMAGIC_REQUIREMENTS, 12, 0)


@dataclass(frozen=True)
class CodeDirectory:
    """The fields of a CodeDirectory that signing and verification use."""

    flags: int
    identifier: str
    n_special: int
    n_code: int
    code_limit: int
    hash_size: int
    hash_type: int
    page_shift: int
    special_hashes: tuple[bytes, ...]  # slot -n_special ... -1
    code_hashes: tuple[bytes, ...]
    exec_seg: tuple[int, int, int]


def _align(value: int, to: int) -> int:
    return (value + to - 1) // to * to


def page_hashes(data: bytes, code_limit: int, page_size: int = PAGE_SIZE,
                hash_type: int = CS_HASHTYPE_SHA256) -> list[bytes]:
    """The hash (SHA-256 unless `hash_type` says otherwise) of every page of data[:code_limit] (the last
    page may be short)."""
    algorithm, size = HASH_TYPES[hash_type]
    return [
        hashlib.new(algorithm, data[off : min(off + page_size, code_limit)]).digest()[:size]
        for off in range(0, code_limit, page_size)
    ]


def _layout(identifier: str, linker_signed: bool) -> tuple[int, bytes, int, list[bytes]]:
    """(SuperBlob header size, identifier bytes, end of identifier+padding in the CD, specials)."""
    index_size = _align(12 + 8 * (1 if linker_signed else 2), 8 if linker_signed else 4)
    ident = identifier.encode("utf-8") + b"\0"
    ident_end = CD_HEADER_SIZE + len(ident)
    if linker_signed:  # lld/ld64 pad so that the hashes start 16-byte aligned in the SuperBlob
        return index_size, ident, _align(index_size + ident_end, 16) - index_size, []
    special = [bytes(HASH_SIZE), hashlib.sha256(EMPTY_REQUIREMENTS).digest()]  # slot -1, -2
    return index_size, ident, ident_end, special


def signature_size(code_limit: int, identifier: str, *, linker_signed: bool) -> int:
    """Size of the SuperBlob that :func:`build_signature` makes for this code size."""
    index_size, _, ident_end, special = _layout(identifier, linker_signed)
    pages = (code_limit + PAGE_SIZE - 1) // PAGE_SIZE
    extra = 0 if linker_signed else len(EMPTY_REQUIREMENTS)
    return index_size + ident_end + HASH_SIZE * (len(special) + pages) + extra


def build_signature(code: bytes, identifier: str, exec_seg: tuple[int, int, int], *, linker_signed: bool) -> bytes:
    """The embedded-signature SuperBlob for `code` (the slice up to the signature)."""
    index_size, ident, ident_end, special = _layout(identifier, linker_signed)
    hash_offset = ident_end + HASH_SIZE * len(special)
    hashes = page_hashes(code, len(code))
    cd_len = hash_offset + HASH_SIZE * len(hashes)
    flags = CS_ADHOC | (CS_LINKER_SIGNED if linker_signed else 0)
    header = struct.pack(
        _CD_FORMAT,
        CSMAGIC_CODEDIRECTORY,
        cd_len,
        CS_VERSION_EXECSEG,
        flags,
        hash_offset,
        CD_HEADER_SIZE,
        len(special),
        len(hashes),
        len(code),
        HASH_SIZE,
        CS_HASHTYPE_SHA256,
        0,
        PAGE_SHIFT,
        0,
        0,
        0,
        0,
        0,
        *exec_seg,
    )
    pad = bytes(ident_end - CD_HEADER_SIZE - len(ident))
    # special slots are stored in reverse order: slot -n first, slot -1 last
    cd = header + ident + pad + b"".join(reversed(special)) + b"".join(hashes)
    index = [(CSSLOT_CODEDIRECTORY, index_size)]
    if not linker_signed:
        index.append((CSSLOT_REQUIREMENTS, index_size + len(cd)))
    tail = b"" if linker_signed else EMPTY_REQUIREMENTS
    out = struct.pack(">III", CSMAGIC_EMBEDDED_SIGNATURE, index_size + len(cd) + len(tail), len(index))
    out += b"".join(struct.pack(">II", t, o) for t, o in index)
    return out + bytes(index_size - len(out)) + cd + tail


def parse_code_directory(sig: bytes, where: str) -> CodeDirectory:
    """The CodeDirectory (slot 0) of an embedded-signature SuperBlob."""
    if len(sig) < 12:
        raise BinaryFormatError(f"{where}: code signature of {len(sig)} bytes is truncated")
    magic, length, count = struct.unpack_from(">III", sig)
    if magic != CSMAGIC_EMBEDDED_SIGNATURE or length > len(sig) or 12 + 8 * count > length:
        raise BinaryFormatError(f"{where}: not an embedded signature (magic 0x{magic:08x})")
    for i in range(count):
        slot, offset = struct.unpack_from(">II", sig, 12 + 8 * i)
        if slot == CSSLOT_CODEDIRECTORY:
            return _decode_cd(sig, offset, where)
    raise BinaryFormatError(f"{where}: code signature has no CodeDirectory")


def _decode_cd(sig: bytes, offset: int, where: str) -> CodeDirectory:
    if offset + CD_HEADER_SIZE > len(sig):
        raise BinaryFormatError(f"{where}: CodeDirectory at {offset} is truncated")
    f = struct.unpack_from(_CD_FORMAT, sig, offset)
    magic, length, version, flags, hash_off, ident_off, n_special, n_code, limit = f[:9]
    hash_size, hash_type, page_shift = f[9], f[10], f[12]
    if magic != CSMAGIC_CODEDIRECTORY or offset + length > len(sig):
        raise BinaryFormatError(f"{where}: bad CodeDirectory (magic 0x{magic:08x})")
    cd = sig[offset : offset + length]
    if hash_off + n_code * hash_size > length or hash_off < n_special * hash_size:
        raise BinaryFormatError(f"{where}: CodeDirectory hash slots lie outside the blob")
    ident = cd[ident_off : cd.index(b"\0", ident_off)].decode("utf-8", "replace")
    special = tuple(
        cd[hash_off - (i + 1) * hash_size : hash_off - i * hash_size] for i in range(n_special)
    )  # index 0 = slot -1
    code = tuple(cd[hash_off + i * hash_size : hash_off + (i + 1) * hash_size] for i in range(n_code))
    exec_seg = f[18:21] if version >= CS_VERSION_EXECSEG else (0, 0, 0)
    return CodeDirectory(
        flags,
        ident,
        n_special,
        n_code,
        limit,
        hash_size,
        hash_type,
        page_shift,
        special,
        code,
        (exec_seg[0], exec_seg[1], exec_seg[2]),
    )


# ---------------------------------------------------------------- per slice


def _signature_cmd(sl: SliceHeader) -> tuple[int, int, int] | None:
    """(command offset, dataoff, datasize) of LC_CODE_SIGNATURE, or None."""
    for lc in sl.find(LC_CODE_SIGNATURE):
        dataoff, datasize = sl.unpack("II", lc.offset + 8)
        return lc.offset, dataoff, datasize
    return None


def _segments(sl: SliceHeader) -> dict[str, tuple[int, int]]:
    """segment name -> (command offset, index) for __TEXT and __LINKEDIT."""
    found = {}
    for lc in sl.find(LC_SEGMENT, LC_SEGMENT_64):
        seg = segment(sl, lc)
        if seg.name in ("__TEXT", "__LINKEDIT"):
            found[seg.name] = (lc.offset, lc.cmd)
    return found


def needs_signature(sl: SliceHeader) -> bool:
    return (sl.cputype == CPU_TYPE_ARM64) or _signature_cmd(sl) is not None


def old_identity(data: bytes, sl: SliceHeader, where: str) -> tuple[str, bool] | None:
    """(identifier, linker_signed) of the slice's current signature, if it has one."""
    found = _signature_cmd(sl)
    if found is None:
        return None
    _, dataoff, datasize = found
    try:
        cd = parse_code_directory(data[dataoff : dataoff + datasize], where)
    except BinaryFormatError:
        log.warning("%s: existing signature unreadable; replacing it", where)
        return None
    return cd.identifier, bool(cd.flags & CS_LINKER_SIGNED)


def sign_slice(
    data: bytes,
    identifier: str | None = None,
    *,
    path: str = "<bytes>",
    linker_signed: bool | None = None,
) -> bytes:
    """Return the thin Mach-O `data` with a fresh ad-hoc signature.

    The identifier and the linker-signed flavour of an existing signature are kept
    unless given; without one the identifier is the file's base name.
    """
    sl = parse_slice_header(data, 0, len(data), path)
    where = f"{path!r} ({sl.arch})"
    old = old_identity(data, sl, where)
    ident = identifier or (old[0] if old else posixpath.basename(path))
    flavour = linker_signed if linker_signed is not None else (old[1] if old else True)
    buf, sl, code_limit = _prepare(bytearray(data), sl, where)
    exec_seg = _exec_seg(sl)
    # the size of the signature does not depend on the hashed content: write the
    # load commands first (they are inside the hashed pages), then hash
    size = signature_size(code_limit, ident, linker_signed=flavour)
    _set_sizes(buf, sl, code_limit, size)
    code = bytes(buf[:code_limit])
    return code + build_signature(code, ident, exec_seg, linker_signed=flavour)


def _exec_seg(sl: SliceHeader) -> tuple[int, int, int]:
    text = _segments(sl).get("__TEXT")
    base = limit = 0
    if text is not None:
        lc = next(c for c in sl.commands if c.offset == text[0])
        seg = segment(sl, lc)
        base, limit = seg.fileoff, seg.filesize
    return base, limit, CS_EXECSEG_MAIN_BINARY if sl.filetype == MH_EXECUTE else 0


def _linkedit(sl: SliceHeader, where: str) -> tuple[int, int, int, int]:
    """(command offset, fileoff, filesize, vmsize) of __LINKEDIT."""
    found = _segments(sl).get("__LINKEDIT")
    if found is None:
        raise RepairError(f"{where}: no __LINKEDIT segment to hold a code signature")
    lc = next(c for c in sl.commands if c.offset == found[0])
    seg = segment(sl, lc)
    return lc.offset, seg.fileoff, seg.filesize, seg.vmsize


def _prepare(buf: bytearray, sl: SliceHeader, where: str) -> tuple[bytearray, SliceHeader, int]:
    """Drop the old signature (or add LC_CODE_SIGNATURE); return the code limit."""
    _, fileoff, filesize, _ = _linkedit(sl, where)
    linkedit_end = fileoff + filesize
    found = _signature_cmd(sl)
    if found is not None:
        _, dataoff, datasize = found
        if dataoff + datasize != linkedit_end or linkedit_end != len(buf):
            raise RepairError(f"{where}: the code signature is not at the end of __LINKEDIT and of the file")
        return buf[:dataoff], sl, dataoff
    if linkedit_end != len(buf):
        raise RepairError(f"{where}: __LINKEDIT does not end the file; cannot append a signature")
    if sl.free_header_space() < 16:
        raise HeaderSpaceError(
            f"header too small in {where}: need 16 bytes for LC_CODE_SIGNATURE, have "
            f"{sl.free_header_space()}; relink with -headerpad_max_install_names"
        )
    code_limit = _align(len(buf), 16)
    struct.pack_into(sl.endian + "IIII", buf, sl.cmds_end, LC_CODE_SIGNATURE, 16, code_limit, 0)
    ncmds = len(sl.commands) + 1
    struct.pack_into(sl.endian + "II", buf, 16, ncmds, sl.sizeofcmds + 16)
    buf.extend(bytes(code_limit - len(buf)))
    new = parse_slice_header(bytes(buf), 0, len(buf), where)
    return buf, new, code_limit


def _set_sizes(buf: bytearray, sl: SliceHeader, code_limit: int, size: int) -> None:
    """Point LC_CODE_SIGNATURE at [code_limit, +size) and grow __LINKEDIT to cover it."""
    cmd_off, _, _ = _signature_cmd(sl) or (0, 0, 0)
    struct.pack_into(sl.endian + "II", buf, cmd_off + 8, code_limit, size)
    seg_off, fileoff, filesize, vmsize = _linkedit(sl, "")
    new_filesize = code_limit + size - fileoff
    page = 0x4000 if sl.cputype == CPU_TYPE_ARM64 else 0x1000
    new_vmsize = new_filesize if vmsize == filesize else max(vmsize, _align(new_filesize, page))
    if sl.is64:
        struct.pack_into(sl.endian + "Q", buf, seg_off + 32, new_vmsize)
        struct.pack_into(sl.endian + "Q", buf, seg_off + 48, new_filesize)
    else:
        struct.pack_into(sl.endian + "I", buf, seg_off + 28, new_vmsize)
        struct.pack_into(sl.endian + "I", buf, seg_off + 36, new_filesize)


# ---------------------------------------------------------------- whole files


def sign(data: bytes, path: str = "<bytes>", identifier: str | None = None) -> bytes:
    """Re-sign every slice that needs it (arm64, or already signed); thin or fat."""
    is_fat, headers = headers_of_bytes(data, path)
    new_slices = []
    for sl in headers:
        piece = data[sl.offset : sl.offset + sl.size]
        if needs_signature(sl):
            piece = sign_slice(piece, identifier, path=path)
        new_slices.append(piece)
    if not is_fat:
        return new_slices[0]
    return replace_slices(data, new_slices, path)


def sign_file(path: str, identifier: str | None = None) -> None:
    """Re-sign a file in place (written to a temporary file, then renamed)."""
    with open(path, "rb") as fp:
        data = fp.read()
    fsutil.write_atomic(path, sign(data, path, identifier), mode=None)  # keeps the file's permissions


def verify_signature(data: bytes, path: str = "<bytes>") -> list[str]:
    """Every problem with the signatures of a thin or fat file ([] = all valid).

    Recomputes every page hash; checks codeLimit == signature offset, that
    __LINKEDIT covers the signature, the requirements special slot, and that every
    arm64 slice is signed.
    """
    problems: list[str] = []
    try:
        _, headers = headers_of_bytes(data, path)
    except BinaryFormatError as exc:
        return [str(exc)]
    for sl in headers:
        where = f"{path!r} ({sl.arch})"
        piece = data[sl.offset : sl.offset + sl.size]
        try:
            problems.extend(_verify_slice(piece, sl, where))
        except (BinaryFormatError, RepairError, struct.error, ValueError) as exc:
            problems.append(f"{where}: {exc}")
    return problems


def _verify_slice(piece: bytes, sl: SliceHeader, where: str) -> list[str]:
    found = _signature_cmd(sl)
    if found is None:
        return [f"{where}: arm64 slice is not signed"] if sl.cputype == CPU_TYPE_ARM64 else []
    _, dataoff, datasize = found
    problems = []
    if dataoff + datasize > len(piece):
        return [f"{where}: signature {dataoff}+{datasize} runs past the slice ({len(piece)})"]
    _, fileoff, filesize, _ = _linkedit(sl, where)
    if not (fileoff <= dataoff and dataoff + datasize <= fileoff + filesize):
        problems.append(f"{where}: __LINKEDIT does not cover the signature")
    sig = piece[dataoff : dataoff + datasize]
    for cd in code_directories(sig, where):
        problems.extend(_check_cd(cd, piece, dataoff, where))
        problems.extend(_check_requirements(cd, sig, where))
    return problems


def code_directories(sig: bytes, where: str) -> list[CodeDirectory]:
    """Every CodeDirectory of an embedded-signature SuperBlob: slot 0 and the alternates (0x1000...)."""
    found = [parse_code_directory(sig, where)]
    _, _, count = struct.unpack_from(">III", sig)
    for i in range(count):
        slot, offset = struct.unpack_from(">II", sig, 12 + 8 * i)
        if CSSLOT_ALTERNATE_CODEDIRECTORIES <= slot < CSSLOT_ALTERNATE_CODEDIRECTORIES + 5:
            found.append(_decode_cd(sig, offset, where))
    return found


def _check_cd(cd: CodeDirectory, piece: bytes, dataoff: int, where: str) -> list[str]:
    problems = []
    if cd.code_limit != dataoff:
        problems.append(f"{where}: codeLimit {cd.code_limit} != signature offset {dataoff}")
    if cd.hash_type not in HASH_TYPES or cd.hash_size != HASH_TYPES[cd.hash_type][1]:
        return [*problems, f"{where}: unknown hash type {cd.hash_type} (size {cd.hash_size})"]
    expected = page_hashes(piece, cd.code_limit, 1 << cd.page_shift, cd.hash_type)
    if len(expected) != cd.n_code:
        problems.append(f"{where}: {cd.n_code} code slots for {len(expected)} pages")
    for i, (want, got) in enumerate(zip(expected, cd.code_hashes)):
        if want != got:
            problems.append(f"{where}: page {i} hash mismatch")
    return problems


def _check_requirements(cd: CodeDirectory, sig: bytes, where: str) -> list[str]:
    if cd.n_special < CSSLOT_REQUIREMENTS:
        return []
    _, _, count = struct.unpack_from(">III", sig)
    for i in range(count):
        slot, offset = struct.unpack_from(">II", sig, 12 + 8 * i)
        if slot == CSSLOT_REQUIREMENTS:
            (length,) = struct.unpack_from(">I", sig, offset + 4)
            blob = sig[offset : offset + length]
            algorithm, size = HASH_TYPES.get(cd.hash_type, ("sha256", HASH_SIZE))
            if hashlib.new(algorithm, blob).digest()[:size] != cd.special_hashes[CSSLOT_REQUIREMENTS - 1]:
                return [f"{where}: requirements hash (special slot -2) mismatch"]
            return []
    if any(cd.special_hashes[CSSLOT_REQUIREMENTS - 1]):
        return [f"{where}: special slot -2 set but no requirements blob"]
    return []


def identifiers(data: bytes, path: str = "<bytes>") -> Sequence[str | None]:
    """The signing identifier of every slice (None when unsigned)."""
    _, headers = headers_of_bytes(data, path)
    out: list[str | None] = []
    for sl in headers:
        old = old_identity(data[sl.offset : sl.offset + sl.size], sl, path)
        out.append(old[0] if old else None)
    return out
