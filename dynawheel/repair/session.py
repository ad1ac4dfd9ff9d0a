"""The performance plumbing of a repair, in one place: what starts early, what runs beside what.

A repair reads as a pipeline (analyze -> collect -> plan -> apply -> retag -> write, see pipeline.py);
a session makes it fast without the pipeline knowing how:

- the wheel's big binaries start inflating on a thread while the analysis sniffs (``prefetch``),
  and the binaries the repair edits are read again from memory (``keep_reads``);
- every member's RECORD hash is checked on background threads from before the analysis; the members
  the analysis inflates anyway are hashed by it (``SharedDigests``) and not inflated again, the ones
  the repair rewrites are not checked at all (``analysed``);
- the editors' tools (patchelf) are found and version-checked on a thread beside the analysis;
- edited files are compressed as soon as they are written (``Packer.pack_soon``), and a content added
  as bytes under several names (a package's license file, shipped for each of its libraries) once.

The order of these steps matters; only this module knows it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ..binary import BinaryFormat
from ..errors import WheelFormatError
from ..magic import BINARY_MAGIC
from ..tree import DirTree, WheelTree
from ..wheel.archive import Packer
from ..wheel.record import MAX_RECORD, encode_digest, parse_record
from ..wheel.tags import dist_info_dirs, find_dist_info
from ..wheel.text import MAX_METADATA, MAX_WHEEL, check_metadata, check_wheel_file
from ..wheel.verify import RecordCheck, SharedDigests
from ..wheel.zipread import READ_ERRORS, read_member
from .apply import Editors

T = TypeVar("T")


def _record_todo(zf: zipfile.ZipFile, dist_info: str, wheel: Path) -> tuple[list[tuple[zipfile.ZipInfo, str]],
                                                                             dict[str, str]]:
    """(every member but RECORD with its RECORD hash, the hash of every RECORD row); RECORD's list
    and sizes must agree with the zip."""
    if f"{dist_info}/RECORD" not in zf.NameToInfo:
        raise WheelFormatError(f"broken wheel {wheel.name!r}: no {dist_info}/RECORD")
    rows = parse_record(read_member(zf, f"{dist_info}/RECORD", wheel.name, MAX_RECORD), f"{wheel.name}: RECORD")
    listed = {r.path: r for r in rows}
    todo: list[tuple[zipfile.ZipInfo, str]] = []
    for info in zf.infolist():
        if info.is_dir() or info.filename.startswith(f"{dist_info}/RECORD"):
            continue
        row = listed.get(info.filename)
        if row is None or not row.hash:
            raise WheelFormatError(f"broken RECORD in {wheel.name!r}: {info.filename!r} is not listed with a hash")
        if row.size is not None and row.size != info.file_size:
            raise WheelFormatError(f"broken RECORD in {wheel.name!r}: {info.filename!r} is {info.file_size} bytes, "
                                   f"RECORD says {row.size}")
        todo.append((info, row.hash))
    in_zip = set(zf.NameToInfo)
    gone = sorted(p for p in listed if p not in in_zip and not p.startswith(f"{dist_info}/RECORD"))
    if gone:
        raise WheelFormatError(f"broken RECORD in {wheel.name!r}: it lists {gone[0]!r}, which is not in the wheel"
                               + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""))
    return todo, {p: r.hash for p, r in listed.items()}


def _verify_whole(zf: zipfile.ZipFile, wheel: Path, hashes: Mapping[str, str]) -> None:
    """Every member read as pip reads it (CRC checked) and hashed against RECORD: a wheel copied
    unchanged must install."""
    for info in zf.infolist():
        expected = hashes.get(info.filename)
        if info.is_dir() or not expected:
            continue
        digest = hashlib.new(expected.partition("=")[0])
        try:
            with zf.open(info) as fp:
                while chunk := fp.read(1 << 20):
                    digest.update(chunk)
        except READ_ERRORS as exc:
            raise WheelFormatError(f"cannot read {info.filename!r} from {wheel.name!r}: {exc}") from None
        if encode_digest(digest.digest(), digest.name) != expected:
            raise WheelFormatError(f"broken RECORD in {wheel.name!r}: the hash of {info.filename!r} does not "
                                   f"match {expected!r}")


def _wheel_texts(zf: zipfile.ZipFile, dist_info: str, wheel: Path) -> tuple[bytes, bytes]:
    """(WHEEL, METADATA) of the wheel, both read and parsed (a broken one is refused, before any work)."""
    wheel_file = read_member(zf, f"{dist_info}/WHEEL", wheel.name, MAX_WHEEL)
    check_wheel_file(wheel_file, f"{wheel.name}: WHEEL")
    metadata = read_member(zf, f"{dist_info}/METADATA", wheel.name, MAX_METADATA)
    check_metadata(metadata, f"{wheel.name}: METADATA")
    return wheel_file, metadata


def _early_record_check(zf: zipfile.ZipFile, wheel: Path, dist_info: str, shared: SharedDigests | None = None
                        ) -> tuple[RecordCheck, dict[str, str]] | None:
    """Performance: start hashing every member listed in RECORD on background threads before the
    analysis, which runs on one core; with RECORD's hashes.  None when RECORD is unusable
    (_check_record says why, after the analysis).  Members the analysis hashes into `shared` (it
    inflates the binaries anyway) are not inflated again."""
    try:
        todo, hashes = _record_todo(zf, dist_info, wheel)
        # one core fewer than there are: the analysis keeps one busy (measured on 2 cores, torch: -0.2 s);
        # on 2 cores the analysis (its main thread, the big binaries' inflation and hashing) keeps both
        # busy: the check waits for it to end
        cores = os.cpu_count() or 2
        return RecordCheck(wheel, todo, workers=max(1, cores - 1), shared=shared, hold_all=cores <= 2), hashes
    except (OSError, zipfile.BadZipFile, WheelFormatError):
        return None


def _check_record(zf: zipfile.ZipFile, dist_info: str, wheel: Path,
                  early: tuple[RecordCheck, dict[str, str]] | None = None,
                  shared: SharedDigests | None = None) -> tuple[dict[str, str], RecordCheck]:
    """The input RECORD's hashes; its list and sizes must agree with the zip.  The content hashes are
    checked on background threads (performance: inflate + sha256 of every member overlaps analysis,
    patching and writing; see wheel/verify.py): wait() on the RecordCheck before the output is committed.
    `early` (_early_record_check) was made from the same RECORD and zip, with the same checks."""
    if early is not None:
        return early[1], early[0]
    todo, hashes = _record_todo(zf, dist_info, wheel)
    check = RecordCheck(wheel, todo, shared=shared)
    check.reader_done()  # the analysis is over: what it hashed is in `shared`
    return hashes, check


class TreeSession:
    """A staged directory's repair: the editors, and patchelf checked beside the analysis."""

    def __init__(self, target: Path, *, dry_run: bool, elf_editor: str = "auto") -> None:
        self.tree = DirTree(target)
        self.editors = Editors(in_process=elf_editor != "patchelf")
        if not dry_run:  # the ELF editor's tool (patchelf: executables' edits need it; else it is never asked for)
            self.editors.of(BinaryFormat.ELF).prepare()


