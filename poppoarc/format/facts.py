"""The facts cache: what the next incremental needs of an archive's index, kept locally.

An incremental compares each live file's stat facts with its parent's record and, when
they are equal, references the parent's content (spec/FORMAT.md §12.2, §12.3).  Reading
the parent's index for that means decompressing, parsing and checking every record of
it; for an installation of many small files that is most of an unchanged incremental's
work.  So a pack in a chain also writes, beside its archive, the few facts of each of
its records that the next incremental compares and copies (this module's bytes;
``archives/facts.py`` keeps the files), and the next incremental reads those instead.

The cache is never trusted for more than the index would say: it is written by this
installation from the records it put into the archive it just signed, and it is
authenticated with a key derived from the installation's signing key (HMAC-SHA256),
bound to the archive's id and the signed SHA-256 of its index.  A cache that fails
any of that (edited, cut, another archive's, another key's) is ignored with a warning
and the parent's index is read as without it: a changed file cannot be hidden by
editing the cache without the signing key.  Not part of the archive format: an archive
never depends on it, and deleting it only costs time.

A database is captured with SQLite's backup API, hashed block by block and compared with
its parent's snapshot (§12.4): for a large database that is most of an unchanged
incremental's work.  So the cache also keeps, per database, what the live files looked
like just before the capture began (``SOURCE``: the clock, then the lstat of the file and
of its ``-wal``, and whether a ``-journal`` was there) with the manifest's facts of the
snapshot; the next incremental writes the parent's snapshot again as an empty delta
(§12.4, ``delta: []``) without capturing, when ``capture_unchanged`` says the live files
cannot have changed since (the rule, and why it is safe, is there).

Layout: a header line, then chunks, each ``length (4 bytes, big-endian) | zstd frame of a
marshal'd list | HMAC tag (32 bytes)``; the tag covers the archive binding, the chunk's
number, whether it is the last, and its bytes, so chunks cannot be reordered, dropped or
taken from another cache.  The last chunk holds the trailer (the record count, the
database records and the databases' source facts).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import marshal
import struct

import pyzstd

from .blocks import block_size_for
from .chains import reusable
from .entry import IndexEntry
from .order import index_order
from .records import _text

MAGIC = b"poppoarc-facts/1\n"
CHUNK_RECORDS = 4096
TAG = 32
MAX_CHUNK = 64 << 20            # compressed bytes of one chunk a reader accepts
_LENGTH = struct.Struct(">I")

# One file record: what unchanged_by_stat compares and what a reference copies.
(TARGET, PATH, SIZE, MTIME, CTIME, INO, MODE, UID, GID, SHA256, HMAC, HOLDER) = range(12)

# A database's source facts (``snapshot.sqlite.source_facts``), a list of 10 values:
# the clock before the lstat calls, the file's device, inode, size, mtime_ns and ctime_ns,
# the -wal's inode, size and mtime_ns (three None when there is none), and whether a
# -journal was there.  Not the -wal's ctime: SQLite running as root gives the -wal the
# database's owner (fchown) whenever a connection opens it, so every reader, this
# pack's own capture included, changes it; its content changes only by writes, which
# change its mtime.
SOURCE_FIELDS = 10
# A time stamp this close to the moment the facts were taken may be shared by a write
# that came after them ("racily clean", as git says of its index): the file system's
# time stamp granularity (2 s on FAT, 1 s on ext3 and HFS+; the kernel's coarse clock
# lags the one read here by up to a tick) bounds it.
RACY_MARGIN_NS = 2 * 10**9


class FactsRejected(ValueError):
    """The cache is not one this installation wrote for this archive."""


def cache_key(signing_private: bytes) -> bytes:
    """The MAC key: derived from the signing key, so only this installation can write it."""
    return hmac.new(signing_private, b"poppoarc facts cache/1", hashlib.sha256).digest()


def file_facts(entry: IndexEntry) -> tuple | None:
    """A record's facts, or None when no incremental could reference it (§12.2)."""
    if entry.ino is None or entry.sealed is not None or not reusable(entry):
        return None
    return (entry.target, entry.path, entry.size, entry.mtime_ns, entry.ctime_ns, entry.ino,
            entry.mode, entry.uid, entry.gid, entry.sha256, entry.hmac_sha256, entry.stored_in)


