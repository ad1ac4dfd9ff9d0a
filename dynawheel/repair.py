"""`dynawheel repair`: orchestration only.

analyze (resolve.py) -> collect (collect.py: what to vendor, names, places) -> plan (plan.py:
every edit of every file) -> materialize (copies + one write per file) -> retag -> write.
Inputs are never modified unless `in_place`; outputs are written to temporary names and
renamed into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import posixpath
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from . import fsutil
from .binary import BINARY_MAGIC, BinaryFormat, DepKind, Image
from .collect import Choices, Collection, canonical_analysis, collect
from .dlldirs import with_dll_directories
from .errors import HeaderSpaceError, OutputError, RepairError, UsageError, WheelFormatError
from .plan import EditPlan, FileEdits, make_plan
from .platforms.elf_edit import ElfEdits, apply_many, check_patchelf_soon
from .policy import Policy, best_elf_policy, blockers_for, load_policies
from .resolve import Analysis, Status, analyze
from .search import SearchPaths
from .shim import ShimPlan, add_shim, pth_shim, shim_targets
from .tree import DirTree, HostFS, Tree, WheelTree
from .wheel.archive import Entry, Packer, RawSource, is_executable, write_wheel
from .wheel.record import MAX_RECORD, encode_digest, parse_record
from .wheel.tags import WheelTags, parse_filename, wheel_filename
from .wheel.text import MAX_METADATA, MAX_WHEEL, parse_metadata, parse_wheel_file
from .wheel.verify import RecordCheck, SharedDigests
from .wheel.zipread import READ_ERRORS, read_member

if TYPE_CHECKING:  # performance: the Mach-O editor is imported when a Mach-O file is edited
    from .platforms import macho_edit

log = logging.getLogger(__name__)
MANIFEST = "dynawheel-vendored.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RepairOptions:
    """How to repair: what to vendor, where to look, which tag to aim for, how to write."""

    choices: Choices = field(default_factory=Choices)
    search: SearchPaths = field(default_factory=SearchPaths)
    plat: str | None = None  # ELF: the policy to meet (manylinux_2_17_x86_64, manylinux2014_x86_64, ...)
    macos_target: str | None = None  # MACOSX_DEPLOYMENT_TARGET, given by the caller
    provided_by: tuple[Path, ...] = ()
    compression_level: int = 6
    deflate: str = "auto"  # 'auto' (libdeflate; zlib-ng for streams), 'libdeflate', 'zlib-ng' or 'zlib'
    elf_editor: str = "auto"  # 'auto': shared libraries in this process (platforms/elf_rewrite.py); 'patchelf'
    dry_run: bool = False
    progress: Progress | None = None


@dataclass(frozen=True)
class RepairResult:
    """What a repair did: its output, the vendored libraries, the edits and the new tags."""

    target: Path
    output: Path | None  # the repaired wheel or directory (None for a dry run)
    collection: Collection
    plan: EditPlan
    tags: WheelTags | None = None
    notes: tuple[str, ...] = ()
    shim: ShimPlan = field(default_factory=ShimPlan)


@dataclass
class _Job:
    """Everything decided for one tree."""

    analysis: Analysis
    collection: Collection
    plan: EditPlan
    shim: ShimPlan
    requires: tuple[str, ...]
    notes: list[str]


def _say(opts: RepairOptions, message: str) -> None:
    log.info(message)
    if opts.progress is not None:
        opts.progress(message)


# ---- deciding ------------------------------------------------------------------------------

def _sha256_file(host: HostFS, path: str) -> str:
    digest = hashlib.sha256()
    with host.open(path) as fp:
        while chunk := fp.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Digests(dict[str, str]):
    def __init__(self, host: HostFS) -> None:
        super().__init__()
        self.host = host

    def __missing__(self, path: str) -> str:
        value = _sha256_file(self.host, path)
        self[path] = value
        return value

    def prefetch(self, paths: set[str]) -> _Digests:
        """Performance: hash these files on all cores now (collect asks for them one at a time);
        a file that cannot be read is left for __missing__ to report."""
        todo = sorted(paths - self.keys())
        if len(todo) > 1:
            def one(path: str) -> str | None:
                try:
                    return _sha256_file(self.host, path)
                except OSError:
                    return None

            with ThreadPoolExecutor() as pool:
                self.update({p: v for p, v in zip(todo, pool.map(one, todo)) if v is not None})
        return self


class _TreeDigests(dict[str, str]):
    """sha256 hex of files of the tree, read on first use."""

    def __init__(self, tree: Tree) -> None:
        super().__init__()
        self.tree = tree

    def __missing__(self, rel: str) -> str:
        digest = hashlib.sha256()
        with self.tree.open(rel) as fp:
            while chunk := fp.read(1 << 20):
                digest.update(chunk)
        self[rel] = digest.hexdigest()
        return self[rel]


def provided_libraries(wheels: tuple[Path, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(library basename -> install path, Requires-Dist lines) of wheels that provide libraries."""
    provided: dict[str, str] = {}
    requires = []
    for wheel in wheels:
        name, version, _build, _tags = parse_filename(wheel.name)
        for rel in _wheel_install_paths(wheel):
            provided.setdefault(posixpath.basename(rel), rel)
        requires.append(f"{name.replace('_', '-')}=={version.replace('_', '-')}")
    return provided, tuple(requires)


