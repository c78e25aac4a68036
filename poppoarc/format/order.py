"""The order of index records, and the rules about paths checked in path order.

Writers list records in index order (spec/FORMAT.md §5.4): shared parent
directories (target null) first, then the targets in ``TARGETS`` order and the custom
targets by name, each by path; the generated environment document comes last in its
target.  Readers do
not require that order, but use it: an index in index order is a few runs, each
one target's records with increasing paths, and merging those runs gives every
record in path order without holding any of them.  In path order the rules that
concern several records at once (no path twice, none below a file or a link, a
shared parent has a record of a target below it) need only the record before and
the chain of records above the current one (``TreeRules``): memory bounded by a
path's length, whatever the number of records, their depth or their order.  An
index in another order is put in path order by SQLite on disk (``_sorted_on_disk``).
"""

from __future__ import annotations

import heapq
import re
import sqlite3
from itertools import islice

TARGETS = ("config", "database", "logs", "agents", "state", "security")
_RANK = {name: (rank, "") for rank, name in enumerate(TARGETS)}
_SHARED = (-1, "")
# A custom target (``backup.targets.NAME`` with ``include`` globs, spec §5.2 ``areas``) is
# named like this and comes after the built-in ones, custom ones by name.
CUSTOM_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")
AFTER_ALL = ((len(TARGETS) + 1, ""), "")        # an index key after every record's

# An index of more runs than this (not in index order) is sorted on disk instead.
_MAX_RUNS = 64


def target_rank(target: str | None) -> tuple[int, str]:
    """Where a target's records sit: shared parents (None) first, the built-in targets in
    ``TARGETS`` order, then custom targets by name."""
    if target is None:
        return _SHARED
    return _RANK.get(target) or (len(TARGETS), target)


def in_target_order(names) -> list[str]:
    """Target names in the order their records are written."""
    return sorted(names, key=target_rank)


def is_custom_name(name: object) -> bool:
    return isinstance(name, str) and name not in _RANK and CUSTOM_NAME.match(name) is not None


def index_order(target: str | None, path: str) -> tuple[tuple[int, str], str]:
    """Where an entry sits in a walk, a body and an index: shared parent directories
    first, then by target (``target_rank``), then by path."""
    return target_rank(target), path


class PathRules:
    """Follows the records as they are read (``add``, in index order) and notes their
    runs: [start, end, target, first path, last path, generated].  A generated record
    (the environment document, last in its target) is a run of its own."""

    def __init__(self) -> None:
        self._runs: list[list] = []
        self._count = 0

    def add(self, target: str | None, path: str, is_dir: bool = False,
            generated: bool = False) -> None:
        run = self._runs[-1] if self._runs and len(self._runs) <= _MAX_RUNS else None
        if run is not None and run[2] == target and path > run[4] and not (generated or run[5]):
            run[1] += 1
            run[4] = path
        elif len(self._runs) <= _MAX_RUNS:
            self._runs.append([self._count, self._count + 1, target, path, path, generated])
        self._count += 1

    def in_index_order(self) -> bool:
        """Whether the records came in index order, generated ones aside: each run
        starts after the one before it ends."""
        if len(self._runs) > _MAX_RUNS:
            return False
        last = ((-2, ""), "")
        for _, _, target, first, final, generated in self._runs:
            if not generated:
                if index_order(target, first) <= last:
                    return False
                last = index_order(target, final)
        return True

    def in_path_order(self, records):
        """(position in the index, record) of every record, by path (then position)."""
        if len(self._runs) > _MAX_RUNS:
            return _sorted_on_disk(records)
        runs = [_positions(records, start, end) for start, end, *_ in self._runs]
        return heapq.merge(*runs, key=lambda item: item[1].path)

    def finish(self, records, visit=None) -> None:
        """Check the rules about several records (``TreeRules``) over every record in
        path order, and hand each to ``visit(position, record)`` too; ValueError at the
        first broken rule."""
        tree = TreeRules()
        for position, record in self.in_path_order(records):
            tree.add(record)
            if visit is not None:
                visit(position, record)
        tree.finish()


def _positions(records, start: int, end: int):
    iterate = getattr(records, "iter_range", None)
    items = iterate(start, end) if iterate is not None else islice(records, start, end)
    return zip(range(start, end), items)


def _sorted_on_disk(records):
    """Every record by path, for an index in any order: SQLite sorts them on disk within
    its own small cache (a private temporary database, gone when closed).  ``records``
    gives its spooled form (``IndexRecords.spooled``) or is a plain sequence."""
    spooled = getattr(records, "spooled", None)
    rebuild = getattr(records, "rebuild", None)
    if spooled is None:                 # a list (tests): its items as they are
        items = list(records)
        rows = ((record.path, n, n) for n, record in enumerate(items))
        rebuild = items.__getitem__
    else:
        rows = ((path, n, data) for n, (path, data) in enumerate(spooled()))
    database = sqlite3.connect("")
    try:
        database.execute("PRAGMA cache_size=-8192")     # KiB: the sort's memory bound
        database.execute("CREATE TABLE records(path TEXT, position INTEGER, data)")
        database.executemany("INSERT INTO records VALUES (?, ?, ?)", rows)
        cursor = database.execute("SELECT position, data FROM records ORDER BY path, position")
        while chunk := cursor.fetchmany(1024):
            for position, data in chunk:
                yield position, rebuild(data)
    finally:
        database.close()


class TreeRules:
    """The rules of §5.4 that relate records, checked over records given in path order.

    * no path is listed twice: equal paths are neighbours;
    * no path lies below a record that is not a directory (writing it would follow a
      link, or fail);
    * a shared parent (target null) has a record of some target below it.

    ``_open`` holds the records whose paths are prefixes of the current one and may
    still have paths below them ("a" stays open for "a-b", which sorts before "a/c").
    Each is a prefix of the next, so there are at most as many as a path has bytes,
    whatever the number of records; each knows its nearest ancestor among them.
    """

    def __init__(self) -> None:
        self._previous: str | None = None
        # [path, is a directory, is a shared parent, has a target's record below it,
        #  position of its nearest ancestor in _open or -1]
        self._open: list[list] = []

    def add(self, record) -> None:
        path = record.path
        if path == self._previous:
            raise ValueError(f"{path!r}: listed twice")
        self._previous = path
        open_ = self._open
        while open_ and not (path.startswith(open_[-1][0])
                             and path[len(open_[-1][0])] < "0"):
            self._close(open_.pop())
        ancestor = -1
        if open_:
            top = open_[-1]
            # the top is an ancestor, or the path's ancestors are the top's (they are
            # prefixes of both, followed by the same byte)
            ancestor = len(open_) - 1 if path[len(top[0])] == "/" else top[4]
        if ancestor >= 0:
            parent = open_[ancestor]
            if not parent[1]:
                raise ValueError(f"{path!r} lies below {parent[0]!r}, which is not a directory")
            if record.target is not None:
                parent[3] = True
        open_.append([path, record.type == "dir", record.target is None, False, ancestor])

    def _close(self, entry: list) -> None:
        if entry[2] and not entry[3]:
            raise ValueError(f"shared parent directory {entry[0]!r} has no record of a "
                             "target below it")
        if entry[3] and entry[4] >= 0:      # what is below it is below its ancestor too
            self._open[entry[4]][3] = True

    def finish(self) -> None:
        while self._open:
            self._close(self._open.pop())
