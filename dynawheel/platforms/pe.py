"""PE (Windows DLL / .pyd / .exe) backend: reader and the loader's search rules.

Reading
-------
The DOS, COFF and optional headers and the section table are read here with a few
struct reads (:func:`read_headers`; pefile's header objects cost ~2 ms per file and its
import ~5 ms, the most of ``show`` on a small wheel: pefile is imported only to edit).
The three directories we need are then walked here, directly: the import and
delay-import descriptor tables (only the DLL names: pefile's own directory parsers also
decode every imported symbol, thousands for a large DLL) and the export name table
(pefile stops at 8192 exports).  The load-config ``DependentLoadFlags`` field is one read.

How CPython >= 3.8 loads an extension on Windows (facts this module encodes)
-------------------------------------------------------------------------------
The import system calls ``LoadLibraryExW(path, NULL, LOAD_LIBRARY_SEARCH_DEFAULT_DIRS |
LOAD_LIBRARY_SEARCH_DLL_LOAD_DIR)``.  For every import of the extension and, recursively,
of the DLLs it pulls in, the loader decides:

=====  ==========================================================  ==========================
step   where / what                                                SearchPaths field
=====  ==========================================================  ==========================
0      API set name (``api-ms-win-*``, ``ext-ms-*``): mapped by    (is_system)
       the OS, never a file
0      a module already loaded under the same base name (case-     (loaded_key)
       insensitive) satisfies the request; so do KnownDLLs
1      the directory of the DLL passed to LoadLibraryExW, i.e.     chain[0]
       the extension, also for its indirect dependencies (wine
       8: liba.dll in dir B importing libc.dll takes A's copy)
2      the application directory (python.exe's: python3X.dll,     (is_system: provided by
       vcruntime140*.dll)                                          the interpreter)
-      our ``-L`` directories (not a Windows notion; they stand    extra
       for "where the DLL will be at run time")
3      directories added with ``os.add_dll_directory``             dll_directories
       (AddDllDirectory; order among them unspecified)
4      System32                                                    system32 (use_system)
-      NOT searched: PATH, the current directory, the directory
       of the intermediate DLL.  PATH is only tried on explicit    windows_path (flagged
       opt-in: Python <= 3.7 searched it                           "loads on Python <= 3.7")
=====  ==========================================================  ==========================

* A candidate of another machine type is skipped and the search goes on (wine 8 skips an
  i686 ``libc.dll`` earlier on the path); the resolver compares format and arch.
* Names are case-insensitive; the key of a loaded module is its lower-cased base name.
* Delay-load imports are resolved at the first call by the delay helper the DLL links
  (MSVC's ``__delayLoadHelper2`` calls ``LoadLibraryExA(name, NULL, 0)``): the process
  default search order (application dir, System32, Windows dir, cwd, PATH), which has
  neither the extension's directory nor the ``os.add_dll_directory`` directories, unless the
  module is already loaded (CPython passes its flags per LoadLibraryExW call; it does not
  change the process default with SetDefaultDllDirectories; wine 8 agrees).  A missing
  delay-loaded DLL fails at that first call (exception 0xC06D007E), not at import.
  Such hits carry :data:`DELAY_FLAG`.
"""

from __future__ import annotations

import functools
import io
import json
import mmap
import os
import posixpath
import re
import struct
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO, NamedTuple, Union

from ..binary import BinaryFile, BinaryFormat, Dependency, DepKind, FileKind, Image, PeFacts
from ..errors import BinaryFormatError
from ..log import get_logger
from ..search import SearchPaths
from . import PATH_FLAG, Candidate, LinuxSystem, Loaded

log = get_logger(__name__)

DELAY_FLAG = "delay-load: found at first call only if already loaded (the delay helper uses the default search order)"

