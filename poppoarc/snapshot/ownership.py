"""What a restore of the selected targets may replace, one path at a time: the walk's
rules (``scan``) for a path met outside a walk (a restore's last look before its swap)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .catalogue import SECRET, Catalogue
from .sqlite import has_sqlite_header, is_sqlite_file

SIDECAR_SUFFIXES = ("-wal", "-shm", "-journal")


def claimed_by_walk(catalogue: Catalogue, root: str, rel: str) -> bool:
    """Whether a walk of the selected targets would take the path ``rel`` (a directory:
    and everything in it), or it is a sidecar of a database path they own: what a
    restore of those targets may replace.  The ownership is ``Catalogue.owner``'s (the
    one rule of which target a path belongs to), for the kind the path has here; the
    walk leaves out a secret (archived sealed, or not at all: restored in place) and a
    special file."""
    path = f"{root}/{rel}"
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        kind = "dir"
    elif stat.S_ISLNK(st.st_mode):
        kind = "symlink"
    elif stat.S_ISREG(st.st_mode):
        kind = "sqlite" if catalogue.database_candidate(rel) and is_sqlite_file(path) else "file"
    else:
        return False
    rule = catalogue.owning_rule(rel, kind)
    if rule is None:
        return kind != "dir" and "database" in catalogue.selected \
            and sidecar_of_database(catalogue, rel)
    if rule.target not in catalogue.selected or rule.action == SECRET:
        return False
    if kind != "dir":
        return True
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return all(claimed_by_walk(catalogue, root, f"{rel}/{name}") for name in names)


def sidecar_of_database(catalogue: Catalogue, path: str) -> bool:
    """Whether ``path`` is a SQLite sidecar (``-wal``, ``-shm``, ``-journal``) of a path the
    database rules claim: a restore of that database drops it (it would replay old data)."""
    for suffix in SIDECAR_SUFFIXES:
        if path.endswith(suffix):
            return catalogue.database_candidate(path[:-len(suffix)])
    return False


def foreign_units(root: Path, catalogue: Catalogue, units) -> list[str]:
    """The paths the swap would replace whole that are, in the live tree, a file or a
    symlink no restored target owns (``catalogue``: the areas of the restored targets,
    ``area_catalogue``; another target's path, or nobody's): the swap would
    replace it with what the archive has there, or write through it (a restored path
    below another target's symlink, ``--targets database`` under agents' ``data/ccla``).
    One ``lstat`` a unit (spec §13: a restore of a target touches only its area)."""
    found = []
    for unit in units:
        try:
            st = os.lstat(root / unit)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) or ("database" in catalogue.selected
                                         and sidecar_of_database(catalogue, unit)):
            continue        # (a restored database's stale sidecar goes with it)
        kind = "symlink" if stat.S_ISLNK(st.st_mode) else \
            _content_kind(catalogue, root / unit, unit) if stat.S_ISREG(st.st_mode) else "file"
        if catalogue.owner(unit, kind) not in catalogue.selected:
            found.append(unit)
    return found


def _content_kind(catalogue: Catalogue, path: Path, unit: str) -> str:
    """"sqlite" or "file" by the content; a file this user cannot read at a path the
    database claim matches is taken for the database it is named as: it is not another
    target's, and the plan lists it as unreadable (which stops a restore that would have
    to save it, and lets ``--skip-backup`` replace it)."""
    try:
        return "sqlite" if has_sqlite_header(path) else "file"
    except OSError:
        return "sqlite" if catalogue.database_candidate(unit) else "file"
