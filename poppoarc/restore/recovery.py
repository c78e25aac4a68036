"""Recovery before anything else: an interrupted restore is finished or undone
(``swap.recover``) before any command touches the installation (doctor only reports it)."""

from __future__ import annotations

from pathlib import Path

from .. import fs
from ..config import Settings
from ..errors import LockHeld
from ..lock import InstallationLock
from . import journal, swap, trash


def recover_if_needed(settings: Settings, on_event=None):
    """Finish or undo an interrupted restore; its ``swap.Recovery``, or None.  Also
    removes the trash a restore's remover left when it was killed (``trash.sweep``)."""
    trash.sweep(settings.root)
    if not journal.journal_path(settings.root).exists():
        _remove_stale_journal_temps(settings.root)
        return None
    with InstallationLock(settings.root, "recovery"):
        return swap.recover(settings.root, on_event=on_event)


def _remove_stale_journal_temps(root: Path) -> None:
    """A restore killed while writing its first journal leaves only a temporary.

    Nothing was changed yet, so it is simply removed — unless another process
    holds the lock (it may be writing that journal right now).
    """
    if not any(root.glob(fs.stale_temp_glob(journal.JOURNAL_NAME))):
        return
    try:
        with InstallationLock(root, "recovery"):
            if not journal.journal_path(root).exists():
                journal.remove_journal(root)
    except LockHeld:
        pass
