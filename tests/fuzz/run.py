"""Run one fuzz target under atheris (libFuzzer, coverage-guided), bounded in time and memory.

    python -m tests.fuzz.run KIND [--runs N] [--max-time S] [--findings DIR] [--strict]

Each case runs under libFuzzer's ``-timeout`` (10 s) and ``-rss_limit_mb`` (512), and the whole
process under ``RLIMIT_AS``: an allocation a header asks for that the address space cannot hold is
a ``MemoryError``, a finding.  A case may raise only what targets.allowed() names; it must leave
nothing behind but its output (a ``.whl`` or a temporary file anywhere else is a finding), and
write nothing outside its work directory.

Without ``--strict`` findings are collected (one input and traceback per distinct exception and
place) in ``--findings`` and the run goes on; with it the first finding stops the run with exit 1,
as CI wants.  Wheel kinds get a structure-aware mutator besides libFuzzer's own: it mutates one
member and writes the zip (and RECORD) again so the cases reach the code behind the RECORD check.
The last line printed is a JSON summary: cases run, findings, slowest case (wall seconds, and CPU seconds:
what a loaded machine does not inflate), peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Callable

from . import targets


def _cpu() -> float:
    """CPU seconds of this process and its waited-for children (patchelf, dot)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _peak_rss_mb() -> int:
    """This process's own peak RSS (VmHWM): ru_maxrss would include a big parent's, since it survives exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


AS_LIMIT = 3 << 30  # bytes of address space for the whole process (threads' stacks and arenas included)
RSS_LIMIT_MB = 512
CASE_TIMEOUT = 10


def _mutate_member(data: bytes, max_size: int, rng: random.Random, fix_record: bool) -> bytes | None:
    import atheris

    try:
        with zipfile.ZipFile(BytesIO(data)) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
    except Exception:
        return None
    if not members:
        return None
    i = rng.randrange(len(members))
    info, content = members[i]
    content = atheris.Mutate(content, max(len(content) * 2, 64))
    members[i] = (info, content)
    if fix_record:
        members = _fixed_record(members)
    out = BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zw:
        for info, content in members:
            zw.writestr(info, content)
    result = out.getvalue()
    return result if len(result) <= max_size else None


def _fixed_record(members: list[tuple[zipfile.ZipInfo, bytes]]) -> list[tuple[zipfile.ZipInfo, bytes]]:
    """RECORD rewritten for the members' content (so the RECORD check passes)."""
    from dynawheel.wheel.record import RecordRow, encode_digest, format_record

    rows = []
    record_at = None
    for n, (info, content) in enumerate(members):
        if info.filename.endswith(".dist-info/RECORD"):
            record_at = n
            continue
        rows.append(RecordRow(info.filename, encode_digest(hashlib.sha256(content).digest()), len(content)))
    if record_at is None:
        return members
    info = members[record_at][0]
    rows.append(RecordRow(info.filename, "", None))
    members[record_at] = (info, format_record(rows))
    return members