MACHINES = {0x8664: "x86_64", 0x14C: "i686", 0xAA64: "arm64", 0x1C4: "armv7l"}
IMAGE_FILE_EXECUTABLE_IMAGE = 0x0002
IMAGE_FILE_DLL = 0x2000
DIR_EXPORT, DIR_IMPORT, DIR_LOAD_CONFIG, DIR_DELAY_IMPORT = 0, 1, 10, 13
IMPORT_DESCRIPTOR = struct.Struct("<5I")  # OriginalFirstThunk, TimeDateStamp, ForwarderChain, Name, FirstThunk
DELAY_DESCRIPTOR = struct.Struct("<8I")  # Attributes, DllNameRVA, ModuleHandleRVA, IAT, INT, Bound, Unload, Time
EXPORT_DIRECTORY = struct.Struct("<2I2H7I")
MAX_DESCRIPTORS = 65536
MAX_NAME = 4096
MAX_EXPORTS = 1 << 20
MAX_IMPORTED = 1 << 20  # entries of one import lookup table

Data = Union[bytes, mmap.mmap]


# The reader's own records are NamedTuples (frozen, typed; performance: no dataclass to create at
# import, `show` of a small wheel being start-up bound); the model it returns is binary.py's.
class NameSlot(NamedTuple):
    """A DLL name referenced from an import table: where it is, what it says."""

    kind: DepKind
    name: str
    offset: int  # file offset of the NUL-terminated name
    descriptor: int  # file offset of the import / delay-import descriptor
    pointer: int  # file offset of the descriptor's name-RVA field


class Section(NamedTuple):
    """One section header: where its bytes are in memory (RVA) and in the file."""

    virtual_address: int
    virtual_size: int
    raw_size: int
    raw_pointer: int


class Headers(NamedTuple):
    """What the readers need from the COFF and optional headers (PE format specification)."""

    machine: int
    characteristics: int
    pe32plus: bool
    subsystem: int
    size_of_headers: int
    directories: tuple[tuple[int, int], ...]  # (rva, size), at most 16
    sections: tuple[Section, ...]


DOS_HEADER_SIZE = 64
# Machine, NumberOfSections, TimeDateStamp, PointerToSymbolTable, NumberOfSymbols, SizeOfOptionalHeader,
# Characteristics
COFF_HEADER = struct.Struct("<2H3I2H")
SECTION_HEADER_SIZE = 40
SECTION_FIELDS = struct.Struct("<8x4I")  # Name; VirtualSize, VirtualAddress, SizeOfRawData, PointerToRawData
OPTIONAL_MAGIC = {0x10B: False, 0x20B: True}  # PE32, PE32+
MAX_DIRECTORIES = 16
# the IMAGE_SUBSYSTEM_* names of the Subsystem field (PE format specification)
SUBSYSTEMS = {0: "UNKNOWN", 1: "NATIVE", 2: "WINDOWS_GUI", 3: "WINDOWS_CUI", 5: "OS2_CUI", 7: "POSIX_CUI",
              8: "NATIVE_WINDOWS", 9: "WINDOWS_CE_GUI", 10: "EFI_APPLICATION", 11: "EFI_BOOT_SERVICE_DRIVER",
              12: "EFI_RUNTIME_DRIVER", 13: "EFI_ROM", 14: "XBOX", 16: "WINDOWS_BOOT_APPLICATION"}


