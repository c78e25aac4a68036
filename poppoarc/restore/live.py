"""What a restore reads of the live tree besides its walk: the live databases (for the
plan's row counts, and those SQLite cannot open, which no safety archive could save), the
live secret files (for the plan: the walk keeps them apart) and,
just before the swap, whether a path no restored target owns appeared meanwhile."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

from ..errors import RestoreError, too_many_open_files
from ..fs import at_open_file_limit
from ..snapshot import sqlite as sqlite_snapshot
from ..snapshot.ownership import claimed_by_walk
from ..snapshot.scan import DATABASE, FILE, SourceEntry
from ..store import leftovers


def live_databases(root: Path, live) -> tuple[dict[str, tuple[dict, int]], list[str]]:
    """(path: (row counts, user_version)) of the live databases, and those SQLite cannot
    open here (a safety archive could not save them)."""
    found, unopenable = {}, []
    for entry in live:
        if entry.kind == DATABASE:
            try:
                facts = sqlite_snapshot.describe(root / entry.path)
            except sqlite3.Error as exc:    # damaged: exactly why people restore
                if sqlite_snapshot.is_unopenable(exc):
                    if at_open_file_limit():    # CANTOPEN for EMFILE: not the database's
                        raise too_many_open_files() from exc
                    unopenable.append(entry.path)
                continue
            except Exception:   # noqa: BLE001 (a damaged database may fail anyhow)
                continue
            found[entry.path] = (facts.tables, facts.user_version)
    return found, unopenable


def live_secrets(root: Path, paths: list[str]) -> dict[str, SourceEntry]:
    """The live secret files (the walk keeps them apart, ``ScanResult.secrets``: they are
    archived only sealed) with their lstat facts, by path, for the plan to pair with the
    archive's sealed records (``plan.make_plan``); one gone since the walk is left out."""
    found = {}
    for path in paths:
        try:
            st = os.lstat(root / path)
        except OSError:
            continue
        kind = FILE if stat.S_ISREG(st.st_mode) else "other"     # "other": never the same
        found[path] = SourceEntry(path, None, kind, stat.S_IMODE(st.st_mode), st.st_uid,
                                  st.st_gid, st.st_mtime_ns,
                                  st.st_size if kind == FILE else 0, ctime_ns=st.st_ctime_ns)
    return found


def identical_databases(root: Path, live, archived: dict[str, str]) -> frozenset[str]:
    """The live databases whose snapshot, taken as pack takes it, has the SHA-256 the
    archive recorded for that path (``archived``: path -> hex digest): the same content,
    byte for byte, so a restore leaves them as they are.  A database that cannot be
    snapshotted here counts as different."""
    same = set()
    wanted = [e for e in live if e.kind == DATABASE and archived.get(e.path)]
    if not wanted:
        return frozenset()
    with leftovers.temporary_directory(leftovers.VERIFY_PREFIX) as workdir:
        copy = Path(workdir) / "live.db"
        for entry in wanted:
            try:
                sqlite_snapshot.copy(root / entry.path, copy, attempts=1)
                digest = hashlib.sha256()
                with open(copy, "rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(chunk)
            except Exception:   # noqa: BLE001 (damaged, locked, no room: not the same)
                continue
            finally:
                copy.unlink(missing_ok=True)
            if digest.hexdigest() == archived[entry.path]:
                same.add(entry.path)
    return frozenset(same)


def nothing_foreign_appeared(root: Path, catalogue, unit_dirs: list[tuple[str, int]]) -> None:
    """Last check before the swap: no live directory the swap replaces whole got a path
    that no restored target owns since the walk (an application still running: the swap
    would lose it).  Only directories whose status-change time moved are listed again."""
    for rel, ctime_ns in unit_dirs:
        directory = root / rel
        try:
            if os.lstat(directory).st_ctime_ns == ctime_ns:
                continue
            children = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue            # gone: it was the restored target's anyway
        except OSError as exc:
            raise RestoreError(f"cannot read it again before the swap ({exc.strerror}); "
                               "nothing was changed", path=directory) from None
        for name in children:
            child = f"{rel}/{name}"
            if not claimed_by_walk(catalogue, str(root), child):
                raise RestoreError(
                    f"{child} appeared while the restore was staged and belongs to no restored "
                    "target, so the swap would lose it; nothing was changed (stop the "
                    "application first, backup.hooks.beforeRestore, and restore again)",
                    path=root / child)
