"""Every key of the ``backup`` section: type, default, example, meaning.

This table is the one source for validating ``config/config.json`` (unknown
keys and wrong types are errors naming the file, line and key) and for the
key reference in docs/configuration.md, which a test checks against
``python -m poppoarc.config_schema`` (it prints the table).  A feature that
reads a new key adds one ``Key`` here.

Types are JSON types: ``boolean``, ``integer``, ``string``, ``object``,
``strings`` (a list of strings) and ``size`` (bytes as an integer, or a
string such as ``"5GB"`` / ``"512MiB"``).  A key whose name is ``*`` stands
for any name chosen by the operator; an ``object`` with no keys listed below
it is free-form (read by the feature that owns it).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import ConfigError
from .format.order import TARGETS, is_custom_name


@dataclass(frozen=True)
class Key:
    path: str                   # dotted, below "backup."
    types: tuple[str, ...]
    default: str                # as shown in docs/configuration.md
    example: str                # JSON text
    meaning: str


KEYS: tuple[Key, ...] = (
    Key("enabled", ("boolean",), "`true`", "true",
        "`false` turns scheduled backups off (manual `pack` still works)"),
    Key("schedule", ("string", "object"), "none", '"0 2 * * *"',
        "when scheduled backups run: a cron expression, or named schedules (below); "
        "`doctor` compares the newest backup's age with it"),
    Key("schedule.*", ("object",), "—", '{"cron": "0 3 * * 0", "type": "full"}',
        "one named schedule"),
    Key("schedule.*.cron", ("string",), "—", '"0 3 * * 0"', "its cron expression"),
    Key("schedule.*.type", ("string",), '`"full"`', '"incremental"',
        "`full` or `incremental` (a backup), `verify` (every archive not verified since it "
        "was written) or `drill` (a restore drill of the newest archive)"),
    Key("timezone", ("string",), "the system's", '"Asia/Tokyo"', "time zone of the schedule"),
    Key("retention", ("integer",), "none (keep all)", "30", "days to keep archives"),
    Key("maxBackups", ("integer",), "none", "10", "most archives to keep"),
    Key("keep", ("object",), "none", '{"daily": 7}', "retention buckets, as restic's --keep-* "
        "(read by `prune`; see Retention)"),
    Key("keep.daily", ("integer",), "none", "7", "keep the newest archive of each of the N latest days"),
    Key("keep.weekly", ("integer",), "none", "4", "… of each of the N latest weeks"),
    Key("keep.monthly", ("integer",), "none", "6", "… of each of the N latest months"),
    Key("keep.damaged", ("boolean",), "`true`", "false", "`false` lets prune delete damaged archives"),
    Key("keep.preRestore", ("object",), "`{}`", '{"last": 3, "days": 7}',
        "the rule for pre-restore safety archives"),
    Key("keep.preRestore.last", ("integer",), "`3`", "3", "keep the newest N"),
    Key("keep.preRestore.days", ("integer",), "`7`", "7", "and every one younger than N days"),
    Key("storage", ("object",), "`{}`", '{"path": "/var/backups/poppo"}', "where archives go"),
    Key("storage.type", ("string",), '`"local"`', '"local"', "kind of store"),
    Key("storage.path", ("string",), '`"./backups"` (relative to the root)', '"./backups"',
        "the store directory"),
    Key("storage.compress", ("boolean",), "`true`", "true",
        "archives are always zstd-compressed; accepted for compatibility"),
    Key("storage.encrypt", ("boolean",), "`false`", "true",
        "encrypt whole archives (like `pack --encrypt`); the key comes from `POPPO_BACKUP_KEY`, "
        "`storage.keyFile` or `storage.recipients`"),
    Key("storage.recipients", ("strings",), "`[]`", '["x25519:…"]',
        "X25519 public keys (`poppoarc keygen --encryption`) archives are encrypted to"),
    Key("storage.identityFile", ("string",), "`KEYDIR/encryption.key` if present",
        '"/root/offline/encryption.key"',
        "X25519 identity used to decrypt (`POPPO_BACKUP_IDENTITY` also works)"),
    Key("storage.keyFile", ("string",), "none", '"/etc/poppoarc/backup.key"',
        "file holding the encryption passphrase (mode 0600); `POPPO_BACKUP_KEY` wins"),
    Key("storage.encryptionKey", ("string",), "none", '"…"',
        "the key itself; discouraged (`doctor` warns): the config file is backed up"),
    Key("storage.minFree", ("size",), "`0`", '"5GB"',
        "free space to keep in the store after the next archive (`doctor`)"),
    Key("storage.bucket", ("string",), "none", '"poppo-backups"', "S3 bucket (S3 store)"),
    Key("storage.prefix", ("string",), '`""`', '"poppo/prod"', "key prefix in the bucket (S3 store)"),
    Key("storage.endpointUrl", ("string",), "AWS, or `AWS_ENDPOINT_URL`", '"http://minio:9000"',
        "S3-compatible endpoint (MinIO, Ceph RGW, R2, Wasabi)"),
    Key("storage.profile", ("string",), "the AWS chain's", '"backups"', "AWS profile name (S3 store)"),
    Key("storage.addressingStyle", ("string",), '`"auto"`', '"path"',
        "`auto`, `path` or `virtual` bucket addressing (S3 store)"),
    Key("storage.sessionToken", ("string",), "none", '"…"', "S3 credentials (S3 store; warned)"),
    Key("storage.replicas", ("strings",), "`[]`", '["/mnt/offsite/poppo", "s3://poppo-dr/prod"]',
        "off-site copies: after every pack the new archive and what the replica lacks are "
        "copied there and verified (see Replicas in Operations)"),
    Key("storage.staleUploadHours", ("integer",), "`24`", "24",
        "multipart uploads poppoarc started and left older than this are aborted"),
    Key("storage.partSizeMiB", ("integer",), "`8`", "16", "multipart part size, 5 to 5120 (S3 store)"),
    Key("storage.region", ("string",), "none", '"ap-northeast-1"', "S3 region (S3 store)"),
    Key("storage.accessKeyId", ("string",), "none", '"AKIA…"', "S3 credentials (S3 store)"),
    Key("storage.secretAccessKey", ("string",), "none", '"…"', "S3 credentials (S3 store)"),
    Key("targets", ("object",), "all `true`", '{"logs": false}', "which targets `pack` takes"),
    Key("targets.*", ("boolean", "object"), "`true`", '{"exclude": ["state/tmp/**"]}',
        "`false` skips the target unless named with `--targets`; an object changes it; a "
        "name beyond the six built-in ones with `include` is a custom target ([targets.md]"
        "(targets.md#custom-targets))"),
    Key("targets.*.enabled", ("boolean",), "`true`", "false", "as `true`/`false` above"),
    Key("targets.*.include", ("strings",), "the built-in globs", '["config/**"]',
        "replaces the target's include globs (`*`, `?` in one segment, `**` any depth); "
        "a custom target's paths"),
    Key("targets.*.exclude", ("strings",), "`[]`", '["config/cache/**"]', "adds exclusions"),
    Key("exclude", ("strings",), "`[]`", '["*.tmp", "node_modules"]',
        "left out of every target: a pattern without `/` names a file or directory at any "
        "depth (a directory with everything in it), one with `/` a path from the root"),
    Key("databaseCheck", ("string",), '`"quick"`', '"full"',
        "`quick`: `PRAGMA quick_check` on each database snapshot at pack time (every page and "
        "b-tree); `full`: `PRAGMA integrity_check` (also matches each index with its table, "
        "about 4× the cost). `verify` always runs `integrity_check`"),
    Key("parallel", ("string",), '`"auto"`', '"serial"',
        "where pack's and restore's speed-ups run: `two-process` (a helper process and "
        "threads), `serial` (this process only; the same archives), `auto` (two-process "
        "when this process may use two CPUs or more: affinity and cgroup quota); "
        "`--parallel` and `POPPOARC_PARALLEL` come first"),
    Key("drill", ("object",), "`{}`", '{"maxAgeDays": 7}', "restore drills (see Operations)"),
    Key("drill.maxAgeDays", ("integer",), "`30`", "7",
        "`doctor` warns when the last successful `poppoarc drill` is older than this (and, "
        "when set, when none has succeeded yet)"),
    Key("drill.scratchDir", ("string",), "the store directory", '"/var/tmp/poppo-drills"',
        "where a drill's scratch root is made (`drill --to` comes first); never inside the "
        "installation"),
    Key("metrics", ("object",), "`{}`", '{"file": "/var/lib/node_exporter/poppoarc.prom"}',
        "metrics for Prometheus (see Operations)"),
    Key("metrics.file", ("string",), "none", '"/var/lib/node_exporter/poppoarc.prom"',
        "after every pack, verify, drill and prune, the Prometheus text format is written "
        "here atomically (node_exporter's textfile collector); relative to the root"),
    Key("incremental", ("object",), "`{}`", '{"enabled": true}', "incremental backups"),
    Key("incremental.enabled", ("boolean",), "`false`", "true", "take incremental backups"),
    Key("incremental.maxIncrementals", ("integer",), "`7`", "7",
        "incrementals before the next full backup"),
    Key("environment", ("object",), "`{}`", '{"prefixes": ["POPPO_"]}',
        "what `environment.json` records"),
    Key("environment.prefixes", ("strings",), '`["POPPO_", "CLAUDE_", "GITHUB_"]`',
        '["POPPO_", "NODE_"]', "variables recorded in `environment.json`"),
    Key("environment.maskPatterns", ("strings",), '`["TOKEN", "KEY", "SECRET", "PASSWORD"]`',
        '["TOKEN", "PASS"]', "a variable whose name contains one of these is masked"),
    Key("signing", ("object",), "`{}`", '{"trustedKeys": []}', "signing keys and trust"),
    Key("signing.trustedKeys", ("strings",), "`[]`", '["ed25519:…"]',
        "extra public keys whose archives `verify` accepts"),
    Key("signing.keyDir", ("string",), "`$POPPOARC_HOME`, else `~/.config/poppoarc`",
        '"/etc/poppoarc"', "where the signing key pair lives"),
    Key("security", ("object",), "`{}`", "{}", "reserved for security settings"),
    Key("hooks", ("object",), "`{}`", '{"beforeRestore": "systemctl stop poppo"}',
        "shell commands run around a restore (in the root, with `POPPO_ROOT`, "
        "`POPPOARC_ARCHIVE`, `POPPOARC_PHASE`)"),
    Key("hooks.beforeRestore", ("string",), "none", '"systemctl stop poppo"',
        "must exit 0, or nothing is restored"),
    Key("hooks.afterRestore", ("string",), "none", '"systemctl start poppo"',
        "run after the swap, also after a rollback or a failed restore "
        "(`POPPOARC_OUTCOME`); a failure is a warning"),
    Key("restore", ("object",), "`{}`", '{"healthCheck": "npm run health"}', "restore settings"),
    Key("restore.healthCheck", ("string",), "none", '"npm run health"',
        "run after the swap; a failure puts the old tree back"),
    Key("restore.hookTimeout", ("integer",), "`600`", "120", "seconds a hook may run, at least 1"),
    Key("notifications", ("object",), "`{}`", '{"on": ["failure"]}',
        "what `schedule` reports after each run (never fatal; no secrets in the payload)"),
    Key("notifications.on", ("strings",), '`["failure"]`', '["success", "failure"]',
        "which outcomes notify"),
    Key("notifications.command", ("string", "strings"), "none", '"logger -t poppoarc"',
        "shell command (or argv list) run with the JSON payload on stdin"),
    Key("notifications.url", ("string",), "none", '"https://hooks.example.com/poppoarc"',
        "URL the JSON payload is POSTed to"),
    Key("notifications.heartbeatUrl", ("string",), "none", '"https://hc-ping.com/uuid"',
        "URL pinged (GET) after each success, for an outside dead-man's switch"),
    Key("notifications.timeoutSeconds", ("integer",), "`10`", "10", "per notification"),
)

_BY_PATH = {key.path: key for key in KEYS}
_NAMED = {"targets.*": TARGETS}                 # wildcard keys limited to known names
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*\Z")
_UNITS = {None: 1, "B": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def parse_size(value: int | str) -> int:
    """Bytes from an integer or a string such as ``"5GB"``; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(value)
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def _type_ok(kind: str, value: object) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "size":
        try:
            parse_size(value)
        except ValueError:
            return False
        return True
    raise AssertionError(kind)


