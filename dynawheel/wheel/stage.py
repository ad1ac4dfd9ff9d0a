"""Collect the files of a wheel: a staged directory and/or copy steps ('SRC:DEST', globs allowed).

Symlinks are followed (a wheel cannot hold links, so their content is stored); a link that
leaves the directory being added, dangles or loops is an error naming it.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ..errors import StageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddStep:
    """Copy `source` (a path or glob) to `dest` inside the wheel.

    `dest` ending in '/' (or empty) is a directory: files keep their base names and
    directories keep their names below it.  Otherwise `dest` is the exact new name.
    """

    source: str
    dest: str = ""
    base: Path | None = None  # relative sources are relative to this (default: cwd)

    @classmethod
    def parse(cls, spec: str, base: Path | None = None) -> AddStep:
        src, sep, dest = spec.rpartition(":")
        if not sep or not src:
            raise StageError(f"invalid --add {spec!r}: expected SRC:DEST (DEST may be empty for the root)")
        return cls(src, dest, base)


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk(top: Path, root: Path, real_root: Path, seen: tuple[Path, ...]) -> Iterator[tuple[str, Path]]:
    """Yield (path relative to `root`, real file) below `top`, following safe links."""
    try:
        entries = sorted(os.scandir(top), key=lambda e: e.name)
    except OSError as exc:
        raise StageError(f"cannot read directory {str(top)!r}: {exc.strerror}") from None
    for entry in entries:
        path = Path(entry.path)
        rel = path.relative_to(root).as_posix()
        real = _real(path, rel, real_root)
        if real.is_dir():
            resolved = real.resolve()
            if resolved in seen:
                raise StageError(f"symlink loop at {rel!r} (-> {str(resolved)!r})")
            yield from _walk(path, root, real_root, (*seen, resolved))
        elif real.is_file():
            yield rel, real
        else:
            raise StageError(f"{rel!r} is not a regular file or directory")


def _real(path: Path, rel: str, real_root: Path) -> Path:
    if not path.is_symlink():
        return path
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise StageError(f"dangling symlink {rel!r} (-> {os.readlink(path)!r})") from None
    except RuntimeError:
        raise StageError(f"symlink loop at {rel!r}") from None
    if not _inside(real, real_root):
        raise StageError(f"symlink {rel!r} leaves the staged tree (-> {str(real)!r})")
    return real


def walk_tree(root: Path) -> Iterator[tuple[str, Path]]:
    """Every file below `root` as (posix relative path, file to read)."""
    if not root.is_dir():
        raise StageError(f"stage directory {str(root)!r} does not exist or is not a directory")
    real_root = root.resolve()
    yield from _walk(root, root, real_root, (real_root,))


S = TypeVar("S", bound="StageFiles")


@dataclass
class StageFiles:
    """The files of a wheel-to-be: arcname -> file on disk (the public :class:`dynawheel.Stage`, which
    can also build itself, is this plus ``build()``: wheel/build.py).

    >>> StageFiles().add("build/lib/*.so", "anamespace/").add_tree("src")   # doctest: +SKIP
    """

    files: dict[str, Path] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def _put(self, arcname: str, source: Path, origin: str) -> None:
        if arcname in self.files and self.files[arcname] != source:
            raise StageError(
                f"two files would be packed as {arcname!r}: {self.origins[arcname]!r} and {origin!r}"
            )
        self.files[arcname] = source
        self.origins[arcname] = origin

    def add_tree(self: S, root: str | Path, dest: str = "", *, exclude: Iterable[str] = ()) -> S:
        """Add everything below directory `root` under `dest` (a directory inside the wheel)."""
        root = Path(root)
        prefix = _dir_prefix(dest)
        skip = set(exclude)
        for rel, real in walk_tree(root):
            if rel in skip:
                continue
            self._put(prefix + rel, real, str(root / rel))
        return self

    def add(self: S, source: str | Path, dest: str = "", *, base: Path | None = None) -> S:
        """Add a file, directory or glob; see AddStep for the meaning of `dest`."""
        return self.add_step(AddStep(str(source), dest, base))

    def add_step(self: S, step: AddStep) -> S:
        base = step.base or Path.cwd()
        pattern = step.source if os.path.isabs(step.source) else str(base / step.source)
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(step.source) else [pattern]
        if not matches or not os.path.lexists(matches[0]):
            raise StageError(f"--add source {step.source!r} matches nothing (looked in {str(base)!r})")
        is_dir_dest = step.dest == "" or step.dest.endswith("/")
        if len(matches) > 1 and not is_dir_dest:
            raise StageError(f"--add {step.source!r} matches {len(matches)} files; DEST {step.dest!r} must end in '/'")
        for match in matches:
            self._add_one(Path(match), step.dest, is_dir_dest)
        return self

    def _add_one(self, src: Path, dest: str, is_dir_dest: bool) -> None:
        target = _dir_prefix(dest) + src.name if is_dir_dest else dest.strip("/")
        if src.is_dir():
            self.add_tree(src, target + "/")
        elif src.is_file():
            self._put(target, src.resolve(), str(src))
        else:
            raise StageError(f"--add source {str(src)!r} is not a file or directory")



def _dir_prefix(dest: str) -> str:
    dest = dest.strip("/")
    return dest + "/" if dest else ""
