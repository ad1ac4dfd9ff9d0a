"""In-process editing of Mach-O load commands for repair (thin and fat files, any host).

All edits of a file are planned first, for every slice: the new load commands are
built and their size compared with the space before the first section data.  If any
slice lacks room, :class:`~dynawheel.errors.HeaderSpaceError` is raised and nothing is
written.  Otherwise every slice is rewritten, the slices that need it (arm64, or
already signed) are ad-hoc re-signed (:mod:`.codesign`), and the file is written once
(temporary file + rename).

Edits: :class:`ChangeDependency` (LC_LOAD_DYLIB / WEAK / REEXPORT / LAZY / UPWARD
name), :class:`SetId` (LC_ID_DYLIB), :class:`DeleteRpath`, :class:`AddRpath`.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from .. import fsutil
from ..binary import BinaryFormat
from ..errors import BinaryFormatError, HeaderSpaceError, RepairError
from .codesign import needs_signature, sign_slice
from .edits import EditJob
from .macho import (
    DYLIB_KINDS,
    LC_CODE_SIGNATURE,
    LC_ID_DYLIB,
    LC_RPATH,
    LoadCommand,
    SliceHeader,
    headers_of_bytes,
    replace_slices,
)
from .macho_edits import MachoEdits

log = logging.getLogger(__name__)

HEADERPAD_HINT = "relink with -headerpad_max_install_names"


@dataclass(frozen=True)
class ChangeDependency:
    """Rename every dependency load command naming `old` to `new`."""

    old: str
    new: str


@dataclass(frozen=True)
class SetId:
    """Set LC_ID_DYLIB (the install name) of a dylib."""

    name: str


@dataclass(frozen=True)
class DeleteRpath:
    path: str


@dataclass(frozen=True)
class AddRpath:
    """Append an LC_RPATH (nothing happens if the slice already has it)."""

    path: str


Edit = Union[ChangeDependency, SetId, DeleteRpath, AddRpath]


@dataclass(frozen=True)
class SlicePlan:
    arch: str
    changes: tuple[str, ...]  # human-readable, in order
    need: int  # bytes of load commands after the edits (+ LC_CODE_SIGNATURE if it must be added)
    have: int  # bytes available for load commands (first section data - mach header)
    commands: bytes  # the new load commands
    ncmds: int

    @property
    def fits(self) -> bool:
        return self.need <= self.have


@dataclass(frozen=True)
class FilePlan:
    path: str
    fat: bool
    slices: tuple[SlicePlan, ...]

    @property
    def changed(self) -> bool:
        return any(s.changes for s in self.slices)

    def space_errors(self) -> list[str]:
        return [
            f"header too small in {self.path!r} ({s.arch}): need {s.need} bytes, have {s.have}; {HEADERPAD_HINT}"
            for s in self.slices
            if s.changes and not s.fits
        ]


# ---------------------------------------------------------------- encoding


def _lc_str_command(sl: SliceHeader, cmd: int, fixed: bytes, text: str) -> bytes:
    """A load command: (cmd, cmdsize, offset-of-string) + `fixed` + string, padded."""
    start = 12 + len(fixed)
    body = text.encode("utf-8", "surrogateescape") + b"\0"
    align = 8 if sl.is64 else 4
    size = (start + len(body) + align - 1) // align * align
    head = struct.pack(sl.endian + "III", cmd, size, start) + fixed
    return head + body + bytes(size - start - len(body))


def _dylib_command(sl: SliceHeader, lc: LoadCommand, name: str) -> bytes:
    fixed = sl.raw[lc.offset + 12 : lc.offset + 24]  # timestamp, current/compat versions
    return _lc_str_command(sl, lc.cmd, fixed, name)


def _rpath_command(sl: SliceHeader, path: str) -> bytes:
    return _lc_str_command(sl, LC_RPATH, b"", path)


# ---------------------------------------------------------------- planning


def _edit_command(
    sl: SliceHeader, lc: LoadCommand, edits: Sequence[Edit], path: str, changes: list[str]
) -> bytes | None:
    """New bytes for one command (b'' = delete it, None = keep it)."""
    if lc.cmd in DYLIB_KINDS or lc.cmd == LC_ID_DYLIB:
        name = sl.lc_str(lc, 8, path)
        for edit in edits:
            if isinstance(edit, ChangeDependency) and lc.cmd != LC_ID_DYLIB and edit.old == name:
                changes.append(f"dependency {name!r} -> {edit.new!r}")
                return _dylib_command(sl, lc, edit.new)
            if isinstance(edit, SetId) and lc.cmd == LC_ID_DYLIB and edit.name != name:
                changes.append(f"install name {name!r} -> {edit.name!r}")
                return _dylib_command(sl, lc, edit.name)
    elif lc.cmd == LC_RPATH:
        rpath = sl.lc_str(lc, 8, path)
        if any(isinstance(e, DeleteRpath) and e.path == rpath for e in edits):
            changes.append(f"delete rpath {rpath!r}")
            return b""
    return None


def plan_slice(sl: SliceHeader, edits: Sequence[Edit], path: str) -> SlicePlan:
    """The new load commands of one slice and the room they need."""
    changes: list[str] = []
    pieces: list[bytes] = []
    signature: list[bytes] = []  # LC_CODE_SIGNATURE stays the last command
    rpaths: set[str] = set()
    for lc in sl.commands:
        new = _edit_command(sl, lc, edits, path, changes)
        if lc.cmd == LC_RPATH and new is None:
            rpaths.add(sl.lc_str(lc, 8, path))
        piece = sl.raw[lc.offset : lc.offset + lc.size] if new is None else new
        (signature if lc.cmd == LC_CODE_SIGNATURE else pieces).append(piece)
    for edit in edits:
        if isinstance(edit, AddRpath) and edit.path not in rpaths:
            changes.append(f"add rpath {edit.path!r}")
            pieces.append(_rpath_command(sl, edit.path))
            rpaths.add(edit.path)
    pieces.extend(signature)
    commands = b"".join(pieces)
    need = len(commands)
    if changes and needs_signature(sl) and not sl.find(LC_CODE_SIGNATURE):
        need += 16
    ncmds = sum(1 for p in pieces if p)
    have = sl.low_offset() - sl.header_size
    return SlicePlan(sl.arch, tuple(changes), need, have, commands, ncmds)


def _check_used(edits: Sequence[Edit], headers: Sequence[SliceHeader], path: str) -> None:
    """An edit that matches nothing in any slice is a planning mistake: refuse it."""
    for edit in edits:
        if isinstance(edit, AddRpath):
            continue
        if not any(_matches(edit, sl, path) for sl in headers):
            raise RepairError(f"{path!r}: {_describe(edit)} matches no load command")


def _matches(edit: Edit, sl: SliceHeader, path: str) -> bool:
    if isinstance(edit, ChangeDependency):
        return any(sl.lc_str(lc, 8, path) == edit.old for lc in sl.find(*DYLIB_KINDS))
    if isinstance(edit, SetId):
        return bool(sl.find(LC_ID_DYLIB))
    if isinstance(edit, DeleteRpath):
        return any(sl.lc_str(lc, 8, path) == edit.path for lc in sl.find(LC_RPATH))
    return True


def _describe(edit: Edit) -> str:
    if isinstance(edit, ChangeDependency):
        return f"change of dependency {edit.old!r}"
    if isinstance(edit, SetId):
        return f"install name {edit.name!r} (the file has no LC_ID_DYLIB)"
    if isinstance(edit, DeleteRpath):
        return f"deletion of rpath {edit.path!r}"
    return f"rpath {edit.path!r}"


def plan(data: bytes, edits: Sequence[Edit], path: str = "<bytes>") -> FilePlan:
    """What `edits` would change in every slice and whether it fits; writes nothing."""
    try:
        is_fat, headers = headers_of_bytes(data, path)
        _check_used(edits, headers, path)
        return FilePlan(path, is_fat, tuple(plan_slice(sl, edits, path) for sl in headers))
    except struct.error as exc:
        raise BinaryFormatError(f"{path!r}: load command too short ({exc})") from None


# ---------------------------------------------------------------- applying


def _rewrite_slice(piece: bytes, sl: SliceHeader, sp: SlicePlan, path: str) -> bytes:
    buf = bytearray(piece)
    old_end = sl.cmds_end
    start = sl.header_size
    struct.pack_into(sl.endian + "II", buf, 16, sp.ncmds, len(sp.commands))
    buf[start : start + len(sp.commands)] = sp.commands
    new_end = start + len(sp.commands)
    if old_end > new_end:
        buf[new_end:old_end] = bytes(old_end - new_end)
    out = bytes(buf)
    if needs_signature(sl):
        out = sign_slice(out, path=path)
    return out


def apply(data: bytes, edits: Sequence[Edit], path: str = "<bytes>") -> bytes:
    """The file bytes after all `edits` (every slice), re-signed where needed.

    Raises HeaderSpaceError (before changing anything) when a slice lacks room.
    Returns `data` itself when nothing changes.
    """
    return apply_plan(data, plan(data, edits, path))


def apply_plan(data: bytes, fp: FilePlan) -> bytes:
    """Carry out a plan made by :func:`plan` on the same `data`."""
    errors = fp.space_errors()
    if errors:
        raise HeaderSpaceError("; ".join(errors))
    if not fp.changed:
        return data
    _, headers = headers_of_bytes(data, fp.path)
    pieces = []
    for sl, sp in zip(headers, fp.slices):
        piece = data[sl.offset : sl.offset + sl.size]
        if sp.changes:
            log.debug("%s (%s): %s", fp.path, sl.arch, "; ".join(sp.changes))
            piece = _rewrite_slice(piece, sl, sp, fp.path)
        pieces.append(piece)
    return replace_slices(data, pieces, fp.path) if fp.fat else pieces[0]


def edit_file(path: str, edits: Sequence[Edit], output: str | None = None) -> FilePlan:
    """Apply `edits` to the file at `path` in one write (to `output`, default in place).

    On any error the file is left untouched.  Returns the plan that was carried out.
    """
    with open(path, "rb") as f:
        data = f.read()
    fp = plan(data, edits, path)
    new = apply_plan(data, fp)
    if new is not data or output not in (None, path):
        fsutil.write_atomic(output or path, new, os.stat(path).st_mode & 0o7777)  # the input's permissions
    return fp


def edits_of(edits: MachoEdits) -> list[Edit]:
    """The load-command edits of a file's MachoEdits, in the order they are applied."""
    out: list[Edit] = [ChangeDependency(o, n) for o, n in sorted(edits.change_dependencies)]  # one order
    if edits.install_id:
        out.append(SetId(edits.install_id))
    out += [DeleteRpath(r) for r in edits.delete_rpaths]
    out += [AddRpath(r) for r in edits.add_rpaths]
    return out


class MachoEditor:
    """The Mach-O editor of platforms.Editor: every file is planned first; if any lacks header room,
    HeaderSpaceError names them all and no Mach-O file is written."""

    format = BinaryFormat.MACHO
    writes_from_source = False

    def prepare(self) -> None:
        pass

    def apply(self, jobs: Sequence[EditJob], done: Callable[[Path], None] | None = None) -> None:
        plans = [(job.path, plan(job.path.read_bytes(), edits_of(job.edits), job.label))  # planned under the
                 for job in jobs if isinstance(job.edits, MachoEdits)]  # tree path: errors name it, not the copy
        no_room = [error for _path, fp in plans for error in fp.space_errors()]
        if no_room:  # every file that lacks room, at once, before any Mach-O is written
            raise HeaderSpaceError("; ".join(no_room))
        for path, fp in plans:
            path.write_bytes(apply_plan(path.read_bytes(), fp))
            if done is not None:
                done(path)


def make_editor(*, in_process: bool = True) -> MachoEditor:
    del in_process  # always in process
    return MachoEditor()
