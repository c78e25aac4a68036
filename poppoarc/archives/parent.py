"""The parent of an incremental archive: found in the store, read and checked.

``find_parent`` returns what the next pack needs to know about the previous
archive (its records, read lazily in index order; its manifest hash; its chain depth), or None
with a warning explaining why a full archive is made instead.  Decisions
are in ``format/chains.py``; this module only reads.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from ..errors import PoppoarcError, Warnings
from ..format import chains, reader
from ..format.entry import IndexEntry
from ..snapshot.naming import printable
from . import facts
from .listing import list_archives
from .opening import full_manifest, open_sealer, pinned_keys


@dataclass
class ParentBase:
    id: str
    manifest_sha256: str
    depth: int                                  # the new archive's depth is this + 1
    records: chains.Cursor                      # the parent's records, in index order
    # (or its cached facts: format.facts.CachedFacts, whose find gives tuples for files)
    sealers: dict = field(default_factory=dict)  # archive id -> Sealer, for keyed digests
    opener: object = None                       # archive id -> Sealer | None (lazy)

    def reference(self) -> dict:
        return {"id": self.id, "manifest_sha256": self.manifest_sha256, "depth": self.depth + 1}

    def content_matches(self, previous: IndexEntry, read, size: int, mtime_ns: int) -> bool:
        """``--check-content``: does the live content (``read(n)``; ``size`` and ``mtime_ns``
        from its fstat) equal the record's?"""
        if previous.sha256 is None and previous.hmac_sha256 is None:
            # a small file's record has no digest (§5.4, §12.2): size and mtime stand in
            return (previous.size, previous.mtime_ns) == (size, mtime_ns)
        holder = chains.holder_of(self.id, previous)
        if previous.sha256 is not None:
            digest = hashlib.sha256()
            expected = previous.sha256
        else:
            if holder not in self.sealers and self.opener is not None:
                self.sealers[holder] = self.opener(holder)
            sealer = self.sealers.get(holder)
            if sealer is None:
                return False        # no key for that ancestor: store the file again
            digest, expected = sealer.new_mac(), previous.hmac_sha256
        size = 0
        while True:
            data = read(1 << 20)
            if not data:
                break
            digest.update(data)
            size += len(data)
        return size == previous.size and hmac.compare_digest(digest.hexdigest(), expected)


def find_parent(settings, store, *, sealed_whole: bool, warnings: Warnings,
                max_incrementals: int, index_share: float | None = None,
                facts_key: bytes | None = None) -> ParentBase | None:
    """The parent for an incremental archive, or None (and a warning) for a full one;
    ``index_share``: the part of its index the index's helper checks (``decode_index``);
    ``facts_key``: read the parent's facts cache (``facts.py``) with this key, when there
    is a valid one, instead of its index."""
    rows = list_archives(settings, store)
    for row in rows:        # a damaged or foreign file in the store is named, and skipped
        if row.status != "ok":
            warnings.add(f"store: {row.id} is {row.status} and cannot be a parent: {row.problem}")
    choice = chains.choose_parent(rows)
    if choice.id is None:
        if choice.warn:
            warnings.add(f"incremental: {choice.reason}")
        return None
    archive = store.lookup(choice.id)
    if archive is None:
        warnings.add(f"incremental: {choice.id} disappeared from the store; making a full archive")
        return None
    where = archive.where
    try:
        with store.open(archive) as source:
            head = reader.open_trusted(source, pinned_keys(settings), where)
            if facts_key is not None and not sealed_whole:
                cached = _cached(settings, head, facts_key, max_incrementals, warnings)
                if cached is not None:
                    # the facts stand in for the index's records, not for its bytes: a
                    # parent whose stored index is damaged must not take a link
                    reader.stored_index(source, head, where).close()
                    return cached
            sealer = open_sealer(settings, head, where)
            index = reader.read_index(source, head, where, sealer, parallel=settings.parallel,
                                      share=index_share)
    except PoppoarcError as exc:
        warnings.add(f"incremental: cannot read {choice.id} ({exc}); making a full archive")
        return None
    except Exception as exc:    # whatever the parent holds, the backup is made (a full one)
        warnings.add(f"incremental: cannot read {choice.id} (internal error "
                     f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                     "making a full archive")
        return None
    if index.entries is None:
        warnings.add(f"incremental: {choice.id} is encrypted and no key here opens its index "
                     "(a public-key-only setup cannot chain); making a full archive")
        return None
    manifest = full_manifest(head, index)
    problem = chains.parent_problem(manifest, max_incrementals=max_incrementals,
                                    sealed_whole=sealed_whole, root=_recorded_root(settings))
    if problem:
        warnings.add(f"incremental: {problem}; making a full archive")
        return None

    def opener(archive_id: str):
        """The sealer of an ancestor holding content, for ``--check-content``."""
        found = store.lookup(archive_id)
        if found is None:
            return None
        try:
            with store.open(found) as handle:
                return open_sealer(settings, reader.open_trusted(handle, pinned_keys(settings),
                                                                 archive_id), archive_id)
        except PoppoarcError:
            return None

    digest = hashlib.sha256(head.raw.manifest_member).hexdigest()
    depth = manifest["parent"]["depth"] if manifest["parent"] else 0
    return ParentBase(choice.id, digest, depth, chains.Cursor(index.entries),
                      {choice.id: sealer} if sealer else {}, opener)


def _cached(settings, head, key: bytes, max_incrementals: int,
            warnings: Warnings) -> ParentBase | None:
    """The parent from its facts cache, or None (its index is read): no cache, one that
    fails its check (named), or a parent its signed manifest says cannot take a link
    (the index's reading says why)."""
    manifest = head.manifest
    if manifest.get("encryption") and manifest["encryption"]["scope"] == "archive":
        return None
    try:
        cached = facts.load(settings, key, manifest["id"], manifest["layout"]["index_sha256"])
    except facts.FactsRejected as exc:
        warnings.add(f"incremental: the facts cache of {manifest['id']} is ignored ({exc}); "
                     "its index is read instead")
        return None
    if cached is None or chains.parent_problem(manifest, max_incrementals=max_incrementals,
                                               sealed_whole=False, root=_recorded_root(settings)):
        return None
    digest = hashlib.sha256(head.raw.manifest_member).hexdigest()
    depth = manifest["parent"]["depth"] if manifest["parent"] else 0
    return ParentBase(manifest["id"], digest, depth, cached)


def _recorded_root(settings) -> str:
    """The root as a manifest records it (spec/FORMAT.md: not UTF-8 as ``\\xNN``)."""
    return printable(str(settings.root))
