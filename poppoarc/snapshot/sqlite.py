"""Consistent SQLite snapshots with the online backup API.

``Connection.backup(pages=-1)`` copies every page in one step while holding a
read transaction, so the copy is a transaction-consistent image even while
the application keeps committing.  Step-wise copies restart on every foreign
write and can starve (see spec/FORMAT.md §8).  The copy is made whole in DELETE mode
(nothing left in a ``-wal``), then given the journal mode of the live database, so a
restored database in WAL mode stays in WAL mode.  poppoarc opens its own copies
(snapshots, staged and verified files) ``immutable``: a WAL-mode file then gets no
``-wal`` or ``-shm`` beside it.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import DatabaseSnapshotError, InsufficientSpace, too_many_open_files
from ..format.fields import MAX_TABLE_NAME, MAX_TABLES
from ..fs import at_open_file_limit

SQLITE_MAGIC = b"SQLite format 3\x00"


def has_sqlite_header(path: str | os.PathLike, dir_fd: int | None = None) -> bool:
    """True when the file starts with the SQLite header (the name is not trusted);
    raises OSError when it cannot be read (the caller says so: it may be a database)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                 dir_fd=dir_fd)
    try:
        return os.read(fd, 16) == SQLITE_MAGIC
    finally:
        os.close(fd)


def is_sqlite_file(path: str | os.PathLike, dir_fd: int | None = None) -> bool:
    """``has_sqlite_header``, False when the file cannot be read."""
    try:
        return has_sqlite_header(path, dir_fd)
    except OSError:
        return False


@dataclass
class DatabaseFacts:
    """What the manifest records about one captured database."""

    page_size: int
    user_version: int
    tables: dict[str, int]
    tables_truncated: bool = False
    check: str | None = None        # the PRAGMA the snapshot passed (``check``)

    def to_json(self) -> dict:
        facts = {"page_size": self.page_size, "user_version": self.user_version,
                 "tables": self.tables}
        if self.check:
            facts["check"] = self.check
        if self.tables_truncated:
            facts["tables_truncated"] = True
        return facts


def _uri(path: str | os.PathLike, private: bool) -> str:
    """Read-only; ``private``: a file no one else writes (a copy of poppoarc's own),
    opened without locks or sidecars, whatever its journal mode; so is a ``frozen`` one."""
    immutable = private or frozen(path)
    return f"file:{os.fspath(path)}?mode=ro" + ("&immutable=1" if immutable else "")


def frozen(path: str | os.PathLike) -> bool:
    """Whether a live database sits on a read-only file system (a snapshot mounted ro)
    with no ``-wal`` beside it: all its content is in the file, and nothing writes it
    through this mount.  A cleanly stopped application leaves its WAL-mode databases so,
    and SQLite cannot open them ``mode=ro`` there (a WAL reader needs a ``-shm`` it
    cannot create); ``immutable`` reads the file as it is.  ``copy`` checks that the file
    did not change meanwhile (a read-only bind mount of a file system written elsewhere)."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False
    return read_only and not os.path.lexists(f"{os.fspath(path)}-wal")


def _identity(path: str | os.PathLike) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, os.path.lexists(f"{os.fspath(path)}-wal")


def source_facts(path: str | os.PathLike) -> list | None:
    """What a live database's files look like now, taken just before its capture: the
    clock first, then the lstat of the file and of its ``-wal``, and whether a
    ``-journal`` is there (``format.facts.SOURCE_FIELDS``; ``capture_unchanged`` compares
    them).  None when they say nothing reliable (not regular files, unreadable)."""
    taken = time.time_ns()
    path = os.fspath(path)
    try:
        st = os.lstat(path)
        wal = _regular_or_none(f"{path}-wal")
        journal = os.path.lexists(f"{path}-journal")
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    wal_facts = [None] * 3 if wal is None else [wal.st_ino, wal.st_size, wal.st_mtime_ns]
    return [taken, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
            *wal_facts, journal]


def _regular_or_none(path: str) -> os.stat_result | None:
    """The lstat of a regular file; None when there is none; ValueError for another kind."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{path} is not a regular file")
    return st


