"""``verify``: check every byte of an archive as a restore would read it, its chain
included (``archives.verification``); a complete check of an archive in the local store
is recorded there, for doctor."""

from __future__ import annotations

from ..archives.verification import VerifyResult, verify
from ..config import Settings
from ..i18n import N_
from ..options import VerifyOptions
from ..service.metrics import publisher
from ..store.runs import observed

SUMMARY = N_("Check every byte of an archive as a restore would read it, its chain included.")
USAGE = ("verify ARCHIVE [--json]",)
OPTIONS = ""
STRICT_CONFIG = False
PROGRESS = True          # long work: a progress bar (ui.render.PROGRESS_LABELS)


def matches(args: dict) -> bool:
    return bool(args["verify"])


def options(args: dict) -> VerifyOptions:
    return VerifyOptions(args["ARCHIVE"])


def run(settings: Settings, options: VerifyOptions, progress=None) -> VerifyResult:
    with observed(settings.records_dir, "verify", publisher(settings)) as seen:
        seen.archive = options.reference
        result = verify(settings, options.reference, progress=progress, record=options.record)
        seen.archive, seen.size = result.id, result.bytes
    return result
