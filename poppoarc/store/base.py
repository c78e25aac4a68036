"""The storage interface every command works through.

A store holds complete archives, each named ``<id>.poppo.tar.zst``.  What a
command needs from one:

* ``catalog()``: the complete archives (id, location, size), oldest first;
* ``find(reference)``: one archive by full id or unique id prefix;
* ``open(archive)``: an ``ArchiveSource`` to read it (a context manager);
* ``begin(archive_id)``: an ``ArchiveUpload`` to write one — an
  ``ArchiveSink`` that becomes a complete archive only on ``commit()``, and
  leaves nothing under the final name on ``abort()`` or a crash;
* ``delete(archive)`` and ``cleanup()`` (remove what crashed writers left);
* ``protected()``, ``protect(id, note)``, ``unprotect(id)``: the marks that keep an
  archive (and its ancestors) from every retention, each ``<id>.poppo.protected``
  beside the archive, outside the signed bytes (a mark is an operator's decision about
  an archive, not a fact the archive states).  Only a mark's name counts: its content
  (when, by whom) is for people, and is never read, so a junk file can only keep an
  archive longer, never stop a command.

``LocalStore`` (a directory) and ``S3Store`` (a bucket and key prefix)
implement it; ``poppoarc.store.open_store`` picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import AmbiguousArchive, ArchiveNotFound
from ..format.access import ArchiveSink, ArchiveSource

SUFFIX = ".poppo.tar.zst"
MARK_SUFFIX = ".poppo.protected"


def marked_ids(names) -> set[str]:
    """The archive ids that a store's entry names mark protected (hidden names aside:
    those are temporaries of a writer)."""
    return {name[:-len(MARK_SUFFIX)] for name in names
            if name.endswith(MARK_SUFFIX) and not name.startswith(".")
            and len(name) > len(MARK_SUFFIX)}


@dataclass(frozen=True)
class StoredArchive:
    """One archive in a store."""

    id: str
    location: str          # a file path, or s3://bucket/key
    size: int | None       # bytes, when the listing told
    key: object = None     # the store's own handle: a Path, or an object key
    etag: str | None = None

    def __str__(self) -> str:
        return self.location

    @property
    def where(self):
        """For messages: the local ``Path``, or the ``s3://`` URL."""
        return self.key if isinstance(self.key, Path) else self.location


class ArchiveUpload(ArchiveSink):
    """An archive being written: an ``ArchiveSink`` plus commit and abort."""

    def commit(self) -> StoredArchive:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class Store:
    """A place that holds archives (see the module docstring)."""

    url: str = ""
    local_dir: Path | None = None     # a local directory for scratch files, if any
    fetched: int = 0                  # bytes its archives' sources read (``dump`` reports it)

    def __str__(self) -> str:
        return self.url

    def ensure(self) -> None:
        """Check (or create) the store before writing to it."""

    def catalog(self) -> list[StoredArchive]:
        raise NotImplementedError

    def open(self, archive: StoredArchive) -> ArchiveSource:
        raise NotImplementedError

    def begin(self, archive_id: str) -> ArchiveUpload:
        raise NotImplementedError

    def delete(self, archive: StoredArchive) -> None:
        raise NotImplementedError

    def cleanup(self) -> list[str]:
        """Remove what interrupted writers left behind; returns what was removed."""
        return []

    def protected(self) -> set[str]:
        """Ids that carry a protection mark (whether or not the archive is still there)."""
        return set()

    def protect(self, archive_id: str, note: bytes) -> bool:
        """Mark an archive protected; False when it already was."""
        raise NotImplementedError

    def unprotect(self, archive_id: str) -> bool:
        """Remove an archive's mark; False when it had none."""
        raise NotImplementedError

    def lookup(self, archive_id: str) -> StoredArchive | None:
        """The archive with exactly this id, or None."""
        for archive in self.catalog():
            if archive.id == archive_id:
                return archive
        return None

    def find(self, reference: str) -> StoredArchive:
        """An archive by full id or unique id prefix."""
        archives = self.catalog()
        matches = [a for a in archives if a.id == reference]
        if not matches:
            matches = [a for a in archives if a.id.startswith(reference)]
        if not matches:
            raise ArchiveNotFound(f"no archive matches '{reference}' in store {self.url}")
        if len(matches) > 1:
            names = ", ".join(a.id for a in matches[:3])
            raise AmbiguousArchive(f"'{reference}' matches {len(matches)} archives ({names}, ...)")
        return matches[0]
