"""``prune``: apply the retention policy to the store (``archives.pruning``, under the
installation lock; the decision is ``policy.retention.decide``)."""

from __future__ import annotations

from ..archives.pruning import PruneResult, prune
from ..config import Settings
from ..i18n import N_
from ..options import PruneOptions
from ..service.metrics import publisher
from ..store.runs import observed

SUMMARY = N_("Delete the archives the retention policy no longer keeps.")
USAGE = ("prune [--dry-run] [--json]",)
OPTIONS = """\
  --dry-run        With unpack, prune or consolidate: print what would change and
                   change nothing.
"""
STRICT_CONFIG = True
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["prune"])


def options(args: dict) -> PruneOptions:
    return PruneOptions(dry_run=bool(args["--dry-run"]))


def run(settings: Settings, options: PruneOptions, progress=None) -> PruneResult:
    if options.dry_run:     # a plan changes nothing: not a run of prune
        return prune(settings, dry_run=True)
    with observed(settings.records_dir, "prune", publisher(settings)) as seen:
        result = prune(settings)
        seen.size = result.freed
        seen.details = {"deleted": len(result.deleted)}
    result.warnings.extend(seen.warnings)
    return result
