"""rename_imports on the real PE fixtures, checked by re-reading with our reader and with a
full pefile parse (a parser we did not write)."""

from __future__ import annotations

import pathlib
import struct

import pefile
import pytest

from dynawheel.binary import DepKind
from dynawheel.errors import BinaryFormatError, RepairError
from dynawheel.platforms.pe import read_image
from dynawheel.platforms.pe_edit import pe_checksum, rename_imports

BIN = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pe" / "bin"
BAD = BIN.parent / "bad"


def imports(data: bytes) -> list[tuple[str, DepKind]]:
    return [(d.name, d.kind) for d in read_image(data, "test").needed]


def pefile_view(data: bytes) -> tuple[list[str], list[str], pefile.PE]:
    """(imported DLL names, delay-imported DLL names, the PE) from a full pefile parse."""
    pe = pefile.PE(data=data)
    normal = [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]
    delay = [e.dll.decode() for e in getattr(pe, "DIRECTORY_ENTRY_DELAY_IMPORT", [])]
    return normal, delay, pe


def test_shorter_name_is_written_in_place() -> None:
    data = (BIN / "liba.dll").read_bytes()
    out = rename_imports(data, {"libb.dll": "b.dll"})
    assert len(out) == len(data)
    changed = [i for i, (x, y) in enumerate(zip(data, out)) if x != y]
    assert 0 < len(changed) <= len("libb.dll")
    assert imports(out) == [("b.dll", DepKind.NEEDED), ("api-ms-win-crt-heap-l1-1-0.dll", DepKind.NEEDED)]
    normal, _, pe = pefile_view(out)
    assert normal == ["b.dll", "api-ms-win-crt-heap-l1-1-0.dll"]
    # The imported symbols are untouched.
    assert [s.name for s in pe.DIRECTORY_ENTRY_IMPORT[0].imports] == [b"b_value"]


def test_same_length_name_changes_only_the_name() -> None:
    data = (BIN / "libb.dll").read_bytes()
    out = rename_imports(data, {"LIBC.DLL": "libz.dll"})
    assert imports(out) == [("libz.dll", DepKind.NEEDED)]
    assert sum(x != y for x, y in zip(data, out)) == 1


def test_longer_names_go_into_a_new_section() -> None:
    data = (BIN / "liba.dll").read_bytes()
    new = "libb-0123456789abcdef.dll"
    out = rename_imports(data, {"libb.dll": new})
    normal, _, pe = pefile_view(out)
    assert normal == [new, "api-ms-win-crt-heap-l1-1-0.dll"]
    old_pe = pefile.PE(data=data)
    assert [s.Name.rstrip(b"\0") for s in pe.sections] == [s.Name.rstrip(b"\0") for s in old_pe.sections] + [
        b".dwnames"
    ]
    section = pe.sections[-1]
    opt = pe.OPTIONAL_HEADER
    assert section.VirtualAddress % opt.SectionAlignment == 0
    assert section.PointerToRawData % opt.FileAlignment == 0
    assert section.VirtualAddress >= max(s.VirtualAddress + s.Misc_VirtualSize for s in old_pe.sections)
    assert opt.SizeOfImage == section.VirtualAddress + opt.SectionAlignment
    assert section.Characteristics == 0x40000040
    assert pe.get_string_at_rva(pe.DIRECTORY_ENTRY_IMPORT[0].struct.Name) == new.encode()
    # Past the headers, only the descriptor's 4-byte name RVA changed; the old data is all still there.
    name_field = pe.DIRECTORY_ENTRY_IMPORT[0].struct.get_field_absolute_offset("Name")
    changed = [i for i in range(opt.SizeOfHeaders, len(data)) if data[i] != out[i]]
    assert changed and all(name_field <= i < name_field + 4 for i in changed)
    assert [e.name for e in pe.DIRECTORY_ENTRY_EXPORT.symbols] == [b"a_value"]


def test_delay_imports_are_renamed() -> None:
    data = (BIN / "delay.pyd").read_bytes()
    out = rename_imports(data, {"libc.dll": "libc-ffeeddccbbaa9988.dll", "kernel32.dll": "KERNEL32.dll"})
    assert imports(out) == [("KERNEL32.dll", DepKind.NEEDED), ("libc-ffeeddccbbaa9988.dll", DepKind.DELAY)]
    normal, delay, _ = pefile_view(out)
    assert (normal, delay) == (["KERNEL32.dll"], ["libc-ffeeddccbbaa9988.dll"])


