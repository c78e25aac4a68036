"""Which archives a retention policy keeps: a pure decision function.

``decide(archives, policy, now)`` returns one ``Decision`` per archive, each
with the rules that keep it (or the reasons it goes).  Nothing here touches
the disk, so every rule is unit- and property-tested in isolation, and
``prune --dry-run`` prints exactly what ``prune`` would do.

The rules, in the order they are applied:

1. Normal archives (``manual`` and ``scheduled``) that are good (trusted
   head, not failed verification):
   - the base rule of the seed: keep the newest ``maxBackups`` that are also
     younger than ``retention`` days (either bound may be unset);
   - bucket rules as in restic's ``--keep-daily`` and borg: for each of the
     ``keep.daily`` most recent days that have archives, keep the newest of
     that day (likewise ISO weeks and calendar months, in the configured
     time zone).  Buckets keep more, never less;
   - with none of these set, every normal archive is kept: no policy, no
     deletion.
2. ``pre-restore`` safety archives: the newest ``keep.preRestore.last`` and
   every one younger than ``keep.preRestore.days``.
3. The newest good full (non-incremental) archive is always kept: of the
   normal archives, or of the pre-restore ones when no normal one is good.
4. Damaged archives are kept and reported unless ``keep.damaged`` is false;
   archives signed by an unpinned key are never deleted (they may be another
   machine's, and their metadata cannot be trusted), nor are archives of a
   format only a newer poppoarc reads (another machine's, or this one's before
   a downgrade: spec/FORMAT.md §15), nor archives this user or machine could
   not read (``unreadable``: permissions, the open-file limit, an I/O error,
   say nothing of the archive's bytes).
5. A protected archive (``poppoarc protect``, ``pack --protect``: a mark in the
   store) is kept whatever else applies, damaged or not.
6. Last, every parent of a kept archive is kept, transitively: an
   incremental archive is useless without its chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

from ..i18n import N_

NORMAL_TYPES = ("manual", "scheduled")
PRE_RESTORE = "pre-restore"

DEFAULT_PRE_RESTORE_LAST = 3
DEFAULT_PRE_RESTORE_DAYS = 7

# Rule codes; a Decision carries them so callers and tests need not parse reasons.
KEEP_BASE = "base"
KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY = "daily", "weekly", "monthly"
KEEP_NO_POLICY = "no-policy"
KEEP_PRE_LAST, KEEP_PRE_RECENT = "pre-restore-last", "pre-restore-recent"
KEEP_NEWEST_FULL = "newest-full"
KEEP_PARENT = "parent"
KEEP_DAMAGED, KEEP_UNTRUSTED, KEEP_UNKNOWN = "damaged", "untrusted", "unknown-type"
KEEP_NEWER = "newer-format"
KEEP_PROTECTED = "protected"
KEEP_NEW = "new"                 # the archive the pack that prunes has just made
KEEP_UNREADABLE = "unreadable"    # could not be read here: not a verdict on the archive
DELETE_EXPIRED, DELETE_OVER_MAX = "expired", "over-max"
DELETE_PRE_EXPIRED, DELETE_DAMAGED, DELETE_UNSELECTED = "pre-restore-expired", "damaged", "unselected"


def parse_timestamp(text: str | None) -> datetime | None:
    """A manifest timestamp (``2025-06-19T12:00:00.000Z``) as an aware UTC datetime."""
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


@dataclass(frozen=True)
class ArchiveInfo:
    """What retention needs to know about one archive (from ``list`` rows)."""

    id: str
    timestamp: datetime | None           # aware; None when the head is unreadable
    type: str | None = "scheduled"
    incremental: bool = False
    parent: str | None = None            # id of the archive this one builds on
    status: str = "ok"                   # ok | damaged | untrusted | newer | unreadable
    verified: bool | None = None         # result of a full verify; None: not checked
    size: int = 0
    protected: bool = False              # a protection mark in the store

    @classmethod
    def from_row(cls, row) -> "ArchiveInfo":
        """From an ``archives.listing.ListRow`` (duck-typed so this module stays pure)."""
        return cls(row.id, parse_timestamp(row.timestamp), row.type, bool(row.incremental),
                   getattr(row, "parent", None), row.status, None, row.size,
                   bool(getattr(row, "protected", False)))

    @property
    def good(self) -> bool:
        return self.status == "ok" and self.verified is not False and self.timestamp is not None


@dataclass(frozen=True)
class RetentionPolicy:
    max_backups: int | None = None       # backup.maxBackups
    retention_days: int | None = None    # backup.retention
    daily: int = 0                       # backup.keep.daily
    weekly: int = 0
    monthly: int = 0
    pre_restore_last: int = DEFAULT_PRE_RESTORE_LAST
    pre_restore_days: int = DEFAULT_PRE_RESTORE_DAYS
    delete_damaged: bool = False         # backup.keep.damaged == false
    timezone: tzinfo = timezone.utc      # bucket boundaries (backup.timezone)

    @property
    def limits_normal(self) -> bool:
        """True when some rule bounds the normal archives at all."""
        return (self.max_backups is not None or self.retention_days is not None
                or bool(self.daily or self.weekly or self.monthly))

    @property
    def has_base(self) -> bool:
        return self.max_backups is not None or self.retention_days is not None

    @classmethod
    def from_config(cls, backup: dict, tz: tzinfo = timezone.utc) -> "RetentionPolicy":
        """From the (already validated) ``backup`` section."""
        keep = backup.get("keep", {})
        pre = keep.get("preRestore", {})
        return cls(max_backups=backup.get("maxBackups"), retention_days=backup.get("retention"),
                   daily=keep.get("daily", 0), weekly=keep.get("weekly", 0),
                   monthly=keep.get("monthly", 0),
                   pre_restore_last=pre.get("last", DEFAULT_PRE_RESTORE_LAST),
                   pre_restore_days=pre.get("days", DEFAULT_PRE_RESTORE_DAYS),
                   delete_damaged=keep.get("damaged", True) is False, timezone=tz)

    def describe(self) -> str:
        parts = []
        if self.max_backups is not None:
            parts.append(N_(f"maxBackups {self.max_backups}"))
        if self.retention_days is not None:
            parts.append(N_(f"retention {self.retention_days} days"))
        for name in (KEEP_DAILY, KEEP_WEEKLY, KEEP_MONTHLY):
            if getattr(self, name):
                parts.append(N_(f"keep {getattr(self, name)} {name}"))
        parts.append(N_(f"pre-restore: newest {self.pre_restore_last} and "
                        f"{self.pre_restore_days} days"))
        return "; ".join(parts)


@dataclass
class Decision:
    archive: ArchiveInfo
    delete: bool
    rules: tuple[str, ...]
    reason: str

    @property
    def id(self) -> str:
        return self.archive.id

    @property
    def action(self) -> str:
        return "delete" if self.delete else "keep"

    def to_json(self) -> dict:
        a = self.archive
        return {"id": a.id, "action": self.action, "rules": list(self.rules),
                "reason": self.reason, "type": a.type, "incremental": a.incremental,
                "parent": a.parent, "status": a.status, "size": a.size,
                "protected": a.protected,
                "timestamp": _manifest_time(a.timestamp)}


def _manifest_time(ts: datetime | None) -> str | None:
    """The manifest's own notation (as ``list --json`` shows it)."""
    if ts is None:
        return None
    return ts.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Verdict:
    keep: dict[str, str] = field(default_factory=dict)     # rule -> reason
    drop: dict[str, str] = field(default_factory=dict)


