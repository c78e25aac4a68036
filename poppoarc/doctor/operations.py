"""Doctor checks about the operations the seed recommends: restore drills, replicas."""

from __future__ import annotations

from ..archives.replication import lacking
from ..errors import PoppoarcError
from ..i18n import N_
from ..store import runs
from .archives import _age_words
from .checks import Context, _f

DEFAULT_DRILL_AGE_DAYS = 30
DAY = 86400


def check_drill(ctx: Context):
    """The last restore drill (``poppoarc drill``): when it last succeeded, whether the
    last one failed, and whether that is older than ``backup.drill.maxAgeDays``."""
    title = N_("Restore drill")
    record = runs.load(ctx.settings.records_dir).get("drill", {})
    configured = (ctx.backup.get("drill") or {}).get("maxAgeDays")
    days = configured or DEFAULT_DRILL_AGE_DAYS
    last_success = runs.number(record, "last_success")
    now = ctx.now.timestamp()
    if record.get("last_ok") is False:
        return _f("drill", title, "fail",
                  N_("the last restore drill failed: {problem}"),
                  N_("poppoarc verify ID names what is damaged; then pack a new archive and "
                     "run poppoarc drill again"),
                  problem=str(record.get("problem") or "?"))
    if last_success is None:
        if configured:
            return _f("drill", title, "warn", N_("no restore drill has succeeded yet"),
                      N_("poppoarc drill (or a schedule entry of type drill)"))
        return _f("drill", title, "info",
                  N_("no restore drill yet: poppoarc drill rehearses a restore where nothing "
                     "live is touched"))
    age = max(now - last_success, 0)
    details = record.get("details") if isinstance(record.get("details"), dict) else {}
    params = dict(id=str(record.get("archive") or "?"), age=_age_words(age), days=days,
                  seconds=f"{runs.number(details, 'restore_seconds') or 0:.1f}")
    if age > days * DAY:
        return _f("drill", title, "warn",
                  N_("the last successful restore drill ({id}) was {age} ago, longer than "
                     "{days} days"),
                  N_("poppoarc drill (backup.drill.maxAgeDays sets the age)"), **params)
    return _f("drill", title, "ok",
              N_("last successful restore drill: {id}, {age} ago (restored in {seconds} s)"),
              **params)


def check_replicas(ctx: Context):
    """Each ``backup.storage.replicas``: reachable, and holding every good archive of the
    primary store (one that lacks some is behind; the next pack copies them)."""
    title = N_("Replicas")
    replicas = ctx.settings.replicas
    if not replicas:
        return _f("replicas", title, "n/a", N_("no replica configured (backup.storage.replicas)"))
    rows = list(reversed(ctx.good_rows))
    problems = []
    for replica in replicas:
        try:
            missing = lacking(ctx.settings, rows, replica)
        except (PoppoarcError, OSError) as exc:
            problems.append(N_(f"{replica}: cannot be read: {exc}"))
            continue
        if missing:
            count, oldest = len(missing), missing[0]
            problems.append(N_(f"{replica}: behind, {count} archives missing (oldest {oldest})"))
    if problems:
        return _f("replicas", title, "warn",
                  N_("{count} of {total} replicas not up to date"),
                  N_("poppoarc pack copies what a replica lacks (or poppoarc copy ID "
                     "--to=REPLICA); check that the replica can be reached and written"),
                  details=problems, count=len(problems), total=len(replicas))
    return _f("replicas", title, "ok",
              N_("{total} replicas hold every archive of the store"), total=len(replicas))
