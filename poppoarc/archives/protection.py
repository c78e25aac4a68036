"""Protected archives: an operator's mark that keeps an archive, and its chain, from
every retention (``prune``, the schedule's prune, the prune after a pack).

The mark is a small file (an object in S3) beside the archive in its store,
``<id>.poppo.protected``: outside the signed archive, because protecting is a decision
about an archive made after it was written (before an upgrade, a migration, an audit),
and it must be possible to lift it.  Only the mark's name counts (``store.base``); its
content says when and where it was set, for a person reading the store.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from datetime import datetime, timezone

from ..config import Settings
from ..errors import EXIT_OK, ArchiveNotFound
from ..store import Store, open_store
from .opening import find_archive

MARK_FORMAT = "poppoarc-protected/1"


@dataclass
class ProtectResult:
    id: str
    store: str
    protected: bool             # the archive's state now
    changed: bool               # False: it already was (or was not) protected
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"id": self.id, "store": self.store, "protected": self.protected,
                "changed": self.changed}


def mark_content(archive_id: str, now: datetime | None = None) -> bytes:
    """What a mark file holds: for people; poppoarc reads only its name."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps({"format": MARK_FORMAT, "id": archive_id, "protected": stamp,
                       "host": socket.gethostname()}, sort_keys=True).encode() + b"\n"


def protect(settings: Settings, reference: str) -> ProtectResult:
    """Mark the referenced archive (id, prefix, file or s3:// URL) protected in its store."""
    store, archive = find_archive(settings, reference)
    changed = store.protect(archive.id, mark_content(archive.id))
    return ProtectResult(archive.id, store.url, True, changed)


def unprotect(settings: Settings, reference: str) -> ProtectResult:
    """Lift the mark.  An archive that is gone may still have its mark: a full id lifts it."""
    try:
        store, archive = find_archive(settings, reference)
        archive_id = archive.id
    except ArchiveNotFound:
        store = open_store(settings)
        if reference not in store.protected():
            raise
        archive_id = reference
    changed = store.unprotect(archive_id)
    return ProtectResult(archive_id, store.url, False, changed)


def carry_mark(source: Store, destination: Store, archive_id: str) -> bool:
    """``copy``: a protected archive stays protected in the store it is copied to."""
    if archive_id not in source.protected():
        return False
    destination.protect(archive_id, mark_content(archive_id))
    return True
