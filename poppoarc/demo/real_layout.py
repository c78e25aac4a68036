"""An installation laid out as the PoppoBuilder Suite repository lays itself out.

The demo tree of ``installation`` is poppoarc's own model: the seed's six targets, each
well filled.  Real installations differ, and this tree is modelled on the upstream
repository (medamap/PoppoBuilderSuite 0.1.28) instead, from facts only (names, shapes,
values; none of its code or text):

* ``config/config.json`` has some thirty sections and **two** ``backup`` sections, as
  the shipped file has: first the seed's shape (with ``beforeBackup``, ``notifications``
  and ``retry``, which the seed does not document), then, later in the same object, the
  shape ``lib/backup/backup-manager.js`` reads (``backupPath``, ``encryptionEnabled``,
  ``items``, ``excludePatterns``, ``storageBackends``...).  JSON readers keep the last.
* the databases that manager names: ``data/poppobuilder.db`` and ``data/audit.db`` in WAL
  mode (a transaction still in ``-wal``), ``data/metrics.db`` in rollback-journal mode;
* ``.poppo/``, ``.poppobuilder/config.json``, ``.env.production`` (the only secret; no
  ``.env``), ``state/`` with ``requests/``, a stray ``state.backup.<date>/`` copy,
  ``agents/`` holding the agents' code and messages, ``messages/`` inboxes, ``logs/``
  with an ``archive/`` of rotated ``.log.gz``, ``data/ccla/{archives,processed}/``,
  ``memory-snapshots/``, ``uploads/`` (the legacy ``items`` name it, no target holds it),
  the application itself (``package.json``, ``src/``, ``lib/``, ``node_modules/``).

Deterministic for a seed, like ``installation``: the same bytes, modes and mtimes.

    python -m poppoarc.demo.installation DEST --layout=real [--seed=N]
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sqlite3
from pathlib import Path

from .databases import _database
from .tree import BASE_TIME, DAY, LEVELS, TASK_TYPES, Pools, Tree, date_text, iso

# The backup section lib/backup/backup-manager.js reads, with the values it ships.
LEGACY_BACKUP = {
    "enabled": True, "backupPath": "./backups", "encryptionEnabled": True,
    "compressionEnabled": True, "compressionLevel": 6, "retentionDays": 30, "maxBackups": 10,
    "scheduleEnabled": True, "schedule": "0 2 * * *", "incrementalEnabled": True,
    "items": ["config", "state", "database", "logs", "uploads"],
    "excludePatterns": ["*.tmp", "*.log.gz", "node_modules"],
    "storageBackends": {"local": {"enabled": True, "path": "./backups"},
                        "s3": {"enabled": False, "bucket": "", "region": "", "accessKeyId": "",
                               "secretAccessKey": ""}},
}

# The earlier section of the same file: the seed's shape, and keys only the scheduler of
# src/backup-scheduler.js reads (beforeBackup, notifications.onSuccess, retry).
SEED_ERA_BACKUP = {
    "enabled": True, "schedule": "0 2 * * *", "retention": 30, "maxBackups": 10,
    "storage": {"type": "local", "path": "./backups", "compress": True, "encrypt": False,
                "encryptionKey": None},
    "targets": {name: True for name in ("config", "database", "logs", "agents", "state",
                                        "security")},
    "incremental": {"enabled": False, "maxIncrementals": 7},
    "beforeBackup": {"checkIntegrity": True},
    "notifications": {"enabled": True, "onSuccess": True, "onError": True, "channels": ["log"]},
    "retry": {"enabled": True, "maxRetries": 3, "delay": 300000},
}

DATABASES = ("data/poppobuilder.db", "data/metrics.db", "data/audit.db")
SECRET = ".env.production"
AGENTS = ("ccla", "ccag", "ccpm", "ccqa", "ccra", "ccsp", "ccta")


def _config_sections(rng: random.Random) -> list[tuple[str, object]]:
    """The top-level sections of the shipped config.json, in its order (values cut down)."""
    password = f"FAKE-{rng.getrandbits(48):012x}"
    return [
        ("github", {"owner": "medamap", "repo": "PoppoBuilderSuite"}),
        ("claude", {"maxConcurrent": 2, "timeout": 86400000}),
        ("polling", {"interval": 300000}),
        ("commentHandling", {"enabled": True, "completionKeywords": ["ありがとう", "完了", "OK",
                                                                     "thanks", "done"],
                             "maxCommentCount": 10, "timeoutHours": 24}),
        ("dashboard", {"enabled": True, "port": 3001, "host": "localhost", "updateInterval": 5000,
                       "authentication": {"enabled": True, "username": "admin",
                                          "password": password}}),
        ("rateLimiting", {"initialBackoffDelay": 1000, "maxBackoffDelay": 300000,
                          "backoffMultiplier": 2, "backoffJitter": 0.1}),
        ("taskQueue", {"maxQueueSize": 100, "priorityLevels": {"dogfooding": 100, "high": 75,
                                                               "normal": 50, "low": 25}}),
        ("dynamicTimeout", {"enabled": True, "minTimeout": 600000, "maxTimeout": 86400000}),
        ("agentMode", {"enabled": True, "pollingInterval": 3000, "autoRestart": True,
                       "taskMapping": {"labels": {"review": ["code-review"],
                                                  "documentation": ["generate-docs"]}}}),
        ("errorLogCollection", {"enabled": True, "pollingInterval": 300000,
                                "logSources": ["poppo-*.log"], "errorLevels": ["ERROR", "FATAL"],
                                "archiving": {"enabled": True, "archivePath": "data/ccla/archives",
                                              "processedLogsPath": "data/ccla/processed",
                                              "retentionDays": 30}}),
        ("healthCheck", {"enabled": True, "interval": 60000,
                         "thresholds": {"healthy": 80, "degraded": 60}}),
        ("twoStageProcessing", {"enabled": True, "confidenceThreshold": 0.7}),
        ("configReload", {"enabled": True, "watchFiles": True, "debounceDelay": 500}),
        ("notifications", {"enabled": True, "providers": {"discord": {"enabled": False,
                                                                      "webhookUrl": ""}}}),
        ("logRotation", {"enabled": True, "maxSize": 104857600, "maxFiles": 10, "compress": True,
                         "compressionLevel": 6, "retentionDays": 30, "archivePath": "logs/archive"}),
        ("dynamicScaling", {"enabled": True, "scaling": {"minAgents": 3, "maxAgents": 15}}),
        ("backup", SEED_ERA_BACKUP),
        ("redis", {"host": "127.0.0.1", "port": 6379, "password": None, "db": 0}),
        ("mirin", {"heartbeatInterval": 30000, "orphanCheckInterval": 300000}),
        ("messaging", {"mode": "hybrid", "queue": {"enableMonitoring": True}}),
        ("unifiedStateManagement", {"enabled": True, "migrationCompleted": True,
                                    "backend": "file"}),
        ("githubProjects", {"enabled": False, "token": "${GITHUB_TOKEN}"}),
        ("memory", {"monitoring": {"enabled": True, "snapshot": {"enabled": True,
                                                                 "path": "./memory-snapshots"}}}),
        ("errorHandling", {"enabled": True, "errorFile": "logs/errors.json"}),
        ("sla", {"enabled": True, "metricsRetentionDays": 30}),
        ("memoryManagement", {"enabled": True, "heapSnapshotPath": "./heap-snapshots"}),
        ("ccsp", {"enabled": True, "port": 3003, "maxConcurrentRequests": 5}),
        ("productionLogging", {"enabled": True, "logRetentionDays": 30,
                               "aggregation": {"centralLogDir": "logs/aggregated"}}),
        ("performanceMonitoring", {"enabled": True, "metricsInterval": 1000}),
        ("security", {"audit": {"enabled": True, "strictMode": True},
                      "encryption": {"algorithm": "aes-256-gcm", "keyDerivation": "pbkdf2"}}),
        ("scalability", {"enabled": True}),
        ("deployment", {"enabled": True, "strategy": "rolling"}),
        ("monitoring", {"enabled": True, "dashboardPort": 3004}),
        ("backup", LEGACY_BACKUP),
        ("disasterRecovery", {"enabled": True, "rto": 3600000, "rpo": 86400000,
                              "testingSchedule": "monthly"}),
    ]


def config_text(sections: list[tuple[str, object]]) -> str:
    """A JSON object from (key, value) pairs, keys repeated as given, indented by two."""
    members = []
    for key, value in sections:
        body = json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  ")
        members.append(f"  {json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(members) + "\n}\n"


def _config(tree: Tree, rng: random.Random, pools: Pools) -> None:
    tree.write("config/config.json", config_text(_config_sections(rng)))
    tree.json("config/defaults.json", {"language": {"primary": "ja", "fallback": "en"},
                                       "claude": {"maxConcurrent": 1}})
    tree.json("config/daemon-config.json", {"port": 3003, "host": "localhost", "maxWorkers": 10,
                                            "api": {"enabled": True}})
    tree.json("config/alert-rules.json", {"rules": [{"name": "high-error-rate", "threshold": 5}]})
    tree.json("config/recovery-plan.json", {"steps": ["stop", "restore", "verify", "start"]})
    tree.json("config/config.agent.json", {"agents": {name: {"enabled": True} for name in AGENTS}})
    tree.write("config/prometheus.yml", "global:\n  scrape_interval: 15s\nscrape_configs:\n"
               "  - job_name: poppo\n    static_configs:\n      - targets: ['localhost:3004']\n")
    tree.write("config/redis.conf", "bind 127.0.0.1\nport 6379\nappendonly yes\n")
    tree.write("config/alertmanager/alertmanager.yml",
               "route:\n  receiver: poppo\nreceivers:\n  - name: poppo\n")
    for name in ("basic", "config.en", "config.ja", "enterprise", "high-performance",
                 "resource-limited"):
        tree.json(f"config/templates/{name}.json", {"template": name,
                                                    "note": rng.choice(pools.ja)})
    tree.json(".poppo/config.json", {"version": "1.0.0", "project": "poppo-builder-suite",
                                     "github": {"owner": "medamap", "repo": "PoppoBuilderSuite"},
                                     "language": {"primary": "ja"}})
    tree.write(".poppo/test-traceability.yaml", "items:\n  PBS-REQ-101:\n    id: PBS-REQ-101\n"
               "    phase: REQ\n    title: GitHub連携機能\n    status: active\n")
    tree.json(".poppobuilder/config.json", {"version": "1.0.0",
                                            "project": {"name": "PoppoBuilderSuite"},
                                            "language": {"primary": "ja"},
                                            "features": {"agents": True}})
    tree.write(SECRET, "# FAKE production settings for tests: none of these work anywhere.\n"
               "NODE_ENV=production\nPOPPO_DAEMON_PORT=3003\nPOPPO_LOG_LEVEL=info\n"
               f"POSTGRES_PASSWORD=FAKE-{rng.getrandbits(64):016x}\n"
               f"GRAFANA_PASSWORD=FAKE-{rng.getrandbits(48):012x}\n"
               f"GITHUB_TOKEN=ghp_FAKE{rng.getrandbits(128):032x}\n"
               f"CLAUDE_API_KEY=sk-ant-FAKE-{rng.getrandbits(160):040x}\n"
               "BACKUP_ENABLED=true\nBACKUP_SCHEDULE=0 2 * * *\nBACKUP_RETENTION_DAYS=30\n",
               mode=0o600)


def _application(tree: Tree) -> None:
    """What npm installs: the application, which no target holds (it is reinstalled)."""
    tree.json("package.json", {"name": "poppo-builder-suite", "version": "0.1.28",
                               "main": "src/minimal-poppo.js"})
    tree.write("src/minimal-poppo.js", "#!/usr/bin/env node\n// the PoppoBuilder runner\n",
               mode=0o755)
    tree.write("lib/backup/backup-manager.js", "// the application's own backup manager\n")
    tree.write("node_modules/better-sqlite3/package.json",
               '{"name": "better-sqlite3", "version": "9.6.0"}\n')


def _agents(tree: Tree, rng: random.Random, pools: Pools) -> None:
    for name in AGENTS:
        tree.write(f"agents/{name}/index.js", f"// agent {name}\nmodule.exports = {{}};\n")
    for name in ("agent-coordinator", "load-balancer"):
        tree.write(f"agents/core/{name}.js", f"// {name}\n")
    tree.write("agents/shared/agent-base.js", "// the base class of every agent\n")
    tree.json("agents/messages/en.json", {"started": "Agent started", "stopped": "Agent stopped"})
    tree.json("agents/messages/ja.json", {"started": "エージェント開始", "stopped": "エージェント停止"})
    tree.json("data/ccla/learning-data.json", {"version": "2.1", "patterns": [
        {"id": f"EP{n:03d}", "note": rng.choice(pools.en)} for n in range(1, 11)]})
    for n in range(3):
        day = BASE_TIME - (n + 1) * DAY
        tree.write(f"data/ccla/archives/errors-{date_text(day // DAY)}.json.gz",
                   gzip.compress(pools.text(rng, 4000).encode(), 6, mtime=day), t=day)
        tree.json(f"data/ccla/processed/poppo-{date_text(day // DAY)}.json",
                  {"processed": rng.randint(10, 99), "errors": rng.randint(0, 9)}, t=day)
    tree.json(f"messages/core/inbox/{iso(BASE_TIME - 90).replace(':', '-')}_"
              f"{rng.getrandbits(128):032x}_HEARTBEAT.json", {"type": "HEARTBEAT",
                                                             "from": "poppo-builder"})


def _state(tree: Tree, rng: random.Random, pools: Pools) -> None:
    issues = sorted(rng.sample(range(1, 300), 40))
    documents = {
        "issue-status.json": {"issues": {str(n): {
            "status": ("completed", "awaiting-response", "processing")[n % 3],
            "lastUpdated": iso(BASE_TIME - n * 60), "processId": None, "pid": None,
            "taskType": TASK_TYPES[n & 7], "metadata": {"retryCount": 0, "errorCount": 0}}
            for n in issues}},
        "last-run.json": {"issuesChecked": 30, "issuesProcessed": 2,
                          "queueStatus": {"running": 0, "queued": 0}},
        "pending-tasks.json": [{"type": "comment", "issue": {"number": n,
                                                             "body": rng.choice(pools.ja)}}
                               for n in issues[-3:]],
        "processed-comments.json": {str(n): [rng.getrandbits(40)] for n in issues},
        "processed-issues.json": issues,
        "running-tasks.json": {},
    }
    for name, document in documents.items():
        tree.json(f"state/{name}", document)
    for n in range(6):
        ms = (BASE_TIME - 3600 + n * 97) * 1000 + rng.getrandbits(10)
        tree.json(f"state/requests/label-update-{ms}.json", {
            "requestId": f"req-{ms}-{rng.getrandbits(40):010x}", "timestamp": iso(ms / 1000),
            "issueNumber": issues[n], "action": "update", "addLabels": ["processing"],
            "removeLabels": ["task:misc"], "requestedBy": "StatusManager"})
    # an operator's copy of state/ before an upgrade, as the upstream repository holds one
    stamp = "state.backup.20250624002814"
    for name in ("issue-status.json", "last-run.json", "running-tasks.json"):
        tree.json(f"{stamp}/{name}", documents[name])


def _logs(tree: Tree, rng: random.Random, pools: Pools) -> None:
    lines = "".join(f'{{"timestamp":"{iso(BASE_TIME - 3600 + k * 30)}","level":'
                    f'"{LEVELS[k % len(LEVELS)]}","message":"{rng.choice(pools.en)}"}}\n'
                    for k in range(120))
    tree.write(f"logs/poppo-{date_text(BASE_TIME // DAY)}.log", lines, t=BASE_TIME - 60)
    tree.json("logs/errors.json", [{"code": "EP001", "message": rng.choice(pools.en)}])
    for n in range(1, 4):
        day = BASE_TIME - n * DAY
        raw = "".join(f"{iso(day + k * 60)} INFO {rng.choice(pools.en)}\n" for k in range(200))
        tree.write(f"logs/archive/poppo-{date_text(day // DAY)}.log.gz",
                   gzip.compress(raw.encode(), 6, mtime=day), t=day)


def _uploads(tree: Tree, rng: random.Random) -> None:
    for n in range(4):
        tree.write(f"uploads/issue-{100 + n}/attachment-{n}.bin", rng.randbytes(2048 + 512 * n))
    tree.write("memory-snapshots/heap-1750829886063.heapsnapshot",
               json.dumps({"snapshot": {"node_count": 3}, "nodes": [0, 1, 2]}))


def _rollback_database(tree: Tree, rel: str, rows: list[tuple]) -> None:
    """``data/metrics.db``: SQLite's default rollback-journal mode (no ``-wal``)."""
    conn = sqlite3.connect(tree.abs(rel), isolation_level=None)
    conn.executescript("""
        PRAGMA journal_mode=DELETE;
        CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp INTEGER NOT NULL,
            metric_name TEXT NOT NULL, metric_type TEXT NOT NULL, value REAL NOT NULL, tags TEXT);
        CREATE INDEX idx_metrics_timestamp ON metrics(timestamp);
        CREATE TABLE metric_aggregates (id INTEGER PRIMARY KEY AUTOINCREMENT,
            timestamp INTEGER NOT NULL, metric_name TEXT NOT NULL, window TEXT NOT NULL,
            count INTEGER, avg REAL, p95 REAL);""")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO metrics (timestamp, metric_name, metric_type, value, tags) "
                     "VALUES (?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()
    tree.adopt(rel)


