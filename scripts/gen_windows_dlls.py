#!/usr/bin/env python3
"""Regenerate dynawheel/data/windows-system-dlls.json: the DLLs a clean Windows 10/11 provides, per arch.

Usage: gen_windows_dlls.py [--delvewheel-wheel WHEEL] [--wine-dir DIR] [-o OUT]

Only facts (lists of file names) are taken from other projects, never code:

1. delvewheel's name lists (PyPI ``delvewheel==1.13.2``, MIT; the wheel is downloaded with pip and
   its sha256 checked, unless ``--delvewheel-wheel`` names it).  ``delvewheel/_dll_list.py`` holds
   three literal sets, read here with ``ast.literal_eval`` (nothing of delvewheel is imported or
   run).  Their comments say how they were gathered: every ``.dll``/``.drv`` with exports found in
   ``C:\\Windows\\System32`` (``SysWOW64`` for x86) on installation discs of Windows 7 SP1, 8, 8.1, 10
   and 11 (x64 and x86: names present on all of them), and of arm64 Windows 10 and 11 (arm64).
2. Windows 10 names missing from the x64/x86 sets because Windows 7 lacked them (``ucrtbase.dll``,
   ``combase.dll``, ``win32u.dll``, ``d3d12.dll``, ...): the names of the arm64 set (Windows 10/11
   only) that Wine also implements for x86-64 (the ``.dll``/``.drv`` files of Debian's ``libwine``,
   ``/usr/lib/x86_64-linux-gnu/wine/x86_64-windows``: Wine implements Windows' own modules, so a name
   in both is a Windows 10 system DLL, not an arm64-only one), plus :data:`CHECKED_ADDITIONS`.
3. Never a Visual C++ Redistributable DLL (:data:`VC_REDIST`): ``msvcp140.dll`` and friends are not
   part of Windows (a wheel must vendor them); the OS's own private C runtimes (``msvcrt.dll``,
   ``msvcp_win.dll``, ``ucrtbase.dll``, ``msvcp60.dll``, ``mfc42.dll``) stay.

API sets (``api-ms-win-*``, ``ext-ms-*``) are not listed: dynawheel recognises them by prefix.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DELVEWHEEL = "delvewheel==1.13.2"
DELVEWHEEL_SHA256 = "acdb03e1d7040982db65e525065f08163e9dedad54eeb8c7038be61f76c08816"
DELVEWHEEL_SETS = {"x86": "ignore_names_x86", "x64": "ignore_names_x64", "arm64": "ignore_names_arm64"}
WINE_DIR = Path("/usr/lib/x86_64-linux-gnu/wine/x86_64-windows")

# In dynawheel's hand-made list (data version 1) and in delvewheel's arm64 (Windows 10/11) set, but
# neither in its Windows 7-based x64/x86 sets nor in Wine: gdi32full.dll (split out of gdi32.dll in
# Windows 10 1607; gdi32.dll forwards to it) and dpapi.dll (Windows 10).
CHECKED_ADDITIONS = frozenset({"gdi32full.dll", "dpapi.dll"})

# Documented by Microsoft ("International Components for Unicode (ICU)", learn.microsoft.com, Win32
# Internationalization docs, "History of changes to the ICU library in Windows"): icuuc.dll and icuin.dll are
# system DLLs since Windows 10 1703, the combined icu.dll since 1903. Added for every arch (delvewheel's x64/x86
# sets predate them; its arm64 set lacks icu.dll).
DOCUMENTED_WINDOWS10 = frozenset({"icu.dll", "icuuc.dll", "icuin.dll"})

# The Visual C++ Redistributable (2005-2022) and its versioned runtimes: not part of Windows.
VC_REDIST = re.compile(
    r"(msvcp\d+(_\w+)?|msvcr\d+(_\w+)?|vcruntime\d+(_\d+)?|concrt\d+|vccorlib\d+|vcamp\d+|vcomp\d*|"
    r"mfc\d+\w*|mfcm\d+\w*|atl\d+)d?\.dll"
)
OS_OWNED = frozenset({"msvcp60.dll", "msvcp110_win.dll", "mfc40.dll", "mfc40u.dll", "mfc42.dll", "mfc42u.dll",
                      "msvcrt20.dll", "msvcrt40.dll"})  # shipped in System32/SysWOW64 by Windows itself


def download_delvewheel(dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-d", str(dest), DELVEWHEEL], check=True)
    (wheel,) = dest.glob("delvewheel-*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != DELVEWHEEL_SHA256:
        raise SystemExit(f"{wheel.name}: sha256 {digest}, expected {DELVEWHEEL_SHA256}")
    return wheel


def delvewheel_sets(wheel: Path) -> dict[str, frozenset[str]]:
    """The three literal name sets of delvewheel/_dll_list.py, parsed, not executed."""
    with zipfile.ZipFile(wheel) as archive:
        tree = ast.parse(archive.read("delvewheel/_dll_list.py"))
    found: dict[str, frozenset[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in DELVEWHEEL_SETS.values():
                found[name] = frozenset(n.lower() for n in ast.literal_eval(node.value))
    missing = set(DELVEWHEEL_SETS.values()) - set(found)
    if missing:
        raise SystemExit(f"{wheel.name}: no literal {sorted(missing)} in delvewheel/_dll_list.py")
    return {arch: found[var] for arch, var in DELVEWHEEL_SETS.items()}


def wine_names(directory: Path) -> frozenset[str]:
    names = frozenset(p.name.lower() for p in directory.iterdir() if p.suffix.lower() in (".dll", ".drv"))
    if len(names) < 300:
        raise SystemExit(f"{directory}: {len(names)} DLLs; is Wine installed (apt-get install wine64)?")
    return names


def wine_version() -> str:
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "libwine"], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def is_redistributable(name: str) -> bool:
    return bool(VC_REDIST.fullmatch(name)) and name not in OS_OWNED


def build(sets: dict[str, frozenset[str]], wine: frozenset[str]) -> dict[str, list[str]]:
    windows10 = sets["arm64"] & (wine | CHECKED_ADDITIONS)
    lists = {
        "x64": sets["x64"] | windows10 | DOCUMENTED_WINDOWS10,
        "x86": sets["x86"] | windows10 | DOCUMENTED_WINDOWS10,
        "arm64": sets["arm64"] | DOCUMENTED_WINDOWS10,
    }
    return {arch: sorted(n for n in names if not is_redistributable(n) and not n.startswith(("api-ms-win-", "ext-ms-")))
            for arch, names in lists.items()}


def document(lists: dict[str, list[str]], wheel: Path, wine: str) -> dict[str, object]:
    return {
        "version": 2,
        "description": "DLLs that a clean Windows 10/11 provides (System32; SysWOW64 for x86), per arch; never "
                       "vendored, never missing. API sets (api-ms-win-*, ext-ms-*) are recognised by prefix, not "
                       "listed. The Visual C++ Redistributable (msvcp140.dll, concrt140.dll, vcomp140.dll, ...) is "
                       "NOT part of Windows and is never listed.",
        "generator": "scripts/gen_windows_dlls.py",
        "provenance": [
            f"delvewheel {DELVEWHEEL.split('==')[1]} from PyPI ({wheel.name}, sha256 {DELVEWHEEL_SHA256}): the "
            "literal sets ignore_names_x64/_x86/_arm64 of delvewheel/_dll_list.py, which its comments describe "
            "as every .dll/.drv with exports in C:\\Windows\\System32 (SysWOW64 for x86) on installation discs "
            "of Windows 7 SP1, 8, 8.1, 10 and 11 (x64, x86), of arm64 Windows 10 and 11 (arm64)",
            "x64 and x86 also get the Windows 10 names of the arm64 set that Wine implements for x86-64 "
            f"(Debian libwine {wine}, {WINE_DIR}), and gdi32full.dll and dpapi.dll (dynawheel's list version 1)",
            "every arch also gets icuuc.dll and icuin.dll (Windows 10 1703) and icu.dll (Windows 10 1903), as "
            "Microsoft's page 'International Components for Unicode (ICU)' (Win32 Internationalization) documents",
            "removed: the Visual C++ Redistributable's DLLs (msvcp*, msvcr*, vcruntime*, concrt*, vccorlib*, "
            "vcamp*, vcomp*, mfc*, atl*) except those Windows ships itself (msvcp60, msvcp110_win, mfc40/42, "
            "msvcrt20/40)",
        ],
        "counts": {arch: len(names) for arch, names in lists.items()},
        "dlls": lists,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delvewheel-wheel", type=Path, help=f"a downloaded {DELVEWHEEL} wheel")
    parser.add_argument("--wine-dir", type=Path, default=WINE_DIR)
    parser.add_argument("-o", "--output", type=Path,
                        default=Path(__file__).resolve().parent.parent / "dynawheel/data/windows-system-dlls.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.delvewheel_wheel or download_delvewheel(Path(tmp))
        lists = build(delvewheel_sets(wheel), wine_names(args.wine_dir))
        doc = document(lists, wheel, wine_version())
    args.output.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}: " + ", ".join(f"{arch} {len(n)}" for arch, n in lists.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
