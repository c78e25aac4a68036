"""Building the staged tree: the archive's records of the swap's units, written safely.

The swap replaces only what the restored targets own (``plan.SwapUnits``): for each
unit, staging gets its complete replacement from the archive, at the same relative
path; above the units, staging holds plain directories the swap never moves.  Nothing
is taken from the live tree.  Archive content is written by poppoarc itself, never by
``tarfile``: parents are opened component by component with ``O_NOFOLLOW`` relative
to the staging root, files are created with ``O_EXCL``, symlinks are created last and
only when they stay inside the root, and metadata is applied through file descriptors.
A restored directory that stays in place (it holds paths no restored target owns) gets
its mode and times after the swap (``apply_in_place``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from collections.abc import Callable

from ..errors import CorruptArchive, RestoreError, UnsafeArchiveEntry
from ..format.entry import IndexEntry
from ..format.reader import MemberSink
from ..snapshot.sqlite import BackgroundChecks
from .. import fs

# Files this large start on their way to disk when written (``fs.start_writeback``);
# a call per smaller file would cost more than it saves.
WRITEBACK_AT = 256 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class StagedTree(MemberSink):
    """Writes the restored archive entries of the swap's units into ``staging``."""

    def __init__(self, root: Path, staging: Path, writes: Callable[[IndexEntry], bool],
                 link_sources: set[str], covers: Callable[[str], bool], *,
                 same_owner: bool = False, special_bits: bool = False):
        """``writes(entry)``: whether the restore writes this record (``plan.restores``);
        ``link_sources``: the files restored hard links name; ``covers(path)``: whether
        the path lies in a unit of the swap (``SwapUnits.covers``)."""
        self.root, self.staging = root, staging
        self.writes = writes
        self.link_sources = link_sources
        self.covers = covers
        self._linkable: set[str] = set()        # link sources written so far
        self.same_owner = same_owner and os.geteuid() == 0
        self.special_bits = special_bits
        # open directories of staging: only the one last used and those above it, so a
        # restore holds O(depth) descriptors however many directories it writes
        self._dir_fds: dict[str, int] = {}
        self._fd: int | None = None
        self._symlinks: list[IndexEntry] = []
        self._dirs: dict[str, IndexEntry] = {}
        self._structure: dict[str, IndexEntry] = {}
        self._created_dirs: set[str] = set()
        self.in_place: list[IndexEntry] = []    # restored directories the swap leaves live
        # Checked while the rest of the archive streams in.  The content's SHA-256
        # already proved it is the snapshot that passed its check when it was packed
        # (the manifest names it, spec §4.3); quick_check (a quarter of
        # integrity_check's cost) still guards against one SQLite cannot open.
        self.checks = BackgroundChecks(quick=True)

    # -- archive content -------------------------------------------------------
    def _parent_fd(self, path: str) -> tuple[int, str]:
        parent, _, name = path.rpartition("/")
        return self._open_dir(parent), name

    def _open_dir(self, rel: str) -> int:
        fd = self._dir_fds.get(rel)
        if fd is not None:
            return fd
        for other in [p for p in self._dir_fds if p and not rel.startswith(p + "/")]:
            os.close(self._dir_fds.pop(other))  # not above ``rel``: records come in path order
        if not rel:
            fd = os.open(self.staging, _DIR_FLAGS)
        else:
            parent_fd, name = self._parent_fd(rel)
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                os.mkdir(name, 0o700, dir_fd=parent_fd)
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
                self._created_dirs.add(rel)
            except (NotADirectoryError, OSError) as exc:
                raise UnsafeArchiveEntry(f"cannot restore under {rel!r}: it is not a plain "
                                         f"directory in the staged tree ({exc.strerror})",
                                         path=self.root / rel) from None
        self._dir_fds[rel] = fd
        return fd

    def _open_apart(self, rel: str) -> int:
        """A descriptor of the staged directory ``rel`` (existing, never followed through
        a link) outside the cache, for the caller to close."""
        fd = os.open(self.staging, _DIR_FLAGS)
        for name in rel.split("/") if rel else ():
            try:
                inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
            finally:
                os.close(fd)
            fd = inner
        return fd

    def _mode(self, entry: IndexEntry) -> int:
        # setuid/setgid only when asked: a restored file should not gain privileges
        return entry.mode if self.special_bits else entry.mode & ~0o6000

    def begin(self, entry: IndexEntry) -> None:
        if entry.target is None and entry.type == "dir":
            self._structure[entry.path] = entry     # parents shared by targets
        if not self.writes(entry):
            return
        if not self.covers(entry.path):
            if entry.type != "dir":     # (``SwapUnits.conflicts``: refused before staging)
                raise RestoreError(f"{entry.path} lies in no part of the tree the restore "
                                   "swaps; nothing was changed", path=self.root / entry.path)
            self.in_place.append(entry)     # a directory that stays: its metadata later
            return
        parent, name = self._parent_fd(entry.path)
        if entry.type == "dir":
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                if not stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
                    os.unlink(name, dir_fd=parent)
                    os.mkdir(name, 0o700, dir_fd=parent)
            self._dirs[entry.path] = entry
        elif entry.type == "file":
            self._fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                               | os.O_CLOEXEC, 0o600, dir_fd=parent)
            if entry.path in self.link_sources:
                self._linkable.add(entry.path)
        elif entry.type == "symlink":     # its target was judged before anything was
            self._symlinks.append(entry)  # written (safety.py); created last, in finish()
        elif entry.type == "hardlink":
            if entry.link not in self._linkable:     # the index puts the file first
                raise UnsafeArchiveEntry(f"hard link {entry.path} -> {entry.link}: "
                                         "its target is not restored with it")
            source_dir, _, source_name = entry.link.rpartition("/")
            source_parent = self._open_apart(source_dir)    # (the cache holds one line)
            try:
                os.link(source_name, name, src_dir_fd=source_parent, dst_dir_fd=parent,
                        follow_symlinks=False)
            finally:
                os.close(source_parent)

    def data(self, entry: IndexEntry, chunk: bytes) -> None:
        if self._fd is not None:
            view = memoryview(chunk)
            while view:
                view = view[os.write(self._fd, view):]

    def end(self, entry: IndexEntry) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if self.same_owner:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, self._mode(entry))
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            if entry.size >= WRITEBACK_AT:
                # the disk writes it while the rest streams in, not all in the swap's syncfs
                fs.start_writeback(fd)
        finally:
            os.close(fd)
        if entry.sqlite:
            self.checks.submit(entry.path, self.staging / entry.path)

    def finish(self) -> None:
        """Symlinks last, then directory metadata deepest first; check databases."""
        for entry in self._symlinks:
            parent, name = self._parent_fd(entry.path)
            if os.path.lexists(self.staging / entry.path):
                os.unlink(name, dir_fd=parent)
            os.symlink(entry.link, name, dir_fd=parent)
            os.utime(name, ns=(entry.mtime_ns, entry.mtime_ns), dir_fd=parent,
                     follow_symlinks=False)
            if self.same_owner:
                os.chown(name, entry.uid, entry.gid, dir_fd=parent, follow_symlinks=False)
        # Parents made inside a unit take the archive's shared-parent record; those above
        # the units are scaffolding the swap never moves (0700, as made).
        for path in self._created_dirs:
            if path in self._structure and path not in self._dirs and self.covers(path):
                self._dirs[path] = self._structure[path]
        for path in sorted(self._dirs, key=lambda p: -p.count("/")):
            entry = self._dirs[path]
            fd = self._open_dir(path)
            if self.same_owner:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, self._mode(entry))
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        failures = self.checks.failures()
        self.close()
        for path, errors in failures:
            raise CorruptArchive(f"restored database {path} fails quick_check: "
                                 f"{'; '.join(errors[:2])}")

    def close(self) -> None:
        self.checks.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        for fd in self._dir_fds.values():
            os.close(fd)
        self._dir_fds.clear()


def apply_in_place(root: Path, entries: list[IndexEntry], *, same_owner: bool = False,
                   special_bits: bool = False) -> list[str]:
    """Give the restored directories the swap left in place (they hold paths no restored
    target owns) the archive's mode, times (and owner); after the swap, since renames in
    them change their times.  Returns a warning per directory that could not be set."""
    problems = []
    for entry in sorted(entries, key=lambda e: -e.path.count("/")):
        try:
            fd = os.open(root / entry.path, _DIR_FLAGS)
        except OSError as exc:
            problems.append(f"{entry.path}: mode and times not restored ({exc.strerror})")
            continue
        try:
            if same_owner and os.geteuid() == 0:
                os.fchown(fd, entry.uid, entry.gid)
            os.fchmod(fd, entry.mode if special_bits else entry.mode & ~0o6000)
            os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
        except OSError as exc:
            problems.append(f"{entry.path}: mode and times not restored ({exc.strerror})")
        finally:
            os.close(fd)
    return problems


