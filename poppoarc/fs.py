"""Durable file system primitives (Linux first): the restore transaction, the store and
the key files all write through them.

Everything here is about two promises: a rename is atomic (a crash sees the
entry either at the old or at the new name), and something we wrote is on
disk before we act on it (fsync of the file, then of its directory).

``renameat2(2)`` is reached through ctypes because the stdlib has no binding:
RENAME_EXCHANGE swaps two entries in one step (so the live name never goes
missing), RENAME_NOREPLACE refuses to clobber an existing entry (plain
rename silently replaces a file or an *empty* directory).  Kernels or
filesystems without them answer EINVAL, ENOSYS or EOPNOTSUPP; callers treat
those errnos (``UNSUPPORTED_ERRNOS``) as "use the two-step fallback".
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import os
import platform
import secrets
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path
from typing import Callable

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UNSUPPORTED_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP})

# Only used when libc lacks the renameat2 wrapper (glibc < 2.28, some musl).
_SYS_RENAMEAT2 = {"x86_64": 316, "amd64": 316, "aarch64": 276, "arm64": 276}

_Renameat2 = Callable[[int, bytes, int, bytes, int], int]
_resolved: list[_Renameat2 | None] = []      # [] until first use, then [fn or None]
_exchange_support: dict[int, bool] = {}      # st_dev -> probe result


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _renameat2_function() -> _Renameat2 | None:
    if _resolved:
        return _resolved[0]
    fn: _Renameat2 | None = None
    libc = _libc() if sys.platform.startswith("linux") else None
    if libc is not None:
        wrapper = getattr(libc, "renameat2", None)
        number = _SYS_RENAMEAT2.get(platform.machine().lower())
        if wrapper is not None:
            wrapper.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
                                ctypes.c_char_p, ctypes.c_uint]
            wrapper.restype = ctypes.c_int
            fn = wrapper
        elif number is not None and getattr(libc, "syscall", None) is not None:
            syscall = libc.syscall
            syscall.restype = ctypes.c_long

            def fn(olddirfd: int, old: bytes, newdirfd: int, new: bytes, flags: int) -> int:
                return syscall(ctypes.c_long(number), ctypes.c_int(olddirfd), ctypes.c_char_p(old),
                               ctypes.c_int(newdirfd), ctypes.c_char_p(new), ctypes.c_uint(flags))
    _resolved.append(fn)
    return fn


def _renameat2(dir_fd: int | None, a: str | os.PathLike, b: str | os.PathLike, flags: int) -> None:
    fn = _renameat2_function()
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available", os.fsdecode(a))
    fd = AT_FDCWD if dir_fd is None else dir_fd
    ctypes.set_errno(0)
    if fn(fd, os.fsencode(a), fd, os.fsencode(b), flags) != 0:
        err = ctypes.get_errno() or errno.EIO
        # OSError picks the subclass (FileExistsError, ...) from the errno.
        raise OSError(err, os.strerror(err), os.fsdecode(a), None, os.fsdecode(b))


def rename_exchange(dir_fd: int | None, a: str | os.PathLike, b: str | os.PathLike) -> None:
    """Atomically swap entries ``a`` and ``b`` (both relative to ``dir_fd``).

    Both must exist; they may be of different types.  Raises OSError; an errno
    in UNSUPPORTED_ERRNOS means the kernel or filesystem cannot exchange.
    """
    _renameat2(dir_fd, a, b, RENAME_EXCHANGE)


def rename_noreplace(dir_fd: int | None, a: str | os.PathLike, b: str | os.PathLike) -> None:
    """Rename ``a`` to ``b`` (relative to ``dir_fd``), failing if ``b`` exists.

    Raises FileExistsError when ``b`` exists.  Where RENAME_NOREPLACE is
    unsupported this degrades to lstat-then-rename, which has a window: an
    entry created at ``b`` by another process between the check and the
    rename would be replaced (a file, symlink or empty directory) or make the
    rename fail (a non-empty directory).  The restore accepts that because
    it holds the installation lock and ``b`` lies in its own private area or
    is a top-level name nothing else should be creating at that moment.
    """
    try:
        _renameat2(dir_fd, a, b, RENAME_NOREPLACE)
        return
    except OSError as exc:
        # EINVAL is also what an impossible rename (a directory into itself)
        # returns; os.rename below then fails the same way, so nothing is lost.
        if exc.errno not in UNSUPPORTED_ERRNOS:
            raise
    try:
        os.lstat(b, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    else:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(b))
    os.rename(a, b, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def supports_exchange(dir_path: str | os.PathLike) -> bool:
    """Whether RENAME_EXCHANGE works in ``dir_path``'s filesystem.

    Probed once per st_dev by exchanging two empty files created in
    ``dir_path`` (so the directory must be writable); the probe entries are
    always removed again.
    """
    dev = os.stat(dir_path).st_dev
    if dev not in _exchange_support:
        _exchange_support[dev] = _probe_exchange(os.fspath(dir_path))
    return _exchange_support[dev]


def _probe_exchange(dir_path: str) -> bool:
    token = secrets.token_hex(6)
    a = os.path.join(dir_path, f".poppoarc-probe-{token}-a")
    b = os.path.join(dir_path, f".poppoarc-probe-{token}-b")
    try:
        for path in (a, b):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        inode_a = os.lstat(a).st_ino
        try:
            rename_exchange(None, a, b)
        except OSError as exc:
            if exc.errno in UNSUPPORTED_ERRNOS:
                return False
            raise
        # A filesystem that ignored the flag and did a plain rename would
        # have dropped ``a``; demand a real swap.
        return os.lstat(b).st_ino == inode_a and os.path.lexists(a)
    finally:
        for path in (a, b):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def fsync_dir(path_or_fd: str | os.PathLike | int) -> None:
    """Make the entries of a directory (renames, creations) durable."""
    own = not isinstance(path_or_fd, int)
    fd = os.open(path_or_fd, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) if own else path_or_fd
    try:
        os.fsync(fd)
    except OSError as exc:
        # A few filesystems cannot fsync a directory; nothing more can be
        # done there, and failing the restore for it would help nobody.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        if own:
            os.close(fd)


SYNC_FILE_RANGE_WRITE = 2
_sync_file_range: list = []     # [] until first use, then [fn or None]


def start_writeback(fd: int, offset: int = 0, length: int = 0) -> None:
    """Have the kernel start writing ``fd``'s dirty pages in ``[offset, offset+length)``
    (``length`` 0: to the end) to disk now, without waiting: sync_file_range(2) with
    SYNC_FILE_RANGE_WRITE.

    A head start for the fsync or syncfs that follows, which the disk then spends less
    time on; it is that call which makes the data durable and reports a failed write
    (this one neither waits for the disk nor consumes its errors, so its own result is
    ignored).  Without the call (not Linux) nothing happens.
    """
    if not _sync_file_range:
        libc = _libc() if sys.platform.startswith("linux") else None
        function = getattr(libc, "sync_file_range", None) if libc is not None else None
        if function is not None:
            function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            function.restype = ctypes.c_int
        _sync_file_range.append(function)
    function = _sync_file_range[0]
    if function is not None:
        function(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def sync_filesystem(path: str | os.PathLike) -> None:
    """Flush everything written to ``path``'s filesystem (syncfs, else sync).

    One call makes a whole staged tree durable without fsyncing each file.
    """
    libc = _libc() if sys.platform.startswith("linux") else None
    syncfs = getattr(libc, "syncfs", None) if libc is not None else None
    if syncfs is not None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


def read_small_file(path: str | os.PathLike, limit: int) -> bytes:
    """A file of poppoarc's own (a journal, a record in the store) that someone else may
    have replaced: at most ``limit`` bytes, else ValueError, so that no file makes a
    command hold gigabytes; only regular files (a FIFO would block the read forever)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        chunks, size = [], 0
        while size <= limit:    # in pieces: read(limit + 1) allocates that much at once
            chunk = handle.read(min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    data = b"".join(chunks)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def write_file_durably(path: str | os.PathLike, data: bytes, mode: int = 0o600, *,
                       replace: bool = True) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves old or new, whole.

    ``replace=False``: publish only if nothing is at ``path`` (a hard link, which never
    replaces: FileExistsError), so that two processes creating the same key at once keep
    one, the first, and the second learns it lost.

    The temporary file is ``<name>.<pid>-<start>-<random>.tmp`` in the same directory;
    a crash can leave one behind (see ``stale_temp_glob`` and ``store.leftovers``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{os.path.basename(path)}.{owner_tag()}-",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def publish_file(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> bool:
    """Create ``path`` holding ``data``, whole, only if it does not exist (``link`` never
    replaces).  False when another process published it first (theirs is kept: two
    processes creating the same key at once must end with one key, not with each
    believing its own)."""
    try:
        write_file_durably(path, data, mode, replace=False)
    except FileExistsError:
        return False
    return True


def stale_temp_glob(name: str) -> str:
    """Glob matching temporaries ``write_file_durably`` may leave for ``name``."""
    return f"{name}.*.tmp"


def within(path: str | os.PathLike, place: str | os.PathLike) -> bool:
    """``path`` is ``place`` or lies below it, both with symbolic links resolved (so a
    link to the installation is the installation): the one test of "inside" for every
    place poppoarc refuses to write into (``--to`` of unpack, drill and copy, replicas)."""
    real, container = Path(os.path.realpath(path)), Path(os.path.realpath(place))
    return real == container or container in real.parents


def remove_tree(path: str | os.PathLike) -> None:
    """rm -rf that never follows symlinks; a missing path is fine.

    A symlink or file at ``path`` is unlinked itself.  Directories go through
    ``shutil.rmtree``, which on Linux walks with openat/unlinkat relative to
    directory fds and never descends through a symlink
    (``shutil.rmtree.avoids_symlink_attacks``).  If it fails (typically a
    directory without write or search permission) every *directory* is
    granted u+rwx and the removal retried.  Files are never chmod-ed: a staged
    file can be a hard link of a live one, sharing its mode.
    """
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    _grant_directory_access(path)
    shutil.rmtree(path)


def _grant_directory_access(top: str) -> None:
    def grant(path: str) -> None:
        st = os.lstat(path)      # lstat: a symlink is never chmod-ed through
        if stat.S_ISDIR(st.st_mode) and st.st_mode & 0o700 != 0o700:
            os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)

    grant(top)
    # Top-down: os.walk lists a directory's children before entering them, so
    # each one is opened up just before the walk needs to read it.
    for dirpath, dirnames, _ in os.walk(top, followlinks=False):
        for name in dirnames:
            with contextlib.suppress(OSError):
                grant(os.path.join(dirpath, name))


def process_start_time(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot, None if unknown."""
    fields = proc_stat(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may itself contain ") ".
    return text[text.rfind(")") + 2:].split()


def process_is_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` runs and (when known) is the process that started at ``start``.

    A zombie counts as dead: it will never touch the installation again.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                       # exists, owned by someone else
    fields = proc_stat(pid)
    if fields is None:
        return True                # no /proc: trust kill(0)
    if fields[0] in ("Z", "X"):
        return False
    return start is None or len(fields) <= 19 or int(fields[19]) == start


def owner_tag() -> str:
    """``<pid>-<start>-h<host>``: this process, as the names of poppoarc's temporaries
    carry it (``store.leftovers``), so that a recycled pid is not mistaken for their owner
    and a name another machine made in a shared store is not judged by this one's /proc."""
    pid = os.getpid()
    return f"{pid}-{process_start_time(pid) or 0}-h{host_tag()}"


def at_open_file_limit() -> bool:
    """Whether this process cannot open one more file (EMFILE/ENFILE): what an
    "unable to open" from a library (SQLite's CANTOPEN) may really mean."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError as exc:
        return exc.errno in (errno.EMFILE, errno.ENFILE)
    return False


@functools.lru_cache(maxsize=1)
def host_tag() -> str:
    """8 hex digits naming the place where this process's pid and start time mean
    something: this boot of this machine (/proc/sys/kernel/random/boot_id, /etc/machine-id,
    the host name) and its pid namespace (containers on one kernel share the boot id, not
    their pids).  Another value in a name = another host, boot or container."""
    parts = []
    for source in ("/proc/sys/kernel/random/boot_id", "/etc/machine-id"):
        try:
            parts.append(Path(source).read_text(errors="replace").strip())
        except OSError:
            parts.append("")
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("")
    parts.append(socket.gethostname())
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
