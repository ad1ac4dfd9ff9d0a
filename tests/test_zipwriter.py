"""The wheel writer's fast paths: parallel chunked deflate, raw member copy, ZIP64."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dynawheel.wheel.archive import Entry, RawSource, write_wheel
from dynawheel.wheel.zipwriter import ZipWriter

from .conftest import run_cli

DT = (1980, 1, 1, 0, 0, 0)


def _payload(n: int) -> bytes:
    """Compressible but not trivial data: mixed random and repeated blocks."""
    blocks = [os.urandom(4096) if i % 3 == 0 else bytes([i % 251]) * 4096 for i in range(n // 4096)]
    return b"".join(blocks)


def test_chunked_deflate_is_one_valid_stream_independent_of_workers() -> None:
    data = _payload(9 << 20)
    outputs = []
    for pool in (None, ThreadPoolExecutor(1), ThreadPoolExecutor(2)):
        buf = io.BytesIO()
        writer = ZipWriter(buf, level=6, executor=pool)
        member = writer.add_stream("big.bin", io.BytesIO(data), len(data), mode=0o644, date_time=DT)
        writer.close()
        assert member.sha256 == hashlib.sha256(data).digest()
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
            assert zf.testzip() is None
            assert zf.read("big.bin") == data
        outputs.append(buf.getvalue())
    assert outputs[0] == outputs[1] == outputs[2], "bytes must not depend on the number of workers"
    import zlib

    assert len(outputs[0]) <= len(zlib.compress(data, 6)) * 1.01, "chunks primed with a dictionary keep the ratio"


def test_raw_copied_members_install_and_check(tmp_path: Path) -> None:
    stage = tmp_path / "s"
    (stage / "pkg").mkdir(parents=True)
    (stage / "pkg" / "__init__.py").write_text("VALUE = 7\n")
    (stage / "pkg" / "blob.bin").write_bytes(_payload(5 << 20))
    first = run_cli("build", stage, "--name", "raw", "--version", "1", "-w", tmp_path / "a")
    assert first.code == 0, first.err
    src = tmp_path / "a" / "raw-1-py3-none-any.whl"
    from dynawheel.wheel.record import parse_record

    with src.open("rb") as fp, zipfile.ZipFile(fp) as zf:
        record = {r.path: r.hash for r in parse_record(zf.read("raw-1.dist-info/RECORD"), "RECORD")}
        entries = [Entry(i.filename, RawSource(fp, i, record[i.filename]), False) for i in zf.infolist()
                   if not i.filename.endswith("RECORD")]
        copy = write_wheel(tmp_path / "b" / src.name, entries, "raw-1.dist-info")
    assert copy.read_bytes() == src.read_bytes(), "a raw copy of every member reproduces the wheel"
    assert run_cli("check", copy).code == 0
    proc = subprocess.run([sys.executable, "-m", "installer", "--destdir", str(tmp_path / "inst"), str(copy)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_zip64_by_entry_count(tmp_path: Path) -> None:
    """More than 65535 members needs the ZIP64 end records."""
    entries = [Entry(f"many/f{i:05d}.txt", f"{i}\n".encode()) for i in range(70000)]
    wheel = write_wheel(tmp_path / "many-1-py3-none-any.whl", entries, "many-1.dist-info", compression_level=1)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert len(names) == 70001 and zf.read("many/f69999.txt") == b"69999\n"
    assert b"PK\x06\x06" in wheel.read_bytes()[-200:], "ZIP64 end of central directory record"
