"""`show` explains why a Mach-O wheel does not get the oldest macOS tag of its arch (macosx_10_9; 11.0 for
arm64): the file, the slice, the macOS it needs and the fix, in text and JSON, from the one tag rule
(platform_tags).  Real dylibs linked here by ld64.lld with a chosen minimum (LC_BUILD_VERSION), which
llvm-objdump reads back independently."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_merge import CLANG, LD64, OBJDUMP, _link

pytestmark = pytest.mark.skipif(not (CLANG and LD64 and OBJDUMP), reason="needs clang-14, ld64.lld-14, llvm-objdump-14")


def _dylib(tmp_path: Path, minos: str) -> Path:
    source = tmp_path / "f.c"
    source.write_text("int f(void) { return 1; }\n")
    lib = _link("x86_64", tmp_path / "out" / "libf.dylib", source, "-dylib", "-install_name", "@rpath/libf.dylib",
                minos=minos)
    shown = subprocess.run([str(OBJDUMP), "--macho", "--private-headers", str(lib)], capture_output=True, text=True)
    # what the file says, read by LLVM: LC_BUILD_VERSION's minos, or LC_VERSION_MIN_MACOSX (before 10.14)
    assert f"minos {minos}" in shown.stdout or f"version {minos}" in shown.stdout, shown.stdout
    return lib


def _verdict(path: Path) -> dict[str, object]:
    shown = run_cli("show", "--json", path)
    assert shown.code == 0, shown.err
    (verdict,) = [v for v in json.loads(shown.out)["verdicts"] if v["format"] == "macho"]
    return verdict  # type: ignore[no-any-return]


def test_a_newer_minimum_is_explained(tmp_path: Path) -> None:
    lib = _dylib(tmp_path, "12.0")
    verdict = _verdict(lib)
    (why,) = verdict["explanations"]  # type: ignore[misc]
    assert why["tag"] == "macosx_10_9_x86_64" and why["file"].endswith("libf.dylib"), why
    assert why["subject"] == "macOS 12.0" and why["fix"] == "build with MACOSX_DEPLOYMENT_TARGET=10.9", why
    text = run_cli("show", lib).out
    assert "macOS 12.0" in text and "MACOSX_DEPLOYMENT_TARGET=10.9" in text, text


def test_the_oldest_tag_has_nothing_to_explain(tmp_path: Path) -> None:
    assert _verdict(_dylib(tmp_path, "10.9"))["explanations"] == []
