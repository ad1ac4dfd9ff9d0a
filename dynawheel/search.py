"""SearchPaths: the one explicit object that says where loaders look.

Library code never reads ``LD_LIBRARY_PATH``, ``PATH``, ``DYLD_*`` or ``/etc/ld.so.conf``
by itself: it gets a :class:`SearchPaths`.  :meth:`SearchPaths.from_host` is the single
place that reads the host; it is the default only when the target is the host.

Not modelled: ``GLIBC_TUNABLES`` (``glibc.cpu.hwcaps``, ``glibc.cpu.hwcap_mask``).  A tunable is one
process's override of its CPU, not a property of a wheel's target, and glibc applies it unevenly:
glibc 2.36 with ``glibc.cpu.hwcaps=-AVX512F`` drops ``glibc-hwcaps/x86-64-v4`` from the directories it
searches but not from the ISA level that ld.so.cache entries and the load-time ISA check are judged
against.  A CPU with fewer levels is described with ``elf_hwcaps`` (``--glibc-hwcaps``).
"""

from __future__ import annotations

import functools
import operator
import os
import posixpath
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .log import get_logger

log = get_logger(__name__)

# glibc's multiarch triplets (Debian) per normalized ELF arch.
MULTIARCH = {
    "x86_64": "x86_64-linux-gnu", "i686": "i386-linux-gnu", "aarch64": "aarch64-linux-gnu",
    "armv7l": "arm-linux-gnueabihf", "ppc64le": "powerpc64le-linux-gnu", "ppc64": "powerpc64-linux-gnu",
    "s390x": "s390x-linux-gnu", "riscv64": "riscv64-linux-gnu", "loongarch64": "loongarch64-linux-gnu",
    "x32": "x86_64-linux-gnux32",
}
# The ld.so.cache entry flags ld.so accepts per arch (glibc ldconfig.h: FLAG_ELF_LIBC6 | arch bits).
CACHE_FLAGS = {
    "x86_64": 0x0303, "i686": 0x0003, "aarch64": 0x0A03, "armv7l": 0x0903, "ppc64le": 0x0503,
    "ppc64": 0x0503, "s390x": 0x0403, "riscv64": 0x1003, "loongarch64": 0x1203, "x32": 0x0803,
}
_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_CACHE_HEADER = struct.Struct("<20sIIB3xI12x")
_CACHE_ENTRY = struct.Struct("<iIIIQ")


