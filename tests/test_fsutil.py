"""dynawheel/fsutil.py: the one atomic file output and the one sha256 of a file."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from dynawheel.fsutil import sha256_hex, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_write_atomic_skips_a_file_that_holds_the_same_bytes(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    assert write_atomic(target, b"old", skip_same=True)
    os.utime(target, ns=(1, 1))
    assert not write_atomic(target, b"old", skip_same=True)
    assert target.stat().st_mtime_ns == 1  # not rewritten
    assert write_atomic(target, b"old")  # without skip_same: written again
    assert target.stat().st_mtime_ns != 1
    assert write_atomic(target, b"new", skip_same=True) and target.read_bytes() == b"new"


def test_write_atomic_modes(tmp_path: Path) -> None:
    secret = tmp_path / "htpasswd"
    write_atomic(secret, b"user:hash\n", 0o600)
    assert _mode(secret) == 0o600
    exe = tmp_path / "libx.dylib"
    exe.write_bytes(b"x")
    exe.chmod(0o750)
    write_atomic(exe, b"y", mode=None)  # None: the existing file's permissions
    assert (_mode(exe), exe.read_bytes()) == (0o750, b"y")
    write_atomic(tmp_path / "new", b"z", mode=None)
    assert _mode(tmp_path / "new") == 0o644


def test_write_atomic_keeps_old_content_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "page.html"
    write_atomic(target, b"old")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    with pytest.raises(OSError):
        write_atomic(tmp_path / "a" / "b" / "page.html", b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]  # no temporary file, no directory made


def test_sha256_hex_reads_in_chunks() -> None:
    data = os.urandom(3 * 1024 + 7)
    fp = io.BytesIO(data)
    assert sha256_hex(fp, chunk=1024) == hashlib.sha256(data).hexdigest()
    fp.seek(100)
    assert sha256_hex(fp) == hashlib.sha256(data[100:]).hexdigest()  # what is left to read
