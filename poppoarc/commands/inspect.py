"""``inspect``: the signed manifest of an archive, and optionally its entries (read with
the confinement rule, as verify and unpack read them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..archives.opening import (full_manifest, open_archive, open_sealer, pinned_keys,
                                read_checked_index)
from ..config import Settings
from ..errors import EXIT_OK
from ..format import reader
from ..format.entry import IndexEntry
from ..i18n import N_
from ..options import InspectOptions
from ..streamed import StreamedArray

SUMMARY = N_("Show an archive's signed manifest: targets, databases, warnings.")
USAGE = ("inspect ARCHIVE [--entries] [--json]",)
OPTIONS = """\
  --entries        With inspect: also list every archived entry.
"""
STRICT_CONFIG = False
PROGRESS = False


@dataclass
class InspectResult:
    path: Path | str
    manifest: dict
    signer: str
    entries: list[IndexEntry] = field(default_factory=list)
    sealed: bool = False          # encrypted and no key here: only the public head is shown
    changed: list[str] = field(default_factory=list)    # files that changed while packed
    with_entries: bool = False    # the entries were asked for (the document lists them)
    exit_code: int = EXIT_OK

    def to_json(self) -> dict:
        data = {"path": str(self.path), "signer": self.signer, "manifest": self.manifest,
                "sealed": self.sealed, "changed_while_packed": self.changed}
        if self.with_entries:     # made while written: every entry as a dict at once
                                  # would grow with the archive
            data["entries"] = StreamedArray(lambda: (e.to_json() for e in self.entries))
        return data


def matches(args: dict) -> bool:
    return bool(args["inspect"])


def options(args: dict) -> InspectOptions:
    return InspectOptions(args["ARCHIVE"], entries=bool(args["--entries"]))


def run(settings: Settings, options: InspectOptions, progress=None) -> InspectResult:
    with open_archive(settings, options.reference) as (_, source, path):
        head = reader.open_trusted(source, pinned_keys(settings), path)
        sealer = open_sealer(settings, head, path)
        index = read_checked_index(settings, source, head, path, sealer)
    sealed = index.entries is None
    changed = [e.path for e in index.entries or () if e.changed]
    return InspectResult(path, full_manifest(head, index), head.signer,
                         (index.entries or []) if options.entries else [], sealed, changed,
                         options.entries)
