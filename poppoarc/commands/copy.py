"""``copy``: move an archive between stores (local <-> S3), then verify it there.

The source is authenticated first (pinned key), then its bytes are streamed
to the destination's upload — body first, head last, the same path ``pack``
takes — while the compressed bytes are hashed against the signed checksum,
so a damaged source is never committed.  Afterwards the full ``verify`` runs
against the destination store, reading the copy back; a copy that fails it
is deleted again.  An archive already at the destination is not copied
again, only verified.  Like pack, copy first removes what interrupted
writers left in the destination (stale temporary files or uploads).  A protection
mark travels with the archive (``archives.protection``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..archives.opening import find_archive, pinned_keys
from ..archives.protection import carry_mark
from ..archives.verification import VerifyResult, verify_source
from ..config import Settings
from ..errors import EXIT_OK, ArchiveError, CorruptArchive, TruncatedArchive
from ..format import reader
from ..i18n import N_
from ..options import CopyOptions
from ..store import Store, StoredArchive, open_store

SUMMARY = N_("Copy an archive to another store, then verify it there.")
USAGE = ("copy ARCHIVE --to=STORE [--json]",)
OPTIONS = """\
  --to=STORE       With copy: the destination store (a directory or s3://bucket/prefix).
"""
STRICT_CONFIG = False
PROGRESS = False
COPY_CHUNK = 8 << 20


@dataclass
class CopyResult:
    id: str
    source: str
    destination: str
    size: int
    outcome: str                # copied | present (already there, verified only)
    verified: VerifyResult
    protected: bool = False     # the source's protection mark, carried to the destination
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"id": self.id, "source": self.source, "destination": self.destination,
                "size": self.size, "outcome": self.outcome, "verified": self.verified.to_json(),
                "protected": self.protected}


def _display(archive: StoredArchive) -> str:
    return str(archive.where)


def matches(args: dict) -> bool:
    return bool(args["copy"])


def options(args: dict) -> CopyOptions:
    return CopyOptions(args["ARCHIVE"], args["--to"])


def run(settings: Settings, options: CopyOptions, progress=None) -> CopyResult:
    return copy_archive(settings, options.reference, options.destination, progress)


def copy_archive(settings: Settings, reference: str, destination: str | Store,
                 progress=None) -> CopyResult:
    """Copy the referenced archive into ``destination`` (a store, directory or s3:// URL)."""
    source_store, archive = find_archive(settings, reference)
    dest = destination if isinstance(destination, Store) else open_store(destination, settings.storage)
    source_path = _display(archive)
    with source_store.open(archive) as source:
        head = reader.open_trusted(source, pinned_keys(settings), source_path)
        manifest = head.manifest
        stored = dest.lookup(manifest["id"])
        outcome = "present"
        if stored is None:
            dest.ensure()
            dest.cleanup()
            stored = _stream(source, head, dest, source_path, progress)
            outcome = "copied"
    # an incremental whose parent is already there is verified with its chain (copy
    # chains oldest first); otherwise only itself, and the result says so
    parent = manifest["parent"]
    chain_store = dest if parent and dest.lookup(parent["id"]) is not None else None
    try:
        with dest.open(stored) as copied:
            verified = verify_source(settings, copied, _display(stored), store=chain_store)
    except ArchiveError:
        if outcome == "copied":
            dest.delete(stored)
        raise
    protected = carry_mark(source_store, dest, manifest["id"])
    return CopyResult(manifest["id"], source_path, _display(stored), manifest["size"], outcome,
                      verified, protected)


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
        except Exception:
            pass
        raise