def read_headers(data: Data) -> Headers:
    """The headers of a PE file, read directly (a few struct reads: no directory is parsed).
    Raises ValueError saying what is wrong."""
    size = len(data)
    if size < DOS_HEADER_SIZE:
        raise ValueError(f"truncated DOS header: {size} of {DOS_HEADER_SIZE} bytes")
    if data[:2] != b"MZ":
        raise ValueError(f"no 'MZ' signature: {bytes(data[:2])!r}")
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    if lfanew + 4 + COFF_HEADER.size > size:
        raise ValueError(f"e_lfanew {lfanew:#x} points past the end of the file ({size} bytes)")
    if data[lfanew : lfanew + 4] != b"PE\0\0":
        raise ValueError(f"no PE signature at e_lfanew {lfanew:#x}: {bytes(data[lfanew:lfanew + 4])!r}")
    machine, nsections, _, _, _, optional_size, characteristics = COFF_HEADER.unpack_from(data, lfanew + 4)
    optional = lfanew + 4 + COFF_HEADER.size
    magic = struct.unpack_from("<H", data, optional)[0] if optional + 2 <= size else None
    if magic not in OPTIONAL_MAGIC:
        raise ValueError(f"no optional header at {optional:#x} (magic {magic!r}): not an image file")
    plus = OPTIONAL_MAGIC[magic]
    fixed = 112 if plus else 96  # the fields before the data directories
    if optional + fixed > size:
        raise ValueError(f"optional header truncated: {size - optional} of {fixed} bytes at {optional:#x}")
    (size_of_headers,) = struct.unpack_from("<I", data, optional + 60)
    (subsystem,) = struct.unpack_from("<H", data, optional + 68)
    (count,) = struct.unpack_from("<I", data, optional + fixed - 4)
    count = min(count, MAX_DIRECTORIES)
    if optional + fixed + 8 * count > size:
        raise ValueError(f"data directories truncated: {count} at {optional + fixed:#x}, file of {size} bytes")
    flat = struct.unpack_from(f"<{2 * count}I", data, optional + fixed)
    table = optional + optional_size
    if table + SECTION_HEADER_SIZE * nsections > size:
        raise ValueError(f"section table truncated: {nsections} sections at {table:#x}, file of {size} bytes")
    sections = []
    for n in range(nsections):
        virtual_size, virtual_address, raw_size, raw_pointer = SECTION_FIELDS.unpack_from(
            data, table + SECTION_HEADER_SIZE * n)
        sections.append(Section(virtual_address, virtual_size, raw_size, raw_pointer))
    return Headers(machine, characteristics, plus, subsystem, size_of_headers,
                   tuple(zip(flat[::2], flat[1::2])), tuple(sections))


class PEView:
    """The headers of one PE file plus bounds-checked RVA reads; every failure names the file.
    ``pe`` (pefile's full header objects, for editing) is made on first use only."""

    def __init__(self, data: Data, path: str) -> None:
        self.data = data
        self.path = path
        try:
            self.headers = read_headers(data)
        except ValueError as exc:
            raise self.error(f"invalid PE headers ({exc})") from None
        # (first RVA, end RVA in memory, bytes in the file, file offset) of each section: performance, _map runs
        # once per exported name (11k for numpy's OpenBLAS DLL)
        self._spans = [(s.virtual_address, s.virtual_address + max(s.virtual_size, s.raw_size), s.raw_size,
                        s.raw_pointer) for s in self.headers.sections]

    @functools.cached_property
    def pe(self) -> Any:
        import pefile

        try:
            return pefile.PE(data=self.data, fast_load=True)
        except pefile.PEFormatError as exc:
            raise self.error(f"invalid PE headers ({exc.value})") from None
        except (struct.error, IndexError, ValueError) as exc:  # pefile on very short input
            raise self.error(f"invalid PE headers ({exc})") from None

    def error(self, what: str) -> BinaryFormatError:
        return BinaryFormatError(f"{self.path!r}: {what}")

    @property
    def pe32plus(self) -> bool:
        return self.headers.pe32plus

    def directory(self, index: int) -> tuple[int, int]:
        """(rva, size) of data directory `index`, (0, 0) when absent."""
        dirs = self.headers.directories
        return dirs[index] if index < len(dirs) else (0, 0)

    def offset(self, rva: int, length: int, what: str) -> int:
        """File offset of `length` bytes at `rva`, which must lie in the file."""
        offset = self._map(rva)
        if offset is None or offset + length > len(self.data):
            raise self.error(f"{what} at RVA {rva:#x} lies outside the file ({len(self.data)} bytes)")
        return offset

    def _map(self, rva: int) -> int | None:
        if rva < self.headers.size_of_headers:
            return rva
        for start, end, raw_size, raw_pointer in self._spans:
            if start <= rva < end:
                if rva - start >= raw_size:
                    return None  # zero-filled memory, not in the file
                return rva - start + raw_pointer
        return None

    def read(self, rva: int, length: int, what: str) -> bytes:
        offset = self.offset(rva, length, what)
        return bytes(self.data[offset : offset + length])

    def string(self, rva: int, what: str) -> tuple[str, int]:
        """(text, file offset) of the NUL-terminated ASCII string at `rva`."""
        offset = self.offset(rva, 1, what)
        end = self.data.find(b"\0", offset, offset + MAX_NAME)
        if end < 0:
            raise self.error(f"{what} at RVA {rva:#x} is not NUL-terminated")
        raw = bytes(self.data[offset:end])
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise self.error(f"{what} at RVA {rva:#x} is not ASCII: {raw!r}") from None
        return text, offset

    def strings(self, rvas: Sequence[int], what: str) -> list[str]:
        """The NUL-terminated ASCII strings at `rvas`, each exactly as :meth:`string` reads it (and its
        errors).  Performance: when they all lie in the file part of one section (a DLL's export names:
        695 Wine DLLs, 86k names), they are sliced from one decode of that stretch, not mapped one by one."""
        if not rvas:
            return []
        low, high = min(rvas), max(rvas)
        span = self._span_of(low, high)
        if span is None:
            return [self.string(rva, what)[0] for rva in rvas]
        shift = span[3] - span[0]
        text = bytes(self.data[low + shift : high + shift + MAX_NAME]).decode("latin-1")  # one char per byte
        out = []
        for rva in rvas:
            at = rva - low
            end = text.find("\0", at, at + MAX_NAME)
            name = text[at:end]
            out.append(name if end >= 0 and name.isascii() else self.string(rva, what)[0])  # else: its error
        return out

    def _span_of(self, low: int, high: int) -> tuple[int, int, int, int] | None:
        """The section whose file part holds every RVA from `low` to `high` as :meth:`_map` maps them (the
        first section holding `low`, and no section before it holding any of them); None: no such one."""
        if low < self.headers.size_of_headers:
            return None
        for span in self._spans:
            start, end, raw_size, _raw_pointer = span
            if start <= low < end:
                return span if high - start < raw_size else None
            if start <= high and end > low:
                return None
        return None


