"""A directory of archives: the local store.

Archives are written under a temporary name, fsynced and renamed, so a file
with a final ``*.poppo.tar.zst`` name is always complete.  Temporary names
carry the writer's pid; one whose writer is gone is stale and removed.
"""


from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ..errors import (AmbiguousArchive, ArchiveError, ArchiveNotFound, StoreError,
                      unreadable_archive, write_error)
from ..fs import fsync_dir, owner_tag, start_writeback, write_file_durably
from ..format.access import FileSink, FileSource
from . import leftovers
from .base import MARK_SUFFIX, SUFFIX, ArchiveUpload, Store, StoredArchive, marked_ids
_TEMP = re.compile(r"\.(?P<id>.+)\.poppo\.tar\.zst\.tmp-"
                   r"(?P<owner>\d+(?:-\d+-h[0-9a-f]{8})?)\Z")
# Each time this much more of the archive is written, the disk is asked to start on it,
# so that the commit's fsync has only the last of it to wait for.
WRITEBACK_EVERY = 8 << 20




def open_archive_file(path) -> FileSource:
    """An archive file for reading: only a regular file (a FIFO named like an archive
    would block every command that lists the store; a device would never end)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ArchiveNotFound("no such archive file", path=path) from None
    except OSError as exc:
        raise unreadable_archive(f"cannot open archive: {exc.strerror}", path) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArchiveError("not a regular file, so not an archive", path=path)
    return FileSource(os.fdopen(fd, "rb"), path)


class LocalStore(Store):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.url = str(self.path)
        self.local_dir = self.path

    def __str__(self) -> str:
        return str(self.path)

    # -- the Store interface --------------------------------------------------
    def catalog(self) -> list[StoredArchive]:
        result = []
        for path in self.archives():
            try:
                size = path.stat().st_size
            except OSError:
                if not os.path.lexists(path):
                    continue        # gone since the listing (a prune ran)
                size = 0            # a dangling symlink: listed, as damaged
            result.append(self.archive_at(path, size))
        return result

    @staticmethod
    def archive_at(path: Path, size: int | None = None) -> StoredArchive:
        name = path.name
        archive_id = name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name
        return StoredArchive(archive_id, str(path), size, path)

    def lookup(self, archive_id: str) -> StoredArchive | None:
        path = self.final_path(archive_id)
        return self.archive_at(path, path.stat().st_size) if path.is_file() else None

    def open(self, archive: StoredArchive) -> FileSource:
        source = open_archive_file(archive.key)
        source.tally = self
        return source

    def begin(self, archive_id: str) -> "LocalUpload":
        self.ensure()
        temp, handle = self.create_temp(archive_id)
        return LocalUpload(self, temp, handle, archive_id)

    def cleanup(self) -> list[str]:
        """Temporaries dead processes left in the store (``leftovers``)."""
        return leftovers.sweep([self.path])

    # -- protection marks ---------------------------------------------------------
    def protected(self) -> set[str]:
        if not self.path.is_dir():
            return set()
        try:
            return marked_ids(os.listdir(self.path))
        except OSError as exc:
            raise StoreError(f"cannot list store: {exc.strerror}", path=self.path) from None

    def mark_path(self, archive_id: str) -> Path:
        return self.path / (archive_id + MARK_SUFFIX)

    def protect(self, archive_id: str, note: bytes) -> bool:
        path = self.mark_path(archive_id)
        if os.path.lexists(path):       # whatever it is, its name keeps the archive
            return False
        try:
            write_file_durably(path, note, 0o600)
            fsync_dir(self.path)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot write protection mark", path) from None
        return True

    def unprotect(self, archive_id: str) -> bool:
        path = self.mark_path(archive_id)
        if not os.path.lexists(path):
            return False
        if path.is_dir() and not path.is_symlink():
            raise StoreError("a directory has the name of this archive's protection mark; "
                             "remove it by hand to unprotect the archive", path=path)
        try:
            path.unlink()
            fsync_dir(self.path)
        except OSError as exc:
            raise StoreError(f"cannot remove protection mark: {exc.strerror}", path=path) \
                from None
        return True

    # -- paths ------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the store directory (0700) if it does not exist."""
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot create store", self.path) from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise StoreError("store is not writable", path=self.path)

    def archives(self) -> list[Path]:
        """Complete archives in the store, sorted by name (oldest first)."""
        if not self.path.is_dir():
            return []
        try:
            names = os.listdir(self.path)
        except OSError as exc:
            raise StoreError(f"cannot list store: {exc.strerror}", path=self.path) from None
        return sorted(self.path / n for n in names if n.endswith(SUFFIX) and not n.startswith("."))

    def resolve(self, reference: str) -> Path:
        """An archive by path, full id, or unique id prefix."""
        candidate = Path(reference)
        if candidate.is_file():
            return candidate
        if os.sep in reference or reference.endswith(SUFFIX):
            raise ArchiveNotFound("no such archive file", path=reference)
        matches = [p for p in self.archives() if p.name[:-len(SUFFIX)] == reference]
        if not matches:
            matches = [p for p in self.archives() if p.name.startswith(reference)]
        if not matches:
            raise ArchiveNotFound(f"no archive matches '{reference}' in store {self.path}")
        if len(matches) > 1:
            names = ", ".join(p.name[:-len(SUFFIX)] for p in matches[:3])
            raise AmbiguousArchive(f"'{reference}' matches {len(matches)} archives ({names}, ...)")
        return matches[0]

    def final_path(self, archive_id: str) -> Path:
        return self.path / (archive_id + SUFFIX)

    def create_temp(self, archive_id: str):
        """Open a new temporary archive file for writing and reading back."""
        temp = self.path / f".{archive_id}{SUFFIX}.tmp-{owner_tag()}"
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot create archive", temp) from None
        return temp, os.fdopen(fd, "w+b", buffering=0)

    def commit(self, temp: Path, handle, archive_id: str) -> Path:
        """fsync, rename to the final name, fsync the directory."""
        final = self.final_path(archive_id)
        try:
            os.fsync(handle.fileno())
            handle.close()
            if final.exists():
                raise StoreError("an archive with this id already exists", path=final)
            os.rename(temp, final)
            fsync_dir(self.path)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot complete archive", final) from None
        return final

    def discard(self, temp: Path, handle) -> None:
        try:
            handle.close()
        finally:
            temp.unlink(missing_ok=True)

    def delete(self, archive) -> None:
        """Remove one complete archive of this store durably (unlink, fsync the directory).

        ``archive`` is a StoredArchive (the Store interface) or a path.
        """
        path = Path(archive.key if isinstance(archive, StoredArchive) else archive)
        if path.parent.resolve() != self.path.resolve() or not path.name.endswith(SUFFIX) \
                or path.name.startswith("."):
            raise StoreError("not an archive of this store; not deleted", path=path)
        try:
            path.unlink()
            fsync_dir(self.path)
        except OSError as exc:
            raise StoreError(f"cannot delete archive: {exc.strerror}", path=path) from None

    def own_temps(self) -> list[Path]:
        """Temporary archives of this process (normally none outside a pack)."""
        if not self.path.is_dir():
            return []
        mine = owner_tag()
        return [self.path / n for n in os.listdir(self.path)
                if (m := _TEMP.match(n)) and m.group("owner") in (mine, str(os.getpid()))]


class LocalUpload(FileSink, ArchiveUpload):
    """A temporary file in the store, renamed to its final name on commit."""

    def __init__(self, store: LocalStore, temp: Path, handle, archive_id: str):
        super().__init__(handle)
        self.store, self.temp, self.archive_id = store, temp, archive_id
        self._unsent = 0        # where the range not yet handed to writeback starts

    def begin(self, body_offset: int) -> None:
        super().begin(body_offset)
        self._unsent = body_offset

    def write(self, data) -> None:
        try:
            super().write(data)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot write archive", self.temp) from None
        end = self.handle.tell()
        if end - self._unsent >= WRITEBACK_EVERY:
            start_writeback(self.handle.fileno(), self._unsent, end - self._unsent)
            self._unsent = end

    def commit(self) -> StoredArchive:
        size = self.handle.seek(0, os.SEEK_END)
        final = self.store.commit(self.temp, self.handle, self.archive_id)
        return self.store.archive_at(final, size)

    def abort(self) -> None:
        self.store.discard(self.temp, self.handle)
