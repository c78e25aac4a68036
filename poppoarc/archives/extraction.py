"""``dump``: one file of an archive, its content verified whole before any of it is
handed on.

The content goes to a file (a temporary file the command streams to standard output, or
the temporary beside ``-o FILE`` that is renamed over it): the file is complete and
verified before the first byte reaches its reader, and nothing is left half-written.
What verifies it:

* a file of 64 KiB or more, a database, a sealed file: its own digest in the signed
  index (``sha256``, or ``hmac_sha256`` under the archive's key), and a database rebuilt
  from page deltas against the newest record's digest (spec §12.5);
* a smaller plain file, which has no digest of its own (spec §5.4): the archive's signed
  body checksum, after the body was read to its end.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ..errors import BrokenChain, CorruptArchive, NoKey, UsageError
from ..format import reader
from ..format.entry import IndexEntry
from . import chain
from .contents import OpenedArchive

COPY_CHUNK = 1 << 20


@dataclass
class Extracted:
    """What ``extract`` wrote: the record, its bytes and their SHA-256, how it was
    verified, and how many archive bytes it read (head and index included)."""

    archive_id: str
    entry: IndexEntry
    size: int
    sha256: str
    verified_by: str            # "sha256" | "hmac_sha256" | "frames" | "checksum"
    held_by: str                # the archive whose body held the content
    read: int = 0               # bytes read from the archives


def find_record(archive: OpenedArchive, path: str) -> IndexEntry:
    """The record ``dump PATH`` means: a file (a hard link: the file it names)."""
    found = None
    for entry in archive.entries:
        if entry.path == path:
            found = entry
            break
    if found is None:
        raise UsageError(f"archive {archive.id} has no entry {path!r} (poppoarc ls "
                         f"{archive.id} lists what it holds)")
    if found.type == "dir":
        raise UsageError(f"{path!r} is a directory in archive {archive.id}; dump takes one "
                         "file (ls lists what it holds, unpack --include restores it)")
    if found.type == "symlink":
        raise UsageError(f"{path!r} is a symbolic link to {found.link!r} in archive "
                         f"{archive.id}; dump takes one file")
    if found.type == "hardlink":
        return find_record(archive, found.link)
    return found


def extract(archive: OpenedArchive, entry: IndexEntry, out_fd: int, workdir: Path,
            open_link) -> Extracted:
    """Write ``entry``'s content, verified, to the file ``out_fd``; ``workdir`` holds a
    database being rebuilt; ``open_link(link, source)``: an ancestor's (records, sealer)
    (``chain.ancestor_reader``).

    What is read: a file with a digest of its own, its target's frames up to it (in the
    archive, or in the ancestor that holds it); a small plain file, the whole body of the
    archive that holds it (only the body checksum proves it, spec §5.4); a database
    stored as page deltas, its member in each archive since it was last stored whole."""
    if entry.needs_key() and archive.sealer is None:
        raise NoKey(f"{entry.path} is sealed; set POPPO_BACKUP_KEY or configure an identity "
                    "to read it", path=archive.path)
    if (entry.stored_in is not None or entry.delta is not None) and archive.broken:
        raise BrokenChain(archive.broken)
    sink = _Capture(entry, out_fd)
    if entry.delta is not None:
        try:
            _rebuilt(archive, entry, sink, workdir, open_link)
        except CorruptArchive:      # a misplaced frame group, or damage: every body decides
            chain.read_chain(archive.links, archive.store,
                             (archive.source, archive.head, archive.entries, archive.path,
                              archive.sealer), sink, workdir, open_link)
    elif entry.stored_in is not None:
        _from_ancestor(archive, entry, sink, open_link)
    else:
        _from_body(archive.source, archive.head, archive.entries, archive.path, entry, sink,
                   archive.sealer)
    if not sink.done:
        raise CorruptArchive(f"{entry.path}: the archive's body never delivered it",
                             path=archive.path)
    how = "sha256" if entry.sha256 is not None else \
        "hmac_sha256" if entry.hmac_sha256 is not None else "checksum"
    return Extracted(archive.id, entry, sink.size, sink.digest.hexdigest(), how,
                     entry.stored_in or archive.id, archive.store.fetched)


def _from_body(source, head, entries, path, record: IndexEntry, sink, sealer) -> None:
    """``record``'s member from the body of the archive that holds it: its target's frames
    up to it when its own digest proves it, else (or when that part of the body does not
    hold what the index says) the whole body, whose verdict is the archive's."""
    if reader.has_own_digest(record):
        try:
            reader.read_member(source, head, entries, path, record, sink, sealer=sealer)
            return
        except CorruptArchive:
            pass        # a misplaced frame group, or damage: the whole body says which
    reader.read_body(source, head, entries, path, sink, sealer=sealer)


