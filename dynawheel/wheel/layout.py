"""Where the paths of a wheel are installed, as far as binaries care: which of them land in one directory.

A wheel's root, ``<name>-<ver>.data/purelib/`` and ``.data/platlib/`` go to site-packages; ``.data/scripts/``
goes to the scheme's scripts directory (``<venv>/bin``, ``~/.local/bin``, ``<prefix>/bin``, ``<target>/bin``,
``Scripts\\`` on Windows), whose place relative to site-packages differs from scheme to scheme (``--user``,
``--target``, Debian's ``/usr/local``, Fedora's ``lib64``, the Python version).  So a relative search path
(``$ORIGIN``, ``@loader_path``, the application directory) from a program there reaches only its own
directory, never site-packages.
"""

from __future__ import annotations

PACKAGE = ""  # the install root of everything installed into site-packages
# left at the root of a stage without .dist-info by `dynawheel repair`; `build` moves them into .dist-info
# (the manifest as is, the SBOM to sboms/, the license files to licenses/)
REPAIR_MANIFEST = "dynawheel-vendored.json"
REPAIR_SBOM = "dynawheel.cdx.json"
REPAIR_LICENSES = "dynawheel-licenses/"


def install_root(rel: str) -> str:
    """The part of a wheel (or stage) installed as one directory, for the tree path `rel`:
    ``'<name>-<ver>.data/scripts'`` for the scripts scheme, else ``PACKAGE`` (site-packages).
    A binary reaches a library by a relative path only within its own install root."""
    top, _, rest = rel.partition("/")
    if top.endswith(".data") and rest.startswith("scripts/"):
        return f"{top}/scripts"
    return PACKAGE


def installed_path(rel: str) -> str:
    """Where the tree path `rel` lands, relative to its install root: ``<name>-<ver>.data/platlib/x`` and
    ``.data/purelib/x`` are installed as ``x`` in site-packages (beside the wheel's root); other paths,
    the scripts scheme's included, keep their place (each is compared only within its own root)."""
    top, _, rest = rel.partition("/")
    if top.endswith(".data"):
        scheme, _, below = rest.partition("/")
        if scheme in ("platlib", "purelib"):
            return below
    return rel
