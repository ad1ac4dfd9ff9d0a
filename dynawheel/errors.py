"""The one exception tree of dynawheel.

Every error a user can cause is a :class:`DynawheelError`; each subclass also
inherits the builtin it is closest to, so callers can catch either.  The CLI
maps them to exit codes (see ``EXIT_*`` below and the README).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ERROR = 1  # a DynawheelError: bad input, failed repair, unwritable output
EXIT_USAGE = 2  # the command line itself is wrong (argparse)
EXIT_FINDINGS = 3  # show/check ran but found problems (missing libraries, conflicts)
EXIT_INTERNAL = 4  # a bug in dynawheel: please report it


class DynawheelError(Exception):
    """Root of every error dynawheel raises on purpose."""


class UsageError(DynawheelError, ValueError):
    """Options that contradict each other or name nothing."""


class MetadataError(DynawheelError, ValueError):
    """Project metadata (name, version, PEP 621 table, METADATA) is invalid."""


class TagError(DynawheelError, ValueError):
    """A wheel tag is not valid."""


class StageError(DynawheelError, ValueError):
    """A staged tree cannot become a wheel (bad layout, links, names)."""


class WheelFormatError(DynawheelError, ValueError):
    """A wheel archive is malformed (zip, RECORD, WHEEL, paths)."""


class BinaryFormatError(DynawheelError, ValueError):
    """A file looks like ELF/PE/Mach-O but cannot be parsed."""


class ResolveError(DynawheelError, LookupError):
    """A needed library cannot be found."""


class RepairError(DynawheelError, RuntimeError):
    """A repair cannot be carried out."""


class HeaderSpaceError(RepairError):
    """A Mach-O header has no room for the new load commands."""


class Abi3ViolationError(RepairError):
    """A wheel tagged abi3 uses symbols outside the stable ABI of its minimum Python."""


class ToolError(DynawheelError, RuntimeError):
    """An external tool (patchelf, install_name_tool, dot) failed."""


class OutputError(DynawheelError, OSError):
    """An output cannot be written."""


class PackageIndexError(DynawheelError, ValueError):
    """A package index cannot be built or served."""


class BuildStepError(DynawheelError, RuntimeError):
    """A `[tool.dynawheel] run` step of a project build failed (its number, command and exit code are named)."""