_TYPE_WORDS = {"boolean": "true/false", "integer": "an integer", "string": "a string",
               "object": "an object", "strings": "a list of strings",
               "size": "a size (bytes, or a string such as \"5GB\")"}


def _children(path: str) -> dict[str, Key]:
    prefix = path + "." if path else ""
    return {k.path[len(prefix):]: k for k in KEYS
            if k.path.startswith(prefix) and "." not in k.path[len(prefix):]}


def validate(backup: dict, config_path: Path, text: str | None = None,
             also_top: tuple[str, ...] = ()) -> None:
    """Raise ConfigError for the first unknown key or wrong type in ``backup``;
    ``also_top``: other top-level names to suggest (the legacy ones)."""
    _walk(backup, "", "backup", config_path, text, also_top)


def _walk(node: dict, path: str, shown: str, config_path: Path, text: str | None,
          also_top: tuple[str, ...] = ()) -> None:
    children = _children(path)
    for name, value in node.items():
        key = children.get(name) or children.get("*")
        full = f"{shown}.{name}"
        where = _locate(config_path, text, name)
        if key is None:
            known = [c for c in children if c != "*"] + (list(also_top) if not path else [])
            hint = difflib.get_close_matches(name, known, n=1)
            raise ConfigError(f"unknown key '{full}'"
                              + (f" (did you mean '{hint[0]}'?)" if hint else ""), path=where)
        allowed = _NAMED.get(key.path)
        if allowed is not None and name not in allowed and not _custom_target(key, name, value):
            hint = difflib.get_close_matches(name, allowed, n=1)
            raise ConfigError(f"unknown key '{full}' (known: {', '.join(allowed)}; a custom "
                              "target is an object with 'include' and a name of lowercase "
                              "letters, digits, '-' and '_')"
                              + (f"; did you mean '{hint[0]}'?" if hint else ""), path=where)
        if not any(_type_ok(kind, value) for kind in key.types):
            words = " or ".join(_TYPE_WORDS[kind] for kind in key.types)
            raise ConfigError(f"'{full}' must be {words}", path=where)
        if isinstance(value, dict) and _children(key.path):
            _walk(value, key.path, full, config_path, text)


