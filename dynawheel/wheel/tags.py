"""Validated distribution names, versions and wheel tags (with suggestions for near misses)."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import MetadataError, TagError

# Not packaging.utils / packaging.tags at module level: packaging.tags imports platform, subprocess and
# packaging's manylinux/musllinux probes (~24 M instructions, 3 % of a small repair that needs none of it).
# What this module needs of them is below: canonicalize_name (PEP 503), the expansion of a compressed tag
# set (PEP 425) with packaging's checks, and a fast path of parse_filename that falls back to
# packaging.utils.parse_wheel_filename for every name it does not certainly accept.  packaging.version too
# (~10 M instructions: its pattern) is imported when a version is not a plain release ('6.0.3').
if TYPE_CHECKING:
    from packaging.tags import Tag
    from packaging.version import Version

# patterns compiled on first use (re's cache), not at import: _NAME is ~4 M instructions to compile (IGNORECASE
# over Unicode), _PYTHON_TAG ~1 M, and a repair needs neither for the names it writes
_NAME = r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$"
_PYTHON_TAG = r"^(py|cp|pp|ip|jy|graalpy)(\d+)\.(\d+)$"


def canonicalize_name(name: str) -> str:
    """The normalized name of PEP 503 (``re.sub(r"[-_.]+", "-", name).lower()``), computed as
    packaging.utils.canonicalize_name does it (26.4, without its opt-in ``validate``): lowercase, '_' and
    '.' as '-', runs of '-' made one."""
    value = name.lower().replace("_", "-").replace(".", "-")
    while "--" in value:
        value = value.replace("--", "-")
    return value


def is_valid_name(name: str) -> bool:
    """A distribution name as the core metadata spec allows it (letters, digits, '.', '_', '-'; a letter
    or digit at both ends): the one rule, for wheels built and for files an index is given.  A plain ASCII
    name is answered with str methods; any other asks the pattern (which, IGNORECASE over Unicode, also takes
    a few non-ASCII letters and a trailing newline: kept as it was)."""
    if name.isascii() and name[:1].isalnum() and name[-1:].isalnum() and _plain(name.replace("-", "")):
        return True
    return re.match(_NAME, name, re.IGNORECASE) is not None


def validate_name(name: str) -> str:
    if not is_valid_name(name):
        raise MetadataError(
            f"invalid distribution name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting and ending with a letter or digit"
        )
    return name


def validate_version(version: str) -> Version:
    from packaging.version import InvalidVersion, Version  # see the imports above

    try:
        return Version(version)
    except InvalidVersion:
        hint = ""
        stripped = version.strip().lstrip("vV")
        if stripped != version:
            try:
                Version(stripped)
                hint = f" (did you mean {stripped!r}?)"
            except InvalidVersion:
                pass
        raise MetadataError(f"invalid version {version!r}: not a PEP 440 version{hint}") from None


def filename_component(name: str) -> str:
    """The escaped name used in file names (PEP 491/427): 'namespace.mod' -> 'namespace_mod'."""
    return canonicalize_name(validate_name(name)).replace("-", "_")


def version_component(version: str) -> str:
    """The normalized version as file names write it; a plain release as str(packaging.version.Version) writes
    it ('06.0.3' -> '6.0.3'), without importing packaging."""
    if is_release(version):
        return ".".join(str(int(part)) for part in version.split("."))
    return str(validate_version(version)).replace("-", "_")


@dataclass(frozen=True)
class WheelTags:
    """A compressed tag triple such as ('py2.py3', 'none', 'any')."""

    python: str
    abi: str
    platform: str

    def __str__(self) -> str:
        return f"{self.python}-{self.abi}-{self.platform}"

    def expanded(self) -> list[Tag]:
        """The tags of the compressed set as packaging.tags.Tag objects, sorted by their text (public API:
        ``RepairResult.tags``, ``BuildResult.tags``).  Imports packaging.tags; dynawheel's own writers and
        checks use :meth:`expanded_text`, which does not."""
        from packaging.tags import parse_tag  # see the imports above

        try:
            return sorted(parse_tag(str(self)), key=str)
        except ValueError as exc:  # packaging >= 26 refuses some tags our syntax check lets through ('311')
            raise TagError(f"invalid wheel tag {str(self)!r}: {exc}") from None

    def expanded_text(self) -> list[str]:
        """The tags of the compressed set (PEP 425: every combination of the '.'-separated parts), each
        ``interpreter-abi-platform`` lowercased, without repeats, sorted: the WHEEL file's ``Tag:`` lines.
        As ``[str(t) for t in self.expanded()]``, without importing packaging.tags; what dynawheel's callers
        need of a tag is its text (lines, sets compared).  The checks are parse_tag's (packaging
        26.4), in its order and with its messages, which packaging >= 26 added and our syntax check
        (make_tags) lets through: an empty part, not exactly three components, an interpreter part that
        is not an identifier ('311')."""
        text = str(self)
        components = [component.split(".") for component in text.split("-")]
        for parts in components:
            if "" in parts:
                raise TagError(
                    f"invalid wheel tag {text!r}: Tag {text!r} has an empty component: {'.'.join(parts)!r}"
                )
        if len(components) != 3:
            raise TagError(f"invalid wheel tag {text!r}: Tag {text!r} must have exactly three components")
        pythons, abis, platforms = components
        for python in pythons:
            if not python.isidentifier():
                raise TagError(f"invalid wheel tag {text!r}: Tag {text!r} has an invalid interpreter: {python!r}")
        return sorted({f"{p.lower()}-{a.lower()}-{pl.lower()}" for p in pythons for a in abis for pl in platforms})

    @property
    def is_pure(self) -> bool:
        return self.abi == "none" and self.platform == "any"


def _suggest_python(part: str) -> str | None:
    m = re.match(_PYTHON_TAG, part)
    if m:
        return f"{m.group(1)}{m.group(2)}{m.group(3)}"
    return None


def _check_part(kind: str, value: str) -> None:
    for part in value.split("."):
        if re.fullmatch(r"[A-Za-z0-9_]+", part):
            continue
        hint = _suggest_python(value) if kind == "python" else None
        if hint is None and "-" in part:
            hint = part.replace("-", "_")
        extra = f" (did you mean {hint!r}?)" if hint else ""
        raise TagError(f"invalid {kind} tag {value!r}: only letters, digits and '_'{extra}")


def make_tags(python: str, abi: str, platform: str) -> WheelTags:
    if not (python and abi and platform):
        raise TagError(f"invalid wheel tag {python}-{abi}-{platform!s}: empty component")
    if _suggest_python(python):
        raise TagError(
            f"invalid python tag {python!r}: tags have no dots (did you mean "
            f"{_suggest_python(python)!r}?)"
        )
    _check_part("python", python)
    _check_part("abi", abi)
    _check_part("platform", platform)
    return WheelTags(python, abi, platform)


def parse_tags(text: str) -> WheelTags:
    """'py3-none-any' -> WheelTags; errors suggest fixes ('py3.8' -> 'py38')."""
    parts = text.split("-")
    if len(parts) != 3:
        m = re.match(r"^(py|cp|pp)(\d)\.(\d+)-", text)
        hint = f" (did you mean {m.group(1)}{m.group(2)}{m.group(3)}?)" if m else ""
        raise TagError(f"invalid wheel tag {text!r}: expected PYTHON-ABI-PLATFORM{hint}")
    return make_tags(*parts)


def interpreter_tags() -> WheelTags:
    """The running interpreter's most specific tag (used for trees that hold binaries)."""
    import sysconfig

    from packaging.tags import sys_tags  # not at module level: see the imports above

    best = next(iter(sys_tags()))
    platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
    return WheelTags(best.interpreter, best.abi, platform if sys.platform != "win32" else best.platform)


