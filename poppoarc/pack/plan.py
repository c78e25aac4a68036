"""What a pack will do, decided from the configuration, the options and the walk before
its body is written: whether it is an incremental, what it seals and at which
compression level, how much room its head needs.  Pure but for the head size (which
reads the live databases' schemas)."""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..config_schema import INCREMENTAL
from ..format import head as headfmt
from ..format.chains import NORMAL_TYPES
from ..format.manifest import MAX_WARNING_CHARS, MAX_WARNINGS_IN_HEAD
from ..format.writer import DEFAULT_LEVEL
from ..options import PackOptions
from ..policy.schedule import parse_schedule
from ..snapshot import sqlite as sqlite_snapshot

MAX_REFERENCES = 500        # certificate references a manifest records


def incremental_settings(settings: Settings) -> tuple[bool, int]:
    """(incremental by default, maxIncrementals) from ``backup.incremental``."""
    section = settings.backup.get("incremental", {})
    return bool(section.get("enabled", False)), int(section.get("maxIncrementals", 7))


def chained(settings: Settings, options: PackOptions) -> bool:
    """This archive is an incremental (if a parent is found): asked for, or configured
    and not refused with ``--full``.  A safety archive never is (readers reject one:
    spec §12.1)."""
    by_default, _ = incremental_settings(settings)
    wanted = by_default if options.incremental is None else options.incremental
    return wanted and options.archive_type != "pre-restore" and not named_full(settings, options)


def named_full(settings: Settings, options: PackOptions) -> bool:
    """A named archive (``pack --name``) is what people carry to another machine, so it
    restores alone: full, though incrementals are configured, unless ``--incremental``
    asks otherwise.  (A scheduled run's name is its schedule entry's: not this.)"""
    by_default, _ = incremental_settings(settings)
    return (options.archive_type == "manual" and bool(options.name)
            and options.incremental is None and by_default)


def in_chains(settings: Settings, options: PackOptions) -> bool:
    """Chains are in use: incrementals asked for (or ``--full``, which starts one),
    configured or scheduled.  Only then do database records carry the page digests a
    delta needs."""
    if options.archive_type == "pre-restore":
        return False
    by_default, _ = incremental_settings(settings)
    return options.incremental is not None or by_default or schedules_incrementals(settings)


def keeps_facts(settings: Settings, options: PackOptions) -> bool:
    """Whether this pack writes the facts cache its next incremental reads
    (``archives/facts.py``): an archive that can be a parent, in a chain, not sealed whole
    (whose index only its key opens; its cache would hold its paths in clear)."""
    return (in_chains(settings, options) and options.archive_type in NORMAL_TYPES
            and not encrypts(settings, options))


def schedules_incrementals(settings: Settings) -> bool:
    """True when a ``backup.schedule`` entry makes incrementals (its fulls are their parents)."""
    schedule = parse_schedule(settings.backup)
    return schedule is not None and any(e.type == INCREMENTAL for e in schedule.entries)


def encrypts(settings: Settings, options: PackOptions) -> bool:
    """The whole archive is sealed: ``--encrypt`` or ``backup.storage.encrypt``."""
    return options.encrypt or bool(settings.backup.get("storage", {}).get("encrypt"))


def scope(encrypt: bool, can_encrypt: bool, has_secrets: bool) -> str | None:
    """What is sealed: "archive" (everything), "secrets" (the secret files, whenever a key
    can seal them), or None."""
    return "archive" if encrypt else "secrets" if can_encrypt and has_secrets else None


def level(sealed_scope: str | None) -> int:
    """The zstd level of the archive's frames.  Sealed content is compressed before
    encryption; the outer frames then only hold tar framing and ciphertext, where a fast
    level is enough."""
    return 1 if sealed_scope == "archive" else DEFAULT_LEVEL


def head_size(root: Path, databases: list[str], references: list[dict]) -> int:
    """Reserve room for the manifest before the body is written.

    The variable parts are the databases' table lists (estimated from each
    live schema now), certificate references and the capped warnings.
    """
    estimate = 8192 + MAX_WARNINGS_IN_HEAD * (MAX_WARNING_CHARS + 8)
    for path in databases:
        names = sqlite_snapshot.table_names(root / path)
        estimate += 512 + sum(len(n.encode()) + 32 for n in names) + 1024
    estimate += sum(len(headfmt.canonical_json(r)) + 8 for r in references)
    rounded = -(-estimate // 4096) * 4096
    return min(max(rounded, headfmt.MIN_HEAD_SIZE), headfmt.MAX_HEAD_SIZE)
