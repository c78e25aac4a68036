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
    python -m poppoarc.demo.installation DEST --layout=real [--seed N]
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
import struct
import sys
import tarfile
import time
import zlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from . import parse_args
from .databases import write_databases
from .real_layout import make_real_layout
from .tree import (BASE_TIME, DAY, EN_WORDS, LEVELS, MANY_FILES, MANY_PER_DIR, ROTATED_DAYS,
                   SCALE_BYTES, SCALES, SHARES, STATUSES, TASK_TYPES, Pools, Tree, clf, date_text,
                   iso)

# -- plain files (the databases are ``databases``'s; scales, pools and ``Tree`` ``tree``'s) ---------------------------------------------------------------

BACKUP_SECTION = {"enabled": True, "schedule": "0 2 * * *", "retention": 30, "maxBackups": 10,
                  "storage": {"type": "local", "path": "./backups", "compress": True, "encrypt": False},
                  "targets": {t: True for t in ("config", "database", "logs", "agents", "state",
                                                "security")}}


def _config(tree: Tree, rng: random.Random, pools: Pools) -> None:
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


def _certs(tree: Tree, rng: random.Random) -> None:
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


def _log_lines(rng: random.Random, pools: Pools, nbytes: int, component: str,
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
                     f'[{clf(start + k * step)}] "{route} HTTP/1.1" '
                     f'{(200, 200, 200, 200, 200, 304, 401, 500)[(r >> 32) & 7]} {(r >> 35) & 0xFFFF} "-" '
                     f'"{agents[((r >> 51) & 3) % 3]}" {((r >> 53) & 2047) / 1000:.3f}\n')
    return "".join(lines)


def _logs(tree: Tree, rng: random.Random, pools: Pools, budget, days: int) -> None:
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
        tree.write(f"logs/poppo-{date_text(day // DAY)}.log.gz", packed, t=day)
    archived = max(2, days // 2)
    for n in range(archived):
        day = BASE_TIME - (40 + n) * DAY
        name = f"poppo-{date_text(day // DAY)}.log"
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


def _agents(tree: Tree, rng: random.Random, pools: Pools, budget) -> None:
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
        tree.write(f"data/ccla/archives/ccla-archive-{date_text(day // DAY)}.tar.gz",
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


def _state(tree: Tree, rng: random.Random, pools: Pools, budget) -> None:
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


def _many(tree: Tree, rng: random.Random, pools: Pools) -> None:
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
    tree = Tree(root, seed)

    def budget(part: str) -> int:
        return int(SCALE_BYTES[scale] * SHARES[part])

    # One stream per part, so a change in one part leaves the others' bytes alone.
    pools = Pools(random.Random(f"{seed}:pools"))
    _config(tree, random.Random(f"{seed}:config"), pools)
    _certs(tree, random.Random(f"{seed}:certs"))
    write_databases(tree, seed, budget, pools)
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
  installation DEST --layout=real [--seed=N]
  installation (-h | --help)

Options:
  --scale=SCALE  tiny, small, medium or manyfiles [default: tiny].
  --layout=real  The upstream repository's layout and shipped config (demo/real_layout.py).
  --seed=N       Random seed; same seed, same bytes [default: 0].
"""


def main(argv: list[str] | None = None) -> int:
    """``python -m poppoarc.demo.installation DEST [--scale=S] [--seed=N]``."""
    args, seed = parse_args(USAGE, argv, lambda a: int(a["--seed"]), "--seed must be an integer")
    if args is None:
        return seed
    started = time.monotonic()
    try:
        if args["--layout"] not in (None, "real"):
            raise ValueError(f"unknown layout {args['--layout']!r}; expected real")
        summary = make_real_layout(args["DEST"], seed) if args["--layout"] \
            else make_installation(args["DEST"], args["--scale"], seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args['DEST']}: scale={summary['scale']} seed={seed} files={summary['files']} "
          f"bytes={summary['bytes']} ({summary['bytes'] / 1e6:.1f} MB) in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
