"""``schedule``: run the scheduled-backup service in the foreground (``service.scheduler``),
once (``--once``, for system cron), or list the next fire times (``--next``).

The service reports through ``logging`` (the command line sends it to stderr)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..config import Settings
from ..errors import EXIT_INTERNAL, EXIT_OK, EXIT_WARNING, ConfigError, UsageError
from ..i18n import N_
from ..options import ScheduleOptions
from ..policy.schedule import Schedule, ScheduleEntry, next_fires, parse_schedule
from ..service.scheduler import RunRecord, Scheduler, clock_from_env
from ..snapshot.root import require_installation
from ..service.state import last_runs_of, load_state

SUMMARY = N_("Run the scheduled backups: as a service, once, or list the next ones.")
USAGE = ("schedule [--once] [--force] [--json]", "schedule --next [--count=N] [--json]")
OPTIONS = """\
  --once           With schedule: run what is due now, then exit (for system cron).
  --next           With schedule: print the next fire times and exit.
  --count=N        With schedule --next: how many fire times [default: 5].
  --force          With pack, unpack, schedule: accept a root that is not an installation;
                   with keygen: replace an existing key (or the FILE of --export).
"""
STRICT_CONFIG = True
PROGRESS = False
LOGS = True             # its report is the service's log (stderr), beside the JSON document


@dataclass
class NextFires:
    schedule: Schedule
    fires: list[tuple[ScheduleEntry, datetime]]
    last: dict[str, datetime]           # entry name: the fire time it last handled
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"timezone": self.schedule.timezone_name, "enabled": self.schedule.enabled,
                "next": [{"name": e.name, "type": e.type, "cron": e.cron,
                          "time": when.isoformat()} for e, when in self.fires],
                "last": {name: when.isoformat() for name, when in self.last.items()}}


@dataclass
class ServiceRuns:
    once: bool
    records: list[RunRecord] = field(default_factory=list)
    stop_signal: int | None = None
    abandoned: bool = False             # a due run was given up because of stop_signal
    finished: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def exit_code(self) -> int:
        if self.once and self.abandoned and self.stop_signal:
            # --once (system cron): a run that was due and not done is no success;
            # 128 + the signal's number, as a shell reports it (130 SIGINT, 143 SIGTERM)
            return 128 + self.stop_signal
        failed = [r for r in self.records if not r.ok]
        if self.once and failed:
            return getattr(failed[-1].error, "exit_code", EXIT_INTERNAL)
        if self.once and any(r.warnings or r.checks for r in self.records):
            return EXIT_WARNING
        # The service itself stopped as asked: failed runs were logged and notified.
        return EXIT_OK

    def to_json(self) -> dict:
        stopped = signal.Signals(self.stop_signal).name if self.stop_signal else None
        return {"runs": [r.to_json() for r in self.records], "stopped_by": stopped,
                "time": self.finished.isoformat()}


def matches(args: dict) -> bool:
    return bool(args["schedule"])


def options(args: dict) -> ScheduleOptions:
    if not args["--next"]:
        return ScheduleOptions(once=bool(args["--once"]), force_root=bool(args["--force"]))
    try:
        count = int(args["--count"])
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise UsageError(f"--count must be a positive integer, not {args['--count']!r}")
    return ScheduleOptions(next=count)


def run(settings: Settings, options: ScheduleOptions, progress=None):
    if options.next is not None:
        return next_fire_times(settings, options.next)
    # the root first: at a wrong one (a typo in POPPO_ROOT, a disk not mounted) its missing
    # configuration would be reported instead, as "nothing to schedule"
    require_installation(settings.root, (settings.store, settings.key_dir),
                         force=options.force_root)
    scheduler = Scheduler(settings, clock=clock_from_env(os.environ), force_root=options.force_root)
    records = scheduler.run_once() if options.once else scheduler.run_forever()
    return ServiceRuns(options.once, records, scheduler.stop_signal, scheduler.abandoned)


def next_fire_times(settings: Settings, count: int) -> NextFires:
    schedule = parse_schedule(settings.backup)
    if schedule is None:
        raise ConfigError("'backup.schedule' is not set: there is nothing to schedule",
                          path=settings.config_path)
    fires = next_fires(schedule, clock_from_env(os.environ).now(), count)
    state, _ = load_state(settings.store)
    names = {e.name for e in schedule.entries}
    last = {name: when for name, when in last_runs_of(state).items() if name in names}
    return NextFires(schedule, fires, last)