def parse_filename(filename: str) -> tuple[str, str, str | None, WheelTags]:
    """Split a wheel file name: (name, version, build, tags); names are as written.  The names it accepts
    and refuses are packaging.utils.parse_wheel_filename's (tests/test_wheel_filename.py compares them)."""
    if not _certainly_valid(filename):
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename  # see the imports above

        try:
            parse_wheel_filename(filename)
        except InvalidWheelFilename as exc:
            raise TagError(f"invalid wheel file name {filename!r}: {exc}") from None
    stem = filename[: -len(".whl")]
    parts = stem.split("-")
    build = parts[2] if len(parts) == 6 else None
    return parts[0], parts[1], build, WheelTags(*parts[-3:])


def _certainly_valid(filename: str) -> bool:
    """Whether packaging.utils.parse_wheel_filename certainly accepts `filename` (False: ask it).  Each part is
    held to a strict ASCII subset of what that function allows: the name letters, digits, '.' and '_' without
    '__' (it allows [\\w._]+ without '__'); the build tag a digit first, then letters, digits, '.', '_' (it: a
    digit first); the tags three components of non-empty '.'-separated parts of letters, digits and '_', the
    interpreter parts identifiers (its parse_tag's checks); the version one packaging.version.Version accepts,
    as that function asks it.  With str methods, not a regex: compiling one is ~2.5 M instructions a run."""
    if not filename.endswith(".whl") or not filename.isascii():
        return False
    parts = filename[:-4].split("-")
    if len(parts) == 6:
        build = parts.pop(2)
        if not (build[:1].isdigit() and _plain(build)):
            return False
    if len(parts) != 5:
        return False
    name, version, python, abi, platform = parts
    if "__" in name or not _plain(name) or not all(part.isidentifier() for part in python.split(".")):
        return False
    if not all(_plain(part) for part in f"{abi}.{platform}".split(".")):
        return False
    return is_release(version) or _is_version(version)


