"""Which archives of a store have been verified: ``STORE/.poppoarc-verified.json``.

``verify`` records each success here (archive id -> time and manifest
checksum) so that ``doctor`` can name archives that were never verified
without reading them.  A record whose checksum differs from the archive's
manifest (the file was replaced) does not count.  The file is replaced
whole (temporary file, fsync, rename) under a flock on itself, so concurrent
verifies never tear it; it is a cache of facts, so losing it loses nothing
but the "verified" marks.
"""

from __future__ import annotations

import fcntl
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..fs import read_small_file, write_file_durably

RECORD_NAME = ".poppoarc-verified.json"
FORMAT = "poppoarc-verified/1"
MAX_RECORD_BYTES = 64 << 20     # ~100 bytes an archive: far more archives than any store holds


def record_path(store: Path) -> Path:
    return Path(store) / RECORD_NAME


def load(store: Path) -> dict[str, dict]:
    """Archive id -> {"verified": ISO time, "checksum": "sha256:..."}; {} if none."""
    try:
        document = json.loads(read_small_file(record_path(store), MAX_RECORD_BYTES))
    except (OSError, ValueError, RecursionError):     # any damage: the marks are lost, no more
        return {}
    archives = document.get("archives") if isinstance(document, dict) else None
    if not isinstance(archives, dict):
        return {}
    return {k: v for k, v in archives.items() if isinstance(v, dict)}


def record(store: Path, archive_id: str, checksum: str, now: datetime | None = None) -> bool:
    """Mark one archive verified; False when the store cannot be written."""
    path = record_path(store)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        # Lock the store directory, not the record: the record is replaced by rename,
        # so a lock on its old inode would not exclude the next writer.
        fd = os.open(store, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        archives = load(store)
        archives[archive_id] = {"verified": stamp, "checksum": checksum}
        existing = {p.name[:-len(".poppo.tar.zst")] for p in Path(store).glob("*.poppo.tar.zst")}
        archives = {k: v for k, v in sorted(archives.items()) if k in existing or k == archive_id}
        data = json.dumps({"format": FORMAT, "archives": archives}, indent=1).encode() + b"\n"
        write_file_durably(path, data, 0o600)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
