"""``copy``: an archive, with the ancestors the destination lacks, to another store (local
<-> S3), verified there with its chain (``archives.transfer``)."""

from __future__ import annotations

from ..archives.transfer import CopyResult, check_destination, copy_archive
from ..config import Settings
from ..errors import UsageError
from ..i18n import N_
from ..options import CopyOptions

SUMMARY = N_("Copy an archive, with the ancestors the destination lacks, to another store, then verify it there.")
USAGE = ("copy ARCHIVE --to=STORE [--no-ancestors] [--json]",)
OPTIONS = """\
  --to=STORE       With copy: the destination store (a directory or s3://bucket/prefix).
  --no-ancestors   With copy: copy the archive alone; refused (exit 17, naming them)
                   when the destination lacks ancestors of an incremental archive.
"""
STRICT_CONFIG = False
PROGRESS = False


def matches(args: dict) -> bool:
    return bool(args["copy"])


def options(args: dict) -> CopyOptions:
    if not args["--to"].strip():    # '' would be the current directory
        raise UsageError("--to needs a store: a directory or s3://bucket/prefix")
    return CopyOptions(args["ARCHIVE"], args["--to"], ancestors=not args["--no-ancestors"])


def run(settings: Settings, options: CopyOptions, progress=None) -> CopyResult:
    check_destination(settings, options.destination)
    return copy_archive(settings, options.reference, options.destination, progress,
                        ancestors=options.ancestors)
