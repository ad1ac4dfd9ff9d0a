"""Shared test helpers: run the CLI, make fresh venvs, build the seed's example with gcc."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
sys.path.insert(0, str(FIXTURES / "seed"))


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> Result:
    """Run `python -m dynawheel ARGS` as a user would; return exit code and output."""
    proc = subprocess.run(
        [sys.executable, "-m", "dynawheel", *map(str, args)],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=600,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_user_error(result: Result, *fragments: str) -> None:
    """A user error: exit 1, one line on stderr naming the value, no traceback."""
    assert result.code == 1, (result.code, result.out, result.err)
    assert "Traceback" not in result.err, result.err
    lines = [line for line in result.err.splitlines() if line.startswith("dynawheel: error:")]
    assert len(lines) == 1, result.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@dataclass
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        out = self.run("-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
        return Path(out.strip())

    def run(self, *args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> str:
        proc = subprocess.run([str(self.python), *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, timeout=600)
        if check and proc.returncode != 0:
            raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout + proc.stderr

    def pip(self, *args: str | Path) -> str:
        return self.run("-m", "pip", "--disable-pip-version-check", "--no-input", *args)

    def files(self) -> set[str]:
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}


def make_venv(path: Path, with_pip: bool = True) -> Venv:
    venv.EnvBuilder(with_pip=with_pip, clear=True, symlinks=True).create(path)
    return Venv(path)


@pytest.fixture()
def fresh_venv(tmp_path: Path) -> Venv:
    return make_venv(tmp_path / "venv")


@pytest.fixture(scope="session")
def seed_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's pkg1/pkg2 stages, built with gcc (support.so beside the extension)."""
    import stage_seed  # fixtures/seed/stage_seed.py

    return stage_seed.build(tmp_path_factory.mktemp("seed") / "tree")


SBOM_FILE = "dynawheel.cdx.json"  # what repair writes (repair/sbom.py), in .dist-info/sboms/ or a stage's root


def written_sboms(root: Path) -> list[tuple[str, bytes]]:
    """Every SBOM dynawheel wrote below `root`: (where, its bytes), in wheels and as files."""
    import zipfile

    found: list[tuple[str, bytes]] = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            if name == SBOM_FILE:
                found.append((path, Path(path).read_bytes()))
            elif name.endswith(".whl"):
                try:
                    with zipfile.ZipFile(path) as zf:
                        found += [(f"{path}!{m}", zf.read(m)) for m in zf.namelist()
                                  if m.endswith(f".dist-info/sboms/{SBOM_FILE}")]
                except (OSError, ValueError, EOFError, RuntimeError, NotImplementedError, zipfile.BadZipFile):
                    continue  # a test's deliberately broken or hostile wheel
    return found


@pytest.fixture(scope="session", autouse=True)
def every_sbom_is_valid_cyclonedx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the tests (of this worker): every SBOM they made repair write passes cyclonedx-python-lib's
    CycloneDX 1.6 JSON-schema validator (the independent check of repair/sbom.py, which writes JSON itself)."""
    yield
    sboms = written_sboms(tmp_path_factory.getbasetemp())
    if not sboms:
        return
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    validator = JsonStrictValidator(SchemaVersion.V1_6)
    invalid = {where: str(error) for where, data in sboms
               if (error := validator.validate_str(data.decode())) is not None}
    assert not invalid, f"{len(invalid)} of {len(sboms)} SBOMs written by the tests are not CycloneDX 1.6: {invalid}"


# CI installs every tool (scripts/setup.sh): there, a skip means a whole format or client went
# untested, so it fails the run.  Only these reasons are facts of the machine, not missing tools.
ALLOWED_SKIPS_IN_CI = ("running as root", "ld.so cannot list", "non-Windows branch")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIPS_IN_CI):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where scripts/setup.sh installs every tool: {reason}"
    return None


def unshare_problem() -> str | None:
    """Why a private mount namespace with bind mounts (to hide system libraries or make a read-only
    output directory) cannot be used here; None when it can."""
    import shutil

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "needs root and unshare(1)"
    proc = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /dev/null /dev/null"], capture_output=True,
                          text=True)
    return None if proc.returncode == 0 else f"unshare -m is not permitted here: {proc.stderr.strip()}"


def pypi_problem(project: str, need: str) -> str | None:
    """Why PyPI cannot serve `project` here (`need` says what the test wanted from it); None when it can."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"https://pypi.org/simple/{project}/", timeout=20):
            return None
    except OSError as exc:
        return f"PyPI is unreachable ({exc}): {need}"
