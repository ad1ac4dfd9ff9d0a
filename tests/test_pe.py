"""PE reader and loader rules, on the committed fixtures (fixtures/pe, built by build.sh)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import shutil
from collections.abc import Sequence

import pytest

from dynawheel.binary import BinaryFormat, Dependency, DepKind, FileKind, Image
from dynawheel.errors import BinaryFormatError
from dynawheel.platforms import Candidate, Loaded
from dynawheel.platforms.pe import (
    BACKEND,
    DELAY_FLAG,
    PATH_FLAG,
    Headers,
    PEView,
    Section,
    import_slots,
    imported_names,
    read_headers,
    system_dlls,
)
from dynawheel.search import SearchPaths

from .conftest import assert_user_error, run_cli

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "pe"
BIN = FIXTURES / "bin"
BAD = FIXTURES / "bad"


def parse(path: pathlib.Path) -> Image:
    with open(path, "rb") as fp:
        binary = BACKEND.parse(fp, str(path))
    assert binary.format is BinaryFormat.PE and len(binary.images) == 1
    return binary.images[0]


def test_committed_fixtures_match_sha256sums() -> None:
    lines = (FIXTURES / "SHA256SUMS").read_text().splitlines()
    assert len(lines) >= 15
    for line in lines:
        digest, name = line.split()
        assert hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest() == digest, name
        assert (FIXTURES / name).stat().st_size <= 8192, name


N, D = DepKind.NEEDED, DepKind.DELAY
READER_FACTS = {
    "ext.pyd": ("x86_64", FileKind.SHARED, [("liba.dll", N)], ["PyInit_ext", "ext_call"], True),
    "other.pyd": ("x86_64", FileKind.SHARED, [("liba.dll", N)], ["PyInit_other", "ext_call"], True),
    "delay.pyd": (
        "x86_64",
        FileKind.SHARED,
        [("KERNEL32.dll", N), ("libc.dll", D)],
        ["PyInit_delay", "ext_call"],
        True,
    ),
    "realistic.pyd": (
        "x86_64",
        FileKind.SHARED,
        [
            ("python3.dll", N),
            ("VCRUNTIME140.dll", N),
            ("api-ms-win-crt-string-l1-1-0.dll", N),
            ("api-ms-win-crt-heap-l1-1-0.dll", N),
            ("KERNEL32.dll", N),
        ],
        ["PyInit_realistic"],
        True,
    ),
    "liba.dll": (
        "x86_64",
        FileKind.SHARED,
        [("libb.dll", N), ("api-ms-win-crt-heap-l1-1-0.dll", N)],
        ["a_value"],
        False,
    ),
    "libb.dll": ("x86_64", FileKind.SHARED, [("libc.dll", N)], ["b_value"], False),
    "libc.dll": ("x86_64", FileKind.SHARED, [("KERNEL32.dll", N)], ["c_value"], False),
    "alt/libc.dll": ("x86_64", FileKind.SHARED, [("KERNEL32.dll", N)], ["c_value"], False),
    "i686/libc.dll": ("i686", FileKind.SHARED, [], ["c_value"], False),
    "loadcfg.dll": ("x86_64", FileKind.SHARED, [], ["c_value"], False),
    "loader.exe": ("x86_64", FileKind.EXECUTABLE, [("KERNEL32.dll", N)], [], False),
}


@pytest.mark.parametrize("name", sorted(READER_FACTS))
def test_reader_facts(name: str) -> None:
    arch, kind, needed, exports, extension = READER_FACTS[name]
    image = parse(BIN / name)
    assert image.arch == arch
    assert image.kind is kind
    assert [(d.name, d.kind) for d in image.needed] == needed
    assert list(image.pe.exports) == exports
    assert image.pe.python_extension is extension
    assert image.soname == (None if kind is FileKind.EXECUTABLE else pathlib.PurePath(name).name)
    assert image.pe.machine == {"x86_64": 0x8664, "i686": 0x14C}[arch]
    assert image.pe.pe32plus is (arch == "x86_64")
    # lld writes a load config only for _load_config_used; loadcfg.dll says LOAD_LIBRARY_SEARCH_SYSTEM32.
    assert image.pe.dependent_load_flags == (0x800 if name == "loadcfg.dll" else None)
    json.dumps(dict(image.details))  # JSON-ready
    assert (image.format.value, image.arch) == ("pe", arch)


def test_subsystem_of_the_console_loader() -> None:
    assert parse(BIN / "loader.exe").pe.subsystem == "IMAGE_SUBSYSTEM_WINDOWS_CUI"
    assert parse(BIN / "ext.pyd").pe.subsystem == "IMAGE_SUBSYSTEM_WINDOWS_GUI"


def test_parse_from_a_stream_equals_parse_from_a_file() -> None:
    data = (BIN / "realistic.pyd").read_bytes()
    from_stream = BACKEND.parse(io.BytesIO(data), "wheel.whl/pkg/realistic.pyd").images[0]
    assert from_stream == parse(BIN / "realistic.pyd")
    assert from_stream.facts == parse(BIN / "realistic.pyd").facts


def test_sniff() -> None:
    assert BACKEND.sniff((BIN / "ext.pyd").read_bytes()[:8])
    assert not BACKEND.sniff(b"\x7fELF\x02\x01\x01\x00")
    assert not BACKEND.sniff(b"")


BAD_FILES = {
    "truncated-dos-header.pyd": "invalid PE headers (truncated DOS header: 40 of 64 bytes)",
    "text-named.dll": "invalid PE headers (truncated DOS header: 38 of 64 bytes)",
    "truncated-headers.pyd": "invalid PE headers (optional header truncated: 36 of 112 bytes at 0x90)",
    "truncated-sections.pyd": "export directory at RVA 0x2020 lies outside the file (1024 bytes)",
    "bad-pe-signature.pyd": "invalid PE headers (no PE signature at e_lfanew 0x78: b'PX\\x00\\x00')",
    "bad-e_lfanew.pyd": "invalid PE headers (e_lfanew 0x7fffff00 points past the end of the file (2048 bytes))",
    "bad-import-rva.pyd": "import descriptor 0 at RVA 0x7fff0000 lies outside the file (2048 bytes)",
    "bad-export-rva.pyd": "export directory at RVA 0x7fff0000 lies outside the file (2048 bytes)",
}


def test_every_bad_fixture_is_covered() -> None:
    assert sorted(p.name for p in BAD.iterdir()) == sorted(BAD_FILES)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_give_one_line_error(name: str) -> None:
    path = BAD / name
    with pytest.raises(BinaryFormatError) as info:
        parse(path)
    message = str(info.value)
    assert message.startswith(f"{str(path)!r}: ")
    assert BAD_FILES[name] in message
    assert "\n" not in message


def test_empty_file_is_a_format_error(tmp_path: pathlib.Path) -> None:
    empty = tmp_path / "empty.dll"
    empty.write_bytes(b"")
    with pytest.raises(BinaryFormatError, match=r"empty\.dll"):
        parse(empty)


# ---- system DLLs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "KERNEL32.dll",
        "kernel32.DLL",
        "ntdll.dll",
        "ucrtbase.dll",
        "msvcrt.dll",
        "api-ms-win-crt-heap-l1-1-0.dll",
        "API-MS-WIN-CORE-SYNCH-L1-2-0.DLL",
        "ext-ms-win-gdi-draw-l1-1-0.dll",
        "python3.dll",
        "python311.dll",
        "python313_d.dll",
        "VCRUNTIME140.dll",
        "vcruntime140_1.dll",
        # every Windows has these; not in the list of version 1 (reported missing in pywin32)
        "ACLUI.dll",
        "ACTIVEDS.dll",
        "credui.dll",
        "LZ32.dll",
        "query.dll",
        "wevtapi.dll",
        "ktmw32.dll",
        "loadperf.dll",
        "sfc.dll",
        "win32u.dll",
        "msvcp_win.dll",
    ],
)
def test_system_and_interpreter_provided(name: str) -> None:
    image = parse(BIN / "ext.pyd")
    assert BACKEND.is_system(Dependency(name), image, SearchPaths())


@pytest.mark.parametrize(
    "name", ["liba.dll", "libopenblas.dll", "python.dll", "python27.dll", "vcruntime.dll", "api-ms.dll", "zlib1.dll",
             "MSVCP140.dll", "msvcp140_atomic_wait.dll", "vcomp140.dll", "mfc140u.dll"]
)
def test_not_system(name: str) -> None:
    assert not BACKEND.is_system(Dependency(name), parse(BIN / "ext.pyd"), SearchPaths())


def test_every_import_of_an_msvc_style_extension_is_system() -> None:
    image = parse(BIN / "realistic.pyd")
    assert all(BACKEND.is_system(d, image, SearchPaths()) for d in image.needed)


def test_system_dll_lists_are_versioned_per_arch_with_their_provenance() -> None:
    doc = json.loads((pathlib.Path(__file__).parent.parent / "dynawheel/data/windows-system-dlls.json").read_text())
    assert doc["version"] == 2 and doc["generator"] == "scripts/gen_windows_dlls.py" and doc["provenance"]
    assert set(doc["dlls"]) == {"x64", "x86", "arm64"}
    for arch, names in doc["dlls"].items():
        assert names == sorted(set(names)) and doc["counts"][arch] == len(names) > 1000, arch
        assert all(n == n.lower() and n.endswith((".dll", ".drv")) for n in names), arch
        assert not any(n.startswith(("api-ms-", "ext-ms-", "python", "vcruntime", "msvcp140", "concrt", "vcomp1"))
                       for n in names), arch
    for arch in ("x86_64", "i686", "arm64"):
        assert {"kernel32.dll", "user32.dll", "ntdll.dll", "ws2_32.dll", "bcrypt.dll", "aclui.dll", "credui.dll",
                "wevtapi.dll", "ucrtbase.dll", "combase.dll"} <= system_dlls(arch), arch


def test_system_dlls_depend_on_the_arch() -> None:
    """SysWOW64 keeps 32-bit only DLLs (the VB6 runtime); x64 has no vcruntime140_1 for x86."""
    x64 = parse(BIN / "ext.pyd")
    x86 = parse(BIN / "i686" / "libc.dll")
    assert (x64.arch, x86.arch) == ("x86_64", "i686")
    assert BACKEND.is_system(Dependency("MSVBVM60.DLL"), x86, SearchPaths())
    assert not BACKEND.is_system(Dependency("MSVBVM60.DLL"), x64, SearchPaths())
    assert BACKEND.is_system(Dependency("vcruntime140_1.dll"), x64, SearchPaths())
    assert not BACKEND.is_system(Dependency("vcruntime140_1.dll"), x86, SearchPaths())
    assert "xtajit.dll" in system_dlls("arm64") - system_dlls("x86_64")  # the x86 emulator of Windows on Arm
    assert system_dlls("armv7l") == system_dlls("x86_64") & system_dlls("i686") & system_dlls("arm64")


def test_loaded_key_is_case_insensitive_base_name() -> None:
    assert BACKEND.loaded_key("LIBA.DLL") == "liba.dll"
    assert BACKEND.loaded_key("C:\\Windows\\System32\\KERNEL32.dll") == "kernel32.dll"
    assert BACKEND.loaded_key("pkg/LibB.dll") == "libb.dll"


# ---- resolution ----------------------------------------------------------------------------
# A walker over the backend's rules and real files, as the resolver uses them: system names
# are not looked up, a module already loaded under the same key satisfies the request, a
# candidate of another architecture is skipped.


Result = tuple[str | None, Sequence[Candidate]]


def walk(
    root: pathlib.Path, search: SearchPaths, loaded: dict[str, str] | None = None
) -> dict[tuple[str, str], Result]:
    """(requester base name, request) -> (resolved path or None/'system', every candidate tried)."""
    loaded = {} if loaded is None else loaded
    results: dict[tuple[str, str], Result] = {}
    root_loaded = Loaded(str(root), parse(root))
    loaded[BACKEND.loaded_key(root.name)] = str(root)

    def visit(chain: list[Loaded]) -> None:
        for request in chain[-1].image.needed:
            key = (pathlib.PurePath(chain[-1].path).name, request.name)
            if BACKEND.is_system(request, chain[-1].image, search):
                results[key] = ("system", [])
                continue
            if BACKEND.loaded_key(request.name) in loaded:
                results[key] = (loaded[BACKEND.loaded_key(request.name)], [])
                continue
            tried = []
            for candidate in BACKEND.candidates(request, chain, search):
                tried.append(candidate)
                if os.path.isfile(candidate.path):
                    image = parse(pathlib.Path(candidate.path))
                    if (image.format, image.arch) == (chain[0].image.format, chain[0].image.arch):
                        results[key] = (candidate.path, tried)
                        loaded[BACKEND.loaded_key(request.name)] = candidate.path
                        visit([*chain, Loaded(candidate.path, image)])
                        break
            else:
                results[key] = (None, tried)

    visit([root_loaded])
    return results


@pytest.fixture
def chain_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """A/ext.pyd, A/other.pyd, A/delay.pyd; B/liba.dll, B/libb.dll, B/libc.dll."""
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    for name in ("ext.pyd", "other.pyd", "delay.pyd"):
        shutil.copy(BIN / name, tmp_path / "A" / name)
    for name in ("liba.dll", "libb.dll", "libc.dll"):
        shutil.copy(BIN / name, tmp_path / "B" / name)
    return tmp_path


def test_chain_resolves_through_add_dll_directory(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    results = walk(a / "ext.pyd", SearchPaths(dll_directories=(str(b),)))
    resolved = {key: hit for key, (hit, _) in results.items()}
    assert resolved == {
        ("ext.pyd", "liba.dll"): str(b / "liba.dll"),
        ("liba.dll", "libb.dll"): str(b / "libb.dll"),
        ("liba.dll", "api-ms-win-crt-heap-l1-1-0.dll"): "system",
        ("libb.dll", "libc.dll"): str(b / "libc.dll"),
        ("libc.dll", "KERNEL32.dll"): "system",
    }
    _, tried = results[("libb.dll", "libc.dll")]
    # The directory searched first is the extension's (chain[0]), not libb.dll's.
    assert [(c.path, c.via, c.flag) for c in tried] == [
        (str(a / "libc.dll"), f"directory of {a / 'ext.pyd'}", None),
        (str(b / "libc.dll"), "os.add_dll_directory", None),
    ]


def test_missing_without_the_dll_directory_lists_where_it_looked(chain_tree: pathlib.Path) -> None:
    a = chain_tree / "A"
    system32 = chain_tree / "System32"
    system32.mkdir()
    results = walk(a / "ext.pyd", SearchPaths(system32=(str(system32),)))
    hit, tried = results[("ext.pyd", "liba.dll")]
    assert hit is None
    assert [(c.path, c.via) for c in tried] == [
        (str(a / "liba.dll"), f"directory of {a / 'ext.pyd'}"),
        (str(system32 / "liba.dll"), "System32"),
    ]
    hermetic = walk(a / "ext.pyd", SearchPaths(system32=(str(system32),), use_system=False))
    assert [c.via for c in hermetic[("ext.pyd", "liba.dll")][1]] == [f"directory of {a / 'ext.pyd'}"]


def test_extension_directory_shadows_for_indirect_dependencies(chain_tree: pathlib.Path) -> None:
    """libb.dll (in B) asks for libc.dll: the copy beside the extension (A) wins (wine agrees)."""
    a, b = chain_tree / "A", chain_tree / "B"
    shutil.copy(BIN / "alt" / "libc.dll", a / "libc.dll")
    results = walk(a / "ext.pyd", SearchPaths(dll_directories=(str(b),)))
    assert results[("libb.dll", "libc.dll")][0] == str(a / "libc.dll")


def test_wrong_architecture_earlier_on_the_path_is_skipped(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    shutil.copy(BIN / "i686" / "libc.dll", a / "libc.dll")
    hit, tried = walk(a / "ext.pyd", SearchPaths(dll_directories=(str(b),)))[("libb.dll", "libc.dll")]
    assert hit == str(b / "libc.dll")
    assert [c.path for c in tried] == [str(a / "libc.dll"), str(b / "libc.dll")]
    assert parse(a / "libc.dll").arch == "i686"


def test_names_are_case_insensitive_on_disk(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    (b / "liba.dll").rename(b / "LIBA.DLL")
    results = walk(a / "ext.pyd", SearchPaths(dll_directories=(str(b),)))
    assert results[("ext.pyd", "liba.dll")][0] == str(b / "LIBA.DLL")


def test_extra_paths_come_before_dll_directories(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    request = Dependency("liba.dll")
    chain = [Loaded(str(a / "ext.pyd"), parse(a / "ext.pyd"))]
    search = SearchPaths(extra=("/x",), dll_directories=(str(b),), system32=("/sys32",), windows_path=("/p",))
    got = [(c.path, c.via, c.flag) for c in BACKEND.candidates(request, chain, search)]
    assert got == [
        (str(a / "liba.dll"), f"directory of {a / 'ext.pyd'}", None),
        ("/x/liba.dll", "extra search path", None),
        (str(b / "liba.dll"), "os.add_dll_directory", None),
        ("/sys32/liba.dll", "System32", None),
        ("/p/liba.dll", "PATH (opt-in)", PATH_FLAG),
    ]


def test_path_is_opt_in_and_flagged(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    assert walk(a / "ext.pyd", SearchPaths())[("ext.pyd", "liba.dll")][0] is None
    hit, tried = walk(a / "ext.pyd", SearchPaths(windows_path=(str(b),)))[("ext.pyd", "liba.dll")]
    assert hit == str(b / "liba.dll")
    assert tried[-1].flag == "loads on Python <= 3.7 only"


def test_delay_import_resolves_with_a_flag(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    shutil.copy(b / "libc.dll", a / "libc.dll")
    hit, tried = walk(a / "delay.pyd", SearchPaths())[("delay.pyd", "libc.dll")]
    assert hit == str(a / "libc.dll")
    assert tried[-1].flag == DELAY_FLAG
    assert walk(a / "delay.pyd", SearchPaths())[("delay.pyd", "KERNEL32.dll")] == ("system", [])


def test_two_extensions_share_one_loaded_dll(chain_tree: pathlib.Path) -> None:
    a, b = chain_tree / "A", chain_tree / "B"
    loaded: dict[str, str] = {}
    search = SearchPaths(dll_directories=(str(b),))
    first = walk(a / "ext.pyd", search, loaded)
    second = walk(a / "other.pyd", search, loaded)
    assert first[("ext.pyd", "liba.dll")][0] == str(b / "liba.dll")
    # Already loaded by base name: satisfied without a search.
    assert second == {("other.pyd", "liba.dll"): (str(b / "liba.dll"), [])}


def _in_tree_hits(tree_path: pathlib.Path) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(requester, request) -> (status, hit relative to the tree) of every edge of `tree_path`."""
    from dynawheel.analysis.resolve import analyze
    from dynawheel.tree import open_tree

    tree = open_tree(tree_path)
    try:
        analysis = analyze(tree, SearchPaths(use_system=False))
    finally:
        close = getattr(tree, "close", None)
        if close is not None:
            close()
    root = analysis.root.rstrip("/") + "/"
    return {(pathlib.PurePosixPath(e.dependent).name, e.request.name):
            (e.status.value, None if e.hit is None else e.hit.removeprefix(root))
            for walk in analysis.walks for e in walk.edges}


