"""One poppoarc writer per installation at a time.

``ROOT/.poppoarc.lock`` is locked with flock(2) for the whole of a pack or
restore; the holder writes its pid into it so a refusal can name it.  The
kernel releases the lock when the process dies, so a crash never leaves a
stale lock behind, only a stale pid in the file.

A root that cannot be written (a read-only snapshot mount, an installation owned by
another user) can still be read: a lock file already there is locked through a read-only
descriptor; where none can be created, a pack locks ``STORE/.poppoarc-root-lock-DEV-INO``
instead (``fallback``: the root's device and inode name it, so every pack of that root
into that store meets the same file), and a dry run (``shared``) reads without a lock —
nothing can write to such a root, so nothing can change under it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import NO_SPACE_ERRNOS, LockHeld, StoreError, write_error
from .i18n import N_

LOCK_NAME = ".poppoarc.lock"
ROOT_LOCK_PREFIX = ".poppoarc-root-lock-"      # in the store, for a root it cannot write
STORE_LOCK_NAME = ".poppoarc-store.lock"      # in a local store: its writers, one at a time
_CANNOT_CREATE = {errno.EROFS, errno.EACCES, errno.EPERM}
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP}


class InstallationLock:
    def __init__(self, root: Path, purpose: str, *, name: str = LOCK_NAME,
                 what: str = "installation", shared: bool = False,
                 fallback: Path | None = None, mode: int = 0o600,
                 note_needed: bool = True, required: bool = True):
        self.root = Path(root)
        self.path = self.root / name
        self.purpose = purpose
        self.what = what
        self.shared = shared            # a reader (a dry run): others may read meanwhile
        self.fallback = fallback        # a directory for the lock of a root it cannot write
        self.mode = mode                # of a lock file this process makes
        # False: the holder's pid is only a courtesy (a store's lock: prune must still run
        # on a full store, it is what frees it)
        self.note_needed = note_needed
        # False: where the file system has no flock (some network and FUSE mounts), go on
        # unlocked rather than refuse (the store's lock: stores lived there before it)
        self.required = required
        self._fd: int | None = None
        self._writes = False

    def _open(self) -> tuple[int | None, bool]:
        """(descriptor, writable); (None, False): a shared lock of a root that cannot be
        written and has no lock file, so there is nothing to lock."""
        try:
            # never through a symbolic link: a root-run command would truncate its target
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                         self.mode)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoreError("the lock file is a symbolic link; poppoarc never writes "
                                 "through one (remove it)", path=self.path) from None
            if exc.errno not in _CANNOT_CREATE:
                raise write_error(StoreError, exc, "cannot open lock file", self.path) from None
            refused = exc
        else:
            if self.mode != 0o600:      # past the umask; best effort (another's file stays)
                with contextlib.suppress(OSError):
                    os.fchmod(fd, self.mode)
            return fd, True
        try:            # flock needs no write access: a lock file already there still locks
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW), False
        except OSError:
            pass
        if self.shared:
            return None, False
        if self.fallback is None:
            raise write_error(StoreError, refused, "cannot open lock file", self.path) from None
        st = os.stat(self.root)
        try:
            os.makedirs(self.fallback, 0o700, exist_ok=True)     # (a first pack's store)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot create the store", self.fallback) \
                from None
        self.path = Path(self.fallback) / f"{ROOT_LOCK_PREFIX}{st.st_dev:x}-{st.st_ino}"
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                           0o600), True
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot open lock file", self.path) from None

    def __enter__(self) -> "InstallationLock":
        fd, writable = self._open()
        if fd is None:
            return self
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise LockHeld(f"{self.what} is locked by {holder}; wait for it to finish",
                           path=self.path) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in _NO_LOCKS and not self.required:
                return self
            raise StoreError(f"cannot lock: {exc.strerror} (this file system may not support "
                             "flock)", path=self.path) from None
        if self.shared or not writable:     # (a reader leaves the holder's pid alone)
            self._fd = fd
            return self
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} ({self.purpose})\n".encode())
        except OSError as exc:      # a full disk: nothing else could be written either
            if not self.note_needed and exc.errno in NO_SPACE_ERRNOS:
                self._fd, self._writes = fd, True      # held, without the note
                return self
            os.close(fd)
            raise write_error(StoreError, exc, "cannot write lock file", self.path) from None
        self._fd, self._writes = fd, True
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            if self._writes:
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


class StoreLock:
    """One writer of a local store at a time: ``STORE/.poppoarc-store.lock``.

    The installation lock keeps one installation's writers apart, but a store also
    receives archives from ``copy`` (and from another installation's replication), which
    knows nothing of that installation's root: pack, prune, consolidate and copy
    therefore also lock the store they write.  Re-entrant within a process (a pack
    prunes and replicates under its own lock); ``None`` (a bucket, where no flock
    exists) locks nothing.  ``create``: a store that does not exist yet is made for the
    lock and removed again on the way out when nothing but the lock file is in it.
    """

    _depth: dict[str, int] = {}         # real path -> holders in this process

    def __init__(self, directory: Path | None, purpose: str, *, create: bool = False):
        self.directory = None if directory is None else Path(directory)
        self.purpose = purpose
        self.create = create
        self._lock: InstallationLock | None = None
        self._key: str | None = None
        self._made = False

    def __enter__(self) -> "StoreLock":
        if self.directory is None:
            return self
        if not self.directory.is_dir():
            if not self.create:
                return self         # nothing there to write into: nothing to keep apart
            try:
                self.directory.mkdir(parents=True, mode=0o700)
                self._made = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise write_error(StoreError, exc, "cannot create store", self.directory) \
                    from None
        key = os.path.realpath(self.directory)
        if self._depth.get(key, 0) == 0:
            # 0644: a store another user wrote into once (root's pack) still locks for
            # this one through a read-only descriptor, which is all flock needs
            lock = InstallationLock(self.directory, self.purpose, name=STORE_LOCK_NAME,
                                    what=N_("the store"), mode=0o644, note_needed=False,
                                    required=False)
            try:
                lock.__enter__()
            except BaseException:
                self._remove_made()
                raise
            self._lock = lock
        self._depth[key] = self._depth.get(key, 0) + 1
        self._key = key
        return self

    def __exit__(self, *exc_info) -> None:
        if self._key is None:
            return
        self._depth[self._key] -= 1
        if self._depth[self._key] == 0:
            del self._depth[self._key]
        if self._lock is not None:
            self._lock.__exit__(*exc_info)
            self._lock = None
        self._key = None
        self._remove_made()

    def _remove_made(self) -> None:
        """A store made only for this lock goes again if nothing was written into it."""
        if not self._made:
            return
        self._made = False
        try:
            if set(os.listdir(self.directory)) <= {STORE_LOCK_NAME}:
                (self.directory / STORE_LOCK_NAME).unlink(missing_ok=True)
                self.directory.rmdir()
        except OSError:
            pass


@dataclass
class LockState:
    """What ``probe`` saw: whether the lock is held, and the pid text in the file."""

    path: Path
    exists: bool
    held: bool
    holder: str | None = None          # e.g. "pid 1234 (pack)"
    pid: int | None = None
    pid_alive: bool = False


def probe(root: Path) -> LockState:
    """Look at the lock without taking it (doctor): never disturbs a writer.

    Whether it is held comes from /proc/locks (by inode); where that file does
    not exist, a shared non-blocking flock is tried and released at once.
    """
    path = Path(root) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return LockState(path, False, False)
    except OSError as exc:
        raise StoreError(f"cannot open lock file: {exc.strerror}", path=path) from None
    try:
        holder = os.read(fd, 200).decode("utf-8", "replace").strip() or None
        held = _held(fd)
    finally:
        os.close(fd)
    match = re.match(r"pid (\d+)", holder or "")
    pid = int(match.group(1)) if match else None
    return LockState(path, True, held, holder, pid, pid is not None and pid_alive(pid))


def _held(fd: int) -> bool:
    st = os.fstat(fd)
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            return any(len(f := line.split()) > 5 and f[1] == "FLOCK" and f[5] == wanted
                       for line in locks)
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (EPERM means it does, under another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
