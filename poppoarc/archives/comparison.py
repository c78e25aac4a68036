"""``diff``: what changed from one archive to another, per target (paths added, removed
and changed) and per database (tables whose row counts changed), from two indexes and
two manifests: no body is read.

A record changed when its type, permissions, owner, modification time, size, link
target or SHA-256 differ.  A small file has no SHA-256 of its own (spec §5.4): one
rewritten with the same size and modification time is not seen (as in an incremental's
change detection, §12.2); the databases' row counts come from their signed manifests.

Both indexes come in index order (spec §5.4), so one merge pairs their records and
nothing is held per path; the changes go to disk as they are found.  An index in another
order is sorted on disk first.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from ..format.entry import IndexEntry
from ..format.order import AFTER_ALL, in_target_order, index_order
from ..format.records import IndexRecords
from ..snapshot.selection import PathSelection, selects
from ..streamed import StreamedArray
from .contents import OpenedArchive

ADDED, REMOVED, CHANGED, UNCHANGED = "added", "removed", "changed", "unchanged"
COMPARED = ("type", "mode", "uid", "gid", "mtime_ns", "size", "link", "sha256")


@dataclass(slots=True)
class PathDifference:
    path: str
    action: str
    fields: str             # the compared fields that differ, comma-separated
    size_from: int
    size_to: int

    def to_json(self) -> dict:
        return {"path": self.path, "action": self.action,
                "fields": self.fields.split(",") if self.fields else [],
                "size_from": self.size_from, "size_to": self.size_to}


class TargetDifference:
    """One target's changes: counted in memory, listed from disk."""

    def __init__(self, name: str):
        self.name = name
        self.counts = {ADDED: 0, REMOVED: 0, CHANGED: 0, UNCHANGED: 0}
        self._changes = IndexRecords(PathDifference, ("path", "action", "fields", "size_from",
                                                      "size_to"))

    def add(self, change: PathDifference) -> None:
        self.counts[change.action] += 1
        if change.action != UNCHANGED:
            self._changes.add(change)

    def changes(self):
        self._changes.close_writing()
        return iter(self._changes)

    def to_json(self) -> dict:
        return {"target": self.name, **self.counts,
                "changes": StreamedArray(lambda: (c.to_json() for c in self.changes()))}


@dataclass
class Difference:
    older: dict                 # {"id", "timestamp"} of the first archive named
    newer: dict                 # ... and of the second
    paths: PathSelection | None
    targets: list[TargetDifference]
    databases: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.warnings else 0

    @property
    def changed(self) -> bool:
        return any(t.counts[a] for t in self.targets for a in (ADDED, REMOVED, CHANGED)) \
            or bool(self.databases)

    def to_json(self) -> dict:
        return {"from": self.older, "to": self.newer,
                "include": list(self.paths.include) if self.paths else [],
                "exclude": list(self.paths.exclude) if self.paths else [],
                "targets": [t.to_json() for t in self.targets], "databases": self.databases,
                "warnings": self.warnings}


def compare(older: OpenedArchive, newer: OpenedArchive, paths: PathSelection | None) -> Difference:
    """What changed from ``older`` to ``newer`` (the archives in the order named)."""
    names = in_target_order(set(older.manifest["targets"]) | set(newer.manifest["targets"]))
    result = Difference({"id": older.id, "timestamp": older.manifest["timestamp"]},
                        {"id": newer.id, "timestamp": newer.manifest["timestamp"]},
                        paths, [TargetDifference(t) for t in names])
    for name in names:
        for archive in (older, newer):
            if name not in archive.manifest["targets"]:
                result.warnings.append(f"{archive.id} has no target {name}: its paths are all "
                                       f"{'added' if archive is older else 'removed'}")
    by_name = {t.name: t for t in result.targets}
    chosen = lambda e: not e.generated and selects(paths, e.path)   # noqa: E731
    for before, after in _pairs(older.entries, newer.entries, chosen):
        by_name[(after or before).target].add(_difference(before, after))
    result.databases = _databases(older.manifest, newer.manifest, paths)
    return result


def _difference(before: IndexEntry | None, after: IndexEntry | None) -> PathDifference:
    if before is None:
        return PathDifference(after.path, ADDED, "", 0, _size(after))
    if after is None:
        return PathDifference(before.path, REMOVED, "", _size(before), 0)
    fields = [name for name in COMPARED if getattr(before, name) != getattr(after, name)
              and (name != "sha256" or (before.sha256 is not None and after.sha256 is not None))]
    return PathDifference(after.path, CHANGED if fields else UNCHANGED, ",".join(fields),
                          _size(before), _size(after))


def _size(entry: IndexEntry) -> int:
    return entry.size if entry.type in ("file", "hardlink") else 0


def _pairs(first, second, chosen):
    """(record of ``first``, record of ``second``) paired by (target, path), either None
    where one has no such record: a merge of the two in index order."""
    records = _keyed(_ordered(first, chosen))
    others = _keyed(_ordered(second, chosen))
    (key, record), (other_key, other) = next(records), next(others)
    while record is not None or other is not None:
        if key < other_key:
            yield record, None
            key, record = next(records)
        elif key > other_key:
            yield None, other
            other_key, other = next(others)
        else:
            yield record, other
            (key, record), (other_key, other) = next(records), next(others)


def _keyed(records):
    for record in records:
        yield index_order(record.target, record.path), record
    yield AFTER_ALL, None


def _ordered(entries, chosen):
    """The chosen records in index order: as they are (writers keep that order, §5.4), or
    sorted on disk by SQLite when the index came in another order."""
    if getattr(entries, "in_index_order", False):
        yield from (e for e in entries if e.target is not None and chosen(e))
        return
    db = sqlite3.connect("")    # a private temporary database on disk, gone when closed
    try:
        db.execute("CREATE TABLE records (rank INTEGER, name TEXT, path BLOB, data BLOB)")
        for _, data in entries.spooled():
            entry = entries.rebuild(data)
            if entry.target is not None and chosen(entry):
                (rank, name), _ = index_order(entry.target, entry.path)
                db.execute("INSERT INTO records VALUES (?, ?, ?, ?)",
                           (rank, name, entry.path.encode("utf-8", "surrogatepass"), data))
        for (data,) in db.execute("SELECT data FROM records ORDER BY rank, name, path"):
            yield entries.rebuild(data)
    finally:
        db.close()


def _databases(older: dict, newer: dict, paths: PathSelection | None) -> list[dict]:
    """Databases whose tables or row counts differ (or that one archive lacks), from the
    signed manifests: {"path", "action", "tables": {name: {"from", "to"}}}."""
    def catalogue(manifest: dict) -> dict:
        return {d["path"]: d.get("tables", {}) for d in manifest.get("databases", [])
                if selects(paths, d["path"])}

    before, after = catalogue(older), catalogue(newer)
    found = []
    for path in sorted(set(before) | set(after)):
        tables_before, tables_after = before.get(path), after.get(path)
        names = sorted(set(tables_before or {}) | set(tables_after or {}))
        tables = {name: {"from": (tables_before or {}).get(name),
                         "to": (tables_after or {}).get(name)} for name in names
                  if (tables_before or {}).get(name) != (tables_after or {}).get(name)}
        action = ADDED if tables_before is None else REMOVED if tables_after is None \
            else CHANGED if tables else UNCHANGED
        if action != UNCHANGED:
            found.append({"path": path, "action": action, "tables": tables})
    return found