def _from_ancestor(archive: OpenedArchive, entry: IndexEntry, sink, open_link) -> None:
    """A file an incremental archive refers to (``stored_in``): from the ancestor holding
    it, whose record must be the same file (spec §12.5); only that ancestor is read."""
    link = next((link for link in archive.links if link.id == entry.stored_in), None)
    if link is None:
        raise CorruptArchive(f"{entry.path}: stored in {entry.stored_in}, which is not an "
                             f"ancestor of {archive.id}", path=archive.path)
    with archive.store.open(link.archive) as source:
        try:
            entries, sealer = open_link(link, source)
            held = next((e for e in entries if e.target == entry.target
                         and e.path == entry.path), None)
        except CorruptArchive as exc:
            raise BrokenChain(f"ancestor {link.id} of {archive.id} is damaged: {exc.message}",
                              path=link.path) from None
        if held is None or held.type != "file" or held.stored_in is not None \
                or held.delta is not None or (held.size, held.sha256, held.hmac_sha256) != (
                    entry.size, entry.sha256, entry.hmac_sha256):
            raise CorruptArchive(f"{entry.path}: {link.id} does not hold the content "
                                 f"{archive.id} refers to", path=archive.path)
        try:
            _from_body(source, link.head, entries, link.path, held, sink, sealer)
        except CorruptArchive as exc:
            raise BrokenChain(f"ancestor {link.id} of {archive.id} is damaged: {exc.message}",
                              path=link.path) from None


def _rebuilt(archive: OpenedArchive, entry: IndexEntry, sink, workdir: Path,
             open_link) -> None:
    """A database stored as page deltas (spec §12.5 step 3), from the newest link holding
    it whole on: each link's member of it read apart (a delta is proved by its block
    digests, a whole snapshot by its SHA-256), applied in a work file, then handed to
    ``sink`` once the result matches the newest record's digest."""
    with ExitStack() as stack:
        steps = [(archive.id, archive.source, archive.head, archive.entries, archive.path,
                  archive.sealer, entry)]
        for link in reversed(archive.links):    # back to the whole snapshot
            if steps[-1][-1].delta is None:
                break
            source = stack.enter_context(archive.store.open(link.archive))
            entries, sealer = open_link(link, source)
            held = next((e for e in entries if e.target == entry.target
                         and e.path == entry.path), None)
            if held is None or held.type != "file" or held.stored_in is not None:
                raise CorruptArchive(f"{entry.path}: a block delta in {steps[-1][0]} has no "
                                     "base snapshot in its parent", path=archive.path)
            steps.append((link.id, source, link.head, entries, link.path, sealer, held))
        if steps[-1][-1].delta is not None:
            raise CorruptArchive(f"{entry.path}: no archive of the chain holds it whole",
                                 path=archive.path)
        assembly = chain.Assembly(workdir / ".assemble-0.db")
        try:
            previous = None
            for link_id, source, head, entries, path, sealer, record in reversed(steps):
                reader.read_member(source, head, entries, path, record,
                                   _Applied(assembly, link_id, previous, record), sealer)
                previous = link_id
            chain.deliver_assembled(assembly, entry, sink, archive.sealer)
        finally:
            assembly.close()


class _Applied(reader.MemberSink):
    """One link's member of a database being rebuilt, into its work file."""

    def __init__(self, assembly, link_id: str, previous: str | None, record: IndexEntry):
        self.assembly, self.link_id, self.previous, self.record = \
            assembly, link_id, previous, record
        self._on = False

    def begin(self, entry: IndexEntry) -> None:
        self._on = entry.type == "file" and entry.path == self.record.path \
            and entry.target == self.record.target
        if self._on:
            self.assembly.begin(self.link_id, self.previous, entry)

    def data(self, entry: IndexEntry, chunk: bytes) -> None:
        if self._on:
            self.assembly.data(chunk)

    def end(self, entry: IndexEntry) -> None:
        if self._on:
            self.assembly.end(self.link_id, entry)
            self._on = False


class _Capture(reader.MemberSink):
    """Writes one record's content; the reader calls ``end`` only once it verified."""

    def __init__(self, wanted: IndexEntry, out_fd: int):
        self.wanted, self.out_fd = wanted, out_fd
        self.digest = hashlib.sha256()
        self.size = 0
        self.done = False
        self._on = False

    def begin(self, entry: IndexEntry) -> None:
        self._on = entry.type == "file" and entry.path == self.wanted.path \
            and entry.target == self.wanted.target
        if self._on:
            os.ftruncate(self.out_fd, 0)
            os.lseek(self.out_fd, 0, os.SEEK_SET)
            self.digest, self.size = hashlib.sha256(), 0

    def data(self, entry: IndexEntry, chunk: bytes) -> None:
        if self._on:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self.out_fd, view):]
            self.digest.update(chunk)
            self.size += len(chunk)

    def end(self, entry: IndexEntry) -> None:
        if self._on:
            self._on = False
            self.done = True
            if entry.sha256 is not None and not hmac.compare_digest(
                    self.digest.hexdigest(), entry.sha256):
                raise CorruptArchive(f"{entry.path}: content does not match its SHA-256")
