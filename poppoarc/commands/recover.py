"""``unpack --recover`` (also ``restore --recover``): only finish or undo an interrupted
restore (``restore.recovery``), as every other command does first."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Settings
from ..errors import EXIT_OK
from ..i18n import N_
from ..options import RecoverOptions
from ..restore.recovery import recover_if_needed

SUMMARY = N_("Finish or undo an interrupted restore.")
USAGE = ("(unpack | restore) --recover [--json]",)
OPTIONS = """\
  --recover        With unpack: only finish or undo an interrupted restore.
"""
STRICT_CONFIG = False
PROGRESS = False
RECOVERS_FIRST = False      # the recovery is its whole work


@dataclass
class RecoverResult:
    recovery: object | None     # swap.Recovery, None: nothing was interrupted
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        recovery = self.recovery
        return {"recovered": None if recovery is None else {
            "action": recovery.action, "restore_id": recovery.restore_id,
            "archive_id": recovery.archive_id, "restored": recovery.restored,
            "details": recovery.details}}


def matches(args: dict) -> bool:
    return bool((args["unpack"] or args["restore"]) and args["--recover"])


def options(args: dict) -> RecoverOptions:
    return RecoverOptions()


def run(settings: Settings, options: RecoverOptions, progress=None) -> RecoverResult:
    return RecoverResult(recover_if_needed(settings))
