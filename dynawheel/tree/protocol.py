"""The :class:`Tree` protocol: every file of a tree under one absolute posix root; and the one rule for a
safe relative path (no '..', no absolute or drive path)."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import BinaryIO, Protocol

from ..errors import WheelFormatError


class Tree(Protocol):
    root: str  # absolute posix path, the tree's place in the resolver's namespace

    @property
    def broken(self) -> Mapping[str, str]:
        """Files seen but not usable (a link out of the tree...): rel -> why."""
        ...

    def close(self) -> None:
        """Release what the tree holds open (nothing for a directory)."""
        ...

    def files(self) -> list[str]:
        """Relative posix paths of every regular file (symlinks to files included), sorted."""
        ...

    def open(self, rel: str) -> BinaryIO:
        """A seekable binary reader for a file of the tree."""
        ...

    def head(self, rel: str, size: int) -> bytes:
        """The first `size` bytes of a file (cheap, for sniffing)."""
        ...

    def size(self, rel: str) -> int:
        """Size in bytes (uncompressed), 0 when unknown."""
        ...

    def exists(self, rel: str) -> bool: ...

    def is_file(self, rel: str) -> bool: ...

    def identity(self, rel: str) -> str:
        """The same string for two names of one file (symlinks resolved)."""
        ...


def in_tree(root: str, path: str) -> str | None:
    """`path` relative to `root` when it lies inside it, else None."""
    if path == root:
        return ""
    prefix = root.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def check_rel(rel: str, where: str) -> str:
    if (rel and rel[0] not in "/." and rel[-1] != "/" and rel[1:2] != ":" and "\\" not in rel and "/." not in rel
            and "//" not in rel):
        return rel  # performance: already normal and safe (no '.', '..' or empty part); most names are
    norm = posixpath.normpath(rel) if rel else ""
    if rel.startswith("/") or "\\" in rel or norm == ".." or norm.startswith("../") or (
        len(rel) > 1 and rel[1] == ":"
    ):
        raise WheelFormatError(f"unsafe member name {rel!r} in {where!r}")
    return "" if norm == "." else norm
