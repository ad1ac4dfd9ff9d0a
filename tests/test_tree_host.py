"""tree/local.py's HostFS below a sysroot: links followed as the kernel does under chroot(sysroot)."""

from __future__ import annotations

import os
from pathlib import Path

from dynawheel.tree import HostFS


def test_links_below_a_sysroot_are_followed_as_under_chroot(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").mkdir()
    (root / "a").mkdir()
    (root / "usr" / "lib" / "libz.so.1").write_bytes(b"z")
    (root / "b").write_bytes(b"b")
    os.symlink("/usr/lib/libz.so.1", root / "lib" / "libz.so.1")  # absolute: starts again at the sysroot
    os.symlink("../../../../usr/lib", root / "lib" / "up")  # '..' stops at the sysroot
    os.symlink("loop2", root / "lib" / "loop1")
    os.symlink("loop1", root / "lib" / "loop2")
    host, r = HostFS(str(root)), str(root)
    libz = f"{r}/usr/lib/libz.so.1"
    assert host.real(f"{r}/lib/libz.so.1") == libz
    assert host.real(f"{r}/lib/up/libz.so.1") == libz
    assert host.real(f"{r}/a/./../b") == host.real(f"{r}/a/../b") == f"{r}/b"
    assert host.real(f"{r}/lib/loop1") is None and host.real(f"{r}/nope") is None
    assert host.real(f"{r}/usr") is None  # a directory is no file
    with host.open(f"{r}/lib/libz.so.1") as fp:
        assert fp.read() == b"z"
