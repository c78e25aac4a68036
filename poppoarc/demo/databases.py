"""The demo installation's SQLite databases, in WAL mode with a transaction still in
the ``-wal`` file: the history database that holds most of a tree's bytes, and the
smaller ones described as data (``SIDE_DATABASES``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import struct
from pathlib import Path

from .tree import BASE_TIME, DAY, EN_WORDS, STATUSES, TASK_TYPES, Pools, Tree, iso

def _reseal_wal(path: str, salts: tuple[int, int]) -> None:
    """Replace SQLite's random WAL salts with seeded ones and redo the checksums.

    The salts come from sqlite3_randomness, so without this the ``-wal`` bytes
    would differ between runs.  Checksums (wal.c) are cumulative over the
    header's first 24 bytes, then each frame's first 8 bytes and page.
    """
    data = bytearray(Path(path).read_bytes())
    magic, _version, page_size = struct.unpack_from(">III", data)
    order = ">" if magic & 1 else "<"

    def checksum(chunk: bytes, s0: int, s1: int) -> tuple[int, int]:
        words = struct.unpack(f"{order}{len(chunk) // 4}I", chunk)
        for i in range(0, len(words), 2):
            s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
            s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
        return s0, s1

    struct.pack_into(">II", data, 16, *salts)
    s0, s1 = checksum(bytes(data[:24]), 0, 0)
    struct.pack_into(">II", data, 24, s0, s1)
    frame = 24 + page_size
    for offset in range(32, len(data) - frame + 1, frame):
        struct.pack_into(">II", data, offset + 8, *salts)
        s0, s1 = checksum(bytes(data[offset:offset + 8] + data[offset + 24:offset + frame]), s0, s1)
        struct.pack_into(">II", data, offset + 16, s0, s1)
    Path(path).write_bytes(data)


def _database(tree: Tree, rel: str, schema: str, tables: list, target: int,
              rng: random.Random, final_rows: int = 25) -> None:
    """Fill ``tables`` [(name, row_fn(id), rows_per_round)] until the file reaches
    ``target`` bytes, then commit one more transaction that stays in ``-wal``."""
    path = tree.abs(rel)
    next_id = {name: 1 for name, _, _ in tables}

    def insert(conn: sqlite3.Connection, name: str, row_fn, count: int) -> None:
        first = next_id[name]
        next_id[name] += count
        rows = [row_fn(i) for i in range(first, first + count)]
        conn.executemany(f"INSERT INTO {name} VALUES ({','.join('?' * len(rows[0]))})", rows)

    conn = sqlite3.connect(path, isolation_level=None)
    # No journal while bulk loading: a crash here just means generating again.
    conn.executescript("PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + schema)
    rounds = max(1, target >> 21)     # ~a few MB per round keeps the overshoot small
    while True:
        conn.execute("BEGIN")
        for name, row_fn, count in tables:
            insert(conn, name, row_fn, count * rounds)
        conn.execute("COMMIT")
        if conn.execute("PRAGMA page_count").fetchone()[0] * 4096 >= target:
            break
    conn.execute("PRAGMA journal_mode=WAL")      # persistent: stored in the file header
    conn.close()

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("BEGIN")
    for name, row_fn, _ in tables:
        insert(conn, name, row_fn, final_rows)
    conn.execute("COMMIT")
    # Closing the last connection checkpoints the WAL into the .db and deletes
    # it, so keep copies of both files as they are now and put them back after.
    wal = path + "-wal"
    shutil.copyfile(path, path + ".keep")
    shutil.copyfile(wal, wal + ".keep")
    conn.close()
    os.replace(path + ".keep", path)
    os.replace(wal + ".keep", wal)
    if os.path.exists(path + "-shm"):
        os.remove(path + "-shm")
    _reseal_wal(wal, (rng.getrandbits(32), rng.getrandbits(32)))
    tree.adopt(rel)
    tree.adopt(rel + "-wal")


def write_databases(tree: Tree, seed: int, budget, pools: Pools) -> None:
    rng = random.Random(f"{seed}:history")
    t0 = BASE_TIME - 60 * DAY
    step = 60 * DAY / max(1, budget("history_db") // 900)   # spread rows over ~60 days
    titles = [rng.choice(pools.ja) if i % 3 else rng.choice(pools.en) for i in range(4096)]

    def process(i: int) -> tuple:
        r = rng.getrandbits(64)
        status = STATUSES[(r >> 11) & 15]
        started = t0 + i * step + ((r >> 15) & 0xFF)
        duration = (r >> 23) & 0xFFFFF
        ok = status == "success"
        error = None if ok else f"{rng.getrandbits(64):016x} {pools.stacks[r & 255]}"
        return (i, f"issue-{1 + (r & 0x7FF)}-{rng.getrandbits(32):08x}", TASK_TYPES[(r >> 43) & 7],
                1 + (r & 0x7FF), titles[(r >> 46) & 4095], iso(started), iso(started + duration / 1000),
                status, 0 if ok else 1 + (r & 127), duration, 40 + ((r >> 58) & 63) * 3.5, error)

    def metric(i: int) -> tuple:
        # An f-string, not json.dumps of a dict: this runs for every metrics row.
        r = rng.getrandbits(64)
        agents = ",".join(f'"{name}":{{"status":"running","tasks":{(r >> 50 + n) & 7},"lastError":null}}'
                          for n, name in enumerate(("ccla", "ccag", "ccpm", "ccqa")))
        snapshot = (f'{{"traceId":"{rng.getrandbits(128):032x}","host":"poppo-01","cpu":{{"user":'
                    f'{(r & 1023) / 10},"system":{((r >> 10) & 511) / 10},"load":[{(r >> 19 & 255) / 64},'
                    f'{(r >> 27 & 255) / 64},{(r >> 35 & 255) / 64}]}},"memory":{{'
                    f'"rss":{rng.getrandbits(28)},"heapUsed":{rng.getrandbits(26)}}},"queue":{{'
                    f'"pending":{(r >> 43) & 31},"running":{(r >> 48) & 3}}},"agents":{{{agents}}},'
                    f'"note":"{pools.en[(r >> 52) & 4095]}"}}')
        return (i, iso(t0 + i * step), 1000 + (r & 0xFFFF), (r & 1023) / 10,
                40 + ((r >> 20) & 511) / 2, snapshot)

    _database(tree, "data/poppo-history.db", """
        CREATE TABLE process_history (id INTEGER PRIMARY KEY, task_id TEXT NOT NULL,
            task_type TEXT NOT NULL, issue_number INTEGER, title TEXT, started_at TEXT NOT NULL,
            finished_at TEXT, status TEXT NOT NULL, exit_code INTEGER, duration_ms INTEGER,
            memory_mb REAL, error TEXT);
        CREATE INDEX idx_process_history_task ON process_history(task_id);
        CREATE INDEX idx_process_history_started ON process_history(started_at);
        CREATE INDEX idx_process_history_status ON process_history(status, task_type);
        CREATE TABLE metrics (id INTEGER PRIMARY KEY, recorded_at TEXT NOT NULL,
            process_id INTEGER, cpu_percent REAL, memory_mb REAL, snapshot TEXT);
        CREATE INDEX idx_metrics_recorded ON metrics(recorded_at);
        PRAGMA user_version = 3;""",
              [("process_history", process, 12), ("metrics", metric, 8)], budget("history_db"), rng)

    rng = random.Random(f"{seed}:databases")
    for rel, share, tables in SIDE_DATABASES:
        schema, fillers = _side_schema(tables, rng, pools)
        _database(tree, rel, schema, fillers, budget(share), rng)
    # A .db that is not a database (callers must go by the header magic, like
    # for data/ccpm/cache.sqlite3, a database without the suffix).
    tree.write("data/not-a-db.db", "This is not a SQLite database, whatever its name says.\n"
               "PoppoBuilder once kept a plain-text ledger here; see docs/migration.md.\n")


# The smaller databases, as data: "column:kind" with a trailing "+" for an
# index.  Kinds are filled by _side_schema (one getrandbits per row).
SIDE_DATABASES = (
    (".poppo/poppo.db", "poppo_db", {
        "tasks": "id:key issue_number:int type:type status:status+ priority:small payload:json "
                 "created_at:ts updated_at:ts",
        "snapshots": "id:id taken_at:ts kind:word data:json"}),
    ("data/ccla.db", "ccla_db", {
        "errors": "id:id hash:hex+ category:word message:en stack:stack first_seen:ts last_seen:ts "
                  "occurrences:int",
        "repairs": "id:id error_hash:hex strategy:word success:small patch:en created_at:ts"}),
    ("data/security.db", "security_db", {
        "audit_log": "id:id ts:ts+ actor:word action:word resource:word ip:ip result:status "
                     "details:json"}),
    ("data/ccpm/cache.sqlite3", "cache_db", {"cache": "key:key value:json expires_at:int"}),
)


def _side_schema(tables: dict, rng: random.Random, pools: Pools) -> tuple[str, list]:
    sql_types = {"id": "INTEGER PRIMARY KEY", "key": "TEXT PRIMARY KEY", "int": "INTEGER",
                 "small": "INTEGER"}
    schema, fillers = [], []
    for table, spec in tables.items():
        columns = [item.split(":") for item in spec.split()]
        schema.append(f"CREATE TABLE {table} (" + ", ".join(
            f"{name} {sql_types.get(kind.rstrip('+'), 'TEXT')}" for name, kind in columns) + ");")
        schema += [f"CREATE INDEX idx_{table}_{name} ON {table}({name});"
                   for name, kind in columns if kind.endswith("+")]
        kinds = [kind.rstrip("+") for _, kind in columns]

        def row(i: int, kinds=kinds, table=table) -> tuple:
            r = rng.getrandbits(64)
            return tuple(_side_value(kind, i, r, table, rng, pools) for kind in kinds)
        fillers.append((table, row, 20 // len(tables)))
    return "\n".join(schema), fillers


def _side_value(kind: str, i: int, r: int, table: str, rng: random.Random, pools: Pools):
    if kind == "id":
        return i
    if kind == "key":
        return f"{table}-{i:07d}-{r >> 40:06x}"
    if kind in ("int", "small"):
        return 1 + (r & 0x7FF) if kind == "int" else (r >> 11) & 3
    if kind == "ts":
        return iso(BASE_TIME - 30 * DAY + i * 37 + ((r >> 13) & 1023))
    if kind == "hex":
        return f"{rng.getrandbits(160):040x}"
    if kind == "ip":
        return f"10.0.{(r >> 23) & 255}.{(r >> 31) & 255}"
    if kind in ("type", "status", "word"):
        choices = {"type": TASK_TYPES, "status": STATUSES, "word": EN_WORDS}[kind]
        return choices[(r >> 39) % len(choices)]
    if kind == "json":
        return json.dumps({"requestId": f"{rng.getrandbits(96):024x}", "issue": 1 + (r & 0x7FF),
                           "labels": ["task:misc", "processing"], "body": pools.text(rng, 600, True),
                           "elapsedMs": (r >> 20) & 0xFFFFF}, ensure_ascii=False)
    if kind == "stack":
        return pools.stacks[(r >> 47) & 255]
    return rng.choice(pools.en)