def unchanged(facts: tuple, size: int, mtime_ns: int, ctime_ns: int, ino: int, mode: int,
              uid: int, gid: int) -> bool:
    """``chains.unchanged_by_stat`` on cached facts."""
    recorded_ctime = facts[CTIME] if facts[CTIME] is not None else facts[MTIME]
    return (facts[SIZE], facts[MTIME], recorded_ctime, facts[INO], facts[MODE], facts[UID],
            facts[GID]) == (size, mtime_ns, ctime_ns, ino, mode, uid, gid)


def capture_unchanged(recorded, live, margin_ns: int | None = None) -> bool:
    """Whether a database whose files looked like ``live`` now is certainly what its
    parent captured after taking ``recorded`` (both ``SOURCE`` lists): the parent's
    snapshot then stands for it.

    Equal facts are not enough by themselves.  A write changes the mtime and ctime of
    the file it writes (the database, or its -wal: a WAL database's commits append to
    it, a checkpoint writes the database; the -wal's ctime is not kept, see
    ``SOURCE_FIELDS``), but a write in the same time stamp tick as the one recorded
    leaves both as they were; so every recorded time stamp must be older than the
    moment the facts were taken, less ``margin_ns`` (``RACY_MARGIN_NS``).  A database
    replaced by a rename has another inode (and a new ctime, which no one can set); a
    -wal that appeared or went differs; a -journal (a rollback in progress, or a hot
    journal a reader would roll back) is never trusted; a file system without time
    stamps or inode numbers (zeros) is never trusted.  (A clock set back by more than
    the margin, or a network file system whose server's clock lags, can defeat this
    as it defeats git's index: ``--check-content`` always captures.)
    """
    if not (_source_ok(recorded) and _source_ok(live)) or recorded[1:] != live[1:]:
        return False
    taken, _, ino, _, mtime, ctime, wal_ino, _, wal_mtime, journal = recorded
    if journal or not ino:
        return False
    stamps = [mtime, ctime]
    if wal_ino is not None:
        if not wal_ino:
            return False
        stamps.append(wal_mtime)
    margin = RACY_MARGIN_NS if margin_ns is None else margin_ns
    return min(stamps) > 0 and max(stamps) < taken - margin


def _source_ok(source) -> bool:
    if type(source) not in (list, tuple) or len(source) != SOURCE_FIELDS \
            or type(source[-1]) is not bool:
        return False
    numbers, wal = source[:6], source[6:9]
    return all(type(n) is int for n in numbers) and (
        all(type(n) is int for n in wal) or all(n is None for n in wal))


def reusable_capture(record) -> bool:
    """Whether a parent's database record can be written again as an empty delta: a
    snapshot, not sealed, with block digests of the size a writer keeps for it."""
    return (isinstance(record, IndexEntry) and record.sqlite and record.blocks is not None
            and record.sealed is None and record.sha256 is not None and not record.changed
            and block_size_for(record.size, record.blocks["size"]) == record.blocks["size"])


def referenced(facts: tuple, parent_id: str) -> tuple:
    """The facts of the reference to an unchanged file (its content where it was)."""
    if facts[HOLDER] is not None:
        return facts
    return facts[:HOLDER] + (parent_id,)


def reference_entry(facts: tuple, parent_id: str) -> IndexEntry:
    """The reference to an unchanged file as a record (``chains.reference``)."""
    facts = referenced(facts, parent_id)
    ctime = facts[CTIME] if facts[CTIME] != facts[MTIME] else None
    return IndexEntry(facts[PATH], facts[TARGET], "file", facts[MODE], facts[UID], facts[GID],
                      facts[MTIME], facts[SIZE], facts[SHA256], hmac_sha256=facts[HMAC],
                      ctime_ns=ctime, ino=facts[INO], stored_in=facts[HOLDER])


