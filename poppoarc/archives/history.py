"""``find``: which archives hold the paths a glob selects, newest first, and how each path
changed from one archive to the next: when a file changed, when it appeared, when it
disappeared.

Each archive's head and index are read (never a body); an archive this installation
cannot read (damaged, untrusted, sealed without a key here, ...) is named in a warning
and skipped.  What is found goes to a temporary SQLite database on disk and comes out
sorted by path: memory does not grow with the number of archives or matches.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from ..config import Settings
from ..errors import PoppoarcError
from ..snapshot.selection import PathSelection, selects
from ..store import open_store
from ..store import locate as locate_in_store
from ..streamed import StreamedArray
from .contents import chooser, open_source
from .listing import list_archives

PRESENT_STATES = ("added", "changed", "unchanged")     # ... and "absent": gone there


@dataclass(frozen=True)
class Searched:
    """One archive searched: its id and creation time."""

    id: str
    timestamp: str


@dataclass
class History:
    """The sightings of the selected paths in the searched archives (``sightings``)."""

    paths: PathSelection
    archives: list[Searched]            # newest first
    warnings: list[str] = field(default_factory=list)
    _db: sqlite3.Connection | None = field(default=None, repr=False)
    matched: int = 0                    # distinct paths found

    @property
    def exit_code(self) -> int:
        return 1 if self.warnings else 0

    def histories(self):
        """(path, [row per searched archive, newest first]) for each path found, by path.
        A row is a dict with ``state``: ``added`` (not in the archive before it),
        ``changed``, ``unchanged`` or ``absent`` (an older archive has it, this one not)."""
        if self._db is None:
            return
        order = {a.id: n for n, a in enumerate(self.archives)}
        current, rows = None, {}
        query = ("SELECT path, archive, target, type, size, mtime_ns, sha256, link "
                 "FROM sightings ORDER BY path, archive")
        for path, archive, target, kind, size, mtime, digest, link in self._db.execute(query):
            if path != current:
                if current is not None:
                    yield current, self._timeline(rows, order)
                current, rows = path, {}
            rows[archive] = {"target": target, "type": kind, "size": size, "mtime_ns": int(mtime),
                             "sha256": digest, "link": link}
        if current is not None:
            yield current, self._timeline(rows, order)

    def _timeline(self, rows: dict, order: dict) -> list[dict]:
        """Each searched archive's row for one path, newest first, from the oldest up:
        what it has compared with the archive before it."""
        timeline, before = [], None
        for searched in reversed(self.archives):
            row = rows.get(searched.id)
            if row is None:
                if before is not None:
                    timeline.append({"archive_id": searched.id, "timestamp": searched.timestamp,
                                      "state": "absent"})
                before = None
                continue
            state = "added" if before is None else "unchanged" if _same(before, row) \
                else "changed"
            timeline.append({"archive_id": searched.id, "timestamp": searched.timestamp,
                             "state": state, **row})
            before = row
        timeline.reverse()
        return timeline

    def to_json(self) -> dict:
        return {"include": list(self.paths.include), "exclude": list(self.paths.exclude),
                "archives": [{"id": a.id, "timestamp": a.timestamp} for a in self.archives],
                "paths": StreamedArray(lambda: ({"path": path, "history": rows}
                                                for path, rows in self.histories())),
                "matched": self.matched, "warnings": self.warnings}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _same(before: dict, after: dict) -> bool:
    """Whether a path's record is the same in two archives: type, size, time and link,
    and the SHA-256 where both have one (a keyed digest differs between archives)."""
    if (before["type"], before["size"], before["mtime_ns"], before["link"]) != \
            (after["type"], after["size"], after["mtime_ns"], after["link"]):
        return False
    return before["sha256"] is None or after["sha256"] is None \
        or before["sha256"] == after["sha256"]


def find(settings: Settings, paths: PathSelection, references=None) -> History:
    """The history of the paths ``paths`` selects, in the archives named by
    ``references`` (ids, prefixes, files, URLs) or else in every archive of the store."""
    store = open_store(settings)
    history = History(paths, [])
    chosen = []
    if references is None:
        for row in list_archives(settings, store):
            if row.status == "ok":
                chosen.append((store, store.lookup(row.id)))
            else:
                history.warnings.append(f"{row.id}: not searched ({row.status}: {row.problem})")
    else:
        for reference in references:
            chosen.append(locate_in_store(store, reference, settings.storage))
    db = sqlite3.connect("")    # a private temporary database on disk, gone when closed
    db.execute("CREATE TABLE sightings (path TEXT, archive TEXT, target TEXT, type TEXT, "
               "size INTEGER, mtime_ns TEXT, sha256 TEXT, link TEXT)")
    history._db = db
    searched = []
    for holder, stored in chosen:
        if stored is None:
            continue
        try:
            with holder.open(stored) as source:
                archive = open_source(settings, holder, source, stored.where, chooser(paths))
        except PoppoarcError as exc:    # damaged, untrusted, no key, unsafe; a store's fault
            history.warnings.append(f"{stored.id}: not searched: {exc}")
            continue
        # (mtime_ns as text: SQLite's integers are 64-bit, a time may be wider, §5.4)
        db.executemany("INSERT INTO sightings VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       ((e.path, archive.id, e.target, e.type, e.size, str(e.mtime_ns),
                         e.sha256, e.link) for e in archive.entries
                        if not e.generated and selects(paths, e.path)))
        searched.append(Searched(archive.id, archive.manifest["timestamp"]))
    db.execute("CREATE INDEX by_path ON sightings (path, archive)")
    db.commit()
    searched.sort(key=lambda a: (a.timestamp, a.id), reverse=True)
    history.archives = list(dict.fromkeys(searched))
    history.matched = db.execute("SELECT COUNT(DISTINCT path) FROM sightings").fetchone()[0]
    return history