def _databases(tree: Tree, rng: random.Random, pools: Pools) -> None:
    def process(i: int) -> tuple:
        r = rng.getrandbits(64)
        started = (BASE_TIME - 30 * DAY + i * 600) * 1000
        return (i, f"issue-{1 + (r & 0x1FF)}", TASK_TYPES[(r >> 9) & 7], 1 + (r & 0x1FF),
                rng.choice(pools.ja), started, started + ((r >> 12) & 0xFFFFF),
                ("success", "success", "success", "failed")[(r >> 32) & 3], (r >> 34) & 1,
                None, (r >> 12) & 0xFFFFF)

    _database(tree, DATABASES[0], """
        CREATE TABLE process_history (id INTEGER PRIMARY KEY AUTOINCREMENT,
            process_id TEXT NOT NULL, task_type TEXT NOT NULL, issue_number INTEGER, title TEXT,
            started_at INTEGER NOT NULL, ended_at INTEGER, status TEXT NOT NULL,
            exit_code INTEGER, error_message TEXT, duration_ms INTEGER);
        CREATE INDEX idx_process_history_status ON process_history(status);
        CREATE TABLE archive_history (id INTEGER PRIMARY KEY AUTOINCREMENT,
            archive_file TEXT NOT NULL, records_count INTEGER NOT NULL);""",
              [("process_history", process, 40)], 96 << 10, rng, final_rows=5)

    def audit(i: int) -> tuple:
        r = rng.getrandbits(64)
        return (i, iso(BASE_TIME - 7 * DAY + i * 90), ("auth", "access", "config")[r % 3],
                ("ccla", "ccag", "ccpm")[(r >> 2) % 3], f"10.0.{(r >> 8) & 255}.{(r >> 16) & 255}",
                ("success", "failure")[(r >> 24) & 1], f"{rng.getrandbits(128):032x}")

    _database(tree, DATABASES[2], """
        CREATE TABLE audit_logs (id INTEGER PRIMARY KEY AUTOINCREMENT, timestamp TEXT NOT NULL,
            event_type TEXT NOT NULL, agent_id TEXT, ip_address TEXT, result TEXT NOT NULL,
            checksum TEXT NOT NULL);
        CREATE INDEX idx_timestamp ON audit_logs(timestamp);""",
              [("audit_logs", audit, 40)], 48 << 10, rng, final_rows=3)
    rows = [((BASE_TIME - 3600 + k * 10) * 1000, ("cpu", "memory", "queue")[k % 3], "gauge",
             float(rng.getrandbits(10)), None) for k in range(300)]
    _rollback_database(tree, DATABASES[1], rows)


def make_real_layout(dest: str | Path, seed: int = 0) -> dict:
    """Build the tree at ``dest`` (absent or an empty directory) and summarise it as
    ``make_installation`` does."""
    root = Path(dest)
    if root.exists():
        if not root.is_dir() or any(root.iterdir()):
            raise ValueError(f"{root}: destination must be absent or an empty directory")
    else:
        root.mkdir(parents=True)
        os.chmod(root, 0o755)
    tree = Tree(root, seed)
    pools = Pools(random.Random(f"{seed}:pools"))
    _config(tree, random.Random(f"{seed}:config"), pools)
    _application(tree)
    _agents(tree, random.Random(f"{seed}:agents"), pools)
    _state(tree, random.Random(f"{seed}:state"), pools)
    _logs(tree, random.Random(f"{seed}:logs"), pools)
    _uploads(tree, random.Random(f"{seed}:uploads"))
    _databases(tree, random.Random(f"{seed}:databases"), pools)
    tree.finish()
    return {"files": tree.files, "bytes": tree.bytes, "scale": "real", "seed": seed}