def _wheel_install_paths(wheel: Path) -> list[str]:
    """Where the files of a --provided-by wheel install (site-packages relative)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
    except FileNotFoundError:
        raise UsageError(f"--provided-by {str(wheel)!r}: no such wheel") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise WheelFormatError(f"--provided-by {str(wheel)!r}: not a wheel ({exc})") from None
    return [rel for member in names if not member.endswith("/") and (rel := _install_path(member))]


def _install_path(member: str) -> str | None:
    top, _, rest = member.partition("/")
    if top.endswith(".dist-info"):
        return None
    if top.endswith(".data"):
        scheme, _, sub = rest.partition("/")
        return sub if scheme in ("purelib", "platlib") else None
    return member


def _dist_name(tree_files: list[str], dist: str | None) -> str:
    """The distribution's name: given, else from a .dist-info, else the first top-level directory."""
    if dist:
        return dist
    for name in tree_files:
        if name.split("/", 1)[0].endswith(".dist-info"):
            return name.split("/", 1)[0].rsplit("-", 1)[0]
    tops = sorted({n.split("/", 1)[0] for n in tree_files if "/" in n})
    return tops[0] if tops else "vendored"


def _dist_libs(tree_files: list[str], dist: str | None) -> str:
    """The shared library directory: '<dist>.libs'."""
    return f"{_dist_name(tree_files, dist)}.libs"


def decide(tree: Tree, opts: RepairOptions, dist: str | None) -> _Job:
    _say(opts, "analyzing binaries")
    host = HostFS(opts.search.sysroot)
    # the tree's own os.add_dll_directory shim counts (a repaired tree repairs to itself)
    analysis = canonical_analysis(analyze(tree, with_dll_directories(tree, opts.search)), host.real)
    if analysis.bad:
        raise RepairError("cannot repair a tree with unreadable binaries: " +
                          "; ".join(b.message for b in analysis.bad))
    _check_one_file_per_request(analysis)
    provided, requires = provided_libraries(opts.provided_by)
    choices = replace(opts.choices, provided={**opts.choices.provided, **provided})
    digests = _Digests(host).prefetch({e.hit for w in analysis.walks for e in w.edges  # performance
                                       if e.status is Status.EXTERNAL and e.hit is not None})
    collection = collect(analysis, choices, _dist_libs(tree.files(), dist), digests, _TreeDigests(tree))
    plan = make_plan(analysis, collection)
    shim = _shim_plan(analysis, collection)
    notes = [f"{len(collection.missing_allowed)} missing libraries allowed"] if collection.missing_allowed else []
    return _Job(analysis, collection, plan, shim, requires, notes)


