"""An archive a user named, opened with this installation's keys.

``open_archive`` finds it (an id, an id prefix, a file, an s3:// URL: ``store.locate``);
``open_sealer`` unwraps its data key with the configured passphrase or identity;
``read_checked_index`` reads its index with every record judged by the confinement rule,
as verify, inspect and unpack all do.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..config import Settings
from ..crypto import recipients, signing
from ..crypto.sealer import Sealer
from ..errors import AmbiguousArchive, ArchiveNotFound, Warnings
from ..format import reader
from ..restore.safety import Confinement
from ..store import SUFFIX, Store, StoredArchive, open_store
from ..store import locate as locate_in_store
from .listing import list_archives


def pinned_keys(settings: Settings) -> dict[str, bytes]:
    return signing.trusted_keys(settings.key_dir, settings.trusted_keys)


def find_archive(settings: Settings, reference: str) -> tuple[Store, StoredArchive]:
    """The store holding the referenced archive, and the archive: by id, id prefix, path
    or URL (``store.locate``), else by the name ``pack --name`` gave it (unique in the
    store, else AmbiguousArchive; read from the heads, as ``list`` shows them)."""
    store = open_store(settings)
    try:
        return locate_in_store(store, reference, settings.storage)
    except ArchiveNotFound:
        if reference.startswith("s3://") or os.sep in reference or reference.endswith(SUFFIX):
            raise
        named = [row for row in list_archives(settings, store) if row.name == reference]
        if not named:
            raise
    if len(named) > 1:
        ids = ", ".join(row.id for row in named[:3]) + (", ..." if len(named) > 3 else "")
        raise AmbiguousArchive(f"the name '{reference}' is given to {len(named)} archives "
                               f"({ids}); name one by its id")
    return store, store.find(named[0].id)


@contextmanager
def open_archive(settings: Settings, reference: str):
    """Yields (store, source, display path) for a referenced archive."""
    store, archive = find_archive(settings, reference)
    with store.open(archive) as source:
        yield store, source, archive.where


def open_sealer(settings: Settings, head: reader.TrustedHead, path: Path,
                environ=None) -> Sealer | None:
    """The archive's sealer when it is encrypted and a key here opens it.

    None when the archive is not encrypted, or when no key is configured at
    all; a configured key that does not fit raises WrongKey before any
    content is read.
    """
    encryption = head.manifest["encryption"]
    if encryption is None:
        return None
    secrets = recipients.load_secrets(settings.backup, settings.key_dir,
                                      os.environ if environ is None else environ, Warnings(),
                                      settings.parallel)
    if secrets.passphrase is None and not secrets.identities:
        return None
    data_key = recipients.unwrap(encryption["recipients"], head.manifest["id"], secrets, path)
    return Sealer(data_key, head.manifest["id"])


def read_checked_index(settings: Settings, source, head: reader.TrustedHead, path,
                       sealer: Sealer | None = None, selects=None) -> reader.Index:
    """The index, every record judged by the confinement rule (restore/safety.py) as it is
    read: what verify, inspect and unpack read, so that they refuse the same archives with
    the same errors, before a restore writes anything (its safety archive included).
    ``selects(entry)``: the records the reader writes or reads (a targeted or partial
    restore, ``ls`` of some paths, ``dump``); the others are judged only for what makes the
    archive corrupt.  None: every record (``verify``)."""
    rules = Confinement.for_settings(settings, head.manifest, path, selects)
    try:
        index = reader.read_index(source, head, path, sealer, parallel=settings.parallel,
                                  visit=rules.visit)
        if index.entries is not None:
            rules.finish()
    finally:
        rules.close()
    return index


def full_manifest(head: reader.TrustedHead, index: reader.Index) -> dict:
    """The head manifest with the fields an encrypted archive seals into its index."""
    manifest = dict(head.manifest)
    if index.sealed_manifest:
        manifest.update(index.sealed_manifest)
    return manifest
