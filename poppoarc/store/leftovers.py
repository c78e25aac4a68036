"""What an interrupted poppoarc leaves behind, whose it is, and when it may go.

Every temporary name poppoarc gives a file or a directory outside a restore's journal
carries the process that made it, so that a later command can tell a leftover of a
dead process from the work of a running one (another installation may share the
store, another user the temporary directory):

* ``STORE/.<id>.poppo.tar.zst.tmp-<pid>``: an archive being written;
* ``.poppoarc-snap-<pid>-<start>-<random>/`` in the store (or, for an S3 store, in
  ``$TMPDIR``): the database snapshot copies of a pack, each a copy of a database;
* ``$TMPDIR/poppoarc-verify-<pid>-<start>-<random>/``: databases a verify checks;
* ``.poppoarc-drill-<pid>-<start>-<random>/`` in the store (or below ``drill --to DIR``):
  the scratch root a restore drill restores into;
* ``<file>.<pid>-<start>-<random>.tmp`` beside a file replaced whole
  (``fs.write_file_durably``): the verification record, the schedule state.

``<start>`` is the process's start time (clock ticks since boot), so a recycled pid is
not taken for the process that made the name.  A name from before owners were recorded
counts as stale once it is an hour old.  A restore's staging area and journal
temporaries belong to its journal, which recovery handles (``restore.swap``).

``find`` lists what is there (``doctor`` shows it, touching nothing); ``sweep`` removes
what a dead process left, and is run by every command that takes the installation lock
(pack, restore, prune, a scheduled backup) right after taking it.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import fs
from ..fs import owner_tag, process_is_alive

SNAPSHOT_PREFIX = ".poppoarc-snap-"
VERIFY_PREFIX = "poppoarc-verify-"
DRILL_PREFIX = ".poppoarc-drill-"

# (kind, pattern of the name); ``pid`` and ``start`` name the owner where the name has one
_KINDS = (
    ("archive", re.compile(r"\.(?P<id>.+)\.poppo\.tar\.zst\.tmp-(?P<pid>\d+)\Z")),
    ("snapshot", re.compile(re.escape(SNAPSHOT_PREFIX) + r"(?:(?P<pid>\d+)-(?P<start>\d+)-)?")),
    ("verify", re.compile(re.escape(VERIFY_PREFIX) + r"(?:(?P<pid>\d+)-(?P<start>\d+)-)?")),
    ("drill", re.compile(re.escape(DRILL_PREFIX) + r"(?P<pid>\d+)-(?P<start>\d+)-")),
    ("record", re.compile(r"\.poppoarc-[a-z]+\.json\.(?:(?P<pid>\d+)-(?P<start>\d+)-)?"
                          r"[^/]*\.tmp\Z")),
)


def temporary_directory(prefix: str, where: str | os.PathLike | None = None):
    """A ``tempfile.TemporaryDirectory`` whose name says which process owns it."""
    return tempfile.TemporaryDirectory(dir=where, prefix=f"{prefix}{owner_tag()}-")


@dataclass(frozen=True)
class Leftover:
    path: Path
    kind: str           # archive | snapshot | verify | drill | record
    stale: bool         # its process is gone: safe to remove


def classify(name: str) -> tuple[str, int | None, int | None] | None:
    """(kind, pid, start) of a temporary name poppoarc makes, or None.  A name from
    before owners were recorded has pid None."""
    for kind, pattern in _KINDS:
        match = pattern.match(name)
        if match:
            pid = match.group("pid")
            start = match.groupdict().get("start")
            return kind, int(pid) if pid else None, int(start) if start else None
    return None


# A name without an owner (made before names carried one) is taken for stale once it is
# this old: an older poppoarc may still be running beside this one and using it.
UNOWNED_AFTER = 3600


def owner_gone(pid: int | None, start: int | None, path: Path | None = None) -> bool:
    """Whether the process that made a name has ended; for a name without an owner,
    whether ``path`` was last changed ``UNOWNED_AFTER`` seconds ago or more."""
    if pid is None:
        try:
            return time.time() - os.lstat(path).st_mtime >= UNOWNED_AFTER
        except (OSError, TypeError):
            return False
    return not process_is_alive(pid, start or None)


def find(directories) -> list[Leftover]:
    """Every poppoarc temporary in ``directories`` (missing ones are skipped)."""
    found = []
    for directory in directories:
        if directory is None:
            continue
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            kind = classify(name)
            if kind is not None:
                path = Path(directory) / name
                found.append(Leftover(path, kind[0], owner_gone(*kind[1:], path)))
    return found


def sweep(directories) -> list[str]:
    """Remove what dead processes left in ``directories``; returns the paths removed.
    One that cannot be removed (another user's, in a shared ``$TMPDIR``) stays."""
    removed = []
    for leftover in find(directories):
        if not leftover.stale:
            continue
        try:
            fs.remove_tree(leftover.path)
        except OSError:
            continue
        removed.append(str(leftover.path))
    return removed


def clean(store) -> list[str]:
    """Run by every command that takes the installation lock, right after taking it: the
    store's leftovers (an S3 store: stale multipart uploads) and poppoarc's in
    ``$TMPDIR``.  Returns what was removed."""
    return store.cleanup() + sweep([temp_dir()])


def temp_dir() -> str:
    """Where poppoarc's own temporary directories go when not in the store."""
    return tempfile.gettempdir()