def _check_one_file_per_request(analysis: Analysis) -> None:
    """A universal Mach-O's slices must get each dependency from the same file: one load command
    serves every slice, so thin per-arch copies in different places cannot be vendored."""
    hits: dict[tuple[str, str], dict[str, str]] = {}
    for walk in analysis.walks:
        for edge in walk.edges:
            binary = analysis.binaries.get(edge.dependent)
            if edge.hit is not None and edge.status is Status.EXTERNAL and binary is not None and \
                    binary.format is BinaryFormat.MACHO:
                hits.setdefault((edge.dependent, edge.request.name), {}).setdefault(edge.arch, edge.hit)
    for (dependent, request), by_arch in sorted(hits.items()):
        if len(set(by_arch.values())) > 1:
            where = ", ".join(f"{arch}: {path}" for arch, path in sorted(by_arch.items()))
            raise RepairError(f"{request!r} needed by {analysis.relpath(dependent) or dependent!r} is a different file "
                              f"per architecture ({where}): merge them into one universal file "
                              "(llvm-lipo -create) and vendor that")


def _shim_plan(analysis: Analysis, collection: Collection) -> ShimPlan:
    """PE extensions need os.add_dll_directory for every directory other than their own that holds
    a DLL they load (directly or not): where it was vendored, or where another wheel installs it
    (--provided-by: its install path, relative to the same site-packages)."""
    provided: dict[str, list[str]] = {}  # dependent (tree path, or source of a vendored copy) -> dirs
    for dependent, _request, path in collection.provided:
        provided.setdefault(dependent, []).append(posixpath.dirname(path))
    dirs: dict[str, list[str]] = {}
    for path in analysis.tree_binaries:
        rel = analysis.relpath(path)
        if analysis.binaries[path].format is not BinaryFormat.PE or rel is None:
            continue
        loaded = [p for walk in analysis.walks if walk.root == path for p in walk.loaded]
        places = [posixpath.dirname(v.dest) for v in collection.vendored if v.source in loaded]
        places += [d for p in dict.fromkeys(loaded) for d in provided.get(analysis.relpath(p) or p, ())]
        wanted = dirs.setdefault(rel, [])
        wanted += [d for d in dict.fromkeys(places) if d != posixpath.dirname(rel)]
    return shim_targets(dirs, set(analysis.files), _delay_loaded(analysis, collection))


def _delay_loaded(analysis: Analysis, collection: Collection) -> dict[str, list[str]]:
    """PE extension -> tree paths of the DLLs it delay-loads: the delay-load helper searches only
    the default order at the first call, so the shim loads them first by full path."""
    dest = {v.source: v.dest for v in collection.vendored}
    out: dict[str, list[str]] = {}
    for walk in analysis.walks:
        rel = analysis.relpath(walk.root)
        if rel is None or analysis.binaries[walk.root].format is not BinaryFormat.PE:
            continue
        for edge in walk.edges:
            if edge.request.kind is DepKind.DELAY and edge.hit is not None:
                target = dest.get(edge.hit) or analysis.relpath(edge.hit)
                if target is not None and target not in out.setdefault(rel, []):
                    out[rel].append(target)
    return {k: v for k, v in out.items() if v}


# ---- editing -------------------------------------------------------------------------------

def _macho_edits(edits: FileEdits) -> list[macho_edit.Edit]:
    from .platforms import macho_edit  # performance: Mach-O/PE/email modules load only when used (~25 ms)

    out: list[macho_edit.Edit] = [macho_edit.ChangeDependency(o, n) for o, n in sorted(edits.renames.items())]
    if edits.own_name:
        out.append(macho_edit.SetId(edits.own_name))
    out += [macho_edit.DeleteRpath(r) for r in edits.delete_rpaths]
    out += [macho_edit.AddRpath(r) for r in edits.add_rpaths]
    return out


