"""The body of a pack: every selected entry streamed into the archive writer.

``Body.write_body`` walks the targets in order, snapshots the databases (checked in the
background: ``databases.py``), seals what must be sealed, stores database deltas and
references unchanged files of an incremental's parent; it keeps the bookkeeping the
manifest needs (targets, databases, counts) and spools the index records.  A target's
share may be written by a helper (``share.py``) and spliced in.  ``steps.py`` decides
what to pack (``plan.py``) and finishes the archive.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import stat
from datetime import datetime
from itertools import islice
from pathlib import Path

from ..errors import DatabaseSnapshotError, SourceError, Warnings
from ..format import chains, facts, tarheader
from ..format.entry import BUNDLE_MAX, CHUNK_SIZE, IndexEntry, encode_digests, needs_digest
from ..format.spool import IndexSpool
from ..format.writer import READ_CHUNK, BodyWriter, StoredFile
from ..format.order import in_target_order
from ..snapshot.scan import DATABASE, DIR, FILE, SYMLINK, SourceEntry, is_plain
from . import databases, share
from .bodyplan import BodyPlan

ENVIRONMENT_MEMBER = ".poppoarc/environment.json"
# A sealed file's record lists one member per 4 MiB chunk; an index line holds at most
# 4 MiB (spec §14): past 64 Ki chunks the list would come near it.
MAX_SEALED_FILE = 256 << 30


class Body:
    """The body-writing loop, with the bookkeeping the manifest needs."""

    def __init__(self, root, selected, warnings: Warnings, progress=None,
                 plan: BodyPlan = BodyPlan(), walked=None, snapshots=None, subtree=None,
                 facts=None):
        """``walked``: the walk's ``ScanResult`` (its records by target, in index order;
        byte totals for progress and shares); ``snapshots``: the database copies the walk
        started (``databases.SnapshotSession``); ``subtree``: the helper that walked one
        target's directories (``subtree.SubtreeHelper``), to be told its share; ``facts``:
        the ``format.facts.FactsWriter`` of the next incremental's facts cache, or None."""
        sealing = plan.sealing
        self.plan = plan
        self.sealer = sealing.sealer if sealing else None
        self.seal_all = bool(sealing and sealing.everything)
        self.secrets = sealing.secrets if sealing else frozenset()
        self.archive_mtime_ns = sealing.mtime_ns if sealing else 0
        self.index_base = sealing.index_base if sealing else 0
        self.parent, self.check_content = plan.parent, plan.check_content
        self.block_digests = plan.block_digests or plan.parent is not None
        self.keep_damaged_databases = plan.keep_damaged_databases
        self.reused = 0
        self.damaged: set[str] = set()
        self.root = Path(root)
        self._root_text = str(root)     # str concatenation: pathlib costs µs per file
        self.snapshots = snapshots
        self.selected = selected
        self.entries = walked.entries if walked else None   # WalkGroups, by target
        self.warnings = warnings
        self.progress = progress
        self.index = IndexSpool(facts)  # records go to a temporary file as they are written
        self.targets: dict[str, dict] = {}
        self.databases: list[dict] = []
        self.files = 0
        self.bytes_done = 0
        self.bytes_total = walked.total_bytes if walked else 0
        self.target_bytes = walked.target_bytes if walked else {}
        self.subtree = subtree
        self._links: dict[tuple[int, int], IndexEntry] = {}
        self.checks: list = []         # (manifest record, future of its DatabaseFacts)

    def write_body(self, writer: BodyWriter, env_doc: dict, now: datetime,
                   note: bytes | None = None) -> None:
        """``note``: an incremental's first member (format.note), before everything else."""
        if self.progress:               # the total is known before the databases are copied
            self.progress(0, self.bytes_total, None)
        groups, self.entries = self.entries, None
        if note is not None:
            writer.add_member(note)
        for entry in groups.take(None):     # shared parents: a frame group of their own
            self._write(writer, entry)
        writer.end_frame()                  # (nothing at all when there are none)
        # A plain file of a full, unsealed archive takes _write_plain (see there).
        plain_path = self.parent is None and not self.seal_all
        helper = share.start(self, groups) if self.parent is None else None
        try:
            with self.snapshots:            # the copies go once the body is written
                for target in in_target_order(self.selected):
                    before_files, before_index = self.files, len(self.index)
                    if helper is not None and target == helper.target:
                        size = self.write_records(writer, target,
                                                  islice(groups.take(target), helper.first),
                                                  plain_path)
                        groups.discard(target)      # the rest is the helper's
                        more, (offset, length) = share.splice(self, writer, helper,
                                                              plain_path)
                        size += more
                    else:
                        size = self.write_records(writer, target, groups.take(target),
                                                  plain_path)
                        if target == "config":
                            self._write_environment(writer, env_doc, now)
                        offset, length = writer.end_frame()
                    self.targets[target] = {"files": self.files - before_files, "size": size,
                                            "entries": len(self.index) - before_index,
                                            "stored": [offset, length]}
                # A snapshot that fails its check aborts the pack before the head is signed,
                # so no complete archive ever holds one.
                for record, future in self.checks:
                    try:
                        record.update(future.result().to_json())
                    except DatabaseSnapshotError as exc:
                        if not self.keep_damaged_databases:
                            raise
                        databases.mark_damaged(self, record["path"], exc,
                                               "as the backup API copied it")
                        self.databases.remove(record)
                databases.record_sources(self)
        finally:
            if helper is not None:
                helper.close()

    def write_records(self, writer: BodyWriter, target: str, records, plain_path: bool) -> int:
        """Archive one target's walk records, in order; returns the content bytes stored."""
        size = 0
        find = self.parent.records.find if self.parent is not None else None
        for entry in records:
            if is_plain(entry):             # a plain file: its facts come from fstat
                if plain_path:
                    size += self._write_plain(writer, target, entry[0])
                    continue
                if find is not None and len(entry) == 3:    # ... or the walk's lstat
                    previous = find(target, entry[0])
                    if type(previous) is tuple and facts.unchanged(previous, *entry[2]):
                        size += self._record_reference(facts.referenced(previous,
                                                                        self.parent.id))
                        continue
                entry = SourceEntry(entry[0], target, FILE, 0, 0, 0, 0, 0)
            size += self._write(writer, entry)
        return size

    def _write_environment(self, writer: BodyWriter, env_doc: dict, now: datetime) -> None:
        data = json.dumps(env_doc, indent=2, sort_keys=True).encode() + b"\n"
        mtime_ns = int(now.timestamp()) * 10**9
        record = IndexEntry(ENVIRONMENT_MEMBER, "config", "file", 0o600, 0, 0,
                            mtime_ns, len(data), generated=True)
        if self.seal_all:
            self.seal(writer, record, io.BytesIO(data).read, may_bundle=True)
        else:
            record.sha256 = writer.add_bytes(ENVIRONMENT_MEMBER, data, 0o600, mtime_ns)
        self.index.append(record, deferred=record.sealed is not None)

    def seal(self, writer: BodyWriter, record: IndexEntry, read,
              payload: int | None = None, may_bundle: bool = False) -> StoredFile:
        """Write one file (or ``payload`` bytes of a delta) as sealed chunks, or a small
        file into a shared bundle object; fills the record's sealed fields."""
        position = self.index_base + len(self.index)
        if may_bundle and self.seal_all and payload is None and record.size <= BUNDLE_MAX:
            stored = writer.add_bundled_file(read, record.size, position, self.sealer,
                                             self.archive_mtime_ns)
            record.sealed, record.hmac_sha256 = stored.sealed, stored.hmac_sha256
            record.bundle = stored.bundle
            return stored
        payload = record.size if payload is None else payload
        chunks = max(1, -(-payload // CHUNK_SIZE))
        if self.seal_all:
            names = [f"objects/{position:08x}.{n:04x}" for n in range(chunks)]
        else:   # PoppoBuilder's documented layout: security/env.encrypted for .env
            flat = record.path.lstrip(".").replace("/", "_") or f"{position:08x}"
            names = [f"security/{flat}.encrypted" + (f".{n}" if n else "") for n in range(chunks)]
        stored = writer.add_sealed_file(read, payload, position, names, self.sealer,
                                        self.archive_mtime_ns)
        record.sealed, record.hmac_sha256 = stored.sealed, stored.hmac_sha256
        return stored

    def _reuse(self, entry: SourceEntry, fd: int, st: os.stat_result
               ) -> IndexEntry | tuple | None:
        """The record of a file unchanged since the parent (the facts of its reference when
        the parent's facts came from the cache), or None to store it."""
        previous = self.parent.records.find(entry.target, entry.path)
        if type(previous) is tuple:     # a file's facts from the cache (format/facts.py)
            if not facts.unchanged(previous, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                   st.st_ino, st.st_mode & 0o7777, st.st_uid, st.st_gid):
                return None
            if entry.nlink > 1:         # later links name its record: a whole one
                return facts.reference_entry(previous, self.parent.id)
            return facts.referenced(previous, self.parent.id)
        if previous is None or not chains.reusable(previous):
            return None
        mode = st.st_mode & 0o7777
        if self.check_content:
            same = self.parent.content_matches(previous, lambda n: os.read(fd, n), st.st_size,
                                               st.st_mtime_ns)
            os.lseek(fd, 0, os.SEEK_SET)
        else:
            same = chains.unchanged_by_stat(previous, st.st_size, st.st_mtime_ns,
                                            st.st_ctime_ns, st.st_ino, mode, st.st_uid, st.st_gid)
        if not same:
            return None
        return chains.reference(previous, self.parent.id, path=entry.path, target=entry.target,
                                mode=mode, uid=st.st_uid, gid=st.st_gid, mtime_ns=st.st_mtime_ns,
                                ctime_ns=_ctime(st), ino=st.st_ino)

    def _write(self, writer: BodyWriter, entry: SourceEntry) -> int:
        """Archive one entry; returns the content bytes stored."""
        if entry.kind in (DIR, SYMLINK):
            return self._write_node(writer, entry)
        if entry.kind == FILE and entry.nlink > 1 and self._write_hard_link(writer, entry):
            return 0
        return self._write_file(writer, entry)

    def _write_node(self, writer: BodyWriter, entry: SourceEntry) -> int:
        """A directory or a symbolic link: its header (none in a sealed archive, which
        names no path in the tar stream) and its record."""
        if entry.kind == DIR:
            if not self.seal_all:
                writer.add_directory(entry.path, entry.mode, entry.mtime_ns, entry.uid, entry.gid)
            self.index.append(IndexEntry(entry.path, entry.target, "dir", entry.mode, entry.uid,
                                         entry.gid, entry.mtime_ns))
            return 0
        if not self.seal_all:
            writer.add_link(entry.path, tarheader.SYMLINK, entry.link, entry.mode,
                            entry.mtime_ns, entry.uid, entry.gid)
        self.index.append(IndexEntry(entry.path, entry.target, "symlink", entry.mode,
                                     entry.uid, entry.gid, entry.mtime_ns, link=entry.link))
        return 0

    def _write_hard_link(self, writer: BodyWriter, entry: SourceEntry) -> bool:
        """A further link to a file of the same target written before: a hard link record
        (True), or False when it is the first one met."""
        first = self._links.get((entry.dev, entry.ino))
        if first is None or first.target != entry.target:
            return False
        if not self.seal_all:
            writer.add_link(entry.path, tarheader.HARDLINK, first.path, first.mode,
                            first.mtime_ns, first.uid, first.gid)
        self.index.append(IndexEntry(entry.path, entry.target, "hardlink", first.mode,
                                     first.uid, first.gid, first.mtime_ns, first.size,
                                     first.sha256, link=first.path,
                                     hmac_sha256=first.hmac_sha256))
        self.files += 1
        return True

    def _write_file(self, writer: BodyWriter, entry: SourceEntry) -> int:
        """A regular file or a database snapshot: stored plain, sealed, as a delta, or
        referenced in the parent; returns the content bytes."""
        source = self._root_text + "/" + entry.path
        if entry.kind == DATABASE:
            snapshot = databases.snapshot_of(self, entry.path, entry.target)
            if snapshot is False:
                return 0
            if isinstance(snapshot, databases.Unchanged):
                return databases.write_unchanged(self, writer, entry, snapshot)
            source = snapshot or source
        fd = self._open(source, entry.path)
        if fd is None:
            return 0
        delta = None
        try:
            st = self._regular(fd, entry.path)
            if st is None:
                return 0
            if (self.seal_all or entry.path in self.secrets) and st.st_size >= MAX_SEALED_FILE:
                self.warnings.skip(entry.path, f"{st.st_size} bytes: too large to seal in one "
                                               "index record (spec §14); not archived")
                return 0
            if self.parent is not None and entry.kind == FILE:
                reused = self._reuse(entry, fd, st)
                if type(reused) is tuple:       # cached facts: the reference's line
                    return self._record_reference(reused)
                if reused is not None:
                    return self._record(reused, _link_key(entry))
            if entry.kind == DATABASE:
                st_meta = (entry.mode, entry.mtime_ns, entry.uid, entry.gid)
            else:
                st_meta = (st.st_mode & 0o7777, st.st_mtime_ns, st.st_uid, st.st_gid)
            if entry.kind == DATABASE and entry.path not in self.damaged:
                stored, delta = databases.write(self, writer, entry, fd, st.st_size, st_meta)
            elif self.seal_all or entry.path in self.secrets:
                record = IndexEntry(entry.path, entry.target, "file", st_meta[0], st_meta[2],
                                    st_meta[3], st_meta[1], st.st_size)
                stored = self.seal(writer, record, lambda n: os.read(fd, n), may_bundle=True)
            else:
                stored = self._add_plain(writer, entry.path, fd, st.st_size, st_meta)
                if stored.reread is not None:   # it changed while read: read again whole
                    st = stored.reread
                    st_meta = (st.st_mode & 0o7777, st.st_mtime_ns, st.st_uid, st.st_gid)
            if entry.kind == FILE:
                stored = _checked_after_read(stored, fd, st)
        except OSError as exc:
            raise SourceError(f"read failed: {exc.strerror}", path=source) from None
        finally:
            os.close(fd)
        return self._file_record(entry, stored, delta, st, st_meta)

    def _file_record(self, entry: SourceEntry, stored: StoredFile, delta, st,
                     st_meta: tuple) -> int:
        """The index record of a file just stored (and its database's manifest facts)."""
        is_database = entry.kind == DATABASE and entry.path not in self.damaged
        record = IndexEntry(entry.path, entry.target, "file", st_meta[0], st_meta[2], st_meta[3],
                            st_meta[1], stored.size, stored.sha256, sqlite=is_database,
                            changed=stored.changed, sealed=stored.sealed,
                            hmac_sha256=stored.hmac_sha256,
                            ctime_ns=None if entry.kind == DATABASE else _ctime(st),
                            ino=None if entry.kind == DATABASE else st.st_ino,
                            blocks={"size": stored.block_size, "digests": encode_digests(stored.blocks)}
                            if stored.blocks is not None else None, delta=delta,
                            bundle=stored.bundle)
        self._record(record, _link_key(entry))
        if stored.changed:
            self._warn_changed(entry.path)
        if is_database:
            record_of = next(d for d in self.databases if d["path"] == entry.path)
            record_of.update(size=stored.size, sha256=stored.sha256)
        return stored.size

    def _write_plain(self, writer: BodyWriter, target: str, path: str) -> int:
        """A plain file (one link, not secret) of a full, unsealed archive: ``_write``
        without the branches it cannot take.  100,000 small files take this path."""
        source = self._root_text + "/" + path
        fd = self._open(source, path)
        if fd is None:
            return 0
        try:
            st = self._regular(fd, path)
            if st is None:
                return 0
            stored = self._add_plain(writer, path, fd, st.st_size,
                                     (st.st_mode & 0o7777, st.st_mtime_ns, st.st_uid, st.st_gid))
            st = stored.reread or st        # read again whole: it changed while read
            stored = _checked_after_read(stored, fd, st)
        except OSError as exc:
            raise SourceError(f"read failed: {exc.strerror}", path=source) from None
        finally:
            os.close(fd)
        self._record(IndexEntry(path, target, "file", st.st_mode & 0o7777, st.st_uid, st.st_gid,
                                st.st_mtime_ns, stored.size, stored.sha256,
                                changed=stored.changed, ctime_ns=_ctime(st), ino=st.st_ino))
        if stored.changed:
            self._warn_changed(path)
        return stored.size

    def _open(self, source: str, path: str) -> int | None:
        try:        # (non-blocking: a FIFO put where the walk saw a file must not hang it)
            return os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            self.warnings.skip(path, f"cannot open ({exc.strerror}); not archived")
            return None

    def _regular(self, fd: int, path: str) -> os.stat_result | None:
        """The fstat of an opened file; None (named, not archived) when it is no longer a
        regular file: something else took its name since the walk."""
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return st
        self.warnings.skip(path, "no longer a regular file (replaced since the walk); "
                                 "not archived")
        return None

    def _add_plain(self, writer: BodyWriter, path: str, fd: int, size: int,
                   st_meta: tuple) -> StoredFile:
        """A file stored as it is (not sealed, not a database snapshot)."""
        on_chunk = None
        if self.progress and size >= READ_CHUNK:      # only large files are read in pieces
            base = self.bytes_done
            on_chunk = lambda n: self.progress(base + n, self.bytes_total, path)  # noqa: E731
        return writer.add_file(path, fd, size, *st_meta, on_chunk=on_chunk,
                               digest=needs_digest(size, sqlite=False), reread=True)

    def _warn_changed(self, path: str) -> None:
        self.warnings.add(f"{path}: changed while being read; archived as read")

    def _record_reference(self, reference: tuple) -> int:
        """``_record`` for an unchanged file referenced from its cached facts."""
        self.index.append_reference(reference)
        size = reference[facts.SIZE]
        self.reused += 1
        self.files += 1
        self.bytes_done += size
        if self.progress:
            self.progress(self.bytes_done, self.bytes_total, reference[facts.PATH])
        return size

    def _record(self, record: IndexEntry, link_key: tuple | None = None) -> int:
        """Account for a written or referenced file record; returns its content bytes
        (the tree's, also when an ancestor or a delta holds them).  ``link_key``:
        (device, inode) of a file with hard links, which later links name."""
        # A database record may still change (its snapshot's check runs in the background),
        # and a sealed file's member list fills as the sealing pool's results are written.
        self.index.append(record, deferred=record.sqlite or record.sealed is not None)
        if link_key is not None:
            self._links[link_key] = record
        if record.stored_in is not None:
            self.reused += 1
        self.files += 1
        self.bytes_done += record.size
        if self.progress:
            self.progress(self.bytes_done, self.bytes_total, record.path)
        return record.size


def _link_key(entry: SourceEntry) -> tuple | None:
    return (entry.dev, entry.ino) if entry.nlink > 1 else None


def _checked_after_read(stored: StoredFile, fd: int, st: os.stat_result) -> StoredFile:
    """A file read in one read() was compared with its fstat by size; one read over
    several calls is also compared by mtime.  (Its content is never older than the
    recorded mtime, as the fstat came first: a change in between shows in the next
    incremental's stat comparison.)"""
    if st.st_size >= READ_CHUNK:
        after = os.fstat(fd)
        if (after.st_mtime_ns, after.st_size) != (st.st_mtime_ns, st.st_size):
            return dataclasses.replace(stored, changed=True)
    return stored


def _ctime(st: os.stat_result) -> int | None:
    """The ctime to record: omitted when it equals the mtime (the usual case; §12.2)."""
    return None if st.st_ctime_ns == st.st_mtime_ns else st.st_ctime_ns
