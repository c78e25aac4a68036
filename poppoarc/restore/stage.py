"""Building the staged tree: live content kept, archive content written safely.

For every top-level name the restore touches, the staging directory gets a
complete replacement: paths of unselected targets and unclaimed paths are
hard-linked from the live tree (no copy, same inode), paths of the selected
targets come from the archive.  Archive content is written by poppoarc
itself, never by ``tarfile``: parents are opened component by component
with ``O_NOFOLLOW`` relative to the staging root, files are created with
``O_EXCL``, symlinks are created last and only when they stay inside the
root, and metadata is applied through file descriptors.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path
from collections.abc import Callable

from ..errors import CorruptArchive, RestoreError, UnsafeArchiveEntry
from ..format.entry import IndexEntry
from ..format.paths import link_target_problem
from ..format.reader import MemberSink
from ..snapshot.scan import in_path_order
from ..snapshot.sqlite import BackgroundChecks
from . import fsops

SIDECARS = ("-wal", "-shm", "-journal")
# Files this large start on their way to disk when written (``fsops.start_writeback``);
# a call per smaller file would cost more than it saves.
WRITEBACK_AT = 256 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _Ascending:
    """Whether a path is among ``paths``, for paths asked in increasing order: both
    sorted, so one forward pass answers every question."""

    def __init__(self, paths):
        self._paths = iter(paths)
        self._next = next(self._paths, None)

    def __contains__(self, path: str) -> bool:
        while self._next is not None and self._next < path:
            self._next = next(self._paths, None)
        return self._next == path


def live_lookup(root: Path) -> Callable[[str], bool]:
    """``is_live(path)``: whether ``path`` exists under ``root`` (as anything).

    One ``lstat`` per path, but none under a directory already found missing: a
    restore into an empty root asks once per directory.  When in doubt (an error
    other than "not there") the answer is yes, which only costs the restore a set entry.
    """
    missing: set[str] = set()
    base = str(root) + "/"

    def is_live(path: str) -> bool:
        parent = path.rpartition("/")[0]
        while parent:
            if parent in missing:
                return False
            parent = parent.rpartition("/")[0]
        try:
            os.lstat(base + path)
        except (FileNotFoundError, NotADirectoryError):
            parent = path.rpartition("/")[0]
            if parent and not os.path.lexists(base + parent):
                missing.add(parent)
            return False
        except OSError:
            return True
        return True

    return is_live


class StagedTree(MemberSink):
    """Writes the selected archive entries into ``staging``; keeps the rest of the live tree."""

    def __init__(self, root: Path, staging: Path, writes: Callable[[IndexEntry], bool],
                 link_sources: set[str], *, same_owner: bool = False,
                 special_bits: bool = False):
        """``writes(entry)``: whether the restore writes this record (``plan.restores``);
        ``link_sources``: the files restored hard links name."""
        self.root, self.staging = root, staging
        self.writes = writes
        self.link_sources = link_sources
        self._linkable: set[str] = set()        # link sources written so far
        self._dropped_dirs: list[str] = []      # live directories the archive does not have
        self.same_owner = same_owner and os.geteuid() == 0
        self.special_bits = special_bits
        # open directories of staging: only the one last used and those above it, so a
        # restore holds O(depth) descriptors however many directories it writes
        self._dir_fds: dict[str, int] = {}
        self._fd: int | None = None
        self._symlinks: list[IndexEntry] = []
        self._dirs: dict[str, IndexEntry] = {}
        self._kept_dirs: dict[str, os.stat_result] = {}
        self._structure: dict[str, IndexEntry] = {}
        self._created_dirs: set[str] = set()
        # Checked while the rest of the archive streams in.  The content's SHA-256
        # already proved it is the snapshot that passed its check when it was packed
        # (the manifest names it, spec §4.3); quick_check (a quarter of
        # integrity_check's cost) still guards against one SQLite cannot open.
        self.checks = BackgroundChecks(quick=True)

    # -- live content --------------------------------------------------------
    def keep_live(self, names: list[str], restored: set[str], dropped) -> None:
        """Hard-link every live path under ``names`` that the restore does not replace:
        neither ``dropped`` (the walk of the selected targets: its paths in path order)
        nor ``restored`` (``plan.StagingPaths``).  The tree is visited in path order too,
        so ``dropped`` is one forward pass, however many paths it has."""
        self._keep_dir(str(self.root), "", restored, _Ascending(dropped), set(names))

    def _keep_dir(self, abs_dir: str, rel_dir: str, restored: set[str], dropped: _Ascending,
                  only: set[str] | None = None) -> None:
        with os.scandir(abs_dir) as children:
            ordered = list(in_path_order(c for c in children if only is None or c.name in only))
        descend = set()
        for name, is_dir in ordered:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if is_dir is None:          # the contents of a directory met before
                if rel in descend:
                    self._keep_dir(f"{abs_dir}/{name}", rel, restored, dropped)
                continue
            live = f"{abs_dir}/{name}"
            st = os.lstat(live)
            if stat.S_ISDIR(st.st_mode):
                if not is_dir:
                    raise RestoreError("the live tree changed while the restore was staged; "
                                       "nothing was changed", path=live)
                (self.staging / rel).mkdir(mode=0o700, exist_ok=True)
                descend.add(rel)
                if rel not in restored:
                    # applied in finish(): writing archive files into it would move its mtime
                    self._kept_dirs[rel] = st
                    if rel in dropped:
                        self._dropped_dirs.append(rel)
                continue
            if rel in dropped or rel in restored:
                continue
            if any(rel.endswith(s) and rel[:-len(s)] in restored for s in SIDECARS):
                continue    # a stale sidecar would replay old data onto the restored database
            target = self.staging / rel
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(live), target)
                os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                continue
            try:
                os.link(live, target, follow_symlinks=False)
            except OSError:
                shutil.copy2(live, target, follow_symlinks=False)

    def prune_removed_dirs(self) -> None:
        """Directories the archive does not have and that ended up empty go away."""
        for rel in sorted(self._dropped_dirs, key=lambda p: -p.count("/")):
            path = self.staging / rel
            if path.is_dir() and not path.is_symlink():
                try:
                    path.rmdir()
                except OSError:
                    pass    # it holds content no selected target owns: keep it

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
                                         f"directory in the live tree ({exc.strerror})",
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
        elif entry.type == "symlink":
            problem = link_target_problem(entry.path, entry.link)
            if problem:
                raise UnsafeArchiveEntry(f"symlink {entry.path} -> {entry.link}: {problem}")
            self._symlinks.append(entry)
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
                fsops.start_writeback(fd)
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
        # Parents this restore had to create take the archive's shared-parent record.
        for path in self._created_dirs:
            if path in self._structure and path not in self._dirs:
                self._dirs[path] = self._structure[path]
        for path in sorted(set(self._dirs) | set(self._kept_dirs), key=lambda p: -p.count("/")):
            fd = self._open_dir(path)
            if path in self._dirs:
                entry = self._dirs[path]
                if self.same_owner:
                    os.fchown(fd, entry.uid, entry.gid)
                os.fchmod(fd, self._mode(entry))
                os.utime(fd, ns=(entry.mtime_ns, entry.mtime_ns))
            else:
                kept = self._kept_dirs[path]
                os.fchmod(fd, stat.S_IMODE(kept.st_mode))
                os.utime(fd, ns=(kept.st_atime_ns, kept.st_mtime_ns))
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


def check_writable(root: Path) -> None:
    if not os.access(root, os.W_OK | os.X_OK):
        raise RestoreError("installation root is not writable by this user", path=root)
