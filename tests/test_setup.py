"""The README's set-up (`make setup`, run by `make demo` and `make test`) in a fresh checkout installs into the
project's own .venv/ and leaves the interpreter that created it untouched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def _checkout(dest: Path) -> None:
    """The tracked files as they are on disk: what a fresh clone of this commit (plus edits) holds."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _packages(python: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([str(python), "-m", "pip", "list", "--disable-pip-version-check", "--format=freeze"],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.network  # make setup installs dynawheel's dependencies from PyPI
def test_make_setup_uses_its_own_venv(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists() or shutil.which("make") is None:
        pytest.skip("needs git, make and a git checkout of dynawheel")
    base = Path(sys.base_prefix) / "bin" / "python3"  # the interpreter this venv was made from: a user's python3
    assert base.exists(), base
    clone = tmp_path / "clone"
    _checkout(clone)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHON")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(sys.prefix))
    before = _packages(base, env)
    proc = subprocess.run(["make", "setup", f"PYTHON={base}"], cwd=clone, capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _packages(base, env) == before, "make setup changed the packages of the interpreter that runs it"
    assert (clone / ".venv" / ".setup-done").exists()
    # the README's way to use it: .venv/bin/dynawheel runs the clone's code
    venv_python = clone / ".venv" / "bin" / "python"
    where = subprocess.run([str(venv_python), "-c", "import dynawheel; print(dynawheel.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert Path(where) == clone / "dynawheel" / "__init__.py"
    version = subprocess.run([str(clone / ".venv" / "bin" / "dynawheel"), "--version"], capture_output=True, text=True,
                             env=env, check=True).stdout
    assert version.startswith("dynawheel ")
    # a second `make setup` has nothing to do
    again = subprocess.run(["make", "setup", f"PYTHON={base}"], cwd=clone, capture_output=True, text=True, env=env,
                           timeout=120)
    assert again.returncode == 0 and "setup.sh" not in again.stdout, again.stdout
