"""``verify``: check every byte of an archive as a restore would read it, its chain
included (``archives.verification``); a complete check of an archive of the configured
store (local or S3) is recorded, for doctor.  ``verify --all``: every archive of the
store, each verified once and recorded (``archives.verify_store``)."""

from __future__ import annotations

from ..archives.verification import VerifyResult, verify
from ..archives.verify_store import StoreVerifyResult, verify_store
from ..config import Settings
from ..i18n import N_
from ..options import VerifyOptions
from ..service.metrics import publisher
from ..store.runs import observed

SUMMARY = N_("Check every byte of an archive, or of every archive of the store, as a restore would read it, chains included.")
USAGE = ("verify (ARCHIVE | --all) [--json]",)
OPTIONS = """\
  --all            With verify: every archive of the store, each recorded for doctor.
"""
STRICT_CONFIG = False
PROGRESS = True          # long work: a progress bar (ui.render.PROGRESS_LABELS)


def matches(args: dict) -> bool:
    return bool(args["verify"])


def options(args: dict) -> VerifyOptions:
    return VerifyOptions(args["ARCHIVE"], every=bool(args["--all"]))


def run(settings: Settings, options: VerifyOptions,
        progress=None) -> VerifyResult | StoreVerifyResult:
    with observed(settings.records_dir, "verify", publisher(settings)) as seen:
        if options.every:
            seen.archive = "--all"
            result = verify_store(settings, progress=progress)
            if result.count("failed"):
                seen.ok = False
                seen.problem = f"{result.count('failed')} archive(s) fail verification"
            seen.size = sum(v.result.bytes for v in result.archives if v.result)
            return result
        seen.archive = options.reference
        result = verify(settings, options.reference, progress=progress, record=options.record)
        seen.archive, seen.size = result.id, result.bytes
    return result