def describe(path: str | os.PathLike, private: bool = False) -> DatabaseFacts:
    """Row counts per table (sqlite-utils), page size and user_version.

    Only what the manifest can carry (§5.2) is listed: at most 200 tables, names of at
    most 1024 characters, valid UTF-8 (SQLite stores whatever bytes it is given), and
    tables this SQLite can count; ``tables_truncated`` says some were left out.  A name
    or a table this SQLite cannot read never stops a backup of the database itself."""
    import sqlite_utils     # here: only this needs it, and its import is not cheap

    db = sqlite_utils.Database(sqlite3.connect(_uri(path, private), uri=True))
    try:
        db.conn.text_factory = bytes
        raw = [row[0] for row in db.execute("SELECT name FROM sqlite_master "
                                            "WHERE type = 'table'")]
        db.conn.text_factory = str
        names = [name.decode() for name in raw if _is_utf8(name)]
        listed = [name for name in names if len(name) <= MAX_TABLE_NAME][:MAX_TABLES]
        tables = {}
        for name in listed:
            try:
                tables[name] = db[name].count
            except sqlite3.OperationalError:
                # a virtual table whose module this SQLite lacks (an extension the
                # application loads: sqlite-vec, spatialite): its rows are not counted
                continue
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        user_version = db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.conn.close()
    return DatabaseFacts(page_size, user_version, tables, len(raw) > len(tables))


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode()
    except UnicodeDecodeError:
        return False
    return True


def table_names(path: str | os.PathLike) -> list[str]:
    """Table names of a live database, read-only (to size the manifest head)."""
    try:
        conn = sqlite3.connect(_uri(path, private=False), uri=True, timeout=5)
        try:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []
    return [r[0] for r in rows[:MAX_TABLES]]


def integrity_errors(path: str | os.PathLike, quick: bool = False,
                     private: bool = False) -> list[str]:
    """The rows of PRAGMA integrity_check other than 'ok' (empty when healthy)."""
    pragma = "quick_check" if quick else "integrity_check"
    try:
        conn = sqlite3.connect(_uri(path, private), uri=True)
        try:
            rows = [r[0] for r in conn.execute(f"PRAGMA {pragma}")]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_FULL"):
            # its temporary files found no room: the disk's verdict, not the database's
            raise InsufficientSpace(f"no room to run {pragma}: {exc}", path=path) from None
        if (getattr(exc, "sqlite_errorname", "") or "").startswith("SQLITE_CANTOPEN") \
                and at_open_file_limit():
            # SQLite says CANTOPEN for EMFILE too: the process's verdict, not the file's
            raise too_many_open_files() from None
        return [str(exc)]
    return [] if rows == ["ok"] else rows


class BackgroundChecks:
    """PRAGMA checks of database files on a thread of their own, in order.

    A reader queues a database as soon as its bytes are written and reads on while
    SQLite checks it (``sqlite3`` releases the GIL).  ``max_bytes`` bounds the bytes
    of the files queued or being checked (they wait on disk meanwhile; one file is
    always let through); ``remove`` deletes each file once checked.  ``failures``
    waits for every check.  The files are poppoarc's own copies (opened ``private``).
    """

    def __init__(self, quick: bool, *, max_bytes: int | None = None, remove: bool = False):
        self.quick, self.max_bytes, self.remove = quick, max_bytes, remove
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[tuple[str, int, Future]] = []
        self._failed: list[tuple[str, list[str]]] = []

    def submit(self, label: str, path: str | os.PathLike, size: int = 0) -> None:
        while self._pending and self.max_bytes is not None \
                and sum(item[1] for item in self._pending) + size > self.max_bytes:
            self._collect(self._pending.pop(0))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-check")
        self._pending.append((label, size, self._pool.submit(self._check, path)))

    def _check(self, path) -> list[str]:
        try:
            return integrity_errors(path, self.quick, private=True)
        finally:
            if self.remove:
                os.unlink(path)

    def _collect(self, item: tuple[str, int, Future]) -> None:
        errors = item[2].result()
        if errors:
            self._failed.append((item[0], errors))

    def failures(self) -> list[tuple[str, list[str]]]:
        """(label, error rows) of every database that failed, after all checks ran."""
        while self._pending:
            self._collect(self._pending.pop(0))
        return self._failed

    def close(self) -> None:
        """Stop: waits for a check that runs, drops the ones that wait."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending = []


def _open_source(path: Path, timeout: float) -> sqlite3.Connection:
    # Read-only so poppoarc never checkpoints or rewrites the live database;
    # SQLite may still create the -shm index, which is how WAL readers work.
    return sqlite3.connect(_uri(path, private=False), uri=True, timeout=timeout)


# SQLite's answers that mean "cannot open or read it here" rather than "it is damaged"
_UNOPENABLE = ("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY", "SQLITE_AUTH",
               "SQLITE_IOERR", "SQLITE_NOTFOUND")


def is_unopenable(exc: sqlite3.Error) -> bool:
    """Whether SQLite's error says it could not open or read the file here (permissions,
    an unreadable WAL, a read-only directory), rather than that the file is damaged."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(_UNOPENABLE)


