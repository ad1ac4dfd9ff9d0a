"""Atomic file output: write to a temporary file beside the target, then rename it into place; and the
one sha256 of a file's content.

A reader never sees half a file, and a failure leaves the target as it was and no temporary
file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError


def _temp_beside(final: Path) -> tuple[int, str]:
    import tempfile  # with shutil, random, bz2, lzma: not for a caller that writes nothing

    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise OutputError(f"cannot write to {str(final.parent)!r}: {exc.strerror}") from None


def _missing_dirs(directory: Path) -> list[Path]:
    """`directory` and its parents that do not exist yet, innermost first."""
    return [d for d in (directory, *directory.parents) if not d.exists()]


@contextmanager
def atomic_output(final: str | os.PathLike[str], mode: int | None = 0o644) -> Iterator[BinaryIO]:
    """A binary file that becomes `final` when the block ends without error.

    `mode`: the new file's permissions; None keeps those of an existing `final` (0o644 if none).
    """
    final = Path(final)
    if mode is None:
        try:
            mode = final.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
    created = _missing_dirs(final.parent)  # removed again on failure
    fd, tmp = _temp_beside(final)
    try:
        with os.fdopen(fd, "wb") as fp:
            yield fp
        os.chmod(tmp, mode)
        os.replace(tmp, final)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        for made in created:  # innermost first; a directory someone else filled meanwhile stays
            with suppress(OSError):
                made.rmdir()
        raise


def write_atomic(final: str | os.PathLike[str], data: bytes, mode: int | None = 0o644, *,
                 skip_same: bool = False) -> bool:
    """Write `data` to `final` atomically (`mode` as for :func:`atomic_output`); True when written.
    `skip_same`: a `final` that already holds exactly `data` is left alone (not rewritten, its mtime kept)."""
    if skip_same:
        try:
            if os.stat(final).st_size == len(data) and Path(final).read_bytes() == data:
                return False
        except OSError:
            pass
    with atomic_output(final, mode) as fp:
        fp.write(data)
    return True


def sha256_hex(fp: BinaryIO, chunk: int = 1 << 20) -> str:
    """The sha256 (hex) of what is left to read in `fp`, read `chunk` bytes at a time."""
    import hashlib

    digest = hashlib.sha256()
    while data := fp.read(chunk):
        digest.update(data)
    return digest.hexdigest()
