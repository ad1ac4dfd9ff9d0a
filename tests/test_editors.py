"""platforms' editors behind one interface (Editor, make_editor, the frozen ElfEdits / MachoEdits /
PeEdits), on real files: the committed PE and Mach-O fixtures and an ELF library gcc builds; each
result read back by our readers (and readelf for ELF)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from dynawheel.binary import BinaryFormat
from dynawheel.errors import HeaderSpaceError
from dynawheel.platforms import Backend, EditJob, ElfEdits, MachoEdits, PeEdits, make_editor
from dynawheel.platforms.elf import BACKEND as ELF
from dynawheel.platforms.macho import BACKEND as MACHO
from dynawheel.platforms.pe import BACKEND as PE

from . import elfbuild
from .conftest import FIXTURES

LONG = "@loader_path/../a-much-longer-directory-name/libhelper.dylib"  # no room for it in libtight


def _copy(rel: str, dest: Path) -> Path:
    out = dest / Path(rel).name
    shutil.copyfile(FIXTURES / rel, out)
    return out


def _needed(backend: Backend, path: Path) -> list[str]:
    with path.open("rb") as fp:
        return [d.name for d in backend.parse(fp, str(path)).images[0].needed]


@pytest.mark.parametrize("fmt", list(BinaryFormat))
def test_the_registry_makes_an_editor_per_format(fmt: BinaryFormat) -> None:
    editor = make_editor(fmt)
    assert editor.format is fmt
    assert editor.writes_from_source is (fmt is BinaryFormat.ELF)  # only the ELF editor writes a copy itself
    assert make_editor(fmt) is not editor  # nothing shared between repairs


def test_macho_editor_writes_no_file_when_one_lacks_room(tmp_path: Path) -> None:
    roomy = _copy("macho/bin/header/libroomy.dylib", tmp_path)
    tight = _copy("macho/bin/header/libtight.dylib", tmp_path)
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (roomy, tight)}
    edits = MachoEdits(change_dependencies=(("@rpath/libhelper.dylib", LONG),))
    done: list[Path] = []
    with pytest.raises(HeaderSpaceError, match=r"header too small in 'pk/libtight\.dylib' \(arm64\)"):
        make_editor(BinaryFormat.MACHO).apply([EditJob(roomy, "pk/libroomy.dylib", edits),
                                               EditJob(tight, "pk/libtight.dylib", edits)], done.append)
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (roomy, tight)} == before and done == []


def test_macho_editor_renames_and_reports_each_file_done(tmp_path: Path) -> None:
    roomy = _copy("macho/bin/header/libroomy.dylib", tmp_path)
    done: list[Path] = []
    make_editor(BinaryFormat.MACHO).apply([EditJob(roomy, "pk/libroomy.dylib", MachoEdits(
        change_dependencies=(("@rpath/libhelper.dylib", LONG),), install_id="@rpath/libroomy-1.dylib"))], done.append)
    assert _needed(MACHO, roomy) == [LONG, "/usr/lib/libSystem.B.dylib"] and done == [roomy]
    with roomy.open("rb") as fp:
        assert MACHO.parse(fp, str(roomy)).images[0].soname == "@rpath/libroomy-1.dylib"


def test_pe_editor_renames_an_import(tmp_path: Path) -> None:
    ext = _copy("pe/bin/ext.pyd", tmp_path)
    done: list[Path] = []
    make_editor(BinaryFormat.PE).apply([EditJob(ext, "pk/ext.pyd", PeEdits((("liba.dll", "liba-1a2b3c4d.dll"),)))],
                                       done.append)
    assert _needed(PE, ext) == ["liba-1a2b3c4d.dll"] and done == [ext]


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed")
def test_elf_editor_writes_the_copy_from_its_source(tmp_path: Path) -> None:
    helper = elfbuild.shared_lib(tmp_path / "src" / "libhelper.so.1", soname="libhelper.so.1")
    user = elfbuild.shared_lib(tmp_path / "src" / "libuser.so.1", soname="libuser.so.1", needs=[helper])
    copy = tmp_path / "out" / "libuser-1a2b3c4d.so.1"
    copy.parent.mkdir()
    done: list[Path] = []
    edits = ElfEdits((("libhelper.so.1", "libhelper-5e6f7a8b.so.1"),), ("$ORIGIN",), "libuser-1a2b3c4d.so.1")
    make_editor(BinaryFormat.ELF).apply([EditJob(copy, "pk/libuser-1a2b3c4d.so.1", edits, str(user))], done.append)
    assert done == [copy] and _needed(ELF, copy)[0] == "libhelper-5e6f7a8b.so.1"
    dynamic = subprocess.run(["readelf", "-d", str(copy)], capture_output=True, text=True, check=True).stdout
    assert "Library soname: [libuser-1a2b3c4d.so.1]" in dynamic and "[$ORIGIN]" in dynamic
    assert _needed(ELF, user)[0] == "libhelper.so.1"  # the source is untouched


def test_pe_and_macho_records_are_exported_by_the_registry_from_modules_of_their_own() -> None:
    """PeEdits and MachoEdits live in pe_edits.py / macho_edits.py (an ELF repair does not define them:
    tests/test_startup.py); the registry and edits.py still export them, and Edits, their Union with ElfEdits."""
    import dataclasses
    from typing import Union

    from dynawheel.platforms import Edits, edits, macho_edits, pe_edits

    assert PeEdits is edits.PeEdits is pe_edits.PeEdits and MachoEdits is edits.MachoEdits is macho_edits.MachoEdits
    assert Edits == edits.Edits == Union[ElfEdits, MachoEdits, PeEdits]
    assert [f.name for f in dataclasses.fields(PeEdits)] == ["rename_imports"]
    assert [f.name for f in dataclasses.fields(MachoEdits)] == ["change_dependencies", "install_id", "delete_rpaths",
                                                               "add_rpaths"]
    assert (PeEdits.format, MachoEdits.format) == (BinaryFormat.PE, BinaryFormat.MACHO)
    assert PeEdits().empty and MachoEdits(add_rpaths=("@loader_path",)).renames == {}
    with pytest.raises(dataclasses.FrozenInstanceError):
        PeEdits().rename_imports = ()
    with pytest.raises(AttributeError, match="has no attribute 'PEEdits'"):
        _ = edits.PEEdits
