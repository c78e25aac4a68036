"""The steps of one journaled restore (``swap`` explains the protocol and its recovery).

``Transaction`` holds ROOT open as a directory fd and does every rename, each one
named in the journal before it is taken (write-ahead), finding entries by the
inode numbers ``inventory`` recorded.  Nothing here prints: see ``on_event``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import RecoveryError, RestoreSwapError
from .. import fs
from . import trash
from .journal import (
    EXCHANGE, MOVED_ASIDE, REVERTING, ROLLED_BACK, ROLLING_BACK, STAGED, SWAPPED_STATE, Journal,
    JournalError, JournalItem, read_journal, remove_journal, write_journal,
)

if TYPE_CHECKING:
    from .swap import SwapResult

OLD, NEW = "old", "new"
EventSink = Callable[[str], None] | None
RETRY = "the journal was kept; the next poppoarc command retries the recovery"
# Item states are written ahead of each step for a human reading the journal; recovery
# finds entries by inode and never needs them.  Past this many items (a swap of many
# paths) they are not, so that the journal is written O(items) times, not O(items^2).
MARKED_ITEMS = 256


class Transaction:
    """Steps on one journaled restore, with ROOT held open as a directory fd."""

    def __init__(self, root: Path, journal: Journal, on_event: EventSink):
        self.root, self.journal, self.on_event = root, journal, on_event
        self.fd = -1

    def __enter__(self) -> "Transaction":
        self.fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)

    def emit(self, message: str) -> None:
        emit(self.on_event, message)

    def save(self, phase: str | None = None) -> None:
        if phase is not None:
            self.journal.phase = phase
        write_journal(self.root, self.journal)
        if phase is not None:
            self.emit(f"phase {phase}")

    def check_own_journal(self) -> None:
        try:
            on_disk = read_journal(self.root)
        except JournalError as exc:
            raise RestoreSwapError(f"unreadable restore journal: {exc}") from None
        if on_disk is None or on_disk.restore_id != self.journal.restore_id:
            raise RestoreSwapError(f"the journal of restore {self.journal.restore_id} is gone")
        if on_disk.phase != STAGED:
            raise RestoreSwapError(f"restore {self.journal.restore_id} is in phase {on_disk.phase}")

    def inode(self, rel: str) -> int | None:
        """Inode number of the entry at ``rel`` (never followed); -1 if foreign."""
        try:
            st = os.lstat(rel, dir_fd=self.fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_ino if st.st_dev == self.journal.dev else -1

    def inventory(self, names: list[str], result: SwapResult) -> list[JournalItem]:
        """Record every NAME's old and new entry; refuse what cannot be renamed."""
        self.journal.dev = os.fstat(self.fd).st_dev
        if os.listdir(self.root / self.journal.aside):
            raise RestoreSwapError(f"{self.journal.aside} is not empty", path=self.root)
        self._make_parents(names)
        items = []
        for name in names:
            staged_rel = f"{self.journal.staging}/{name}"
            live, staged = self.inode(name), self.inode(staged_rel)
            for ino, rel in ((live, name), (staged, staged_rel)):
                if ino == -1:
                    raise RestoreSwapError("is on another filesystem (a mount point?) and cannot "
                                           "be swapped atomically", path=self.root / rel)
            items.append(JournalItem(name, live is not None, staged is not None,
                                     live_ino=live, staged_ino=staged))
            if live is not None and live == staged:
                result.unchanged.append(name)
            elif live is not None or staged is not None:
                (result.replaced if live is not None and staged is not None
                 else result.created if staged is not None else result.removed).append(name)
        extra = sorted(set(os.listdir(self.root / self.journal.staging))
                       - {name.partition("/")[0] for name in names})
        if extra:
            self.emit(f"ignoring staged entries that were not named: {', '.join(extra)}")
        return items

    def _make_parents(self, names: list[str]) -> None:
        """The parents of deeper NAMEs: real directories in ROOT (never followed through a
        link), and made in staging and aside, so each move stays one rename."""
        parents = sorted({name.rpartition("/")[0] for name in names if "/" in name})
        for parent in parents:
            prefix = ""
            for part in parent.split("/"):
                prefix = f"{prefix}/{part}" if prefix else part
                try:
                    st = os.lstat(prefix, dir_fd=self.fd)
                except FileNotFoundError:
                    st = None
                if st is None or not stat.S_ISDIR(st.st_mode):
                    raise RestoreSwapError(f"{prefix} is no longer a directory; the tree "
                                           "changed while the restore was staged",
                                           path=self.root / prefix)
            for area in (self.journal.staging, self.journal.aside):
                os.makedirs(self.root / area / parent, mode=0o700, exist_ok=True)

    def parent_dirs(self) -> list[str]:
        """Every directory a swap renames in: ROOT's, staging's and aside's parents of
        the items (relative to ROOT), for the fsync that makes the renames durable."""
        found = {""}
        for item in self.journal.items:
            parent = item.name.rpartition("/")[0]
            found.add(parent)
            for area in (self.journal.staging, self.journal.aside):
                found.add(f"{area}/{parent}" if parent else area)
        return sorted(found)

    def mark(self, item: JournalItem, state: str) -> None:
        """Write-ahead: the journal names the step before it is taken."""
        if item.state != state:
            item.state = state
            if len(self.journal.items) <= MARKED_ITEMS:
                self.save()

    def place(self, item: JournalItem, want: str) -> None:
        """Put the ``want`` entry of ``item`` at ROOT/NAME (or nothing, if it has none)."""
        want_ino, other_ino = ((item.staged_ino, item.live_ino) if want == NEW
                               else (item.live_ino, item.staged_ino))
        if want_ino is not None and want_ino == other_ino:
            return                     # staged as a hard link of the live entry
        name, forward = item.name, want == NEW
        slots = [f"{self.journal.staging}/{name}", f"{self.journal.aside}/{name}"]
        if forward:
            slots.reverse()            # park old entries in old/, new ones in stage/
        current = self.inode(name)
        if current is not None and current not in (want_ino, other_ino):
            raise RecoveryError(f"{name} is neither the old nor the restored entry; someone "
                                "changed the tree, resolve by hand", path=self.root / name)
        if current == want_ino:
            return
        source = None
        if want_ino is not None:
            source = next((slot for slot in slots if self.inode(slot) == want_ino), None)
            if source is None:
                raise RecoveryError(f"the {want} entry of {name} is in neither {slots[0]} "
                                    f"nor {slots[1]}", path=self.root)
        if current is not None and source is not None and self.journal.method == EXCHANGE:
            self.mark(item, SWAPPED_STATE if forward else REVERTING)
            self.emit(f"exchanging {name} with {source}")
            try:
                fs.rename_exchange(self.fd, name, source)
                return
            except OSError as exc:     # e.g. recovery under another kernel: two steps
                if exc.errno not in fs.UNSUPPORTED_ERRNOS:
                    raise
        if current is not None:
            parking = next((slot for slot in slots if self.inode(slot) is None), None)
            if parking is None:
                raise RecoveryError(f"no free place to move {name} aside", path=self.root)
            self.mark(item, MOVED_ASIDE if forward else REVERTING)
            self.emit(f"moving {name} to {parking}")
            fs.rename_noreplace(self.fd, name, parking)
        if source is not None:
            self.mark(item, SWAPPED_STATE if forward else REVERTING)
            self.emit(f"moving {source} to {name}")
            fs.rename_noreplace(self.fd, source, name)

    def settle(self, want: str) -> None:
        """Place every item's ``want`` entry, then make the renames durable."""
        items = self.journal.items if want == NEW else list(reversed(self.journal.items))
        for item in items:
            self.place(item, want)
        # Durable before the next phase is written: once COMMITTED or
        # ROLLED_BACK is on disk, the entries not in place get deleted.
        fs.fsync_dir(self.fd)
        for name in self.parent_dirs():
            if name and os.path.isdir(self.root / name):
                fs.fsync_dir(self.root / name)
        self.emit(f"all {want} entries in place")

    def roll_back(self) -> None:
        if self.journal.phase != ROLLING_BACK:
            self.save(ROLLING_BACK)
        self.settle(OLD)
        self.save(ROLLED_BACK)
        self.cleanup()

    def undo(self, why: str) -> None:
        """Roll back inside commit_swap; RecoveryError if that fails too."""
        try:
            self.roll_back()
        except Exception as again:
            raise RecoveryError(f"restore {self.journal.restore_id}: {why} and putting the "
                                f"old entries back failed too ({describe(again)}); "
                                f"{RETRY}") from again

    def _nothing_below(self, names: list[str]) -> bool:
        """Whether ``names`` (in ROOT) are all empty or absent: nothing to delete later."""
        return all(_empty_or_absent(self.root / name) for name in names)

    def cleanup(self, behind: bool = False) -> None:
        """Delete staging and parked entries, then the journal (final phases only).

        ``behind``: move them into the journal's trash directory instead and leave its
        deletion to a detached process once the journal is gone (``trash``)."""
        names = [self.journal.staging, self.journal.aside]
        held = -1
        if behind and self.journal.trash and not self._nothing_below(names):
            self.emit(f"moving {' and '.join(names)} to {self.journal.trash}")
            try:
                held = trash.gather(self.fd, self.journal.trash, names)
            except OSError:
                held = -1                  # removed here, below
        if held < 0:
            for name in names:
                self.emit(f"removing {name}")
                fs.remove_tree(self.root / name)
            if self.journal.trash:         # a crash left it after moving things there
                fs.remove_tree(self.root / self.journal.trash)
        try:
            remove_journal(self.root)
        except BaseException:
            if held >= 0:
                os.close(held)             # the trash stays for recovery
            raise
        if held >= 0:
            self.emit(f"removing {self.journal.trash} after the restore")
            trash.remove_behind(self.root / self.journal.trash, held)
        self.emit(f"restore {self.journal.restore_id} finished")


def _empty_or_absent(path: Path) -> bool:
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except (FileNotFoundError, NotADirectoryError):
        return True


def describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def emit(on_event: EventSink, message: str) -> None:
    if on_event is not None:
        on_event(message)