def _dist_info(tree: WheelTree, wheel: Path, name: str, version: str) -> str:
    """The wheel's .dist-info directory, matched as installers match it (name and version
    normalized: ``pyobjc_framework_ScreenCaptureKit-11.0.dist-info`` in
    ``pyobjc_framework_screencapturekit-11.0-...whl``), spelled as the wheel spells it."""
    found = find_dist_info(tree.files(), name, version)
    if found is None:
        raise WheelFormatError(f"broken wheel {wheel.name!r}: expected one .dist-info directory of {name} {version}, "
                               f"found {dist_info_dirs(tree.files())!r}")
    return found


class WheelSession:
    """One wheel's repair: owns the tree, the shared digests, the RECORD check, the packer and the
    work directory, and closes them in order.  Use as a context manager."""

    def __init__(self, wheel: Path, name: str, version: str, *, dry_run: bool, elf_editor: str = "auto") -> None:
        self.wheel = wheel
        self.editors = Editors(in_process=elf_editor != "patchelf")
        self._stack = ExitStack()
        self._early: tuple[RecordCheck, dict[str, str]] | None = None
        self._helper: ThreadPoolExecutor | None = None
        with self._stack as stack:
            self.tree = WheelTree(wheel)
            stack.callback(self.tree.close)
            self.dist_info = dist_info = _dist_info(self.tree, wheel, name, version)
            self.tree.keep_reads()  # the binaries edited are read again (inflated once)
            self.wheel_file, self.metadata = _wheel_texts(self.tree.zip, dist_info, wheel)
            self.shared = SharedDigests()
            stack.callback(self.shared.close)
            if not dry_run:  # the RECORD check starts before the analysis (see _early_record_check)
                self.editors.of(BinaryFormat.ELF).prepare()  # and patchelf's version check
                self.fp = stack.enter_context(open(wheel, "rb"))  # noqa: SIM115 (closed by the session)
                self.zip = self.tree.zip  # the central directory is read once (12 248 members: 40 ms)
                self.tree.share_digests(self.shared)  # the analysis hashes what it inflates: the check skips those
                self.tree.prefetch(BINARY_MAGIC)  # the big binaries start inflating now, while the analysis sniffs
                self._early = _early_record_check(self.zip, wheel, dist_info, self.shared)
            if self._early is not None:
                stack.callback(self._early[0].close)
            self._stack = stack.pop_all()

    def __enter__(self) -> WheelSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def analysed(self, rewritten: Iterable[str]) -> None:
        """The analysis is over: stop inflating ahead; members rewritten anyway need no check of their
        old hash; the binaries the analysis did not hash are checked from now on."""
        self.tree.end_prefetch()
        if self._early is not None:
            self._early[0].reader_done(rewritten)

    def record_check(self) -> tuple[dict[str, str], RecordCheck]:
        """RECORD's hashes and the running check of the members' content (wait() on it before the
        output is committed); raises WheelFormatError when RECORD disagrees with the zip."""
        hashes, check = _check_record(self.zip, self.dist_info, self.wheel, self._early, self.shared)
        self._stack.callback(check.close)
        return hashes, check

    def verify_unchanged(self) -> None:
        """For a wheel copied unchanged: every member read whole (CRC) and checked against RECORD now."""
        if self._early is not None:
            self._early[0].close()
        _verify_whole(self.tree.zip, self.wheel, _record_todo(self.tree.zip, self.dist_info, self.wheel)[1])

    def read_small(self, member: str) -> bytes:
        """A member read whole (at most MAX_METADATA bytes): the __init__.py files a shim goes into."""
        return read_member(self.tree.zip, member, self.wheel.name, MAX_METADATA)

    def workdir(self) -> Path:
        """A private directory for the edited copies, removed with the session."""
        return Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="dynawheel-repair-")))

    def soon(self, make: Callable[[], T]) -> Callable[[], T]:
        """Start `make` on the session's helper thread now; the call returned waits for its result (raises
        what it raised).  The thread is joined when the session closes."""
        if self._helper is None:
            self._helper = self._stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="dynawheel-soon"))
        return self._helper.submit(make).result

    def packer(self, level: int, deflate: str) -> Packer:
        """Compresses edited files as soon as they are written; closed before the work directory goes."""
        return self._stack.enter_context(_OncePacker(level, deflate))


SAME_MAX = 1 << 20  # members given as bytes up to this size are packed once per content


class _OncePacker(Packer):
    """The writer's packer, packing a content given as bytes once, however many members have it: the output is
    the same (packing depends on the bytes alone), and python-ldap's repair ships libldap's 63 kB copyright
    for liblber too, and nettle's 25 kB one for hogweed (performance: ~8 M instructions of deflate and sha256)."""

    def __init__(self, level: int = 6, backend: str = "auto") -> None:
        super().__init__(level, backend)
        self._same: dict[bytes, Callable[[], Any]] = {}
        self._same_lock = threading.Lock()

    def submit(self, source: Path | bytes, size: int) -> Callable[[], Any]:
        if not isinstance(source, bytes) or size > SAME_MAX:
            return super().submit(source, size)
        with self._same_lock:
            done = self._same.get(source)
            if done is None:
                done = self._same[source] = super().submit(source, size)
        return done
