"""When scheduled backups are due: ``backup.schedule`` and its fire times.

Cron expressions are evaluated by ``cronsim`` in the configured time zone
(``backup.timezone``, default the machine's).  cronsim follows Debian cron
on DST changes: a time skipped by a spring-forward runs at the first minute
that exists after it, and a time that happens twice in a fall-back runs once
(a ``*`` hour field still fires every real hour).

``due_runs`` is pure: given the fire time each entry last handled and the
current time, it says what to run.  Downtime that spans many fire times
yields one run per entry (the latest fire), not a burst of catch-up runs.
All instants are compared in UTC: two local times with the same wall clock
in a fall-back hour differ only by ``fold``, which Python ignores when
comparing datetimes of one tzinfo.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

from cronsim import CronSim

from ..config_schema import FULL, INCREMENTAL, MACROS, cron_problem, resolve_timezone
from ..errors import ConfigError

DEFAULT_NAME = "default"
DST_MARGIN = timedelta(hours=3)
MAX_COUNTED_MISSES = 1000      # counting misses is informational; bound the work

@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    cron: str
    type: str = FULL

    @property
    def expression(self) -> str:
        return MACROS.get(self.cron.strip(), self.cron).upper()


@dataclass(frozen=True)
class Schedule:
    entries: tuple[ScheduleEntry, ...]
    timezone: tzinfo
    timezone_name: str
    enabled: bool = True


@dataclass(frozen=True)
class Run:
    """One entry that is due: run it once for ``fire_time`` (its latest fire)."""

    name: str
    type: str
    fire_time: datetime        # aware, in the schedule's time zone
    missed: int = 0            # further fires in the gap that this run stands for

    def to_json(self) -> dict:
        return {"name": self.name, "type": self.type, "fire_time": self.fire_time.isoformat(),
                "missed": self.missed}


def parse_schedule(backup: dict) -> Schedule | None:
    """The schedule of a validated ``backup`` section; None when there is none."""
    raw = backup.get("schedule")
    if raw is None:
        return None
    tz, tz_name = resolve_timezone(backup)
    if isinstance(raw, str):    # one cron expression: incremental when so configured
        incremental = backup.get("incremental", {}).get("enabled", False)
        entries = (ScheduleEntry(DEFAULT_NAME, raw, INCREMENTAL if incremental else FULL),)
    else:
        entries = tuple(ScheduleEntry(name, spec["cron"], spec.get("type", FULL))
                        for name, spec in sorted(raw.items()))
    for entry in entries:
        problem = cron_problem(entry.cron)
        if problem:
            key = "backup.schedule" if isinstance(raw, str) else f"backup.schedule.{entry.name}.cron"
            raise ConfigError(f"'{key}': {entry.cron!r}: {problem}")
    return Schedule(entries, tz, tz_name, bool(backup.get("enabled", True)))


def fires_after(entry: ScheduleEntry, tz: tzinfo, after: datetime):
    """Fire times strictly after ``after``, strictly increasing in real time."""
    after_utc = after.astimezone(timezone.utc)
    for fire in CronSim(entry.expression, after_utc.astimezone(tz).replace(microsecond=0)):
        # Starting inside a fall-back hour, cronsim may yield the first
        # occurrence of a wall time we have already passed: skip it.
        if fire.astimezone(timezone.utc) > after_utc:
            yield fire


def latest_fire(entry: ScheduleEntry, tz: tzinfo, now: datetime,
                since: datetime | None = None) -> datetime | None:
    """The last fire time at or before ``now`` (and after ``since``, if given).

    Only forward iteration defines fire times (that is where cronsim applies
    the DST rules).  A reverse search finds roughly where the latest fire is,
    whatever the gap, and forward iteration from a little before it then
    finds the exact one; the margin covers the largest DST shift (2 hours).
    """
    now_utc = now.astimezone(timezone.utc)
    since_utc = since.astimezone(timezone.utc) if since is not None else None
    start = now.astimezone(tz).replace(microsecond=0) + timedelta(seconds=1)
    candidate = None
    try:
        for fire in CronSim(entry.expression, start, reverse=True):
            if fire.astimezone(timezone.utc) <= now_utc:
                candidate = fire.astimezone(timezone.utc)
                break
    except StopIteration:       # pragma: no cover - cronsim gives up after 50 years
        pass
    origins = [candidate - DST_MARGIN] if candidate is not None else []
    if since_utc is not None:
        origins = [max([since_utc, *origins])]
        if origins[0] > since_utc:
            origins.append(since_utc)      # in case the margin was not enough
    for origin in origins:
        latest = None
        for fire in fires_after(entry, tz, origin):
            if fire.astimezone(timezone.utc) > now_utc:
                break
            latest = fire
        if latest is not None:
            return latest
    return None


def due_runs(schedule: Schedule, last_runs: dict[str, datetime], now: datetime) -> list[Run]:
    """The entries due at ``now``, given the fire time each one last handled.

    An entry without a recorded last run is not due: the caller records a
    starting point first (``with_baseline``), so that installing the service
    does not fire every schedule at once.
    """
    runs = []
    for entry in schedule.entries:
        last = last_runs.get(entry.name)
        if last is None:
            continue
        latest = latest_fire(entry, schedule.timezone, now, since=last)
        if latest is None:
            continue
        missed = 0
        for fire in fires_after(entry, schedule.timezone, last):
            if fire.astimezone(timezone.utc) >= latest.astimezone(timezone.utc) \
                    or missed >= MAX_COUNTED_MISSES:
                break
            missed += 1
        runs.append(Run(entry.name, entry.type, latest, missed))
    return sorted(runs, key=lambda r: (r.fire_time.astimezone(timezone.utc), r.name))


def with_baseline(schedule: Schedule, last_runs: dict[str, datetime],
                  now: datetime) -> dict[str, datetime]:
    """Last runs for exactly the schedule's entries; new entries start at ``now``."""
    return {e.name: last_runs.get(e.name, now) for e in schedule.entries}


def next_fires(schedule: Schedule, now: datetime, count: int) -> list[tuple[ScheduleEntry, datetime]]:
    """The next ``count`` fire times of all entries together, soonest first."""
    found = []
    for entry in schedule.entries:
        for number, fire in enumerate(fires_after(entry, schedule.timezone, now)):
            if number >= count:
                break
            found.append((entry, fire))
    found.sort(key=lambda pair: (pair[1].astimezone(timezone.utc), pair[0].name))
    return found[:count]


def next_wakeup(schedule: Schedule, now: datetime) -> datetime:
    """The soonest fire time of any entry after ``now`` (UTC)."""
    return min(next(fires_after(e, schedule.timezone, now)).astimezone(timezone.utc)
               for e in schedule.entries)


# -- state file ------------------------------------------------------------------