def import_slots(view: PEView) -> list[NameSlot]:
    """Every DLL name of the import and delay-import tables, in table order."""
    slots = _walk(view, DIR_IMPORT, IMPORT_DESCRIPTOR, 3, DepKind.NEEDED, "import")
    slots += _walk(view, DIR_DELAY_IMPORT, DELAY_DESCRIPTOR, 1, DepKind.DELAY, "delay-import")
    return slots


def _walk(view: PEView, index: int, layout: struct.Struct, name_field: int, kind: DepKind, what: str) -> list[NameSlot]:
    rva, size = view.directory(index)
    slots: list[NameSlot] = []
    if rva == 0 or size == 0:
        return slots
    for n in range(MAX_DESCRIPTORS):
        at = view.offset(rva + n * layout.size, layout.size, f"{what} descriptor {n}")
        fields = layout.unpack_from(view.data, at)
        if not any(fields):
            return slots
        name_rva = fields[name_field]
        if kind is DepKind.DELAY and not fields[0] & 1:
            raise view.error(f"{what} descriptor {n} uses virtual addresses, not RVAs (VC6 format)")
        name, offset = view.string(name_rva, f"{what} DLL name {n}")
        slots.append(NameSlot(kind, name, offset, at, at + 4 * name_field))
    raise view.error(f"{what} directory has more than {MAX_DESCRIPTORS} descriptors")