def apply_edits(files: Mapping[Path, tuple[str, FileEdits]], sources: Mapping[Path, str] | None = None,
                done: Callable[[Path], None] | None = None, elf_editor: str = "auto") -> None:
    """Apply every file's edits to its private copy: one write per file.  An ELF copy named in
    `sources` does not exist yet: it is written from its source.  `done` is called with each ELF
    copy once it is written (on this thread when edited in process, on a worker for patchelf)."""
    elf = []
    macho: list[tuple[Path, macho_edit.FilePlan]] = []
    for path, (label, edits) in files.items():
        if edits.format is BinaryFormat.ELF:
            elf.append((path, ElfEdits(tuple(sorted(edits.renames.items())), edits.runpath, edits.own_name,
                                       edits.old_style), (sources or {}).get(path)))
        elif edits.format is BinaryFormat.MACHO:  # planned under the tree path: errors name it, not the copy
            from .platforms import macho_edit  # performance: loaded only when used

            macho.append((path, macho_edit.plan(path.read_bytes(), _macho_edits(edits), label)))
        elif edits.renames:
            from .platforms.pe_edit import rename_imports  # performance: loaded only when used

            path.write_bytes(rename_imports(path.read_bytes(), edits.renames, label))
    no_room = [error for _path, fp in macho for error in fp.space_errors()]
    if no_room:  # every file that lacks room, at once, before any Mach-O is written
        raise HeaderSpaceError("; ".join(no_room))
    for path, fp in macho:
        path.write_bytes(macho_edit.apply_plan(path.read_bytes(), fp))
    apply_many(elf, done, in_process=elf_editor != "patchelf")


# ---- tags ----------------------------------------------------------------------------------

def _elf_images(job: _Job) -> tuple[list[tuple[str, Image]], set[str]]:
    a = job.analysis
    images = [(a.relpath(p) or p, i) for p in a.tree_binaries for i in a.binaries[p].images
              if a.binaries[p].format is BinaryFormat.ELF]
    images += [(v.dest, i) for v in job.collection.vendored for i in a.binaries[v.source].images
               if v.format is BinaryFormat.ELF]
    sources = {*a.tree_binaries, *(v.source for v in job.collection.vendored)}
    external = {posixpath.basename(e.request.name) for w in a.walks for e in w.edges
                if e.dependent in sources and e.status is Status.SYSTEM}
    return images, external


_TAG_ARCH = re.compile(r"[a-z0-9_]+")


def _check_machines(images: list[tuple[str, Image]]) -> None:
    """One machine for every ELF file, and one a platform tag can name: else a RepairError naming the
    files (an i686 library among x86_64 ones, an unknown e_machine), never a tag like 'linux_i686+x86_64'."""
    by_arch: dict[str, list[str]] = {}
    for path, image in images:
        by_arch.setdefault(image.arch, []).append(path)

    def files(arch: str) -> str:
        paths = sorted(set(by_arch[arch]))
        return f"{arch}: {paths[0]!r}" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")

    if len(by_arch) > 1:
        raise RepairError("the ELF files are for different machines, no one wheel tag fits them: "
                          + "; ".join(files(arch) for arch in sorted(by_arch)))
    for arch in by_arch:
        if not _TAG_ARCH.fullmatch(arch) or re.fullmatch(r"em[0-9]+.*", arch):
            raise RepairError(f"unknown or unsupported ELF machine/class, no platform tag names it: {files(arch)}")


