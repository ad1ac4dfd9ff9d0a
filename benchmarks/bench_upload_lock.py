"""What an upload holds `serve`'s index lock for (issue 13): uploads wait for each other there, so it bounds
how much 8 concurrent uploads gain over sequential ones.

One generated wheelhouse (default 6,000 wheels, as bench_publish.py's), indexed, then a server made in this
process (`make_server`, no socket served) takes `--uploads` new projects and as many new versions of existing
projects through `IndexServer.store_upload`, the path an HTTP upload takes once its body is spooled; the
time from taking the lock to releasing it is measured, wall and CPU (`time.thread_time`, the thread's own:
what the machine's load moves least), and the medians printed.

    python benchmarks/bench_upload_lock.py [--wheels 6000] [--uploads 20] [--keep DIR]

It uses the dynawheel that the running Python imports: run it with another checkout's venv to compare
commits (`/tmp/old/.venv/bin/python benchmarks/bench_upload_lock.py`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_publish import make_wheel, make_wheelhouse


class TimedLock:
    """The server's index lock, with the time each holder kept it (wall, thread CPU) recorded."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.held: list[tuple[float, float]] = []
        self._start = (0.0, 0.0)

    def __enter__(self) -> None:
        self.lock.__enter__()
        self._start = (time.perf_counter(), time.thread_time())

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.held.append((time.perf_counter() - self._start[0], time.thread_time() - self._start[1]))
        self.lock.__exit__(kind, exc, tb)


def main() -> int:
    from dynawheel.publish.serve import ServeConfig, make_server

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheels", type=int, default=6000)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--keep", type=Path, help="work in this (new) directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="dynawheel-bench-upload-lock-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        house, staging = work / "wheelhouse", work / "staging"
        make_wheelhouse(house, args.wheels)
        staging.mkdir()
        start = time.perf_counter()
        server: Any = make_server(house, port=0, config=ServeConfig(allow_anonymous_upload=True))  # its lock swapped
        print(f"{args.wheels} wheels indexed, server made in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        timed = TimedLock(server.index_lock)
        server.index_lock = timed
        rows = []
        try:
            projects = max(1, args.wheels // 3)
            new = [f"uploaded-{i:03d}" for i in range(args.uploads)]
            existing = [f"benchpkg-{i * 7 % projects:05d}" for i in range(args.uploads)]
            for label, names in (("new project", new), ("existing project", existing)):
                timed.held.clear()
                for name in names:
                    wheel = make_wheel(staging, name, "9.0", payload=os.urandom(2000))
                    staged = house / f".upload-{wheel.name}.part"
                    shutil.copyfile(wheel, staged)
                    server.store_upload(wheel.name, staged)
                wall = statistics.median(w for w, _ in timed.held) * 1e3
                cpu = statistics.median(c for _, c in timed.held) * 1e3
                rows.append(f"| upload of a {label}, {args.wheels} wheels | {wall:.1f} ms | {cpu:.1f} ms | "
                            f"{max(w for w, _ in timed.held) * 1e3:.1f} ms |")
        finally:
            server.server_close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nindex lock held per upload, median of {args.uploads}\n")
    print("| case | wall | CPU (thread) | wall, max |\n|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
