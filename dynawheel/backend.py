"""PEP 517 / PEP 660 build backend: `pip install .`, `python -m build`, `uv build` with no setup.py.

    [build-system]
    requires = ["dynawheel"]
    build-backend = "dynawheel.backend"

The project's `[project]` table (PEP 621) gives the metadata and `[tool.dynawheel]` the build: `run` steps,
`add` entries, `repair`, `build-requires` (see :mod:`dynawheel.project`).  Front ends call these hooks with the
project root as working directory; `config_settings` are accepted and not used.  Progress lines and the steps'
output go to stderr/stdout, which the front end shows (pip: with -v, or when the build fails); a failing step
raises :class:`dynawheel.errors.BuildStepError` naming the step and its exit code.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Optional

from .project import Project, build_project_editable, build_project_wheel, write_metadata
from .project import build_sdist as _build_sdist

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

ConfigSettings = Optional[dict[str, Any]]  # a runtime alias: no `X | None` before Python 3.10


def _project() -> Project:
    logger = logging.getLogger("dynawheel")
    if not any(getattr(h, "_dynawheel_backend", False) for h in logger.handlers):  # an entry point, as the CLI
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("dynawheel: %(message)s"))
        handler._dynawheel_backend = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return Project.load(Path.cwd())


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    return _project().build_requires()


def get_requires_for_build_editable(config_settings: ConfigSettings = None) -> list[str]:
    return _project().build_requires()


def get_requires_for_build_sdist(config_settings: ConfigSettings = None) -> list[str]:
    return []  # an sdist is the sources as they are: nothing is built


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: ConfigSettings = None) -> str:
    return write_metadata(_project(), Path(metadata_directory))


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: ConfigSettings = None) -> str:
    return write_metadata(_project(), Path(metadata_directory))


def build_wheel(wheel_directory: str, config_settings: ConfigSettings = None,
                metadata_directory: str | None = None) -> str:
    return build_project_wheel(_project(), Path(wheel_directory)).name


def build_editable(wheel_directory: str, config_settings: ConfigSettings = None,
                   metadata_directory: str | None = None) -> str:
    return build_project_editable(_project(), Path(wheel_directory)).name


def build_sdist(sdist_directory: str, config_settings: ConfigSettings = None) -> str:
    return _build_sdist(_project(), Path(sdist_directory)).name
