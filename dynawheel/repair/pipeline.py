"""`dynawheel repair`: the pipeline, and only that.

analyze (analysis/resolve.py) -> collect (collect.py: what to vendor, names, places) -> plan (plan.py:
every edit of every file) -> apply (apply.py: copies + one write per file) -> retag (retag.py) ->
write (output.py; a wheel through wheel/archive.py).  What makes it fast (reading ahead, hashing
beside, packing early) lives in session.py.  Inputs are never modified unless `in_place`; outputs are
written to temporary names and renamed into place.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from tempfile import TemporaryDirectory

from ..analysis.abi3 import audit_tags, refuse
from ..analysis.dlldirs import with_dll_directories
from ..analysis.owners import Owner, Owners
from ..analysis.resolve import Analysis, Status, analyze
from ..errors import RepairError, UsageError
from ..tree import HostFS, Tree
from ..wheel.archive import write_wheel
from ..wheel.tags import WheelTags, parse_filename, wheel_filename
from .apply import edit_copies
from .collect import (
    Collection,
    HostDigests,
    TreeDigests,
    canonical_analysis,
    check_one_file_per_request,
    collect,
    dist_libs,
    dist_name,
    provided_libraries,
)
from .licenses import Licenses, find_licenses, license_entries, with_license_files
from .options import RepairOptions
from .output import (
    MANIFEST,
    copy_atomic,
    manifest,
    manifest_path,
    output_dir,
    replace_file,
    shim_files,
    wheel_entries,
    with_requires,
    write_file,
)
from .plan import EditPlan, Job, make_plan, shim_plan
from .retag import new_tags, wheel_text
from .sbom import SBOM_NAME, sbom_json
from .session import TreeSession, WheelSession
from .shim import ShimPlan


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
    sbom: str | None = None  # the SBOM written (its path in the output), None without one
    owners: Mapping[str, Owner | None] = field(default_factory=dict)  # vendored library's source -> its package
    licenses: Licenses = field(default_factory=Licenses)  # license files shipped; libraries without any


def decide(tree: Tree, opts: RepairOptions, dist: str | None) -> Job:
    opts.say("analyzing binaries")
    host = HostFS(opts.search.sysroot)
    # the tree's own os.add_dll_directory shim counts (a repaired tree repairs to itself)
    analysis = canonical_analysis(analyze(tree, with_dll_directories(tree, opts.search)), host.real)
    if analysis.bad:
        raise RepairError("cannot repair a tree with unreadable binaries: " +
                          "; ".join(b.message for b in analysis.bad))
    check_one_file_per_request(analysis)
    provided, requires = provided_libraries(opts.provided_by)
    choices = replace(opts.choices, provided={**opts.choices.provided, **provided})
    digests = HostDigests(host).prefetch({e.hit for w in analysis.walks for e in w.edges  # performance
                                       if e.status is Status.EXTERNAL and e.hit is not None})
    collection = collect(analysis, choices, dist_libs(tree.files(), dist), digests, TreeDigests(tree))
    plan = make_plan(analysis, collection)
    shim = shim_plan(analysis, collection)
    notes = [f"{len(collection.missing_allowed)} missing libraries allowed"] if collection.missing_allowed else []
    return Job(analysis, collection, plan, shim, requires, notes)


def check_abi3(wheel_name: str, tree: Tree, analysis: Analysis, opts: RepairOptions) -> None:
    """Refuse a wheel tagged abi3/abi3t whose binaries use symbols outside that stable ABI."""
    if opts.allow_abi3_violations:
        return
    tags = parse_filename(wheel_name)[3]
    result = audit_tags(tree, analysis, tags.python, tags.abi)
    if result is not None:
        refuse(result)


@dataclass(frozen=True)
class Provenance:
    """What a repair says about where its vendored libraries come from: owners, SBOM, license files."""

    owners: Mapping[str, Owner | None]
    sbom: str | None  # the SBOM's member name, None without one
    licenses: Licenses
    members: Mapping[str, bytes]  # the members to add or replace (METADATA, the SBOM, license files)


def provenance(job: Job, opts: RepairOptions, names: tuple[str, str, str], dist_info: str, metadata: bytes,
               read: Callable[[str], bytes | None]) -> Provenance:
    """Owners of the vendored libraries, the SBOM and the license files; `names`: (wheel file, name, version)."""
    vendored = job.collection.vendored
    owners = owners_of(job.collection, opts)
    members: dict[str, bytes] = {}
    sbom = f"{dist_info}/sboms/{SBOM_NAME}" if opts.sbom and vendored else None
    if sbom is not None:
        members[sbom] = sbom_json(*names, vendored, owners)
    licenses = find_licenses(vendored, owners)
    members.update(license_entries(licenses, dist_info))
    members[f"{dist_info}/METADATA"], moved = with_license_files(
        metadata, tuple(f.name for f in licenses.files), dist_info, read)
    members.update(moved)
    return Provenance(owners, sbom, licenses, members)


def owners_of(collection: Collection, opts: RepairOptions) -> dict[str, Owner | None]:
    """The package that installed each vendored library on the host, where the host knows it."""
    if not collection.vendored:
        return {}
    opts.say("looking up the packages of the vendored libraries")
    finder = Owners(opts.search)
    return {v.source: finder.owner(v.source) for v in collection.vendored}


def repair_wheel(wheel: Path, wheel_dir: Path, opts: RepairOptions) -> RepairResult:
    """Repair one wheel into `wheel_dir` (a pure wheel is copied through unchanged)."""
    name, version, build, tags = parse_filename(wheel.name)
    with WheelSession(wheel, name, version, dry_run=opts.dry_run, elf_editor=opts.elf_editor) as session:
        dist_info = session.dist_info  # as the wheel spells it
        dist = dist_info[: -len(".dist-info")].rpartition("-")[0]  # <dist>.libs the same on every re-repair
        job = decide(session.tree, opts, dist)
        check_abi3(wheel.name, session.tree, job.analysis, opts)
        session.analysed(job.plan.files)
        if opts.dry_run:
            return RepairResult(wheel, None, job.collection, job.plan, new_tags(job, tags, opts), tuple(job.notes),
                                job.shim)
        if not job.analysis.tree_binaries:  # copied unchanged, once every member is checked
            session.verify_unchanged()
            out = wheel_dir / wheel.name
            copy_atomic(wheel, out)
            return RepairResult(wheel, out, job.collection, job.plan, tags, ("no binaries: copied unchanged",))
        tags2 = new_tags(job, tags, opts)  # may refuse (--plat): before anything is written
        hashes, record_check = session.record_check()
        work = session.workdir()
        packer = session.packer(opts.compression_level, opts.deflate)
        edited = edit_copies(job, session.tree, work, opts, session.editors, packer.pack_soon)
        zf = session.zip
        extra = shim_files(job, session.read_small, dist)
        extra[f"{dist_info}/WHEEL"] = wheel_text(session.wheel_file, tags2)
        if job.collection.vendored or job.collection.provided:
            extra[f"{dist_info}/{MANIFEST}"] = manifest(job)
        out = wheel_dir / wheel_filename(name, version, tags2, build)
        members = set(zf.namelist())
        metadata = with_requires(session.metadata, job.requires)
        prov = provenance(job, opts, (out.name, name, version), dist_info, metadata,
                          lambda m: session.read_small(m) if m in members else None)
        extra.update(prov.members)
        entries = wheel_entries(zf, session.fp, hashes, edited, extra, dist_info)
        opts.say(f"writing {out.name}")
        write_wheel(out, entries, dist_info, before_commit=record_check.wait, packer=packer)
        return RepairResult(wheel, out, job.collection, job.plan, tags2, tuple(job.notes), job.shim, prov.sbom,
                            prov.owners, prov.licenses)


def repair_tree(target: Path, out: Path | None, opts: RepairOptions, *, in_place: bool = False,
                dist: str | None = None) -> RepairResult:
    """Repair a staged directory into `out` (or in place): vendored libraries beside the binaries."""
    if not target.is_dir():
        raise RepairError(f"not a directory: {str(target)!r}")
    if out is None and not in_place and not opts.dry_run:
        raise RepairError("give an output directory (-o DIR) or --in-place")
    if out is not None and not in_place:
        real_target, real_out = target.resolve(), out.resolve()
        if real_out == real_target or real_target in real_out.parents:
            raise UsageError(f"output directory {str(out)!r} is inside the input {str(target)!r}: the repaired copy "
                             "would be part of what it copies; give a directory outside it (or --in-place)")
    session = TreeSession(target, dry_run=opts.dry_run, elf_editor=opts.elf_editor)
    tree = session.tree
    job = decide(tree, opts, dist)
    if opts.dry_run:
        return RepairResult(target, None, job.collection, job.plan, None, tuple(job.notes), job.shim)
    with output_dir(target, out, in_place) as dest, TemporaryDirectory(prefix="dynawheel-repair-") as work:
        edited = edit_copies(job, tree, Path(work), opts, session.editors)
        for rel, path in edited.items():
            replace_file(path, dest / rel)
        shims = shim_files(job, lambda rel: (target / rel).read_bytes(), dist_name(tree.files(), dist))
        for rel, data in shims.items():
            write_file(dest / rel, data)
        if job.collection.vendored or job.collection.provided:
            write_file(manifest_path(dest, tree.files()), manifest(job))
    return RepairResult(target, out or target, job.collection, job.plan, None, tuple(job.notes), job.shim)
