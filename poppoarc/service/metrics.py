"""Metrics for the monitoring PoppoBuilder already runs: the Prometheus text format
(exposition format 0.0.4), for node_exporter's textfile collector.

``exposition(kinds, stores)`` is pure: the runs record (``store.runs``) and each store's
facts in, the text out.  ``publish(settings)`` writes it to ``backup.metrics.file``
atomically (a temporary file renamed over it, as the textfile collector requires: it may
read at any moment), after every pack, verify, drill and prune; ``poppoarc metrics``
prints the same text.

A kind that never succeeded (or never failed) has the time 0: "no successful backup for
26 hours" then fires for an installation that never made one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from ..errors import PoppoarcError
from ..fs import write_file_durably
from ..store import open_store, runs

PREFIX = "poppoarc_"


@dataclass(frozen=True)
class StoreFacts:
    """What a store holds, from its listing alone (no archive is opened)."""

    url: str
    role: str                   # primary | replica
    archives: int | None        # None: the store could not be listed
    protected: int | None
    bytes: int | None
    lag: int | None = None      # a replica: archives of the primary store it lacks


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    samples: tuple[tuple[dict, float], ...]


def escape(value: str) -> str:
    """A label value as the text format writes it."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if float(value).is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(float(value))


def families(kinds: dict[str, dict], stores: list[StoreFacts]) -> list[Family]:
    """Every metric, with its samples (pure)."""
    def per_kind(key: str):
        return tuple(({"kind": kind}, runs.number(kinds.get(kind, {}), key) or 0)
                     for kind in runs.KINDS)

    def per_store(attribute: str):
        return tuple(({"store": s.url, "role": s.role}, getattr(s, attribute))
                     for s in stores if getattr(s, attribute) is not None)

    last_ok = tuple(({"kind": kind}, 1 if kinds.get(kind, {}).get("last_ok") is True else 0)
                    for kind in runs.KINDS if kind in kinds)
    pack = kinds.get("pack", {})
    size = runs.number(pack, "size")
    return [
        Family("last_success_timestamp_seconds",
               "Unix time of the last successful run of each kind (0: never).",
               per_kind("last_success")),
        Family("last_failure_timestamp_seconds",
               "Unix time of the last failed run of each kind (0: never).",
               per_kind("last_failure")),
        Family("last_run_success", "1 if the last run of this kind succeeded, else 0.",
               last_ok),
        Family("last_duration_seconds", "How long the last run of each kind took.",
               tuple((labels, value) for labels, value in per_kind("duration_seconds")
                     if value or kinds.get(labels["kind"]))),
        Family("last_archive_size_bytes", "Size of the archive the last successful pack wrote.",
               (({}, size),) if size is not None else ()),
        Family("store_up", "1 if the store could be listed, else 0.",
               tuple(({"store": s.url, "role": s.role}, 0 if s.archives is None else 1)
                     for s in stores)),
        Family("archives", "Archives in each store.", per_store("archives")),
        Family("protected_archives", "Protected archives in each store.",
               per_store("protected")),
        Family("store_size_bytes", "Bytes of the archives in each store.", per_store("bytes")),
        Family("replica_lag_archives",
               "Archives of the primary store a replica lacks (backup.storage.replicas).",
               per_store("lag")),
    ]


def exposition(kinds: dict[str, dict], stores: list[StoreFacts]) -> str:
    """The Prometheus text format of ``families`` (every metric a gauge)."""
    lines = []
    for family in families(kinds, stores):
        if not family.samples:
            continue
        name = PREFIX + family.name
        lines.append(f"# HELP {name} {family.help}")
        lines.append(f"# TYPE {name} gauge")
        for labels, value in family.samples:
            text = ",".join(f'{key}="{escape(str(val))}"' for key, val in labels.items())
            lines.append(f"{name}{{{text}}} {_number(value)}" if text
                         else f"{name} {_number(value)}")
    return "\n".join(lines) + "\n"


def store_facts(store, role: str = "primary", primary: set[str] | None = None) -> StoreFacts:
    """A store's counts from its listing; a store that cannot be listed is down, not an
    error (metrics are how an operator learns that it is).  ``primary``: the primary's
    archive ids, for a replica's lag."""
    try:
        archives = store.catalog()
        marks = store.protected()
    except (PoppoarcError, OSError):
        return StoreFacts(store.url, role, None, None, None)
    ids = {archive.id for archive in archives}
    return StoreFacts(store.url, role, len(archives), len(marks & ids),
                      sum(archive.size or 0 for archive in archives),
                      None if primary is None else len(primary - ids))


def current(settings: Settings) -> str:
    """The metrics now: the runs record, every store's listing, each replica's lag."""
    return exposition(runs.load(settings.records_dir), all_store_facts(settings))


def all_store_facts(settings: Settings) -> list[StoreFacts]:
    """The primary store's facts, then each replica's with its lag."""
    primary = open_store(settings)
    facts = [store_facts(primary)]
    if settings.replicas:
        try:
            ids = {archive.id for archive in primary.catalog()}
        except (PoppoarcError, OSError):
            ids = None
        for replica in settings.replicas:
            try:
                store = open_store(replica, settings.storage)
            except (PoppoarcError, OSError):
                facts.append(StoreFacts(replica, "replica", None, None, None))
                continue
            facts.append(store_facts(store, "replica", ids))
    return facts


def metrics_file(settings: Settings) -> Path | None:
    """``backup.metrics.file``, relative to the root when not absolute; None: not set."""
    configured = (settings.backup.get("metrics") or {}).get("file")
    if not configured:
        return None
    path = Path(configured)
    return path if path.is_absolute() else settings.root / path


def publish(settings: Settings) -> str | None:
    """Write the metrics file (when configured); the problem, or None."""
    path = metrics_file(settings)
    if path is None:
        return None
    try:
        text = current(settings)
        # the collector runs as another user: the file is world-readable, as it must be
        write_file_durably(path, text.encode(), 0o644)
    except (PoppoarcError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"{path}: cannot write metrics ({reason})"
    return None


def publisher(settings: Settings):
    """``runs.observed``'s ``after``: publish after each observed run."""
    return lambda observation: publish(settings)