def _newest_first(archives: list[ArchiveInfo]) -> list[ArchiveInfo]:
    return sorted(archives, key=lambda a: (a.timestamp, a.id), reverse=True)


def _age_days(archive: ArchiveInfo, now: datetime) -> float:
    return (now - archive.timestamp) / timedelta(days=1)


_BUCKET_NOUN = {KEEP_DAILY: N_("day"), KEEP_WEEKLY: N_("week"), KEEP_MONTHLY: N_("month")}


def _buckets(policy: RetentionPolicy):
    def day(ts: datetime):
        return ts.astimezone(policy.timezone).date().isoformat()

    def week(ts: datetime):
        iso = ts.astimezone(policy.timezone).isocalendar()
        return f"{iso.year}-W{iso.week:02d}"

    def month(ts: datetime):
        return ts.astimezone(policy.timezone).strftime("%Y-%m")

    return ((KEEP_DAILY, policy.daily, day), (KEEP_WEEKLY, policy.weekly, week),
            (KEEP_MONTHLY, policy.monthly, month))


def _normal(archives: list[ArchiveInfo], policy: RetentionPolicy, now: datetime,
            verdicts: dict[str, _Verdict]) -> None:
    if not policy.limits_normal:
        for a in archives:
            verdicts[a.id].keep[KEEP_NO_POLICY] = N_("no retention rule configured")
        return
    for rank, a in enumerate(archives, start=1):
        v = verdicts[a.id]
        if not policy.has_base:
            continue
        within_count = policy.max_backups is None or rank <= policy.max_backups
        age = _age_days(a, now)
        within_age = policy.retention_days is None or age < policy.retention_days
        if within_count and within_age:
            bounds = []
            if policy.max_backups is not None:
                bounds.append(N_(f"newest {rank} of maxBackups {policy.max_backups}"))
            if policy.retention_days is not None:
                bounds.append(N_(f"{age:.1f} days old, retention {policy.retention_days}"))
            v.keep[KEEP_BASE] = "; ".join(bounds)
        if not within_count:
            v.drop[DELETE_OVER_MAX] = N_(f"number {rank} by age, "
                                         f"maxBackups {policy.max_backups}")
        if not within_age:
            v.drop[DELETE_EXPIRED] = N_(f"{age:.1f} days old, "
                                        f"older than {policy.retention_days} days")
    # restic semantics: walking newest first, the first archive seen in a new
    # bucket is that bucket's newest; only buckets that have archives count.
    for rule, count, key in _buckets(policy):
        last, left = None, count
        for a in archives:
            if left <= 0:
                break
            bucket = key(a.timestamp)
            if bucket != last:
                verdicts[a.id].keep[rule] = N_(f"newest of {_BUCKET_NOUN[rule]} {bucket}")
                last, left = bucket, left - 1
    for a in archives:
        v = verdicts[a.id]
        if not v.keep and not v.drop:
            v.drop[DELETE_UNSELECTED] = N_("not selected by any keep rule")


