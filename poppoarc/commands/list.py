"""``list``: every archive of the store, newest first, from heads alone
(``archives.listing``: a damaged archive is a row marked damaged, never a failure)."""

from __future__ import annotations

from dataclasses import dataclass

from ..archives.listing import ListRow, list_archives
from ..config import Settings
from ..errors import EXIT_OK
from ..i18n import N_
from ..options import ListOptions

SUMMARY = N_("List the archives of the store, newest first.")
USAGE = ("list [--json]",)
OPTIONS = ""
STRICT_CONFIG = False
PROGRESS = False


@dataclass
class ListResult:
    store: str
    rows: list[ListRow]
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        return {"store": self.store, "archives": [row.to_json() for row in self.rows],
                "total": len(self.rows)}


def matches(args: dict) -> bool:
    return bool(args["list"])


def options(args: dict) -> ListOptions:
    return ListOptions()


def run(settings: Settings, options: ListOptions, progress=None) -> ListResult:
    return ListResult(settings.store_url, list_archives(settings))
