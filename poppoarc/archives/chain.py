"""Reading an incremental archive through its chain (spec/FORMAT.md §12.5).

``resolve`` follows ``parent`` references from the store, oldest last, and
checks each link: present, genuine (pinned signature), and the very archive
its child was made from (the SHA-256 of its manifest member).  ``read_chain``
then streams every link's body through the normal verified reader, oldest
first, and hands the consumer (a ``MemberSink``: the staged tree, or
verify's checker) the content of every file of the newest archive:

- files stored in an ancestor are delivered while that ancestor is read,
  after checking that the holder's record has the same size and digest;
- databases stored as block deltas are reassembled in a work directory,
  link by link (whole snapshot, then each link's changed blocks), then
  streamed to the consumer while hashed and accepted (``end``) only once
  the result matches the newest record's SHA-256 (or HMAC);
- everything else comes from the newest archive's own body.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArchiveError, BrokenChain, CorruptArchive, NoKey
from ..format import chains, reader
from ..format.entry import BLOCK_DIGEST, IndexEntry, block_digests
from .opening import open_sealer

COPY_CHUNK = 1 << 20


@dataclass
class Link:
    """One ancestor: where it is and its authenticated head."""

    archive: object              # StoredArchive
    path: object                 # for messages: a local path or an s3:// URL
    head: reader.TrustedHead

    @property
    def id(self) -> str:
        return self.head.manifest["id"]


def resolve(store, head: reader.TrustedHead, pinned: dict) -> list[Link]:
    """The ancestors of an archive, oldest first; [] for a full archive.

    Raises BrokenChain naming the first parent that is missing, damaged,
    untrusted, or not the archive its child was made from.
    """
    links: list[Link] = []
    child = head.manifest
    seen = {child["id"]}
    while child["parent"] is not None:
        reference = child["parent"]
        parent_id = reference["id"]
        if parent_id in seen:
            raise BrokenChain(f"the chain of {head.manifest['id']} loops at {parent_id}")
        seen.add(parent_id)
        found = store.lookup(parent_id)
        if found is None:
            raise BrokenChain(f"parent {parent_id} of {child['id']} is missing from the store "
                              f"{store}; the archive cannot be restored without it")
        where = found.where
        try:
            with store.open(found) as source:
                parent = reader.open_trusted(source, pinned, where)
        except ArchiveError as exc:
            raise BrokenChain(f"parent {parent_id} of {child['id']} is unusable: {exc}") from None
        digest = hashlib.sha256(parent.raw.manifest_member).hexdigest()
        expected_depth = reference["depth"] - 1
        actual_depth = parent.manifest["parent"]["depth"] if parent.manifest["parent"] else 0
        if digest != reference["manifest_sha256"] or parent.manifest["id"] != parent_id \
                or actual_depth != expected_depth:
            raise BrokenChain(f"parent {parent_id} of {child['id']} is not the archive it was "
                              "made from (manifest hash or chain depth differs)", path=where)
        links.append(Link(found, where, parent))
        child = parent.manifest
    links.reverse()
    return links


class Assembly:
    """One database being rebuilt from a whole snapshot and block deltas."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.record: IndexEntry | None = None      # the last link's record applied
        self.link: str | None = None               # ... and that link's id
        self._positions: list[tuple[int, int]] = []
        self._offset = 0

    def begin(self, link_id: str, previous_link: str | None, entry: IndexEntry) -> None:
        if entry.delta is None:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            self._positions = [(0, entry.size)]
        else:
            base = self.record
            if base is None or self.link != previous_link or base.blocks is None \
                    or base.blocks["size"] != entry.blocks["size"]:
                raise CorruptArchive(f"{entry.path}: a block delta in {link_id} has no base "
                                     "snapshot in its parent")
            listed = set(entry.delta)
            before, after, step = block_digests(base), block_digests(entry), BLOCK_DIGEST
            for number in range(len(after) // step):
                piece = slice(number * step, (number + 1) * step)
                if number not in listed and (len(before) < piece.stop
                                             or before[piece] != after[piece]):
                    raise CorruptArchive(f"{entry.path}: block {number} is neither stored in "
                                         f"{link_id} nor equal to its parent's")
            size = entry.blocks["size"]
            self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
            self._positions = [(n * size, min(size, entry.size - n * size)) for n in entry.delta]
        self._positions.reverse()       # popped from the end
        self._offset = 0

    def data(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            start, length = self._positions[-1]
            take = min(len(view), length - self._offset)
            os.pwrite(self.fd, view[:take], start + self._offset)
            view = view[take:]
            self._offset += take
            if self._offset == length:
                self._positions.pop()
                self._offset = 0

    def end(self, link_id: str, entry: IndexEntry) -> None:
        os.ftruncate(self.fd, entry.size)
        os.close(self.fd)
        self.fd = None
        self.record, self.link = entry, link_id

    def forget(self) -> None:
        """The link just read has no record of this database: the chain of snapshots restarts."""
        self.record = self.link = None

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _LinkSink(reader.MemberSink):
    """Routes one link's verified members: to the consumer, to an assembly, or nowhere."""

    def __init__(self, link_id: str, previous_link: str | None, consumer: reader.MemberSink,
                 wanted: chains.Cursor | None, assemblies: dict[str, Assembly],
                 final: bool, sealer=None):
        self.link_id, self.previous_link = link_id, previous_link
        self.consumer, self.wanted, self.assemblies = consumer, wanted, assemblies
        self.final, self.sealer = final, sealer
        self.fault: CorruptArchive | None = None    # raised for the newest archive's records
        self.delivered = 0
        self.seen: set[str] = set()             # assembled databases this link has
        self._route: str | None = None
        self._target: IndexEntry | None = None  # the newest archive's record being delivered

    def begin(self, entry: IndexEntry) -> None:
        self._route = None
        assembly = self.assemblies.get(entry.path)
        if assembly is not None:
            self.seen.add(entry.path)
        if assembly is not None and entry.type == "file" and entry.sqlite:
            assembly.begin(self.link_id, self.previous_link, entry)
            self._route = "assemble"
        elif self.final:
            self.consumer.begin(entry)
            self._route = "final"
        else:
            target = self.wanted.find(entry.target, entry.path)
            if target is None:
                return
            if entry.type != "file" or entry.stored_in is not None or entry.delta is not None \
                    or (entry.size, entry.sha256, entry.hmac_sha256) != (
                        target.size, target.sha256, target.hmac_sha256):
                # the newest archive's record is wrong about a genuine ancestor: its fault
                self.fault = CorruptArchive(f"{entry.path}: {self.link_id} does not hold the "
                                            "content the newer archive refers to")
                raise self.fault
            self.consumer.begin(target)
            self._route, self._target = "deliver", target

    def data(self, entry: IndexEntry, chunk: bytes) -> None:
        if self._route == "assemble":
            self.assemblies[entry.path].data(chunk)
        elif self._route == "final":
            self.consumer.data(entry, chunk)
        elif self._route == "deliver":
            self.consumer.data(self._target, chunk)

    def end(self, entry: IndexEntry) -> None:
        route, self._route = self._route, None
        if route == "assemble":
            assembly = self.assemblies[entry.path]
            assembly.end(self.link_id, entry)
            if self.final:
                deliver_assembled(assembly, entry, self.consumer, self.sealer)
        elif route == "final":
            self.consumer.end(entry)
        elif route == "deliver":
            self.consumer.end(self._target)
            self.delivered += 1

def deliver_assembled(assembly: Assembly, entry: IndexEntry, consumer: reader.MemberSink,
                      sealer) -> None:
    """The rebuilt database to the consumer in one pass, hashed on the way; ``end`` only
    once the whole-file digest matched the newest record's (the ``MemberSink`` contract)."""
    if entry.sha256 is not None:
        digest, expected = hashlib.sha256(), entry.sha256
    elif sealer is not None:
        digest, expected = sealer.new_mac(), entry.hmac_sha256
    else:
        raise NoKey(f"{entry.path}: no key to check the rebuilt database")
    whole = dataclasses.replace(entry, delta=None)     # consumers see a plain database
    consumer.begin(whole)
    with open(assembly.path, "rb") as handle:
        while chunk := handle.read(COPY_CHUNK):
            digest.update(chunk)
            consumer.data(whole, chunk)
    if not hmac.compare_digest(digest.hexdigest(), expected):
        raise CorruptArchive(f"{entry.path}: database rebuilt from its chain does not match "
                             "its recorded digest")
    consumer.end(whole)


def read_chain(links: list[Link], store, final: tuple, consumer: reader.MemberSink,
               workdir: Path, open_link, progress=None) -> int:
    """Stream the chain into ``consumer``; returns sealed files left unchecked (no key).

    ``final`` is (source, head, entries, path, sealer) of the newest archive;
    ``open_link(link, source)`` returns (entries, sealer) of an ancestor.
    """
    source, head, entries, path, sealer = final
    # references per holder: (plain, sealed), counted in one pass; the records themselves
    # are met again in order while each holder is read (chains.Cursor), never all kept
    references = {link.id: [0, 0] for link in links}
    assemblies: dict[str, Assembly] = {}
    for entry in entries:
        if entry.stored_in is not None:
            if entry.stored_in not in references:
                raise CorruptArchive(f"{entry.path}: stored in {entry.stored_in}, which is not "
                                     f"an ancestor of {head.manifest['id']}", path=path)
            references[entry.stored_in][entry.hmac_sha256 is not None] += 1
        elif entry.delta is not None:
            assemblies[entry.path] = Assembly(workdir / f".assemble-{len(assemblies)}.db")
    unchecked = 0
    previous: str | None = None
    try:
        for link in links:
            sink = None
            try:
                with store.open(link.archive) as link_source:
                    link_entries, link_sealer = open_link(link, link_source)
                    wanted = chains.Cursor(entries, keep=lambda e, held=link.id: e.stored_in == held)
                    sink = _LinkSink(link.id, previous, consumer, wanted, assemblies, False)
                    unchecked += reader.read_body(link_source, link.head, link_entries, link.path,
                                                  sink, progress=progress, sealer=link_sealer)
            except CorruptArchive as exc:       # TruncatedArchive too
                if sink is not None and exc is sink.fault:
                    raise
                # the ancestor's own bytes fail, as its head could: the chain is broken (§7.1)
                raise BrokenChain(f"ancestor {link.id} of {head.manifest['id']} is damaged: "
                                  f"{exc.message}", path=link.path) from None
            for name, assembly in assemblies.items():
                if name not in sink.seen:
                    assembly.forget()
            plain, sealed = references[link.id]
            expected = plain + (sealed if link_sealer is not None else 0)   # no key: unchecked
            if sink.delivered != expected:
                raise CorruptArchive(f"{link.id} holds {sink.delivered} of the {expected} files "
                                     f"{head.manifest['id']} says it holds", path=path)
            previous = link.id
        sink = _LinkSink(head.manifest["id"], previous, consumer, None, assemblies, True, sealer)
        unchecked += reader.read_body(source, head, entries, path, sink, progress=progress,
                                      sealer=sealer)
    finally:
        for assembly in assemblies.values():
            assembly.close()
    return unchecked


def ancestor_reader(settings):
    """``open_link`` for ``read_chain``: an ancestor's index, opened with the local keys."""
    def open_link(link: Link, source):
        sealer = open_sealer(settings, link.head, link.path)
        index = reader.read_index(source, link.head, link.path, sealer,
                                  parallel=settings.parallel)
        if index.entries is None:
            raise NoKey(f"ancestor {link.id} is encrypted; set POPPO_BACKUP_KEY or configure "
                        "an identity to read the chain", path=link.path)
        return index.entries, sealer
    return open_link


class Member:
    """One archive of a chain verified by ``read_members``: its index, sealer and the
    consumer its content goes to (None: read only as an ancestor of later members)."""

    def __init__(self, link: Link, entries, sealer, consumer: reader.MemberSink | None,
                 workdir: Path):
        self.link, self.entries, self.sealer, self.consumer = link, entries, sealer, consumer
        self.assemblies: dict[str, Assembly] = {}
        self.references: dict[str, list[int]] = {}
        self.previous: str | None = None
        if consumer is None:
            return
        for entry in entries:
            if entry.stored_in is not None:
                self.references.setdefault(entry.stored_in, [0, 0])[
                    entry.hmac_sha256 is not None] += 1
            elif entry.delta is not None:
                self.assemblies[entry.path] = Assembly(
                    workdir / f".assemble-{link.id}-{len(self.assemblies)}.db")

    def close(self) -> None:
        for assembly in self.assemblies.values():
            assembly.close()


class _FanOut(reader.MemberSink):
    """One body read, every member's sink fed: a chain's shared ancestors read once."""

    def __init__(self, sinks: list[_LinkSink]):
        self.sinks = sinks

    def begin(self, entry: IndexEntry) -> None:
        for sink in self.sinks:
            sink.begin(entry)

    def data(self, entry: IndexEntry, chunk: bytes) -> None:
        for sink in self.sinks:
            sink.data(entry, chunk)

    def end(self, entry: IndexEntry) -> None:
        for sink in self.sinks:
            sink.end(entry)


def read_members(members: list[Member], store, progress=None) -> int:
    """``read_chain`` for every member with a consumer at once, each archive's body read
    once, oldest first: while link k streams, member k gets its own content and every
    later member what it keeps in k.  Any fault raises (the caller then verifies each
    archive alone, for its exact verdict); returns (sealed files left unchecked, bodies
    read)."""
    unchecked = read = 0
    for k, link_member in enumerate(members):
        link = link_member.link
        sinks: list[tuple[Member, _LinkSink]] = []
        for member in members[k:]:
            if member.consumer is None:
                continue
            if member is link_member:
                sink = _LinkSink(link.id, member.previous, member.consumer, None,
                                 member.assemblies, True, member.sealer)
            else:
                held = link.id
                wanted = chains.Cursor(member.entries, keep=lambda e, held=held: e.stored_in == held)
                sink = _LinkSink(link.id, member.previous, member.consumer, wanted,
                                 member.assemblies, False)
            sinks.append((member, sink))
        if not sinks:
            continue
        with store.open(link.archive) as source:
            unchecked += reader.read_body(source, link.head, link_member.entries, link.path,
                                          _FanOut([s for _, s in sinks]), progress=progress,
                                          sealer=link_member.sealer)
        read += 1
        for member, sink in sinks:
            for name, assembly in member.assemblies.items():
                if name not in sink.seen:
                    assembly.forget()
            if member is not link_member:
                plain, sealed = member.references.get(link.id, [0, 0])
                expected = plain + (sealed if link_member.sealer is not None else 0)
                if sink.delivered != expected:
                    raise CorruptArchive(f"{link.id} holds {sink.delivered} of the {expected} "
                                         f"files {member.link.id} says it holds")
            member.previous = link.id
    for number, member in enumerate(members):
        stray = set(member.references) - {m.link.id for m in members[:number]}
        if member.consumer is not None and stray:
            raise CorruptArchive(f"{member.link.id} refers to {sorted(stray)[0]}, which is not "
                                 "one of its ancestors")
    return unchecked, read
