"""A deterministic, realistic PoppoBuilder Suite installation tree.

Tests and benchmarks need an installation that looks like the real thing
(SQLite databases in WAL mode with a transaction still in the ``-wal`` file,
rotated gzip logs, Japanese file names, real certificates, secrets, a symlink,
an empty directory, files no target owns) and that is *identical* for a given
scale and seed: file bytes, modes and mtimes.  So every random choice comes
from a ``random.Random`` stream seeded with ``f"{seed}:{part}"`` (string seeds
are hashed with SHA-512, independent of PYTHONHASHSEED), and every timestamp
is derived from ``BASE_TIME``.

Speed matters more than prose quality: text is cut from sentence pools built
once, and a record draws one ``getrandbits(64)`` and slices it into fields
instead of making a random call per field or per character.

    python -m poppoarc.demo.installation DEST [--scale S] [--seed N]
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import ipaddress
import io
import json
import os
import random
import shutil
import sqlite3
import struct
import sys
import tarfile
import time
import zlib
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from . import parse_args

SCALES = ("tiny", "small", "medium", "manyfiles")
# Approximate total bytes; manyfiles is a tiny base plus MANY_FILES small JSON files.
SCALE_BYTES = {"tiny": 1 << 20, "small": 20 << 20, "medium": 500 << 20, "manyfiles": 1 << 20}
MANY_FILES = 100_000
MANY_PER_DIR = 2_000
BASE_TIME = 1_750_334_400            # 2025-06-19 12:00:00 UTC, the "now" of every tree
DAY = 86_400

# Share of the scale's bytes per part.  About 10 % is incompressible (PNG-ish
# assets, tar.gz archives, rotated .gz logs); the history database dominates,
# as it does in real installations.
SHARES = {"history_db": 0.47, "poppo_db": 0.04, "ccla_db": 0.03, "security_db": 0.03,
          "cache_db": 0.01, "logs": 0.09, "rotated": 0.02, "access": 0.05, "assets": 0.05,
          "archives": 0.04, "ccla": 0.05, "ccag": 0.04, "ccpm": 0.03, "state": 0.02}
ROTATED_DAYS = {"tiny": 3, "small": 7, "medium": 14, "manyfiles": 3}

EN_WORDS = ("issue label comment agent queue task retry backup restore config token rate limit "
            "github claude process worker session timeout memory dashboard health check schedule "
            "snapshot archive error warning repair pattern analysis document template priority "
            "pending running completed failed request response webhook branch commit review merge "
            "cache index metric alert notify cleanup rotate compress verify signature manifest "
            "target database state the a to of for with after before while because when was is "
            "will has been could not successfully again").split()
JA_WORDS = ("処理 完了 エラー 再試行 タスク イシュー ラベル バックアップ 復元 設定 エージェント ログ 分析 "
            "文書 生成 監視 通知 状態 確認 実行 失敗 成功 開始 終了 待機 接続 応答 要求 更新 削除 保存 "
            "検証 署名 暗号化 圧縮 展開 定期実行 優先度 キュー 制限 時間 メモリ 使用量 コメント 学習 修復 "
            "パターン 品質").split()
JA_PARTICLES = ("を", "が", "の", "に", "は", "で", "と", "から")
JA_ENDINGS = ("しました。", "します。", "できます。", "されています。", "が必要です。", "を確認してください。")
TASK_TYPES = ("claude-cli", "issue-process", "comment-process", "pr-review", "ccla-analysis",
              "ccag-docs", "ccpm-review", "cleanup")
# Sixteen slots so that four random bits pick a status with realistic weights.
STATUSES = ("success",) * 12 + ("failed", "failed", "timeout", "cancelled")
LEVELS = ("info",) * 10 + ("debug",) * 3 + ("warn", "warn", "error")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=None)
def _date(day: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(day * DAY))


@lru_cache(maxsize=1)
def _clock_times() -> list[str]:
    return [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY)]


def iso(t: float) -> str:
    """ISO-8601 UTC with milliseconds; table lookups, as strftime per log line is slow."""
    s = int(t)
    day, rest = divmod(s, DAY)
    return f"{_date(day)}T{_clock_times()[rest]}.{int((t - s) * 1000):03d}Z"


def _clf(t: float) -> str:
    """Common Log Format time; month names from a table, not the locale."""
    year, month, day = _date(int(t) // DAY).split("-")
    return f"{day}/{MONTHS[int(month) - 1]}/{year}:{iso(t)[11:19]} +0000"


class _Pools:
    """Sentence pools built once per tree; records pick whole sentences."""

    def __init__(self, rng: random.Random):
        self.en = [" ".join(rng.choices(EN_WORDS, k=rng.randint(5, 14))).capitalize() + "."
                   for _ in range(4096)]
        self.ja = ["".join(w + rng.choice(JA_PARTICLES) for w in rng.choices(JA_WORDS, k=rng.randint(2, 5)))
                   + rng.choice(JA_WORDS) + rng.choice(JA_ENDINGS) for _ in range(2048)]
        # ASCII without quotes or backslashes, so slices can go straight into JSON strings.
        self.filler = " ".join(rng.choices(self.en, k=8192))
        self.stacks = [self.stack(rng) for _ in range(256)]

    def text(self, rng: random.Random, nbytes: int, ja: bool = False) -> str:
        """About ``nbytes`` of prose (a Japanese character is 3 bytes)."""
        if ja:
            return "".join(rng.choices(self.ja, k=max(1, nbytes // 75)))
        return " ".join(rng.choices(self.en, k=max(1, nbytes // 60)))

    def stack(self, rng: random.Random) -> str:
        frames = "".join(f"\n    at {rng.choice(EN_WORDS)}{rng.choice(EN_WORDS).title()} "
                         f"(/opt/poppo/src/{rng.choice(EN_WORDS)}.js:{rng.randint(1, 900)}:"
                         f"{rng.randint(1, 80)})" for _ in range(rng.randint(4, 12)))
        return f"Error: {rng.choice(self.en)}{frames}"


class _Tree:
    """Writes files under ``root`` with explicit modes and mtimes, and counts them."""

    def __init__(self, root: Path, seed: int):
        self.root = str(root)
        self.clock = random.Random(f"{seed}:mtime")
        self.dirs: dict[str, int] = {}
        self.files = 0
        self.bytes = 0

    def abs(self, rel: str) -> str:
        parent = rel.rpartition("/")[0]
        if parent and parent not in self.dirs:
            self.mkdir(parent)
        return os.path.join(self.root, rel)

    def mkdir(self, rel: str, mode: int = 0o755) -> None:
        if rel not in self.dirs:
            os.mkdir(self.abs(rel))
            self.dirs[rel] = mode

    def mtime(self, t: float | None = None) -> int:
        """Nanoseconds; by default some time in the two weeks before BASE_TIME."""
        if t is None:
            return (BASE_TIME - 14 * DAY) * 10**9 + self.clock.randrange(14 * DAY * 10**9)
        return int(t * 1000) * 10**6

    def write(self, rel: str, data: bytes | str, mode: int = 0o644, t: float | None = None) -> None:
        if isinstance(data, str):
            data = data.encode()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.abs(rel), flags, mode)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)          # the umask must not change the result
            ns = self.mtime(t)
            os.utime(fd, ns=(ns, ns))
        finally:
            os.close(fd)
        self.files += 1
        self.bytes += len(data)

    def json(self, rel: str, doc, compact: bool = False, **kwargs) -> None:
        # Bulk data files are written compact: the indenting encoder is pure
        # Python and ~10x slower than the C one.
        layout = {"separators": (",", ":")} if compact else {"indent": 2}
        text = json.dumps(doc, ensure_ascii=False, **layout)
        self.write(rel, text + "\n", **kwargs)

    def adopt(self, rel: str, mode: int = 0o644) -> None:
        """Fix the mode and mtime of a file someone else (SQLite) wrote."""
        path = os.path.join(self.root, rel)
        os.chmod(path, mode)
        ns = self.mtime()
        os.utime(path, ns=(ns, ns))
        self.files += 1
        self.bytes += os.path.getsize(path)

    def symlink(self, rel: str, target: str) -> None:
        path = self.abs(rel)
        os.symlink(target, path)
        ns = self.mtime()
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
        self.files += 1

    def finish(self) -> None:
        """Directory mtimes last, deepest first: creating children changes them."""
        for rel in sorted(self.dirs, key=lambda r: r.count("/"), reverse=True):
            path = os.path.join(self.root, rel)
            os.chmod(path, self.dirs[rel])
            ns = self.mtime()
            os.utime(path, ns=(ns, ns))
        os.utime(self.root, ns=(BASE_TIME * 10**9,) * 2)


# -- SQLite ------------------------------------------------------------------

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


def _database(tree: _Tree, rel: str, schema: str, tables: list, target: int,
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


def _databases(tree: _Tree, seed: int, budget, pools: _Pools) -> None:
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


def _side_schema(tables: dict, rng: random.Random, pools: _Pools) -> tuple[str, list]:
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


def _side_value(kind: str, i: int, r: int, table: str, rng: random.Random, pools: _Pools):
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


# -- plain files ---------------------------------------------------------------

BACKUP_SECTION = {"enabled": True, "schedule": "0 2 * * *", "retention": 30, "maxBackups": 10,
                  "storage": {"type": "local", "path": "./backups", "compress": True, "encrypt": False},
                  "targets": {t: True for t in ("config", "database", "logs", "agents", "state",
                                                "security")}}


def _config(tree: _Tree, rng: random.Random, pools: _Pools) -> None:
    agents = {name: {"enabled": True, "pollingInterval": 300000} for name in ("ccla", "ccag", "ccpm")}
    config = {"github": {"owner": "medamap", "repo": "PoppoBuilderSuite"},
              "claude": {"maxConcurrent": 2, "timeout": 86400000, "maxRetries": 3},
              "language": {"primary": "ja", "fallback": "en"},
              "polling": {"interval": 30000},
              "rateLimiting": {"github": {"maxRequestsPerHour": 5000},
                               "claude": {"maxRequestsPerMinute": 5}},
              "dashboard": {"enabled": True, "port": 3001, "host": "localhost",
                            "authentication": {"enabled": True, "username": "admin",
                                               "password": "${POPPO_DASHBOARD_PASSWORD}"}},
              "logging": {"level": "info", "rotation": {"enabled": True, "maxSize": "100MB",
                                                        "maxFiles": 10, "compress": True}},
              "agents": agents, "backup": BACKUP_SECTION}
    tree.json("config/config.json", config)
    tree.json("config/defaults.json", {**config, "claude": {"maxConcurrent": 1, "timeout": 3600000},
                                       "language": {"primary": "en", "fallback": "en"}})
    for name in ("issue-comment", "pr-review", "notification"):
        tree.json(f"config/templates/{name}.json", {"name": name, "language": "ja",
                                                    "body": "## {{title}}\n\n" + rng.choice(pools.ja)})
    tree.write("config/alertmanager/alertmanager.yml", (
        "global:\n  resolve_timeout: 5m\nroute:\n  receiver: poppo-dashboard\n  group_by: [alertname]\n"
        "  group_wait: 30s\n  repeat_interval: 4h\nreceivers:\n  - name: poppo-dashboard\n"
        "    webhook_configs:\n      - url: http://localhost:3001/api/alerts\n"))
    tree.json("config/agents/custom-agent.json", {
        "name": "custom-agent", "type": "custom", "enabled": True, "entry": "agents/custom/index.js",
        "schedule": "*/15 * * * *", "labels": ["task:custom"], "timeout": 600000,
        "description": "ラベル task:custom の付いたイシューを処理するカスタムエージェント"})
    tree.json(".poppo/config.json", {"version": "1.0.0", "language": "ja", "project": "PoppoBuilderSuite",
                                     "installedAt": iso(BASE_TIME - 90 * DAY)})
    tree.write(".env", "# FAKE credentials for tests: none of these work anywhere.\n"
               f"GITHUB_TOKEN=ghp_FAKE{rng.getrandbits(128):032x}\n"
               f"CLAUDE_API_KEY=sk-ant-FAKE-{rng.getrandbits(160):040x}\n"
               f"POPPO_DASHBOARD_PASSWORD=FAKE-{rng.getrandbits(48):012x}\n"
               "POPPO_LOG_LEVEL=info\n", mode=0o600)
    # Files no target owns: selection must leave them out.
    tree.write("node_modules/left-pad/package.json", '{"name": "left-pad", "version": "1.3.0"}\n')
    tree.write("node_modules/left-pad/index.js",
               "module.exports = (s, n, c = ' ') => String(s).padStart(n, c);\n")
    tree.write("src/minimal-poppo.js", "#!/usr/bin/env node\n// PoppoBuilder minimal runner\n"
               "require('./poppo').start({ config: '../config/config.json' });\n", mode=0o755)


def _certs(tree: _Tree, rng: random.Random) -> None:
    """A CA and a server certificate it signed.  Ed25519 keys come from seeded
    bytes and Ed25519 signatures are deterministic, so the PEMs are too."""
    ca_key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    server_key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PoppoBuilder Demo (FAKE)"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def certificate(subject: str, key, is_ca: bool, extension) -> bytes:
        start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(name(subject))
                   .issuer_name(name("PoppoBuilder Demo CA")).public_key(key.public_key())
                   .serial_number(1 + rng.getrandbits(64)).not_valid_before(start)
                   # Long-lived, so the fixed dates stay valid for years of test runs.
                   .not_valid_after(start + datetime.timedelta(days=7300 if is_ca else 3650))
                   .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
                   .add_extension(extension, critical=False))
        return builder.sign(ca_key, None).public_bytes(serialization.Encoding.PEM)

    tree.write("certs/ca.pem", certificate("PoppoBuilder Demo CA", ca_key, True,
                                           x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())))
    tree.write("certs/server.pem", certificate("localhost", server_key, False, x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])))
    tree.write("certs/server.key", server_key.private_bytes(serialization.Encoding.PEM,
               serialization.PrivateFormat.PKCS8, serialization.NoEncryption()), mode=0o600)
    tree.symlink("certs/current.pem", "server.pem")


def _log_lines(rng: random.Random, pools: _Pools, nbytes: int, component: str,
               start: float, end: float) -> str:
    """JSON-lines log records, ~240 bytes each, evenly spread over [start, end)."""
    count = max(1, nbytes // 240)
    step = (end - start) / count
    lines = []
    for k in range(count):
        r = rng.getrandbits(64)
        lines.append(f'{{"timestamp":"{iso(start + k * step + (r & 1023) / 1000)}",'
                     f'"level":"{LEVELS[(r >> 10) & 15]}",'
                     f'"component":"{component}","message":"{pools.en[(r >> 14) & 4095]}",'
                     f'"issue":{(r >> 26) & 2047},"requestId":"{rng.getrandbits(64):016x}",'
                     f'"durationMs":{(r >> 37) & 0xFFFF}}}\n')
    return "".join(lines)


def _access_lines(rng: random.Random, nbytes: int, start: float, end: float) -> str:
    count = max(1, nbytes // 170)
    step = (end - start) / count
    routes = ("GET /api/processes", "GET /api/health", "POST /api/tasks", "GET /api/issues/",
              "GET /api/logs/search?q=error", "DELETE /api/processes/", "GET /dashboard/",
              "POST /api/auth/login")
    agents = ("Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0", "curl/8.5.0", "PoppoBuilder-CLI/1.0.0")
    lines = []
    for k in range(count):
        r = rng.getrandbits(64)
        route = routes[r & 7]
        if route.endswith("/"):
            route += str((r >> 20) & 4095)
        lines.append(f'10.0.{(r >> 3) & 255}.{(r >> 11) & 255} - {("admin", "-")[(r >> 19) & 1]} '
                     f'[{_clf(start + k * step)}] "{route} HTTP/1.1" '
                     f'{(200, 200, 200, 200, 200, 304, 401, 500)[(r >> 32) & 7]} {(r >> 35) & 0xFFFF} "-" '
                     f'"{agents[((r >> 51) & 3) % 3]}" {((r >> 53) & 2047) / 1000:.3f}\n')
    return "".join(lines)


def _logs(tree: _Tree, rng: random.Random, pools: _Pools, budget, days: int) -> None:
    weights = {"poppo-builder": 5, "process-manager": 2, "dashboard": 1, "ccla": 2, "ccag": 1,
               "ccpm": 1, "error": 1}
    for component, weight in weights.items():
        size = budget("logs") * weight // sum(weights.values())
        text = _log_lines(rng, pools, size, component, BASE_TIME - DAY / 2, BASE_TIME - 60)
        tree.write(f"logs/{component}.log", text, t=BASE_TIME - 60)
    # Rotated days: gzip is ~6x on these lines, so generate 6x the disk budget.
    # gzip.compress with a fixed mtime and no file name gives stable bytes.
    # Half of the budget for the recent days, half for the archive.
    for n in range(1, days + 1):
        day = BASE_TIME - n * DAY
        raw = _log_lines(rng, pools, budget("rotated") * 3 // days, "poppo-builder", day - DAY / 2, day)
        packed = gzip.compress(raw.encode(), 6, mtime=day)
        tree.write(f"logs/poppo-{_date(day // DAY)}.log.gz", packed, t=day)
    archived = max(2, days // 2)
    for n in range(archived):
        day = BASE_TIME - (40 + n) * DAY
        name = f"poppo-{_date(day // DAY)}.log"
        raw = _log_lines(rng, pools, budget("rotated") * 3 // archived, "poppo-builder", day, day + DAY)
        raw = raw.encode()
        packed = gzip.compress(raw, 6, mtime=day)
        tree.write(f"logs/archive/{name}.gz", packed, t=day + DAY)
        tree.json(f"logs/archive/{name}.gz.meta.json", {
            "originalName": name, "archivedAt": iso(day + DAY), "originalSize": len(raw),
            "compressedSize": len(packed), "lines": raw.count(b"\n"),
            "sha256": hashlib.sha256(packed).hexdigest()}, t=day + DAY)
    access = _access_lines(rng, budget("access"), BASE_TIME - 3 * DAY, BASE_TIME - 30)
    tree.write("data/access.log", access, t=BASE_TIME - 30)


def _png(rng: random.Random, size: int) -> bytes:
    """A PNG-shaped blob (valid chunk framing and CRCs) of random, incompressible pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 64 + rng.getrandbits(10), 64 + rng.getrandbits(10), 8, 6, 0, 0, 0)
    pixels = rng.randbytes(max(16, size - 57))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _tar_gz(rng: random.Random, size: int, t: int) -> bytes:
    """A tar.gz with fixed owners and times (tarfile's own gzip would stamp 'now')."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("manifest.json", json.dumps({"createdAt": iso(t), "entries": 1}).encode()),
                           ("embeddings.bin", rng.randbytes(size))):
            info = tarfile.TarInfo(f"ccla-archive/{name}")
            info.size, info.mtime, info.mode, info.uid, info.gid = len(data), t, 0o644, 1000, 1000
            info.uname = info.gname = "poppo"
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), 1, mtime=t)


def _records(nbytes: int, make) -> list:
    """Enough records from ``make()`` for about ``nbytes`` of JSON."""
    first = make()
    return [first] + [make() for _ in range(nbytes // (len(json.dumps(first)) + 8))]


def _agents(tree: _Tree, rng: random.Random, pools: _Pools, budget) -> None:
    def repair() -> dict:
        r = rng.getrandbits(64)
        return {"id": f"repair-{rng.getrandbits(48):012x}",
                "errorHash": f"{rng.getrandbits(160):040x}",
                "category": ("TypeError", "NetworkError", "RateLimit", "Timeout")[r & 3],
                "strategy": ("retry", "patch", "config", "skip")[(r >> 2) & 3], "success": bool(r & 16),
                "durationMs": (r >> 5) & 0xFFFFF, "createdAt": iso(BASE_TIME - ((r >> 25) & 0x3FFFFF)),
                "message": pools.en[(r >> 47) & 4095], "stack": pools.stacks[(r >> 35) & 255]}

    patterns = _records(budget("ccla") // 5, repair)
    tree.json("data/ccla/learning-data.json", {"version": "2.1", "updatedAt": iso(BASE_TIME - 3600),
                                               "patterns": patterns}, compact=True)
    count = max(3, budget("ccla") * 4 // 5 // 8192)
    for n in range(count):
        month = "2025-06" if n % 3 else "2025-05"
        tree.json(f"data/ccla/repair-history/{month}/repair-{n:05d}-{rng.getrandbits(24):06x}.json",
                  {"issue": 1 + rng.getrandbits(11), "attempts": _records(8192, repair)}, compact=True)
    count = max(1, budget("archives") // (2 << 20))
    for n in range(count):
        day = BASE_TIME - (7 * n + 7) * DAY
        tree.write(f"data/ccla/archives/ccla-archive-{_date(day // DAY)}.tar.gz",
                   _tar_gz(rng, budget("archives") // count, day), t=day)

    # CCAG documentation: Japanese names, one path longer than 100 bytes.
    paths = [f"data/ccag/docs/en/{name}.md" for name in
             ("getting-started", "architecture", "api-reference", "configuration", "troubleshooting")]
    paths += [f"data/ccag/docs/ja/{name}.md" for name in
              ("はじめに", "アーキテクチャ", "バックアップ・リストア機能", "設定ガイド", "トラブルシューティング")]
    paths.append("data/ccag/docs/ja/generated/2025-06-19/エージェント間通信プロトコルとタスクキュー管理の詳細設計書.md")
    paths += [f"data/ccag/docs/{('en', 'ja')[k % 2]}/generated/guide-{k:04d}.md"
              for k in range(max(0, budget("ccag") // 16384 - len(paths)))]
    for path in paths:
        ja = "/ja/" in path
        sections = [f"## {rng.choice(pools.ja if ja else pools.en)}\n\n{pools.text(rng, 1800, ja)}\n\n"
                    "```bash\nnpm run poppo:backup -- --target config\n```\n\n"
                    for _ in range(max(1, budget("ccag") // len(paths) // 2000))]
        tree.write(path, f"# {path.rsplit('/', 1)[1][:-3]}\n\n" + "".join(sections))
    count = max(2, budget("assets") // 262144)
    for n in range(count):
        tree.write(f"data/ccag/assets/diagram-{n:03d}.png",
                   _png(rng, budget("assets") // count * rng.randint(50, 150) // 100))

    def finding() -> dict:
        r = rng.getrandbits(64)
        return {"file": f"src/{EN_WORDS[r & 63]}/{EN_WORDS[(r >> 6) & 63]}.js",
                "line": (r >> 12) & 2047,
                "severity": ("info", "minor", "major", "critical")[(r >> 23) & 3],
                "message": pools.ja[(r >> 25) & 2047], "commit": f"{rng.getrandbits(160):040x}"}

    count = max(2, budget("ccpm") // 12288)
    for n in range(count):
        issue = 100 + 7 * n
        tree.json(f"data/ccpm/analysis/issue-{issue}/analysis.json", {
            "issue": issue, "analyzedAt": iso(BASE_TIME - n * 3600), "complexity": rng.randint(1, 10),
            "findings": _records(8192, finding)}, compact=True)
        tree.json(f"data/ccpm/analysis/issue-{issue}/review.json", {
            "issue": issue, "approved": rng.random() < 0.7, "summary": pools.text(rng, 2000, True),
            "suggestions": _records(2048, finding)}, compact=True)


def _state(tree: _Tree, rng: random.Random, pools: _Pools, budget) -> None:
    issues = sorted(rng.sample(range(1, 100_000), max(10, budget("state") // 300)))
    tree.json("state/running-tasks.json", {f"issue-{n}": {
        "pid": 40000 + rng.getrandbits(12), "type": "claude-cli", "issueNumber": n,
        "startTime": iso(BASE_TIME - rng.randint(60, 3600)), "title": rng.choice(pools.ja)}
        for n in issues[-3:]}, t=BASE_TIME - 5)
    tree.json("state/pending-tasks.json", [{"issueNumber": n, "priority": rng.randint(0, 3),
                                            "enqueuedAt": iso(BASE_TIME - 600)} for n in issues[-8:-3]])
    tree.json("state/processed-issues.json", issues)
    tree.json("state/processed-comments.json", {str(n): [rng.getrandbits(40) for _ in range(1 + n % 4)]
                                                for n in issues})
    tree.json("state/issue-status.json", {str(n): {
        "status": STATUSES[n & 15], "lastUpdated": iso(BASE_TIME - n), "pid": None,
        "taskType": TASK_TYPES[n & 7], "lastError": None} for n in issues})
    tree.json("state/last-run.json", {"timestamp": iso(BASE_TIME - 30), "processed": len(issues),
                                      "durationMs": 12345, "status": "ok"}, t=BASE_TIME - 30)
    for n in range(max(3, budget("state") // 2 // 4096)):
        tree.json(f"state/requests/label-update-{n:05d}-{rng.getrandbits(24):06x}.json", {
            "type": "label-update", "issueNumber": issues[n % len(issues)], "addLabels": ["processing"],
            "removeLabels": ["task:misc"], "requestedAt": iso(BASE_TIME - n * 60),
            "note": pools.text(rng, 3800)})
    tree.mkdir("state/locks")            # empty on purpose


def _many(tree: _Tree, rng: random.Random, pools: _Pools) -> None:
    """MANY_FILES JSON files of 200 B to 4 KB (mostly small), ≤ MANY_PER_DIR per folder."""
    filler = pools.filler
    half = MANY_FILES // 2
    for k in range(MANY_FILES):
        folder = "state/requests" if k < half else "data/ccla/processed"
        index = k % half
        r = rng.getrandbits(64)
        size = 200 + (((r & 0xFFFF) * ((r >> 16) & 0xFFFF) * 3800) >> 32)
        head = (f'{{"id":"{index:06d}-{r >> 32:08x}","type":"{TASK_TYPES[(r >> 16) & 7]}",'
                f'"issue":{(r >> 19) & 0xFFFF},"createdAt":"{iso(BASE_TIME - index * 17)}","body":"')
        offset = (r >> 35) % (len(filler) - 4096)
        body = filler[offset:offset + max(0, size - len(head) - 3)]
        tree.write(f"{folder}/batch-{index // MANY_PER_DIR:03d}/{index:06d}.json", f'{head}{body}"}}\n')


def make_installation(dest: str | Path, scale: str = "tiny", seed: int = 0) -> dict:
    """Build the tree at ``dest`` (absent or an empty directory) and summarise it.

    ``files`` counts regular files and symlinks (a database and its ``-wal``
    are two), ``bytes`` their sizes.  Raises ValueError for an unknown scale
    or a destination that is not absent or empty.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {', '.join(SCALES)}")
    root = Path(dest)
    if root.exists():
        if not root.is_dir() or any(root.iterdir()):
            raise ValueError(f"{root}: destination must be absent or an empty directory")
    else:
        root.mkdir(parents=True)
        os.chmod(root, 0o755)
    tree = _Tree(root, seed)

    def budget(part: str) -> int:
        return int(SCALE_BYTES[scale] * SHARES[part])

    # One stream per part, so a change in one part leaves the others' bytes alone.
    pools = _Pools(random.Random(f"{seed}:pools"))
    _config(tree, random.Random(f"{seed}:config"), pools)
    _certs(tree, random.Random(f"{seed}:certs"))
    _databases(tree, seed, budget, pools)
    _logs(tree, random.Random(f"{seed}:logs"), pools, budget, ROTATED_DAYS[scale])
    _agents(tree, random.Random(f"{seed}:agents"), pools, budget)
    _state(tree, random.Random(f"{seed}:state"), pools, budget)
    if scale == "manyfiles":
        _many(tree, random.Random(f"{seed}:many"), pools)
    tree.finish()
    return {"files": tree.files, "bytes": tree.bytes, "scale": scale, "seed": seed}


USAGE = """Make a demo PoppoBuilder installation.

Usage:
  installation DEST [--scale=SCALE] [--seed=N]
  installation (-h | --help)

Options:
  --scale=SCALE  tiny, small, medium or manyfiles [default: tiny].
  --seed=N       Random seed; same seed, same bytes [default: 0].
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m poppoarc.demo.installation DEST [--scale=S] [--seed=N]``."""
    args, seed = parse_args(USAGE, argv, lambda a: int(a["--seed"]), "--seed must be an integer")
    if args is None:
        return seed
    started = time.monotonic()
    try:
        summary = make_installation(args["DEST"], args["--scale"], seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args['DEST']}: scale={summary['scale']} seed={seed} files={summary['files']} "
          f"bytes={summary['bytes']} ({summary['bytes'] / 1e6:.1f} MB) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
