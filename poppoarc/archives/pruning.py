"""``prune``: apply the retention policy to the store.

Reads every archive's head (``list_archives``), asks ``retention.decide``,
and deletes what it says through the store, under the installation lock so
that no pack or restore runs meanwhile.  Before anything is deleted, the
archive that the policy protects as "newest good full" is verified end to
end; if it fails, it is treated as damaged and the decision is made again, so
the archive that survives as the last restorable point is one that restores.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from ..config import Settings
from ..config_schema import resolve_timezone
from ..errors import EXIT_OK, EXIT_WARNING, ArchiveError
from ..lock import InstallationLock, StoreLock
from ..policy.retention import KEEP_NEWEST_FULL, ArchiveInfo, Decision, RetentionPolicy, decide
from ..store import leftovers, open_store
from .listing import list_archives
from .verification import verify


@dataclass
class PruneResult:
    dry_run: bool
    policy: RetentionPolicy
    decisions: list[Decision]
    deleted: list[str] = field(default_factory=list)
    freed: int = 0
    verified: dict[str, str | None] = field(default_factory=dict)   # id -> problem or None
    warnings: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)    # leftovers of dead processes removed

    @property
    def exit_code(self) -> int:
        return EXIT_WARNING if self.warnings else EXIT_OK

    @property
    def to_delete(self) -> list[Decision]:
        return [d for d in self.decisions if d.delete]

    def summary(self) -> dict:
        """What pack --json says of the prune after it."""
        return {"policy": self.policy.describe(), "deleted": self.deleted, "freed": self.freed,
                "kept": len(self.decisions) - len(self.deleted), "warnings": self.warnings}

    def to_json(self) -> dict:
        return {"dry_run": self.dry_run, "policy": self.policy.describe(),
                "decisions": [d.to_json() for d in self.decisions],
                "deleted": self.deleted, "freed": self.freed,
                "would_delete": [d.id for d in self.to_delete] if self.dry_run else [],
                "verified": self.verified, "warnings": self.warnings, "cleaned": self.cleaned}


def _unreadable(exc: BaseException) -> bool:
    """An error that says this user or machine could not read the archive, not that its
    bytes are wrong (the same distinction as list's ``unreadable`` status)."""
    return isinstance(exc, OSError) or getattr(exc, "unreadable", False)


def policy_for(settings: Settings) -> RetentionPolicy:
    tz, _ = resolve_timezone(settings.backup)
    return RetentionPolicy.from_config(settings.backup, tz)


def prune(settings: Settings, *, dry_run: bool = False, now: datetime | None = None,
          verify_newest: bool = True, on_delete=None) -> PruneResult:
    """Prune under the installation lock."""
    # a dry run writes nothing: it needs no store lock (nor a store it could create one in)
    with InstallationLock(settings.root, "prune"), \
            StoreLock(None if dry_run else settings.local_store, "prune"):
        return prune_locked(settings, dry_run=dry_run, now=now, verify_newest=verify_newest,
                            on_delete=on_delete)


def prune_locked(settings: Settings, *, dry_run: bool = False, now: datetime | None = None,
                 verify_newest: bool = True, on_delete=None,
                 protect: frozenset[str] = frozenset()) -> PruneResult:
    """Prune; the caller holds the installation lock.  ``on_delete(decision)`` reports
    progress; ``protect``: ids never deleted (a pack's new archive), nor their chains."""
    now = now or datetime.now(timezone.utc)
    policy = policy_for(settings)
    store = open_store(settings)        # a local directory or a bucket: the same rules
    rows = {row.id: row for row in list_archives(settings, store)}
    infos = [ArchiveInfo.from_row(row) for row in rows.values()]
    result = PruneResult(dry_run, policy, [])
    while True:
        decisions = decide(infos, policy, now, protect)
        protected = next((d.archive for d in decisions if KEEP_NEWEST_FULL in d.rules), None)
        # Verifying costs a full read, so only when something would be deleted.
        if not (verify_newest and protected is not None and protected.verified is None
                and any(d.delete for d in decisions)):
            break
        try:
            verify(settings, protected.id, record=not dry_run)
            problem = None
        except (ArchiveError, OSError) as exc:
            problem = str(exc)
            if not _unreadable(exc):
                result.warnings.append(f"{protected.id}: newest full archive fails "
                                       f"verification ({exc}); not counted as a good archive")
            else:   # not a verdict on the archive: kept, and the next full one is checked
                result.warnings.append(f"{protected.id}: newest full archive could not be "
                                       f"read here ({exc}); kept, not counted as verified")
                rows[protected.id].status, rows[protected.id].problem = "unreadable", problem
        result.verified[protected.id] = problem
        infos = [replace(i, verified=problem is None,
                         status=rows[i.id].status) if i.id == protected.id else i
                 for i in infos]
    result.decisions = decisions
    for decision in decisions:
        if not decision.delete and decision.archive.status != "ok":
            row = rows[decision.id]
            result.warnings.append(f"{decision.id}: {decision.archive.status}: {row.problem}; "
                                   f"{decision.reason}")
    if dry_run:
        return result
    result.cleaned = leftovers.clean(store)
    marked = store.protected() - {i.id for i in infos if i.protected}
    if marked:      # protected meanwhile (``protect`` takes no lock): decide again
        infos = [replace(i, protected=True) if i.id in marked else i for i in infos]
        result.decisions = decide(infos, policy, now)
    stored = {archive.id: archive for archive in store.catalog()}
    for decision in result.to_delete:
        store.delete(stored[decision.id])
        result.deleted.append(decision.id)
        result.freed += decision.archive.size
        if on_delete is not None:
            on_delete(decision)
    return result
