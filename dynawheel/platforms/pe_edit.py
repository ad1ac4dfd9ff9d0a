"""In-process PE rewriting for repair: rename the DLLs a PE file imports.

:func:`rename_imports` rewrites the DLL names of the import and delay-import tables.

* A new name that is not longer than the old one is written over it in place (NUL-padded):
  the file keeps its size and layout.
* Longer names (the usual case: mangled names carry a hash) go into one new section,
  ``.dwnames`` (initialised, read-only data), appended at the end of the file; the
  descriptors' name RVAs are pointed at it.  Nothing else moves, so no RVA or file offset
  elsewhere in the file changes.  This needs 40 free (zero) bytes after the section table
  inside ``SizeOfHeaders``; linkers leave hundreds.  When they are not there the edit stops
  with :class:`~dynawheel.errors.RepairError` and nothing is returned: growing the headers
  would move every section's raw data (and the debug directory's file offsets with them).

Also, whenever a file is changed: an Authenticode signature (the certificate table) no
longer matches, so it is removed (the file is truncated when it ends the file); the
obsolete bound-import directory, which repeats DLL names, is cleared and the renamed
descriptors' bind timestamps reset; a non-zero header CheckSum is recomputed.  The result
is re-read and checked before it is returned.
"""

from __future__ import annotations

import array
import logging
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..binary import BinaryFormat
from ..errors import BinaryFormatError, RepairError
from .edits import EditJob
from .pe import NameSlot, PEView, import_slots
from .pe_edits import PeEdits

log = logging.getLogger(__name__)

SECTION_NAME = b".dwnames"
SECTION_HEADER = struct.Struct("<8s6I2HI")
SCN_INITIALIZED_READ = 0x40000040  # IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
DIR_SECURITY, DIR_BOUND_IMPORT = 4, 11


def _align(value: int, alignment: int) -> int:
    return (value + alignment - 1) // alignment * alignment if alignment else value


def _checked_mapping(mapping: Mapping[str, str]) -> dict[str, bytes]:
    """Lower-cased old name -> new name as ASCII bytes; rejects names the loader cannot use."""
    checked: dict[str, bytes] = {}
    for old, new in mapping.items():
        bad = not new or any(c in new for c in '\\/:*?"<>|\0') or not new.isascii() or len(new) > 255
        if bad:
            raise RepairError(f"invalid DLL name {new!r} to replace {old!r}")
        checked[old.lower()] = new.encode("ascii")
    return checked


def _data_dir_offset(view: PEView, index: int) -> int:
    directory = view.pe.OPTIONAL_HEADER.DATA_DIRECTORY[index]
    return int(directory.get_file_offset())


def _drop_signature(view: PEView, out: bytearray) -> None:
    rva, size = view.directory(DIR_SECURITY)
    if not size:
        return
    log.warning("%s: removing its Authenticode signature, which the edit invalidates", view.path)
    struct.pack_into("<II", out, _data_dir_offset(view, DIR_SECURITY), 0, 0)
    if rva + size >= len(out) and rva <= len(out):
        del out[rva:]  # the certificate table is not mapped: it only ever ends the file


def _clear_binding(view: PEView, out: bytearray, slots: Sequence[NameSlot]) -> None:
    if view.directory(DIR_BOUND_IMPORT)[1]:
        struct.pack_into("<II", out, _data_dir_offset(view, DIR_BOUND_IMPORT), 0, 0)
    for slot in slots:
        if slot.pointer == slot.descriptor + 12:  # an import descriptor: its TimeDateStamp
            struct.pack_into("<I", out, slot.descriptor + 4, 0)


def _section_table_end(view: PEView) -> int:
    pe = view.pe
    start = int(pe.OPTIONAL_HEADER.get_file_offset()) + int(pe.FILE_HEADER.SizeOfOptionalHeader)
    return start + 40 * int(pe.FILE_HEADER.NumberOfSections)


