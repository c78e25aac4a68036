"""``unpack``: restore an archive into the live installation, all or nothing.

Order of work (spec/FORMAT.md §7 for the archive checks):

1. recover any interrupted restore; take the installation lock;
2. authenticate the archive (pinned key) and read its index;
3. walk the live tree and compute the plan (``plan.make_plan``): what changes, the
   paths the swap replaces whole (only what the restored targets own), the live paths
   it would replace that this user cannot read — a dry run stops here and returns it;
4. refuse what cannot be done whole: a conflict, or a live path the safety archive
   could not save (unless ``--skip-backup``); check space and permissions, run the
   ``beforeRestore`` hook;
5. write the pre-restore safety archive of the selected targets; walk again (the hook
   may have written into a restored target) and refuse, deleting that archive, if it
   could not save a path the swap replaces;
6. stage: stream and verify the whole archive into staging, check restored databases;
7. swap atomically with the journal — unless a path no restored target owns appeared
   in a swapped directory meanwhile — run the health check (rolling back on failure),
   run the ``afterRestore`` hook.

The live tree is untouched by every failure before step 7, and step 7 is
transactional (``swap``).  The ``afterRestore`` hook also runs when a restore fails
after ``beforeRestore`` ran, so an application it stopped is started again.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import sqlite3
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
from ..archives import chain
from ..archives.opening import (full_manifest, open_archive, open_sealer, pinned_keys,
                                read_checked_index)
from ..lock import InstallationLock
from ..pack import installation_version, pack_locked
from ..snapshot import sqlite as sqlite_snapshot
from ..snapshot.catalogue import TARGETS, area_catalogue, build_catalogue
from ..snapshot.ownership import claimed_by_walk, foreign_units
from ..snapshot.scan import DATABASE, scan
from ..store import leftovers, open_store
from .. import fs
from . import journal, swap
from .plan import (RestorePlan, conflict_message, foreign_message, make_plan, restores,
                   staging_paths)
from .stage import StagedTree, apply_in_place
from .writebehind import WriteBehind

SPACE_MARGIN = 16 * 1024 * 1024
SHOWN = 5           # paths a refusal names before "and N more"


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
    if not any(root.glob(fs.stale_temp_glob(journal.JOURNAL_NAME))):
        return
    try:
        with InstallationLock(root, "recovery"):
            if not journal.journal_path(root).exists():
                journal.remove_journal(root)
    except LockHeld:
        pass


def _run_hook(command: str, settings: Settings, archive_id: str, phase: str,
              outcome: str | None = None) -> int:
    env = {**os.environ, "POPPO_ROOT": str(settings.root), "POPPOARC_ARCHIVE": archive_id,
           "POPPOARC_PHASE": phase}
    if outcome is not None:
        env["POPPOARC_OUTCOME"] = outcome
    try:
        return subprocess.run(command, shell=True, cwd=settings.root, env=env,
                              timeout=settings.backup.get("restore", {}).get("hookTimeout", 600),
                              stdin=subprocess.DEVNULL).returncode
    except subprocess.TimeoutExpired:
        return -1


def _live_databases(root: Path, live) -> tuple[dict[str, tuple[dict, int]], list[str]]:
    """(path: (row counts, user_version)) of the live databases, and those SQLite cannot
    open here (a safety archive could not save them)."""
    found, unopenable = {}, []
    for entry in live:
        if entry.kind == DATABASE:
            try:
                facts = sqlite_snapshot.describe(root / entry.path)
            except sqlite3.Error as exc:    # damaged: exactly why people restore
                if sqlite_snapshot.is_unopenable(exc):
                    unopenable.append(entry.path)
                continue
            except Exception:   # noqa: BLE001 (a damaged database may fail anyhow)
                continue
            found[entry.path] = (facts.tables, facts.user_version)
    return found, unopenable


def _shown(paths: list[str], notes: dict[str, str] | None = None) -> str:
    notes = notes or {}
    named = [f"{p} ({notes[p]})" if p in notes else p for p in paths[:SHOWN]]
    return ", ".join(named) + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")


def unreadable_message(paths: list[str]) -> str:
    return (f"{len(paths)} live path(s) the restore would replace cannot be read by this "
            f"user, so the safety archive cannot save them: {_shown(paths)}; nothing was "
            "changed (give this user read access, or restore with --skip-backup)")


@dataclass
class _Restore:
    """One restore's state between its steps."""

    settings: Settings
    selected: tuple[str, ...]
    keyed: bool
    manifest: dict
    catalogue: object
    result: UnpackResult
    warnings: Warnings
    hooks: dict
    hook_ran: bool = False


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
        index = read_checked_index(settings, handle, head, path, sealer)
        if index.entries is None:
            raise NoKey("archive is encrypted; set POPPO_BACKUP_KEY or configure an identity "
                        "to restore it", path=path)
        entries = index.entries
        manifest = full_manifest(head, index)
        keyed = sealer is not None      # else sealed files are skipped (plan.restores)
        if not keyed and entries.sealed:
            warnings.add("sealed secret files (.env, tokens) are not restored: no key available")
        selected = _selection(manifest, targets)
        catalogue = build_catalogue(settings.backup.get("targets", {}), selected)
        walked = scan(settings.root, catalogue, warnings,
                      skip=(settings.store, settings.key_dir), foreign=True)
        live = walked.entries
        databases, unopenable = _live_databases(settings.root, live)
        plan = make_plan(manifest, entries, live, selected, databases,
                         installation_version(settings.root), keyed, walked.impure,
                         walked.sidecars, walked.unreadable + unopenable)
        areas = area_catalogue(settings.backup.get("targets", {}), selected)
        plan.foreign = foreign_units(settings.root, areas, plan.units)
        take_safety = not skip_backup and bool(live)
        _plan_warnings(plan, take_safety)
        for warning in plan.warnings:
            warnings.add(warning)
        result = UnpackResult(plan, dry_run, warnings=warnings.items)
        if dry_run:
            return result
        result.cleaned = leftovers.clean(store)
        restore = _Restore(settings, selected, keyed, manifest, catalogue, result, warnings,
                           settings.backup.get("hooks", {}))
        # After a hook or a safety archive the tree is walked again (the hook may write
        # into a restored target); else the plan's walk waits on disk.
        if take_safety or restore.hooks.get("beforeRestore"):
            live.close()
            walked = None
        else:
            live.release()
        try:
            paths = _prepare(restore, plan, entries, links, take_safety, walked)
            _stage_and_swap(restore, paths, entries, links, (store, handle, path, head, sealer),
                            same_owner, special_bits, progress, on_event)
        except BaseException:
            if restore.hook_ran and restore.hooks.get("afterRestore"):
                _run_hook(restore.hooks["afterRestore"], settings, manifest["id"],
                          "afterRestore", "failed")     # start what beforeRestore stopped
            raise
    return result