_FIELDS = (  # (offset in a central directory record, struct size) of fields worth poking
    (4, 2), (6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (42, 4),
)
_LOCAL = ((4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2))
_VALUES = (0, 1, 8, 9, 12, 14, 63, 64, 99, 0x7F, 0x80, 0x800, 0x801, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFF0)


def _poke_header(data: bytes, rng: random.Random) -> bytes | None:
    """Set one field of one central directory or local header to an interesting value."""
    central = [i for i in range(len(data)) if data.startswith(b"PK\x01\x02", i)]
    local = [i for i in range(len(data)) if data.startswith(b"PK\x03\x04", i)]
    choices = [(at, _FIELDS) for at in central] + [(at, _LOCAL) for at in local]
    if not choices:
        return None
    at, fields = rng.choice(choices)
    off, size = rng.choice(fields)
    value = rng.choice(_VALUES) & ((1 << (8 * size)) - 1)
    out = bytearray(data)
    if at + off + size > len(out):
        return None
    out[at + off : at + off + size] = value.to_bytes(size, "little")
    return bytes(out)


def wheel_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    import atheris

    rng = random.Random(seed)
    pick = rng.random()
    out: bytes | None = None
    if pick < 0.45:
        out = _mutate_member(data, max_size, rng, fix_record=True)
    elif pick < 0.55:
        out = _mutate_member(data, max_size, rng, fix_record=False)
    elif pick < 0.75:
        out = _poke_header(data, rng)
    return out if out is not None else atheris.Mutate(data, max_size)


class Runner:
    def __init__(self, kind: targets.Kind, base: Path, findings: Path | None, strict: bool) -> None:
        self.kind = kind
        self.base = base
        self.findings = findings
        self.strict = strict
        self.allowed = targets.allowed()
        self.cases = 0
        self.found: dict[str, int] = {}
        self.slowest = (0.0, b"")
        self.slowest_cpu = 0.0  # CPU seconds of the most expensive case (its children's included): load-proof
        self.tmp = base / "tmp"
        self.tmp.mkdir(exist_ok=True)
        self.on_case: Callable[[], None] | None = None

    def __call__(self, data: bytes) -> None:
        self.cases += 1
        work = targets.fresh_dir(self.base)
        start, cpu = time.monotonic(), _cpu()
        try:
            self.kind.run(data, work)
        except self.allowed:
            pass
        except MemoryError as exc:
            self._finding(data, exc, "MemoryError")
        except Exception as exc:
            self._finding(data, exc, None)
        took = time.monotonic() - start
        if took > self.slowest[0]:
            self.slowest = (took, data)
        self.slowest_cpu = max(self.slowest_cpu, _cpu() - cpu)
        self._check_leftovers(data, work)
        if self.on_case is not None:
            self.on_case()

    def _check_leftovers(self, data: bytes, work: Path) -> None:
        left = os.listdir(self.tmp)
        bad = [] if not self.kind.leftovers else [str(p.relative_to(work)) for p in work.rglob("*")
               if p.is_file() and p.parent.name not in ("out", "house", "site", "files", "case")
               and not p.parent.name.startswith(("fuzz", "other"))]
        bad = [b for b in bad if "/simple/" not in f"/{b}" and not b.startswith(("site/", "site2/", "house/"))]
        if left or bad:
            for name in left:
                path = self.tmp / name
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            self._finding(data, AssertionError(f"left behind: temp {left} work {bad}"), "leftover")

    def signature(self, data: bytes) -> str | None:
        """What the case `data` raises that it may not (type@file:line), or None."""
        work = targets.fresh_dir(self.base)
        try:
            self.kind.run(data, work)
        except self.allowed:
            return None
        except Exception as exc:
            return _signature(exc, None)
        return None

    def _finding(self, data: bytes, exc: BaseException, label: str | None) -> None:
        sig = _signature(exc, label)
        self.found[sig] = self.found.get(sig, 0) + 1
        if self.found[sig] == 1:
            print(f"FINDING {self.kind.name}: {sig}: {str(exc)[:300]}", file=sys.stderr, flush=True)
            if self.findings is not None:
                self.findings.mkdir(parents=True, exist_ok=True)
                name = f"{self.kind.name}-{hashlib.sha1(sig.encode()).hexdigest()[:10]}"
                (self.findings / name).write_bytes(data)
                (self.findings / f"{name}.txt").write_text(
                    f"{sig}\n" + "".join(traceback.format_exception(exc)))
        if self.strict:
            raise exc


def _signature(exc: BaseException, label: str | None) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in tb if "/dynawheel/" in f.filename] or list(tb)
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    if isinstance(exc, AssertionError) and str(exc):  # the harness's contract checks: which command failed
        where += "[" + str(exc).split(":", 1)[0][:40] + "]"
    return label or f"{type(exc).__name__}@{where}"


