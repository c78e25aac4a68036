"""A restore, as steps: what ``unpack`` (also ``restore``) does, and what a drill
(``operations.drill``) reuses to restore into a scratch root.  All or nothing.

Order of work (spec/FORMAT.md §7 for the archive checks), one function each:

1. (``cli``: recover any interrupted restore); take the installation lock (of the root the
   settings name: a drill's settings name its scratch root);
2. ``_open``: authenticate the archive (pinned key), resolve its chain, read its index;
3. ``_plan``: walk the live tree and compute the plan (``restore.plan.make_plan``): what
   changes, the paths the swap replaces whole (only what the restored targets own), the
   live paths it would replace that this user cannot read — a dry run stops here;
4. ``_refuse``: refuse what cannot be done whole (a conflict, a foreign path, a live path
   the safety archive could not save, unless ``--skip-backup``); check space and
   permissions;
5. ``_stage``: stream and verify the whole archive into staging (every byte against its
   checksum, every restored database checked), while the application still runs: a
   damaged archive fails here with verify's error class, before the application is
   stopped or a safety archive written;
6. ``_before_hook``: run ``beforeRestore``; ``_safety_archive``: write the pre-restore
   safety archive of the selected targets; ``_units``: walk again (the hook or the
   application may have written into a restored target meanwhile) and refuse, deleting
   that archive, if it could not save a path the swap replaces (staging again in the rare
   case the paths to swap moved);
7. ``_swap``: swap atomically with the journal — unless a path no restored target owns
   appeared in a swapped directory meanwhile — run the health check (rolling back on
   failure), run the ``afterRestore`` hook.

The live tree is untouched by every failure before step 7, and step 7 is transactional
(``restore.swap``); a staging area is journalled (phase STAGED) from step 5 on, so a crash
before the swap leaves only what recovery removes.  The ``afterRestore`` hook also runs when
a restore fails after ``beforeRestore`` ran, so an application it stopped is started again.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ..archives import chain
from ..archives.opening import (full_manifest, open_archive, open_sealer, pinned_keys,
                                read_checked_index)
from ..config import Settings
from ..errors import (EXIT_OK, EXIT_WARNING, HealthCheckFailed, HookFailed, InsufficientSpace,
                      Message, NoKey, NotWritable, RestoreError, SourceError,
                      UnsafeArchiveEntry, UsageError, Warnings)
from ..format import reader
from ..i18n import N_
from ..lock import InstallationLock
from ..options import PackOptions, UnpackOptions
from ..pack import pack_locked
from ..restore import swap
from ..restore.hooks import how_it_ended, run_hook
from ..restore.live import (identical_databases, live_databases, live_secrets,
                            nothing_foreign_appeared)
from ..restore.plan import RestorePlan, make_plan, restores, staging_paths
from ..restore.recovery import recover_if_needed
from ..restore.refusals import (conflict_message, foreign_message, plan_warnings,
                                unmatched_message, unreadable_message, unsafe_hint,
                                unsaved_message)
from ..restore.stage import StagedTree, apply_in_place
from ..restore.writebehind import behind
from ..format.order import in_target_order
from ..fs import within
from ..snapshot.areas import custom_areas, with_recorded
from ..snapshot.catalogue import TARGETS, area_catalogue, build_catalogue
from ..snapshot.ownership import foreign_units
from ..snapshot.root import require_installation
from ..snapshot.scan import scan
from ..snapshot.selection import PathSelection, selects
from ..snapshot.version import installation_version
from ..store import leftovers, open_store

SPACE_MARGIN = 16 * 1024 * 1024


@dataclass
class UnpackResult:
    plan: RestorePlan
    dry_run: bool
    safety_archive: str | None = None
    outcome: str = "planned"          # planned | committed | rolled_back | nothing-to-do
    warnings: list[str] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)   # leftovers of dead processes removed
    # what a drill compares the restored tree with (not in the JSON: inspect shows them)
    manifest: dict | None = field(default=None, repr=False)
    chain: list[str] = field(default_factory=list)      # ancestors restored through
    unkeyed: bool = False       # sealed secret files left out: no key

    @property
    def exit_code(self) -> int:
        return EXIT_WARNING if self.warnings else EXIT_OK

    def to_json(self) -> dict:
        return {"archive_id": self.plan.archive_id, "dry_run": self.dry_run,
                "outcome": self.outcome, "safety_archive": self.safety_archive,
                "plan": self.plan.to_json(), "warnings": self.warnings,
                "cleaned": self.cleaned}


@dataclass
class _Archive:
    """The archive being restored, opened: where it is, its head, key, chain, records."""

    store: object
    handle: object
    path: object
    head: reader.TrustedHead
    sealer: object
    links: list
    entries: object
    manifest: dict
    selected: tuple[str, ...]       # the targets restored (--targets, else all it has)


@dataclass
class _Restore:
    """One restore's state between its steps."""

    settings: Settings
    options: UnpackOptions
    archive: _Archive
    selected: tuple[str, ...]
    catalogue: object
    result: UnpackResult
    warnings: Warnings
    hooks: dict
    take_safety: bool           # a safety archive is written first
    hook_ran: bool = False

    @property
    def keyed(self) -> bool:
        """A key opens the archive; else its sealed files are not restored (plan.restores)."""
        return self.archive.sealer is not None


