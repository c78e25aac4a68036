"""An archive's contents as the browsing commands see them (``ls``, ``dump``, ``diff``,
``find``): its head, key, chain and checked index, opened once; and ``ls`` itself.

Browsing reads the head and the index, never the body (``dump`` then reads the frames of
one file, ``archives.extraction``).  The index of an incremental archive lists the whole
tree, so the chain is needed only for content: its heads are resolved (a few KiB each),
and a broken chain is said, not fatal, where no content is read.  The records a command
shows or reads are judged by the confinement rule as a restore of them would be
(``read_checked_index`` with a selection): what ``unpack`` of them would refuse, browsing
them refuses with the same error; the others only for what makes the archive corrupt.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from ..config import Settings
from ..errors import BrokenChain, NoKey, UnsafeArchiveEntry
from ..format import reader
from ..format.entry import IndexEntry
from ..restore.refusals import unsafe_hint
from ..snapshot.selection import PathSelection, selects
from ..streamed import StreamedArray
from . import chain
from .opening import full_manifest, open_archive, open_sealer, pinned_keys, read_checked_index


@dataclass
class OpenedArchive:
    """An archive opened for reading its records: where it is, its head and key, its
    chain (oldest first; [] when broken: ``broken`` says why), its checked records."""

    store: object
    source: object
    path: object
    head: reader.TrustedHead
    sealer: object
    links: list
    entries: object             # format.records.IndexRecords, in index order
    manifest: dict              # with what an archive sealed whole keeps in its index
    broken: str | None = None   # the chain's fault, when it has one

    @property
    def id(self) -> str:
        return self.manifest["id"]


@contextmanager
def opened(settings: Settings, reference: str, chosen=None):
    """Yields the ``OpenedArchive`` of a referenced archive; ``chosen(entry)``: the records
    the command shows or reads (confinement judges them as a restore would).  An archive
    sealed whole needs its key (``NoKey``); a wrong key fails first (``WrongKey``)."""
    with open_archive(settings, reference) as (store, source, path):
        yield open_source(settings, store, source, path, chosen)


def open_source(settings: Settings, store, source, path, chosen=None) -> OpenedArchive:
    pinned = pinned_keys(settings)
    head = reader.open_trusted(source, pinned, path)
    sealer = open_sealer(settings, head, path)
    links, broken = [], None
    if head.manifest["incremental"] and store is not None:
        try:
            links = chain.resolve(store, head, pinned)
        except BrokenChain as exc:
            broken = str(exc)
    try:
        index = read_checked_index(settings, source, head, path, sealer, chosen)
    except UnsafeArchiveEntry as exc:
        raise unsafe_hint(exc, head.manifest["id"]) from None
    if index.entries is None:
        raise NoKey("archive is encrypted; set POPPO_BACKUP_KEY or configure an identity "
                    "to read its contents", path=path)
    return OpenedArchive(store, source, path, head, sealer, links, index.entries,
                         full_manifest(head, index), broken)


def chooser(paths: PathSelection | None):
    """``chosen`` for ``opened``: the records a path selection selects."""
    if paths is None:
        return None
    return lambda entry: selects(paths, entry.path)


# -- ls ---------------------------------------------------------------------------------


@dataclass
class Listing:
    """``ls``: the selected records of one archive, with the tables and row counts of its
    databases (from the signed manifest) and where each file's content is held."""

    archive_id: str
    timestamp: str
    incremental: bool
    encryption: str | None
    entries: object                     # the archive's records (iterated again to show)
    paths: PathSelection | None
    databases: dict = field(default_factory=dict)   # path: manifest database record
    warnings: list[str] = field(default_factory=list)
    count: int = 0                      # records shown
    size: int = 0                       # their files' bytes

    def records(self):
        """The records shown, in index order (read again from disk on each call)."""
        for entry in self.entries:
            if not entry.generated and selects(self.paths, entry.path):
                yield entry

    def row(self, entry: IndexEntry) -> dict:
        """One record as ``ls --json`` shows it."""
        row = {"path": entry.path, "target": entry.target, "type": entry.type,
               "mode": entry.mode, "uid": entry.uid, "gid": entry.gid,
               "mtime_ns": entry.mtime_ns, "size": entry.size if entry.type != "dir" else 0,
               "sha256": entry.sha256, "link": entry.link, "sealed": entry.needs_key(),
               "stored_in": entry.stored_in, "changed": entry.changed}
        database = self.databases.get(entry.path) if entry.sqlite else None
        if database is not None:
            row["database"] = {"tables": database.get("tables", {}),
                               "user_version": database.get("user_version"),
                               "page_size": database.get("page_size"),
                               "tables_truncated": bool(database.get("tables_truncated"))}
        return row

    @property
    def exit_code(self) -> int:
        return 1 if self.warnings else 0

    def to_json(self) -> dict:
        return {"archive_id": self.archive_id, "timestamp": self.timestamp,
                "incremental": self.incremental, "encryption": self.encryption,
                "include": list(self.paths.include) if self.paths else [],
                "exclude": list(self.paths.exclude) if self.paths else [],
                "entries": StreamedArray(lambda: (self.row(e) for e in self.records())),
                "count": self.count, "size": self.size, "warnings": self.warnings}


def listing(archive: OpenedArchive, paths: PathSelection | None) -> Listing:
    """What ``ls`` shows of an opened archive (reads nothing more of it)."""
    result = Listing(archive.id, archive.manifest["timestamp"], archive.manifest["incremental"],
                     reader.scope(archive.manifest), archive.entries, paths,
                     {d["path"]: d for d in archive.manifest.get("databases", [])})
    if archive.broken:
        result.warnings.append(f"{archive.broken}: the listing is the archive's own index; "
                               "what its ancestors hold cannot be restored or dumped")
    if archive.sealer is None and archive.entries.sealed:
        result.warnings.append("sealed secret files are listed, but their contents need a key")
    for entry in result.records():
        result.count += 1
        result.size += entry.size if entry.type == "file" else 0
    if paths is not None and paths.include and not result.count:
        result.warnings.append(f"{paths.describe()} matches nothing in {archive.id}")
    return result
