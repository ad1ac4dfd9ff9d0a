"""The seed's call, ``dynawheel(...)``, as its setup.py scripts make it (exported as dynawheel.dynawheel)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .wheel.build import BuildOptions, build
from .wheel.metadata import MetadataOptions
from .wheel.tags import make_tags


def dynawheel(
    metadata_content: str,
    src_root_dir: Path,
    pkgname: str,
    whlver: str,
    arch: str | None = None,
    pyver: str | None = None,
    whl_dest_dir: Path = Path("dist"),
    root_is_purelib: bool = False,
    abi: str = "none",
    build_tag: str | None = None,
    cleanup_dist_info_dir: bool = True,
    **aliases: Any,
) -> Path:
    """The seed's call, as its setup.py scripts make it: write the wheel, print 'wrote <path>'.

    `plat_name`, `python_tag` and `abi_tag` are accepted as the seed's other spellings of
    `arch`, `pyver` and `abi`.  The source tree is never written to, so
    `cleanup_dist_info_dir` has nothing to clean; it is accepted for compatibility.
    """
    arch = arch or aliases.pop("plat_name", None)
    pyver = pyver or aliases.pop("python_tag", None)
    abi = aliases.pop("abi_tag", abi)
    if aliases:
        raise TypeError(f"dynawheel() got unexpected keyword arguments {sorted(aliases)!r}")
    del cleanup_dist_info_dir

    tags = make_tags(pyver or "py3", abi, arch or "any")
    path = build(BuildOptions(
        stage=Path(src_root_dir),
        metadata=_seed_options(pkgname, whlver),
        metadata_text=metadata_content,
        tags=tags,
        root_is_purelib=root_is_purelib,
        build_number=build_tag,
    ), Path(whl_dest_dir)).path
    print(f"wrote {path}")  # the seed's contract: its setup.py scripts read this line
    return path


def _seed_options(name: str, version: str) -> MetadataOptions:
    return MetadataOptions(name=name, version=version)
