"""SearchPaths: the one explicit object that says where loaders look.

Library code never reads ``LD_LIBRARY_PATH``, ``PATH``, ``DYLD_*`` or ``/etc/ld.so.conf``
by itself: it gets a :class:`SearchPaths`.  :meth:`SearchPaths.from_host` is the single
place that reads the host; it is the default only when the target is the host.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchPaths:
    # Paths outside the tree are read below this root ("/" = the host).
    sysroot: str = "/"
    # Searched before anything else, for every format (-L/--lib-path).
    extra: tuple[str, ...] = ()
    # False: hermetic, only the tree and ``extra`` (--no-system-paths).
    use_system: bool = True
    # ---- ELF (glibc ld.so) ----
    ld_library_path: tuple[str, ...] = ()
    # Directories of ld.so.conf (with includes), in order; None = read them under sysroot.
    ld_so_conf: tuple[str, ...] | None = None
    # Trusted default dirs; None = /lib, /usr/lib and their multiarch and lib64 forms.
    elf_default_dirs: tuple[str, ...] | None = None
    elf_platform: str = "x86_64"  # what $PLATFORM expands to
    elf_lib: str = "lib"  # what $LIB expands to (lib, lib64, lib/x86_64-linux-gnu)
    # ---- PE (CPython >= 3.8 on Windows) ----
    dll_directories: tuple[str, ...] = ()  # os.add_dll_directory() dirs
    windows_path: tuple[str, ...] = ()  # PATH: an explicit opt-in; hits are flagged
    system32: tuple[str, ...] = ()  # directories standing in for System32, if any
    # ---- Mach-O (dyld) ----
    executable_path: str | None = None  # what @executable_path expands to
    dyld_library_path: tuple[str, ...] = ()
    dyld_fallback_library_path: tuple[str, ...] = ()

    @classmethod
    def from_host(cls, environ: Mapping[str, str] | None = None) -> SearchPaths:
        """The host's own search paths (reads the environment given, default os.environ)."""
        import os

        env = os.environ if environ is None else environ

        def split(name: str, sep: str = ":") -> tuple[str, ...]:
            return tuple(p for p in env.get(name, "").split(sep) if p)

        return cls(
            ld_library_path=split("LD_LIBRARY_PATH"),
            dyld_library_path=split("DYLD_LIBRARY_PATH"),
            dyld_fallback_library_path=split("DYLD_FALLBACK_LIBRARY_PATH"),
        )