def test_no_match_returns_the_input_and_renaming_twice_is_harmless() -> None:
    data = (BIN / "ext.pyd").read_bytes()
    assert rename_imports(data, {"nothere.dll": "x.dll"}) == data
    mapping = {"liba.dll": "liba-5f3c2d1e9a8b7c6d.dll"}
    once = rename_imports(data, mapping)
    assert rename_imports(once, mapping) == once
    # Chaining a second rename of the new name reuses nothing it should not.
    twice = rename_imports(once, {"liba-5f3c2d1e9a8b7c6d.dll": "liba-aaaaaaaaaaaaaaaaaaaaaaaaaa.dll"})
    assert imports(twice) == [("liba-aaaaaaaaaaaaaaaaaaaaaaaaaa.dll", DepKind.NEEDED)]
    assert len(pefile.PE(data=twice).sections) == len(pefile.PE(data=data).sections) + 2


def test_output_is_deterministic() -> None:
    data = (BIN / "realistic.pyd").read_bytes()
    mapping = {"python3.dll": "python3-0123456789.dll", "VCRUNTIME140.dll": "v.dll"}
    assert rename_imports(data, mapping) == rename_imports(data, mapping)


@pytest.mark.parametrize("bad", ["", "a\\b.dll", "c:x.dll", "n\u00e9.dll", "x" * 300])
def test_invalid_new_names_are_refused(bad: str) -> None:
    with pytest.raises(RepairError, match="invalid DLL name"):
        rename_imports((BIN / "ext.pyd").read_bytes(), {"liba.dll": bad})


def test_no_room_for_a_section_header_fails_cleanly() -> None:
    data = bytearray((BIN / "ext.pyd").read_bytes())
    pe = pefile.PE(data=bytes(data), fast_load=True)
    table_end = pe.sections[-1].get_file_offset() + 40
    data[table_end : table_end + 4] = b"junk"
    with pytest.raises(RepairError, match="no room for another section header"):
        rename_imports(bytes(data), {"liba.dll": "liba-0123456789.dll"})
    # A name that fits is still fine.
    assert imports(rename_imports(bytes(data), {"liba.dll": "l.dll"})) == [("l.dll", DepKind.NEEDED)]


def test_signature_is_removed_and_checksum_recomputed() -> None:
    data = bytearray((BIN / "ext.pyd").read_bytes())
    pe = pefile.PE(data=bytes(data), fast_load=True)
    security = pe.OPTIONAL_HEADER.DATA_DIRECTORY[4].get_file_offset()
    certificate = struct.pack("<IHH", 16, 0x0200, 0x0002) + b"\x30\x82\x00\x00"
    struct.pack_into("<II", data, security, len(data), len(certificate))
    data += certificate
    struct.pack_into("<I", data, pe.OPTIONAL_HEADER.get_field_absolute_offset("CheckSum"), 1)
    out = rename_imports(bytes(data), {"liba.dll": "liba-0123456789abcdef.dll"})
    new = pefile.PE(data=out)
    assert (new.OPTIONAL_HEADER.DATA_DIRECTORY[4].VirtualAddress, new.OPTIONAL_HEADER.DATA_DIRECTORY[4].Size) == (0, 0)
    assert certificate not in out
    assert new.OPTIONAL_HEADER.CheckSum == new.generate_checksum() != 0


def test_bad_input_is_a_format_error() -> None:
    with pytest.raises(BinaryFormatError, match=r"bad-import-rva\.pyd"):
        rename_imports((BAD / "bad-import-rva.pyd").read_bytes(), {"a": "b"}, path="bad-import-rva.pyd")


@pytest.mark.parametrize("name", ["ext.pyd", "liba.dll", "loader.exe", "i686/libc.dll", "loadcfg.dll"])
def test_checksum_agrees_with_pefile(name: str) -> None:
    data = (BIN / name).read_bytes()
    pe = pefile.PE(data=data, fast_load=True)
    assert pe_checksum(data, pe.OPTIONAL_HEADER.get_field_absolute_offset("CheckSum")) == pe.generate_checksum()
    odd = data + b"\x07"
    assert (
        pe_checksum(odd, pe.OPTIONAL_HEADER.get_field_absolute_offset("CheckSum"))
        == pefile.PE(data=odd, fast_load=True).generate_checksum()
    )
