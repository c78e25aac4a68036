"""The types and ranges of the manifest's descriptive fields (spec/FORMAT.md §5.2, §5.3).

A validly signed manifest is still input: a signer's key may be held by an attacker, and
every command that shows or uses a manifest (list, inspect, the restore plan, doctor)
reads these fields.  ``field_problem`` says what is wrong with one of them, or None, so
that no command meets a list where it expects a number.  The same rules apply to the
fields an encrypted archive seals into its index header (§11.4).
"""

from __future__ import annotations

import re

from .entry import SHA256_HEX, is_int
from .order import TARGETS, is_custom_name

MAX_TEXT = 4096                 # a label, host, root, version or certificate detail
MAX_TABLES = 200                # per database, then "tables_truncated" (§5.2)
MAX_TABLE_NAME = 1024
DATABASE_KEYS = {"path", "size", "sha256", "page_size", "user_version", "tables"}
DATABASE_OPTIONAL = {"check", "tables_truncated"}
DATABASE_CHECKS = ("quick_check", "integrity_check")
TARGET_KEYS = {"files", "size", "entries", "stored"}
CERTIFICATE_KEYS = {"path", "kind"}
CERTIFICATE_OPTIONAL = {"sha256", "subject", "not_after", "link", "error"}
CERTIFICATE_KINDS = ("certificate", "private-key", "unknown", "unreadable")
COMPRESSION_KEYS = {"alg", "level", "window_log_max", "checksum"}
TIMESTAMP_PATTERN = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")


def _text(value: object, optional: bool = True) -> bool:
    return (value is None and optional) or (isinstance(value, str) and len(value) <= MAX_TEXT)


MAX_CUSTOM_TARGETS = 32
MAX_AREA_GLOBS = 64
MAX_AREA_GLOB = 4096


def _areas_problem(manifest: dict) -> str | None:
    """``areas`` (§5.2): absent, or each custom target of ``targets`` with its include
    globs, and nothing else.  (Whether a glob may be restored is §13: restore/safety.py.)"""
    if "areas" not in manifest:
        return None
    areas = manifest["areas"]
    if not isinstance(areas, dict) or not 0 < len(areas) <= MAX_CUSTOM_TARGETS:
        return "areas is not an object of 1 to 32 custom targets"
    for name, include in areas.items():
        if not is_custom_name(name):
            return f"areas names {name!r}, which is not a custom target's name"
        if not (isinstance(include, list) and 0 < len(include) <= MAX_AREA_GLOBS and all(
                isinstance(g, str) and 0 < len(g) <= MAX_AREA_GLOB for g in include)):
            return f"areas.{name} is not a list of 1 to 64 globs"
    return None


def _targets_problem(targets: object, areas: dict) -> str | None:
    if not isinstance(targets, dict):
        return "targets is not an object"
    custom = {name for name in targets if name not in TARGETS}
    if custom != set(areas):
        return (f"unknown target {sorted(custom - set(areas))[0]!r}" if custom - set(areas)
                else f"areas names {sorted(set(areas) - custom)[0]!r}, which targets does not list")
    for name, facts in targets.items():
        if not isinstance(facts, dict) or set(facts) != TARGET_KEYS \
                or not all(is_int(facts[k]) for k in ("files", "size", "entries")):
            return f"targets.{name} is malformed"
        stored = facts["stored"]
        if not (isinstance(stored, list) and len(stored) == 2 and all(map(is_int, stored))):
            return f"targets.{name}.stored is not [offset, length]"
    return None


def _database_problem(record: object) -> str | None:
    if not isinstance(record, dict) or not DATABASE_KEYS <= set(record) \
            or not set(record) <= DATABASE_KEYS | DATABASE_OPTIONAL:
        return "a databases entry has wrong keys"
    if not isinstance(record["path"], str) or not is_int(record["size"]) \
            or not is_int(record["page_size"]) or not is_int(record["user_version"]):
        return f"databases entry {record['path']!r} has a malformed path, size or version"
    if record["sha256"] is not None and not (isinstance(record["sha256"], str)
                                             and SHA256_HEX.match(record["sha256"])):
        return f"databases entry {record['path']!r} has a malformed sha256"
    tables = record["tables"]
    if not isinstance(tables, dict) or len(tables) > MAX_TABLES or not all(
            isinstance(name, str) and len(name) <= MAX_TABLE_NAME and is_int(rows)
            for name, rows in tables.items()):
        return f"databases entry {record['path']!r} has malformed tables"
    if "check" in record and record["check"] not in DATABASE_CHECKS:
        return f"databases entry {record['path']!r} names an unknown check"
    if "tables_truncated" in record and record["tables_truncated"] is not True:
        return f"databases entry {record['path']!r}: tables_truncated is not true"
    return None


def _certificate_problem(record: object) -> str | None:
    if not isinstance(record, dict) or not CERTIFICATE_KEYS <= set(record) \
            or not set(record) <= CERTIFICATE_KEYS | CERTIFICATE_OPTIONAL \
            or record["kind"] not in CERTIFICATE_KINDS \
            or not all(_text(record[k], optional=False) for k in record if k != "kind"):
        return "a certificates entry is malformed"
    return None


def sealable_problem(fields: dict) -> str | None:
    """The fields an encrypted archive may move into its index header (§11.4)."""
    if not (_text(fields["host"]) and _text(fields["root"])):
        return "host or root is not a string"
    for name, check in (("databases", _database_problem), ("certificates", _certificate_problem)):
        items = fields[name]
        if not isinstance(items, list):
            return f"{name} is not an array"
        for item in items:
            problem = check(item)
            if problem:
                return problem
    if isinstance(fields["databases"], list):
        paths = [d["path"] for d in fields["databases"]]
        if len(paths) != len(set(paths)):
            return "a database is listed twice"
    warnings = fields["warnings"]
    if not isinstance(warnings, list) or not all(isinstance(w, str) for w in warnings):
        return "warnings is not an array of strings"
    return None


def field_problem(manifest: dict) -> str | None:
    """What is wrong with the manifest's descriptive fields, or None (the caller
    checked the key set, id, type, parent, layout and encryption)."""
    timestamp = manifest["timestamp"]
    if not isinstance(timestamp, str) or not TIMESTAMP_PATTERN.match(timestamp):
        return "timestamp is malformed"
    tool = manifest["tool"]
    if not (isinstance(tool, dict) and set(tool) == {"name", "version"}
            and _text(tool["name"], False) and _text(tool["version"], False)):
        return "tool is malformed"
    if not (_text(manifest["version"]) and _text(manifest["name"])):
        return "version or name is not a string"
    problem = _areas_problem(manifest) or _targets_problem(
        manifest["targets"], manifest.get("areas") or {}) or sealable_problem(manifest)
    if problem:
        return problem
    for key in ("warnings_total", "duration", "files"):
        if not is_int(manifest[key]):
            return f"{key} is not a non-negative integer"
    compression = manifest["compression"]
    if not (isinstance(compression, dict) and set(compression) == COMPRESSION_KEYS
            and compression["alg"] == "zstd" and compression["window_log_max"] == 27
            and compression["checksum"] is True and type(compression["level"]) is int):
        return "compression is malformed"
    checksum = manifest["checksum"]
    if not (isinstance(checksum, str) and checksum.startswith("sha256:")
            and SHA256_HEX.match(checksum[7:])):
        return "checksum is malformed"
    if not isinstance(manifest["layout"]["index_sha256"], str) \
            or not SHA256_HEX.match(manifest["layout"]["index_sha256"]):
        return "layout.index_sha256 is malformed"
    return None
