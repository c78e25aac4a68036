"""The facts cache on disk (``format/facts.py`` has its bytes and its rules).

One file per store and installation, the newest archive's, in the key directory (where
the signing key lives, outside every installation and every store: it is this machine's,
never copied with the archives): ``KEY_DIR/cache/<store and root digest>/<id>.facts``.
A pack in a chain writes it beside its upload and renames it into place after its
archive is committed, removing the one before; the next incremental reads it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from ..fs import owner_tag, read_small_file
from ..format.facts import CachedFacts, FactsRejected, FactsWriter, cache_key, read_cache

MAX_CACHE = 1 << 30         # bytes; a larger file is not one a pack wrote
SUFFIX = ".facts"


def key_of(signing_key) -> bytes:
    """The cache's MAC key, from the installation's signing key (``crypto.signing``)."""
    raw = signing_key.private.private_bytes(serialization.Encoding.Raw,
                                            serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption())
    return cache_key(raw)


def directory(settings) -> Path:
    where = f"{settings.store}\0{settings.root}".encode("utf-8", "surrogateescape")
    return Path(settings.key_dir) / "cache" / hashlib.sha256(where).hexdigest()[:20]


def load(settings, key: bytes, archive_id: str, index_sha256: str) -> CachedFacts | None:
    """The cache of ``archive_id``: None when there is none; FactsRejected when there is
    one this installation did not write for that archive."""
    path = directory(settings) / f"{archive_id}{SUFFIX}"
    try:
        data = read_small_file(path, MAX_CACHE)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FactsRejected(f"cannot be read ({exc})") from None
    return read_cache(data, key, archive_id, str(settings.root), index_sha256)


class PendingFacts:
    """The cache of the archive being packed, written as its records come."""

    def __init__(self, settings, key: bytes, archive_id: str) -> None:
        self.where = directory(settings)
        self.where.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.final = self.where / f"{archive_id}{SUFFIX}"
        self.temporary = self.where / f"{archive_id}{SUFFIX}.{owner_tag()}.tmp"
        self._out = open(self.temporary, "wb")
        self.writer = FactsWriter(self._out, key, archive_id, str(settings.root))

    @classmethod
    def start(cls, settings, key: bytes, archive_id: str) -> PendingFacts | None:
        try:
            return cls(settings, key, archive_id)
        except OSError:     # a cache only saves time: no cache, then
            return None

    def commit(self, index_sha256: str) -> None:
        """After the archive's commit: the cache takes its place, the previous one goes."""
        try:
            self.writer.finish(index_sha256)
            self._out.close()
            os.replace(self.temporary, self.final)
            for other in self.where.iterdir():
                if other != self.final:
                    other.unlink(missing_ok=True)
        except OSError:
            self.abort()

    def abort(self) -> None:
        self._out.close()
        try:
            self.temporary.unlink(missing_ok=True)
        except OSError:
            pass


__all__ = ["FactsRejected", "PendingFacts", "directory", "key_of", "load"]