def _policy_platform(job: _Job, plat: str | None) -> str | None:
    images, external = _elf_images(job)
    if not images:
        return None
    _check_machines(images)
    policy: Policy | None
    if plat is None:
        verdict = best_elf_policy(images, external)
        policy = verdict.policy
        if policy is None:
            return verdict.tag
    else:
        policy = _find_policy(plat)
        problems = blockers_for(policy, images, external)
        if problems:
            raise RepairError(f"the tree does not meet {plat!r}: " + "; ".join(problems[:8]))
    arch = images[0][1].arch
    if plat is not None and plat not in (policy.name, *policy.aliases) and not plat.endswith(f"_{arch}"):
        raise RepairError(f"--plat {plat!r} does not match the binaries' arch {arch!r}")
    return ".".join(f"{name}_{arch}" for name in (policy.name, *policy.aliases))


def _find_policy(plat: str) -> Policy:
    for policy in load_policies():
        for name in (policy.name, *policy.aliases):
            if plat == name or plat.startswith(name + "_"):
                return policy
    raise RepairError(f"unknown --plat {plat!r}: expected e.g. manylinux_2_17_x86_64 or manylinux2014_x86_64")


def _macos_platform(job: _Job, target: str | None) -> str | None:
    """macosx_<min>_<arch> on which every Mach-O of the repaired tree (vendored copies too) loads.

    arch: what every binary has (arm64 + x86_64: universal2; a thin extension makes the wheel thin).
    min: the highest minimum macOS of those slices, where an arm64 slice's 11.0 constrains nothing
    (arm64 Macs start there): x86_64 10.9 + arm64 11.0 is macosx_10_9_universal2, which pip accepts
    on both.  MACOSX_DEPLOYMENT_TARGET only raises it.
    """
    a = job.analysis
    paths = [p for p in a.tree_binaries if a.binaries[p].format is BinaryFormat.MACHO]
    paths += [v.source for v in job.collection.vendored if v.format is BinaryFormat.MACHO]
    if not paths:
        return None
    common = set.intersection(*({i.arch for i in a.binaries[p].images} for p in paths))
    if {"arm64", "x86_64"} <= common:
        arch, archs = "universal2", {"arm64", "x86_64"}
    elif common:
        arch = next((x for x in ("arm64", "x86_64") if x in common), sorted(common)[0])
        archs = {arch}
    else:
        have = "; ".join(f"{a.relpath(p) or p}: {'+'.join(i.arch for i in a.binaries[p].images)}" for p in paths)
        raise RepairError(f"no architecture is common to every Mach-O binary, so no macOS tag fits ({have})")
    need = (11, 0) if arch == "arm64" else (10, 9)
    for p in paths:
        for image in a.binaries[p].images:
            minimum = _ver(str(image.details.get("min_macos") or "10.9"))
            if image.arch in archs and not (image.arch == "arm64" and minimum <= (11, 0)):
                need = max(need, minimum)
    if target is not None and target.strip():  # an empty MACOSX_DEPLOYMENT_TARGET is no target
        if not re.fullmatch(r"\d+(\.\d+){0,2}", target.strip()):
            raise RepairError(f"MACOSX_DEPLOYMENT_TARGET must look like 10.13 or 12.0, got {target!r}")
        need = max(need, _ver(target.strip()))
    major, minor = need[0], (need[1] if need[0] < 11 else 0)
    return f"macosx_{major}_{minor}_{arch}"


def _ver(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.split(".")[:2] if p.isdigit()] + [0, 0]
    return parts[0], parts[1]


def new_tags(job: _Job, old: WheelTags, opts: RepairOptions) -> WheelTags:
    platform = _policy_platform(job, opts.plat) or _macos_platform(job, opts.macos_target)
    return replace(old, platform=platform) if platform else old


# ---- manifest ------------------------------------------------------------------------------

def manifest(job: _Job) -> bytes:
    doc = {
        "version": 1,
        "generator": "dynawheel",
        "vendored": [{"name": v.name, "path": v.dest, "requested_as": list(v.requests), "source": v.source,
                      "sha256": v.sha256, "needed_by": list(v.consumers)} for v in job.collection.vendored],
        "provided_by_other_wheels": [{"needed_by": d, "request": r, "path": p} for d, r, p in job.collection.provided],
        "requires": list(job.requires),
    }
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode()


