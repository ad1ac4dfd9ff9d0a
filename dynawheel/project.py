"""A project built by its own commands: `[tool.dynawheel]` run steps, add entries, repair, and the sdist.

This is the library behind the PEP 517 backend (:mod:`dynawheel.backend`)::

    [tool.dynawheel]
    build-requires = ["cmake>=3.18"]                      # installed by the front end before the build
    run = ["cmake -S . -B build", "cmake --build build"]  # steps, in order, like a Dockerfile's RUN lines
    add = [{ from = "build/*.so", to = "greet/" }, { from = "python/greet", to = "greet" }]
    repair = true                                         # vendor what the binaries need, tag from content
    sdist-exclude = ["docs/*.pdf"]                        # beside the default exclusions (see SDIST_SKIP)

A step is a string run by ``/bin/sh -c`` (shell form) or a list of arguments run as is (exec form), with the
project root as working directory, its output going where this process's output goes, and ``PYTHON`` set to
the interpreter that builds (the front end's, in its isolated environment).
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import logging
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BuildStepError, MetadataError, StageError
from .fsutil import atomic_output
from .wheel.assemble import dist_info_name
from .wheel.build import BuildOptions, build
from .wheel.metadata import MetadataOptions, ProjectMetadata, from_project_table, read_pyproject

log = logging.getLogger(__name__)

PYPROJECT = "pyproject.toml"
# never in an sdist: version control, virtual environments, caches, build outputs (directory names)
SDIST_SKIP = (".*", "__pycache__", "build", "dist", "*.egg-info", "wheelhouse")
_EPOCH_1980 = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip can hold (as for wheels)


@dataclass(frozen=True)
class Project:
    """A project directory and its pyproject.toml: [project] (PEP 621) and [tool.dynawheel]."""

    root: Path
    project: dict[str, Any]
    tool: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> Project:
        config = root / PYPROJECT
        if not config.is_file():
            raise MetadataError(f"no {PYPROJECT} in {str(root)!r}: the build backend needs one")
        project, tool = read_pyproject(config)
        if project is None:
            raise MetadataError(f"{str(config)!r} has no [project] table (PEP 621): name and version go there")
        return cls(root, project, tool)

    def metadata(self) -> ProjectMetadata:
        return from_project_table(self.project, self.root, MetadataOptions())

    def build_requires(self) -> list[str]:
        return self._strings("build-requires")

    def steps(self) -> list[str | list[str]]:
        steps = self.tool.get("run", [])
        if isinstance(steps, str):
            steps = [steps]
        ok = isinstance(steps, list) and all(
            isinstance(s, str) or (isinstance(s, list) and s and all(isinstance(a, str) for a in s)) for s in steps)
        if not ok:
            raise MetadataError(f"[tool.dynawheel] run must be a list of commands (strings, or lists of "
                                f"arguments): {steps!r}")
        return list(steps)

    def repair(self) -> bool:
        value = self.tool.get("repair", False)
        if not isinstance(value, bool):
            raise MetadataError(f"[tool.dynawheel] repair must be true or false: {value!r}")
        return value

    def _strings(self, key: str) -> list[str]:
        value = self.tool.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise MetadataError(f"[tool.dynawheel] {key} must be a list of strings: {value!r}")
        return list(value)

    def sdist_exclude(self) -> list[str]:
        return self._strings("sdist-exclude")


def run_steps(project: Project) -> None:
    """Run the `run` steps in order in the project root; the first that fails stops the build."""
    steps = project.steps()
    env = {**os.environ, "PYTHON": sys.executable}
    for number, step in enumerate(steps, 1):
        argv = ["/bin/sh", "-c", step] if isinstance(step, str) else step
        shown = step if isinstance(step, str) else " ".join(step)
        log.info("run step %d of %d: %s", number, len(steps), shown)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            code = subprocess.run(argv, cwd=project.root, env=env, check=False).returncode
        except OSError as exc:
            raise BuildStepError(f"[tool.dynawheel] run step {number} of {len(steps)} ({shown!r}) could not "
                                 f"start: {exc.strerror}: {argv[0]!r}") from None
        if code != 0:
            raise BuildStepError(f"[tool.dynawheel] run step {number} of {len(steps)} failed with exit code "
                                 f"{code}: {shown!r} (in {str(project.root)!r})")


def build_project_wheel(project: Project, wheel_dir: Path) -> Path:
    """Run the steps, pack the `add` entries with the [project] metadata, repair when asked."""
    run_steps(project)
    opts = BuildOptions(pyproject=project.root / PYPROJECT)
    if not project.repair():
        return build(opts, wheel_dir).path
    from .repair.options import RepairOptions
    from .repair.pipeline import repair_wheel
    from .search import SearchPaths

    with tempfile.TemporaryDirectory(prefix="dynawheel-build-") as tmp:
        raw = build(opts, Path(tmp)).path
        result = repair_wheel(raw, wheel_dir, RepairOptions(search=SearchPaths.from_host()))
        for note in result.notes:
            log.info("repair: %s", note)
        if result.output is None:  # pragma: no cover - only a dry run has no output
            raise StageError(f"repairing {raw.name!r} wrote nothing")
        log.info("repaired: %d librar%s vendored, tagged %s", len(result.collection.vendored),
                 "y" if len(result.collection.vendored) == 1 else "ies", result.tags)
        return result.output


def write_metadata(project: Project, metadata_dir: Path) -> str:
    """prepare_metadata_for_build_wheel: `<name>-<version>.dist-info/` with METADATA (and entry_points.txt)."""
    meta = project.metadata()
    name = dist_info_name(meta)
    target = metadata_dir / name
    target.mkdir(parents=True, exist_ok=True)
    with atomic_output(target / "METADATA") as fp:
        fp.write(meta.metadata)
    if meta.entry_points:
        with atomic_output(target / "entry_points.txt") as fp:
            fp.write(meta.entry_points)
    return name


# ---- sdist ----------------------------------------------------------------------------------------------

def _skipped(rel: str, name: str, is_dir: bool, exclude: Sequence[str]) -> bool:
    if is_dir and any(fnmatch.fnmatchcase(name, pat) for pat in SDIST_SKIP):
        return True
    return name.endswith((".pyc", ".pyo")) or any(fnmatch.fnmatchcase(rel, pat) for pat in exclude)


def sdist_files(project: Project, also_skip: Sequence[Path] = ()) -> Iterator[tuple[str, Path]]:
    """(relative path, file) of every source file of the project, sorted; symlinks inside the project are
    stored as the file they point to, symlinks out of it are an error."""
    root = project.root.resolve()
    skip = {p.resolve() for p in also_skip}
    exclude = project.sdist_exclude()

    def walk(directory: Path) -> Iterator[tuple[str, Path]]:
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            is_dir = entry.is_dir()
            if path.resolve() in skip or _skipped(rel, entry.name, is_dir, exclude):
                continue
            real = path.resolve()
            if real != root and root not in real.parents:
                raise StageError(f"{rel!r} is a symlink out of the project (-> {str(real)!r}): not put in the sdist")
            if is_dir:
                if not entry.is_symlink():
                    yield from walk(path)
            elif real.is_file():
                yield rel, real

    return walk(root)


def _source_date() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return _EPOCH_1980
    try:
        return max(int(value), _EPOCH_1980)
    except ValueError:
        raise MetadataError(f"SOURCE_DATE_EPOCH must be a number of seconds: {value!r}") from None


def _tar_info(arcname: str, size: int, mtime: int, executable: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = size, mtime, 0o755 if executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_sdist(project: Project, sdist_dir: Path) -> Path:
    """A reproducible `<name>-<version>.tar.gz`: the sources, pyproject.toml and PKG-INFO under one top
    directory; sorted members, owner 0/0, modes 0644/0755, times from SOURCE_DATE_EPOCH (or 1980-01-01), a
    gzip header without name or time: the same sources give the same bytes."""
    meta = project.metadata()
    top = dist_info_name(meta)[: -len(".dist-info")]
    mtime = _source_date()
    members = [(f"{top}/PKG-INFO", None)] + [(f"{top}/{rel}", path) for rel, path in
                                              sdist_files(project, also_skip=[sdist_dir])]
    target = sdist_dir / f"{top}.tar.gz"
    with atomic_output(target) as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, path in sorted(members, key=lambda m: m[0]):
            data = meta.metadata if path is None else path.read_bytes()
            executable = path is not None and bool(path.stat().st_mode & stat.S_IXUSR)
            tar.addfile(_tar_info(arcname, len(data), mtime, executable), io.BytesIO(data))
    return target


# ---- editable (PEP 660) -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class EditableLayout:
    """Where an editable install imports from: directories put on sys.path by a .pth file, and the
    files the steps built that were copied into place inside them."""

    path_entries: tuple[Path, ...]
    placed: tuple[tuple[Path, Path], ...]  # (built file, its copy in a path entry)


def editable_layout(project: Project) -> EditableLayout:
    """A directory on disk whose files sit at their wheel paths (`python/` for `python/greet/__init__.py` packed
    as `greet/__init__.py`) is put on sys.path; every other file of the wheel (a binary the steps left in
    `build/`) is copied into place there, as `setup.py build_ext --inplace` does."""
    from .wheel.build import _tool_options, collect

    stage = collect(_tool_options(BuildOptions(), project.tool, project.root), None)
    root = project.root.resolve()
    entries: dict[str, Path] = {}  # top-level name -> the directory that holds it
    for arcname, source in sorted(stage.files.items()):
        src = source.resolve()
        if root in src.parents and src.as_posix().endswith("/" + arcname):
            entries.setdefault(arcname.split("/")[0], Path(src.as_posix()[: -len(arcname) - 1]))
    placed: list[tuple[Path, Path]] = []
    for arcname, source in sorted(stage.files.items()):
        top = arcname.split("/")[0]
        if top not in entries:
            raise StageError(f"editable install: {arcname!r} has no directory in the project to live in (add the "
                             f"Python sources of {top!r} with an `add` entry, e.g. {{ from = \"python/{top}\", "
                             f"to = \"{top}\" }})")
        target = entries[top] / arcname
        if target.resolve() != source.resolve():
            placed.append((source, target))
    return EditableLayout(tuple(sorted(set(entries.values()))), tuple(placed))


def build_project_editable(project: Project, wheel_dir: Path) -> Path:
    """PEP 660: run the steps, copy what they built into place, and pack a wheel that holds only a .pth
    naming the project's source directories (Python edits are live; a rebuild is `pip install -e .` again,
    or the steps run by hand)."""
    run_steps(project)
    layout = editable_layout(project)
    for source, target in layout.placed:
        log.info("editable: %s -> %s (in place)", source, target)
        partial = target.with_name(f".{target.name}.dynawheel-tmp")
        shutil.copy2(source, partial)
        os.replace(partial, target)
    meta = project.metadata()
    from .wheel.assemble import WheelSpec, assemble
    from .wheel.tags import interpreter_tags, parse_tags

    tags = interpreter_tags() if layout.placed else parse_tags("py3-none-any")  # built files: this interpreter's
    with tempfile.TemporaryDirectory(prefix="dynawheel-editable-") as tmp:
        name = f"_dynawheel_editable_{dist_info_name(meta).split('-')[0]}.pth"
        pth = Path(tmp) / name
        pth.write_text("".join(f"{entry}\n" for entry in layout.path_entries), encoding="utf-8")
        wheel, _notes = assemble({name: pth}, WheelSpec(meta, tags, tags.is_pure), wheel_dir)
        return wheel