def _pre_restore(archives: list[ArchiveInfo], policy: RetentionPolicy, now: datetime,
                 verdicts: dict[str, _Verdict]) -> None:
    for rank, a in enumerate(archives, start=1):
        v = verdicts[a.id]
        age = _age_days(a, now)
        if rank <= policy.pre_restore_last:
            v.keep[KEEP_PRE_LAST] = N_(f"newest {rank} of {policy.pre_restore_last} "
                                       f"pre-restore archives")
        if age < policy.pre_restore_days:
            v.keep[KEEP_PRE_RECENT] = N_(f"pre-restore archive {age:.1f} days old, "
                                       f"kept {policy.pre_restore_days} days")
        if not v.keep:
            v.drop[DELETE_PRE_EXPIRED] = N_(f"pre-restore archive {age:.1f} days old, not among "
                                          f"the newest {policy.pre_restore_last}")


def configured(backup: dict) -> bool:
    """True when the ``backup`` section sets a retention rule: only then does ``pack``
    prune after itself (``prune`` applies the defaults of pre-restore archives too)."""
    return any(key in backup for key in ("retention", "maxBackups", "keep"))


def decide(archives: list[ArchiveInfo], policy: RetentionPolicy, now: datetime,
           protect: frozenset[str] = frozenset()) -> list[Decision]:
    """Keep or delete, with reasons, for every archive; newest first.  ``protect``: ids
    never deleted (the archive the pack that prunes has just made), nor their chains."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_id = {a.id: a for a in archives}
    verdicts = {a.id: _Verdict() for a in archives}
    normal = _newest_first([a for a in archives if a.good and a.type in NORMAL_TYPES])
    pre = _newest_first([a for a in archives if a.good and a.type == PRE_RESTORE])
    _normal(normal, policy, now, verdicts)
    _pre_restore(pre, policy, now, verdicts)

    for group in (normal, pre):
        full = next((a for a in group if not a.incremental), None)
        if full is not None:
            verdicts[full.id].keep[KEEP_NEWEST_FULL] = N_("newest good full archive")
            break

    for a in archives:
        v = verdicts[a.id]
        if a.good and a.type not in NORMAL_TYPES and a.type != PRE_RESTORE:
            v.keep[KEEP_UNKNOWN] = N_(f"unknown archive type {a.type!r}: never pruned")
        elif a.status == "untrusted":
            v.keep[KEEP_UNTRUSTED] = N_("signed by a key that is not pinned: never pruned")
        elif a.status == "newer":       # what this poppoarc cannot read is not damaged
            v.keep[KEEP_NEWER] = N_("a format only a newer poppoarc reads: never pruned")
        elif a.status == "unreadable":  # this user or machine could not read it: not damaged
            v.keep[KEEP_UNREADABLE] = N_("could not be read here (permissions, limits, I/O), "
                                          "which says nothing of the archive: never pruned")
        elif not a.good:
            what = N_("failed verification") if a.verified is False else N_("damaged")
            if policy.delete_damaged:
                v.drop[DELETE_DAMAGED] = N_(f"{what}, and backup.keep.damaged is false")
            else:
                v.keep[KEEP_DAMAGED] = N_(f"{what}: kept until backup.keep.damaged is false")

    for a in archives:
        if a.protected:
            verdicts[a.id].keep[KEEP_PROTECTED] = "protected (poppoarc unprotect lifts it)"
    for archive_id in protect:
        if archive_id in verdicts:
            verdicts[archive_id].keep[KEEP_NEW] = "the archive this pack made"

    # Parents last, to a fixed point: whatever kept an archive keeps its chain.
    pending = [a for a in archives if verdicts[a.id].keep]
    while pending:
        child = pending.pop()
        parent = by_id.get(child.parent) if child.parent else None
        if parent is None or KEEP_PARENT in verdicts[parent.id].keep:
            continue
        verdicts[parent.id].keep[KEEP_PARENT] = N_(f"parent of {child.id}, which is kept")
        pending.append(parent)

    decisions = []
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    for a in sorted(archives, key=lambda a: (a.timestamp or oldest, a.id), reverse=True):
        v = verdicts[a.id]
        if v.keep:
            decisions.append(Decision(a, False, tuple(v.keep), "; ".join(v.keep.values())))
        else:
            decisions.append(Decision(a, True, tuple(v.drop), "; ".join(v.drop.values())))
    return decisions
