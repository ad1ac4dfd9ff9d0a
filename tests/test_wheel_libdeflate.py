"""Whole-member compression (libdeflate, PyPI ``deflate``, on worker threads) must write the same
kind of wheel as the stream path: valid deflate, RECORD hashes of the input bytes, bytes that do
not depend on the number of cores, a clean fallback when ``deflate`` is not installed, and an
output within 1 % of zlib's at the same level."""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile
import zlib
from pathlib import Path

import pytest

from dynawheel.wheel import zipwriter
from dynawheel.wheel.archive import Entry, write_wheel
from dynawheel.wheel.check import check_wheels
from dynawheel.wheel.record import encode_digest, parse_record

from .conftest import run_cli

DIST = "demo-1.0.dist-info"
META = b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\n"
WHEEL = b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-any\n"


def _real_bytes() -> bytes:
    """Real content: the standard library's sources and this interpreter's binary."""
    text = b"".join(p.read_bytes() for p in sorted(Path(os.__file__).parent.glob("*.py"))[:120])
    return text + Path(sys.executable).resolve().read_bytes()[: 2 << 20]


def _entries(tmp: Path) -> list[Entry]:
    data = _real_bytes()
    files = {"demo/small.py": data[:5000], "demo/mapped.bin": data[: 3 << 20], "demo/big.bin": data * 3,
             "demo/empty.txt": b""}
    entries = []
    for name, content in files.items():
        path = tmp / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        entries.append(Entry(name, path))
    return [*entries, Entry(f"{DIST}/METADATA", META), Entry(f"{DIST}/WHEEL", WHEEL)]


def _assert_valid(wheel: Path, entries: list[Entry]) -> None:
    with zipfile.ZipFile(wheel) as zf:
        assert zf.testzip() is None
        rows = {row.path: row for row in parse_record(zf.read(f"{DIST}/RECORD"), wheel.name)}
        for entry in entries:
            data = entry.source if isinstance(entry.source, bytes) else Path(str(entry.source)).read_bytes()
            assert zf.read(entry.arcname) == data
            assert rows[entry.arcname].hash == encode_digest(hashlib.sha256(data).digest())
    report = check_wheels([wheel])
    assert report.ok, report


@pytest.mark.parametrize("deflate", ["auto", "libdeflate", "zlib-ng", "zlib"])
def test_every_backend_writes_a_valid_wheel_independent_of_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 deflate: str) -> None:
    entries = _entries(tmp_path)
    outputs = []
    for cores in (1, 4):
        monkeypatch.setattr(os, "cpu_count", lambda cores=cores: cores)
        wheel = write_wheel(tmp_path / f"out{cores}" / "demo-1.0-py3-none-any.whl", entries, DIST, deflate=deflate)
        _assert_valid(wheel, entries)
        outputs.append(wheel.read_bytes())
    assert outputs[0] == outputs[1]


def test_members_above_the_whole_limit_are_streamed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipwriter, "WHOLE_MAX", 1 << 20)
    entries = _entries(tmp_path)
    wheel = write_wheel(tmp_path / "out" / "demo-1.0-py3-none-any.whl", entries, DIST, deflate="libdeflate")
    _assert_valid(wheel, entries)


def test_falls_back_cleanly_without_libdeflate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zipwriter.whole_backend.cache_clear()
    monkeypatch.setitem(sys.modules, "deflate", None)  # import deflate now raises ImportError
    try:
        assert zipwriter.whole_backend("libdeflate") is None
        assert zipwriter.whole_limit(6, "libdeflate") == zipwriter.PARALLEL_MIN
        entries = _entries(tmp_path)
        _assert_valid(write_wheel(tmp_path / "o" / "demo-1.0-py3-none-any.whl", entries, DIST, deflate="auto"),
                      entries)
    finally:
        zipwriter.whole_backend.cache_clear()


def test_libdeflate_is_used_when_installed_and_within_1_percent_of_zlib() -> None:
    pytest.importorskip("deflate", reason="libdeflate (PyPI deflate) is not installed")
    assert zipwriter.whole_backend("auto") is not None
    assert zipwriter.whole_backend("zlib-ng") is None and zipwriter.whole_backend("zlib") is None
    data = _real_bytes()
    for level in (1, 6, 9):
        ours = zipwriter.compress_whole(data, level, "libdeflate")
        assert zlib.decompress(bytes(ours), -15) == data
        assert len(ours) <= len(zlib.compress(data, level)) * 1.01, level


def test_cli_deflate_choices(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    (stage / "demo").mkdir(parents=True)
    (stage / "demo" / "__init__.py").write_bytes(_real_bytes()[: 2 << 20])
    sizes = {}
    for choice in ("libdeflate", "zlib"):
        out = tmp_path / choice
        result = run_cli("build", str(stage), "--name", "demo", "--version", "1.0", "-w", str(out),
                         "--deflate", choice)
        assert result.code == 0, result.err
        (wheel,) = out.glob("*.whl")
        assert run_cli("check", str(wheel)).code == 0
        sizes[choice] = wheel.stat().st_size
    assert sizes["libdeflate"] <= sizes["zlib"] * 1.01
