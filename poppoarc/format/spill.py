"""A table of values by path that moves to disk when it grows: memory bounded whatever an
index holds.

A reader sometimes needs to look paths up: the files hard links name, the symlinks a
link's target may pass through.  An archive may hold few of them (the common case, a
dictionary) or, made by someone who wants a reader to run out of memory, millions of
4 KiB paths.  Past ``limit`` bytes the table moves into a private temporary SQLite
database (on disk, gone when closed, with a cache of a few MiB) and goes on there.
"""

from __future__ import annotations

import marshal
import sqlite3

DEFAULT_LIMIT = 8 << 20
_ENTRY_COST = 120           # bytes a small entry costs in a dictionary, beside its path


class PathTable:
    def __init__(self, limit: int = DEFAULT_LIMIT):
        self._limit = limit
        self._memory: dict[str, list] | None = {}
        self._size = 0
        self._disk: sqlite3.Connection | None = None
        self.count = 0

    def add(self, key: str, value: tuple) -> None:
        self.count += 1
        if self._memory is not None:
            self._memory.setdefault(key, []).append(value)
            self._size += len(key) + _ENTRY_COST + sum(len(v) for v in value
                                                       if isinstance(v, str))
            if self._size > self._limit:
                self._to_disk()
            return
        self._disk.execute("INSERT INTO entries VALUES (?, ?)", (key, marshal.dumps(value)))

    def get(self, key: str) -> list:
        if self._memory is not None:
            return self._memory.get(key, [])
        return [marshal.loads(data) for (data,) in self._disk.execute(
            "SELECT value FROM entries WHERE key = ? ORDER BY rowid", (key,))]

    def __contains__(self, key: str) -> bool:
        if self._memory is not None:
            return key in self._memory
        return self._disk.execute("SELECT 1 FROM entries WHERE key = ? LIMIT 1",
                                  (key,)).fetchone() is not None

    def pop(self, key: str) -> list:
        """The values of ``key``, removed from the table."""
        if self._memory is not None:
            values = self._memory.pop(key, [])
        else:
            values = self.get(key)
            self._disk.execute("DELETE FROM entries WHERE key = ?", (key,))
        self.count -= len(values)
        return values

    def any(self) -> tuple[str, tuple] | None:
        """Some (key, value) still in the table, or None."""
        if self._memory is not None:
            for key, values in self._memory.items():
                return key, values[0]
            return None
        row = self._disk.execute("SELECT key, value FROM entries LIMIT 1").fetchone()
        return (row[0], marshal.loads(row[1])) if row else None

    def items(self):
        """Every (key, value), the table left as it is (lookups may go on meanwhile)."""
        if self._memory is not None:
            for key, values in list(self._memory.items()):
                for value in values:
                    yield key, value
            return
        cursor = self._disk.execute("SELECT key, value FROM entries ORDER BY rowid")
        while rows := cursor.fetchmany(1024):
            for key, data in rows:
                yield key, marshal.loads(data)

    def _to_disk(self) -> None:
        self._disk = sqlite3.connect("")        # a private temporary file
        self._disk.execute("PRAGMA cache_size=-4096")       # KiB
        self._disk.execute("CREATE TABLE entries(key TEXT, value BLOB)")
        self._disk.executemany("INSERT INTO entries VALUES (?, ?)",
                               ((key, marshal.dumps(value)) for key, values in
                                self._memory.items() for value in values))
        self._disk.execute("CREATE INDEX by_key ON entries(key)")
        self._memory = None

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        self._memory = {}

    def __enter__(self) -> "PathTable":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