def reference_line(facts: tuple) -> bytes:
    """The index line of the reference to an unchanged file whose live stat facts equal
    ``facts`` (those of ``referenced``): ``encode_entry(chains.reference(...))``, built
    without the record object.  Keys in code point order, as ``records.encode_entry``."""
    ctime = facts[CTIME]
    ctime = "" if ctime is None or ctime == facts[MTIME] else f'"ctime_ns":{ctime},'
    mac = "" if facts[HMAC] is None else f'"hmac_sha256":{_text(facts[HMAC])},'
    digest = "" if facts[SHA256] is None else f',"sha256":{_text(facts[SHA256])}'
    target = "null" if facts[TARGET] is None else _text(facts[TARGET])
    return (f'{{{ctime}"gid":{facts[GID]},{mac}"ino":{facts[INO]},"mode":{facts[MODE]},'
            f'"mtime_ns":{facts[MTIME]},"path":{_text(facts[PATH])}{digest},'
            f'"size":{facts[SIZE]},"stored_in":{_text(facts[HOLDER])},"target":{target},'
            f'"type":"file","uid":{facts[UID]}}}\n').encode("utf-8")


def _tag(key: bytes, binding: bytes, number: int, last: bool, data: bytes) -> bytes:
    mac = hmac.new(key, binding, hashlib.sha256)
    mac.update(struct.pack(">QB", number, last))
    mac.update(data)
    return mac.digest()


def _binding(archive_id: str, root: str) -> bytes:
    return hashlib.sha256(json.dumps([archive_id, root]).encode()).digest()


class FactsWriter:
    """Collects facts in index order (``add``) into ``out``; ``finish`` seals the cache
    with the index's signed hash."""

    def __init__(self, out, key: bytes, archive_id: str, root: str) -> None:
        self.out, self._key = out, key
        self._binding = _binding(archive_id, root)
        self._header = {"archive_id": archive_id, "root": root}
        self._pending: list[tuple] = []
        self._number = 0
        self.count = 0
        self.databases: list[bytes] = []        # sqlite records' index lines
        self.sources: list[list] = []           # [path, SOURCE, manifest record]
        self._compressor = pyzstd.ZstdCompressor(1)
        out.write(MAGIC)
        self._chunk(json.dumps(self._header).encode(), last=False)

    def add(self, facts: tuple) -> None:
        self._pending.append(facts)
        self.count += 1
        if len(self._pending) >= CHUNK_RECORDS:
            self._flush()

    def add_database(self, line: bytes) -> None:
        self.databases.append(line)

    def add_source(self, path: str, source, manifest_record: dict) -> None:
        """A database's facts before its capture (``SOURCE``) and its manifest record."""
        self.sources.append([path, list(source), manifest_record])

    def _flush(self) -> None:
        if self._pending:
            self._chunk(marshal.dumps(self._pending), last=False)
            self._pending = []

    def _chunk(self, data: bytes, last: bool) -> None:
        packed = pyzstd.compress(data, 1)
        self.out.write(_LENGTH.pack(len(packed)) + packed
                       + _tag(self._key, self._binding, self._number, last, packed))
        self._number += 1

    def finish(self, index_sha256: str) -> None:
        self._flush()
        trailer = {"index_sha256": index_sha256, "records": self.count,
                   "databases": [line.decode("utf-8") for line in self.databases],
                   "sources": self.sources}
        self._chunk(json.dumps(trailer).encode(), last=True)


