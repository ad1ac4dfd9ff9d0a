"""Big deflated wheel members are read as streams: the ELF reader gets the same answer as from
the extracted file, without holding the member in memory, in at most a few inflation passes."""

from __future__ import annotations

import random
import subprocess
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from dynawheel.errors import WheelFormatError
from dynawheel.platforms.elf import parse_elf
from dynawheel.tree import STREAM_ABOVE, WheelTree

BIG = (STREAM_ABOVE >> 20) + 24  # MiB of read-only data: PT_DYNAMIC lands beyond it


@pytest.fixture(scope="module")
def big_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real shared library whose dynamic section lies ~40 MB into the file."""
    build = tmp_path_factory.mktemp("big")
    (build / "big.c").write_text(
        f"#include <math.h>\nconst char big_table[{BIG} << 20] = {{1}};\n"
        "double big(double x) { return sqrt(x) + big_table[(int)x]; }\n")
    lib = build / "libbig.so.1"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-Wl,-soname,libbig.so.1", "-Wl,-rpath,$ORIGIN/../libs",
                    build / "big.c", "-o", lib, "-lm"], check=True)
    return lib


@pytest.fixture(scope="module")
def big_wheel(big_library: Path) -> Path:
    wheel = big_library.parent / "big-1.0-py3-none-linux_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(big_library, "big/libbig.so.1")
        zf.writestr("big-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
    return wheel


def test_elf_from_stream_equals_elf_from_file(big_library: Path, big_wheel: Path) -> None:
    assert big_library.stat().st_size > STREAM_ABOVE + (16 << 20)
    with open(big_library, "rb") as fp:
        expected = parse_elf(fp, "big/libbig.so.1")
    tree = WheelTree(big_wheel)
    tracemalloc.start()
    try:
        with tree.open("big/libbig.so.1") as member:
            got = parse_elf(member, "big/libbig.so.1")
            restarts = getattr(member, "restarts", None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        tree.close()
    assert got == expected
    image = got.images[0]
    assert image.soname == "libbig.so.1" and image.runpaths == ("$ORIGIN/../libs",)
    assert "libm.so.6" in [d.name for d in image.needed]
    assert any(v.startswith("GLIBC_2.") for v in image.elf.version_needs["libm.so.6"])
    assert restarts is not None and restarts <= 2  # headers+dynamic, version records, strings
    assert peak < 8 << 20, f"peak {peak >> 20} MiB of Python memory for a {BIG} MiB member"


def test_stream_random_access_matches_the_file(big_library: Path, big_wheel: Path) -> None:
    data = big_library.read_bytes()
    tree = WheelTree(big_wheel)
    rng = random.Random(5)
    try:
        with tree.open("big/libbig.so.1") as member:
            for _ in range(40):
                offset = rng.randrange(len(data) + 10)
                size = rng.choice([1, 7, 4096, 1 << 20, 3 << 20])
                member.seek(offset)
                assert member.read(size) == data[offset : offset + size], (offset, size)
            member.seek(-100, 2)
            assert member.read() == data[-100:]
            member.seek(0)
            assert member.read(4) == b"\x7fELF" and member.tell() == 4
    finally:
        tree.close()


def test_corrupt_deflate_stream_names_the_member(big_wheel: Path, tmp_path: Path) -> None:
    broken = tmp_path / big_wheel.name
    blob = bytearray(big_wheel.read_bytes())
    with zipfile.ZipFile(big_wheel) as zf:
        info = zf.getinfo("big/libbig.so.1")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    blob[start + 200 : start + 400] = b"\xff" * 200  # garbage inside the deflate stream
    broken.write_bytes(bytes(blob))
    tree = WheelTree(broken)
    try:
        with pytest.raises(WheelFormatError, match=r"big/libbig\.so\.1"), tree.open("big/libbig.so.1") as member:
            member.seek(30 << 20)
            member.read(16)
    finally:
        tree.close()
