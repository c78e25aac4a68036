"""The databases of a pack: snapshots made with the backup API from the moment the walk
finds each database (``SnapshotSession``), each checked apart, and written into the
body whole or, for an incremental, as the blocks that changed since the parent's
snapshot (spec §8, §12.4).  The functions take the ``Body`` they write into.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import DatabaseSnapshotError
from ..format import chains, facts
from ..format.blocks import BlockHasher, block_size_for, hash_blocks, read_blocks
from ..format.entry import IndexEntry, block_digests, encode_digests
from ..format.writer import BodyWriter, StoredFile
from ..parallel import Parallelism
from ..snapshot import sqlite as sqlite_snapshot
from ..snapshot.scan import SourceEntry
from ..store import leftovers


@dataclass(frozen=True)
class Unchanged:
    """A database whose live files are as they were when the parent captured it
    (``format.facts.capture_unchanged``): the parent's snapshot stands for it."""

    record: IndexEntry          # the parent's record of it
    source: list                # the facts the parent took before its capture
    manifest: dict              # the parent's manifest record of it


def snapshot_of(body, path: str, target: str | None = None) -> Path | None | bool | Unchanged:
    """The finished snapshot of the database at ``path``; None: archive the live
    file as it is, when a safety archive meets a damaged database; False: not
    archived, as SQLite cannot open it here (a warning names it); ``Unchanged``: not
    captured, the parent's snapshot stands for it (``write_unchanged``)."""
    try:
        snapshot, check = body.snapshots.take(path)
        if isinstance(snapshot, Unchanged) and snapshot.record.target != target:
            # a delta's base is the parent's record of the same path and target (§12.4)
            snapshot, check = body.snapshots.capture(path)
    except DatabaseSnapshotError as exc:
        if exc.unopenable:
            body.warnings.skip(path, f"{exc.message}; not archived")
            return False
        if not body.keep_damaged_databases:
            raise
        mark_damaged(body, path, exc, "as the raw live file (without its WAL)")
        return None     # archived from the live file, byte for byte
    if isinstance(snapshot, Unchanged):
        body.databases.append(dict(snapshot.manifest))
        return snapshot
    record = {"path": path}
    body.databases.append(record)
    body.checks.append((record, check))
    return snapshot


def unchanged_capture(parent, path: str, source: list) -> Unchanged | None:
    """The parent's capture of the database at ``path`` when the live files, whose facts
    are ``source`` now, are as they were before it (``format.facts.capture_unchanged``);
    None: capture it.  Only a facts cache (``format.facts.CachedFacts``) keeps them."""
    capture = getattr(parent.records, "capture", None) if parent is not None else None
    found = capture(path) if capture is not None else None
    if found is None:
        return None
    record, recorded, manifest = found
    if not (facts.reusable_capture(record) and facts.capture_unchanged(recorded, source)):
        return None
    return Unchanged(record, recorded, manifest)


def write_unchanged(body, writer: BodyWriter, entry: SourceEntry, unchanged: Unchanged) -> int:
    """The parent's snapshot again, as a delta of no block (§12.4: ``delta: []``, an
    empty member): what ``write`` stores for a captured database whose every block
    equals the parent's, without capturing or reading it."""
    previous = unchanged.record
    block_size = previous.blocks["size"]
    st_meta = (entry.mode, entry.mtime_ns, entry.uid, entry.gid)
    writer.add_delta(entry.path, -1, previous.size, b"", block_size, [], *st_meta)
    stored = StoredFile(previous.sha256, previous.size, False,
                        blocks=block_digests(previous), block_size=block_size)
    return body._file_record(entry, stored, [], None, st_meta)


def write(body, writer: BodyWriter, entry: SourceEntry, fd: int, size: int,
          st_meta: tuple) -> tuple[StoredFile, list | None]:
    """A database snapshot: only the blocks changed since the parent's snapshot
    (§12.4), or whole.  Returns what was stored and the delta's block numbers
    (None: whole)."""
    previous = body.parent.records.find(entry.target, entry.path) if body.parent else None
    if type(previous) is tuple:     # a plain file's cached facts (format/facts.py)
        previous = None
    base = previous if previous is not None and previous.sqlite and previous.blocks else None
    block_size = block_size_for(size, base.blocks["size"] if base else None)
    if previous is not None and previous.sqlite and previous.blocks is None:
        body.warnings.add(f"{entry.path}: stored whole: parent {body.parent.id} has no "
                          "page digests for it (it was packed while incrementals were "
                          "off); later incrementals store only changed pages")
    elif chains.delta_base(previous, block_size):
        # a sealed record's digest is its HMAC: no plain SHA-256 pass for it
        mac = body.sealer.new_mac() if body.seal_all else None
        sha256, blocks = hash_blocks(fd, size, block_size, extra=mac, whole=mac is None)
        numbers = chains.changed_blocks(previous, block_size, blocks)
        if numbers is not None:
            return _write_delta(body, writer, entry, fd, size, st_meta, sha256, mac,
                                blocks, block_size, numbers), numbers
        os.lseek(fd, 0, os.SEEK_SET)        # every block changed: stored whole
    if not body.block_digests:
        block_size = 0
    if not body.seal_all:
        return writer.add_file(entry.path, fd, size, *st_meta, block_size=block_size), None
    mode, mtime_ns, uid, gid = st_meta
    record = IndexEntry(entry.path, entry.target, "file", mode, uid, gid, mtime_ns, size)
    if not block_size:
        return body.seal(writer, record, lambda n: os.read(fd, n)), None
    hasher = BlockHasher(block_size, whole=False)   # block digests while it is sealed

    def read(n: int) -> bytes:
        data = os.read(fd, n)
        hasher.update(data)
        return data

    stored = body.seal(writer, record, read)
    hasher.hexdigest()
    stored = dataclasses.replace(stored, blocks=bytes(hasher.blocks), block_size=block_size)
    return stored, None


