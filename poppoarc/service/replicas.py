"""Replicas after a pack, as an operation of the installation: copied and verified
(``archives.replication``), a failure turned into a warning that names the replica and
notified (``service.notify``: ``kind`` "replica").  ``pack`` and the scheduler come here."""

from __future__ import annotations

from ..archives.replication import ReplicaOutcome, prune_replicas, replicate
from ..config import Settings
from ..i18n import N_
from . import notify


def replicate_after_pack(settings: Settings, archive_id: str, progress=None,
                         schedule: list[str] | None = None,
                         prune: bool = False) -> tuple[list[ReplicaOutcome], list[str]]:
    """(outcomes, warnings): one warning per replica that failed; the pack stands.
    ``prune``: apply the retention to each replica that is up to date afterwards."""
    outcomes = replicate(settings, archive_id, progress)
    if prune:
        prune_replicas(settings, outcomes, frozenset({archive_id}))
    warnings = []
    for outcome in outcomes:
        replica = outcome.replica
        for warning in outcome.warnings:
            warnings.append(N_(f"replica {replica}: retention: {warning}"))
    for outcome in outcomes:
        if not outcome.ok:
            replica, count, error = outcome.replica, len(outcome.missing), outcome.error
            warnings.append(N_(f"replica {replica}: not up to date ({count} archives missing, "
                               f"retried on the next pack): {error}"))
    notifications = notify.Notifications.from_config(settings.backup)
    if notifications.configured and not all(outcome.ok for outcome in outcomes):
        document = notify.payload(notify.FAILURE, kind="replica", archive_id=archive_id,
                                  warnings_count=len(warnings), error="; ".join(warnings),
                                  schedule=schedule)
        warnings += [f"notification: {problem}" for problem in
                     notify.send(notifications, document, cwd=str(settings.root))]
    return outcomes, warnings
