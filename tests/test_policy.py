"""manylinux/musllinux policy data and the best-tag verdict."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynawheel.binary import BinaryFormat, Dependency, ElfFacts, FileKind, Image
from dynawheel.platform_tags import Content, ElfVerdict, elf_verdict
from dynawheel.policy import (
    MUSL_APK_ARCH,
    MUSL_UNPROVABLE,
    family_of,
    get_policy,
    interpreters,
    load_policies,
    musl_libc_names,
    split_version,
    system_libraries,
)
from dynawheel.repair.options import RepairOptions
from dynawheel.repair.pipeline import decide
from dynawheel.repair.retag import new_tags
from dynawheel.report import audit
from dynawheel.search import SearchPaths
from dynawheel.tree import DirTree
from dynawheel.wheel.tags import parse_tags

from . import elfbuild

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "dynawheel" / "data" / "manylinux-policy.json"


def image(arch: str = "x86_64", **needs: list[str]) -> Image:
    return Image(BinaryFormat.ELF, arch, FileKind.SHARED, needed=tuple(Dependency(n) for n in needs),
                 facts=ElfFacts(version_needs={lib.replace("_", "."): tuple(v) for lib, v in needs.items()}))


def test_data_is_versioned_and_complete() -> None:
    data = json.loads(DATA.read_text())
    assert data["version"] == 1
    names = [p.name for p in load_policies()]
    assert names[0] == "manylinux_2_5" and "musllinux_1_2" in names
    assert get_policy("manylinux2014").name == "manylinux_2_17"
    assert get_policy("manylinux1_x86_64").name == "manylinux_2_5"
    assert get_policy("manylinux_2_28_aarch64").name == "manylinux_2_28"
    m17 = get_policy("manylinux_2_17")
    assert m17.symbol_versions["x86_64"]["GLIBC"] == "2.17"
    assert m17.symbol_versions["x86_64"]["CXXABI"] == "1.3.7"
    assert m17.symbol_versions["x86_64"]["GLIBCXX"] == "3.4.19"
    assert {"libc.so.6", "libm.so.6", "libpthread.so.0", "libgcc_s.so.1"} <= m17.lib_whitelist
    assert "libssl.so.3" not in system_libraries()
    assert interpreters("manylinux")["x86_64"] == "/lib64/ld-linux-x86-64.so.2"
    assert interpreters("musllinux")["aarch64"] == "/lib/ld-musl-aarch64.so.1"


def test_split_version() -> None:
    assert split_version("GLIBCXX_3.4.21") == ("GLIBCXX", "3.4.21")
    assert split_version("GLIBC_PRIVATE") == ("GLIBC", "PRIVATE")


def best_elf_policy(images: list[tuple[str, Image]], system: list[str]) -> ElfVerdict:
    """The verdict of the one rule (platform_tags) on these images keeping `system` libraries."""
    return elf_verdict(Content(elf=tuple(images), system=frozenset(system)))


def texts(verdict: ElfVerdict) -> tuple[str, ...]:
    return tuple(map(str, verdict.blockers))


def test_verdicts_by_symbol_version() -> None:
    old = image(libc_so_6=["GLIBC_2.2.5"])
    assert best_elf_policy([("a.so", old)], ["libc.so.6"]).tag == "manylinux_2_5_x86_64"
    v = best_elf_policy([("a.so", image(libc_so_6=["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_PRIVATE"]))], ["libc.so.6"])
    assert v.tag == "manylinux_2_17_x86_64"
    assert texts(v) == (
        "manylinux_2_5_x86_64: 'a.so' needs GLIBC_2.17 (max GLIBC_2.5)",
        "manylinux_2_12_x86_64: 'a.so' needs GLIBC_2.17 (max GLIBC_2.12)",
    )
    assert {(b.file, b.subject, b.provider, b.fix) for b in v.blockers} == {
        ("a.so", "GLIBC_2.17", "libc.so.6", "build on manylinux_2_5 or older (a manylinux_2_5 build image)"),
        ("a.so", "GLIBC_2.17", "libc.so.6", "build on manylinux_2_12 or older (a manylinux_2_12 build image)")}
    cxx = best_elf_policy([("b.so", image(libstdc___so_6=["GLIBCXX_3.4.30", "CXXABI_1.3.13"]))], [])
    assert cxx.tag == "manylinux_2_35_x86_64", cxx.blockers
    assert texts(cxx)[-1] == "manylinux_2_34_x86_64: 'b.so' needs GLIBCXX_3.4.30 (max GLIBCXX_3.4.29)"


def test_verdict_by_external_library_and_arch() -> None:
    v = best_elf_policy([("a.so", image(libc_so_6=["GLIBC_2.2.5"]))], ["libc.so.6", "libssl.so.3"])
    assert v.tag == "linux_x86_64" and v.policy is None
    assert "manylinux_2_5_x86_64: external library 'libssl.so.3' is not allowed" in texts(v)
    riscv = best_elf_policy([("r.so", image("riscv64", libc_so_6=["GLIBC_2.27"]))], [])
    assert riscv.tag == "manylinux_2_31_riscv64"
    assert "manylinux_2_17_riscv64: arch 'riscv64' of 'r.so' is not covered" in texts(riscv)


def test_musllinux_family() -> None:
    musl = Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED, needed=(Dependency("libc.so"),),
                 facts=ElfFacts(interp="/lib/ld-musl-x86_64.so.1"))
    verdict = best_elf_policy([("m.so", musl)], ["libc.so"])
    assert verdict.tag == "musllinux_1_2_x86_64"  # auditwheel's answer on a host without musl
    assert texts(verdict) == (f"musllinux_1_1_x86_64: {MUSL_UNPROVABLE}",)


@pytest.mark.parametrize("libc", ["libc.musl-x86_64.so.1", "ld-musl-x86_64.so.1", "libc.so"])
def test_alpine_extension_is_musllinux(libc: str) -> None:
    """An Alpine-built extension: no PT_INTERP, musl's libc under any of its names."""
    ext = Image(BinaryFormat.ELF, "x86_64", FileKind.SHARED, needed=(Dependency(libc), Dependency("libz.so.1")))
    assert family_of([ext]) == "musllinux"
    assert best_elf_policy([("m.so", ext)], [libc, "libz.so.1"]).tag == "musllinux_1_2_x86_64"
    assert best_elf_policy([("m.so", ext)], [libc, "libssl.so.3"]).tag == "linux_x86_64"