def minimize(runner: Runner, data: bytes, budget: int = 3000) -> tuple[bytes, str | None]:
    """The shortest input found (chunks removed, halving their size) that still fails the same way."""
    target = runner.signature(data)
    if target is None:
        return data, None
    chunk, tries = max(1, len(data) // 2), 0
    while chunk >= 1 and tries < budget:
        i, changed = 0, False
        while i < len(data) and tries < budget:
            candidate = data[:i] + data[i + chunk :]
            tries += 1
            if runner.signature(candidate) == target:
                data, changed = candidate, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return data, target


def _seed_corpus(kind: targets.Kind, base: Path) -> Path:
    corpus = base / "corpus"
    corpus.mkdir(exist_ok=True)
    build = base / "build"
    build.mkdir(exist_ok=True)
    for data in kind.seeds(build):
        (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    if (build / "libs").is_dir():
        shutil.copytree(build / "libs", base / "libs", dirs_exist_ok=True)
    return corpus


def _instrumented() -> None:
    import atheris

    with atheris.instrument_imports(include=["dynawheel"]):
        for name in ("audit", "report", "index", "publish.index", "serve", "publish.serve", "repair", "tree",
                     "platforms.elf", "platforms.macho", "platforms.pe", "wheel.check", "wheel.text", "cli"):
            try:
                importlib.import_module(f"dynawheel.{name}")
            except ModuleNotFoundError:
                continue  # the redesign moved it


def _scratch() -> str | None:
    """Where the cases' work directories go: $DYNAWHEEL_FUZZ_DIR, else /dev/shm (a tmpfs: creating and
    removing a case's dozen directories there costs microseconds, on a disk ~1 ms each, most of an index
    case), else the default temporary directory."""
    chosen = os.environ.get("DYNAWHEEL_FUZZ_DIR")
    if chosen:
        return chosen
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def _sweep(scratch: str | None) -> None:
    """Remove the work directories of runs whose process is gone: a run that libFuzzer ends (a crash under
    --strict, a timeout) leaves its directory, and on /dev/shm that is memory."""
    for path in Path(scratch or tempfile.gettempdir()).glob("dynawheel-fuzz-*-*-*"):
        pid = path.name.split("-")[3]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    parser.add_argument("kind", choices=sorted(targets.KINDS))
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--max-time", type=int, default=0, help="seconds (0: no limit)")
    parser.add_argument("--min-runs", type=int, default=0, help="--max-time ends the run only after this many cases")
    parser.add_argument("--findings", type=Path)
    parser.add_argument("--strict", action="store_true", help="stop at the first finding (exit 1)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minimize", type=Path, nargs="+", help="minimize these failing inputs into --findings")
    args = parser.parse_args(argv)
    import atheris

    kind = targets.KINDS[args.kind]
    _sweep(_scratch())
    base = Path(tempfile.mkdtemp(prefix=f"dynawheel-fuzz-{kind.name}-{os.getpid()}-", dir=_scratch()))
    os.environ["TMPDIR"] = str(base / "tmp")
    (base / "tmp").mkdir()
    tempfile.tempdir = None
    corpus = _seed_corpus(kind, base)
    tempfile.tempdir = str(base / "tmp")
    _instrumented()
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    runner = Runner(kind, base, args.findings, args.strict)
    if args.findings is not None:
        args.findings.mkdir(parents=True, exist_ok=True)
    if args.minimize:
        for path in args.minimize:
            small, sig = minimize(runner, path.read_bytes())
            print(json.dumps({"input": str(path), "signature": sig, "size": len(small)}), flush=True)
            if sig is not None and args.findings is not None:
                (args.findings / f"{kind.name}-{hashlib.sha1(small).hexdigest()[:10]}").write_bytes(small)
                (args.findings / f"{kind.name}-{hashlib.sha1(small).hexdigest()[:10]}.txt").write_text(sig + "\n")
        shutil.rmtree(base, True)
        return 0
    biggest = max((p.stat().st_size for p in corpus.iterdir()), default=4096)
    flags = [sys.argv[0], str(corpus), f"-runs={args.runs}", f"-timeout={CASE_TIMEOUT}",
             f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={max(4096, 2 * biggest)}", f"-seed={args.seed}",
             "-print_final_stats=1", f"-artifact_prefix={args.findings or base}/{kind.name}-"]
    if args.max_time:  # ours ends the run (with its summary) at the first case after max_time; libFuzzer's is a net
        flags.append(f"-max_total_time={args.max_time * 3 + 60}")
    start = time.monotonic()

    def report() -> None:
        summary = {"kind": kind.name, "cases": runner.cases, "seconds": round(time.monotonic() - start, 1),
                   "findings": runner.found, "slowest_case_s": round(runner.slowest[0], 3),
                   "slowest_case_cpu_s": round(runner.slowest_cpu, 3),
                   "peak_rss_mb": _peak_rss_mb()}
        print(json.dumps(summary), flush=True)
        if args.findings is not None and runner.slowest[1]:
            args.findings.mkdir(parents=True, exist_ok=True)
            (args.findings / f"{kind.name}-slowest").write_bytes(runner.slowest[1])

    last = [start]

    def on_case() -> None:  # libFuzzer ends the process without Python's atexit: report as we go
        now = time.monotonic()
        done = runner.cases >= args.runs or (args.max_time and now - start >= args.max_time
                                             and runner.cases >= args.min_runs)
        if done or now - last[0] > 30:
            last[0] = now
            report()
        if done:
            shutil.rmtree(base, True)
            sys.stdout.flush()
            os._exit(1 if runner.found else 0)

    runner.on_case = on_case
    atheris.Setup(flags, runner, custom_mutator=wheel_mutator if kind.wheel else None)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
