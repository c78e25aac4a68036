"""Index records on disk: written as a pack goes, read back lazily after a check.

A pack of 100,000 files must not hold 100,000 index records in memory, and
neither must a reader (spec/FORMAT.md §5.4: the index can be large).
"""

from __future__ import annotations

import heapq
import io
import json
import shutil
import tempfile
from array import array
from collections import deque

from .entry import CHUNK_SIZE, IndexEntry
from .facts import file_facts, reference_line
from .records import encode_entry


class IndexSpool:
    """Index records in body order, encoded into a temporary file as they are appended,
    so a pack of N files does not hold N records in memory.

    A record appended with ``deferred=True`` stays an object (and may still be changed,
    like a database snapshot whose check fails later) and is encoded at ``write_to``.
    A sealed file's record is complete only once the sealing pool has written its
    members (``sealed`` fills in order): it waits in a short queue and is encoded into
    a side file as soon as it is complete, so 100,000 sealed files do not pile up.
    """

    def __init__(self, facts=None) -> None:
        """``facts``: a ``facts.FactsWriter`` that collects the next incremental's facts
        of the records as they come (None: no facts cache)."""
        self.facts = facts
        self._file = tempfile.TemporaryFile()
        self._count = 0
        self._deferred: list[tuple[int, int, IndexEntry]] = []   # (sequence, offset, record)
        self._pending: deque[tuple[int, int, IndexEntry]] = deque()
        self._side = tempfile.TemporaryFile()
        self._settled = array("q")          # (sequence, offset, side start, length) ...

    def append(self, entry: IndexEntry, *, deferred: bool = False) -> None:
        if not deferred:        # the common case, once per plain file: no tell()
            self._file.write(encode_entry(entry))
            self._count += 1
            if self.facts is not None:
                found = file_facts(entry)
                if found is not None:
                    self.facts.add(found)
            if self._pending:
                self._settle()
            return
        item = (self._count, self._file.tell(), entry)
        if entry.sealed is not None and not entry.sqlite:
            self._pending.append(item)
        else:
            self._deferred.append(item)
        self._count += 1
        self._settle()

    def append_reference(self, facts: tuple) -> None:
        """The reference to an unchanged file, from its cached facts (``facts.referenced``):
        the line ``append`` would write for it."""
        self._file.write(reference_line(facts))
        self._count += 1
        if self.facts is not None:
            self.facts.add(facts)
        if self._pending:
            self._settle()

    def extend_encoded(self, source, count: int) -> None:
        """Append ``count`` records encoded elsewhere (``write_to`` of another spool),
        read from ``source`` to its end."""
        self._file.seek(0, io.SEEK_END)
        lines, partial = 0, b""
        while chunk := source.read(1 << 20):
            lines += chunk.count(b"\n")
            self._file.write(chunk)
            if self.facts is not None:     # (a share of a full pack: its records decoded)
                *whole, partial = (partial + chunk).split(b"\n")
                for line in whole:
                    found = file_facts(IndexEntry(**json.loads(line)))
                    if found is not None:
                        self.facts.add(found)
        if lines != count:
            raise ValueError(f"{lines} encoded records where {count} were expected")
        self._count += count

    def _settle(self) -> None:
        while self._pending and _complete(self._pending[0][2]):
            sequence, offset, entry = self._pending.popleft()
            line = encode_entry(entry)
            self._settled.extend((sequence, offset, self._side.tell(), len(line)))
            self._side.write(line)

    def __len__(self) -> int:
        return self._count

    @property
    def deferred(self) -> list[IndexEntry]:
        """The records still held as objects (databases): they may still change."""
        return [entry for _, _, entry in self._deferred]

    def write_to(self, out) -> None:
        """Every record's line, in the order appended (every sealing finished by now)."""
        self._settle()
        if self._pending:
            raise ValueError("index record written before its sealed members")
        self._file.flush()
        self._file.seek(0)
        self._side.flush()
        settled = ((self._settled[i], self._settled[i + 1], self._settled[i + 2],
                    self._settled[i + 3]) for i in range(0, len(self._settled), 4))
        objects = ((sequence, offset, entry, None) for sequence, offset, entry in self._deferred)
        done = 0
        for sequence, offset, what, length in heapq.merge(settled, objects, key=lambda i: i[0]):
            shutil.copyfileobj(_Limited(self._file, offset - done), out)
            done = offset
            if length is None:
                line = encode_entry(what)
                out.write(line)
                if self.facts is not None and what.sqlite:
                    self.facts.add_database(line)
            else:
                self._side.seek(what)
                out.write(self._side.read(length))
        shutil.copyfileobj(self._file, out)
        self._file.seek(0, io.SEEK_END)

    def close(self) -> None:
        self._file.close()
        self._side.close()


def _complete(entry: IndexEntry) -> bool:
    return len(entry.sealed) == max(1, -(-entry.payload_size() // CHUNK_SIZE))


class _Limited:
    def __init__(self, source, remaining: int) -> None:
        self.source, self.remaining = source, remaining

    def read(self, size: int = -1) -> bytes:
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self.source.read(size)
        self.remaining -= len(data)
        return data
