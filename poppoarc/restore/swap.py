"""Swapping staged entries into an installation, all or nothing.

Layout inside ROOT while a restore runs: the journal ``.poppoarc-restore.json``
(see ``journal``), the new entries ``.poppoarc-stage-<id>/NAME`` built by the
caller, and ``.poppoarc-old-<id>/NAME`` where old entries get parked.  All
inside ROOT, so every move is a rename within one filesystem: atomic.

1. ``begin`` writes the journal (STAGED) *before* creating the directories,
   so a crash never leaves them unrecorded; the caller then fills staging.
2. ``commit_swap`` flushes the filesystem (staged bytes must be on disk
   before they go live), records for each NAME whether and under which inode
   its old and new entry exist, writes SWAPPING, then per NAME either one
   RENAME_EXCHANGE of ROOT/NAME and stage/NAME (the old entry lands in
   staging) or, without exchange support, ROOT/NAME -> old/NAME then
   stage/NAME -> ROOT/NAME.  A NAME staged as absent just has its old entry
   parked; a NAME not live just gets the new one.  fsync, then SWAPPED.
3. A failing health check rolls back (ROLLING_BACK ... ROLLED_BACK); else
   COMMITTED.  Only then are leftovers deleted and the journal removed (or, with
   ``remove_behind``, staging and aside are moved into ``.poppoarc-trash-<id>``, the
   journal removed, and the trash deleted by a detached process: ``trash``).

Recovery takes the direction from the phase: STAGED, SWAPPING, ROLLING_BACK
roll back (the new tree was not known complete and healthy); SWAPPED rolls
forward (every new entry was in place and durable before SWAPPED was
written, so a crash during the health check counts as a pass); ROLLED_BACK
and COMMITTED only clean up.  Nothing is deleted before a final phase is
durable, so until then the old and new entry of every NAME both exist.

*Where* each entry is, recovery does not take from the item states: it
looks.  Entries are identified by the inode numbers recorded before the
first rename, which are stable across renames within a filesystem and
unique while the entry exists (nothing recorded is deleted while they are
compared).  For each NAME it sees what is at ROOT/NAME, finds the wanted
entry in stage/NAME or old/NAME and does the one or two renames left.  Each
step is one rename, so a re-run after a crash in recovery starts from a
state the same logic handles: recovery is idempotent.  An unknown entry at
ROOT/NAME means someone else changed the tree: RecoveryError, journal kept.

Inodes rather than marker files in staged directories, because top-level
files such as ``.env`` cannot carry a marker, markers would have to be
stripped from the restored and the old tree again, and an inode is exact for
files, directories and symlinks alike.  (It assumes nobody deletes and
recreates entries in ROOT meanwhile: the installation lock.)  A NAME staged
as a hard link of the live entry is left as is.  Entries move as entries: a
live symlink is replaced, never followed; mount points are refused up front.

A NAME is a top-level name or a path below one (``plan.SwapUnits``: a targeted restore
swaps only what its targets own, so ``data/ccla.db`` rather than ``data``).  The parent
of a deeper NAME stays in place in ROOT; staging and the aside directory hold the same
parents, made before the swap, so every move is still one rename.

Callers hold the installation lock around begin/commit_swap and ``recover``,
which every command runs first.  Nothing here prints: see ``on_event``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

# Both errors live in poppoarc.errors with the rest of the exit-code table;
# re-exported here as the swap's API.
from ..errors import PoppoarcError, RecoveryError, RestoreSwapError
from .. import fs
from ..fs import process_is_alive, process_start_time
from .journal import (
    COMMITTED, EXCHANGE, RENAME, ROLLING_BACK, STAGED, SWAPPED, SWAPPING, Journal, JournalError,
    journal_path, read_journal, remove_journal,
    valid_entry_name, valid_restore_id, write_journal,
)
from .transaction import NEW, RETRY, EventSink, Transaction, describe, emit

__all__ = ["RecoveryError", "RecoveryResult", "RestoreSwapError", "StagingArea", "SwapResult",
           "begin", "commit_swap", "discard", "recover"]


@dataclass
class StagingArea:
    """Where the caller builds the new top-level entries: ``path / NAME``."""

    root: Path
    restore_id: str
    archive_id: str
    path: Path
    aside: Path
    journal: Journal = field(repr=False)


@dataclass
class SwapResult:
    outcome: str                    # "committed" | "rolled_back" (health check failed)
    restore_id: str
    archive_id: str
    method: str                     # "exchange" | "rename"
    replaced: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    health_error: str | None = None
    details: list[str] = field(default_factory=list)


@dataclass
class RecoveryResult:
    action: str                     # "rolled_back" | "rolled_forward" | "cleaned_up"
    restore_id: str
    archive_id: str
    restored: bool                  # True: the archive's entries are live now
    details: list[str] = field(default_factory=list)


def begin(root: str | os.PathLike, restore_id: str, archive_id: str,
          on_event: EventSink = None) -> StagingArea:
    """Create the staging area of one restore and journal it (phase STAGED)."""
    root = Path(root)
    if not valid_restore_id(restore_id):
        raise ValueError(f"restore id {restore_id!r} is not a safe file name component")
    if not root.is_dir():
        raise RestoreSwapError("installation root is not a directory", path=root)
    try:
        existing = read_journal(root)
    except JournalError as exc:
        raise RestoreSwapError(f"unreadable restore journal: {exc}",
                               path=journal_path(root)) from None
    if existing is not None:
        raise RestoreSwapError(f"unfinished restore {existing.restore_id} (phase {existing.phase}) "
                               "must be recovered first", path=journal_path(root))
    journal = Journal.start(restore_id, archive_id)
    created: list[Path] = []
    try:
        write_journal(root, journal)
        for name in (journal.staging, journal.aside):
            os.mkdir(root / name, 0o700)      # 0700: staged trees may hold secrets
            created.append(root / name)
        fs.fsync_dir(root)
    except OSError as exc:
        with contextlib.suppress(OSError):
            for path in created:              # never a directory we did not create
                fs.remove_tree(path)
            remove_journal(root)
        raise RestoreSwapError(f"cannot create the staging area: {exc}", path=root) from None
    emit(on_event, f"staging area {journal.staging} created for archive {archive_id}")
    return StagingArea(root, restore_id, archive_id, root / journal.staging,
                       root / journal.aside, journal)


def discard(area: StagingArea, on_event: EventSink = None) -> None:
    """Give up a restore before ``commit_swap``: delete staging area and journal."""
    if area.journal.phase != STAGED:
        raise RestoreSwapError(f"restore {area.restore_id} is past staging; use recover()")
    with Transaction(area.root, area.journal, on_event) as tx:
        tx.cleanup()


def commit_swap(area: StagingArea, names: Iterable[str],
                health_check: Callable[[], bool] | None = None,
                on_event: EventSink = None,
                precheck: Callable[[], None] | None = None,
                remove_behind: bool = False) -> SwapResult:
    """Make ``ROOT/NAME`` the staged ``area.path/NAME`` for every NAME, atomically.

    A NAME missing from the staging area is removed from ROOT.  ``precheck()`` runs
    last before anything live changes (after the staged bytes are on disk): an error
    it raises drops the staging area and is raised as it is.  Returns
    outcome "committed", or "rolled_back" when ``health_check`` returned
    False or raised (the old tree is back; a KeyboardInterrupt is re-raised
    after the rollback).  Raises RestoreSwapError when the swap fails (the
    old tree is back, staging deleted), RecoveryError when even the undo or
    the final cleanup failed (journal kept; the next ``recover`` finishes).
    ``remove_behind``: the swapped-out entries of a committed swap are deleted by a
    detached process after this returns (``trash``), not before.
    """
    journal = area.journal
    if journal.phase != STAGED:
        raise RestoreSwapError(f"restore {area.restore_id} was already swapped or abandoned")
    result = SwapResult("committed", area.restore_id, area.archive_id, RENAME)
    with Transaction(area.root, journal, on_event) as tx:
        tx.check_own_journal()
        try:
            journal.items = tx.inventory(_checked_names(names), result)
            journal.method = result.method = (EXCHANGE if fs.supports_exchange(area.path)
                                              else RENAME)
            fs.sync_filesystem(area.path)
            if precheck is not None:
                precheck()
            tx.save(SWAPPING)
        except (OSError, PoppoarcError) as exc:
            # Nothing live was touched (even if SWAPPING reached the disk):
            # dropping the staging area is the whole undo, as in recover().
            with contextlib.suppress(OSError):
                tx.cleanup()
            if isinstance(exc, PoppoarcError):
                raise
            raise RestoreSwapError(f"restore {area.restore_id}: cannot start the swap: "
                                   f"{describe(exc)}") from exc
        try:
            tx.settle(NEW)
            tx.save(SWAPPED)
        except Exception as exc:
            tx.undo(f"swapping in failed ({describe(exc)})")
            raise RestoreSwapError(f"restore {area.restore_id}: swapping in failed, old entries "
                                   f"put back: {describe(exc)}") from exc
        error, interrupt = _run_health_check(health_check)
        if error is not None:
            result.outcome, result.health_error = "rolled_back", error
            tx.emit(f"{error}; putting the old entries back")
            tx.undo(error)
            result.details.append(f"{error}; old entries put back")
            if interrupt is not None:
                raise interrupt
            return result
        try:
            tx.save(COMMITTED)
            tx.cleanup(behind=remove_behind)
        except OSError as exc:
            raise RecoveryError(f"restore {area.restore_id} is in place but finishing it failed "
                                f"({describe(exc)}); {RETRY}") from exc
    result.details.append(f"{len(journal.items)} entries swapped by {result.method}")
    return result


def recover(root: str | os.PathLike, on_event: EventSink = None) -> RecoveryResult | None:
    """Finish or undo an interrupted restore; None when there is none.

    Run first by every poppoarc command, under the installation lock.  Raises
    RecoveryError if the restoring process still runs, if the journal is
    unreadable or names foreign paths, or if the tree holds entries the
    journal does not account for (the journal is then kept).
    """
    root = Path(root)
    try:
        journal = read_journal(root)
    except JournalError as exc:
        raise RecoveryError(f"unreadable restore journal: {exc}", path=journal_path(root)) from None
    if journal is None:
        return None
    if journal.pid != os.getpid() and process_is_alive(journal.pid, journal.pid_start):
        raise RecoveryError(f"restore {journal.restore_id} in progress by pid {journal.pid}")
    phase = journal.phase
    emit(on_event, f"recovering restore {journal.restore_id} interrupted in phase {phase}")
    result = RecoveryResult("cleaned_up", journal.restore_id, journal.archive_id, False)
    try:
        with Transaction(root, journal, on_event) as tx:
            # Claim the journal, so that another recover() sees a live owner.
            journal.pid, journal.pid_start = os.getpid(), process_start_time(os.getpid())
            tx.save()
            if phase == STAGED:
                tx.cleanup()
                result.action = "rolled_back"
                result.details.append("rolled back: nothing had changed; staging area removed")
            elif phase in (SWAPPING, ROLLING_BACK):
                tx.roll_back()
                result.action = "rolled_back"
                result.details.append("rolled back: the old entries are back in place")
            elif phase == SWAPPED:
                tx.settle(NEW)
                tx.save(COMMITTED)
                tx.cleanup()
                result.action, result.restored = "rolled_forward", True
                result.details.append("rolled forward: the restored entries stay, old ones deleted")
            else:
                tx.cleanup()
                result.restored = phase == COMMITTED
                done = "committed" if result.restored else "rolled back"
                result.details.append(f"the restore had already {done}; leftovers removed")
    except OSError as exc:
        raise RecoveryError(f"recovery of restore {journal.restore_id} failed: "
                            f"{describe(exc)}; {RETRY}") from exc
    for line in result.details:
        emit(on_event, line)
    return result


def _run_health_check(health_check: Callable[[], bool] | None
                      ) -> tuple[str | None, BaseException | None]:
    """(None, None) if healthy, else (why not, interrupt to re-raise after rollback)."""
    if health_check is None:
        return None, None
    try:
        healthy = health_check()
    except Exception as exc:
        return f"health check raised {type(exc).__name__}: {describe(exc)}", None
    except BaseException as exc:       # KeyboardInterrupt: undo, then let it through
        return f"health check interrupted by {type(exc).__name__}", exc
    return (None, None) if healthy else ("health check failed", None)


def _checked_names(names: Iterable[str]) -> list[str]:
    checked: list[str] = []
    for name in names:
        if not valid_entry_name(name):
            raise RestoreSwapError(f"{name!r} is not a path that can be restored")
        if name in checked:
            raise RestoreSwapError(f"{name!r} is named twice")
        checked.append(name)
    below = sorted(checked)
    for upper, lower in zip(below, below[1:]):
        if lower.startswith(upper + "/"):
            raise RestoreSwapError(f"{lower!r} lies inside {upper!r}: a path is swapped once")
    return checked
