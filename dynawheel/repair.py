"""`dynawheel repair`: orchestration only.

analyze (resolve.py) -> collect (collect.py: what to vendor, names, places) -> plan (plan.py:
every edit of every file) -> materialize (copies + one write per file) -> retag -> write.
Inputs are never modified unless `in_place`; outputs are written to temporary names and
renamed into place.
"""

from __future__ import annotations

import email.parser
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from .binary import BinaryFormat, Image
from .collect import Choices, Collection, collect
from .errors import OutputError, RepairError, WheelFormatError
from .plan import EditPlan, FileEdits, make_plan
from .platforms import macho_edit
from .platforms.elf_edit import ElfEdits, apply_many
from .platforms.pe_edit import rename_imports
from .policy import Policy, best_elf_policy, blockers_for, load_policies
from .resolve import Analysis, Status, analyze
from .search import SearchPaths
from .shim import ShimPlan, add_shim, pth_shim, shim_targets
from .tree import DirTree, HostFS, Tree, WheelTree
from .wheel.archive import Entry, RawSource, is_executable, write_wheel
from .wheel.record import parse_record
from .wheel.tags import WheelTags, parse_filename, wheel_filename

log = logging.getLogger(__name__)
MANIFEST = "dynawheel-vendored.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class RepairOptions:
    choices: Choices = field(default_factory=Choices)
    search: SearchPaths = field(default_factory=SearchPaths)
    plat: str | None = None  # ELF: the policy to meet (manylinux_2_17_x86_64, manylinux2014_x86_64, ...)
    macos_target: str | None = None  # MACOSX_DEPLOYMENT_TARGET, given by the caller
    provided_by: tuple[Path, ...] = ()
    compression_level: int = 6
    dry_run: bool = False
    progress: Progress | None = None


@dataclass(frozen=True)
class RepairResult:
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


