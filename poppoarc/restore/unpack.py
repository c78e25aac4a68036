"""``unpack``: restore an archive into the live installation, all or nothing.

Order of work (spec/FORMAT.md §7 for the archive checks):

1. recover any interrupted restore; take the installation lock;
2. authenticate the archive (pinned key) and read its index;
3. walk the live tree and compute the plan (``plan.make_plan``) — a dry run
   stops here and returns it;
4. check space and permissions, run the ``beforeRestore`` hook;
5. write the pre-restore safety archive of the selected targets;
6. stage: hard-link kept live content, stream and verify the whole archive
   into staging, check restored databases.  The live paths the staged tree
   drops are those of the selected targets *now*: after a hook or a safety
   archive ran, the tree is walked again (a file the hook wrote into a
   restored target is replaced too, and is in the safety archive);
7. swap atomically with the journal, run the health check (rolling back on
   failure), run the ``afterRestore`` hook.

The live tree is untouched by every failure before step 7, and step 7 is
transactional (``swap``).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import (
    HealthCheckFailed,
    HookFailed,
    InsufficientSpace,
    LockHeld,
    NoKey,
    NotWritable,
    RestoreError,
    UsageError,
    Warnings,
)
from ..format import reader
from ..inspection import full_manifest, open_archive, open_sealer, pinned_keys
from ..lock import InstallationLock
from ..pack import installation_version, pack_locked
from ..snapshot import sqlite as sqlite_snapshot
from ..snapshot.catalogue import TARGETS, build_catalogue
from ..snapshot.scan import DATABASE, path_of, scan
from ..store import leftovers
from . import chain, fsops, journal, swap
from .plan import RestorePlan, make_plan, restores, staging_paths
from .stage import StagedTree, live_lookup
from .writebehind import WriteBehind

SPACE_MARGIN = 16 * 1024 * 1024


@dataclass
class UnpackResult:
    plan: RestorePlan
    dry_run: bool
    safety_archive: str | None = None
    outcome: str = "planned"          # planned | committed | rolled_back | nothing-to-do
    warnings: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)   # leftovers of dead processes removed

    def to_json(self) -> dict:
        return {"archive_id": self.plan.archive_id, "dry_run": self.dry_run,
                "outcome": self.outcome, "safety_archive": self.safety_archive,
                "plan": self.plan.to_json(), "warnings": self.warnings,
                "cleaned": self.cleaned}


def recover_if_needed(settings: Settings, on_event=None):
    """Finish or undo an interrupted restore before anything else touches the tree."""
    if not (settings.root / ".poppoarc-restore.json").exists():
        _remove_stale_journal_temps(settings.root)
        return None
    with InstallationLock(settings.root, "recovery"):
        return swap.recover(settings.root, on_event=on_event)


def _remove_stale_journal_temps(root: Path) -> None:
    """A restore killed while writing its first journal leaves only a temporary.

    Nothing was changed yet, so it is simply removed — unless another process
    holds the lock (it may be writing that journal right now).
    """
    if not any(root.glob(fsops.stale_temp_glob(journal.JOURNAL_NAME))):
        return
    try:
        with InstallationLock(root, "recovery"):
            if not journal.journal_path(root).exists():
                journal.remove_journal(root)
    except LockHeld:
        pass


def _run_hook(command: str, settings: Settings, archive_id: str, phase: str) -> int:
    env = {**os.environ, "POPPO_ROOT": str(settings.root), "POPPOARC_ARCHIVE": archive_id,
           "POPPOARC_PHASE": phase}
    try:
        return subprocess.run(command, shell=True, cwd=settings.root, env=env,
                              timeout=settings.backup.get("restore", {}).get("hookTimeout", 600),
                              stdin=subprocess.DEVNULL).returncode
    except subprocess.TimeoutExpired:
        return -1


def _live_databases(root: Path, live) -> dict[str, tuple[dict, int]]:
    found = {}
    for entry in live:
        if entry.kind == DATABASE:
            try:
                facts = sqlite_snapshot.describe(root / entry.path)
            except Exception:   # a damaged live database is exactly why people restore
                continue
            found[entry.path] = (facts.tables, facts.user_version)
    return found


def unpack(settings: Settings, reference: str, *, targets: tuple[str, ...] | None = None,
           dry_run: bool = False, skip_backup: bool = False, same_owner: bool = False,
           special_bits: bool = False, progress=None, on_event=None) -> UnpackResult:
    warnings = Warnings()
    with open_archive(settings, reference) as (store, handle, path), \
            InstallationLock(settings.root, "restore"):
        pinned = pinned_keys(settings)
        head = reader.open_trusted(handle, pinned, path)
        sealer = open_sealer(settings, head, path)      # a wrong key fails here, before any work
        links = chain.resolve(store, head, pinned)      # a missing parent, too
        index = reader.read_index(handle, head, path, sealer)
        if index.entries is None:
            raise NoKey("archive is encrypted; set POPPO_BACKUP_KEY or configure an identity "
                        "to restore it", path=path)
        entries = index.entries
        manifest = full_manifest(head, index)
        keyed = sealer is not None      # else sealed files are skipped (plan.restores)
        if not keyed and entries.sealed:
            warnings.add("sealed secret files (.env, tokens) are not restored: no key available")
        available = tuple(t for t in TARGETS if t in manifest["targets"])
        if targets is None:
            selected = available
        else:
            absent = [t for t in targets if t not in available]
            if absent:
                raise UsageError(f"archive {manifest['id']} has no target {absent[0]!r} "
                                 f"(it has: {', '.join(available)})")
            selected = targets
        catalogue = build_catalogue(settings.backup.get("targets", {}), selected)
        live = scan(settings.root, catalogue, warnings,
                    skip=(settings.store, settings.key_dir)).entries
        plan = make_plan(manifest, entries, live, selected, _live_databases(settings.root, live),
                         installation_version(settings.root), keyed)
        for warning in plan.warnings:
            warnings.add(warning)
        result = UnpackResult(plan, dry_run, warnings=warnings.items)
        if dry_run:
            return result
        result.cleaned = leftovers.clean(store)
        hooks = settings.backup.get("hooks", {})
        take_safety = not skip_backup and bool(live)
        # The staged tree drops the live paths of the selected targets as they are when
        # staging starts.  After a hook or a safety archive the tree is walked again: the
        # hook may write into a restored target.  Else the plan's walk waits on disk.
        walk_again = take_safety or bool(hooks.get("beforeRestore"))
        if walk_again:
            live.close()
            live = None
        else:
            live.release()

        if not os.access(settings.root, os.W_OK | os.X_OK):
            raise NotWritable("installation root is not writable by this user", path=settings.root)
        local_safety = not skip_backup and settings.storage.get("type") != "s3"
        # databases rebuilt from a chain (only an incremental has delta records: §12.1)
        rebuilt = sum(e.size for e in entries if e.delta is not None) if links else 0
        needed = plan.bytes_to_stage + rebuilt + (plan.live_bytes // 2 if local_safety else 0) \
            + SPACE_MARGIN
        free = shutil.disk_usage(settings.root).free
        if free < needed:
            raise InsufficientSpace(f"restore needs about {needed / 1e6:.0f} MB free for staging "
                                    f"and the safety archive; {free / 1e6:.0f} MB available",
                                    path=settings.root)
        if hooks.get("beforeRestore"):
            code = _run_hook(hooks["beforeRestore"], settings, manifest["id"], "beforeRestore")
            if code != 0:
                raise HookFailed(f"beforeRestore hook exited with {code}; nothing was restored")
        if take_safety:
            safety = pack_locked(settings, targets=selected, archive_type="pre-restore",
                                 name=f"before restoring {manifest['id']}")
            result.safety_archive = safety.id
            for warning in safety.warnings:
                warnings.add(f"safety archive {safety.id}: {warning}")
        if walk_again:
            live = scan(settings.root, catalogue, Warnings(), compact=True,
                        skip=(settings.store, settings.key_dir)).entries
        paths = staging_paths(entries, selected, keyed, live, live_lookup(settings.root))
        area = swap.begin(settings.root, secrets.token_hex(6), manifest["id"], on_event=on_event)
        tree = StagedTree(settings.root, area.path, lambda e: restores(e, selected, keyed),
                          paths.link_sources, same_owner=same_owner, special_bits=special_bits)
        writing = WriteBehind(tree)     # the staged tree is written on a thread of its own
        try:
            tree.keep_live(plan.top_level, paths.restored, live.paths_in_path_order(path_of))
            live.close()
            del paths
            total = plan.bytes_to_stage
            report = (lambda done, name: progress(done, total, name)) if progress else None
            if links:
                workdir = area.path / ".poppoarc-rebuild"
                workdir.mkdir(mode=0o700)
                chain.read_chain(links, store, (handle, head, entries, path, sealer),
                                 writing, workdir, chain.ancestor_reader(settings), report)
                writing.flush()
                shutil.rmtree(workdir)
            else:
                reader.read_body(handle, head, entries, path, writing, sealer=sealer,
                                 progress=report, block_digests=False)
                writing.flush()
            writing.close()
            tree.finish()
            tree.prune_removed_dirs()
        except BaseException as exc:
            writing.close()
            tree.close()
            swap.discard(area, on_event=on_event)
            if isinstance(exc, OSError):    # a disk filled, failed or went read-only
                error = InsufficientSpace if exc.errno in (errno.ENOSPC, errno.EDQUOT) \
                    else RestoreError
                raise error(f"staging the restore failed: {exc.strerror or exc}; "
                            "nothing was changed", path=exc.filename or area.path) from None
            raise
        health = settings.backup.get("restore", {}).get("healthCheck")
        check = (lambda: _run_hook(health, settings, manifest["id"], "healthCheck") == 0) \
            if health else None
        outcome = swap.commit_swap(area, plan.top_level, health_check=check, on_event=on_event)
        result.outcome = outcome.outcome
        if hooks.get("afterRestore"):
            code = _run_hook(hooks["afterRestore"], settings, manifest["id"], "afterRestore")
            if code != 0:
                warnings.add(f"afterRestore hook exited with {code}")
        if outcome.outcome == "rolled_back":
            raise HealthCheckFailed(f"health check failed ({outcome.health_error}); the previous "
                                    "installation was put back" +
                                    (f"; safety archive {result.safety_archive}"
                                     if result.safety_archive else ""))
    return result