def imported_names(view: PEView, slot: NameSlot) -> list[str]:
    """The symbols an import descriptor (``slot`` of the import table) imports by name, in table order;
    imports by ordinal have no name and are left out.  The import lookup table is read, or, when a
    linker left it out (OriginalFirstThunk 0), the import address table, which holds the same
    entries until the file is bound (PE format specification, "Import Lookup Table")."""
    lookup, _, _, _, address = IMPORT_DESCRIPTOR.unpack_from(view.data, slot.descriptor)
    table = lookup or address
    width, by_ordinal = (8, 1 << 63) if view.pe32plus else (4, 1 << 31)
    entry_format = "<Q" if view.pe32plus else "<I"
    names: list[str] = []
    for n in range(MAX_IMPORTED):
        at = view.offset(table + n * width, width, f"import lookup entry {n} of {slot.name}")
        (entry,) = struct.unpack_from(entry_format, view.data, at)
        if entry == 0:
            return names
        if not entry & by_ordinal:  # a Hint/Name entry: 2 bytes of hint, then the name
            names.append(view.string((entry & 0x7FFFFFFF) + 2, f"name imported from {slot.name}")[0])
    raise view.error(f"the import lookup table of {slot.name} has more than {MAX_IMPORTED} entries")


def read_exports(view: PEView) -> tuple[str | None, list[str]]:
    """(DLL name of the export directory, exported names in table order)."""
    rva, size = view.directory(DIR_EXPORT)
    if rva == 0 or size == 0:
        return None, []
    fields = EXPORT_DIRECTORY.unpack(view.read(rva, EXPORT_DIRECTORY.size, "export directory"))
    name_rva, count, names_rva = fields[4], fields[7], fields[9]
    dll_name = view.string(name_rva, "export DLL name")[0] if name_rva else None
    if count > MAX_EXPORTS:
        raise view.error(f"export directory claims {count} names")
    table = view.read(names_rva, 4 * count, "export name table") if count else b""
    names = view.strings([r for (r,) in struct.iter_unpack("<I", table)], "export name")
    return dll_name, names


def dependent_load_flags(view: PEView) -> int | None:
    """IMAGE_LOAD_CONFIG_DIRECTORY.DependentLoadFlags, None without a load config that has it."""
    rva, size = view.directory(DIR_LOAD_CONFIG)
    field = 78 if view.pe32plus else 54
    if rva == 0 or size < field + 2:
        return None
    head = view.read(rva, field + 2, "load config directory")
    declared = struct.unpack_from("<I", head)[0]
    return int(struct.unpack_from("<H", head, field)[0]) if declared >= field + 2 else None


def _file_kind(characteristics: int) -> FileKind:
    if characteristics & IMAGE_FILE_DLL:
        return FileKind.SHARED
    if characteristics & IMAGE_FILE_EXECUTABLE_IMAGE:
        return FileKind.EXECUTABLE
    return FileKind.OTHER


def _facts(view: PEView, exports: list[str]) -> PeFacts:
    subsystem = view.headers.subsystem
    return PeFacts(
        machine=view.headers.machine, pe32plus=view.pe32plus,
        subsystem=f"IMAGE_SUBSYSTEM_{SUBSYSTEMS[subsystem]}" if subsystem in SUBSYSTEMS else subsystem,
        exports=tuple(exports), python_extension=any(name.startswith("PyInit_") for name in exports),
        dependent_load_flags=dependent_load_flags(view),
    )


def read_image(data: Data, path: str) -> Image:
    """The Image of one PE file held in `data` (bytes or mmap)."""
    view = PEView(data, path)
    machine = view.headers.machine
    soname, exports = read_exports(view)
    needed = tuple(Dependency(slot.name, slot.kind) for slot in import_slots(view))
    return Image(
        format=BinaryFormat.PE,
        arch=MACHINES.get(machine, f"pe-machine-{machine:#06x}"),
        kind=_file_kind(view.headers.characteristics),
        needed=needed,
        soname=soname,
        facts=_facts(view, exports),
    )


# ---- system DLLs -------------------------------------------------------------------------

