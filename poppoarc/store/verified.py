"""Which archives of a store have been verified: ``STORE/.poppoarc-verified.json`` for a
local store; for a bucket, ``KEYDIR/verified/s3-<hash of the store's URL>.json`` on the
machine that verified (a record in the bucket would be trusted by every machine that can
write there; this one is a fact this installation learned).

``verify`` (and ``verify --all``) records each success here (archive id -> time and
manifest checksum) so that ``doctor`` can name archives that were never verified
without reading them.  A record whose checksum differs from the archive's
manifest (the file was replaced) does not count.  The file is replaced
whole (temporary file, fsync, rename) under a flock on itself, so concurrent
verifies never tear it; it is a cache of facts, so losing it loses nothing
but the "verified" marks.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from ..fs import read_small_file, write_file_durably

RECORD_NAME = ".poppoarc-verified.json"
REMOTE_DIR = "verified"
FORMAT = "poppoarc-verified/1"
MAX_RECORD_BYTES = 64 << 20     # ~100 bytes an archive: far more archives than any store holds


def record_path(store: Path) -> Path:
    return Path(store) / RECORD_NAME


def remote_record_path(key_dir: Path, url: str) -> Path:
    """The record of a remote store (``s3://bucket/prefix``), in the key directory."""
    digest = hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:16]
    return Path(key_dir) / REMOTE_DIR / f"s3-{digest}.json"


def load(store: Path, path: Path | None = None) -> dict[str, dict]:
    """Archive id -> {"verified": ISO time, "checksum": "sha256:..."}; {} if none.
    ``path``: the record file, when it is not the local store's."""
    try:
        document = json.loads(read_small_file(path or record_path(store), MAX_RECORD_BYTES))
    except (OSError, ValueError, RecursionError):     # any damage: the marks are lost, no more
        return {}
    archives = document.get("archives") if isinstance(document, dict) else None
    if not isinstance(archives, dict):
        return {}
    return {k: v for k, v in archives.items() if isinstance(v, dict)}


def record(store: Path, archive_id: str, checksum: str, now: datetime | None = None) -> bool:
    """Mark one archive of a local store verified; False when the store cannot be written."""
    return record_many(record_path(store), {archive_id: checksum}, None, now)


def record_many(path: Path, done: dict[str, str], existing: set[str] | None = None,
                now: datetime | None = None, failed: dict[str, str] | None = None) -> bool:
    """Mark archives (id -> manifest checksum) verified in the record at ``path``, and
    ``failed`` ones (id -> the error) as failing their last verification; marks of
    archives no longer in the store (``existing``; else the local store's files beside
    the record) are dropped.  False when the record cannot be written."""
    failed = failed or {}
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    where = path.parent
    if existing is None:
        existing = {p.name[:-len(".poppo.tar.zst")] for p in where.glob("*.poppo.tar.zst")}
    try:
        if where.name == REMOTE_DIR:
            where.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Lock the directory, not the record: the record is replaced by rename,
        # so a lock on its old inode would not exclude the next writer.
        fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        archives = load(where, path)
        archives.update({k: {"verified": stamp, "checksum": v} for k, v in done.items()})
        archives.update({k: {"failed": stamp, "error": v[:500]} for k, v in failed.items()})
        archives = {k: v for k, v in sorted(archives.items())
                    if k in existing or k in done or k in failed}
        data = json.dumps({"format": FORMAT, "archives": archives}, indent=1).encode() + b"\n"
        write_file_durably(path, data, 0o600)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
