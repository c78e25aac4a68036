"""Database snapshots are transaction-consistent while a writer keeps committing."""

import sqlite3
import subprocess
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