def test_a_wheel_finds_dlls_whose_names_differ_in_case(tmp_path: pathlib.Path) -> None:
    """ext.pyd imports 'liba.dll' and the package holds 'LIBA.DLL': Windows loads it, so show and
    repair find it in the wheel (not only on disk), with the member's own spelling."""
    import zipfile

    members = {"pkg/ext.pyd": "ext.pyd", "pkg/LIBA.DLL": "liba.dll", "pkg/LibB.Dll": "libb.dll",
               "pkg/libc.dll": "libc.dll"}
    stage = tmp_path / "stage"
    wheel = tmp_path / "pkg-1.0-py3-none-win_amd64.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for arcname, fixture in members.items():
            zf.write(BIN / fixture, arcname)
            (stage / arcname).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(BIN / fixture, stage / arcname)
        zf.writestr("pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-win_amd64\n")
    expected = {
        ("ext.pyd", "liba.dll"): ("in_tree", "pkg/LIBA.DLL"),
        ("LIBA.DLL", "libb.dll"): ("in_tree", "pkg/LibB.Dll"),
        ("LibB.Dll", "libc.dll"): ("in_tree", "pkg/libc.dll"),
    }
    for tree in (wheel, stage):
        hits = _in_tree_hits(tree)
        assert {key: hits[key] for key in expected} == expected, tree
        assert not [key for key, (status, _) in hits.items() if status == "missing"], hits


