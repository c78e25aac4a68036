"""One poppoarc writer per installation at a time.

``ROOT/.poppoarc.lock`` is locked with flock(2) for the whole of a pack or
restore; the holder writes its pid into it so a refusal can name it.  The
kernel releases the lock when the process dies, so a crash never leaves a
stale lock behind, only a stale pid in the file.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import LockHeld, StoreError

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
            raise StoreError(f"cannot open lock file: {exc.strerror}", path=self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise LockHeld(f"{self.what} is locked by {holder}; wait for it to finish",
                           path=self.path) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({self.purpose})\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