def _custom_target(key: Key, name: str, value: object) -> bool:
    """``backup.targets.NAME`` for a NAME beyond the built-in ones: a custom target, an
    object with ``include`` (its other checks: snapshot.catalogue.build_catalogue)."""
    return key.path == "targets.*" and is_custom_name(name) and isinstance(value, dict) \
        and "include" in value


def _locate(config_path: Path, text: str | None, name: str) -> str:
    """``file:line:column`` of the first ``"name":`` in the text, else the file."""
    if text:
        match = re.search(r'"' + re.escape(json.dumps(name)[1:-1]) + r'"\s*:', text)
        if match:
            line = text.count("\n", 0, match.start()) + 1
            column = match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1
            return f"{config_path}:{line}:{column}"
    return str(config_path)


def reference_table() -> str:
    """The key reference of docs/configuration.md, as Markdown."""
    lines = ["| key | type | default | example | meaning |", "| --- | --- | --- | --- | --- |"]
    for key in KEYS:
        types = " or ".join(key.types)
        example = key.example.replace("|", "\\|")
        lines.append(f"| `backup.{key.path}` | {types} | {key.default} | `{example}` | "
                     f"{key.meaning} |")
    return "\n".join(lines)


# -- values: what the key table cannot express -------------------------------------

FULL, INCREMENTAL = "full", "incremental"
RUN_TYPES = (FULL, INCREMENTAL)                 # what a scheduled backup makes
VERIFY, DRILL = "verify", "drill"
ENTRY_TYPES = RUN_TYPES + (VERIFY, DRILL)       # what a schedule entry may run
MACROS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
          "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
          "@hourly": "0 * * * *"}


