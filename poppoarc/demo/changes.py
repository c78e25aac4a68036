"""A day of an installation's life, for incremental demos, tests and the benchmark.

``simulate_day`` adds about ``fraction`` new rows to the largest table of the
history database (copies of random existing rows, so every index is hit the
way real inserts hit it, scattered), rewrites a few state files and appends
to the logs.  Deterministic for a given ``seed``.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

HISTORY = "data/poppo-history.db"


def _largest_table(db: sqlite3.Connection) -> str | None:
    tables = [row[0] for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    counted = [(db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0], t) for t in tables]
    return max(counted)[1] if counted else None


def add_rows(db_path: Path, fraction: float, rng: random.Random) -> int:
    """Insert ``fraction`` × rows copies of random rows into the largest table; returns how many."""
    db = sqlite3.connect(db_path, timeout=30)
    try:
        table = _largest_table(db)
        if table is None:
            return 0
        columns = [row[1] for row in db.execute(f'PRAGMA table_info("{table}")') if not row[5]]
        low, high = db.execute(f'SELECT min(rowid), max(rowid) FROM "{table}"').fetchone()
        count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        wanted = max(1, int(count * fraction))
        names = ", ".join(f'"{c}"' for c in columns)
        with db:
            for _ in range(wanted):
                db.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{table}" '
                           "WHERE rowid >= ? LIMIT 1", (rng.randint(low, high),))
        return wanted
    finally:
        db.close()


def simulate_day(root: str | Path, fraction: float = 0.01, seed: int = 0, state_files: int = 3) -> dict:
    """Change an installation as a day of work would; returns what was changed."""
    root, rng = Path(root), random.Random(seed)
    added = add_rows(root / HISTORY, fraction, rng) if (root / HISTORY).exists() else 0
    changed = []
    states = sorted(p for p in (root / "state").rglob("*.json") if p.is_file())
    for path in rng.sample(states, min(state_files, len(states))):
        document = {"updatedAt": f"day-{seed}", "value": rng.random(),
                    "items": [rng.randrange(10**6) for _ in range(20)]}
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        changed.append(str(path.relative_to(root)))
    logs = sorted(p for p in (root / "logs").glob("*.log") if p.is_file())
    for path in logs[:2]:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"[day {seed}] a line the day added\n" * 50)
        changed.append(str(path.relative_to(root)))
    return {"rows_added": added, "files_changed": changed}
