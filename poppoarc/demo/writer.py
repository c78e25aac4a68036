"""A process that keeps committing to a SQLite database while it is backed up.

Tests and benchmarks use it to prove that a snapshot is transaction-consistent:
every iteration is ONE transaction inserting ``ROWS_PER_BATCH`` rows with the
same ``batch`` number and consecutive ``seq`` values, so a consistent copy
holds batches 1..k, each complete, and no gaps.

    python -m poppoarc.demo.writer DB_PATH [--seconds S] [--interval-ms M] [--ready-file F]

It stops after ``--seconds`` (default 10) or on SIGTERM/SIGINT, always between
transactions, and exits 0.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import parse_args

ROWS_PER_BATCH = 10
READY_TIMEOUT = 10.0
USAGE = """A concurrent SQLite writer, for snapshot-consistency tests and benchmarks.

Usage:
  writer DB_PATH [--seconds=S] [--interval-ms=M] [--ready-file=F]
  writer (-h | --help)

Options:
  --seconds=S      How long to keep committing [default: 10].
  --interval-ms=M  Pause between transactions [default: 20].
  --ready-file=F   Created after the first commit.
"""


def run(db_path: str, seconds: float = 10.0, interval_ms: float = 20.0,
        ready_file: str | None = None) -> int:
    """Commit batches until time is up or a signal arrives; return how many."""
    stopping = False

    def stop(_signum, _frame) -> None:
        # Only a flag: the loop finishes the transaction in hand and leaves.
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=5.0)
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS writer_rows "
                 "(seq INTEGER PRIMARY KEY, batch INTEGER, payload TEXT)")
    deadline = time.monotonic() + seconds
    committed = 0
    try:
        while not stopping and (committed == 0 or time.monotonic() < deadline):
            # IMMEDIATE takes the write lock first, so reading the next numbers
            # and inserting are one atomic step even with a second writer.
            conn.execute("BEGIN IMMEDIATE")
            seq, batch = conn.execute(
                "SELECT COALESCE(MAX(seq), 0), COALESCE(MAX(batch), 0) FROM writer_rows").fetchone()
            batch += 1
            conn.executemany("INSERT INTO writer_rows VALUES (?, ?, ?)",
                             [(seq + k, batch, f"batch {batch} row {k} " + "x" * 64)
                              for k in range(1, ROWS_PER_BATCH + 1)])
            conn.execute("COMMIT")
            committed += 1
            if committed == 1 and ready_file:
                # Written aside and renamed, so a reader never sees it half-written.
                Path(f"{ready_file}.tmp").write_text(f"{os.getpid()}\n")
                os.replace(f"{ready_file}.tmp", ready_file)
            if interval_ms > 0 and not stopping:
                time.sleep(interval_ms / 1000)
    finally:
        conn.close()
    return committed


def start_writer(db_path: str | os.PathLike, seconds: float = 10.0,
                 interval_ms: float = 20.0) -> subprocess.Popen:
    """Start the writer in a child process; return once it has committed a batch.

    The caller owns the process: ``terminate()`` then ``wait()`` it.
    """
    ready_dir = tempfile.mkdtemp(prefix="poppoarc-writer-")
    ready = Path(ready_dir) / "ready"
    # The child must import this package even when it is not installed.
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    proc = subprocess.Popen([sys.executable, "-m", "poppoarc.demo.writer", os.fspath(db_path),
                             "--seconds", str(seconds), "--interval-ms", str(interval_ms),
                             "--ready-file", str(ready)], env=env)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"writer exited with status {proc.returncode} before its first commit")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"writer not ready after {READY_TIMEOUT:.0f} s")
            time.sleep(0.01)
    finally:
        shutil.rmtree(ready_dir, ignore_errors=True)
    return proc


def main(argv: list[str] | None = None) -> int:
    args, numbers = parse_args(USAGE, argv, lambda a: (float(a["--seconds"]),
                                                       float(a["--interval-ms"])),
                               "--seconds and --interval-ms take numbers")
    if args is None:
        return numbers
    seconds, interval_ms = numbers
    run(args["DB_PATH"], seconds, interval_ms, args["--ready-file"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
