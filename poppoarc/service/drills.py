"""A drill as an operation of the installation: run (``operations.drill``), recorded for
doctor and the metrics (``store.runs``, ``service.metrics``), notified as a backup's
outcome is (``service.notify``: ``kind`` "drill").  ``poppoarc drill`` and a schedule
entry of type ``drill`` both come here."""

from __future__ import annotations

from ..config import Settings
from ..errors import PoppoarcError, resource_limit
from ..operations.drill import DrillResult, drill
from ..store.runs import observed
from . import notify
from .metrics import publisher


def scratch_dir(settings: Settings, to: str | None) -> str | None:
    """``--to``, else ``backup.drill.scratchDir``, else None (the store directory)."""
    return to or (settings.backup.get("drill") or {}).get("scratchDir")


def run_drill(settings: Settings, reference: str | None = None, to: str | None = None,
              progress=None, schedule: list[str] | None = None) -> DrillResult:
    """Drill, record, notify.  An archive that cannot be restored raises (after the
    failure is recorded and notified); a restore whose checks fail returns a result
    whose ``exit_code`` says so."""
    notifications = notify.Notifications.from_config(settings.backup)
    with observed(settings.records_dir, "drill", publisher(settings)) as seen:
        seen.archive = reference
        try:
            result = drill(settings, reference, scratch_dir(settings, to), progress)
        except (PoppoarcError, OSError) as exc:
            _notify(settings, notifications, notify.payload(
                notify.FAILURE, kind="drill", archive_id=reference,
                error=f"{type(exc).__name__}: {resource_limit(exc) or exc}", schedule=schedule))
            raise
        seen.archive, seen.size = result.archive_id, result.space_bytes
        seen.details = {"restore_seconds": result.restore_seconds, "files": result.files[1],
                        "databases": len(result.databases)}
        if not result.ok:
            seen.ok, seen.problem = False, result.problems[0][1]
    result.warnings.extend(seen.warnings)
    document = notify.payload(
        notify.SUCCESS if result.ok else notify.FAILURE, kind="drill",
        archive_id=result.archive_id, size=result.space_bytes,
        duration_ms=int(result.restore_seconds * 1000), warnings_count=len(result.warnings),
        error=None if result.ok else "; ".join(text for _, text in result.problems),
        schedule=schedule)
    result.warnings.extend(_notify(settings, notifications, document))
    return result


def _notify(settings: Settings, notifications, document: dict) -> list[str]:
    if not notifications.configured:
        return []
    return [f"notification: {problem}" for problem in
            notify.send(notifications, document, cwd=str(settings.root))]
