"""Where the files under analysis come from: a staged directory, a wheel, or one binary.

A :class:`Tree` gives every file a place in one absolute posix namespace: ``tree.root``
joined with the file's relative path.  For a directory that root is the directory's real
path (so ``$ORIGIN`` and absolute run paths line up with the host), for a wheel it is a
virtual directory ``/<wheel file name>`` that does not exist on the host.  Paths outside
the tree are read through :class:`HostFS`.

Nothing here extracts a wheel to disk: members are read from the zip.
"""

from __future__ import annotations

import os

from ..errors import StageError
from .local import DirTree, FileTree, HostFS
from .protocol import Tree, in_tree
from .wheel import STREAM_ABOVE, WheelTree

__all__ = ["STREAM_ABOVE", "DirTree", "FileTree", "HostFS", "Tree", "WheelTree", "in_tree", "open_tree"]


def open_tree(path: str | os.PathLike[str]) -> DirTree | WheelTree:
    """The tree for a ``.whl``, a directory or one file."""
    text = os.fspath(path)
    if os.path.isdir(text):
        return DirTree(text)
    if not os.path.exists(text):
        raise StageError(f"no such file or directory: {text!r}")
    if text.endswith(".whl"):
        return WheelTree(text)
    return FileTree(text)
