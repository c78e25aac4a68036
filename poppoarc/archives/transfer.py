"""Copying an archive between stores with the ancestors it needs (``poppoarc copy``).

An incremental archive restores only with its chain (spec §12.5), so ``copy_archive`` takes
the chain along: every ancestor the destination lacks is copied first, oldest first
(``ancestors=False`` refuses instead, naming them).  Each link is authenticated (pinned
key, and the very archive its child was made from) before a byte moves; each archive's
bytes are streamed to the destination's upload — body first, head last, the path ``pack``
takes — while hashed against its signed checksum, so a damaged source is never
committed.  Afterwards the full verify reads the copy back at the destination with its
whole chain; when anything fails, the archives this run copied are deleted again, so the
destination is left as it was (an interrupted upload never has the final name; what it
leaves is removed by the next writer, as pack's leftovers are).  A protection mark
travels with the archive (``archives.protection``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..config import Settings, resolve_storage
from ..errors import (EXIT_OK, ArchiveError, BrokenChain, CorruptArchive, TruncatedArchive,
                      UsageError)
from ..fs import within
from ..format import reader
from ..lock import StoreLock
from ..store import Store, StoredArchive, open_store
from . import chain
from .opening import find_archive, pinned_keys
from .protection import carry_mark
from .verification import VerifyResult, verify_source

COPY_CHUNK = 8 << 20


@dataclass
class Copied:
    """One archive of the chain and what copy did with it."""

    id: str
    size: int
    outcome: str                # copied | present (already at the destination)

    def to_json(self) -> dict:
        return {"id": self.id, "size": self.size, "outcome": self.outcome}


@dataclass
class CopyResult:
    id: str
    source: str
    destination: str
    size: int
    outcome: str                # copied | present (already there, verified only)
    verified: VerifyResult
    protected: bool = False     # the source's protection mark, carried to the destination
    ancestors: list[Copied] = field(default_factory=list)    # oldest first
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"id": self.id, "source": self.source, "destination": self.destination,
                "size": self.size, "outcome": self.outcome,
                "ancestors": [a.to_json() for a in self.ancestors],
                "verified": self.verified.to_json(), "protected": self.protected}


def _display(archive: StoredArchive) -> str:
    return str(archive.where)


class _Either:
    """The chain's view for ``chain.resolve``: each archive from the destination when it
    is there already, else from the source; ``origin`` says which."""

    def __init__(self, dest: Store, source: Store):
        self.dest, self.source = dest, source
        self.origin: dict[str, Store] = {}

    def __str__(self) -> str:
        return f"{self.source} (nor in {self.dest})"

    def lookup(self, archive_id: str) -> StoredArchive | None:
        for store in (self.dest, self.source):
            found = store.lookup(archive_id)
            if found is not None:
                self.origin[archive_id] = store
                return found
        return None

    def open(self, archive: StoredArchive):
        return self.origin[archive.id].open(archive)


def check_destination(settings: Settings, destination: str) -> None:
    """``copy --to``: a local store inside the installation would be archived by the next
    pack (an archive inside the archive, growing with every copy), except the configured
    store, which packs leave out; one inside the key directory would mix archives with the
    keys. Both are usage errors naming the place, before anything is read or written."""
    if destination.startswith("s3://"):
        return
    # the store this command reads (--store) and the one this installation packs into
    # (backup.storage, else ROOT/backups): packs leave the latter out
    _, configured, _ = resolve_storage(None, settings.backup.get("storage", {}),
                                       settings.root, settings.config_path)
    stores = (settings.store, configured)
    if (within(destination, settings.root)
            and not any(within(destination, store) for store in stores)):
        raise UsageError(f"--to {destination}: inside the installation ({settings.root}); "
                         "the next pack would archive the copy (copy to a store outside it)")
    if within(destination, settings.key_dir):
        raise UsageError(f"--to {destination}: inside the key directory ({settings.key_dir}); "
                         "copy to a store of its own")


def copy_archive(settings: Settings, reference: str, destination: str | Store,
                 progress=None, ancestors: bool = True) -> CopyResult:
    """Copy the referenced archive, and the ancestors the destination lacks, into
    ``destination`` (a store, a directory or an s3:// URL); verify it there."""
    source_store, archive = find_archive(settings, reference)
    dest = destination if isinstance(destination, Store) else open_store(destination, settings.storage)
    pinned = pinned_keys(settings)
    with source_store.open(archive) as source:
        head = reader.open_trusted(source, pinned, _display(archive))
    with StoreLock(dest.local_dir, "copy", create=True):     # one writer of the store
        return _copy_locked(settings, source_store, archive, head, dest, progress, ancestors)


def _copy_locked(settings: Settings, source_store: Store, archive: StoredArchive,
                 head: reader.TrustedHead, dest: Store, progress, ancestors: bool) -> CopyResult:
    pinned = pinned_keys(settings)
    manifest = head.manifest
    either = _Either(dest, source_store)
    links = chain.resolve(either, head, pinned)     # BrokenChain names a missing/bad link
    missing = {link.id for link in links if either.origin[link.id] is not dest}
    if missing and not ancestors:
        raise BrokenChain(f"{manifest['id']} is incremental and {dest} lacks its ancestors "
                          f"{', '.join(link.id for link in links if link.id in missing)}; it cannot be restored "
                          "there without them (copy without --no-ancestors copies them too)")
    stored = dest.lookup(manifest["id"])
    chain_report = [Copied(link.id, link.head.manifest["size"], "present") for link in links]
    copied: list[StoredArchive] = []
    try:
        if missing or stored is None:
            dest.ensure()
            dest.cleanup()
        for number, link in enumerate(links):
            if link.id not in missing:
                continue
            try:
                copied.append(_copy_one(source_store, link.archive, link.head, dest, progress))
            except ArchiveError as exc:
                raise BrokenChain(f"ancestor {link.id} of {manifest['id']} cannot be copied: "
                                  f"{exc.message}; nothing was copied", path=exc.path) from None
            chain_report[number].outcome = "copied"
        outcome = "present"
        if stored is None:
            stored = _copy_one(source_store, archive, head, dest, progress)
            copied.append(stored)
            outcome = "copied"
        with dest.open(stored) as at_destination:
            verified = verify_source(settings, at_destination, _display(stored), store=dest)
    except BaseException:
        for done in reversed(copied):       # the destination as it was
            try:
                dest.delete(done)
            except Exception:       # noqa: BLE001 (the first error is the one to report)
                pass
        raise
    protected = carry_mark(source_store, dest, manifest["id"])
    return CopyResult(manifest["id"], _display(archive), _display(stored), manifest["size"],
                      outcome, verified, protected, chain_report)


def _copy_one(store: Store, archive: StoredArchive, head: reader.TrustedHead, dest: Store,
              progress) -> StoredArchive:
    with store.open(archive) as source:
        return _stream(source, head, dest, _display(archive), progress)


def _stream(source, head: reader.TrustedHead, dest: Store, path: str, progress) -> StoredArchive:
    manifest = head.manifest
    body_offset, size = manifest["layout"]["body_offset"], manifest["size"]
    upload = dest.begin(manifest["id"])
    try:
        upload.begin(body_offset)
        digest = hashlib.sha256()
        position = body_offset
        while position < size:
            chunk = source.read_at(position, min(COPY_CHUNK, size - position))
            if not chunk:
                raise TruncatedArchive("archive ends early", path=path)
            digest.update(chunk)
            upload.write(chunk)
            position += len(chunk)
            if progress:
                progress(position, size, manifest["id"])
        if "sha256:" + digest.hexdigest() != manifest["checksum"]:
            raise CorruptArchive("archive body checksum does not match the manifest; "
                                 "nothing was copied", path=path)
        upload.write_head(head.raw.frame)
        return upload.commit()
    except BaseException:
        try:
            upload.abort()
        except Exception:       # noqa: BLE001
            pass
        raise
