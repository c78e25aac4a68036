"""``drill``: rehearse a restore where nothing live is touched (``operations.drill``:
restore into a scratch root, check it against the manifest, run the health check there,
remove it), recorded for doctor and the metrics and notified (``service.drills``)."""

from __future__ import annotations

from ..config import Settings
from ..i18n import N_
from ..operations.drill import DrillResult
from ..options import DrillOptions
from ..service.drills import run_drill

SUMMARY = N_("Rehearse a restore in a scratch directory, check it, and remove it.")
USAGE = ("drill [ARCHIVE] [--to=DIR] [--json]",)
OPTIONS = """\
  --to=DIR         With drill: the directory its scratch root is made in (else
                   backup.drill.scratchDir, else the store directory).
"""
STRICT_CONFIG = True
PROGRESS = True          # the restore's progress bar (ui.render.PROGRESS_LABELS)


def matches(args: dict) -> bool:
    return bool(args["drill"])


def options(args: dict) -> DrillOptions:
    return DrillOptions(args["ARCHIVE"], args["--to"])


def run(settings: Settings, options: DrillOptions, progress=None) -> DrillResult:
    return run_drill(settings, options.reference, options.to, progress)