def run(settings: Settings, options: UnpackOptions, progress=None,
        on_event=None) -> UnpackResult:
    """``on_event(name)``: the swap's steps as they happen (a test's kill points)."""
    warnings = Warnings()
    if options.to is None:      # (--to DIR: a place of its own, chosen by name)
        _check_root(settings, options)
    settings = _destination(settings, options, warnings)
    with open_archive(settings, options.reference) as (store, handle, path), \
            _root_made(settings), InstallationLock(settings.root, "restore",
                                                   shared=options.dry_run):
        archive = _open(settings, store, handle, path, warnings, options)
        restore, walked = _plan(settings, options, archive, warnings)
        restore.result.manifest = archive.manifest
        restore.result.chain = [link.id for link in archive.links]
        restore.result.unkeyed = archive.sealer is None and bool(archive.entries.sealed)
        if options.dry_run:
            return restore.result
        restore.result.cleaned = leftovers.clean(store)
        try:
            _refuse(restore, restore.take_safety)
            paths = _units(restore, walked)
            staged = _stage(restore, paths, progress, on_event)
            try:
                paths, staged = _prepare(restore, paths, staged, progress, on_event)
            except BaseException:
                _discard(staged, on_event)
                raise
            _swap(restore, paths, staged, on_event)
        except BaseException:
            if restore.hook_ran and restore.hooks.get("afterRestore"):
                run_hook(restore.hooks["afterRestore"], settings, archive.manifest["id"],
                         "afterRestore", "failed")      # start what beforeRestore stopped
            raise
    return restore.result


def _check_root(settings: Settings, options: UnpackOptions) -> None:
    """Step 1: an installation, or an empty root (a new machine; created when missing), else
    exit 20 (``--force``: any root)."""
    places = (settings.store, settings.key_dir)
    require_installation(settings.root, places, force=options.force_root, empty_is_fine=True,
                         doing="restore into it")
    if options.dry_run and not os.path.lexists(settings.root):
        raise SourceError("does not exist; a dry run changes nothing, not even that: create "
                          "it (mkdir) or restore without --dry-run", path=settings.root)


@contextmanager
def _root_made(settings: Settings):
    """A root that does not exist yet is created once the archive is found (a restore onto
    a new machine); its parent must exist."""
    if not os.path.lexists(settings.root):
        try:
            os.mkdir(settings.root, 0o755)
        except OSError as exc:
            raise NotWritable(f"cannot create the installation root: {exc.strerror}",
                              path=settings.root) from None
    yield


def _destination(settings: Settings, options: UnpackOptions, warnings: Warnings) -> Settings:
    """``--to DIR``: the settings of a restore into DIR (the installation's configuration,
    store and keys; DIR's own interrupted restore recovered first)."""
    if options.to is None:
        return settings
    target = Path(options.to).absolute()
    if target.resolve() == settings.root.resolve():
        return settings
    _apart(options.to, target.resolve(), settings)     # before it is made
    if not target.exists() and target.parent.is_dir() and not options.dry_run:
        target.mkdir(mode=0o700)
    if not target.is_dir():
        raise UsageError(f"--to {options.to}: not a directory")
    settings = dataclasses.replace(settings, root=target)
    if not options.dry_run:
        recovery = recover_if_needed(settings)
        if recovery is not None:
            warnings.add(f"{target}: an interrupted restore there was recovered first "
                         f"({recovery.action.replace('_', ' ')})")
    return settings


def _apart(given: str, target: Path, settings: Settings) -> None:
    """``--to DIR`` must be a place of its own: not inside the installation (its targets
    would take the restored tree for theirs), the store or the key directory (where
    poppoarc's own files live)."""
    for place, what in ((settings.root, "the installation"), (settings.store, "the store"),
                        (settings.key_dir, "the key directory")):
        place = Path(place).resolve()
        if within(target, place):
            raise UsageError(f"--to {given}: inside {what} ({place}); restore into a "
                             "directory of its own (an empty one, or a scratch copy)")