def provided_libraries(wheels: tuple[Path, ...]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(library basename -> install path, Requires-Dist lines) of wheels that provide libraries."""
    provided: dict[str, str] = {}
    requires = []
    for wheel in wheels:
        name, version, _build, _tags = parse_filename(wheel.name)
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                rel = _install_path(member)
                if rel and not member.endswith("/"):
                    provided.setdefault(posixpath.basename(rel), rel)
        requires.append(f"{name.replace('_', '-')}=={version.replace('_', '-')}")
    return provided, tuple(requires)


def _install_path(member: str) -> str | None:
    top, _, rest = member.partition("/")
    if top.endswith(".dist-info"):
        return None
    if top.endswith(".data"):
        scheme, _, sub = rest.partition("/")
        return sub if scheme in ("purelib", "platlib") else None
    return member


def _dist_libs(tree_files: list[str], dist: str | None) -> str:
    if dist:
        return f"{dist}.libs"
    for name in tree_files:
        if name.split("/", 1)[0].endswith(".dist-info"):
            return name.split("/", 1)[0].rsplit("-", 1)[0] + ".libs"
    tops = sorted({n.split("/", 1)[0] for n in tree_files if "/" in n})
    return f"{tops[0]}.libs" if tops else "vendored.libs"


def decide(tree: Tree, opts: RepairOptions, dist: str | None) -> _Job:
    _say(opts, "analyzing binaries")
    analysis = analyze(tree, opts.search)
    if analysis.bad:
        raise RepairError("cannot repair a tree with unreadable binaries: " +
                          "; ".join(b.message for b in analysis.bad))
    provided, requires = provided_libraries(opts.provided_by)
    choices = replace(opts.choices, provided={**opts.choices.provided, **provided})
    collection = collect(analysis, choices, _dist_libs(tree.files(), dist), _Digests(HostFS(opts.search.sysroot)))
    plan = make_plan(analysis, collection)
    shim = _shim_plan(analysis, collection)
    notes = [f"{len(collection.missing_allowed)} missing libraries allowed"] if collection.missing_allowed else []
    return _Job(analysis, collection, plan, shim, requires, notes)


def _shim_plan(analysis: Analysis, collection: Collection) -> ShimPlan:
    """PE extensions whose vendored DLLs are not beside them need os.add_dll_directory."""
    where: dict[str, str] = {}
    by_source = collection.by_source()
    for path in analysis.tree_binaries:
        binary = analysis.binaries[path]
        rel = analysis.relpath(path)
        if binary.format is not BinaryFormat.PE or rel is None:
            continue
        for source, v in by_source.items():
            if _loads(analysis, path, source):
                where.setdefault(rel, posixpath.dirname(v.dest))
    return shim_targets(where, set(analysis.files))


def _loads(analysis: Analysis, root: str, source: str) -> bool:
    return any(walk.root == root and source in walk.loaded for walk in analysis.walks)


# ---- editing -------------------------------------------------------------------------------

def _macho_edits(edits: FileEdits) -> list[macho_edit.Edit]:
    out: list[macho_edit.Edit] = [macho_edit.ChangeDependency(o, n) for o, n in sorted(edits.renames.items())]
    if edits.own_name:
        out.append(macho_edit.SetId(edits.own_name))
    out += [macho_edit.DeleteRpath(r) for r in edits.delete_rpaths]
    out += [macho_edit.AddRpath(r) for r in edits.add_rpaths]
    return out


def apply_edits(files: Mapping[Path, tuple[str, FileEdits]]) -> None:
    """Apply every file's edits to its private copy: one write per file."""
    elf = []
    for path, (label, edits) in files.items():
        if edits.format is BinaryFormat.ELF:
            elf.append((path, ElfEdits(tuple(sorted(edits.renames.items())), edits.runpath, edits.own_name,
                                       edits.old_style)))
        elif edits.format is BinaryFormat.MACHO:
            macho_edit.edit_file(str(path), _macho_edits(edits))
        elif edits.renames:
            path.write_bytes(rename_imports(path.read_bytes(), edits.renames, label))
    apply_many(elf)


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


def _policy_platform(job: _Job, plat: str | None) -> str | None:
    images, external = _elf_images(job)
    if not images:
        return None
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
    return ".".join(f"{name}_{arch}" for name in (policy.name, *policy.aliases))


def _find_policy(plat: str) -> Policy:
    for policy in load_policies():
        for name in (policy.name, *policy.aliases):
            if plat == name or plat.startswith(name + "_"):
                return policy
    raise RepairError(f"unknown --plat {plat!r}: expected e.g. manylinux_2_17_x86_64 or manylinux2014_x86_64")


def _macos_platform(job: _Job, target: str | None) -> str | None:
    a = job.analysis
    images = [i for p in a.tree_binaries if a.binaries[p].format is BinaryFormat.MACHO for i in a.binaries[p].images]
    if not images:
        return None
    archs = sorted({i.arch for i in images})
    mins = [_ver(str(i.details.get("min_macos") or "10.9")) for i in images]
    need = max(mins)
    if target is not None:
        need = max(need, _ver(target))
    major, minor = need[0], (need[1] if need[0] < 11 else 0)
    arch = "universal2" if set(archs) == {"arm64", "x86_64"} else archs[0]
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

def _check_record(zf: zipfile.ZipFile, dist_info: str, wheel: Path) -> dict[str, str]:
    """The input RECORD's hashes; its list and sizes must agree with the zip."""
    try:
        rows = parse_record(zf.read(f"{dist_info}/RECORD"), f"{wheel.name}: RECORD")
    except KeyError:
        raise WheelFormatError(f"broken wheel {wheel.name!r}: no {dist_info}/RECORD") from None
    listed = {r.path: r for r in rows}
    for info in zf.infolist():
        if info.is_dir() or info.filename.startswith(f"{dist_info}/RECORD"):
            continue
        row = listed.get(info.filename)
        if row is None or not row.hash:
            raise WheelFormatError(f"broken RECORD in {wheel.name!r}: {info.filename!r} is not listed with a hash")
        if row.size is not None and row.size != info.file_size:
            raise WheelFormatError(f"broken RECORD in {wheel.name!r}: {info.filename!r} is {info.file_size} bytes, "
                                   f"RECORD says {row.size}")
    return {p: r.hash for p, r in listed.items()}


def _edit_copy(job: _Job, tree: Tree, work: Path, opts: RepairOptions) -> dict[str, Path]:
    """Private, edited copies of every changed or vendored binary: tree path -> file."""
    out: dict[str, Path] = {}
    host = HostFS(opts.search.sysroot)
    vendored = {v.dest: v for v in job.collection.vendored}
    for rel in sorted(set(job.plan.files) | set(vendored)):
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        src_fp = host.open(vendored[rel].source) if rel in vendored else tree.open(rel)
        with src_fp as src, open(dest, "wb") as fp:
            shutil.copyfileobj(src, fp, 1 << 20)
        os.chmod(dest, 0o755)
        out[rel] = dest
    _say(opts, f"patching {len(job.plan.files)} file(s), vendoring {len(vendored)} librar(y/ies)")
    apply_edits({out[rel]: (rel, edits) for rel, edits in job.plan.files.items()})
    return out


def _shim_files(job: _Job, read: Callable[[str], bytes], dist: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for init, dirs in job.shim.init_files.items():
        files[init] = add_shim(read(init).decode("utf-8"), dirs, init).encode("utf-8")
    if job.shim.pth_dirs:
        files.update({k: v.encode() for k, v in pth_shim(dist, job.shim.pth_dirs).items()})
    return files


def _metadata(text: bytes, requires: tuple[str, ...]) -> bytes:
    if not requires:
        return text
    msg = email.parser.BytesParser().parsebytes(text)
    have = {r.split(";")[0].replace(" ", "") for r in msg.get_all("Requires-Dist") or []}
    extra = [r for r in requires if r.replace(" ", "") not in have]
    head, sep, body = text.partition(b"\n\n")
    lines = b"".join(f"Requires-Dist: {r}\n".encode() for r in extra)
    return head.rstrip(b"\n") + b"\n" + lines.rstrip(b"\n") + (sep or b"\n") + body


def _wheel_text(text: bytes, tags: WheelTags) -> bytes:
    lines = [ln for ln in text.decode().splitlines() if not ln.startswith("Tag:")]
    lines += [f"Tag: {t}" for t in tags.expanded()]
    return ("\n".join(lines) + "\n").encode()


def repair_wheel(wheel: Path, wheel_dir: Path, opts: RepairOptions) -> RepairResult:
    """Repair one wheel into `wheel_dir` (a pure wheel is copied through unchanged)."""
    name, version, build, tags = parse_filename(wheel.name)
    dist_info = f"{name}-{version}.dist-info"
    with ExitStack() as stack:
        tree = WheelTree(wheel)
        stack.callback(tree.close)
        job = decide(tree, opts, name)
        if opts.dry_run:
            return RepairResult(wheel, None, job.collection, job.plan, new_tags(job, tags, opts), tuple(job.notes),
                                job.shim)
        if not job.analysis.tree_binaries:
            out = wheel_dir / wheel.name
            _copy_atomic(wheel, out)
            return RepairResult(wheel, out, job.collection, job.plan, tags, ("no binaries: copied unchanged",))
        fp = stack.enter_context(open(wheel, "rb"))
        zf = stack.enter_context(zipfile.ZipFile(fp))
        hashes = _check_record(zf, dist_info, wheel)
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".dynawheel-", dir=_workdir(wheel_dir))))
        edited = _edit_copy(job, tree, work, opts)
        tags2 = new_tags(job, tags, opts)
        extra = _shim_files(job, zf.read, name)
        extra[f"{dist_info}/WHEEL"] = _wheel_text(zf.read(f"{dist_info}/WHEEL"), tags2)
        extra[f"{dist_info}/METADATA"] = _metadata(zf.read(f"{dist_info}/METADATA"), job.requires)
        if job.collection.vendored or job.collection.provided:
            extra[f"{dist_info}/{MANIFEST}"] = manifest(job)
        entries = _wheel_entries(zf, fp, hashes, edited, extra, dist_info)
        out = wheel_dir / wheel_filename(name, version, tags2, build)
        _say(opts, f"writing {out.name}")
        write_wheel(out, entries, dist_info, compression_level=opts.compression_level)
        return RepairResult(wheel, out, job.collection, job.plan, tags2, tuple(job.notes), job.shim)