class CachedFacts:
    """A verified cache, read back: ``Cursor``-like lookups in index order."""

    def __init__(self, chunks: list[bytes], databases: list[IndexEntry],
                 sources: dict | None = None) -> None:
        self._chunks = iter(chunks)
        self._records: list = []
        self._at = 0
        self._current = self._next()
        self._matched = False           # the current record was found (paths only rise)
        self._databases = {(d.target, d.path): d for d in databases}
        self._by_path = {d.path: d for d in databases}
        self._sources = sources or {}       # path: (SOURCE, manifest record)

    def capture(self, path: str):
        """(The parent's record of the database at ``path``, its source facts, its
        manifest record), or None.  Any thread may ask (``find`` is the body's)."""
        record, source = self._by_path.get(path), self._sources.get(path)
        if record is None or source is None:
            return None
        return (record, *source)

    def _next(self):
        while self._at >= len(self._records):
            chunk = next(self._chunks, None)
            if chunk is None:
                return None
            self._records, self._at = marshal.loads(pyzstd.decompress(chunk)), 0
        record = self._records[self._at]
        self._at += 1
        return record

    def find(self, target: str | None, path: str):
        """A file's facts (a tuple), a database's record (an ``IndexEntry``), or None."""
        current = self._current
        if current is not None:
            if current[PATH] == path and current[TARGET] == target:
                self._matched = True
                return current
            if self._matched:           # the common case: the one after the last found
                current = self._current = self._next()
                self._matched = False
                if current is not None and current[PATH] == path and current[TARGET] == target:
                    self._matched = True
                    return current
        database = self._databases.get((target, path))
        if database is not None:
            return database
        wanted = index_order(target, path)
        while self._current is not None and \
                index_order(self._current[TARGET], self._current[PATH]) < wanted:
            self._current = self._next()
        current = self._current
        if current is not None and current[PATH] == path and current[TARGET] == target:
            self._matched = True
            return current
        return None


def read_cache(data: bytes, key: bytes, archive_id: str, root: str,
               index_sha256: str) -> CachedFacts:
    """The cache in ``data``, checked whole before anything of it is used
    (FactsRejected otherwise)."""
    if not data.startswith(MAGIC):
        raise FactsRejected("not a facts cache")
    binding = _binding(archive_id, root)
    chunks, position, number, trailer = [], len(MAGIC), 0, None
    while trailer is None:
        if position + _LENGTH.size > len(data):
            raise FactsRejected("cut short")
        (length,) = _LENGTH.unpack_from(data, position)
        start, end = position + _LENGTH.size, position + _LENGTH.size + length
        if length > MAX_CHUNK or end + TAG > len(data):
            raise FactsRejected("cut short")
        packed = data[start:end]
        tag = data[end:end + TAG]
        last = hmac.compare_digest(tag, _tag(key, binding, number, True, packed))
        if not last and not hmac.compare_digest(tag, _tag(key, binding, number, False, packed)):
            raise FactsRejected("its authentication tag does not match (edited, or written "
                                "with another key or for another archive)")
        if number == 0:
            header = json.loads(pyzstd.decompress(packed))
            if header != {"archive_id": archive_id, "root": root}:
                raise FactsRejected("written for another archive")
        elif last:
            trailer = json.loads(pyzstd.decompress(packed))
        else:
            chunks.append(packed)
        position, number = end + TAG, number + 1
    if position != len(data):
        raise FactsRejected("bytes after its end")
    if trailer.get("index_sha256") != index_sha256:
        raise FactsRejected("written for another index of this archive id")
    databases = [IndexEntry(**json.loads(line)) for line in trailer["databases"]]
    return CachedFacts(chunks, databases, _sources(trailer.get("sources", [])))


def _sources(rows) -> dict:
    """The databases' source facts of a trailer (one an older writer made has none)."""
    found = {}
    for row in rows if type(rows) is list else ():
        if type(row) is list and len(row) == 3 and type(row[0]) is str \
                and _source_ok(row[1]) and type(row[2]) is dict and row[2].get("path") == row[0]:
            found[row[0]] = (row[1], row[2])
    return found
