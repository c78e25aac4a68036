"""What a restore will change: a pure function of the archive and the live tree.

``make_plan`` compares the signed index with a walk of the live installation
(the same catalogue ``pack`` uses) and says, per target, which paths are
added, changed, removed or unchanged.  ``--dry-run`` prints this object; the
real restore executes the same object, so the two cannot disagree.

Both pair the archive's records with the walk of the live tree by target and
path (``pair_with_live``).  Both come in index order (spec/FORMAT.md §5.4), so
one merge pairs them and nothing is held per path: a restore of a million files
plans and stages in the memory of a small one.  An index in another order is
paired through a dictionary of the live entries instead.

A restore changes only what its targets own.  ``SwapUnits`` picks the paths the swap
replaces whole: the highest ones with nothing below them that the restore does not own
(another target's path, an unclaimed one, a special file, a directory no selected target
owns).  A restore of ``database`` swaps each database file and drops its stale sidecars,
never ``data/`` with the agents' files in it; an application writing those meanwhile loses
nothing.  ``staging_paths`` gives the staged tree the units and the files restored hard
links name.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ..format.entry import IndexEntry
from ..format.order import AFTER_ALL, index_order
from ..format.records import IndexRecords
from ..i18n import N_
from ..snapshot.scan import (DATABASE, DIR, FILE, SYMLINK, SourceEntry, is_plain, path_of,
                             target_of)
from ..snapshot.selection import IncludeTally, PathSelection, selects
from ..streamed import StreamedArray

ADD, CHANGE, REMOVE, KEEP = "add", "change", "remove", "unchanged"
_LIVE_TYPE = {FILE: "file", DATABASE: "file", DIR: "dir", SYMLINK: "symlink"}
_CHANGE_FIELDS = ("path", "action", "size")


@dataclass(slots=True)
class PathChange:
    path: str
    action: str
    size: int = 0

    def to_json(self) -> dict:
        return {"path": self.path, "action": self.action, "size": self.size}


class TargetPlan:
    """One target's changes, counted in memory and listed from disk: a restore into an
    empty root adds every path, and a ``PathChange`` object for each would grow with the
    tree."""

    def __init__(self, name: str):
        self.name = name
        self._totals = {action: [0, 0] for action in (ADD, CHANGE, REMOVE, KEEP)}
        # archive paths (added, changed) come in index order, live ones (removed) in walk
        # order: both by path, so the list is their merge (§5.4: writers keep that order)
        self._from_archive = IndexRecords(PathChange, _CHANGE_FIELDS)
        self._removed = IndexRecords(PathChange, _CHANGE_FIELDS)

    def add(self, path: str, action: str, size: int = 0) -> None:
        totals = self._totals[action]
        totals[0] += 1
        totals[1] += size
        if action != KEEP:      # unchanged paths are only counted
            spool = self._removed if action == REMOVE else self._from_archive
            spool.add(PathChange(path, action, size))

    def changes(self):
        """What the restore changes, by path (each call reads it again)."""
        self._from_archive.close_writing()
        self._removed.close_writing()
        return heapq.merge(self._from_archive, self._removed, key=lambda c: c.path)

    def count(self, action: str) -> int:
        return self._totals[action][0]

    def bytes(self, action: str) -> int:
        return self._totals[action][1]

    @property
    def changes_anything(self) -> bool:
        return any(self.count(action) for action in (ADD, CHANGE, REMOVE))

    def to_json(self, with_paths: bool = True) -> dict:
        summary = {action: {"paths": self.count(action), "bytes": self.bytes(action)}
                   for action in (ADD, CHANGE, REMOVE, KEEP)}
        document = {"target": self.name, **summary}
        if with_paths:      # made while written (memory)
            document["changes"] = StreamedArray(lambda: (c.to_json() for c in self.changes()))
        return document


@dataclass
class DatabasePlan:
    path: str
    tables_archive: dict[str, int]
    tables_now: dict[str, int] | None          # None: no database at that path now
    user_version_archive: int
    user_version_now: int | None
    identical: bool = False     # the live database's snapshot is the archived one, byte for byte

    def to_json(self) -> dict:
        return {"path": self.path, "tables_archive": self.tables_archive,
                "tables_now": self.tables_now, "user_version_archive": self.user_version_archive,
                "user_version_now": self.user_version_now, "identical": self.identical}


class SwapUnits:
    """The paths a restore swaps whole, found one path at a time (in path order they
    share most of the work).  ``impure``: the live directories that are, or hold, a
    path the restore does not own (the walk's ``ScanResult.impure``).

    A path's unit is its highest ancestor-or-self that is not impure: every restored
    record and owned live path lies at or under one, and no path the restore does not
    own ever does.  A restored file where a live directory holds such paths is a
    conflict (the restore refuses it); a restored directory that is impure keeps its
    live place and gets its mode and times after the swap (``outside``).
    """

    def __init__(self, impure: set[str]):
        self.impure = impure
        self.units: set[str] = set()
        self.conflicts: list[str] = []
        self._last: str | None = None

    def unit_of(self, path: str) -> str | None:
        last = self._last
        if last is not None and (path == last or path.startswith(last + "/")):
            return last
        prefix = ""
        for part in path.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            if prefix not in self.impure:
                self._last = prefix
                return prefix
        return None

    def add(self, path: str, directory: bool, restored: bool) -> None:
        unit = self.unit_of(path)
        if unit is not None:
            self.units.add(unit)
        elif restored and not directory:
            self.conflicts.append(path)

    def add_record(self, record: IndexEntry) -> None:
        self.add(record.path, record.type == "dir", True)

    def add_live(self, entry) -> None:
        self.add(path_of(entry), not is_plain(entry) and entry.kind == DIR, False)

    def covers(self, path: str) -> bool:
        """Whether the swap replaces ``path`` (it lies at or under a unit)."""
        prefix = ""
        for part in path.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            if prefix in self.units:
                return True
        return False

    def sorted(self) -> list[str]:
        return sorted(self.units)


@dataclass
class RestorePlan:
    archive_id: str
    targets: list[TargetPlan]
    databases: list[DatabasePlan]
    top_level: list[str]                      # names under ROOT the swap changes
    version_archive: str | None
    version_now: str | None
    bytes_to_stage: int
    live_bytes: int                           # what a safety archive would hold
    warnings: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)        # the paths the swap replaces whole
    conflicts: list[str] = field(default_factory=list)    # see SwapUnits
    foreign: list[str] = field(default_factory=list)      # see unpack.foreign_units
    unreadable: list[str] = field(default_factory=list)   # live paths it replaces, unreadable
    # live paths of the restored targets this user cannot read that the archive does not
    # hold and the swap does not replace (``stays``): the targets are not the archive's
    left_in_place: list[str] = field(default_factory=list)
    changed_while_packed: list[str] = field(default_factory=list)   # records flagged changed
    # a partial restore (--include/--exclude); its include patterns that select no record
    paths: PathSelection | None = None
    unmatched: list[str] = field(default_factory=list)
    # the selected custom targets' areas: name -> {"include": globs, "from": "installation"
    # (its backup.targets) or "archive" (recorded in the manifest, used as recorded)}
    areas: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"archive_id": self.archive_id, "targets": [t.to_json() for t in self.targets],
                "databases": [d.to_json() for d in self.databases],
                "top_level": self.top_level, "units": self.units,
                "version_archive": self.version_archive,
                "version_now": self.version_now, "bytes_to_stage": self.bytes_to_stage,
                "live_bytes": self.live_bytes, "unreadable": self.unreadable,
                "conflicts": self.conflicts, "foreign": self.foreign,
                "changed_while_packed": self.changed_while_packed,
                "include": list(self.paths.include) if self.paths else [],
                "exclude": list(self.paths.exclude) if self.paths else [],
                "areas": self.areas, "warnings": self.warnings}


def _same(archived: IndexEntry, live: SourceEntry) -> bool:
    """Quick check, as rsync does: type, mode, size, mtime (and link target)."""
    if archived.sqlite or live.kind == DATABASE:
        return False        # a live database is never byte-equal to a snapshot
    if _LIVE_TYPE.get(live.kind) != ("file" if archived.type == "hardlink" else archived.type):
        return False
    if archived.type == "dir":
        return archived.mode == live.mode
    if archived.type == "symlink":
        return archived.link == live.link
    return (archived.mode, archived.size, archived.mtime_ns) == (live.mode, live.size, live.mtime_ns)


def stays(live, impure: set[str]) -> bool:
    """Whether a live path the archive does not hold stays where it is: a directory that
    is impure (it holds, or may hold, what the restore does not own: another target's
    paths, or contents this user cannot list) keeps its place (``SwapUnits``), so the plan
    must not say it is removed."""
    return not is_plain(live) and live.kind == DIR and path_of(live) in impure


def live_match(record: IndexEntry, paired: SourceEntry | None,
               live_secrets: dict[str, SourceEntry] | None) -> SourceEntry | None:
    """The live path a restored record replaces: the walk's pairing, or for a sealed
    record the live secret at its path.  The walk never hands secrets to the pairing
    (they are archived only sealed), yet the swap replaces the live one with the record:
    without this an unchanged ``.env`` was "add" in every plan, dry run and real run."""
    if paired is not None or not live_secrets or not record.needs_key():
        return paired
    return live_secrets.get(record.path)


def restores(entry: IndexEntry, selected: tuple[str, ...], keyed: bool = True,
             paths: PathSelection | None = None) -> bool:
    """Whether a restore of ``selected`` (and of ``paths``: ``--include``/``--exclude``,
    ``snapshot.selection``) writes this record.  A ``generated`` one (the environment
    document) describes the packing host and is not content; a sealed file is written
    only with its key (``keyed``)."""
    return entry.target in selected and not entry.generated \
        and (keyed or not entry.needs_key()) and selects(paths, entry.path)


def pair_with_live(entries, live, selected: tuple[str, ...], keyed: bool = True,
                   paths: PathSelection | None = None):
    """(record, live entry) for every record the restore writes and every live entry of
    the selected targets, paired when both have the same target and path; (record, None)
    is added, (None, live entry) removed.  ``live`` is a walk in index order (``scan``),
    whose compact records are (path, target) tuples (a walk with ``paths`` in its
    catalogue has only the selected paths)."""
    restored = (e for e in entries if restores(e, selected, keyed, paths))
    current = (e for e in live if target_of(e) in selected and selects(paths, path_of(e)))
    if getattr(entries, "in_index_order", False):
        return _merge(restored, current)
    return _by_key(restored, current)


def _keyed(items, key):
    """(index key, item) of each item, then (a key after every other, None)."""
    for item in items:
        yield key(item), item
    yield AFTER_ALL, None


def _merge(restored, current):
    records = _keyed(restored, lambda r: index_order(r.target, r.path))
    lives = _keyed(current, lambda e: index_order(target_of(e), path_of(e)))
    (record_key, record), (live_key, live) = next(records), next(lives)
    while record is not None or live is not None:
        if record_key < live_key:
            yield record, None
            record_key, record = next(records)
        elif record_key > live_key:
            yield None, live
            live_key, live = next(lives)
        else:
            yield record, live
            (record_key, record), (live_key, live) = next(records), next(lives)


def _by_key(restored, current):
    waiting = {(target_of(e), path_of(e)): e for e in current}
    for record in restored:
        yield record, waiting.pop((record.target, record.path), None)
    for live in waiting.values():
        yield None, live


@dataclass
class StagingPaths:
    """What the staged tree must know beside the archive: the swap's units (``SwapUnits``),
    the files restored hard links name, and the live directories inside units with
    their status-change times (a path that appears in one before the swap changes it)."""

    units: SwapUnits
    link_sources: set[str]
    unit_dirs: list[tuple[str, int]]


def staging_paths(entries, selected: tuple[str, ...], keyed: bool, live, impure: set[str],
                  sidecars: list[str], paths: PathSelection | None = None) -> StagingPaths:
    """From the index and the walk of the selected targets (``pair_with_live``, its
    ``impure`` and ``sidecars``)."""
    units, link_sources, dirs = SwapUnits(impure), set(), []
    for record, current in pair_with_live(entries, live, selected, keyed, paths):
        if record is not None:
            units.add_record(record)
            if record.type == "hardlink":
                link_sources.add(record.link)
        if current is not None:
            units.add_live(current)
            if not is_plain(current) and current.kind == DIR:
                dirs.append((current.path, current.ctime_ns))
    for path in sidecars:
        units.add(path, False, False)
    return StagingPaths(units, link_sources, [(p, c) for p, c in dirs if units.covers(p)])


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    if not version:
        return None
    parts = []
    for piece in version.split("-")[0].split("."):
        if not piece.isdigit():
            return None
        parts.append(int(piece))
    return tuple(parts)


def make_plan(manifest: dict, entries: list[IndexEntry], live: list[SourceEntry],
              selected: tuple[str, ...], live_databases: dict[str, tuple[dict, int]],
              version_now: str | None, keyed: bool = True, impure: set[str] = frozenset(),
              sidecars: list[str] = (), unreadable: list[str] = (),
              paths: PathSelection | None = None,
              identical_databases: frozenset[str] = frozenset(),
              live_secrets: dict[str, SourceEntry] | None = None) -> RestorePlan:
    """Archive × live tree × selection → the restore plan.

    ``live`` is the walk of the live tree for the selected targets, in index order
    (``scan``); a path whose target differs between the two is removed from one target
    and added to the other;
    ``live_databases`` maps a live database path to (row counts, user_version);
    ``keyed``: the archive's sealed files can be opened (``restores``);
    ``impure``, ``sidecars``, ``unreadable``: the walk's (``ScanResult``), for the swap's
    units (``SwapUnits``) and the live paths it would replace that cannot be read;
    ``paths``: a partial restore's ``--include``/``--exclude`` (the walk was made with the
    same selection).
    ``identical_databases``: live databases whose snapshot is the archived one byte for
    byte (``restore.live.identical_databases``): unchanged, where any other live database
    counts as changed (its file never equals a snapshot).
    ``live_secrets``: the live secret files by path (``restore.live.live_secrets``): the
    walk keeps them apart, so a sealed record is paired with one here (``live_match``).
    """
    # One pass over the records (they may be read back from disk on each pass), paired
    # with the walk: of the paths only the units and the databases are kept.
    plans = {name: TargetPlan(name) for name in selected}
    units = SwapUnits(set(impure))
    changed = []
    archived_databases = {record["path"] for record in manifest.get("databases", [])}
    restored_databases = set()
    bytes_to_stage = live_bytes = 0
    tally = IncludeTally(paths)
    for entry, current in pair_with_live(entries, live, selected, keyed, paths):
        if current is not None:
            units.add_live(current)
        if entry is None:
            if stays(current, impure):
                plans[current.target].add(current.path, KEEP)
                continue
            live_bytes += current.size
            plans[current.target].add(current.path, REMOVE, current.size)
            continue
        path = entry.path
        tally.note(path)
        units.add_record(entry)
        if entry.changed:
            changed.append(path)
        if path in archived_databases:
            restored_databases.add(path)
        size = entry.size if entry.type == "file" else 0
        bytes_to_stage += size
        current = live_match(entry, current, live_secrets)
        if current is None:
            plans[entry.target].add(path, ADD, size)
            continue
        live_bytes += current.size
        same = _same(entry, current) or (entry.sqlite and path in identical_databases)
        plans[entry.target].add(path, KEEP if same else CHANGE, size)

    databases = []
    for record in manifest.get("databases", []):
        if record["path"] in restored_databases:
            now = live_databases.get(record["path"])
            databases.append(DatabasePlan(record["path"], record.get("tables", {}),
                                          now[0] if now else None,
                                          record.get("user_version", 0),
                                          now[1] if now else None,
                                          record["path"] in identical_databases))
    warnings = []
    archive_version, current_version = manifest.get("version"), version_now
    older, newer = version_tuple(current_version), version_tuple(archive_version)
    if older and newer and newer > older:
        warnings.append(f"the archive comes from installation version {archive_version}, newer than "
                        f"the installed {current_version}: the application may not read its data")
    for db in databases:
        if db.user_version_now is not None and db.user_version_now != db.user_version_archive:
            warnings.append(f"{db.path}: schema user_version {db.user_version_now} now, "
                            f"{db.user_version_archive} in the archive")
    for path in sidecars:
        units.add(path, False, False)
    if changed:
        warnings.append(changed_message(changed))
    return RestorePlan(
        archive_id=manifest["id"],
        targets=[plans[name] for name in selected],
        databases=databases,
        top_level=sorted({unit.partition("/")[0] for unit in units.units}),
        version_archive=archive_version,
        version_now=current_version,
        bytes_to_stage=bytes_to_stage,
        live_bytes=live_bytes,
        warnings=warnings,
        units=units.sorted(),
        conflicts=units.conflicts,
        unreadable=[path for path in unreadable if units.covers(path)],
        left_in_place=[path for path in unreadable if not units.covers(path)],
        changed_while_packed=changed,
        paths=paths,
        unmatched=tally.unmatched(),
    )


def changed_message(paths: list[str]) -> str:
    """The warning that names the files a pack saw change while it read them."""
    shown = ", ".join(paths[:5])
    if len(paths) > 5:
        shown = N_(f"{shown} and {len(paths) - 5} more")
    return N_(f"{len(paths)} file(s) changed while they were packed and are restored as read "
              f"(their content may be inconsistent): {shown}")