def _append_section(view: PEView, out: bytearray, long_names: Sequence[tuple[NameSlot, bytes]]) -> None:
    """Put the names in a new section and point the descriptors at it."""
    pe, opt = view.pe, view.pe.OPTIONAL_HEADER
    table_end = _section_table_end(view)
    if table_end + 40 > int(opt.SizeOfHeaders) or any(out[table_end : table_end + 40]):
        raise RepairError(
            f"{view.path!r}: no room for another section header (SizeOfHeaders {int(opt.SizeOfHeaders):#x}); "
            "cannot store the longer DLL names: use names no longer than the originals or --no-mangle"
        )
    blob = bytearray()
    where: dict[bytes, int] = {}
    for _, new in long_names:
        if new not in where:
            where[new] = len(blob)
            blob += new + b"\0" + b"\0" * ((len(new) + 1) % 2)
    ends = [int(s.VirtualAddress) + max(int(s.Misc_VirtualSize), int(s.SizeOfRawData)) for s in pe.sections]
    va = _align(max(ends, default=int(opt.SizeOfHeaders)), int(opt.SectionAlignment))
    raw = _align(len(out), int(opt.FileAlignment))
    raw_size = _align(len(blob), int(opt.FileAlignment))
    out.extend(b"\0" * (raw - len(out)) + bytes(blob) + b"\0" * (raw_size - len(blob)))
    out[table_end : table_end + 40] = SECTION_HEADER.pack(
        SECTION_NAME, len(blob), va, raw_size, raw, 0, 0, 0, 0, SCN_INITIALIZED_READ
    )
    header, optional = pe.FILE_HEADER, opt
    struct.pack_into("<H", out, header.get_field_absolute_offset("NumberOfSections"), len(pe.sections) + 1)
    size_of_image = _align(va + len(blob), int(opt.SectionAlignment))
    struct.pack_into("<I", out, optional.get_field_absolute_offset("SizeOfImage"), size_of_image)
    initialized = int(opt.SizeOfInitializedData) + raw_size
    struct.pack_into("<I", out, optional.get_field_absolute_offset("SizeOfInitializedData"), initialized)
    for slot, new in long_names:
        struct.pack_into("<I", out, slot.pointer, va + where[new])


def pe_checksum(data: bytes | bytearray, checksum_offset: int) -> int:
    """The PE header CheckSum of `data`: the 16-bit end-around-carry sum of the file (with the
    CheckSum field taken as zero) plus the file length."""
    even = len(data) - len(data) % 2
    words = array.array("H")
    words.frombytes(bytes(data[:checksum_offset]) + b"\0\0\0\0" + bytes(data[checksum_offset + 4 : even]))
    if even < len(data):
        words.append(data[-1])
    if sys.byteorder == "big":
        words.byteswap()
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (total + len(data)) & 0xFFFFFFFF


def _update_checksum(view: PEView, out: bytearray) -> None:
    if not int(view.pe.OPTIONAL_HEADER.CheckSum):
        return
    offset = view.pe.OPTIONAL_HEADER.get_field_absolute_offset("CheckSum")
    struct.pack_into("<I", out, offset, pe_checksum(out, offset))


def _verify(out: bytes, path: str, expected: list[str]) -> None:
    try:
        names = [slot.name for slot in import_slots(PEView(out, path))]
    except BinaryFormatError as exc:
        raise RepairError(f"{path!r}: rewritten file does not parse: {exc}") from None
    if names != expected:
        raise RepairError(f"{path!r}: rewritten imports are {names!r}, expected {expected!r}")


def rename_imports(data: bytes, mapping: Mapping[str, str], path: str = "<memory>") -> bytes:
    """`data` (a PE file) with every import / delay-import of a DLL named in `mapping`
    (case-insensitive keys) renamed to its value.  Returns `data` unchanged when nothing
    matches.  Raises BinaryFormatError for a file that does not parse, RepairError when the
    edit cannot be made; `path` only names the file in messages."""
    wanted = _checked_mapping(mapping)
    view = PEView(data, path)
    slots = import_slots(view)
    hits = [slot for slot in slots if slot.name.lower() in wanted]
    if not hits:
        return bytes(data)
    out = bytearray(data)
    long_names: list[tuple[NameSlot, bytes]] = []
    for slot in hits:
        new = wanted[slot.name.lower()]
        if len(new) <= len(slot.name):
            out[slot.offset : slot.offset + len(slot.name)] = new.ljust(len(slot.name), b"\0")
        else:
            long_names.append((slot, new))
    _drop_signature(view, out)
    _clear_binding(view, out, hits)
    if long_names:
        _append_section(view, out, long_names)
    _update_checksum(view, out)
    expected = [wanted[s.name.lower()].decode("ascii") if s.name.lower() in wanted else s.name for s in slots]
    _verify(bytes(out), path, expected)
    log.debug("%s: renamed %d import(s), %d in a new section", path, len(hits), len(long_names))
    return bytes(out)


class PeEditor:
    """The PE editor of platforms.Editor: imported DLLs renamed in place, one file at a time."""

    format = BinaryFormat.PE
    writes_from_source = False

    def prepare(self) -> None:
        pass

    def apply(self, jobs: Sequence[EditJob], done: Callable[[Path], None] | None = None) -> None:
        for job in jobs:
            if isinstance(job.edits, PeEdits) and job.edits.rename_imports:
                job.path.write_bytes(rename_imports(job.path.read_bytes(), dict(job.edits.rename_imports), job.label))
            if done is not None:
                done(job.path)


def make_editor(*, in_process: bool = True) -> PeEditor:
    del in_process  # always in process
    return PeEditor()