# ---- a relative --dll-dir is a directory of the tree or wheel (pywin32's pywin32_system32/) ----

@pytest.fixture
def pywin32_like(tmp_path: pathlib.Path) -> pathlib.Path:
    """stage/pkg/ext.pyd whose DLLs live in stage/pkg_system32/ (a package adds that directory at
    start-up, as pywin32's pywin32.pth does: nothing dynawheel can read), and its wheel in dist/."""
    stage = tmp_path / "stage"
    (stage / "pkg").mkdir(parents=True)
    (stage / "pkg_system32").mkdir()
    shutil.copy(BIN / "ext.pyd", stage / "pkg" / "ext.pyd")
    for name in ("liba.dll", "libb.dll", "libc.dll"):
        shutil.copy(BIN / name, stage / "pkg_system32" / name)
    built = run_cli("build", stage, "--name", "pkg", "--version", "1", "--tag", "cp311-cp311-win_amd64",
                    "-w", tmp_path / "dist")
    assert built.code == 0, built.err
    return tmp_path


@pytest.mark.parametrize("target", ["stage", "wheel"])
def test_relative_dll_dir_is_a_directory_of_the_tree(pywin32_like: pathlib.Path, target: str) -> None:
    path = pywin32_like / "stage" if target == "stage" else next((pywin32_like / "dist").glob("*.whl"))
    elsewhere = pywin32_like / "elsewhere"  # the cwd has no pkg_system32: the tree's is meant
    elsewhere.mkdir()
    without = run_cli("show", "--json", "--no-system-paths", path, cwd=elsewhere)
    assert without.code == 3 and json.loads(without.out)["missing"] == ["pkg/ext.pyd: liba.dll"]
    for spelling in ("pkg_system32", "./pkg_system32/", "pkg_system32\\"):
        result = run_cli("show", "--json", "--no-system-paths", "--dll-dir", spelling, path, cwd=elsewhere)
        assert result.code == 0, (spelling, result.out, result.err)
        doc = json.loads(result.out)
        hits = {e["request"]: e["hit"] for w in doc["walks"] for e in w["edges"] if e["request"].startswith("lib")}
        assert hits == {n: "pkg_system32/" + n for n in ("liba.dll", "libb.dll", "libc.dll")}, hits
    repaired = run_cli("repair", "--dll-dir", "pkg_system32", path, *(
        ["-o", pywin32_like / "out"] if target == "stage" else ["-w", pywin32_like / "out"]), cwd=elsewhere)
    assert repaired.code == 0, repaired.err
    assert "0 vendored" in repaired.out, repaired.out


