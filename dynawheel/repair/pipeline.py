"""`dynawheel repair`: the pipeline, and only that.

analyze (analysis/resolve.py) -> collect (collect.py: what to vendor, names, places) -> plan (plan.py:
every edit of every file) -> apply (apply.py: copies + one write per file) -> retag (retag.py) ->
write (output.py; a wheel through wheel/archive.py).  What makes it fast (reading ahead, hashing
beside, packing early) lives in session.py.  Inputs are never modified unless `in_place`; outputs are
written to temporary names and renamed into place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from tempfile import TemporaryDirectory

from ..analysis.dlldirs import with_dll_directories
from ..analysis.imports import Blacklisted, blacklisted_imports
from ..analysis.owners import Owner
from ..analysis.resolve import Analysis, Status, analyze
from ..errors import RepairError, UsageError
from ..tree import HostFS, Tree
from ..wheel.archive import Later, write_wheel
from ..wheel.layout import REPAIR_MANIFEST
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
from .licenses import Licenses
from .options import RepairOptions
from .output import (
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
from .provenance import Place, Provenance, provenance
from .retag import new_tags, wheel_text
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
    return Job(analysis, collection, plan, shim, requires, notes, _blacklisted(tree, host, analysis, collection))


def _blacklisted(tree: Tree, host: HostFS, analysis: Analysis, collection: Collection) -> Blacklisted:
    """The blacklisted symbols the repaired tree's ELF files import: its own files and the vendored copies."""
    files = [(rel, image, rel) for p in analysis.tree_binaries if p not in analysis.aliases
             and (rel := analysis.relpath(p)) is not None for image in analysis.binaries[p].images]
    vendored = [(v.dest, image, v.source) for v in collection.vendored for image in analysis.binaries[v.source].images]
    return blacklisted_imports(files, tree.open) + blacklisted_imports(vendored, host.open)


def check_abi3(wheel_name: str, tree: Tree, analysis: Analysis, opts: RepairOptions) -> None:
    """Refuse a wheel tagged abi3/abi3t whose binaries use symbols outside that stable ABI."""
    tags = parse_filename(wheel_name)[3]
    if opts.allow_abi3_violations or "abi3" not in tags.abi:  # no stable ABI claimed (abi3, abi3t): nothing to audit
        return
    from ..analysis.abi3 import audit_tags, refuse  # performance: 2 dataclasses, a regex, only for abi3 wheels

    result = audit_tags(tree, analysis, tags.python, tags.abi)
    if result is not None:
        refuse(result)


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
        extra: dict[str, bytes | Later] = dict(shim_files(job, session.read_small, dist))
        extra[f"{dist_info}/WHEEL"] = wheel_text(session.wheel_file, tags2)
        if job.collection.vendored or job.collection.provided:
            extra[f"{dist_info}/{REPAIR_MANIFEST}"] = manifest(job)
        out = wheel_dir / wheel_filename(name, version, tags2, build)
        members = set(zf.namelist())
        metadata = with_requires(session.metadata, job.requires)
        prov = provenance(job.collection, opts, (out.name, name, version), Place.in_dist_info(dist_info), metadata,
                          lambda m: session.read_small(m) if m in members else None)
        extra.update(prov.members)
        if prov.sbom is not None and prov.sbom_data is not None:
            extra[prov.sbom] = Later(session.soon(prov.sbom_data))  # made while the members before it are written
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
        prov = tree_provenance(job, opts, dest, tree.files(), dist)
        for rel, data in prov.members.items():
            write_file(dest / rel, data)
        if prov.sbom is not None and prov.sbom_data is not None:
            write_file(dest / prov.sbom, prov.sbom_data())
    return RepairResult(target, out or target, job.collection, job.plan, None, tuple(job.notes), job.shim, prov.sbom,
                        prov.owners, prov.licenses)


def tree_provenance(job: Job, opts: RepairOptions, dest: Path, files: list[str], dist: str | None) -> Provenance:
    """The SBOM and license files of a repaired staged tree: in its .dist-info (METADATA naming them) when it
    has one, else at its root, where `build` finds them."""
    dist_info = next((f.split("/", 1)[0] for f in files if f.split("/", 1)[0].endswith(".dist-info")), None)
    has_metadata = dist_info is not None and f"{dist_info}/METADATA" in files
    place = Place.in_dist_info(dist_info, has_metadata) if dist_info else Place.at_stage_root()
    version = dist_info[: -len(".dist-info")].rpartition("-")[2] if dist_info else None

    def read(rel: str) -> bytes | None:
        return (dest / rel).read_bytes() if (dest / rel).is_file() else None

    metadata = read(place.metadata) if place.metadata else None
    return provenance(job.collection, opts, (None, dist_name(files, dist), version), place, metadata, read)
