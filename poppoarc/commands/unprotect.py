"""``unprotect``: lift an archive's protection mark (``archives.protection``); retention
applies to it again."""

from __future__ import annotations

from ..archives.protection import ProtectResult, unprotect
from ..config import Settings
from ..i18n import N_
from ..options import ProtectOptions

SUMMARY = N_("Lift an archive's protection: retention applies to it again.")
USAGE = ("unprotect ARCHIVE [--json]",)
OPTIONS = ""
STRICT_CONFIG = True
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["unprotect"])


def options(args: dict) -> ProtectOptions:
    return ProtectOptions(args["ARCHIVE"])


def run(settings: Settings, options: ProtectOptions, progress=None) -> ProtectResult:
    return unprotect(settings, options.reference)
