"""Database snapshots are transaction-consistent while a writer keeps committing."""

import resource
import sqlite3
import subprocess
import sys
from pathlib import Path

from poppoarc.demo.writer import start_writer


def committed_batches(db: Path) -> tuple[int, list[int]]:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("select batch, count(*) from writer_rows group by batch order by batch").fetchall()
    finally:
        conn.close()
    return len(rows), [count for _, count in rows] + [b for b, _ in rows]


def test_snapshots_hold_a_consistent_prefix_of_a_live_writer(cli, installation, tmp_path):
    db = installation / "data/poppo-history.db"
    writer = start_writer(db, seconds=20, interval_ms=1)
    seen = []
    try:
        for round_ in range(4):
            packed = cli.pack("--targets", "database")
            assert cli("verify", packed["id"])[0] == 0
            out = tmp_path / f"out{round_}"
            out.mkdir()
            subprocess.run(["tar", "--zstd", "-xf", packed["path"], "-C", str(out),
                            "data/poppo-history.db"], check=True)
            conn = sqlite3.connect(out / "data/poppo-history.db")
            assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
            rows = conn.execute(
                "select batch, count(*), min(seq), max(seq) from writer_rows group by batch "
                "order by batch").fetchall()
            conn.close()
            assert rows, "the writer had committed before the snapshot"
            batches = [b for b, *_ in rows]
            assert batches == list(range(1, len(batches) + 1)), "a gap: not a prefix"
            assert all(count == 10 for _, count, _, _ in rows), "a torn transaction"
            seen.append(len(batches))
    finally:
        writer.terminate()
        writer.wait(timeout=10)
    assert seen == sorted(seen) and seen[-1] > seen[0], f"writer did not progress: {seen}"


def make_db(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("create table t(x)")
    conn.executemany("insert into t values (?)", [(n,) for n in range(rows)])
    conn.commit()
    conn.close()


def test_a_copy_queued_behind_another_is_made_by_the_thread_that_needs_it(tmp_path,
                                                                           monkeypatch):
    """The walk starts copies in directory order; the body takes them in path order.  A
    database still waiting behind a slow copy is copied at once by the body's thread,
    and every copy is a checked snapshot; leaving the session removes them all."""
    import threading

    from poppoarc.pack import databases as pack_databases
    from poppoarc.pack.databases import SnapshotSession
    from poppoarc.parallel import Parallelism

    make_db(tmp_path / "big.db", 1000)
    make_db(tmp_path / "small.db", 10)
    release, copied_by = threading.Event(), {}
    real_copy = pack_databases.sqlite_snapshot.copy

    def copy(source, destination, **kwargs):
        copied_by[source.name] = threading.current_thread().name
        if source.name == "big.db":
            assert release.wait(10)
        real_copy(source, destination, **kwargs)

    monkeypatch.setattr(pack_databases.sqlite_snapshot, "copy", copy)
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    with SnapshotSession(tmp_path, snaps, False, Parallelism()) as session:
        session.start("big.db")         # found first: the copy thread is busy with it
        session.start("small.db")       # queued behind it
        small, small_check = session.take("small.db")
        assert copied_by["small.db"] == threading.current_thread().name
        assert not release.is_set(), "small.db did not wait for big.db"
        release.set()
        big, big_check = session.take("big.db")
        assert copied_by["big.db"].startswith("snapshot")
        assert small_check.result(timeout=10).tables == {"t": 10}
        assert big_check.result(timeout=10).tables == {"t": 1000}
        assert small.exists() and big.exists() and small != big
        make_db(tmp_path / "late.db", 3)        # started after others were taken: a file
        session.start("late.db")                # of its own, not one still in use
        late, late_check = session.take("late.db")
        assert late not in (small, big) and late_check.result(timeout=10).tables == {"t": 3}
        make_db(tmp_path / "unstarted.db", 2)   # no walk started it: copied when taken
        unstarted, unstarted_check = session.take("unstarted.db")
        assert copied_by["unstarted.db"] == threading.current_thread().name
        assert unstarted not in (small, big, late)
        assert unstarted_check.result(timeout=10).tables == {"t": 2}
    assert list(snaps.iterdir()) == [], "the session's copies outlived it"


def test_a_check_that_cannot_open_for_want_of_descriptors_is_the_limit_not_the_database(
        tmp_path):
    """SQLite answers CANTOPEN ("unable to open database file") when the process has no
    descriptor left: that is the process's limit (exit 9), never a verdict on the file
    (pack said "snapshot fails quick_check" and exited 21 under ulimit -n 12)."""
    db = tmp_path / "good.db"
    connection = sqlite3.connect(db)
    connection.execute("CREATE TABLE t (x)")
    connection.commit()
    connection.close()
    program = f"""
import os, resource
from poppoarc.errors import ResourceLimit
from poppoarc.snapshot import sqlite
assert sqlite.integrity_errors({str(db)!r}, quick=True, private=True) == []
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
try:
    sqlite.integrity_errors({str(db)!r}, quick=True, private=True)
except ResourceLimit as exc:
    print("limit:", exc)
else:
    print("no limit")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    assert done.stdout.startswith("limit: too many open files"), (done.stdout, done.stderr)