# ---- wheels --------------------------------------------------------------------------------

def _record_todo(zf: zipfile.ZipFile, dist_info: str, wheel: Path) -> tuple[list[tuple[zipfile.ZipInfo, str]],
                                                                             dict[str, str]]:
    """(every member but RECORD with its RECORD hash, the hash of every RECORD row); RECORD's list
    and sizes must agree with the zip."""
    try:
        rows = parse_record(read_member(zf, f"{dist_info}/RECORD", wheel.name, MAX_RECORD), f"{wheel.name}: RECORD")
    except KeyError:
        raise WheelFormatError(f"broken wheel {wheel.name!r}: no {dist_info}/RECORD") from None
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


def _edit_copy(job: _Job, tree: Tree, work: Path, opts: RepairOptions,
               ready: Callable[[Path], None] | None = None) -> dict[str, Path]:
    """Private, edited copies of every changed or vendored binary: tree path -> file.  A host
    library with ELF edits is not copied first: the editor reads it and writes the copy.  `ready`
    is called with each copy once it is final (ELF copies as soon as they are edited)."""
    out: dict[str, Path] = {}
    sources: dict[Path, str] = {}
    host = HostFS(opts.search.sysroot)
    vendored = {v.dest: v for v in job.collection.vendored}
    for rel in sorted(set(job.plan.files) | set(vendored)):
        dest = out[rel] = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        real = host.real(vendored[rel].source) if rel in vendored else None
        edits = job.plan.files.get(rel)
        if real is not None and edits is not None and edits.format is BinaryFormat.ELF:
            sources[dest] = real
            continue
        src_fp = host.open(vendored[rel].source) if rel in vendored else tree.open(rel)
        with src_fp as src, open(dest, "wb") as fp:
            if isinstance(src, io.BytesIO):  # performance: a member inflated whole, written in one call
                with src.getbuffer() as view:
                    fp.write(view)
            else:
                shutil.copyfileobj(src, fp, 1 << 20)
    _say(opts, f"patching {len(job.plan.files)} file(s), vendoring {len(vendored)} librar(y/ies)")
    apply_edits({out[rel]: (rel, edits) for rel, edits in job.plan.files.items()}, sources, ready, opts.elf_editor)
    for dest in out.values():
        os.chmod(dest, 0o755)
        if ready is not None:
            ready(dest)  # again for an ELF copy: a no-op
    return out