def cron_problem(expression: str) -> str | None:
    """Why a cron expression is not accepted, or None.  Five fields, as in crontab(5)."""
    expanded = MACROS.get(expression.strip(), expression)
    if len(expanded.split()) != 5:
        return "a cron expression has five fields: minute hour day-of-month month day-of-week"
    try:
        CronSim(expanded.upper(), datetime(2000, 1, 1))
    except CronSimError as exc:
        return str(exc).lower()
    return None


def local_timezone() -> tuple[tzinfo, str]:
    """The machine's zone as a ZoneInfo (DST-aware), not a fixed offset."""
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "/zoneinfo/"
        if marker in target:
            name = target.split(marker, 1)[1]
            return ZoneInfo(name), name
        with open("/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime"), "localtime"
    except (OSError, ZoneInfoNotFoundError, ValueError):
        return timezone.utc, "UTC"


def resolve_timezone(backup: dict) -> tuple[tzinfo, str]:
    name = backup.get("timezone")
    if not name:
        return local_timezone()
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"'backup.timezone': unknown time zone {name!r}") from None


def _check_object(value: dict, key: str, schema: dict, config_path: Path) -> None:
    """Known nested keys and their types; an unknown key is named in full."""
    for name, item in value.items():
        if name not in schema:
            raise ConfigError(f"unknown key '{key}.{name}'", path=config_path)
        check = schema[name]
        problem = check(item)
        if problem:
            raise ConfigError(f"'{key}.{name}' must be {problem}", path=config_path)


