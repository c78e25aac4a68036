"""``protect``: mark an archive protected in its store: no retention deletes it or
its ancestors (``archives.protection``)."""

from __future__ import annotations

from ..archives.protection import ProtectResult, protect
from ..config import Settings
from ..i18n import N_
from ..options import ProtectOptions

SUMMARY = N_("Protect an archive: no retention deletes it or its ancestors.")
USAGE = ("protect ARCHIVE [--json]",)
OPTIONS = ""
STRICT_CONFIG = True
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["protect"])


def options(args: dict) -> ProtectOptions:
    return ProtectOptions(args["ARCHIVE"])


def run(settings: Settings, options: ProtectOptions, progress=None) -> ProtectResult:
    return protect(settings, options.reference)