def _open(settings: Settings, store, handle, path, warnings: Warnings,
          options: UnpackOptions) -> _Archive:
    """Step 2: the head, its key (a wrong key fails here, before any work), its chain (a
    missing parent, too), its index: the records the restore writes judged by the
    confinement rule (those it leaves out only for what makes the archive corrupt)."""
    pinned = pinned_keys(settings)
    head = reader.open_trusted(handle, pinned, path)
    selected = _selection(head.manifest, options.targets, settings.backup.get("targets", {}),
                          warnings)
    sealer = open_sealer(settings, head, path)
    links = chain.resolve(store, head, pinned)
    chosen = lambda e: e.target in selected and selects(options.paths, e.path)  # noqa: E731
    try:
        index = read_checked_index(settings, handle, head, path, sealer, chosen)
    except UnsafeArchiveEntry as exc:
        raise unsafe_hint(exc, head.manifest["id"]) from None
    if index.entries is None:
        raise NoKey("archive is encrypted; set POPPO_BACKUP_KEY or configure an identity "
                    "to restore it", path=path)
    if sealer is None and index.entries.sealed:
        warnings.add("sealed secret files (.env, tokens) are not restored: no key available")
    return _Archive(store, handle, path, head, sealer, links, index.entries,
                    full_manifest(head, index), selected)


def _plan(settings: Settings, options: UnpackOptions, archive: _Archive, warnings: Warnings):
    """Step 3: the plan from the live tree; (the restore's state, the walk if it may be
    used again: a hook or a safety archive makes the next step walk again)."""
    # the archive's custom targets this installation does not define take the areas the
    # archive records (judged when its index was read: restore/safety.py), for every step
    own = settings.backup.get("targets", {})
    settings = dataclasses.replace(settings, backup={
        **settings.backup, "targets": with_recorded(own, archive.manifest)})
    selected, paths = archive.selected, options.paths
    catalogue = build_catalogue(settings.backup.get("targets", {}), selected, paths=paths)
    walked = scan(settings.root, catalogue, warnings,
                  skip=(settings.store, settings.key_dir), foreign=True)
    live = walked.entries
    databases, unopenable = live_databases(settings.root, live)
    # a live database whose snapshot is the archived one byte for byte is unchanged
    archived = {e.path: e.sha256 for e in archive.entries
                if e.sqlite and e.sha256 and e.path in databases} if databases else {}
    plan = make_plan(archive.manifest, archive.entries, live, selected, databases,
                     installation_version(settings.root), archive.sealer is not None,
                     walked.impure, walked.sidecars, walked.unreadable + unopenable, paths,
                     identical_databases(settings.root, live, archived),
                     live_secrets(settings.root, walked.secrets))
    if plan.unmatched:
        live.close()
        raise UsageError(unmatched_message(plan.unmatched, archive.manifest["id"], selected,
                                           paths))
    if paths is not None:       # only the targets the selected paths are in: the safety
        plan.targets = [t for t in plan.targets     # archive holds nothing else
                        if any(t.count(a) for a in ("add", "change", "remove", "unchanged"))]
        selected = tuple(t.name for t in plan.targets)
        if not selected:
            live.close()
            raise UsageError(unmatched_message([], archive.manifest["id"], archive.selected,
                                               paths))
        catalogue = build_catalogue(settings.backup.get("targets", {}), selected, paths=paths)
    areas = area_catalogue(settings.backup.get("targets", {}), selected)
    plan.foreign = foreign_units(settings.root, areas, plan.units)
    defined = custom_areas(own)
    plan.areas = {name: {"include": list(custom_areas(settings.backup["targets"])[name]),
                         "from": "installation" if name in defined else "archive"}
                  for name in selected if name not in TARGETS}
    take_safety = not options.skip_backup and bool(live)    # (nothing live: nothing to save)
    plan.warnings.extend(plan_warnings(plan, take_safety))
    for warning in plan.warnings:
        warnings.add(warning)
    result = UnpackResult(plan, options.dry_run, warnings=warnings.items)
    hooks = {} if options.to is not None else settings.backup.get("hooks", {})
    restore = _Restore(settings, options, archive, selected, catalogue, result, warnings,
                       hooks, take_safety)
    if options.dry_run:
        return restore, None
    live.release()          # the plan's walk waits on disk: staging's paths come from it
    return restore, walked