def is_release(version: str) -> bool:
    """An ASCII release segment ('6.0.3': digits, '.'-separated; bounded, as int() is): a PEP 440 version,
    known without packaging."""
    return len(version) <= 200 and version.isascii() and all(part.isdigit() for part in version.split("."))


def _is_version(version: str) -> bool:
    from packaging.version import InvalidVersion, Version  # see the imports above

    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def _plain(text: str) -> bool:
    """ASCII `text` (the caller checked) of letters, digits, '.' and '_', with at least one letter or digit."""
    return text.replace(".", "").replace("_", "").isalnum()


def dist_info_dirs(names: Iterable[str]) -> list[str]:
    """The top-level ``*.dist-info`` directories among archive member names, sorted."""
    return sorted({n.split("/", 1)[0] for n in names if "/" in n and n.split("/", 1)[0].endswith(".dist-info")})


def same_dist_info(directory: str, name: str, version: str) -> bool:
    """Whether ``directory`` (``NAME-VERSION.dist-info``) is the .dist-info of `name` `version` as
    installers match it: names equal once normalized (PEP 503: ``pyobjc_framework_ScreenCaptureKit``
    is ``pyobjc-framework-screencapturekit``), versions equal as PEP 440 versions.  The spelling in the
    wheel is kept as it is: a wheel's RECORD lists its members under it."""
    stem, dot, _ = directory.rpartition(".dist-info")
    dname, dash, dversion = stem.rpartition("-")
    if not dot or not dash or canonicalize_name(dname) != canonicalize_name(name):
        return False
    if dversion == version:  # equal as versions, or as the strings compared when they are none
        return True
    from packaging.version import InvalidVersion, Version  # see the imports above

    try:
        return Version(dversion.replace("_", "-")) == Version(version.replace("_", "-"))
    except InvalidVersion:
        return dversion == version


def find_dist_info(names: Iterable[str], name: str, version: str) -> str | None:
    """The wheel's one top-level .dist-info directory when it matches `name` `version` (see
    :func:`same_dist_info`); None when there is none, several, or another project's."""
    tops = dist_info_dirs(names)
    return tops[0] if len(tops) == 1 and same_dist_info(tops[0], name, version) else None


def wheel_filename(name: str, version: str, tags: WheelTags, build: str | None = None) -> str:
    parts = [filename_component(name), version_component(version)]
    if build:
        if not re.fullmatch(r"\d[A-Za-z0-9_.]*", build):
            raise TagError(f"invalid build number {build!r}: must start with a digit")
        parts.append(build)
    return "-".join([*parts, str(tags)]) + ".whl"