def test_relative_dll_dir_leaving_the_tree_is_a_user_error(pywin32_like: pathlib.Path) -> None:
    result = run_cli("show", "--dll-dir", "../pkg_system32", pywin32_like / "stage")
    assert_user_error(result, "--dll-dir '../pkg_system32' leaves the tree")


# ---- headers: our struct reads against pefile's full parse (an independent parser) ---------------


def pefile_headers(data: bytes) -> Headers:
    import pefile

    pe = pefile.PE(data=data, fast_load=True)
    opt = pe.OPTIONAL_HEADER
    return Headers(
        machine=pe.FILE_HEADER.Machine, characteristics=pe.FILE_HEADER.Characteristics,
        pe32plus=opt.Magic == 0x20B, subsystem=opt.Subsystem, size_of_headers=opt.SizeOfHeaders,
        directories=tuple((d.VirtualAddress, d.Size) for d in opt.DATA_DIRECTORY),
        sections=tuple(Section(s.VirtualAddress, s.Misc_VirtualSize, s.SizeOfRawData, s.PointerToRawData)
                       for s in pe.sections),
    )


@pytest.mark.parametrize("name", sorted(p.relative_to(BIN).as_posix() for p in BIN.rglob("*") if p.is_file()))
def test_headers_equal_pefiles(name: str) -> None:
    data = (BIN / name).read_bytes()
    assert read_headers(data) == pefile_headers(data)


