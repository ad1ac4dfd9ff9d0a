"""Core metadata for a wheel, from options, a PEP 621 ``[project]`` table or a METADATA file.

Precedence: command-line options override whatever the table or file says; a PEP 621 table
is parsed by ``pyproject-metadata`` (a maintained parser), a METADATA file is taken as
written with the options applied on top.
"""

from __future__ import annotations

import email.parser
import email.policy
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from ..errors import MetadataError
from .tags import validate_name, validate_version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class MetadataOptions:
    """What the user gave on the command line or to the API; None means 'not given'."""

    name: str | None = None
    version: str | None = None
    summary: str | None = None
    requires: tuple[str, ...] = ()
    requires_python: str | None = None
    extra_fields: tuple[tuple[str, str], ...] = ()  # ('Classifier', '...'), ...


@dataclass(frozen=True)
class ProjectMetadata:
    name: str
    version: str
    metadata: bytes  # the METADATA file
    entry_points: bytes | None = None
    license_files: tuple[tuple[str, Path], ...] = ()  # (path below licenses/, source)
    requires_dist: tuple[str, ...] = field(default=())


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fp:
            return tomllib.load(fp)
    except OSError as exc:
        raise MetadataError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise MetadataError(f"invalid TOML in {str(path)!r}: {exc}") from None


def _check_requirements(reqs: Sequence[str]) -> None:
    for req in reqs:
        try:
            Requirement(req)
        except InvalidRequirement as exc:
            raise MetadataError(f"invalid requirement {req!r}: {exc}") from None


def _check_requires_python(spec: str | None) -> None:
    if spec is None:
        return
    try:
        SpecifierSet(spec)
    except InvalidSpecifier:
        raise MetadataError(f"invalid requires-python {spec!r}: not a version specifier") from None


def _apply_options(project: dict[str, Any], opts: MetadataOptions) -> dict[str, Any]:
    project = dict(project)
    dynamic = [d for d in project.get("dynamic", [])]
    for key, value in (("name", opts.name), ("version", opts.version), ("description", opts.summary),
                       ("requires-python", opts.requires_python)):
        if value is not None:
            project[key] = value
            if key in dynamic:
                dynamic.remove(key)
    if opts.requires:
        project["dependencies"] = [*project.get("dependencies", []), *opts.requires]
        if "dependencies" in dynamic:
            dynamic.remove("dependencies")
    project["dynamic"] = dynamic
    return project


def _entry_points(groups: Mapping[str, Mapping[str, str]]) -> bytes | None:
    lines: list[str] = []
    for group in sorted(groups):
        if not groups[group]:
            continue
        lines.append(f"[{group}]")
        lines.extend(f"{name} = {target}" for name, target in sorted(groups[group].items()))
        lines.append("")
    return "\n".join(lines).encode("utf-8") if lines else None


def from_project_table(table: Mapping[str, Any], project_dir: Path, opts: MetadataOptions) -> ProjectMetadata:
    """Metadata from a PEP 621 [project] table, options applied on top."""
    from pyproject_metadata import ConfigurationError, StandardMetadata

    project = _apply_options(dict(table), opts)
    if "version" in project.get("dynamic", []) or "version" not in project:
        raise MetadataError("the version is not set: give --version or set project.version in pyproject.toml")
    if "name" not in project:
        raise MetadataError("the name is not set: give --name or set project.name in pyproject.toml")
    validate_name(str(project["name"]))
    validate_version(str(project["version"]))
    _check_requirements(list(opts.requires))
    try:
        meta = StandardMetadata.from_pyproject({"project": project}, project_dir)
    except ConfigurationError as exc:
        raise MetadataError(f"invalid [project] table: {exc}") from None
    groups: dict[str, Mapping[str, str]] = {"console_scripts": meta.scripts, "gui_scripts": meta.gui_scripts}
    groups.update(meta.entrypoints)
    text = bytes(meta.as_rfc822())
    text = _add_extra_fields(text, opts.extra_fields)
    licenses = tuple((Path(p).as_posix(), project_dir / p) for p in (meta.license_files or []))
    return ProjectMetadata(
        name=meta.name, version=str(meta.version), metadata=text,
        entry_points=_entry_points(groups), license_files=licenses,
        requires_dist=tuple(str(d) for d in meta.dependencies),
    )


def _add_extra_fields(text: bytes, extra: Sequence[tuple[str, str]]) -> bytes:
    if not extra:
        return text
    head, sep, body = text.partition(b"\n\n")
    added = b"".join(f"{k}: {v}\n".encode() for k, v in extra)
    return head + b"\n" + added.rstrip(b"\n") + (sep or b"\n") + body


def _parse_headers(text: str, where: str) -> tuple[list[tuple[str, str]], str]:
    msg = email.parser.Parser(policy=email.policy.compat32).parsestr(text)
    if msg.defects:
        raise MetadataError(f"cannot parse METADATA {where}: {msg.defects[0]!r}")
    body = msg.get_payload()
    return [(k, str(v)) for k, v in msg.items()], body if isinstance(body, str) else ""


def _replace(headers: list[tuple[str, str]], key: str, values: Sequence[str], *, append: bool = False) -> None:
    if not append:
        headers[:] = [(k, v) for k, v in headers if k.lower() != key.lower()]
    headers.extend((key, v) for v in values)


def from_metadata_text(text: str, where: str, opts: MetadataOptions) -> ProjectMetadata:
    """Metadata from a ready METADATA file's text, options applied on top."""
    headers, body = _parse_headers(text, where)
    for key, value in (("Name", opts.name), ("Version", opts.version), ("Summary", opts.summary),
                       ("Requires-Python", opts.requires_python)):
        if value is not None:
            _replace(headers, key, [value])
    _replace(headers, "Requires-Dist", list(opts.requires), append=True)
    for key, value in opts.extra_fields:
        headers.append((key, value))
    found = {k.lower(): v for k, v in headers}
    version = found.get("metadata-version", "")
    if not version or validate_version(version) < validate_version("2.1"):
        _replace(headers, "Metadata-Version", ["2.1"])
        headers.insert(0, headers.pop())
    if "name" not in found or "version" not in found:
        raise MetadataError(f"METADATA {where} has no {'Name' if 'name' not in found else 'Version'} field")
    name, ver = validate_name(found["name"].strip()), found["version"].strip()
    validate_version(ver)
    requires = [v for k, v in headers if k.lower() == "requires-dist"]
    _check_requirements(requires)
    _check_requires_python(found.get("requires-python"))
    out = "".join(f"{k}: {v}\n" for k, v in headers) + ("\n" + body if body.strip() else "")
    return ProjectMetadata(name=name, version=ver, metadata=out.encode("utf-8"), requires_dist=tuple(requires))


def from_options(opts: MetadataOptions) -> ProjectMetadata:
    if opts.name is None or opts.version is None:
        missing = "name" if opts.name is None else "version"
        raise MetadataError(
            f"no {missing} given: pass --{missing}, a pyproject.toml with a [project] table, or --metadata FILE"
        )
    return from_project_table({}, Path.cwd(), opts)


def read_pyproject(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """([project] table or None, [tool.dynawheel] table) of a pyproject.toml."""
    data = load_toml(path)
    project = data.get("project")
    tool = data.get("tool", {}).get("dynawheel", {})
    if project is not None and not isinstance(project, dict):
        raise MetadataError(f"[project] in {str(path)!r} is not a table")
    if not isinstance(tool, dict):
        raise MetadataError(f"[tool.dynawheel] in {str(path)!r} is not a table")
    return project, tool
