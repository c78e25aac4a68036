"""Doctor checks about the archives themselves, their age and leftovers."""

from __future__ import annotations

from datetime import datetime, timezone

from ..restore import trash
from ..restore.journal import ASIDE_PREFIX, JOURNAL_NAME, STAGE_PREFIX, TRASH_PREFIX
from ..store import leftovers
from ..i18n import N_
from .checks import Context, _f
from .schedule import expected_interval

DAY = 86400


def check_archives(ctx: Context):
    title = N_("Archives")
    rows = ctx.rows
    if not isinstance(rows, list):
        return _f("archives", title, "fail", N_("cannot read the store: {error}"),
                  N_("fix the problem named, then run poppoarc list"), error=str(rows))
    damaged = [f"{r.id}: {r.problem}" for r in rows if r.status == "damaged"]
    untrusted = [f"{r.id}: {r.problem}" for r in rows if r.status == "untrusted"]
    newer = [f"{r.id}: {r.problem}" for r in rows if r.status == "newer"]
    unreadable = [f"{r.id}: {r.problem}" for r in rows if r.status == "unreadable"]
    params = dict(count=len(rows), damaged=len(damaged), untrusted=len(untrusted),
                  newer=len(newer), unreadable=len(unreadable))
    if damaged:
        return _f("archives", title, "fail", N_("{damaged} of {count} archive(s) are damaged"),
                  N_("run poppoarc verify ID for the details; move damaged files out of the "
                     "store"), damaged + unreadable + untrusted + newer, **params)
    if unreadable:  # this user or machine cannot read them: kept, and no restore point
        return _f("archives", title, "warn",
                  N_("{unreadable} of {count} archive(s) cannot be read here"),
                  N_("check the files' owner and mode (ls -l), the open-file limit (ulimit -n) "
                     "and the disk; prune keeps them"),
                  unreadable + untrusted + newer, **params)
    if untrusted:
        return _f("archives", title, "warn",
                  N_("{untrusted} of {count} archive(s) are signed by keys not trusted here"),
                  N_("if you trust the signer, add its public key to "
                     "backup.signing.trustedKeys"), untrusted + newer, **params)
    if newer:       # written by a newer poppoarc: kept, and readable after an upgrade
        return _f("archives", title, "warn",
                  N_("{newer} of {count} archive(s) have a format only a newer poppoarc reads"),
                  N_("upgrade poppoarc on this machine to read them; prune keeps them"),
                  newer, **params)
    return _f("archives", title, "ok", N_("{count} archive(s), every head signed by a "
                                          "trusted key"), **params)


def check_chains(ctx: Context):
    """Every incremental's ancestors are in the store and readable (heads only)."""
    title = N_("Incremental chains")
    rows = ctx.rows if isinstance(ctx.rows, list) else []
    by_id = {r.id: r for r in rows}
    incrementals = [r for r in rows if r.incremental]
    broken = []
    for row in incrementals:
        parent = by_id.get(row.parent)
        while parent is not None and parent.status == "ok" and parent.incremental:
            parent = by_id.get(parent.parent)
        if parent is None or parent.status != "ok":
            missing = row.parent if row.parent not in by_id else parent.id if parent else "?"
            broken.append(f"{row.id}: its chain needs {missing}, which is "
                          f"{parent.status if parent is not None else 'missing'}")
    params = dict(count=len(incrementals), broken=len(broken))
    if not incrementals:
        return _f("chains", title, "n/a", N_("no incremental archives"))
    if broken:
        return _f("chains", title, "fail",
                  N_("{broken} of {count} incremental archive(s) cannot be restored: a parent "
                     "is missing or damaged"),
                  N_("put the named archive back into the store (from a copy), or make a new "
                     "full archive: poppoarc pack --full"), broken, **params)
    return _f("chains", title, "ok", N_("{count} incremental archive(s), every chain complete"),
              **params)


