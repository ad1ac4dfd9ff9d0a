"""The README's first command stays true: the demo runs end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo.py"), str(tmp_path / "demo")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = proc.stdout
    assert "add(1, 2) = 1003 | plugin() = 43 | mb ma platlib" in out
    assert not (tmp_path / "demo" / "stage" / "build").exists(), "installed after the build dir was deleted"
    mapped = next(line for line in out.splitlines() if line.startswith("mapped:"))
    assert "/venv/lib/python" in mapped and "/site-packages/anamespace/support-" in mapped
    assert "/stage/" not in mapped, "nothing is loaded from the build tree"
    assert ".whl.metadata HTTP/1.1\" 200" in out, "pip used the PEP 658 metadata"
    assert out.rstrip().endswith("demo: OK")