def _selection(manifest: dict, targets: tuple[str, ...] | None, config_targets: dict,
               warnings: Warnings) -> tuple[str, ...]:
    """The targets to restore: ``--targets``, else every one the archive holds but a custom
    target this installation does not define (``backup.targets.NAME``): its area is the
    archive's word alone, so it is restored only when named (each such one is said)."""
    available = tuple(in_target_order(manifest["targets"]))
    if targets is None:
        defined = custom_areas(config_targets)
        chosen = []
        for name in available:
            if name in TARGETS or name in defined:
                chosen.append(name)
                continue
            warnings.add(Message(N_(
                "target {target} is not restored: backup.targets here does not define it; "
                "the archive records its area ({area}): restore it with --targets {target}, "
                "or define it first"), target=name, area=", ".join(manifest["areas"][name])))
        return tuple(chosen)
    absent = [t for t in targets if t not in available]
    if absent:
        raise UsageError(f"archive {manifest['id']} has no target {absent[0]!r} "
                         f"(it has: {', '.join(available)})")
    return tuple(in_target_order(targets))


def _prepare(restore: _Restore, paths, staged, progress, on_event):
    """Step 6, with the archive staged and verified: the hook, the safety archive, the
    walk again; (the paths to swap, the staged tree) as they now are."""
    _before_hook(restore)
    safety = _safety_archive(restore) if restore.take_safety else None
    if not restore.hook_ran and safety is None:
        return paths, staged        # nothing ran since the plan's walk
    again = _units(restore, None)
    if safety is not None:
        _check_safety_archive(restore, safety, again.units)
    if again.units.sorted() != paths.units.sorted():
        # the hook or the application moved what the swap replaces (a path of another
        # target appeared in a restored directory): stage again along the new paths
        _discard(staged, on_event)
        staged = _stage(restore, again, progress, on_event)
    return again, staged


def _discard(staged, on_event) -> None:
    """A staged tree that will not be swapped in: removed, its journal with it."""
    tree, area = staged
    tree.close()
    swap.discard(area, on_event=on_event)