def check_verified(ctx: Context):
    title = N_("Verification")
    rows = ctx.good_rows
    failed = [r for r in rows if ctx.record.get(r.id, {}).get("failed")]
    never = [r for r in rows if not ctx.is_verified(r) and r not in failed]
    params = dict(count=len(rows), never=len(never), first=never[0].id if never else "")
    if not rows:
        return _f("verified", title, "n/a", N_("no archives yet"))
    if failed:
        return _f("verified", title, "fail",
                  N_("{failed} of {count} archive(s) failed their last verification"),
                  N_("poppoarc verify {first} names the problem; make a new backup (poppoarc "
                     "pack --full) and delete the damaged archive"),
                  [f"{r.id}: {ctx.record[r.id].get('error', '')}" for r in failed],
                  **dict(params, failed=len(failed), first=failed[0].id))
    if never:
        return _f("verified", title, "warn",
                  N_("{never} of {count} archive(s) were never verified"),
                  N_("poppoarc verify {first}") if len(never) == 1 else
                  N_("poppoarc verify --all (verifies and records every archive)"),
                  [r.id for r in never], **params)
    return _f("verified", title, "ok", N_("all {count} archive(s) verified"), **params)


def _age_words(seconds: float) -> str:
    if seconds >= 2 * DAY:
        return f"{seconds / DAY:.0f} d"
    return f"{seconds / 3600:.1f} h"


def check_age(ctx: Context):
    title = N_("Newest backup")
    rows = [r for r in ctx.good_rows if r.timestamp and r.type != "pre-restore"] or ctx.good_rows
    interval = expected_interval(ctx.backup)
    if not rows:
        return _f("age", title, "warn", N_("no backups yet"),
                  N_("poppoarc pack"))
    newest = rows[0]
    taken = datetime.strptime(newest.timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc)
    age = (ctx.now - taken).total_seconds()
    params = dict(id=newest.id, age=_age_words(max(age, 0)),
                  interval=_age_words(interval) if interval else "")
    if interval is None:
        return _f("age", title, "info", N_("{id} is {age} old; no schedule is configured"),
                  **params)
    if age > 3 * interval:
        return _f("age", title, "fail",
                  N_("{id} is {age} old, but the schedule expects one every {interval}"),
                  N_("check that scheduled backups run (cron or systemd timer logs), then: "
                     "poppoarc pack"), **params)
    if age > 1.5 * interval + 3600:
        return _f("age", title, "warn",
                  N_("{id} is {age} old; the schedule expects one every {interval}"),
                  N_("check that the last scheduled backup ran, then: poppoarc pack"), **params)
    return _f("age", title, "ok", N_("{id} is {age} old (schedule: every {interval})"),
              **params)


def check_temps(ctx: Context):
    title = N_("Temporary files")
    store, root = ctx.settings.store, ctx.settings.root
    stale, running = [], []
    busy = ctx.lock.held
    # the rule the next pack, restore or prune removes them by (store.leftovers)
    for leftover in leftovers.find([store if store.is_dir() else None, leftovers.temp_dir()]):
        (stale if leftover.stale else running).append(leftover.path)
    journal = (root / JOURNAL_NAME).exists()
    for path in sorted(root.iterdir()):
        if path.name.startswith((STAGE_PREFIX, ASIDE_PREFIX)) and not journal:
            (running if busy else stale).append(path)
        elif path.name.startswith(TRASH_PREFIX):     # a restore's old tree being removed
            (running if trash.busy(path) else stale).append(path)
        elif path.name.startswith(JOURNAL_NAME + ".") and not busy:
            stale.append(path)
    if stale:
        return _f("temps", title, "warn",
                  N_("{count} stale temporary file(s) left by an interrupted poppoarc"),
                  N_("the next pack, restore or prune removes them (or: rm -rf PATH)"),
                  [str(p) for p in stale], count=len(stale))
    if running:
        return _f("temps", title, "info", N_("{count} temporary file(s) of running work"),
                  details=[str(p) for p in running], count=len(running))
    return _f("temps", title, "ok", N_("none"))


def all_checks():
    from . import checks, operations

    return (checks.check_root, checks.check_config, checks.check_restore, checks.check_lock,
            checks.check_space,
            checks.check_store, checks.check_archive_modes, checks.check_signing_key,
            checks.check_encryption_key, checks.check_databases, check_archives,
            check_chains, check_verified, check_age, check_temps, operations.check_drill,
            operations.check_replicas)