def _write_delta(body, writer: BodyWriter, entry: SourceEntry, fd: int, size: int,
                 st_meta: tuple, sha256: str | None, mac, blocks: bytes, block_size: int,
                 numbers: list[int]) -> StoredFile:
    """The changed blocks of a database, plain or sealed."""
    if mac is None:
        writer.add_delta(entry.path, fd, size, blocks, block_size, numbers, *st_meta)
        return StoredFile(sha256, size, False, blocks=blocks, block_size=block_size)
    mode, mtime_ns, uid, gid = st_meta
    record = IndexEntry(entry.path, entry.target, "file", mode, uid, gid, mtime_ns, size,
                        blocks={"size": block_size, "digests": encode_digests(blocks)},
                        delta=numbers)
    read = _Chunks(read_blocks(fd, size, blocks, block_size, numbers, entry.path)).read
    stored = body.seal(writer, record, read, record.payload_size())
    return StoredFile(None, size, False, stored.sealed, mac.hexdigest(), blocks,
                      block_size=block_size)


def record_sources(body) -> None:
    """Each archived database's facts before its capture, for the next incremental's
    facts cache (``format.facts.capture_unchanged``); after every check."""
    if body.index.facts is None:
        return
    for record in body.databases:
        source = body.snapshots.sources.get(record["path"])
        if source is not None:
            body.index.facts.add_source(record["path"], source, record)


def mark_damaged(body, path: str, error: Exception, stored_as: str) -> None:
    body.damaged.add(path)
    body.warnings.add(f"{error}; stored unchecked, {stored_as}")
    for record in body.index.deferred:
        if record.path == path:     # no longer a database: no blocks (a safety
            record.sqlite = False   # archive is never incremental, so no delta)
            record.blocks = None


class _Chunks:
    """``read(n)`` over an iterator of byte strings."""

    def __init__(self, pieces):
        self._pieces, self._buffer = iter(pieces), b""

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._buffer += piece
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


class SnapshotSession:
    """The database snapshots of one pack, in a temporary directory that goes with it.

    Each database is copied with the backup API on a worker of its own from the moment the
    walk finds it (``start``), then checked on another (``Parallelism.executor``: threads,
    or work done when it is taken); the body takes each copy when it reaches the database.
    Started during the walk, the copy of a large database overlaps the rest of the walk
    instead of stalling the writer.  Leaving the session (an error, or the end of the
    body) cancels the copies not yet started, waits for the running ones and removes
    every copy.
    """

    def __init__(self, root: Path, snapshot_dir: Path | None, full_check: bool,
                 parallel: Parallelism,
                 unchanged: Callable[[str, list], Unchanged | None] | None = None):
        """``unchanged(path, source facts)``: the parent's capture that stands for the
        database at ``path`` (it may wait for the parent to be read), or None: capture."""
        self.root, self.full_check = root, full_check
        self._unchanged = unchanged
        # path: the source facts its snapshot stands for (``snapshot.sqlite.source_facts``)
        self.sources: dict[str, list] = {}
        self._stack = contextlib.ExitStack()
        self._dir = Path(self._stack.enter_context(     # its name says whose (leftovers)
            leftovers.temporary_directory(leftovers.SNAPSHOT_PREFIX, snapshot_dir)))
        self._checker = self._stack.enter_context(parallel.executor("check"))
        # leaving early (an error) cancels the copies not yet started
        self._copier = parallel.executor("snapshot")
        self._stack.callback(self._copier.shutdown, wait=True, cancel_futures=True)
        # path: (its snapshot file, future of (snapshot, future of its check))
        self._copies: dict[str, tuple[Path, Future]] = {}
        self._started = 0               # numbers the snapshot files (taken ones leave _copies)

    def start(self, path: str) -> None:
        """Queue the copy of the database at ``path`` (relative to the root), once."""
        if path not in self._copies:
            snapshot = self._next_file()
            self._copies[path] = snapshot, self._copier.submit(self._copy, path, snapshot)

    def take(self, path: str) -> tuple[Path, Future]:
        """(The snapshot of ``path``, future of its check); raises DatabaseSnapshotError.
        Made, or being made, on the copy thread; or, when it still waits there behind
        another database (the walk finds them in directory order, the body wants them in
        path order) or was never started, made now on the caller's thread."""
        if path not in self._copies:
            return self._copy(path, self._next_file())
        snapshot, copied = self._copies.pop(path)
        if copied.cancel():
            return self._copy(path, snapshot)
        return copied.result()

    def capture(self, path: str) -> tuple[Path, Future]:
        """``take`` a fresh capture, whatever the parent's (on the caller's thread)."""
        return self._copy(path, self._next_file(), may_reuse=False)

    def _next_file(self) -> Path:
        self._started += 1
        return self._dir / f"{self._started}.db"

    def _copy(self, path: str, snapshot: Path, may_reuse: bool = True):
        source = sqlite_snapshot.source_facts(self.root / path)    # before the copy
        if source is not None and self._unchanged is not None and may_reuse:
            unchanged = self._unchanged(path, source)
            if unchanged is not None:
                self.sources[path] = unchanged.source
                return unchanged, None
        sqlite_snapshot.copy(self.root / path, snapshot)
        if source is not None:
            self.sources[path] = source
        return snapshot, self._checker.submit(sqlite_snapshot.check, snapshot, path,
                                              self.full_check)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> "SnapshotSession":
        return self

    def __exit__(self, *exc_info) -> bool:
        self.close()
        return False
