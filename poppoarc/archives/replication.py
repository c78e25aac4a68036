"""Off-site replicas (``backup.storage.replicas``): after a pack, every good archive of the
primary store that a replica lacks is copied there, oldest first, with
``transfer.copy_archive`` (ancestors first, verified at the replica, what it copied deleted
again on failure, the protection mark carried).  The newest archive is verified there even
when it is present already.

A replica that fails does not undo the pack: its outcome says what failed, and the next
run copies everything still missing (the copy is idempotent).  ``prune_replicas`` applies
the retention to each replica that is up to date.  ``lacking`` is what doctor shows: the
primary's good archives a replica does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..config import Settings
from ..errors import PoppoarcError
from ..i18n import N_
from ..lock import StoreLock
from ..store import Store, open_store
from .listing import ListRow, list_archives
from .pruning import prune_locked
from .transfer import copy_archive


@dataclass
class ReplicaOutcome:
    replica: str
    ok: bool = True
    copied: list[str] = field(default_factory=list)     # ids copied by this run, oldest first
    verified: list[str] = field(default_factory=list)   # ids verified at the replica
    missing: list[str] = field(default_factory=list)    # ids still lacking afterwards
    error: str | None = None
    exit_code: int = 0
    pruned: list[str] = field(default_factory=list)     # deleted there by the retention
    warnings: list[str] = field(default_factory=list)   # of that retention

    def to_json(self) -> dict:
        return {"replica": self.replica, "ok": self.ok, "copied": self.copied,
                "verified": self.verified, "missing": self.missing, "error": self.error,
                "pruned": self.pruned}


def replica_store(settings: Settings, replica: str) -> Store:
    return open_store(replica, settings.storage)


def replica_settings(settings: Settings, replica: str) -> Settings:
    """The settings with the replica as the store (its S3 options those of the primary)."""
    storage = {k: v for k, v in settings.storage.items() if k != "url"}
    if replica.startswith("s3://"):
        return replace(settings, storage={**storage, "type": "s3", "url": replica})
    return replace(settings, store=Path(replica), storage={**storage, "type": "local"})


def prune_replicas(settings: Settings, outcomes: list[ReplicaOutcome],
                   protect: frozenset[str]) -> None:
    """The retention applied to each replica that is up to date, over its own archives
    and protection marks (``pruning.prune_locked``: chain-aware, the newest full archive
    verified first); a replica that is behind is left as it is until it has caught up."""
    for outcome in outcomes:
        if not outcome.ok:
            continue
        at_replica = replica_settings(settings, outcome.replica)
        try:
            with StoreLock(at_replica.local_store, "prune"):     # copy's lock of the replica
                result = prune_locked(at_replica, protect=protect)
        except (PoppoarcError, OSError) as exc:
            problem = " ".join(str(exc).split())
            outcome.warnings.append(N_(f"the prune failed: {problem}"))
            continue
        outcome.pruned = list(result.deleted)
        outcome.warnings.extend(result.warnings)


def primary_good(settings: Settings) -> list[ListRow]:
    """The primary's good archives, oldest first."""
    return [row for row in reversed(list_archives(settings)) if row.status == "ok"]


def lacking(settings: Settings, rows: list[ListRow], replica: str) -> list[str]:
    """Ids of ``rows`` the replica does not hold (oldest first); raises when the replica
    cannot be read."""
    store = replica_store(settings, replica)
    held = {archive.id for archive in store.catalog()}
    return [row.id for row in rows if row.id not in held]


def replicate(settings: Settings, newest: str | None = None, progress=None) -> list[ReplicaOutcome]:
    """Bring every configured replica up to the primary; ``newest`` (the archive just
    packed) is verified at each replica even when it is there already."""
    if not settings.replicas:
        return []
    rows = primary_good(settings)
    return [_one(settings, replica, rows, newest, progress) for replica in settings.replicas]


def _one(settings: Settings, replica: str, rows: list[ListRow], newest: str | None,
         progress) -> ReplicaOutcome:
    outcome = ReplicaOutcome(replica)
    todo: list[str] = [newest] if newest else []     # at least, when the replica is unreadable
    try:
        todo = lacking(settings, rows, replica)
        if newest and newest not in todo:
            todo.append(newest)
        store = replica_store(settings, replica)
        for archive_id in todo:
            result = copy_archive(settings, archive_id, store, progress=progress)
            outcome.copied += [a.id for a in result.ancestors
                               if a.outcome == "copied" and a.id not in outcome.copied]
            if result.outcome == "copied":
                outcome.copied.append(result.id)
            outcome.verified.append(result.id)
    except (PoppoarcError, OSError) as exc:
        outcome.ok, outcome.error = False, " ".join(str(exc).split())
        outcome.exit_code = getattr(exc, "exit_code", 22)
        outcome.missing = [a for a in todo if a not in outcome.verified + outcome.copied]
    return outcome
