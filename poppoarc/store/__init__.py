"""Where archives are kept: a local directory or an S3-compatible bucket.

``open_store`` turns settings, a directory or an ``s3://bucket/prefix`` URL
into a ``Store`` (``base.py``); ``locate`` resolves what a user typed as an
archive reference.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ArchiveError, ArchiveNotFound
from .base import SUFFIX, ArchiveUpload, Store, StoredArchive
from .local import LocalStore

__all__ = ["SUFFIX", "ArchiveUpload", "LocalStore", "Store", "StoredArchive", "locate",
           "open_store"]


def open_store(target, options: dict | None = None) -> Store:
    """A store from ``Settings``, an ``s3://bucket/prefix`` URL, or a directory.

    ``options`` are S3 settings (region, endpointUrl, profile, ...) for a URL;
    with ``Settings`` they come from its resolved ``backup.storage``.
    """
    if hasattr(target, "storage") and hasattr(target, "store"):
        if target.storage.get("type") == "s3":
            return open_store(target.storage["url"], target.storage)
        return LocalStore(target.store)
    text = str(target)
    if text.startswith("s3://"):
        from .s3 import S3Store, parse_url

        bucket, prefix = parse_url(text)
        return S3Store(bucket, prefix, options)
    return LocalStore(Path(text))


def locate(store: Store, reference: str, options: dict | None = None) -> tuple[Store, StoredArchive]:
    """The archive a user named: an id or unique id prefix in ``store``, a local
    file path, or a full ``s3://bucket/key`` URL.  Returns the store that holds it too.
    """
    if reference.startswith("s3://"):
        from .s3 import S3Store, parse_url

        bucket, key = parse_url(reference)
        key = key.rstrip("/")
        if not key.endswith(SUFFIX):
            raise ArchiveNotFound(f"not an archive URL (expected …/<id>{SUFFIX})", path=reference)
        prefix = key.rpartition("/")[0]
        holder = S3Store(bucket, prefix + "/" if prefix else "", options)
        return holder, holder.object_at(key)
    path = Path(reference)
    if path.is_file():
        return LocalStore(path.parent), LocalStore.archive_at(path, path.stat().st_size)
    if os.sep in reference:
        if os.path.lexists(reference):     # a directory, a FIFO, a device: never opened
            raise ArchiveError("not a regular file, so not an archive", path=reference)
        raise ArchiveNotFound("no such archive file", path=reference)
    if reference.endswith(SUFFIX):
        found = store.lookup(reference[:-len(SUFFIX)])
        if found is None:
            raise ArchiveNotFound("no such archive file", path=reference)
        return store, found
    return store, store.find(reference)
