"""What an interrupted poppoarc leaves behind, whose it is, and when it may go.

Every temporary name poppoarc gives a file or a directory outside a restore's journal
carries the process that made it, so that a later command can tell a leftover of a
dead process from the work of a running one (another installation may share the
store, another user the temporary directory):

* ``STORE/.<id>.poppo.tar.zst.tmp-<owner>``: an archive being written;
* ``.poppoarc-snap-<owner>-<random>/`` in the store (or, for an S3 store, in
  ``$TMPDIR``): the database snapshot copies of a pack, each a copy of a database;
* ``$TMPDIR/poppoarc-verify-<owner>-<random>/``: databases a verify checks;
* ``.poppoarc-drill-<owner>-<random>/`` in the store (or below ``drill --to DIR``):
  the scratch root a restore drill restores into;
* ``<file>.<owner>-<random>.tmp`` beside a file replaced whole
  (``fs.write_file_durably``): the verification record, the schedule state.

``<owner>`` is ``<pid>-<start>-h<host>`` (``fs.owner_tag``): ``<start>`` is the
process's start time (clock ticks since boot), so a recycled pid is not taken for the
process that made the name; ``<host>`` names the machine, boot and pid namespace
(``fs.host_tag``), so a name another machine made in a shared store is never judged by
this machine's /proc: it counts as stale only after a day without a change.  A name
from before owners or hosts were recorded (``tmp-<pid>``, ``<pid>-<start>``: it may be
another machine's) counts as stale once neither it nor what it holds changed for an hour.  A restore's staging area and journal
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
CONSOLIDATE_PREFIX = ".poppoarc-consolidate-"

# (kind, pattern of the name); ``pid``, ``start`` and ``host`` name the owner where the
# name has one (names made before hosts were recorded have no ``host``)
_HOST = r"(?:h(?P<host>[0-9a-f]{8})-)?"
_KINDS = (
    ("archive", re.compile(r"\.(?P<id>.+)\.poppo\.tar\.zst\.tmp-(?P<pid>\d+)"
                           r"(?:-(?P<start>\d+)-h(?P<host>[0-9a-f]{8}))?\Z")),
    ("snapshot", re.compile(re.escape(SNAPSHOT_PREFIX)
                            + r"(?:(?P<pid>\d+)-(?P<start>\d+)-" + _HOST + ")?")),
    ("verify", re.compile(re.escape(VERIFY_PREFIX)
                          + r"(?:(?P<pid>\d+)-(?P<start>\d+)-" + _HOST + ")?")),
    ("drill", re.compile(re.escape(DRILL_PREFIX) + r"(?P<pid>\d+)-(?P<start>\d+)-" + _HOST)),
    ("consolidate", re.compile(re.escape(CONSOLIDATE_PREFIX)
                               + r"(?P<pid>\d+)-(?P<start>\d+)-" + _HOST)),
    ("record", re.compile(r"\.poppoarc-[a-z]+\.json\.(?:(?P<pid>\d+)-(?P<start>\d+)-"
                          + _HOST + r")?[^/]*\.tmp\Z")),
)


def temporary_directory(prefix: str, where: str | os.PathLike | None = None):
    """A ``tempfile.TemporaryDirectory`` whose name says which process owns it."""
    return tempfile.TemporaryDirectory(dir=where, prefix=f"{prefix}{owner_tag()}-")


@dataclass(frozen=True)
class Leftover:
    path: Path
    kind: str           # archive | snapshot | verify | drill | record
    stale: bool         # its process is gone: safe to remove


def classify(name: str) -> tuple[str, int | None, int | None, str | None] | None:
    """(kind, pid, start, host) of a temporary name poppoarc makes, or None.  A name from
    before owners were recorded has pid None; one from before hosts were, host None."""
    for kind, pattern in _KINDS:
        match = pattern.match(name)
        if match:
            pid, start, host = (match.groupdict().get(g) for g in ("pid", "start", "host"))
            return kind, int(pid) if pid else None, int(start) if start else None, host
    return None


# A name without an owner or host (made before names carried them) is taken for stale once
# it is this old: an older poppoarc, here or on another host, may still be using it.
UNOWNED_AFTER = 3600
# A name another host (or boot, or container) made in a shared store is that host's to
# remove; here it is taken for stale only after a day without a change to it or to what
# it holds (a long pack on that host may not touch its snapshot copies for hours).
OTHER_HOST_AFTER = 86400


def owner_gone(pid: int | None, start: int | None, host: str | None = None,
               path: Path | None = None) -> bool:
    """Whether the process that made a name has ended: by this host's /proc when this
    host made it; for another host's, whether neither ``path`` nor what it holds changed
    for ``OTHER_HOST_AFTER`` seconds; for a name without an owner or without a host
    (older poppoarc: it may be another machine's), ``UNOWNED_AFTER``."""
    if pid is None or host is None:     # which host made it cannot be told
        return _idle_for(path, UNOWNED_AFTER)
    if host != fs.host_tag():
        return _idle_for(path, OTHER_HOST_AFTER)
    return not process_is_alive(pid, start or None)


def _idle_for(path: Path | None, seconds: float) -> bool:
    """Neither ``path`` nor an entry directly in it changed for ``seconds`` (False when
    that cannot be told)."""
    try:
        newest = os.lstat(path).st_mtime
        if os.path.isdir(path) and not os.path.islink(path):
            with os.scandir(path) as entries:
                for entry in entries:
                    newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        return time.time() - newest >= seconds
    except (OSError, TypeError):
        return False


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
                found.append(Leftover(path, kind[0], owner_gone(*kind[1:], path=path)))
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