@dataclass(frozen=True)
class SearchPaths:
    """Every input of library lookup outside the tree: the one explicit search-path object
    (library code reads no environment or host state except through it)."""

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
    # glibc >= 2.33: the glibc-hwcaps/NAME subdirectories ld.so searches first in every search
    # directory (RPATH, LD_LIBRARY_PATH, RUNPATH, default), best first: the levels the CPU supports
    # (x86-64-v4, x86-64-v3, x86-64-v2); they also rank the hwcaps entries of ld.so.cache.
    elf_hwcaps: tuple[str, ...] = ()
    # glibc >= 2.33 on x86: the levels of elf_hwcaps are also the x86 ISA levels the CPU has, and a
    # library whose GNU property note needs one it lacks is found and then refused ("CPU ISA level
    # is lower than required"); False: a loader that does not check (glibc < 2.33, musl) or an
    # unknown CPU (a host that is not x86_64 glibc >= 2.33 says nothing of an x86 target's).
    elf_isa_check: bool = True
    # glibc <= 2.36: the legacy hwcaps/platform subdirectories searched next, in order (e.g.
    # tls/x86_64/x86_64, tls/x86_64, tls, x86_64/x86_64, x86_64), see legacy_hwcap_dirs().
    elf_legacy_hwcaps: tuple[str, ...] = ()
    # True: read <sysroot>/etc/ld.so.cache as ld.so does (ld.so reads only the cache: without one,
    # the ld.so.conf directories are not searched).  False: the ld.so.conf directories stand in
    # for the cache, as though ldconfig had been run on them (a staged root without its cache).
    use_ld_so_cache: bool = True
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

        platform = _host_platform()
        hwcaps, legacy = _host_hwcaps(platform)
        return cls(
            ld_library_path=split("LD_LIBRARY_PATH"),
            elf_lib=_host_elf_lib(),
            elf_platform=platform,
            elf_hwcaps=hwcaps,
            elf_isa_check=host_isa_check(),
            elf_legacy_hwcaps=legacy,
            dyld_library_path=split("DYLD_LIBRARY_PATH"),
            dyld_fallback_library_path=split("DYLD_FALLBACK_LIBRARY_PATH"),
        )

    @classmethod
    def for_sysroot(cls, sysroot: str) -> SearchPaths:
        """The system below `sysroot` run on this host's CPU (``--sysroot``): what its own glibc does
        (its version from its libc.so.6, :func:`glibc_release`): glibc-hwcaps subdirectories and the
        x86 ISA-level check from 2.33, legacy hwcaps subdirectories up to 2.36, $PLATFORM's haswell
        in 2.26-2.36, $LIB by its layout.  No glibc found (or a host that is not x86_64): this host's
        CPU's glibc-hwcaps levels, no legacy subdirectories.  The host's environment is not read."""
        release = glibc_release(sysroot) if _machine() == "x86_64" else None
        if release is None:
            return cls(sysroot=sysroot, elf_hwcaps=host_glibc_hwcaps(), elf_isa_check=host_isa_check())
        platform = _platform_for(release)
        hwcaps, legacy = _hwcaps_for(release, platform)
        return cls(sysroot=sysroot, elf_lib=_host_elf_lib(sysroot.rstrip("/")), elf_platform=platform,
                   elf_hwcaps=hwcaps, elf_legacy_hwcaps=legacy, elf_isa_check=release >= (2, 33))

    # ---- ELF helpers: every path returned is in the resolver's namespace (below sysroot) ----
    def host_path(self, path: str) -> str:
        """A host path as seen below the sysroot."""
        if self.sysroot in ("", "/"):
            return path
        return posixpath.join(self.sysroot, path.lstrip("/"))

    def kernel_path(self, path: str) -> str:
        """`path` as the kernel resolves it: each '..' after the symlinks before it are followed
        (glibc hands RPATH/RUNPATH text to open() as it is), never textually; below the sysroot,
        absolute links are re-rooted there.  Paths without '..' are only normalized."""
        parts = path.split("/")
        if ".." not in parts:
            return posixpath.normpath(path)
        last = len(parts) - 1 - parts[::-1].index("..")
        head, tail = "/".join(parts[: last + 1]) or "/", "/".join(parts[last + 1 :])
        root = self.sysroot.rstrip("/")
        real = real_below(root, head) if root and in_root(root, head) else os.path.realpath(head)
        return posixpath.normpath(posixpath.join(real, tail)) if tail else real

    def elf_conf_dirs(self) -> tuple[str, ...]:
        """The ld.so.conf directories (includes expanded), below the sysroot."""
        if not self.use_system:
            return ()
        if self.ld_so_conf is not None:
            return tuple(self.host_path(d) for d in self.ld_so_conf)
        return tuple(self.host_path(d) for d in read_ld_so_conf(self.sysroot))

    def elf_cache(self, arch: str) -> Mapping[str, str] | None:
        """ld.so.cache entries {name: path below sysroot} ld.so accepts for `arch`; None without a cache."""
        if not (self.use_system and self.use_ld_so_cache):
            return None
        path = self.host_path("/etc/ld.so.cache")
        try:
            st = os.stat(path)
        except OSError:
            return None
        legacy = _legacy_parts(self.elf_legacy_hwcaps)
        return _cache_map(path, st.st_mtime_ns, st.st_size, CACHE_FLAGS.get(arch), self.sysroot,
                          self.elf_hwcaps, legacy)

    def elf_default_dirs_for(self, arch: str) -> tuple[str, ...]:
        """ld.so's built-in trusted directories for `arch` (Debian multiarch when present)."""
        if not self.use_system:
            return ()
        if self.elf_default_dirs is not None:
            return tuple(self.host_path(d) for d in self.elf_default_dirs)
        triplet = MULTIARCH.get(arch)
        dirs: tuple[str, ...]
        if triplet and os.path.isdir(self.host_path(f"/usr/lib/{triplet}")):
            dirs = (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib", "/usr/lib")
        elif arch.endswith("64") or arch in ("s390x", "ppc64le"):
            dirs = ("/lib64", "/usr/lib64")
        else:
            dirs = ("/lib", "/usr/lib")
        return tuple(self.host_path(d) for d in dirs)

    def elf_subdirs(self) -> tuple[str, ...]:
        """The subdirectories ld.so tries in each search directory before the directory itself."""
        return tuple(f"glibc-hwcaps/{name}" for name in self.elf_hwcaps) + self.elf_legacy_hwcaps

    def elf_isa_bits(self) -> int | None:
        """The GNU_PROPERTY_X86_ISA_1_* bits the target CPU has, as glibc's cpu_features->isa_1 (bit 0
        baseline, always; bit N-1 for each level x86-64-vN of elf_hwcaps); None when no check is made."""
        if not self.elf_isa_check:
            return None
        bits = 1
        for name in self.elf_hwcaps:
            level = name.removeprefix("x86-64-v")
            if name.startswith("x86-64-v") and level.isdigit() and 2 <= int(level) <= 4:
                bits |= 1 << (int(level) - 1)
        return bits

    def elf_ld_library_path(self) -> tuple[str, ...]:
        return tuple(self.host_path(d) for d in self.ld_library_path) if self.use_system else ()

    def musl_dirs(self, arch: str) -> tuple[str, ...]:
        """musl's system path for `arch`, below the sysroot: the entries of /etc/ld-musl-ARCH.path
        (separated by ':' or newlines) when that file exists, else /lib, /usr/local/lib, /usr/lib."""
        if not self.use_system:
            return ()
        if self.elf_default_dirs is not None:
            return tuple(self.host_path(d) for d in self.elf_default_dirs)
        conf = self.host_path(f"/etc/ld-musl-{MUSL_ARCH.get(arch, arch)}.path")
        try:
            with open(conf, encoding="utf-8", errors="replace") as fp:
                dirs = tuple(d for d in fp.read().replace("\n", ":").split(":") if d.strip())
        except FileNotFoundError:
            dirs = MUSL_DEFAULT_DIRS
        except OSError:
            dirs = ()  # musl searches nothing more when the file exists but cannot be read
        return tuple(self.host_path(d.strip()) for d in dirs)


def in_root(root: str, path: str) -> bool:
    return path == root or path.startswith(root + "/")


def real_below(root: str, path: str, max_links: int = 64) -> str:
    """The real path of `path` (below `root`) with the symlinks on the way followed as the kernel
    does under chroot(root): absolute targets start again at `root`, '..' stops at it.  Parts that
    do not exist are kept as written."""
    parts = [p for p in path[len(root):].split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        full = posixpath.join(root, *done, part)
        if links < max_links and os.path.islink(full):
            links += 1
            target = os.readlink(full)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        else:
            done.append(part)
    return posixpath.join(root, *done) if done else root


# musl's names of the architectures (LDSO_ARCH) and its built-in system path (ldso/dynlink.c)
MUSL_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64", "i686": "i386", "armv7l": "armhf", "ppc64le": "powerpc64le",
             "s390x": "s390x", "riscv64": "riscv64"}
MUSL_DEFAULT_DIRS = ("/lib", "/usr/local/lib", "/usr/lib")

_HASWELL_FLAGS = frozenset({"avx2", "fma", "bmi1", "bmi2", "abm", "movbe", "popcnt"})


def _host_release() -> tuple[int, ...] | None:
    """This process's glibc version (2, 36); None off glibc."""
    libc, version = _libc_ver()
    if libc != "glibc" or not version:
        return None
    return tuple(int(p) for p in version.split(".")[:2] if p.isdigit())


def _host_platform() -> str:
    """What the host's ld.so expands $PLATFORM to (see _platform_for)."""
    return _platform_for(_host_release())


def _platform_for(release: tuple[int, ...] | None) -> str:
    """What a glibc of this version, run on this host's CPU, expands $PLATFORM to.

    The kernel's AT_PLATFORM, except that glibc 2.26 to 2.36 on x86_64 Intel CPUs replaces
    it by "haswell" (AVX2, FMA, BMI1/2, LZCNT, MOVBE, POPCNT usable) or "xeon_phi"
    (AVX512ER/PF/CD): facts from glibc's cpu_features.c, checked here with a $PLATFORM
    RPATH and ld.so's trace mode.
    """
    machine = _at_platform() or _machine()
    if machine != "x86_64" or release is None or not (2, 26) <= release < (2, 37):
        return machine
    flags = _cpu_flags()
    if "GenuineIntel" not in _cpu_vendor() or not flags:
        return machine
    if {"avx512er", "avx512pf", "avx512cd"} <= flags:
        return "xeon_phi"
    return "haswell" if flags >= _HASWELL_FLAGS else machine


# x86-64 ISA levels as glibc 2.33-2.36 tests them (sysdeps/x86/get-isa-level.h), as /proc/cpuinfo
# names the CPU features (SSE3 is "pni", LZCNT "abm", LAHF64_SAHF64 "lahf_lm", CMPXCHG16B "cx16").
_X86_LEVELS = (
    ("x86-64-v2", frozenset({"cx16", "lahf_lm", "popcnt", "pni", "ssse3", "sse4_1", "sse4_2"})),
    ("x86-64-v3", frozenset({"avx", "avx2", "f16c", "fma", "abm", "movbe"})),
    ("x86-64-v4", frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})),
)


