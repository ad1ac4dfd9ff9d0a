"""The format-neutral model (dynawheel/binary.py): each reader's typed facts, and their JSON form
(`Image.details`, what `dynawheel show --json` prints) with the keys in the order the schema's
consumers have always seen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynawheel.binary import BinaryFormat, ElfFacts, FileKind, Image, MachoFacts, PeFacts
from dynawheel.platforms import backend_for

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ELF_KEYS = ["elfclass", "endian", "machine", "osabi", "type", "interp", "flags_1", "nodeflib", "version_needs"]
PE_KEYS = ["machine", "pe32plus", "subsystem", "exports", "python_extension", "dependent_load_flags"]
MACHO_KEYS = ["cputype", "cpusubtype", "slice_offset", "header_size", "free_header_space", "code_signature",
              "min_macos", "sdk", "platform", "uuid", "code_signature_size", "filetype"]


def _images(path: Path) -> tuple[Image, ...]:
    with open(path, "rb") as fp:
        backend = backend_for(fp.read(8))
        assert backend is not None, path
        fp.seek(0)
        return backend.parse(fp, str(path)).images


def test_elf_facts_and_their_json() -> None:
    (image,) = _images(Path("/lib/x86_64-linux-gnu/libc.so.6"))
    facts = image.elf
    assert isinstance(image.facts, ElfFacts) and facts is image.facts
    assert (facts.elfclass, facts.endian, facts.machine, facts.type) == (64, "little", "EM_X86_64", "ET_DYN")
    assert facts.interp is not None and facts.interp.startswith("/lib")  # glibc's libc.so.6 is runnable
    assert all(isinstance(v, tuple) for v in facts.version_needs.values())
    details = image.details
    assert list(details) == ELF_KEYS
    assert details["version_needs"] == {lib: list(v) for lib, v in facts.version_needs.items()}
    assert json.loads(json.dumps(details)) == details


def test_pe_facts_and_their_json() -> None:
    (image,) = _images(FIXTURES / "pe" / "bin" / "ext.pyd")
    assert isinstance(image.facts, PeFacts)
    assert image.pe.exports == ("PyInit_ext", "ext_call") and image.pe.python_extension
    assert list(image.details) == PE_KEYS and image.details["exports"] == ["PyInit_ext", "ext_call"]


def test_macho_facts_and_their_json() -> None:
    x86, arm = _images(FIXTURES / "macho" / "bin" / "fat" / "libuniversal.dylib")
    assert isinstance(arm.facts, MachoFacts) and arm.macho.filetype == "MH_DYLIB"
    assert arm.macho.code_signature and arm.macho.code_signature_size  # ld64.lld signs arm64 output
    assert list(arm.details) == MACHO_KEYS
    assert not x86.macho.code_signature and x86.macho.code_signature_size is None
    assert list(x86.details) == [k for k in MACHO_KEYS if k != "code_signature_size"]  # only what the file has


def test_facts_belong_to_their_format() -> None:
    with pytest.raises(TypeError, match="MachoFacts given for a elf image"):
        Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED, facts=MachoFacts())
    elf = Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED, facts=ElfFacts(interp="/lib/ld-musl-x86_64.so.1"))
    assert elf.elf.interp == "/lib/ld-musl-x86_64.so.1"
    with pytest.raises(TypeError, match="a elf image has no PeFacts"):
        _ = elf.pe


def test_a_hand_built_image_has_the_default_facts_and_no_details() -> None:
    image = Image(BinaryFormat.MACHO, "arm64", FileKind.BUNDLE)
    assert image.facts is None and image.details == {}
    assert image.macho == MachoFacts() and image.macho.min_macos is None
    assert Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED).elf.version_needs == {}


def test_parsed_binaries_pickle_and_compare() -> None:
    """An Analysis of the public API holds these records: they stay plain data (picklable, comparable)."""
    import pickle

    for path in (Path("/lib/x86_64-linux-gnu/libc.so.6"), FIXTURES / "pe" / "bin" / "ext.pyd",
                 FIXTURES / "macho" / "bin" / "fat" / "libuniversal.dylib"):
        for image in _images(path):
            copy = pickle.loads(pickle.dumps(image))
            assert copy == image and copy.facts == image.facts and copy.details == image.details


def test_pe_and_macho_facts_are_exported_by_binary_from_modules_of_their_own() -> None:
    """PeFacts and MachoFacts live in pe_facts.py / macho_facts.py (an ELF run does not define them), and
    ``from dynawheel.binary import PeFacts`` still gives them (module __getattr__), as do the type alias Facts and
    dataclasses.fields()."""
    import dataclasses
    from typing import Union

    import dynawheel.binary as binary
    from dynawheel import macho_facts, pe_facts

    assert binary.PeFacts is pe_facts.PeFacts is PeFacts and binary.MachoFacts is macho_facts.MachoFacts is MachoFacts
    assert [f.name for f in dataclasses.fields(PeFacts)] == PE_KEYS
    assert [f.name for f in dataclasses.fields(MachoFacts)] == MACHO_KEYS
    with pytest.raises(dataclasses.FrozenInstanceError):
        MachoFacts().min_macos = "11.0"
    assert binary.Facts == Union[ElfFacts, PeFacts, MachoFacts]
    with pytest.raises(AttributeError, match="has no attribute 'ElfFact'"):
        _ = binary.ElfFact
    with pytest.raises(TypeError, match="ElfFacts given for a pe image"):
        Image(BinaryFormat.PE, "x86_64", FileKind.SHARED, facts=ElfFacts())
    assert Image(BinaryFormat.PE, "x86_64", FileKind.SHARED).pe == PeFacts()


_ELF_ONLY = """
import sys
from dynawheel.binary import BinaryFormat, ElfFacts, FileKind, Image
image = Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED, facts=ElfFacts(interp="/lib64/ld-linux-x86-64.so.2"))
assert image.elf.interp and image.details["interp"]
print(sorted(m for m in sys.modules if m.startswith("dynawheel")))
"""


def test_an_elf_image_defines_no_pe_nor_macho_facts() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _ELF_ONLY], capture_output=True, text=True, check=True).stdout
    assert "'dynawheel.binary'" in out
    assert "pe_facts" not in out and "macho_facts" not in out, out
