"""What each command is asked to do: one frozen options object per command.

The command line fills them (``commands/<name>.py``: ``options(args)``); the library
takes them as they are, so a test, the scheduler or the restore's safety archive asks
for exactly what the command line can.  Where an option is the same for several
commands (``targets``), it means the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PackOptions:
    targets: tuple[str, ...] | None = None      # None: every target
    name: str | None = None                     # a label in the manifest
    archive_type: str = "manual"                # manual | scheduled | pre-restore
    encrypt: bool = False                       # the whole archive (else as configured)
    incremental: bool | None = None             # True, False (--full), None: configured
    check_content: bool = False                 # an incremental compares contents
    protect: bool = False                       # mark the new archive protected
    paths: object = None                        # snapshot.selection.PathSelection: only these
    force_root: bool = False                    # pack a root that is not an installation
    prune: bool = True                          # apply the retention policy afterwards
    replicate: bool = True                      # copy to backup.storage.replicas afterwards


@dataclass(frozen=True)
class UnpackOptions:
    reference: str                              # id, id prefix, file or s3:// URL
    targets: tuple[str, ...] | None = None
    dry_run: bool = False
    skip_backup: bool = False                   # no pre-restore safety archive
    same_owner: bool = False                    # restore uid/gid (as root)
    special_bits: bool = False                  # keep setuid/setgid
    paths: object = None                        # --include/--exclude (PathSelection)
    to: str | None = None                       # restore into this directory instead
    force_root: bool = False                    # restore into a root that is not an
                                                # installation (an empty one always may)


@dataclass(frozen=True)
class RecoverOptions:
    """``unpack --recover``: only finish or undo an interrupted restore."""


@dataclass(frozen=True)
class ListOptions:
    pass


@dataclass(frozen=True)
class InspectOptions:
    reference: str
    entries: bool = False                       # every archived entry too


@dataclass(frozen=True)
class VerifyOptions:
    reference: str | None                       # None: --all
    record: bool = True                         # note a complete check in the store
    every: bool = False                         # --all: every archive of the store


@dataclass(frozen=True)
class CopyOptions:
    reference: str
    destination: str                            # a directory or s3://bucket/prefix
    ancestors: bool = True                      # copy those the destination lacks


@dataclass(frozen=True)
class ProtectOptions:
    """``protect`` and ``unprotect``."""
    reference: str


@dataclass(frozen=True)
class DrillOptions:
    reference: str | None = None                # None: the newest good archive
    to: str | None = None                       # the scratch root's parent directory


@dataclass(frozen=True)
class ConsolidateOptions:
    reference: str
    name: str | None = None                     # else consolidated-<id>
    protect: bool = False
    dry_run: bool = False


@dataclass(frozen=True)
class MetricsOptions:
    pass


@dataclass(frozen=True)
class PruneOptions:
    dry_run: bool = False


@dataclass(frozen=True)
class ScheduleOptions:
    once: bool = False                          # run what is due, then exit
    next: int | None = None                     # only list this many next fire times
    force_root: bool = False                    # back up a root that is not an installation


@dataclass(frozen=True)
class KeygenOptions:
    encryption: bool = False                    # an X25519 identity, not a signing key
    force: bool = False                         # replace an existing key (or export file)
    export: str | None = None                   # copy the identity to this file


@dataclass(frozen=True)
class DoctorOptions:
    pass


@dataclass(frozen=True)
class ConfigOptions:
    upgrade: bool = True                        # the backup section in the documented shape
    write: bool = False                         # and write it into the file


@dataclass(frozen=True)
class LsOptions:
    reference: str
    paths: object = None                        # PATH arguments, --exclude (PathSelection)


@dataclass(frozen=True)
class DumpOptions:
    reference: str
    path: str                                   # one file of the archive
    output: str | None = None                   # -o FILE (else standard output)


@dataclass(frozen=True)
class FindOptions:
    paths: object                               # the PATTERN (and --exclude): PathSelection
    archives: tuple[str, ...] | None = None     # references; None: every archive of the store


@dataclass(frozen=True)
class DiffOptions:
    reference: str                              # the older archive, usually
    other: str
    paths: object = None                        # PATH arguments, --exclude (PathSelection)