def test_musl_libc_names_cover_every_musllinux_arch() -> None:
    names = musl_libc_names()
    assert {"libc.musl-aarch64.so.1", "libc.musl-x86.so.1", "libc.musl-armv7.so.1", "ld-musl-i386.so.1"} <= names
    assert set(interpreters("musllinux")) <= set(MUSL_APK_ARCH)


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed")
def test_verdict_of_a_built_tree(tmp_path: Path) -> None:
    helper = elfbuild.shared_lib(tmp_path / "pkg" / "libh.so.1", soname="libh.so.1")
    elfbuild.extension(tmp_path / "pkg", "_ext", needs=[helper], runpath=["$ORIGIN"])
    for c in tmp_path.rglob("*.c"):
        c.unlink()
    report = audit(tmp_path, SearchPaths.from_host({}))
    assert [(v.format, v.summary, v.blockers) for v in report.verdicts] == [
        (BinaryFormat.ELF, "manylinux_2_5_x86_64", ())]  # getenv@GLIBC_2.2.5 only; libc.so.6 the one outside


@pytest.mark.skipif(not elfbuild.have_gcc(), reason="gcc is needed")
def test_verdict_before_and_after_vendoring(tmp_path: Path) -> None:
    """An external library blocks every policy until it is vendored; then its own needs count."""
    outside = elfbuild.shared_lib(tmp_path / "outside" / "libout.so.1", soname="libout.so.1")
    elfbuild.extension(tmp_path / "tree" / "pkg", "_ext", needs=[outside], runpath=[str(tmp_path / "outside")])
    search = SearchPaths.from_host({})
    (before,) = audit(tmp_path / "tree", search).verdicts
    assert before.summary == "linux_x86_64"
    assert ("manylinux_2_5_x86_64: 'pkg/_ext" in before.blockers[0] and "needs 'libout.so.1' from outside the wheel"
            in before.blockers[0]), before.blockers
    (outside_blocker,) = {(b.reason.value, b.subject, b.provider) for b in before.explained}
    assert outside_blocker == ("outside", "libout.so.1", str(tmp_path / "outside" / "libout.so.1"))
    opts = RepairOptions(search=search, dry_run=True)
    job = decide(DirTree(tmp_path / "tree"), opts, "demo")
    assert [v.source for v in job.collection.vendored] == [str(tmp_path / "outside" / "libout.so.1")]
    after = new_tags(job, parse_tags("cp311-cp311-linux_x86_64"), opts)  # libout vendored: its libc need counts
    assert after.platform == "manylinux_2_5_x86_64.manylinux1_x86_64"


def test_gen_policy_regenerates_the_packaged_file(tmp_path: Path) -> None:
    auditwheel = pytest.importorskip("auditwheel")
    src = Path(auditwheel.__file__).parent / "policy"
    if not (src / "manylinux-policy.json").exists():
        pytest.skip("this auditwheel has no policy json")
    out = tmp_path / "p.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_policy.py"), str(src / "manylinux-policy.json"),
                    str(src / "musllinux-policy.json"), "-o", str(out)], check=True, capture_output=True)
    regenerated = json.loads(out.read_text())
    assert regenerated["version"] == 1 and len(regenerated["policies"]) >= 17
    names = {p["name"] for p in regenerated["policies"]}
    assert {"manylinux_2_17", "manylinux_2_28", "musllinux_1_2"} <= names
    # the blacklists come through, and the packaged file is what auditwheel 6.8.2's files give
    by_name = {p["name"]: p for p in regenerated["policies"]}
    assert "uncompress2" in by_name["manylinux_2_28"]["blacklist"]["libz.so.1"]
    packaged = json.loads(DATA.read_text())
    assert packaged["source"].startswith("pypa/auditwheel 6.8.2 ")
    if importlib.metadata.version("auditwheel") == "6.8.2":
        assert regenerated["policies"] == packaged["policies"]