def _unopenable(source: Path, why: str) -> DatabaseSnapshotError:
    if at_open_file_limit():    # SQLite says CANTOPEN for EMFILE too: not the database's
        raise too_many_open_files()
    error = DatabaseSnapshotError(f"cannot open database ({why})", path=source)
    error.unopenable = True
    return error


def copy(source: Path, destination: Path, *, timeout: float = 30.0, attempts: int = 5) -> None:
    """Snapshot ``source`` into ``destination`` in one backup step, whole (no ``-wal``), in
    the source's journal mode (WAL or a rollback journal).

    Retries while the database is locked by a writer in rollback-journal mode.
    Raises DatabaseSnapshotError naming the file: ``unopenable`` when SQLite could not
    open or read it (or it stayed locked), else it is damaged; InsufficientSpace when
    the copy found no room.
    """
    last_error = ""
    for attempt in range(attempts):
        destination.unlink(missing_ok=True)
        try:
            before = _identity(source) if frozen(source) else None
            src = _open_source(source, timeout)
            try:
                dst = sqlite3.connect(destination)
                try:
                    # a temporary copy: no fsync needed, it is hashed and archived at once
                    dst.execute("PRAGMA synchronous=OFF")
                    src.backup(dst, pages=-1)
                    dst.execute("PRAGMA journal_mode=DELETE")
                    dst.commit()
                    wal = src.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
                    if wal:     # persistent: the header's bytes 18 and 19 say WAL
                        dst.execute("PRAGMA journal_mode=WAL")
                finally:
                    dst.close()     # (the last connection: an empty -wal and the -shm go)
            finally:
                src.close()
            for suffix in ("-wal", "-shm"):
                Path(f"{destination}{suffix}").unlink(missing_ok=True)
            if before is not None and _identity(source) != before:
                last_error = "it changed while read without locks on a read-only mount"
                time.sleep(0.2 * (attempt + 1))
                continue
            return
        except sqlite3.Error as exc:
            name = getattr(exc, "sqlite_errorname", "") or ""
            if name.startswith("SQLITE_FULL"):
                destination.unlink(missing_ok=True)
                where = destination.parent.parent   # (its own directory is a temporary one)
                raise InsufficientSpace(f"no room for its snapshot copy in {where}: {exc}",
                                        path=source) from None
            if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or (
                    not name and ("locked" in str(exc) or "busy" in str(exc))):
                last_error = str(exc)
                time.sleep(0.2 * (attempt + 1))
                continue
            if is_unopenable(exc):
                raise _unopenable(source, str(exc)) from None
            raise DatabaseSnapshotError(f"cannot snapshot database: {exc}", path=source) from None
    raise _unopenable(source, f"it stayed locked: {last_error}")


def check(snapshot: Path, source: object, full: bool = False) -> DatabaseFacts:
    """quick_check (or, ``full``, integrity_check) the snapshot, then describe it;
    raises naming the source.

    quick_check verifies every page, b-tree, cell and the freelist in O(N);
    integrity_check also matches every index entry with its row, O(N log N),
    several times the cost (bench/RESULTS.md).
    """
    pragma = "integrity_check" if full else "quick_check"
    errors = integrity_errors(snapshot, quick=not full, private=True)
    if errors:
        # one line (the first problem and how many there are); -v shows them all
        if len(errors) > 1:
            raise DatabaseSnapshotError(f"snapshot fails {pragma}: {errors[0]} (and "
                                        f"{len(errors) - 1} more)", path=source, details=errors)
        raise DatabaseSnapshotError(f"snapshot fails {pragma}: {errors[0]}", path=source)
    facts = describe(snapshot, private=True)
    facts.check = pragma
    return facts
