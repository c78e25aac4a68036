"""The walk's records, by target, in memory up to a bound and on disk past it.

The walk meets paths in index order (spec/FORMAT.md §5.4), so each target's
records arrive sorted and need only be kept in arrival order.  Up to
``SPILL_AT`` records stay in lists (the common installation: no disk, no
decoding; a full record counts twice); past that every group moves to a
temporary file in marshal chunks and is read back a chunk at a time, so a walk
of a million files does not hold a million records (~150 bytes each even
compact, ~300 full).
"""

from __future__ import annotations

import heapq
import tempfile
from itertools import chain

from ..format.order import TARGETS, in_target_order
from ..format.records import CHUNK, read_chunks, write_chunk

# Records held in memory, all groups together, before spilling: 131,072 compact records
# (pack's plain files, ~150 bytes each) or half as many full ones (~300 bytes each).
SPILL_AT = 1 << 17



def is_plain(record) -> bool:
    """A compact walk record: a regular file with one link, as the tuple (path, target),
    whose other facts the pack takes from ``fstat`` (or (path, target, lstat facts) for an
    incremental: ``Walk.stat_facts``); anything else is a ``SourceEntry``."""
    return type(record) is tuple


class WalkGroups:
    """Records by target (None: shared parent directories first), each group in the
    order added.  ``make(fields)`` rebuilds a record read back from disk from the
    tuple ``fields(record)`` gave when it was written."""

    def __init__(self, fields, make, spill_at: int | None = None):
        self._fields, self._make = fields, make
        self._spill_at = SPILL_AT if spill_at is None else spill_at
        self._groups: dict[str | None, _Group] = {t: _Group() for t in (None, *TARGETS)}
        # (a custom target's group is made when it is first asked for)
        self._held = 0
        self._spilled = False

    def _group(self, target: str | None) -> "_Group":
        group = self._groups.get(target)
        if group is None:
            group = self._groups[target] = _Group()
        return group

    def names(self) -> list[str | None]:
        """The groups in index order: shared parents, then the targets (spec §5.4)."""
        return [None, *in_target_order(t for t in self._groups if t is not None)]

    def add(self, target: str | None, record) -> None:
        group = self._group(target)
        group.held.append(record)
        group.count += 1
        if self._spilled:
            if len(group.held) >= CHUNK:
                group.spill(self._fields)
            return
        self._held += 1 if is_plain(record) and len(record) == 2 else 2
        if self._held > self._spill_at:
            self._spilled = True
            for each in self._groups.values():
                each.spill(self._fields)

    def add_sorted(self, target: str | None, records: list, key) -> None:
        """Records found outside the walk (few: secret files), merged in by ``key``."""
        group = self._group(target)
        group.extra = sorted(group.extra + records, key=key)
        group.extra_key = key
        group.count += len(records)

    def adopt(self, target: str | None, spool, count: int) -> bool:
        """Take ``count`` records another process wrote to the open binary file ``spool``
        (``records.write_chunks`` of ``fields``) as the group of ``target``, read from
        there like spilled records instead of held; False (and ``spool`` left alone) if
        the group has records already."""
        group = self._group(target)
        if group.count:
            return False
        group.close()
        group._file, group.count = spool, count
        return True

    def group(self, target: str | None):
        """One group's records, read again on each call."""
        return self._group(target).records(self._make)

    def take(self, target: str | None):
        """One group's records, each dropped as it is yielded: once only."""
        return self._group(target).records(self._make, consume=True)

    def count(self, target: str | None) -> int:
        return self._group(target).count

    def drop(self, target: str | None, paths: set[str], path_of) -> None:
        """Leave out the records of ``target`` at ``paths`` (each one of its records, by
        ``path_of(record)``): every later read of the group skips them, and its count
        says so."""
        group = self._group(target)
        group.dropped = group.dropped | frozenset(paths)
        group.path_of = path_of
        group.count -= len(paths)

    def discard(self, target: str | None) -> None:
        """Drop what is left of one group's records (another process writes them)."""
        group = self._group(target)
        group.held, group.extra = [], []
        group.close()

    def release(self) -> None:
        """Move every record to disk now (a walk kept while other work needs the memory)."""
        self._spilled = True
        for group in self._groups.values():
            group.spill(self._fields)

    def __iter__(self):
        return chain.from_iterable(self.group(t) for t in self.names())

    def __len__(self) -> int:
        return sum(g.count for g in self._groups.values())

    def close(self) -> None:
        for group in self._groups.values():
            group.close()


class _Group:
    def __init__(self) -> None:
        self.held: list = []
        self.count = 0
        self.extra: list = []
        self.extra_key = None
        self._file = None
        self.dropped: frozenset = frozenset()      # paths of records left out (``drop``)
        self.path_of = None

    def spill(self, fields) -> None:
        if not self.held:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        for start in range(0, len(self.held), CHUNK):
            write_chunk(self._file, [fields(r) for r in self.held[start:start + CHUNK]])
        self.held.clear()

    def records(self, make, consume: bool = False):
        walked = self._walked(make, consume)
        merged = heapq.merge(walked, self.extra, key=self.extra_key) if self.extra else walked
        if self.dropped:
            dropped, path_of = self.dropped, self.path_of
            return (record for record in merged if path_of(record) not in dropped)
        return merged

    def _walked(self, make, consume: bool):
        if self._file is not None:
            self._file.flush()
            for chunk in read_chunks(self._file.fileno()):
                yield from map(make, chunk)
            if consume:
                self.close()
        if not consume:
            yield from self.held
            return
        held = self.held
        held.reverse()          # popped from the end: each record goes once written
        while held:
            yield held.pop()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