API_SET_PREFIXES = ("api-ms-win-", "ext-ms-")
# Provided by the Python installation next to python.exe (the application directory is searched),
# so for our purposes as good as system: python3.dll / python3XY[t].dll (and their _d debug builds)
# and the part of the Visual C++ runtime that CPython ships: vcruntime140.dll everywhere,
# vcruntime140_1.dll on x64 and arm64 (there is no x86 build of it); the debug runtime of debug builds.
INTERPRETER_PROVIDED = re.compile(r"^(python3\d*t?(_d)?|vcruntime140d?|ucrtbased)\.dll$")
INTERPRETER_PROVIDED_64 = re.compile(r"^vcruntime140_1d?\.dll$")
# The rest of the Visual C++ Redistributable is neither part of Windows nor of CPython: a clean
# Windows has no msvcp140.dll, so a wheel that needs it must ship it (delvewheel vendors it too).
# Never system; named in the messages about it.
VC_REDIST = re.compile(
    r"^(msvcp\d+(_(?!win\.)\w+)?|msvcr\d+(_\w+)?|vcruntime\d+(_\d+)?|concrt\d+|vccorlib\d+|vcamp\d+|vcomp\d*|"
    r"mfcm?\d+\w*|atl\d+)d?\.dll$"
)
VC_REDIST_NOTE = ("Visual C++ runtime: not part of Windows nor of CPython, the wheel must ship it "
                  "(repair with -L DIR holding the Visual C++ Redistributable's copy)")
# data/windows-system-dlls.json keys, by Image.arch
SYSTEM_ARCH = {"x86_64": "x64", "i686": "x86", "arm64": "arm64"}


@functools.lru_cache(maxsize=1)
def _system_lists() -> dict[str, list[str]]:
    name = "windows-system-dlls.json"
    try:  # performance: beside the package, without importlib.resources (~2.5 ms to import)
        with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", name), encoding="utf-8") as fp:
            text = fp.read()
    except OSError:  # not installed as files
        from importlib import resources

        text = resources.files("dynawheel").joinpath(f"data/{name}").read_text("utf-8")
    doc = json.loads(text)
    if doc.get("version") != 2:
        raise ValueError(f"windows-system-dlls.json: unsupported version {doc.get('version')!r}")
    lists: dict[str, list[str]] = doc["dlls"]
    return lists


@functools.cache
def _system_set(key: str) -> frozenset[str]:
    """The lower-cased names of one list (performance: only the lists asked for become sets)."""
    return frozenset(map(str.lower, _system_lists()[key]))


@functools.cache
def system_dlls(arch: str = "x86_64") -> frozenset[str]:
    """Lower-cased names of the DLLs a clean Windows 10/11 of `arch` (an ``Image.arch``) has in
    System32 (SysWOW64 for i686), from ``data/windows-system-dlls.json`` (versioned, with its
    provenance; ``scripts/gen_windows_dlls.py`` regenerates it).  An arch without a list (armv7l)
    gets the names every list has."""
    key = SYSTEM_ARCH.get(arch)
    if key is not None:
        return _system_set(key)
    return frozenset.intersection(*map(_system_set, _system_lists()))


def is_vc_redist(name: str) -> bool:
    """A Visual C++ Redistributable DLL that neither Windows nor CPython provides (msvcp140.dll...)."""
    key = PEBackend.loaded_key(name)
    return bool(VC_REDIST.match(key)) and not is_system_name(key)


def is_system_name(name: str, arch: str = "x86_64") -> bool:
    """Whether a clean Windows 10/11 of `arch` with a CPython installed provides `name`."""
    key = PEBackend.loaded_key(name)
    if key.startswith(API_SET_PREFIXES) or key in system_dlls(arch) or INTERPRETER_PROVIDED.match(key):
        return True
    return arch != "i686" and bool(INTERPRETER_PROVIDED_64.match(key))


# ---- the backend -------------------------------------------------------------------------


SPOOL_ABOVE = 16 << 20  # bytes of a stream (a big zip member) from which it is spooled to a file and mapped