def pefile_imported_names(data: bytes) -> list[tuple[str, list[str]]]:
    import pefile

    pe = pefile.PE(data=data, fast_load=True)
    pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
    return [(e.dll.decode(), [i.name.decode() for i in e.imports if i.name])
            for e in getattr(pe, "DIRECTORY_ENTRY_IMPORT", [])]


@pytest.mark.parametrize("name", sorted(p.relative_to(BIN).as_posix() for p in BIN.rglob("*") if p.is_file()))
def test_imported_names_equal_pefiles(name: str) -> None:
    """The names each import descriptor imports (what the stable-ABI audit reads from python3.dll)."""
    data = (BIN / name).read_bytes()
    view = PEView(data, name)
    ours = [(s.name, imported_names(view, s)) for s in import_slots(view) if s.kind is DepKind.NEEDED]
    assert ours == pefile_imported_names(data)


def test_imported_names_of_the_python_dll() -> None:
    view = PEView((BIN / "realistic.pyd").read_bytes(), "realistic.pyd")
    names = {s.name: imported_names(view, s) for s in import_slots(view) if s.kind is DepKind.NEEDED}
    assert "PyModule_Create2" in names["python3.dll"]


def test_truncated_section_table_is_a_format_error(tmp_path: pathlib.Path) -> None:
    data = (BIN / "ext.pyd").read_bytes()
    lfanew = int.from_bytes(data[0x3C:0x40], "little")
    table = lfanew + 24 + int.from_bytes(data[lfanew + 20 : lfanew + 22], "little")
    cut = tmp_path / "cut.pyd"
    cut.write_bytes(data[: table + 40 + 10])  # the second section header is cut
    with pytest.raises(BinaryFormatError, match=r"section table truncated: \d+ sections at 0x"):
        parse(cut)