def _shim_files(job: _Job, read: Callable[[str], bytes], dist: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for init, dirs in job.shim.init_files.items():
        try:
            text = read(init).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RepairError(f"cannot add the DLL shim to {init!r}: not UTF-8 ({exc.reason} at byte {exc.start})") \
                from None
        files[init] = add_shim(text, dirs, init, job.shim.preload.get(init, ())).encode("utf-8")
    if job.shim.pth_dirs or job.shim.pth_preload:
        files.update({k: v.encode() for k, v in pth_shim(dist, job.shim.pth_dirs, job.shim.pth_preload).items()})
    return files


def _metadata(text: bytes, requires: tuple[str, ...]) -> bytes:
    if not requires:
        return text
    msg = parse_metadata(text, "METADATA")
    have = {r.split(";")[0].replace(" ", "") for r in msg.get_all("Requires-Dist") or []}
    extra = [r for r in requires if r.replace(" ", "") not in have]
    head, sep, body = text.partition(b"\n\n")
    lines = b"".join(f"Requires-Dist: {r}\n".encode() for r in extra)
    return head.rstrip(b"\n") + b"\n" + lines.rstrip(b"\n") + (sep or b"\n") + body


def _wheel_texts(zf: zipfile.ZipFile, dist_info: str, wheel: Path) -> tuple[bytes, bytes]:
    """(WHEEL, METADATA) of the wheel, both read and parsed (a broken one is refused, before any work)."""
    wheel_file = read_member(zf, f"{dist_info}/WHEEL", wheel.name, MAX_WHEEL)
    parse_wheel_file(wheel_file, f"{wheel.name}: WHEEL")
    metadata = read_member(zf, f"{dist_info}/METADATA", wheel.name, MAX_METADATA)
    parse_metadata(metadata, f"{wheel.name}: METADATA")
    return wheel_file, metadata


def _wheel_text(text: bytes, tags: WheelTags) -> bytes:
    # a trailing blank line (setuptools writes one) would push the new Tag lines out of the header
    lines = [ln for ln in text.decode().splitlines() if ln.strip() and not ln.startswith("Tag:")]
    lines += [f"Tag: {t}" for t in tags.expanded()]
    return ("\n".join(lines) + "\n").encode()


def repair_wheel(wheel: Path, wheel_dir: Path, opts: RepairOptions) -> RepairResult:
    """Repair one wheel into `wheel_dir` (a pure wheel is copied through unchanged)."""
    name, version, build, tags = parse_filename(wheel.name)
    dist_info = f"{name}-{version}.dist-info"
    with ExitStack() as stack:
        tree = WheelTree(wheel)
        stack.callback(tree.close)
        texts = _wheel_texts(tree.zip, dist_info, wheel)
        tree.keep_reads()  # performance: the binaries edited are read again (inflated once)
        early = None
        shared = SharedDigests()
        stack.callback(shared.close)
        if not opts.dry_run:  # performance: the RECORD check starts before the analysis (see there)
            check_patchelf_soon()  # and patchelf's version check (executables' edits need it; else not asked)
            fp = stack.enter_context(open(wheel, "rb"))
            zf = tree.zip  # performance: the central directory is read once (12 248 members: 40 ms)
            tree.share_digests(shared)  # the analysis hashes what it inflates: the check skips those
            tree.prefetch(BINARY_MAGIC)  # the big binaries start inflating now, while the analysis sniffs
            early = _early_record_check(zf, wheel, dist_info, shared)
        if early is not None:
            stack.callback(early[0].close)
        job = decide(tree, opts, name)
        tree.end_prefetch()
        if early is not None:  # performance: members rewritten anyway need no check of their old hash; the
            early[0].reader_done(job.plan.files)  # binaries the analysis did not hash are checked from now on
        if opts.dry_run:
            return RepairResult(wheel, None, job.collection, job.plan, new_tags(job, tags, opts), tuple(job.notes),
                                job.shim)
        if not job.analysis.tree_binaries:  # copied unchanged, once every member is checked
            if early is not None:
                early[0].close()
            _verify_whole(zf, wheel, _record_todo(zf, dist_info, wheel)[1])
            out = wheel_dir / wheel.name
            _copy_atomic(wheel, out)
            return RepairResult(wheel, out, job.collection, job.plan, tags, ("no binaries: copied unchanged",))
        tags2 = new_tags(job, tags, opts)  # may refuse (--plat): before anything is written
        hashes, record_check = _check_record(zf, dist_info, wheel, early, shared)
        stack.callback(record_check.close)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dynawheel-repair-")))
        packer = stack.enter_context(Packer(opts.compression_level, opts.deflate))  # before `work` goes
        edited = _edit_copy(job, tree, work, opts, packer.pack_soon)
        extra = _shim_files(job, lambda member: read_member(zf, member, wheel.name, MAX_METADATA), name)
        extra[f"{dist_info}/WHEEL"] = _wheel_text(texts[0], tags2)
        extra[f"{dist_info}/METADATA"] = _metadata(texts[1], job.requires)
        if job.collection.vendored or job.collection.provided:
            extra[f"{dist_info}/{MANIFEST}"] = manifest(job)
        entries = _wheel_entries(zf, fp, hashes, edited, extra, dist_info)
        out = wheel_dir / wheel_filename(name, version, tags2, build)
        _say(opts, f"writing {out.name}")
        write_wheel(out, entries, dist_info, before_commit=record_check.wait, packer=packer)
        return RepairResult(wheel, out, job.collection, job.plan, tags2, tuple(job.notes), job.shim)


def _workdir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(out_dir)!r}: {exc.strerror}") from None
    return out_dir


