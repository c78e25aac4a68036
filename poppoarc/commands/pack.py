"""``pack`` (also ``create``): capture the installation into one signed archive, then
apply the retention policy when one is configured (``--no-prune`` skips it), then bring
the replicas up to date (``service.replicas``; ``--no-replicate`` skips it).

Under the installation lock (one writer per installation); the work is ``poppoarc.pack``
and ``archives.pruning`` (the same prune as ``poppoarc prune``, never deleting the new
archive nor its chain).  ``schedule`` calls ``pack_locked`` and prunes itself, once.
Each run, success or failure, is recorded for doctor and the metrics (``store.runs``).
"""

from __future__ import annotations

from ..archives.pruning import prune_locked
from ..config import Settings
from ..errors import PoppoarcError
from ..i18n import N_
from ..lock import InstallationLock, StoreLock
from ..options import PackOptions
from ..pack import PackResult, pack_locked
from ..policy.retention import configured
from ..service.metrics import publisher
from ..service.replicas import replicate_after_pack
from ..snapshot.catalogue import parse_target_list
from ..snapshot.naming import check_name
from ..snapshot.root import require_installation
from ..store.runs import observed

SUMMARY = N_("Write one signed archive of the installation into the store.")
USAGE = ("""(pack | create) [--targets=LIST] [--name=NAME] [--encrypt]
            [--incremental | --full] [--check-content] [--protect] [--force]
            [--no-prune] [--no-replicate] [--json]""",)
OPTIONS = """\
  --targets=LIST   Comma-separated targets: config,database,logs,agents,state,security.
  --name=NAME      A label stored in the archive's manifest.
  --encrypt        With pack: encrypt the whole archive (also backup.storage.encrypt).
  --incremental    With pack: store only what changed since the newest good archive
                   (the default when backup.incremental.enabled is true).
  --full           With pack: make a full archive even when incrementals are enabled.
  --check-content  With pack --incremental: compare file contents, not stat facts.
  --protect        With pack or consolidate: mark the new archive protected (no
                   retention deletes it or its ancestors; poppoarc unprotect lifts it).
  --no-prune       With pack: do not apply the retention policy afterwards.
  --no-replicate   With pack: do not copy to backup.storage.replicas afterwards.
  --force          With pack, unpack, schedule: accept a root that is not an installation;
                   with keygen: replace an existing key (or the FILE of --export).
"""
STRICT_CONFIG = True
PROGRESS = True          # long work: a progress bar (ui.render.PROGRESS_LABELS)


def matches(args: dict) -> bool:
    return bool(args["pack"] or args["create"])


def options(args: dict) -> PackOptions:
    incremental = True if args["--incremental"] else False if args["--full"] else None
    return PackOptions(targets=parse_target_list(args["--targets"]),
                       name=check_name(args["--name"]),        # before any work (F20)
                       encrypt=bool(args["--encrypt"]), incremental=incremental,
                       check_content=bool(args["--check-content"]),
                       protect=bool(args["--protect"]), force_root=bool(args["--force"]),
                       prune=not args["--no-prune"], replicate=not args["--no-replicate"])


def run(settings: Settings, options: PackOptions, progress=None) -> PackResult:
    # a wrong root is refused before anything is made there (a store, a record of the run)
    require_installation(settings.root, (settings.store, settings.key_dir),
                         force=options.force_root)
    with observed(settings.records_dir, "pack", publisher(settings)) as seen:
        with InstallationLock(settings.root, "pack", fallback=settings.store), \
                StoreLock(settings.local_store, "pack", create=True):
            result = pack_locked(settings, options, progress=progress)
            if options.prune and configured(settings.backup):
                _retention(settings, result)
            if options.replicate and settings.replicas:
                result.replicas, warnings = replicate_after_pack(
                    settings, result.id, progress,
                    prune=options.prune and configured(settings.backup))
                result.warnings.extend(warnings)
        seen.archive, seen.size = result.id, result.size
    result.warnings.extend(seen.warnings)
    return result


def _retention(settings: Settings, result: PackResult) -> None:
    """The prune after a successful pack; its failure is a warning (the archive is made)."""
    try:
        result.retention = prune_locked(settings, protect=frozenset({result.id}))
    except (PoppoarcError, OSError) as exc:
        result.warnings.append(f"retention: the prune after this pack failed: {exc}")
        return
    result.warnings.extend(f"retention: {warning}" for warning in result.retention.warnings)
