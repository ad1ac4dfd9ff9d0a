#!/usr/bin/env python3
"""Regenerate dynawheel/data/manylinux-policy.json from PEP 600 policy data.

Usage: gen_policy.py MANYLINUX_JSON [MUSLLINUX_JSON] [-o OUT]

The inputs are policy lists in the layout pypa/auditwheel publishes
(src/auditwheel/policy/{manylinux,musllinux}-policy.json: name, aliases, priority,
symbol_versions {arch: {prefix: [allowed versions]}}, lib_whitelist, blacklist).  Only facts are
kept: for each policy its allowed library names, per arch and symbol-version prefix the highest
allowed version (null when none is allowed), and its blacklist ({library: [symbols]}: symbols of an
allowed library that a wheel must not import, because some distributions' copy lacks them).
`--source` names where the inputs came from (kept in the output as "source").

The data shipped was made from auditwheel 6.8.2's files (pip install auditwheel==6.8.2):
  gen_policy.py .../auditwheel/policy/manylinux-policy.json .../auditwheel/policy/musllinux-policy.json \
      --source "pypa/auditwheel 6.8.2 src/auditwheel/policy/{manylinux,musllinux}-policy.json"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Program interpreters per arch (glibc and musl ABI facts): always provided by the target.
INTERPRETERS = {
    "manylinux": {
        "x86_64": "/lib64/ld-linux-x86-64.so.2", "i686": "/lib/ld-linux.so.2",
        "aarch64": "/lib/ld-linux-aarch64.so.1", "armv7l": "/lib/ld-linux-armhf.so.3",
        "ppc64le": "/lib64/ld64.so.2", "ppc64": "/lib64/ld64.so.1", "s390x": "/lib/ld64.so.1",
        "riscv64": "/lib/ld-linux-riscv64-lp64d.so.1", "loongarch64": "/lib64/ld-linux-loongarch-lp64d.so.1",
    },
    "musllinux": {
        "x86_64": "/lib/ld-musl-x86_64.so.1", "i686": "/lib/ld-musl-i386.so.1",
        "aarch64": "/lib/ld-musl-aarch64.so.1", "armv7l": "/lib/ld-musl-armhf.so.1",
        "ppc64le": "/lib/ld-musl-powerpc64le.so.1", "s390x": "/lib/ld-musl-s390x.so.1",
        "riscv64": "/lib/ld-musl-riscv64.so.1", "loongarch64": "/lib/ld-musl-loongarch64.so.1",
    },
}


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def highest(versions: list[str]) -> str | None:
    numeric = [v for v in versions if all(p.isdigit() for p in v.split("."))]
    return max(numeric, key=version_key) if numeric else None


def convert(entry: dict, family: str) -> dict | None:
    if entry["name"] == "linux":
        return None
    return {
        "name": entry["name"],
        "aliases": list(entry.get("aliases", [])),
        "family": family,
        "priority": entry["priority"],
        "lib_whitelist": sorted(entry["lib_whitelist"]),
        "blacklist": {lib: sorted(symbols) for lib, symbols in sorted(entry.get("blacklist", {}).items())},
        "symbol_versions": {
            arch: {prefix: highest(list(vers)) for prefix, vers in sorted(prefixes.items())}
            for arch, prefixes in sorted(entry["symbol_versions"].items())
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manylinux")
    parser.add_argument("musllinux", nargs="?")
    default_out = Path(__file__).parents[1] / "dynawheel/data/manylinux-policy.json"
    parser.add_argument("-o", "--output", default=str(default_out))
    parser.add_argument("--source", default=None, help="where the inputs came from (provenance)")
    args = parser.parse_args(argv)
    policies = []
    for path, family in ((args.manylinux, "manylinux"), (args.musllinux, "musllinux")):
        if path:
            for entry in json.loads(Path(path).read_text("utf-8")):
                converted = convert(entry, family)
                if converted:
                    policies.append(converted)
    policies.sort(key=lambda p: (p["family"], -p["priority"]))
    doc = {"version": 1, **({"source": args.source} if args.source else {}), "interpreters": INTERPRETERS,
           "policies": policies}
    Path(args.output).write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", "utf-8")
    print(f"wrote {args.output}: {len(policies)} policies")
    return 0


if __name__ == "__main__":
    sys.exit(main())
