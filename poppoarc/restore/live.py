"""What a restore reads of the live tree besides its walk: the live databases (for the
plan's row counts, and those SQLite cannot open, which no safety archive could save) and,
just before the swap, whether a path no restored target owns appeared meanwhile."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import RestoreError, too_many_open_files
from ..fs import at_open_file_limit
from ..snapshot import sqlite as sqlite_snapshot
from ..snapshot.ownership import claimed_by_walk
from ..snapshot.scan import DATABASE


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