def legacy_hwcap_dirs(hwcaps: tuple[str, ...], platform: str | None) -> tuple[str, ...]:
    """glibc <= 2.36's legacy subdirectories (elf/dl-hwcaps.c, _dl_important_hwcaps): the power set
    of [hwcap names in bit order..., platform, "tls"], the set with the most members first, a
    subset written from its last member down ("tls/haswell/x86_64"); duplicates and the empty set
    (the directory itself) left out.  x86_64 glibc 2.36 ("ld.so --help"): hwcaps ("x86_64",) plus
    "avx512_1" on Intel CPUs with AVX512CD/BW/DQ/VL, platform AT_PLATFORM (or haswell/xeon_phi)."""
    parts = [*hwcaps, *([platform] if platform else []), "tls"]
    out: list[str] = []
    for mask in range((1 << len(parts)) - 1, 0, -1):
        out.append("/".join(parts[i] for i in reversed(range(len(parts))) if mask & (1 << i)))
    return tuple(dict.fromkeys(out))


def host_isa_check() -> bool:
    """Whether this host's ld.so refuses libraries that need an x86 ISA level its CPU lacks (x86_64 glibc
    >= 2.33, sysdeps/x86/dl-prop.h); elsewhere the CPU of an x86 target is not known from here."""
    release = _host_release()
    return _machine() == "x86_64" and release is not None and release >= (2, 33)


