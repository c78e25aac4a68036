"""The restore journal: ``ROOT/.poppoarc-restore.json``.

It exists from the moment a restore creates its staging area until the
transaction is finished (committed or rolled back) and cleaned up, so its
presence alone tells the next poppoarc command that recovery is needed.  It
is only ever replaced whole and durably (temporary file, fsync, rename, fsync
of ROOT): a crash leaves the previous version or the new one, never a torn
file.

Document (``format`` = ``poppoarc-journal/1``)::

    restore_id, archive_id   what is being restored
    pid, pid_start           the restoring process and its start time (clock
                             ticks since boot, from /proc) so a recycled pid
                             is not mistaken for a live restore
    started                  ISO-8601 UTC
    phase                    see PHASES
    staging, aside           directory names relative to ROOT
    method                   "exchange" | "rename"; null until the swap starts
    trash                    ``.poppoarc-trash-<restore_id>`` or absent/null: where the
                             staging and aside directories may be moved once the phase
                             is final, to be deleted after the command returns (``trash``)
    dev                      st_dev of ROOT; null until the swap starts
    items                    one per swapped path (a top-level name, or a path below one
                             whose parent the restore leaves in place), in swap order:
        name, live_exists, staged_exists, state,
        live_ino, staged_ino  inode numbers of the old (live) and new
                              (staged) entry when the swap started

Item states name the last step *started* on that item and are written
before the step: ``pending`` (nothing yet), ``moved_aside`` (the old entry
may have left the live name; rename method only), ``swapped`` (the new entry
may be at the live name), ``reverting`` (a rollback step on the item began).
Recovery does not trust them blindly: it locates each entry by inode (see
``swap``); the states make the record readable and let a human follow it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .. import fs
from ..errors import resource_limit
from ..fs import process_start_time

FORMAT = "poppoarc-journal/1"
JOURNAL_NAME = ".poppoarc-restore.json"

STAGED, SWAPPING, SWAPPED = "STAGED", "SWAPPING", "SWAPPED"
ROLLING_BACK, ROLLED_BACK, COMMITTED = "ROLLING_BACK", "ROLLED_BACK", "COMMITTED"
# STAGED: staging area exists, nothing live touched.  SWAPPING: entries are
# being moved in.  SWAPPED: every new entry is live (health check pending).
# ROLLING_BACK: old entries are being put back.  ROLLED_BACK / COMMITTED:
# the tree is final (old / new); only leftovers remain to be deleted.
PHASES = (STAGED, SWAPPING, SWAPPED, ROLLING_BACK, ROLLED_BACK, COMMITTED)

PENDING, MOVED_ASIDE, SWAPPED_STATE, REVERTING = "pending", "moved_aside", "swapped", "reverting"
ITEM_STATES = (PENDING, MOVED_ASIDE, SWAPPED_STATE, REVERTING)

EXCHANGE, RENAME = "exchange", "rename"
METHODS = (EXCHANGE, RENAME)

STAGE_PREFIX = ".poppoarc-stage-"
ASIDE_PREFIX = ".poppoarc-old-"
TRASH_PREFIX = ".poppoarc-trash-"
RESERVED_PREFIX = ".poppoarc"          # our own bookkeeping names are never restored
_RESTORE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


def valid_restore_id(restore_id: object) -> bool:
    """A restore id becomes part of directory names: keep it one safe component."""
    return isinstance(restore_id, str) and _RESTORE_ID.match(restore_id) is not None


def valid_entry_name(name: object) -> bool:
    """A path under ROOT (relative, ``/``-separated: a top-level name, or deeper when a
    restore swaps only what its targets own) that a restore may replace or remove."""
    return (isinstance(name, str) and "\0" not in name
            and all(part not in ("", ".", "..") and not part.startswith(RESERVED_PREFIX)
                    for part in name.split("/")))


class JournalError(ValueError):
    """The journal file exists but is not a journal this version understands."""


@dataclass
class JournalItem:
    name: str
    live_exists: bool
    staged_exists: bool
    state: str = PENDING
    live_ino: int | None = None
    staged_ino: int | None = None


@dataclass
class Journal:
    restore_id: str
    archive_id: str
    pid: int
    started: str
    phase: str
    staging: str
    aside: str
    method: str | None = None
    dev: int | None = None
    pid_start: int | None = None
    trash: str | None = None
    items: list[JournalItem] = field(default_factory=list)
    format: str = FORMAT

    @classmethod
    def start(cls, restore_id: str, archive_id: str) -> "Journal":
        """A STAGED journal for a restore run by this process."""
        return cls(restore_id=restore_id, archive_id=archive_id, pid=os.getpid(),
                   pid_start=process_start_time(os.getpid()), started=utc_now_iso(),
                   phase=STAGED, staging=STAGE_PREFIX + restore_id, aside=ASIDE_PREFIX + restore_id,
                   trash=TRASH_PREFIX + restore_id)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> "Journal":
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise JournalError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise JournalError(f"not a {FORMAT} document")
        try:
            items = [JournalItem(**item) for item in doc.pop("items")]
            journal = cls(**doc)
        except (TypeError, KeyError, AttributeError) as exc:
            raise JournalError(f"bad fields: {exc}") from None
        journal.items = items
        journal.validate()
        return journal

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise JournalError(what)

        for name in ("restore_id", "archive_id", "started", "staging", "aside"):
            need(isinstance(getattr(self, name), str), f"{name} must be a string")
        # Recovery deletes ``staging``, ``aside`` and ``trash`` and renames item names:
        # a journal naming any other path (edited, or foreign) is refused.
        need(valid_restore_id(self.restore_id)
             and self.staging == STAGE_PREFIX + self.restore_id
             and self.aside == ASIDE_PREFIX + self.restore_id
             and self.trash in (None, TRASH_PREFIX + self.restore_id)
             and all(valid_entry_name(item.name) for item in self.items)
             and len({item.name for item in self.items}) == len(self.items),
             "the journal names unexpected paths; refusing to touch them")
        need(isinstance(self.pid, int) and self.pid > 0, "pid must be a positive integer")
        need(self.phase in PHASES, f"unknown phase {self.phase!r}")
        need(self.method in (None, *METHODS), f"unknown method {self.method!r}")
        for name in ("dev", "pid_start"):
            need(getattr(self, name) is None or isinstance(getattr(self, name), int),
                 f"{name} must be an integer")
        if self.phase != STAGED:
            need(self.method is not None and self.dev is not None,
                 "method and dev are required once the swap has started")
        for item in self.items:
            need(item.state in ITEM_STATES, f"unknown item state {item.state!r}")
            for flag, ino in ((item.live_exists, item.live_ino),
                              (item.staged_exists, item.staged_ino)):
                need(isinstance(flag, bool), "existence flags must be booleans")
                need((ino is not None) == flag and (ino is None or isinstance(ino, int)),
                     f"{item.name}: inode numbers must be recorded exactly for existing entries")


def journal_path(root: str | os.PathLike) -> Path:
    return Path(root) / JOURNAL_NAME


def write_journal(root: str | os.PathLike, journal: Journal) -> None:
    """Replace the journal durably (the caller must hold the installation lock)."""
    journal.validate()
    fs.write_file_durably(journal_path(root), journal.to_json(), mode=0o600)


def read_journal(root: str | os.PathLike) -> Journal | None:
    """The journal, or None when no restore is unfinished; JournalError if unreadable."""
    try:
        data = fs.read_small_file(journal_path(root), 64 << 20)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError) as exc:
        limit = resource_limit(exc)     # too many open files: not a damaged journal
        if limit is not None:
            raise limit from exc
        raise JournalError(f"cannot read: {exc}") from None
    return Journal.from_json(data)


def remove_journal(root: str | os.PathLike) -> None:
    """Delete the journal and any temporary a crashed write left, durably."""
    root = Path(root)
    for stale in root.glob(fs.stale_temp_glob(JOURNAL_NAME)):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
    with contextlib.suppress(FileNotFoundError):
        journal_path(root).unlink()
    fs.fsync_dir(root)


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
