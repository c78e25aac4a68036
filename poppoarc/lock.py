"""One poppoarc writer per installation at a time.

``ROOT/.poppoarc.lock`` is locked with flock(2) for the whole of a pack or
restore; the holder writes its pid into it so a refusal can name it.  The
kernel releases the lock when the process dies, so a crash never leaves a
stale lock behind, only a stale pid in the file.
"""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import LockHeld, StoreError, write_error

LOCK_NAME = ".poppoarc.lock"


class InstallationLock:
    def __init__(self, root: Path, purpose: str, *, name: str = LOCK_NAME,
                 what: str = "installation"):
        self.path = Path(root) / name
        self.purpose = purpose
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> "InstallationLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise write_error(StoreError, exc, "cannot open lock file", self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise LockHeld(f"{self.what} is locked by {holder}; wait for it to finish",
                           path=self.path) from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"pid {os.getpid()} ({self.purpose})\n".encode())
        except OSError as exc:      # a full disk: nothing else could be written either
            os.close(fd)
            raise write_error(StoreError, exc, "cannot write lock file", self.path) from None
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


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
