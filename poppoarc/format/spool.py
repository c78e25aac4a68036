"""Index records on disk: written as a pack goes, read back lazily after a check.

A pack of 100,000 files must not hold 100,000 index records in memory, and
neither must a reader (spec/FORMAT.md §5.4: the index can be large).
"""

from __future__ import annotations

import io
import shutil
import tempfile

from .manifest import IndexEntry
from .records import encode_entry


class IndexSpool:
    """Index records in body order, encoded into a temporary file as they are appended,
    so a pack of N files does not hold N records in memory.

    A record appended with ``deferred=True`` stays an object (and may still be changed,
    like a database snapshot whose check fails later) and is encoded at ``write_to``.
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile()
        self._count = 0
        self._deferred: list[tuple[int, IndexEntry]] = []     # (spool offset, record)

    def append(self, entry: IndexEntry, *, deferred: bool = False) -> None:
        if deferred:
            self._deferred.append((self._file.tell(), entry))
        else:
            self._file.write(encode_entry(entry))
        self._count += 1

    def __len__(self) -> int:
        return self._count

    @property
    def deferred(self) -> list[IndexEntry]:
        return [entry for _, entry in self._deferred]

    def write_to(self, out) -> None:
        """Every record's line, in the order appended."""
        self._file.flush()
        self._file.seek(0)
        done = 0
        for offset, entry in self._deferred:
            shutil.copyfileobj(_Limited(self._file, offset - done), out)
            done = offset
            out.write(encode_entry(entry))
        shutil.copyfileobj(self._file, out)
        self._file.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._file.close()


class _Limited:
    def __init__(self, source, remaining: int) -> None:
        self.source, self.remaining = source, remaining

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self.source.read(size)
        self.remaining -= len(data)
        return data
