"""Incremental chains: pure decisions about parents and what an incremental stores.

An incremental archive lists the complete tree but stores only what changed
since its parent (spec/FORMAT.md §12).  Which archive becomes the parent,
whether a chain must restart with a full archive, which files are unchanged
and which database blocks changed are decided here, from data already read;
``archives/parent.py`` does the reading.
"""

from __future__ import annotations

from dataclasses import dataclass

from .entry import BLOCK_DIGEST, IndexEntry, block_digests
from .order import index_order

NORMAL_TYPES = ("manual", "scheduled")


@dataclass(frozen=True)
class ParentChoice:
    id: str | None              # None: make a full archive
    reason: str                 # why this parent, or why a full archive
    warn: bool = True           # a full archive worth a warning (not the first of a store)


def choose_parent(rows: list) -> ParentChoice:
    """The newest good normal archive of the store (``list`` rows, newest first).

    Safety archives never start or continue a chain: they capture a tree that
    is about to be replaced.  A damaged or untrusted archive cannot vouch for
    what it holds, so an older good one is used instead (and said so).
    """
    skipped = []
    for row in rows:
        if row.type not in NORMAL_TYPES:
            continue
        if row.status != "ok":
            skipped.append(f"{row.id} ({row.status})")
            continue
        note = f"; skipped {', '.join(skipped)}" if skipped else ""
        return ParentChoice(row.id, f"newest good archive{note}")
    if not skipped:     # the store's first archive: a chain starts with a full one
        return ParentChoice(None, "no archive in the store yet: making a full archive", False)
    return ParentChoice(None, "no earlier good archive in the store: making a full archive")


def parent_problem(manifest: dict, *, max_incrementals: int, sealed_whole: bool,
                   root: str | None) -> str | None:
    """Why the chosen parent cannot take another link (a full archive is made), or None.

    ``manifest`` is the parent's full manifest (sealed fields included).
    """
    depth = manifest["parent"]["depth"] if manifest["parent"] else 0
    if depth >= max_incrementals:
        return (f"chain of {manifest['id']} has {depth} incremental(s), the configured "
                f"maximum (backup.incremental.maxIncrementals = {max_incrementals})")
    parent_sealed = bool(manifest["encryption"]) and manifest["encryption"]["scope"] == "archive"
    if parent_sealed != sealed_whole:
        return (f"{manifest['id']} is {'' if parent_sealed else 'not '}encrypted and this "
                f"archive is {'' if sealed_whole else 'not '}: a chain keeps one setting")
    if root is not None and manifest.get("root") not in (None, root):
        return f"{manifest['id']} was made from another installation ({manifest['root']})"
    return None


class Cursor:
    """Looks records of an index up by (target, path), for lookups made in index order.

    Both a pack and a chain reader meet paths in index order, so one forward
    pass over the other archive's records (read lazily) replaces a dictionary
    of 100,000 records.  A record out of that order (the generated
    ``environment.json``, last in its target) is skipped, never matched.
    """

    def __init__(self, records, keep=lambda record: True):
        self._records = (r for r in records if keep(r))
        self._current = next(self._records, None)

    def find(self, target: str | None, path: str) -> IndexEntry | None:
        wanted = index_order(target, path)
        while self._current is not None and \
                index_order(self._current.target, self._current.path) < wanted:
            self._current = next(self._records, None)
        current = self._current
        if current is not None and current.path == path and current.target == target:
            return current
        return None


def holder_of(parent_id: str, record: IndexEntry) -> str:
    """The archive whose body holds a parent record's content."""
    return record.stored_in or parent_id


def unchanged_by_stat(previous: IndexEntry, size: int, mtime_ns: int, ctime_ns: int, ino: int,
                      mode: int, uid: int, gid: int) -> bool:
    """True when the live file's stat facts equal those the parent recorded.

    A record without stat facts (older writer, generated content, a file that
    changed while read, a database) never counts as unchanged.
    """
    if not reusable(previous) or previous.ino is None:
        return False
    recorded_ctime = previous.ctime_ns if previous.ctime_ns is not None else previous.mtime_ns
    return (previous.size, previous.mtime_ns, recorded_ctime, previous.ino,
            previous.mode, previous.uid, previous.gid) == (size, mtime_ns, ctime_ns, ino,
                                                          mode, uid, gid)


def reusable(previous: IndexEntry) -> bool:
    """Whether a parent record's content may be referenced instead of stored again."""
    return (previous.type == "file" and not previous.changed and not previous.generated
            and not previous.sqlite and previous.delta is None)


def reference(previous: IndexEntry, parent_id: str, *, path: str, target: str | None,
              mode: int, uid: int, gid: int, mtime_ns: int, ctime_ns: int | None,
              ino: int | None) -> IndexEntry:
    """The record of an unchanged file: this archive's metadata, an ancestor's content."""
    return IndexEntry(path, target, "file", mode, uid, gid, mtime_ns, previous.size,
                      previous.sha256, hmac_sha256=previous.hmac_sha256,
                      ctime_ns=ctime_ns, ino=ino, stored_in=holder_of(parent_id, previous))


def delta_base(previous: IndexEntry | None, block_size: int) -> bool:
    """Whether the parent's record of a database can be the base of a delta: a snapshot
    with block digests of this size (§12.4)."""
    return previous is not None and previous.sqlite and previous.blocks is not None \
        and previous.blocks["size"] == block_size


def changed_blocks(previous: IndexEntry | None, block_size: int, blocks: bytes) -> list[int] | None:
    """Block numbers that differ from the parent's snapshot of the same database.

    None when no delta is possible or worth it: no parent snapshot with
    blocks of this size, or every block changed.
    """
    if not delta_base(previous, block_size):
        return None
    before, step = block_digests(previous), BLOCK_DIGEST
    numbers = [n for n in range(len(blocks) // step)
               if blocks[n * step:(n + 1) * step] != before[n * step:(n + 1) * step]]
    if blocks and len(numbers) == len(blocks) // step:
        return None
    return numbers