def _selection(manifest: dict, targets: tuple[str, ...] | None) -> tuple[str, ...]:
    available = tuple(t for t in TARGETS if t in manifest["targets"])
    if targets is None:
        return available
    absent = [t for t in targets if t not in available]
    if absent:
        raise UsageError(f"archive {manifest['id']} has no target {absent[0]!r} "
                         f"(it has: {', '.join(available)})")
    return targets


def _plan_warnings(plan: RestorePlan, take_safety: bool) -> None:
    """What the restore would refuse, said in the plan a dry run prints."""
    if plan.conflicts:
        plan.warnings.append(f"the restore would stop: {conflict_message(plan.conflicts)}")
    if plan.foreign:
        plan.warnings.append(f"the restore would stop: {foreign_message(plan.foreign)}")
    if plan.unreadable:
        stop = "the restore would stop (exit 30)" if take_safety else \
            "--skip-backup: they are replaced without being saved"
        plan.warnings.append(f"{len(plan.unreadable)} live path(s) the restore would replace "
                             f"cannot be read by this user: {_shown(plan.unreadable)}; {stop}")


def _prepare(restore: _Restore, plan: RestorePlan, entries, links, take_safety: bool,
             walked):
    """Step 4 and 5: refusals, space, the hook, the safety archive, the walk again
    (``walked``: the plan's walk when nothing ran since; None: walk again)."""
    settings, manifest, result = restore.settings, restore.manifest, restore.result
    if plan.conflicts:
        raise RestoreError(conflict_message(plan.conflicts) + "; nothing was changed")
    if plan.foreign:
        raise RestoreError(foreign_message(plan.foreign) + "; nothing was changed")
    if plan.unreadable and take_safety:
        raise RestoreError(unreadable_message(plan.unreadable))
    if not os.access(settings.root, os.W_OK | os.X_OK):
        raise NotWritable("installation root is not writable by this user", path=settings.root)
    local_safety = take_safety and settings.storage.get("type") != "s3"
    # databases rebuilt from a chain (only an incremental has delta records: §12.1)
    rebuilt = sum(e.size for e in entries if e.delta is not None) if links else 0
    needed = plan.bytes_to_stage + rebuilt + (plan.live_bytes // 2 if local_safety else 0) \
        + SPACE_MARGIN
    free = shutil.disk_usage(settings.root).free
    if free < needed:
        raise InsufficientSpace(f"restore needs about {needed / 1e6:.0f} MB free for staging "
                                f"and the safety archive; {free / 1e6:.0f} MB available",
                                path=settings.root)
    if restore.hooks.get("beforeRestore"):
        code = _run_hook(restore.hooks["beforeRestore"], settings, manifest["id"],
                         "beforeRestore")
        restore.hook_ran = True
        if code != 0:
            raise HookFailed(f"beforeRestore hook exited with {code}; nothing was restored")
    safety = None
    if take_safety:
        safety = pack_locked(settings, targets=restore.selected, archive_type="pre-restore",
                             name=f"before restoring {manifest['id']}")
        result.safety_archive = safety.id
        for warning in safety.warnings:
            restore.warnings.add(f"safety archive {safety.id}: {warning}")
    # The units are those of the tree as it is now: a hook or the application may have
    # changed it since the plan's walk.
    if walked is None:
        walked = scan(settings.root, restore.catalogue, Warnings(), compact=True,
                      skip=(settings.store, settings.key_dir), foreign=True)
    try:
        paths = staging_paths(entries, restore.selected, restore.keyed, walked.entries,
                              walked.impure, walked.sidecars)
    finally:
        walked.entries.close()
    if paths.units.conflicts:
        raise RestoreError(conflict_message(paths.units.conflicts) + "; nothing was changed")
    foreign = foreign_units(settings.root, area_catalogue(settings.backup.get("targets", {}),
                                                          restore.selected),
                            paths.units.sorted())
    if foreign:
        raise RestoreError(foreign_message(foreign) + "; nothing was changed")
    if safety is not None:
        _check_safety_archive(restore, safety, paths.units)
    return paths


def _check_safety_archive(restore: _Restore, safety, units) -> None:
    """The safety archive holds every live path the swap replaces, or the restore stops
    (and the incomplete safety archive goes)."""
    lost = [path for path in safety.skipped if units.covers(path)]
    if not lost:
        return
    reasons = {}
    for warning in safety.warnings:
        for path in lost:
            if warning.startswith(path + ": "):
                reasons.setdefault(path, warning[len(path) + 2:])
    store = open_store(restore.settings)
    archive = store.lookup(safety.id)
    if archive is not None:
        store.delete(archive)
    restore.result.safety_archive = None
    raise RestoreError(f"the safety archive could not save {len(lost)} live path(s) the "
                       f"restore would replace: {_shown(lost, reasons)}; nothing was changed "
                       "(fix that and restore again, or restore with --skip-backup)")


def _stage_and_swap(restore: _Restore, paths, entries, links, source, same_owner: bool,
                    special_bits: bool, progress, on_event) -> None:
    """Steps 6 and 7."""
    settings, manifest, result = restore.settings, restore.manifest, restore.result
    store, handle, path, head, sealer = source
    plan = result.plan
    area = swap.begin(settings.root, secrets.token_hex(6), manifest["id"], on_event=on_event)
    tree = StagedTree(settings.root, area.path,
                      lambda e: restores(e, restore.selected, restore.keyed),
                      paths.link_sources, paths.units.covers, same_owner=same_owner,
                      special_bits=special_bits)
    writing = WriteBehind(tree)     # the staged tree is written on a thread of its own
    try:
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
    outcome = swap.commit_swap(
        area, paths.units.sorted(), health_check=check, on_event=on_event,
        precheck=lambda: _nothing_foreign_appeared(settings.root, restore.catalogue,
                                                   paths.unit_dirs))
    result.outcome = outcome.outcome
    if outcome.outcome == "committed":
        for problem in apply_in_place(settings.root, tree.in_place, same_owner=same_owner,
                                      special_bits=special_bits):
            restore.warnings.add(problem)
    hooks = restore.hooks
    if hooks.get("afterRestore"):
        restore.hook_ran = False        # ran here: not again for a failure below
        code = _run_hook(hooks["afterRestore"], settings, manifest["id"], "afterRestore",
                         outcome.outcome)
        if code != 0:
            restore.warnings.add(f"afterRestore hook exited with {code}")
    if outcome.outcome == "rolled_back":
        raise HealthCheckFailed(f"health check failed ({outcome.health_error}); the previous "
                                "installation was put back" +
                                (f"; safety archive {result.safety_archive}"
                                 if result.safety_archive else ""))


def _nothing_foreign_appeared(root: Path, catalogue, unit_dirs: list[tuple[str, int]]) -> None:
    """Last check before the swap: no live directory the swap replaces whole got a path
    that no restored target owns since the walk (an application still running: the swap
    would lose it).  Only directories whose status-change time moved are listed again."""
    for rel, ctime_ns in unit_dirs:
        directory = root / rel
        try:
            if os.lstat(directory).st_ctime_ns == ctime_ns:
                continue
            children = sorted(os.listdir(directory))
        except FileNotFoundError:
            continue            # gone: it was the restored target's anyway
        except OSError as exc:
            raise RestoreError(f"cannot read it again before the swap ({exc.strerror}); "
                               "nothing was changed", path=directory) from None
        for name in children:
            child = f"{rel}/{name}"
            if not claimed_by_walk(catalogue, str(root), child):
                raise RestoreError(
                    f"{child} appeared while the restore was staged and belongs to no restored "
                    "target, so the swap would lose it; nothing was changed (stop the "
                    "application first, backup.hooks.beforeRestore, and restore again)",
                    path=root / child)