def _map_file(fp: BinaryIO) -> Data:
    """The whole file: mapped read-only when it is a real file; an in-memory buffer as it is; any
    other stream (a big wheel member, inflated as it is read) copied in chunks to a temporary file
    and mapped, so a 1 GiB member never becomes 1 GiB (and copies of it) in memory."""
    try:
        fileno = fp.fileno()
    except (AttributeError, OSError, ValueError):
        fileno = -1
    if fileno >= 0:
        try:
            return mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            pass  # empty file or not mappable
    fp.seek(0)
    if isinstance(fp, io.BytesIO):
        return fp.getvalue()
    head = fp.read(SPOOL_ABOVE)
    if len(head) < SPOOL_ABOVE:
        return head
    import shutil  # performance: only a big member is spooled (not for `show` on a small wheel)
    import tempfile

    with tempfile.TemporaryFile(prefix="dynawheel-pe-") as spool:
        spool.write(head)
        del head
        shutil.copyfileobj(fp, spool, 1 << 20)
        spool.flush()
        return mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ)  # stays valid after the file is closed


def _spelled(directory: str, name: str) -> str:
    """Path of `name` in `directory`, with the on-disk spelling when it differs only in case."""
    exact = posixpath.join(directory, name)
    if os.path.exists(exact) or not os.path.isdir(directory):
        return exact
    key = name.lower()
    try:
        matches = sorted(entry for entry in os.listdir(directory) if entry.lower() == key)
    except OSError:
        return exact
    return posixpath.join(directory, matches[0]) if matches else exact


class PEBackend:
    format = BinaryFormat.PE
    case_insensitive = True  # Windows finds 'LIBA.DLL' for an import of 'liba.dll', in a wheel too
    match_soname = False  # the key of a loaded DLL is its base name, never its export-directory name
    needs_policy = False
    stops_at_bad_file = False  # the loader skips a file of another machine type and searches on

    def with_policy(self, linux: LinuxSystem) -> PEBackend:
        return self  # its system DLLs are Windows' own data (data/windows-system-dlls.json), not policy

    def sniff(self, head: bytes) -> bool:
        return head[:2] == b"MZ"

    def parse(self, fp: BinaryIO, path: str) -> BinaryFile:
        data = _map_file(fp)
        try:
            image = read_image(data, path)
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
        log.debug("%s: %s %s, %d imports", path, image.arch, image.kind.value, len(image.needed))
        return BinaryFile(path=path, format=BinaryFormat.PE, images=(image,))

    def is_system(self, request: Dependency, loader: Image, search: SearchPaths) -> bool:
        return is_system_name(request.name, loader.arch)

    def candidates(self, request: Dependency, chain: Sequence[Loaded], search: SearchPaths) -> Iterator[Candidate]:
        name = request.name.replace("\\", "/").rsplit("/", 1)[-1]
        delay = request.kind is DepKind.DELAY
        local_flag = DELAY_FLAG if delay else None
        if chain:
            root = chain[0].path
            yield Candidate(_spelled(posixpath.dirname(root), name), f"directory of {root}", local_flag)
        for directory in search.extra:
            yield Candidate(_spelled(directory, name), "extra search path", local_flag)
        for directory in search.dll_directories:
            yield Candidate(_spelled(directory, name), "os.add_dll_directory", local_flag)
        if search.use_system:
            for directory in search.system32:
                yield Candidate(_spelled(directory, name), "System32")
        for directory in search.windows_path:
            # The delay helper's default search order does include PATH.
            yield Candidate(_spelled(directory, name), "PATH (opt-in)", None if delay else PATH_FLAG)

    @staticmethod
    @functools.lru_cache(maxsize=4096)  # performance: asked per request and per load (51k for Wine's 695 DLLs)
    def loaded_key(name: str) -> str:
        return name.replace("\\", "/").rsplit("/", 1)[-1].lower()  # the file name (no regex to compile at start-up)

    @staticmethod
    def lookup_key(request: Dependency, chain: Sequence[Loaded], search: SearchPaths) -> None:
        return None  # the first place searched is named after the walk's root: nothing to share between walks

    @staticmethod
    def missing_note(name: str) -> str | None:
        return VC_REDIST_NOTE if is_vc_redist(name) else None

    @staticmethod
    def refusal(image: Image, chain: Sequence[Loaded], search: SearchPaths) -> str | None:
        return None  # a DLL of the right machine type loads


BACKEND = PEBackend()