def _refuse(restore: _Restore, take_safety: bool) -> None:
    """Step 4: what cannot be done whole stops the restore before anything is written."""
    settings, plan, archive = restore.settings, restore.result.plan, restore.archive
    if plan.conflicts:
        raise RestoreError(conflict_message(plan.conflicts) + "; nothing was changed")
    if plan.foreign:
        raise RestoreError(foreign_message(plan.foreign) + "; nothing was changed")
    if plan.unreadable and take_safety:
        raise RestoreError(unreadable_message(plan.unreadable))
    if not os.access(settings.root, os.W_OK | os.X_OK):
        raise NotWritable("installation root is not writable by this user", path=settings.root)
    _writable_units(settings.root, plan.units)
    local_safety = take_safety and settings.storage.get("type") != "s3"
    # databases rebuilt from a chain (only an incremental has delta records: §12.1)
    rebuilt = sum(e.size for e in archive.entries if e.delta is not None) \
        if archive.links else 0
    needed = plan.bytes_to_stage + rebuilt + (plan.live_bytes // 2 if local_safety else 0) \
        + SPACE_MARGIN
    free = shutil.disk_usage(settings.root).free
    if free < needed:
        raise InsufficientSpace(f"restore needs about {needed / 1e6:.0f} MB free for staging "
                                f"and the safety archive; {free / 1e6:.0f} MB available",
                                path=settings.root)


def _writable_units(root: Path, units: list[str]) -> None:
    """NotWritable (36) before anything runs when the swap could not rename a unit: its
    directory must be writable, and a directory unit itself (its '..' changes)."""
    for unit in units:
        parent = (root / unit).parent
        if not os.access(parent, os.W_OK | os.X_OK):
            raise NotWritable(f"this user cannot write this directory, where the restore "
                              f"replaces {unit}", path=parent)
        live = root / unit
        if live.is_dir() and not live.is_symlink() and not os.access(live, os.W_OK | os.X_OK):
            raise NotWritable("this user cannot write this directory, which the restore "
                              "replaces", path=live)


def _before_hook(restore: _Restore) -> None:
    command = restore.hooks.get("beforeRestore")
    if not command:
        return
    code = run_hook(command, restore.settings, restore.archive.manifest["id"], "beforeRestore")
    restore.hook_ran = True
    if code != 0:
        raise HookFailed(f"the beforeRestore hook ({command}) "
                         f"{how_it_ended(code, restore.settings)}; nothing was restored")


def _safety_archive(restore: _Restore):
    """Step 5: the selected targets as they are, packed under the lock this restore holds."""
    archive_id = restore.archive.manifest["id"]
    safety = pack_locked(restore.settings, PackOptions(
        targets=restore.selected, archive_type="pre-restore",
        name=f"before restoring {archive_id}", paths=restore.options.paths))
    restore.result.safety_archive = safety.id
    for warning in safety.warnings:
        restore.warnings.add(f"safety archive {safety.id}: {warning}")
    return safety


def _units(restore: _Restore, walked):
    """The paths the swap replaces, from the tree as it is now: a hook or the application
    may have changed it since the plan's walk."""
    settings = restore.settings
    if walked is None:
        walked = scan(settings.root, restore.catalogue, Warnings(), compact=True,
                      skip=(settings.store, settings.key_dir), foreign=True)
    try:
        paths = staging_paths(restore.archive.entries, restore.selected, restore.keyed,
                              walked.entries, walked.impure, walked.sidecars,
                              restore.options.paths)
    finally:
        walked.entries.close()
    if paths.units.conflicts:
        raise RestoreError(conflict_message(paths.units.conflicts) + "; nothing was changed")
    foreign = foreign_units(settings.root, area_catalogue(settings.backup.get("targets", {}),
                                                          restore.selected),
                            paths.units.sorted())
    if foreign:
        raise RestoreError(foreign_message(foreign) + "; nothing was changed")
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
    raise RestoreError(unsaved_message(lost, reasons))


def _stage(restore: _Restore, paths, progress, on_event):
    """Step 6: the whole archive (through its chain) streamed, verified and written into a
    staging area beside the live tree; returns the staged tree and its area."""
    settings, archive, options = restore.settings, restore.archive, restore.options
    area = swap.begin(settings.root, secrets.token_hex(6), archive.manifest["id"],
                      on_event=on_event)
    tree = StagedTree(settings.root, area.path,
                      lambda e: restores(e, restore.selected, restore.keyed,
                                         restore.options.paths),
                      paths.link_sources, paths.units.covers, same_owner=options.same_owner,
                      special_bits=options.special_bits)
    writing = behind(tree, settings.parallel)   # on a thread of its own (two-process)
    try:
        total = restore.result.plan.bytes_to_stage
        report = (lambda done, name: progress(done, total, name)) if progress else None
        if archive.links:
            workdir = area.path / ".poppoarc-rebuild"
            workdir.mkdir(mode=0o700)
            chain.read_chain(archive.links, archive.store,
                             (archive.handle, archive.head, archive.entries, archive.path,
                              archive.sealer), writing, workdir, chain.ancestor_reader(settings),
                             report)
            writing.flush()
            shutil.rmtree(workdir)
        else:
            reader.read_body(archive.handle, archive.head, archive.entries, archive.path,
                             writing, sealer=archive.sealer, progress=report,
                             block_digests=False)
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
    return tree, area


def _swap(restore: _Restore, paths, staged, on_event) -> None:
    """Step 7: the swap, the health check, the ``afterRestore`` hook."""
    settings, archive_id, result = restore.settings, restore.archive.manifest["id"], \
        restore.result
    tree, area = staged
    health = settings.backup.get("restore", {}).get("healthCheck") \
        if restore.options.to is None else None
    status = {}

    def check() -> bool:
        status["code"] = run_hook(health, settings, archive_id, "healthCheck")
        return status["code"] == 0

    outcome = swap.commit_swap(
        area, paths.units.sorted(), health_check=check if health else None, on_event=on_event,
        precheck=lambda: nothing_foreign_appeared(settings.root, restore.catalogue,
                                                  paths.unit_dirs),
        remove_behind=settings.parallel.processes and settings.parallel.tuning.trash_behind)
    result.outcome = outcome.outcome
    if outcome.outcome == "committed":
        for problem in apply_in_place(settings.root, tree.in_place,
                                      same_owner=restore.options.same_owner,
                                      special_bits=restore.options.special_bits):
            restore.warnings.add(problem)
    if restore.hooks.get("afterRestore"):
        restore.hook_ran = False        # ran here: not again for a failure below
        code = run_hook(restore.hooks["afterRestore"], settings, archive_id, "afterRestore",
                        outcome.outcome)
        if code != 0:
            restore.warnings.add(f"the afterRestore hook ({restore.hooks['afterRestore']}) "
                                 f"{how_it_ended(code, settings)}")
    if outcome.outcome == "rolled_back":
        why = how_it_ended(status["code"], settings) if "code" in status \
            else outcome.health_error
        raise HealthCheckFailed(f"the health check ({health}) {why}; the previous "
                                "installation was put back" +
                                (f"; safety archive {result.safety_archive}"
                                 if result.safety_archive else ""))