def host_glibc_hwcaps() -> tuple[str, ...]:
    """The glibc-hwcaps levels this host's CPU supports, best first (x86_64 glibc >= 2.33)."""
    return _host_hwcaps(None)[0]


def _host_hwcaps(platform: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(glibc-hwcaps subdirectories, legacy subdirectories) this host's ld.so searches."""
    return _hwcaps_for(_host_release(), platform)


def _hwcaps_for(release: tuple[int, ...] | None, platform: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(glibc-hwcaps subdirectories, legacy subdirectories) a glibc of this version searches on this
    host's CPU: levels from 2.33, legacy ones up to 2.36; none known off x86_64 glibc (set them for
    such a target)."""
    if _machine() != "x86_64" or release is None:
        return (), ()
    flags = _cpu_flags()
    levels: list[str] = []
    for name, need in _X86_LEVELS if release >= (2, 33) else ():
        if not need <= flags:
            break
        levels.append(name)
    legacy: tuple[str, ...] = ()
    if release < (2, 37):
        intel_avx512 = ("GenuineIntel" in _cpu_vendor() and "avx512er" not in flags
                        and {"avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= flags)
        legacy = legacy_hwcap_dirs(("x86_64", "avx512_1") if intel_avx512 else ("x86_64",), platform)
    return tuple(reversed(levels)), legacy


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fp:
            return fp.read(1 << 16)
    except OSError:
        return ""


def _cpu_flags() -> frozenset[str]:
    info = _cpuinfo()
    if "\nflags" not in info:
        return frozenset()
    return frozenset(info.split("\nflags", 1)[1].split(":", 1)[1].split("\n", 1)[0].split())


def _cpu_vendor() -> str:
    return _cpuinfo().split("vendor_id", 1)[-1].split("\n", 1)[0]


def _machine() -> str:
    """platform.machine() without importing platform (performance: ~1.3 ms of a small repair)."""
    uname = getattr(os, "uname", None)
    if uname is None:
        import platform

        return platform.machine()
    return str(uname().machine)


def _libc_ver() -> tuple[str, str]:
    """platform.libc_ver() of this process, as it reads it first (confstr), else through platform."""
    try:
        parts = (os.confstr("CS_GNU_LIBC_VERSION") or "").split(maxsplit=1)  # 'glibc 2.36'
        if len(parts) == 2:
            return parts[0], parts[1]
    except (AttributeError, ValueError, OSError):
        pass
    import platform

    return platform.libc_ver()


def _at_platform() -> str | None:
    """The kernel's AT_PLATFORM string for this process."""
    at_platform = 15
    pair = "=" + ("QQ" if struct.calcsize("P") == 8 else "II")
    size = struct.calcsize(pair)
    try:
        with open("/proc/self/auxv", "rb") as fp:
            auxv = fp.read()
        for key, value in struct.iter_unpack(pair, auxv[: len(auxv) - len(auxv) % size]):
            if key == at_platform:
                with open("/proc/self/mem", "rb") as mem:
                    mem.seek(value)
                    return mem.read(64).split(b"\0", 1)[0].decode("ascii")
    except (OSError, ValueError, OverflowError, UnicodeDecodeError):
        log.debug("cannot read AT_PLATFORM")
    return None


def _host_elf_lib(root: str = "") -> str:
    """What ld.so expands $LIB to on this host, or in the system below `root` (Debian: lib/<triplet>)."""
    machine = _machine()
    triplet = MULTIARCH.get(machine)
    if triplet and os.path.isdir(f"{root}/usr/lib/{triplet}"):
        return f"lib/{triplet}"
    return "lib64" if os.path.isdir(f"{root}/lib64") and machine.endswith("64") else "lib"


_RELEASE = re.compile(rb"GNU C Library [^\n]{0,200}? release version (\d+)\.(\d+)")
MAX_LIBC = 64 << 20  # bytes of a libc.so.6 read at most for its version banner (glibc's: ~2 MB)


def glibc_release(sysroot: str, arch: str = "x86_64") -> tuple[int, int] | None:
    """The version of the glibc installed below `sysroot` for `arch`: the banner of its libc.so.6
    ("GNU C Library (Debian GLIBC 2.36-9) stable release version 2.36.", which every glibc carries)
    in the first default directory that has one; None when there is none."""
    root = sysroot.rstrip("/")
    triplet = MULTIARCH.get(arch, "")
    for d in (f"/lib/{triplet}", f"/usr/lib/{triplet}", "/lib64", "/usr/lib64", "/lib", "/usr/lib"):
        path = real_below(root, f"{root}{d}/libc.so.6") if root else f"{d}/libc.so.6"
        try:
            with open(path, "rb") as fp:
                found = _RELEASE.search(fp.read(MAX_LIBC))
        except OSError:
            continue
        if found:
            return int(found.group(1)), int(found.group(2))
    return None


def read_ld_so_conf(sysroot: str = "/", conf: str = "/etc/ld.so.conf") -> tuple[str, ...]:
    """Directories named by ld.so.conf, `include` globs followed (relative to the sysroot), in order."""
    out: list[str] = []
    _read_conf(sysroot.rstrip("/"), conf, out, set())
    return tuple(dict.fromkeys(out))


def _read_conf(root: str, conf: str, out: list[str], seen: set[str]) -> None:
    full = root + conf
    if full in seen:
        return
    seen.add(full)
    try:
        with open(full, encoding="utf-8", errors="replace") as fp:
            lines = fp.read().splitlines()
    except OSError:
        log.debug("no ld.so.conf at %r", full)
        return
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include") and line[7:8] in (" ", "\t"):
            import glob  # performance: only ld.so.conf includes need it

            for pattern in line[8:].split():
                if not pattern.startswith("/"):
                    pattern = posixpath.join(posixpath.dirname(conf), pattern)
                for match in sorted(glob.glob(root + pattern)):
                    _read_conf(root, match[len(root) :], out, seen)
        elif line.startswith("hwcap"):
            continue
        else:
            out.append(posixpath.normpath(line.split("=", 1)[0].strip()))


def read_ld_so_cache(path: str) -> tuple[tuple[str, str, int], ...] | None:
    """(name, path, flags) of a "glibc-ld.so.cache1.1" file in file order (hwcaps entries
    included, as ``ldconfig -p`` lists them); None if absent/unknown."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    entries = _read_cache(path, st.st_mtime_ns, st.st_size)
    return None if entries is None else tuple((e.name, e.path, e.flags) for e in entries)


class _CacheEntry(NamedTuple):  # a private record (performance: no dataclass to create at import)
    name: str
    path: str
    flags: int
    hwcap: int  # legacy hwcap/platform bits, or DL_CACHE_HWCAP_EXTENSION | index
    hwcaps_name: str | None  # the glibc-hwcaps subdirectory of an extension entry ("x86-64-v3")


# glibc 2.36 (sysdeps/generic/dl-cache.h): bit 62 marks a glibc-hwcaps entry whose low 32 bits
# index the cache's glibc-hwcaps extension section; bits 32-41 hold an x86 ISA level.
_HWCAP_EXTENSION = 1 << 62
_ISA_LEVEL_BITS = ((1 << 10) - 1) << 32
_EXTENSION_MAGIC = 0xEAA42174  # (uint32_t) -358342284
# The names of the legacy hwcap bits of x86 (sysdeps/x86/dl-procinfo.c, dl-procinfo.h: platforms
# from bit 48; bit 63 is "tls" for every arch): a legacy cache entry is used only when each of
# its bits names a part of the legacy subdirectories the target searches.
_LEGACY_BITS = {0: "sse2", 1: "x86_64", 2: "avx512_1", 48: "i586", 49: "i686", 50: "haswell", 51: "xeon_phi",
                63: "tls"}


@functools.lru_cache(maxsize=16)
def _legacy_parts(subdirs: tuple[str, ...]) -> frozenset[str]:
    """The names in the legacy hwcaps subdirectories (asked once per ELF request that reaches the cache)."""
    return frozenset(part for sub in subdirs for part in sub.split("/"))


@functools.lru_cache(maxsize=16)
def _cache_map(
    path: str, mtime: int, size: int, want: int | None, sysroot: str, hwcaps: tuple[str, ...],
    legacy: frozenset[str],
) -> Mapping[str, str] | None:
    """{name: path} as ld.so's cache lookup answers it (glibc 2.36 elf/dl-cache.c, search_cache)."""
    raw = _cache_rows(path, mtime, size)
    if raw is None:
        return None
    return _CacheMap(raw, want, sysroot, hwcaps, legacy)


class _CacheMap(Mapping[str, str]):
    """{name: path} as ld.so's cache lookup answers it; a name's entries found, made and picked when the name is
    first asked (performance: a resolver asks a few dozen of the cache's ~600 names: making every entry, two
    strings each, cost ~7 M instructions, picking among them ~3 M, naming every entry ~2.5 M)."""

    def __init__(self, raw: _RawCache, want: int | None, sysroot: str, hwcaps: tuple[str, ...],
                 legacy: frozenset[str]) -> None:
        self._raw = raw
        self._args = (want, hwcaps, legacy)
        self._sysroot = sysroot
        # the rows by where their name is (ldconfig stores a name once, as the tail of a path: an entry of another
        # glibc-hwcaps directory shares it)
        self._by_key: dict[int, tuple[int, ...] | list[int]] = dict(zip(map(operator.itemgetter(1), raw.rows),
                                                                        zip(range(len(raw.rows)))))
        if len(self._by_key) < len(raw.rows):
            by_key: dict[int, list[int]] = {}
            for i, row in enumerate(raw.rows):
                by_key.setdefault(row[1], []).append(i)
            self._by_key = dict(by_key)
        self._picked: dict[str, str | None] = {}

    @functools.cached_property
    def _all_rows(self) -> dict[str, list[int]]:
        """Every name's rows, in file order (for iterating the map, and names not searched for)."""
        rows: dict[str, list[int]] = {}
        for i, entry in enumerate(map(self._raw.entry, self._raw.rows)):
            rows.setdefault(entry.name, []).append(i)
        return rows

    def _rows_of(self, name: str) -> Sequence[int]:
        """The rows of the entries called `name`, in file order: where the name's bytes and a NUL (or the end of
        the file) are, the rows whose name starts there."""
        if not name or not name.isascii() or "\0" in name:  # (an ASCII name is its bytes whatever the decoding)
            return self._all_rows.get(name, ())
        raw, key = self._raw, name.encode("ascii")
        places = []
        at = raw.data.find(key + b"\0")
        while at >= 0:
            places.append(at)
            at = raw.data.find(key + b"\0", at + 1)
        if raw.data.endswith(key):
            places.append(len(raw.data) - len(key))
        return sorted(i for at in places for i in self._by_key.get(at - raw.start, ()))

    def _pick(self, name: str) -> str | None:
        if name not in self._picked:
            rows, raw = self._rows_of(name), self._raw
            best = _cache_pick([raw.entry(raw.rows[i]) for i in rows], *self._args) if rows else None
            if best is not None and self._sysroot not in ("", "/"):
                best = posixpath.join(self._sysroot, best.lstrip("/"))
            self._picked[name] = best
        return self._picked[name]

    def __getitem__(self, key: str) -> str:
        found = self._pick(key)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._all_rows if self._pick(name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _cache_pick(
    group: Sequence[_CacheEntry], want: int | None, hwcaps: tuple[str, ...], legacy: frozenset[str]
) -> str | None:
    """The entry ld.so takes among those of one name (in file order): the glibc-hwcaps entry of the
    best level the target supports (they come first), else the first plain or legacy entry whose
    bits the target has."""
    best: str | None = None
    best_rank = 0
    for entry in group:
        if want is not None and entry.flags != want:
            continue
        if entry.hwcaps_name is not None:
            if not _isa_level_supported(entry.hwcap, hwcaps):
                continue
            rank = hwcaps.index(entry.hwcaps_name) + 1 if entry.hwcaps_name in hwcaps else 0
            if rank and (best is None or rank < best_rank):
                best, best_rank = entry.path, rank
            continue
        if best is not None:
            break
        if not entry.hwcap:  # a plain entry (performance: most of them; no bits to test)
            return entry.path
        bits = [i for i in range(64) if entry.hwcap >> i & 1]
        if all(_LEGACY_BITS.get(i) in legacy for i in bits):
            return entry.path
    return best


def _isa_level_supported(hwcap: int, hwcaps: tuple[str, ...]) -> bool:
    """Whether the target CPU has the x86 ISA level ldconfig recorded in a glibc-hwcaps entry (bits
    32-41: 0 baseline, 1 x86-64-v2, 2 x86-64-v3, 3 x86-64-v4, from the library's
    GNU_PROPERTY_X86_ISA_1_NEEDED note).  ld.so skips an entry of a level the CPU lacks and goes on
    with the next one (glibc 2.33+ elf/dl-cache.c, dl_cache_hwcap_isa_level_compatible); the
    target's levels are its glibc-hwcaps levels.  Other architectures leave these bits 0."""
    level = (hwcap & _ISA_LEVEL_BITS) >> 32
    return level == 0 or f"x86-64-v{level + 1}" in hwcaps


class _RawCache:
    """An ld.so.cache file as read: its bytes, where the new format starts, its entries unpacked (flags, key,
    value, osversion, hwcap) and its glibc-hwcaps subdirectory names."""

    __slots__ = ("data", "names", "rows", "start")

    def __init__(self, data: bytes, start: int, rows: list[tuple[int, ...]], names: tuple[str, ...]) -> None:
        self.data, self.start, self.rows, self.names = data, start, rows, names

    def entry(self, row: tuple[int, ...]) -> _CacheEntry:
        flags, key, value, _osv, hwcap = row
        named = hwcap & ~_ISA_LEVEL_BITS & ~0xFFFFFFFF == _HWCAP_EXTENSION
        names = self.names
        hw_name = (names[hwcap & 0xFFFFFFFF] if hwcap & 0xFFFFFFFF < len(names) else "") if named else None
        # performance: _CacheEntry's fields in order, without its Python-level __new__
        return tuple.__new__(_CacheEntry, (_cstr(self.data, self.start + key), _cstr(self.data, self.start + value),
                                           flags, hwcap, hw_name))


@functools.lru_cache(maxsize=8)
def _cache_rows(path: str, mtime: int, size: int) -> _RawCache | None:
    with open(path, "rb") as fp:
        data = fp.read()
    start = data.find(_CACHE_MAGIC)  # after an old-format "ld.so-1.7.0" part, if any
    if start < 0 or len(data) < start + _CACHE_HEADER.size:
        log.warning("unsupported ld.so.cache format in %r", path)
        return None
    _magic, nlibs, _strlen, _flags, ext = _CACHE_HEADER.unpack_from(data, start)
    first = start + _CACHE_HEADER.size
    whole = min(nlibs, (len(data) - first) // _CACHE_ENTRY.size)  # the entries the file holds whole
    rows = list(_CACHE_ENTRY.iter_unpack(data[first: first + whole * _CACHE_ENTRY.size]))
    return _RawCache(data, start, rows, _hwcaps_names(data, start, ext))


def _read_cache(path: str, mtime: int, size: int) -> tuple[_CacheEntry, ...] | None:
    raw = _cache_rows(path, mtime, size)
    return None if raw is None else tuple(map(raw.entry, raw.rows))


def _hwcaps_names(data: bytes, start: int, ext: int) -> tuple[str, ...]:
    """The glibc-hwcaps subdirectory names of the cache's extension section (tag 1), in index order."""
    ext += start  # offsets count from the start of the new-format cache
    if ext == start or ext + 8 > len(data):
        return ()
    magic, count = struct.unpack_from("<II", data, ext)
    if magic != _EXTENSION_MAGIC:
        return ()
    for i in range(min(count, 64)):
        at = ext + 8 + 16 * i
        if at + 16 > len(data):
            break
        tag, _flags, offset, size = struct.unpack_from("<IIII", data, at)
        offset += start
        if tag == 1 and offset + size <= len(data):
            table = data[offset : offset + size - size % 4]
            return tuple(_cstr(data, start + index) for (index,) in struct.iter_unpack("<I", table))
    return ()


def _cstr(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    return data[off : end if end >= 0 else len(data)].decode("utf-8", "replace")
