"""Consolidate: make a self-contained full archive from an incremental one, in the same
store, without touching the live tree.

The steps, under the installation's lock (no prune deletes a link being read):

1. ``plan``: the chain is verified with ``verify``'s own function (signature, framing,
   index, every digest and database of every link) and the sizes and the new name are
   decided; ``--dry-run`` prints this plan and stops.  A full archive is already
   self-contained: nothing is written.  A chain this machine cannot read whole (a sealed
   archive or sealed secrets without the key) raises the key's error: a consolidated
   archive missing the secrets would look whole and not be.
2. the chain is restored with ``unpack``'s steps into a scratch root in the store's
   directory (``.poppoarc-consolidate-<owner>-…``; an S3 store: ``$TMPDIR``), owners,
   modes, times, links, databases and sealed secrets as a restore makes them; the live
   tree is never a source nor a destination.
3. that scratch root is packed as a full archive into the store with the installation's
   signing key and its configured recipients (whole-archive encryption when the chain was
   sealed whole or the configuration asks for it), the archive's custom target areas
   kept, no user excludes (the scratch root holds exactly what was archived);
   That pack writes into a staging store of its own beside the store (a second
   ``.poppoarc-consolidate-<owner>-…`` directory), not into the store;
4. the new archive is verified there like any other, and its file count compared with
   the chain's manifest; a difference stops it (CorruptArchive) with nothing in the store.
   Only a verified archive is published: renamed into a local store (protection mark
   first), copied into a bucket (where copy verifies it once more).

The scratch root is removed whatever happened.  Streaming the chain's records into the
writer without a scratch restore would save the disk space of one restored tree; the
restore is used because it is the code every byte of a restore already goes through
(confinement, digests, databases), so the consolidated archive restores to what the
chain restores to by construction, and its memory stays the restore's and the pack's.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..archives.listing import list_archives
from ..archives.opening import open_archive, pinned_keys
from ..archives.protection import mark_content
from ..archives.replication import replica_settings
from ..archives.verification import verify
from ..config import Settings
from ..errors import EXIT_OK, EXIT_WARNING, CorruptArchive, NoKey, StoreError, write_error
from ..format import reader
from ..format.order import in_target_order
from ..fs import fsync_dir, remove_tree
from ..lock import InstallationLock, StoreLock
from ..options import PackOptions, UnpackOptions
from ..snapshot.areas import with_recorded
from ..store import SUFFIX, leftovers, open_store, verified
from . import unpack
from .drill import scratch_parent, scratch_settings


@dataclass
class ConsolidationPlan:
    archive_id: str
    chain: list[str]                    # the ancestors, oldest first
    chain_size: int                     # bytes of the chain's archives in the store
    files: int
    targets: list[str]
    name: str | None                    # the new archive's name (None: already full)
    encrypt: bool                       # the new archive sealed whole

    @property
    def incremental(self) -> bool:
        return bool(self.chain)


@dataclass
class ConsolidateResult:
    plan: ConsolidationPlan
    dry_run: bool = False
    id: str | None = None               # the new archive (None: nothing written)
    path: str | None = None
    size: int = 0
    cpu_seconds: float = 0.0
    protected: bool = False
    verified: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_WARNING if self.warnings else EXIT_OK

    def to_json(self) -> dict:
        p = self.plan
        return {"archive_id": p.archive_id, "incremental": p.incremental, "chain": p.chain,
                "chain_size": p.chain_size, "files": p.files, "targets": p.targets,
                "name": p.name, "encrypt": p.encrypt, "dry_run": self.dry_run,
                "id": self.id, "path": self.path, "size": self.size,
                "protected": self.protected, "verified": self.verified,
                "cpu_seconds": self.cpu_seconds, "warnings": self.warnings}


def plan(settings: Settings, reference: str, name: str | None = None) -> ConsolidationPlan:
    """Verify the archive and its chain (``verify``'s checks, nothing recorded) and decide
    what a consolidation writes.  Raises what verify raises (17 broken chain, 13 corrupt,
    40-42 keys); a chain this machine cannot read whole raises NoKey."""
    checked = verify(settings, reference, record=False)
    if checked.structure_only or any("sealed secret" in str(item)
                                     for item in checked.not_checked):
        path = checked.path
        raise NoKey(f"{path}: encrypted content needs a key this machine lacks; "
                    "a consolidated archive would miss it (configure the passphrase or "
                    "identity that opens the chain)")
    with open_archive(settings, checked.id) as (store, source, path):
        manifest = reader.open_trusted(source, pinned_keys(settings), path).manifest
        rows = {row.id: row for row in list_archives(settings, store)}
    manifest_targets = list(in_target_order(manifest["targets"]))
    size = sum(rows[i].size for i in [*checked.chain, checked.id] if i in rows)
    sealed_whole = checked.encryption == "archive"
    encrypt = sealed_whole or bool(settings.backup.get("storage", {}).get("encrypt"))
    default = f"consolidated-{checked.id}"
    return ConsolidationPlan(checked.id, list(checked.chain), size, checked.files,
                             manifest_targets, (name or default) if checked.chain else None,
                             encrypt)


def consolidate(settings: Settings, reference: str, name: str | None = None,
                protect: bool = False, dry_run: bool = False,
                progress=None) -> ConsolidateResult:
    started = time.process_time()
    with InstallationLock(settings.root, "consolidate"), \
            StoreLock(None if dry_run else settings.local_store, "consolidate"):
        chosen = plan(settings, reference, name)
        result = ConsolidateResult(chosen, dry_run)
        if dry_run or not chosen.incremental:
            return result
        parent = scratch_parent(settings, None)
        leftovers.sweep([parent])
        scratch = leftovers.temporary_directory(leftovers.CONSOLIDATE_PREFIX, parent)
        staging = leftovers.temporary_directory(leftovers.CONSOLIDATE_PREFIX, parent)
        root = Path(scratch.name)
        try:
            _write(settings, chosen, root, Path(staging.name), protect, progress, result)
        finally:
            remove_tree(root)
            scratch.cleanup()
            staging.cleanup()
    children = os.times()
    result.cpu_seconds = round(time.process_time() - started
                               + children.children_user + children.children_system, 2)
    return result


def _write(settings: Settings, chosen: ConsolidationPlan, root: Path, staging: Path,
           protect: bool, progress, result: ConsolidateResult) -> None:
    """Restore the chain into ``root``, pack it into ``staging`` (a store of its own beside
    the real one), verify it there, and only then publish it: a consolidated archive that
    fails its check never appears in the store, not even for an instant (a reader, a copy,
    a crash between the rename and the deletion)."""
    from ..pack import pack_locked      # pack imports cryptography; only when writing

    restored = unpack.run(scratch_settings(settings, root), UnpackOptions(
        chosen.archive_id, targets=tuple(chosen.targets) or None, skip_backup=True,
        same_owner=os.geteuid() == 0, special_bits=True, force_root=True), progress)
    if restored.unkeyed:
        archive = chosen.archive_id
        raise NoKey(f"{archive}: sealed secret files need a key this machine lacks; nothing "
                    "written")
    result.warnings.extend(restored.warnings)
    staged = replica_settings(_pack_settings(settings, root, restored.manifest), str(staging))
    packed = pack_locked(staged, PackOptions(
        targets=tuple(chosen.targets) or None, name=chosen.name, encrypt=chosen.encrypt,
        incremental=False, force_root=True, prune=False), progress)
    checked = verify(staged, packed.id, record=False)
    if checked.files != chosen.files or packed.skipped:
        held, archive, expected = checked.files, chosen.archive_id, chosen.files
        skipped = ", ".join(packed.skipped[:3]) or "-"
        raise CorruptArchive(f"the consolidated archive holds {held} files where the chain "
                             f"of {archive} holds {expected} (not archived: {skipped}); "
                             "nothing was written to the store", path=settings.store_url)
    published = _publish(settings, staging, packed.id, checked.checksum, protect, progress)
    result.id, result.path, result.size = packed.id, published, packed.size
    result.protected, result.verified = protect, True
    result.warnings.extend(packed.warnings)


def _publish(settings: Settings, staging: Path, archive_id: str, checksum: str,
             protect: bool, progress) -> str:
    """The verified archive into the store: renamed into a local store (the staging store
    lies in its directory), marked protected first when asked (a protected archive is
    never unmarked, as pack does it); copied into a bucket, where copy verifies it again
    and deletes it should that fail."""
    store = open_store(settings)
    staged = staging / f"{archive_id}{SUFFIX}"
    if settings.local_store is None:
        from ..archives.transfer import copy_archive
        copied = copy_archive(settings, str(staged), store, progress)
        if protect:
            store.protect(archive_id, mark_content(archive_id))
        return copied.destination
    final = store.final_path(archive_id)
    if protect:
        store.protect(archive_id, mark_content(archive_id))
    try:
        os.rename(staged, final)
        fsync_dir(final.parent)
    except OSError as exc:
        if protect:
            store.unprotect(archive_id)
        raise write_error(StoreError, exc, "cannot publish the consolidated archive", final) \
            from None
    verified.record(settings.store, archive_id, checksum)
    return str(final)


def _pack_settings(settings: Settings, root: Path, manifest: dict) -> Settings:
    """The scratch root's settings for the pack: the archive's custom areas known, no
    user excludes (the scratch root holds what was archived, nothing else), no
    incremental (a full archive), no hooks."""
    scratch = scratch_settings(settings, root)
    backup = dict(scratch.backup)
    backup.pop("exclude", None)
    targets = with_recorded(backup.get("targets", {}), manifest)
    backup["targets"] = {name: {k: v for k, v in (value or {}).items() if k != "exclude"}
                         if isinstance(value, dict) else value
                         for name, value in targets.items()}
    backup["incremental"] = {**(backup.get("incremental") or {}), "enabled": False}
    return dataclasses.replace(scratch, backup=backup)