def _int_at_least(low: int, high: int | None = None):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < low \
                or (high is not None and value > high):
            return f"an integer from {low}" + (f" to {high}" if high is not None else " up")
        return None
    return check


def _http_url(value):
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        return "an http:// or https:// URL"
    return None


def _command(value):
    if isinstance(value, str) and value.strip():
        return None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return None
    return "a shell command string or a non-empty list of strings"


def _events(value):
    if not isinstance(value, list) or not all(v in ("success", "failure") for v in value):
        return 'a list of "success" and/or "failure"'
    return None


def _boolean(value):
    return None if isinstance(value, bool) else "true/false"


_KEEP_SCHEMA = {"daily": _int_at_least(0), "weekly": _int_at_least(0),
                "monthly": _int_at_least(0), "damaged": _boolean,
                "preRestore": lambda v: None if isinstance(v, dict) else "an object"}
_PRE_RESTORE_SCHEMA = {"last": _int_at_least(0), "days": _int_at_least(0)}
_NOTIFY_SCHEMA = {"command": _command, "url": _http_url, "heartbeatUrl": _http_url,
                  "on": _events, "timeoutSeconds": _int_at_least(1, 300)}


def check_values(backup: dict, config_path: Path) -> None:
    """What the key table cannot say about schedule, retention and notification keys:
    cron syntax, run types, the time zone, ranges (docs/configuration.md)."""
    if backup.get("parallel", "auto") not in ("auto", "serial", "two-process"):
        raise ConfigError("'backup.parallel' must be auto, two-process or serial",
                          path=config_path)
    for key in ("retention", "maxBackups"):
        if key in backup and _int_at_least(1)(backup[key]):
            raise ConfigError(f"'backup.{key}' must be {_int_at_least(1)(backup[key])}",
                              path=config_path)
    age = backup.get("drill", {}).get("maxAgeDays")
    if age is not None and _int_at_least(1)(age):
        raise ConfigError(f"'backup.drill.maxAgeDays' must be {_int_at_least(1)(age)}",
                          path=config_path)
    timeout = backup.get("restore", {}).get("hookTimeout")
    if timeout is not None and _int_at_least(1)(timeout):         # 0 killed every hook at once
        raise ConfigError(f"'backup.restore.hookTimeout' must be {_int_at_least(1)(timeout)}",
                          path=config_path)
    keep = backup.get("keep", {})
    _check_object(keep, "backup.keep", _KEEP_SCHEMA, config_path)
    _check_object(keep.get("preRestore", {}), "backup.keep.preRestore", _PRE_RESTORE_SCHEMA,
                  config_path)
    _check_object(backup.get("notifications", {}), "backup.notifications", _NOTIFY_SCHEMA,
                  config_path)
    if "timezone" in backup:
        try:
            resolve_timezone(backup)
        except ConfigError as exc:
            raise ConfigError(str(exc), path=config_path) from None
    schedule = backup.get("schedule")
    if isinstance(schedule, str):
        problem = cron_problem(schedule)
        if problem:
            raise ConfigError(f"'backup.schedule': {schedule!r}: {problem}", path=config_path)
    elif isinstance(schedule, dict):
        if not schedule:
            raise ConfigError("'backup.schedule' must name at least one schedule",
                              path=config_path)
        for name, spec in schedule.items():
            key = f"backup.schedule.{name}"
            if not isinstance(spec, dict):
                raise ConfigError(f"'{key}' must be an object with 'cron' and 'type'",
                                  path=config_path)
            for item in spec:
                if item not in ("cron", "type"):
                    raise ConfigError(f"unknown key '{key}.{item}'", path=config_path)
            if not isinstance(spec.get("cron"), str):
                raise ConfigError(f"'{key}.cron' must be a cron expression string",
                                  path=config_path)
            problem = cron_problem(spec["cron"])
            if problem:
                raise ConfigError(f"'{key}.cron': {spec['cron']!r}: {problem}", path=config_path)
            if spec.get("type", "full") not in ENTRY_TYPES:
                raise ConfigError(f"'{key}.type' must be \"full\", \"incremental\", "
                                  f"\"verify\" or \"drill\"", path=config_path)


if __name__ == "__main__":
    print(reference_table())
