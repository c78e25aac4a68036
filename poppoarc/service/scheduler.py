"""``schedule``: the scheduled-backup service, in the foreground.

One loop: sleep until the next fire time (at most a minute, so a suspended
machine or a clock step is noticed), run what ``due_runs`` says is due, then
prune.  Each run: pre-backup checks, ``pack`` under the installation lock
(so never two backups at once, and never during a manual pack or a restore),
bounded retries with exponential backoff, prune, state file, notifications.

Stopping: SIGTERM and SIGINT set a flag.  Only while ``pack`` is running do
they also raise ``StopRequested`` in the main thread; ``pack`` unwinds
through its cleanup, which deletes the temporary archive, so no half archive
is ever left under a final name (those appear only by an atomic rename of a
complete, fsynced file).  Everywhere else (state writes, pruning, locks) the
flag is checked at the next safe point.  The interrupted run is not recorded
as done, so it runs again after a restart.

The clock is injectable: tests (and ``POPPOARC_SCHEDULE_SPEED``) run the
scheduler's notion of time faster than real time.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..archives.pruning import policy_for, prune_locked
from ..config import Settings
from ..archives.listing import list_archives
from ..archives.verification import verify
from ..config_schema import DRILL, FULL, INCREMENTAL, RUN_TYPES, VERIFY
from ..errors import ArchiveError, ConfigError, PoppoarcError, one_line
from ..lock import InstallationLock, StoreLock
from ..options import PackOptions
from ..pack import pack_locked
from ..policy.retention import configured
from .replicas import replicate_after_pack
from ..snapshot.root import require_installation
from ..policy.schedule import Schedule, due_runs, next_wakeup, parse_schedule, with_baseline
from ..store.local import LocalStore
from ..store import verified
from ..store.runs import observed
from .drills import run_drill
from .metrics import publisher
from . import notify
from .checks import pre_backup_checks
from .state import last_runs_of, load_state, save_state

log = logging.getLogger("poppoarc.schedule")

SCHEDULE_LOCK = ".poppoarc-schedule.lock"
MAX_SLEEP = 60.0            # seconds of schedule time between looks at the clock
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 60.0      # first retry delay; doubles each time (60, 120, 240 s)


class StopRequested(BaseException):
    """SIGTERM/SIGINT during a backup.  A BaseException, like KeyboardInterrupt,
    so that no ``except Exception`` on the way up can swallow it."""


class Clock:
    """Real time.  ``sleep`` returns early when ``stopping()`` becomes true."""

    slice = 0.5

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def real_seconds(self, seconds: float) -> float:
        return seconds

    def sleep(self, seconds: float, stopping) -> None:
        deadline = time.monotonic() + max(0.0, self.real_seconds(seconds))
        while not stopping():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self.slice))


class ScaledClock(Clock):
    """Schedule time runs ``speed`` times faster than real time (a test hook)."""

    def __init__(self, speed: float, start: datetime | None = None):
        self.speed = speed
        self._real0 = time.time()
        self._virtual0 = start or datetime.now(timezone.utc)

    def now(self) -> datetime:
        return self._virtual0 + timedelta(seconds=(time.time() - self._real0) * self.speed)

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed


def clock_from_env(environ) -> Clock:
    """``POPPOARC_SCHEDULE_SPEED`` (and optional ``POPPOARC_SCHEDULE_START``, ISO 8601)."""
    speed = environ.get("POPPOARC_SCHEDULE_SPEED")
    if not speed:
        return Clock()
    try:
        factor = float(speed)
        start = environ.get("POPPOARC_SCHEDULE_START")
        start_time = datetime.fromisoformat(start) if start else None
    except ValueError:
        raise ConfigError("POPPOARC_SCHEDULE_SPEED must be a number and "
                          "POPPOARC_SCHEDULE_START an ISO 8601 time") from None
    if factor <= 0:
        raise ConfigError("POPPOARC_SCHEDULE_SPEED must be positive")
    return ScaledClock(factor, start_time)


@dataclass
class RunRecord:
    """What one scheduled run did."""

    names: list[str]
    type: str
    fire_time: datetime
    missed: int = 0
    archive_id: str | None = None
    size: int | None = None
    duration_ms: int | None = None
    warnings: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    attempts: int = 0
    error: BaseException | None = None
    pruned: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)    # verify: the archives verified

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        error = None
        if self.error is not None:
            error = {"type": type(self.error).__name__, "message": one_line(self.error),
                     "exit_code": getattr(self.error, "exit_code", None)}
        return {"schedule": self.names, "type": self.type, "fire_time": self.fire_time.isoformat(),
                "missed": self.missed, "archive_id": self.archive_id, "size": self.size,
                "duration_ms": self.duration_ms, "warnings": self.warnings, "checks": self.checks,
                "attempts": self.attempts, "error": error, "pruned": self.pruned,
                "checked": self.checked}


class Scheduler:
    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 force_root: bool = False):
        schedule = parse_schedule(settings.backup)
        if schedule is None:
            raise ConfigError("'backup.schedule' is not set: there is nothing to schedule",
                              path=settings.config_path)
        self.settings = settings
        self.schedule: Schedule = schedule
        self.clock = clock or Clock()
        self.retries, self.backoff = retries, backoff
        self.force_root = force_root    # back up a root that is not an installation
        self.notifications = notify.Notifications.from_config(settings.backup)
        self.records: list[RunRecord] = []
        self.stop_signal: int | None = None
        self.abandoned = False          # a due run was not done because of stop_signal
        self._interruptible = False
        self._state: dict = {}
        self._last: dict[str, datetime] = {}

    # -- entry points --------------------------------------------------------

    def run_forever(self, handle_signals: bool = True) -> list[RunRecord]:
        """Run until SIGTERM/SIGINT; returns what was done."""
        self._check_root()
        with self._signals(handle_signals), self._scheduler_lock():
            if not self._start():
                return self.records
            try:
                while self.stop_signal is None:
                    self._tick()
                    if self.stop_signal is not None:
                        break
                    now = self.clock.now()
                    wait = (next_wakeup(self.schedule, now) - now).total_seconds()
                    self.clock.sleep(min(max(wait, 0.0), MAX_SLEEP), self._stopping)
            except StopRequested:
                self._abandoned()
            log.info("stopped by %s", _signal_name(self.stop_signal))
        return self.records

    def run_once(self, handle_signals: bool = True) -> list[RunRecord]:
        """Run whatever is due now, then return (for system cron)."""
        self._check_root()
        with self._signals(handle_signals), self._scheduler_lock():
            if self._start():
                try:
                    self._tick()
                except StopRequested:
                    self._abandoned()
        return self.records

    def _check_root(self) -> None:
        """A root that is not an installation (a typo in POPPO_ROOT, a disk not mounted)
        stops the service before it creates a store there (exit 20); each run checks again."""
        require_installation(self.settings.root, (self.settings.store, self.settings.key_dir),
                             force=self.force_root)

    def _abandoned(self) -> None:
        self.abandoned = True
        # pack's cleanup has removed its temporary file; make sure, since the
        # whole point of stopping this way is to leave nothing half-written
        leftovers = LocalStore(self.settings.store).own_temps()
        for path in leftovers:
            path.unlink(missing_ok=True)
        log.info("stopping: the backup in progress was abandoned and its temporary file "
                 "removed%s; it runs again after a restart",
                 f" ({len(leftovers)} left by the cleanup)" if leftovers else "")

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        self._on_signal(signum, None)

    # -- the loop ------------------------------------------------------------

    def _start(self) -> bool:
        if not self.schedule.enabled:
            log.info("backup.enabled is false: no scheduled backups")
            return False
        LocalStore(self.settings.store).ensure()
        self._state, problem = load_state(self.settings.store)
        if problem:
            log.warning("%s", problem)
        now = self.clock.now()
        known = last_runs_of(self._state)
        self._last = with_baseline(self.schedule, known, now)
        if set(self._last) != set(known) or problem:
            entries = self._state.setdefault("entries", {})
            for name in list(entries):
                if name not in self._last:
                    del entries[name]
            for name, when in self._last.items():
                entries.setdefault(name, {})["last_fire"] = when.astimezone(timezone.utc).isoformat()
            save_state(self.settings.store, self._state)
        for entry in self.schedule.entries:
            log.info("schedule %s: %r (%s), time zone %s", entry.name, entry.cron, entry.type,
                     self.schedule.timezone_name)
        policy = policy_for(self.settings)
        if not policy.limits_normal:
            log.warning("no retention rule (backup.retention, maxBackups or keep) is set: "
                        "scheduled archives are never pruned")
        return True

    def _tick(self) -> None:
        runs = due_runs(self.schedule, self._last, self.clock.now())
        backups = [r for r in runs if r.type in RUN_TYPES]
        if backups:
            self._perform(backups)
        for kind in (VERIFY, DRILL):       # after the backup due with them: it is checked too
            due = [r for r in runs if r.type == kind]
            if due and self.stop_signal is not None:
                self.abandoned = True
            elif due:
                self._perform_check(kind, due)

    def _perform(self, runs) -> None:
        kind = FULL if any(r.type == FULL for r in runs) else INCREMENTAL
        fire = max(runs, key=lambda r: r.fire_time.astimezone(timezone.utc)).fire_time
        record = RunRecord([r.name for r in runs], kind, fire, sum(r.missed for r in runs))
        label = "+".join(record.names)
        log.info("run %s (%s) for %s%s", label, kind, fire.isoformat(),
                 f"; {record.missed} earlier fire times missed, run once" if record.missed else "")
        record.checks = pre_backup_checks(self.settings)
        for problem in record.checks:
            log.warning("pre-backup check: %s", problem)
        started = time.monotonic()
        for attempt in range(1, self.retries + 2):
            record.attempts = attempt
            try:
                self._backup(record, label)
                record.error = None
                break
            except (PoppoarcError, OSError) as exc:
                record.error = exc
                log.error("run %s: attempt %d of %d failed: %s", label, attempt,
                          self.retries + 1, one_line(exc))
            if attempt <= self.retries:
                delay = self.backoff * 2 ** (attempt - 1)
                log.info("run %s: retrying in %g s", label, delay)
                self.clock.sleep(delay, self._stopping)
                if self.stop_signal is not None:
                    log.info("run %s: stop requested while waiting to retry", label)
                    self.abandoned = True
                    return          # not recorded: it runs again after a restart
        if record.duration_ms is None:
            record.duration_ms = int((time.monotonic() - started) * 1000)
        self.records.append(record)
        self._record_state(runs, record)
        self._notify(record)

    def _backup(self, record: RunRecord, label: str) -> None:
        self._check_root()
        with InstallationLock(self.settings.root, "scheduled backup",
                              fallback=self.settings.store), \
                StoreLock(self.settings.local_store, "scheduled backup", create=True):
            self._interruptible = True
            try:
                if self.stop_signal is not None:
                    raise StopRequested(self.stop_signal)
                with observed(self.settings.records_dir, "pack", publisher(self.settings)) as seen:
                    result = pack_locked(self.settings, PackOptions(
                        name=label, archive_type="scheduled",
                        incremental=record.type == INCREMENTAL))
                    seen.archive, seen.size = result.id, result.size
                result.warnings.extend(seen.warnings)
            finally:
                self._interruptible = False
            record.archive_id, record.size = result.id, result.size
            record.duration_ms, record.warnings = result.duration_ms, result.warnings
            log.info("run %s: wrote %s (%s, %d bytes, %d files, %.1f s, %d warnings)", label,
                     result.id, f"incremental on {result.parent}" if result.parent else "full",
                     result.size, result.files, result.duration_ms / 1000, len(result.warnings))
            for message in [*result.notices, *result.warnings]:
                log.warning("run %s: %s", label, message)
            try:
                with observed(self.settings.records_dir, "prune", publisher(self.settings)) as seen:
                    pruned = prune_locked(self.settings, on_delete=lambda d: log.info(
                        "prune: deleted %s (%s)", d.id, d.reason))
                    seen.size, seen.details = pruned.freed, {"deleted": len(pruned.deleted)}
                pruned.warnings.extend(seen.warnings)
                record.pruned = pruned.deleted
                for warning in pruned.warnings:
                    log.warning("prune: %s", warning)
            except (PoppoarcError, OSError) as exc:
                # the backup itself succeeded; a prune failure is retried next run
                record.warnings.append(f"prune failed: {one_line(exc)}")
                log.error("prune failed: %s", one_line(exc))
            if self.settings.replicas:
                try:
                    _, warnings = replicate_after_pack(
                        self.settings, result.id, schedule=record.names,
                        prune=configured(self.settings.backup))
                except (PoppoarcError, OSError) as exc:
                    warnings = [f"replicas: {one_line(exc)}"]
                for warning in warnings:
                    log.warning("%s", warning)
                record.warnings.extend(warnings)

    def _perform_check(self, kind: str, runs) -> None:
        """A scheduled verify or drill: the same fire-time, missed-run, state and
        notification rules as a backup; not retried (what it finds does not go away)."""
        fire = max(runs, key=lambda r: r.fire_time.astimezone(timezone.utc)).fire_time
        record = RunRecord([r.name for r in runs], kind, fire, sum(r.missed for r in runs),
                           attempts=1)
        label = "+".join(record.names)
        log.info("run %s (%s) for %s", label, kind, fire.isoformat())
        started = time.monotonic()
        try:
            if kind == VERIFY:
                self._verify_new(record, label)
            else:
                result = run_drill(self.settings, schedule=record.names)
                record.archive_id, record.size = result.archive_id, result.space_bytes
                record.warnings = list(result.warnings)
                if not result.ok:
                    cls = result.problems[0][0]
                    record.error = cls("; ".join(text for _, text in result.problems))
                log.info("run %s: drill of %s %s", label, result.archive_id,
                         "passed" if result.ok else "FAILED")
        except (PoppoarcError, OSError) as exc:
            record.error = exc
        record.duration_ms = int((time.monotonic() - started) * 1000)
        self.records.append(record)
        self._record_state(runs, record)
        if kind == VERIFY:          # a drill notifies itself (service.drills), as a command
            self._notify(record)

    def _verify_new(self, record: RunRecord, label: str) -> None:
        """Every good archive of the store not verified since it was written, oldest first
        (a parent before its child); all are checked, the first failure is the run's."""
        failures = []
        with InstallationLock(self.settings.root, "scheduled verify"), \
                observed(self.settings.records_dir, "verify", publisher(self.settings)) as seen:
            done = verified.load(self.settings.store)
            rows = [r for r in reversed(list_archives(self.settings)) if r.status == "ok"
                    and (done.get(r.id) or {}).get("checksum") != r.checksum]
            for row in rows:
                try:
                    result = verify(self.settings, row.id)
                except ArchiveError as exc:
                    failures.append(exc)
                    log.error("run %s: %s fails verification: %s", label, row.id, exc)
                    continue
                record.checked.append(row.id)
                seen.archive, seen.size = row.id, result.bytes
            log.info("run %s: %d archive(s) verified, %d failed", label,
                     len(record.checked), len(failures))
            if failures:
                raise failures[0]
        record.warnings.extend(seen.warnings)

    def _record_state(self, runs, record: RunRecord) -> None:
        finished = self.clock.now().astimezone(timezone.utc).isoformat()
        entries = self._state.setdefault("entries", {})
        for run in runs:
            self._last[run.name] = run.fire_time
            entries[run.name] = {
                "last_fire": run.fire_time.astimezone(timezone.utc).isoformat(),
                "finished": finished, "result": "success" if record.ok else "failure",
                "archive_id": record.archive_id, "attempts": record.attempts,
                "error": None if record.ok else one_line(record.error),
                "checks": record.checks, "warnings_count": len(record.warnings)}
        try:
            save_state(self.settings.store, self._state)
        except PoppoarcError as exc:
            # the next run time is still right in memory; only a restart would repeat a run
            log.error("%s", one_line(exc))
        if record.ok:
            log.info("run %s: done", "+".join(record.names))
        else:
            log.error("run %s: failed after %d attempts: %s", "+".join(record.names),
                      record.attempts, one_line(record.error))

    def _notify(self, record: RunRecord) -> None:
        if not self.notifications.configured:
            return
        event = notify.SUCCESS if record.ok else notify.FAILURE
        document = notify.payload(
            event, archive_id=record.archive_id, size=record.size,
            duration_ms=record.duration_ms,
            warnings_count=len(record.warnings) + len(record.checks),
            error=None if record.ok else f"{type(record.error).__name__}: "
                                         f"{one_line(record.error)}",
            schedule=record.names, kind="pack" if record.type in RUN_TYPES else record.type)
        notify.send(self.notifications, document, cwd=str(self.settings.root))

    # -- signals and locks ---------------------------------------------------

    def _stopping(self) -> bool:
        return self.stop_signal is not None

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum
        if self._interruptible:
            self._interruptible = False       # a second signal must not interrupt the cleanup
            raise StopRequested(signum)

    @contextmanager
    def _signals(self, enabled: bool):
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _scheduler_lock(self):
        LocalStore(self.settings.store).ensure()
        return InstallationLock(self.settings.store, "schedule", name=SCHEDULE_LOCK,
                                what="the scheduler")


def _signal_name(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name
    except (TypeError, ValueError):
        return "request"
