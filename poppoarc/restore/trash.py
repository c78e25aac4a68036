"""The swapped-out tree, removed after the restore has returned.

Once a restore is COMMITTED (or ROLLED_BACK), what is left in its staging and aside
directories is only waste: the old entries (or the unused new ones).  Deleting a large
tree costs as much as the rest of a restore over a live installation, so with
``Tuning.trash_behind`` (two-process mode) the transaction moves both directories into
``ROOT/.poppoarc-trash-<id>`` (two renames, named in the journal as ``trash`` before
the COMMITTED or ROLLED_BACK phase is written), removes the journal, and leaves the
deletion to a detached process (``python -m poppoarc.restore.trash``) that holds an
exclusive ``flock`` on the trash directory while it works.

Nothing in the trash is ever live or restored: its name starts with ``.poppoarc`` (never
packed, never a restore's entry name, ``journal.valid_entry_name``), and it is made only
after the tree is final.  If the remover is killed (or never starts), ``sweep`` — run by
every command before anything else (``recovery.recover_if_needed``) — removes each trash
directory whose lock nobody holds; a crash before the journal was removed leaves it to
recovery, which deletes staging, aside and trash of a final phase.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import sys
from pathlib import Path

from .. import fs
from .journal import TRASH_PREFIX


def gather(root_fd: int, trash: str, names: list[str]) -> int:
    """Make ``trash`` in ROOT (fd ``root_fd``), move each of ``names`` into it, lock it.

    Returns the trash directory's fd, holding the lock (inheritable, for the remover).
    OSError leaves whatever was moved in the trash; the caller removes all of them.
    """
    os.mkdir(trash, 0o700, dir_fd=root_fd)
    fd = os.open(trash, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=root_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.rename(name, f"{trash}/{name}", src_dir_fd=root_fd, dst_dir_fd=root_fd)
        fs.fsync_dir(root_fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_behind(path: Path, fd: int) -> None:
    """Delete the trash directory ``path`` (locked by ``fd``) in a detached process.

    The remover inherits ``fd`` and so the lock; it runs in a session of its own, so the
    terminal's signals to this command do not stop it.  If it cannot be started, the
    trash is removed here.  ``fd`` is closed either way.
    """
    try:
        os.set_inheritable(fd, True)
        package = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package, env.get("PYTHONPATH")]))
        # sh starts the remover in the background and exits: the remover is nobody's
        # child to wait for, so neither this process nor a test runner keeps a zombie.
        script = 'exec "$0" -m poppoarc.restore.trash "$1" "$2" </dev/null >/dev/null 2>&1 &'
        pid = os.posix_spawn("/bin/sh", ["sh", "-c", script, sys.executable, str(fd),
                                         os.fspath(path)], env, setsid=True)
        os.waitpid(pid, 0)
    except OSError:
        remove_locked(path, fd)
    finally:
        os.close(fd)


def remove_locked(path: Path, fd: int) -> None:
    """Remove ``path`` if it is still the directory ``fd`` has open (never another one)."""
    try:
        same = os.path.samestat(os.fstat(fd), os.lstat(path))
    except OSError:
        return
    if same:
        fs.remove_tree(path)


def sweep(root: str | os.PathLike, wait: bool = False) -> list[str]:
    """Remove every trash directory in ROOT that no remover is working on (``wait``:
    wait for the removers instead, then make sure).  Returns the paths removed."""
    removed = []
    try:
        names = [name for name in os.listdir(root) if name.startswith(TRASH_PREFIX)]
    except OSError:
        return removed
    for name in names:
        path = Path(root) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            if os.path.lexists(path) and not os.path.isdir(path):
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            continue                       # its remover is at work
        try:
            remove_locked(path, fd)
            removed.append(str(path))
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed


def busy(path: Path) -> bool:
    """Whether a remover holds the lock of the trash directory ``path`` now."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    """The detached remover: ``FD PATH``; FD is PATH's directory, locked."""
    fd, path = int(argv[0]), Path(argv[1])
    if not path.name.startswith(TRASH_PREFIX) or not stat.S_ISDIR(os.fstat(fd).st_mode):
        return 2
    with contextlib.suppress(OSError):
        os.nice(10)
    try:
        remove_locked(path, fd)
    except OSError:
        return 1                           # the next command's sweep tries again
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