def _workdir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {str(out_dir)!r}: {exc.strerror}") from None
    return out_dir


def _copy_atomic(src: Path, dest: Path) -> None:
    from .wheel.archive import atomic_output

    with atomic_output(dest) as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def _wheel_entries(zf: zipfile.ZipFile, fp: object, hashes: Mapping[str, str], edited: Mapping[str, Path],
                   extra: Mapping[str, bytes], dist_info: str) -> list[Entry]:
    entries: list[Entry] = []
    for info in zf.infolist():
        name = info.filename
        if info.is_dir() or name == f"{dist_info}/RECORD" or name in edited or name in extra:
            continue
        executable = bool((info.external_attr >> 16) & 0o111)
        entries.append(Entry(name, RawSource(fp, info, hashes[name]), executable))  # type: ignore[arg-type]
    entries += [Entry(rel, path, True) for rel, path in edited.items()]
    entries += [Entry(rel, data) for rel, data in extra.items()]
    return entries


# ---- staged directories --------------------------------------------------------------------

@contextmanager
def _output_dir(target: Path, out: Path | None, in_place: bool) -> Iterator[Path]:
    """A directory to write into; renamed to `out` when all went well."""
    if in_place:
        yield target
        return
    assert out is not None
    if out.exists() and any(out.iterdir()):
        raise OutputError(f"output directory {str(out)!r} exists and is not empty")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_workdir(out.parent)))
    try:
        shutil.copytree(target, tmp, dirs_exist_ok=True, symlinks=False)
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
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
    job = decide(tree, opts, dist)
    if opts.dry_run:
        return RepairResult(target, None, job.collection, job.plan, None, tuple(job.notes), job.shim)
    with _output_dir(target, out, in_place) as dest, tempfile.TemporaryDirectory(
            prefix=".dynawheel-", dir=_workdir(dest.parent)) as work:
        edited = _edit_copy(job, tree, Path(work), opts)
        for rel, path in edited.items():
            _replace_file(path, dest / rel)
        shims = _shim_files(job, lambda rel: (target / rel).read_bytes(), dist or _dist_libs(tree.files(), None)[:-5])
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
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.dynawheel-tmp")
    shutil.copyfile(src, tmp)
    os.chmod(tmp, 0o755 if not dest.exists() or is_executable(dest) else 0o644)
    os.replace(tmp, dest)


def _write_file(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.dynawheel-tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