def _copy_atomic(src: Path, dest: Path) -> None:
    with fsutil.atomic_output(dest) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def _wheel_entries(zf: zipfile.ZipFile, fp: BinaryIO, hashes: Mapping[str, str], edited: Mapping[str, Path],
                   extra: Mapping[str, bytes], dist_info: str) -> list[Entry]:
    entries: list[Entry] = []
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or name == f"{dist_info}/RECORD" or name in edited or name in extra:
            continue
        executable = bool((info.external_attr >> 16) & 0o111)
        entries.append(Entry(name, RawSource(fp, info, hashes[name]), executable))
    entries += [Entry(rel, path, True) for rel, path in edited.items()]
    entries += [Entry(rel, data) for rel, data in extra.items()]
    return entries


# ---- staged directories --------------------------------------------------------------------

@contextmanager
def _output_dir(target: Path, out: Path | None, in_place: bool) -> Iterator[Path]:
    """A directory to write into; renamed to `out` when all went well."""
    if in_place:
        try:
            yield target
        except OSError as exc:
            raise OutputError(f"cannot write into {str(target)!r}: {exc.strerror or exc}") from None
        return
    assert out is not None
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"output directory {str(out)!r} exists and is not empty")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_workdir(out.parent)))
    except OSError as exc:
        raise OutputError(f"cannot write to {str(out.parent)!r}: {exc.strerror}") from None
    try:
        shutil.copytree(target, tmp, dirs_exist_ok=True, symlinks=False)
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot write {str(out)!r}: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def repair_tree(target: Path, out: Path | None, opts: RepairOptions, *, in_place: bool = False,
                dist: str | None = None) -> RepairResult:
    """Repair a staged directory into `out` (or in place): vendored libraries beside the binaries."""
    if not target.is_dir():
        raise RepairError(f"not a directory: {str(target)!r}")
    if out is None and not in_place and not opts.dry_run:
        raise RepairError("give an output directory (-o DIR) or --in-place")
    tree = DirTree(target)
    if not opts.dry_run:
        check_patchelf_soon()  # performance: beside the analysis (executables' edits need it; else not asked)
    job = decide(tree, opts, dist)
    if opts.dry_run:
        return RepairResult(target, None, job.collection, job.plan, None, tuple(job.notes), job.shim)
    with _output_dir(target, out, in_place) as dest, tempfile.TemporaryDirectory(prefix="dynawheel-repair-") as work:
        edited = _edit_copy(job, tree, Path(work), opts)
        for rel, path in edited.items():
            _replace_file(path, dest / rel)
        shims = _shim_files(job, lambda rel: (target / rel).read_bytes(), _dist_name(tree.files(), dist))
        for rel, data in shims.items():
            _write_file(dest / rel, data)
        if job.collection.vendored or job.collection.provided:
            _write_file(_manifest_path(dest, tree.files()), manifest(job))
    return RepairResult(target, out or target, job.collection, job.plan, None, tuple(job.notes), job.shim)


def _manifest_path(dest: Path, files: list[str]) -> Path:
    """Inside the stage's .dist-info when it has one; else at its root (build moves it into .dist-info)."""
    for name in files:
        top = name.split("/", 1)[0]
        if top.endswith(".dist-info"):
            return dest / top / MANIFEST
    return dest / MANIFEST


def _replace_file(src: Path, dest: Path) -> None:
    """`dest` becomes a copy of `src` (executable unless `dest` was a non-executable file)."""
    mode = 0o755 if not dest.exists() or is_executable(dest) else 0o644
    with fsutil.atomic_output(dest, mode) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def _write_file(dest: Path, data: bytes) -> None:
    fsutil.write_atomic(dest, data, mode=None)
