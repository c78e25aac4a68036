"""``pack``: capture an installation into one signed archive, as a list of steps.

``pack_locked`` (the caller holds the installation lock):

1. ``_begin``: the keys (signing; sealing: the passphrase's KDF starts now, beside the
   walk), the store (leftovers of killed commands removed), the archive's id and upload;
2. ``_walk``: the parent of an incremental read beside the walk, each database's
   snapshot started as the walk finds it, the directories of one target walked by a
   helper (``subtree.py``);
3. ``_seal``: what is sealed (``plan.scope``) and with which data key;
4. ``_parent``: the parent found (or a warning: a full archive);
5. ``_secrets``: the secret files join the security target, sealed, or are named;
6. ``_write_body``: every target streamed into the upload (``body.py``); ``_emptied``: a
   target that had files in the previous archive and has none now is named;
7. ``_finish``: the index, the manifest signed into the reserved head, the commit (fsync
   and rename in a local store, the multipart upload completed in S3).

Until the commit nothing exists under the archive's final name; a failure anywhere
aborts the upload.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..archives import facts
from ..archives.listing import list_archives
from ..archives.parent import find_parent
from ..archives.protection import mark_content
from ..config import Settings
from ..crypto import identity, recipients, signing
from ..crypto.sealer import Sealer
from ..errors import (EXIT_OK, EXIT_WARNING, Message, Warnings, as_space_error,
                      resource_limit)
from ..i18n import N_
from ..format.entry import CHUNK_SIZE
from ..format.manifest import ENCRYPTION_SCHEME, new_archive_id
from ..format.note import note_member
from ..format.writer import BodyWriter, finish_archive
from ..lock import InstallationLock
from ..options import PackOptions
from ..restore.safety import places_of
from ..snapshot.areas import recorded_areas
from ..snapshot.catalogue import build_catalogue
from ..snapshot.certs import describe_reference
from ..snapshot.environment import environment_document
from ..snapshot.naming import printable
from ..snapshot.root import require_installation
from ..snapshot.scan import database_candidates
from ..snapshot.version import installation_version
from ..store import leftovers, open_store
from . import plan
from .body import Body
from .bodyplan import BodyPlan, Sealing
from .databases import SnapshotSession, unchanged_capture
from .subtree import SubtreeHelper
from .walk import add_secrets, dotenv_names_of, walk_installation


@dataclass
class PackResult:
    id: str
    path: Path | str
    size: int
    files: int
    targets: dict
    warnings: list[str]
    duration_ms: int
    signer: str
    key_created: bool
    databases: list = field(default_factory=list)
    encryption: str | None = None          # None, "secrets" or "archive"
    cleaned: list[str] = field(default_factory=list)   # stale temps/uploads removed first
    parent: str | None = None              # an incremental's parent id
    reused: int = 0                        # files whose content stays in an ancestor
    skipped: list[str] = field(default_factory=list)   # paths not archived (each warned)
    protected: bool = False                # marked protected in the store (pack --protect)
    # said once, not warnings (the archive is whole): a key this pack created
    notices: list[str] = field(default_factory=list)
    retention: object = None    # the prune after the pack (archives.pruning.PruneResult)
    named_full: bool = False    # full because named, though incrementals are configured
    replicas: list = field(default_factory=list)   # archives.replication.ReplicaOutcome each
    timestamp: str | None = None           # the manifest's creation time, as list shows it
    name: str | None = None                # pack --name
    type: str | None = None                # manual, scheduled, pre-restore, ...

    @property
    def exit_code(self) -> int:
        return EXIT_WARNING if self.warnings else EXIT_OK

    def to_json(self) -> dict:
        return {"id": self.id, "path": str(self.path), "timestamp": self.timestamp,
                "type": self.type, "name": self.name, "size": self.size, "files": self.files,
                "targets": self.targets, "warnings": self.warnings,
                "duration_ms": self.duration_ms, "signer": self.signer,
                "key_created": self.key_created, "encryption": self.encryption,
                "cleaned": self.cleaned, "incremental": self.parent is not None,
                "parent": self.parent, "reused": self.reused, "skipped": self.skipped,
                "protected": self.protected,
                "retention": self.retention.summary() if self.retention else None,
                "named_full": self.named_full,
                "replicas": [r.to_json() for r in self.replicas],
                "notices": list(self.notices),
                "databases": [{"path": d["path"], "tables": d["tables"]} for d in self.databases]}


def pack(settings: Settings, options: PackOptions = PackOptions(), progress=None,
         environ=None) -> PackResult:
    """Pack under the installation lock (one writer per installation), from a root that
    is an installation (``options.force_root``: any root)."""
    require_installation(settings.root, (settings.store, settings.key_dir),
                         force=options.force_root)
    with InstallationLock(settings.root, "pack", fallback=settings.store):
        return pack_locked(settings, options, progress, environ)


@dataclass
class _Pack:
    """One pack's state between its steps."""

    settings: Settings
    options: PackOptions
    progress: object
    environ: object
    started: float
    now: datetime
    warnings: Warnings = field(default_factory=Warnings)
    notices: list = field(default_factory=list)
    secrets: object = None              # crypto.recipients.Secrets
    catalogue: object = None
    key: object = None
    key_created: bool = False
    store: object = None
    cleaned: list = field(default_factory=list)
    archive_id: str = ""
    upload: object = None
    parent_warnings: Warnings = field(default_factory=Warnings)
    parent_reader: object = None        # an executor reading the parent beside the walk
    parent_read: object = None          # ... its future
    parent_known: Future = field(default_factory=Future)    # the parent, or None: full
    snapshots: SnapshotSession | None = None
    subtree: SubtreeHelper | None = None
    walked: object = None               # snapshot.scan.ScanResult
    scope: str | None = None            # what is sealed: "archive", "secrets", None
    encryption: dict | None = None      # the manifest's encryption document
    sealer: Sealer | None = None
    parent: object = None               # archives.parent.ParentBase, or None: full
    body: Body | None = None
    references: list = field(default_factory=list)     # certificates, described
    head_size: int = 0                  # room reserved for the signed head
    writer: BodyWriter | None = None
    facts: facts.PendingFacts | None = None     # the next incremental's facts cache

    @property
    def parallel(self):
        return self.settings.parallel


def pack_locked(settings: Settings, options: PackOptions, progress=None, environ=None,
                clock=None) -> PackResult:
    """Pack; the caller holds the installation lock (restore does, for its safety archive).

    ``options.incremental``: True stores only what changed since the newest good
    archive (a full archive when there is none or the chain is at its maximum), False
    makes a full archive, None follows the configuration.  ``clock``: (now, monotonic)
    callables, for a test that packs twice to the same bytes.
    """
    now, monotonic = clock or (lambda: datetime.now(timezone.utc), time.monotonic)
    run = _Pack(settings, options, progress, os.environ if environ is None else environ,
                monotonic(), now())
    _begin(run)
    try:
        _walk(run)
        _seal(run)
        _parent(run)
        _secrets(run)
        _write_body(run)
        _emptied(run)
        if options.protect:     # before the commit: a protected archive is never unmarked
            run.store.protect(run.archive_id, mark_content(run.archive_id, run.now))
        manifest, stored = _finish(run, monotonic)
    except BaseException as exc:
        try:
            run.upload.abort()
        except Exception:   # the original error matters; a later pack cleans up
            pass
        if options.protect:     # a mark naming no archive keeps nothing; still, remove it
            with contextlib.suppress(Exception):
                run.store.unprotect(run.archive_id)
        # wherever the disk filled (store, spool, snapshot) or a limit was met (open
        # files, memory, threads): the scheduler sees the same class as the command line
        limit = as_space_error(exc) or resource_limit(exc)
        if limit is not None and limit is not exc:
            raise limit from exc
        raise
    finally:
        _close(run)
    body = run.body
    return PackResult(run.archive_id, stored.where, manifest["size"], body.files, body.targets,
                      list(run.warnings), manifest["duration"], run.key.key_id,
                      run.key_created, body.databases, run.scope, run.cleaned,
                      run.parent.id if run.parent else None, body.reused,
                      list(run.warnings.skipped), options.protect, run.notices,
                      named_full=plan.named_full(settings, options),
                      timestamp=manifest["timestamp"], name=manifest["name"],
                      type=manifest["type"])


def _begin(run: _Pack) -> None:
    """Step 1: keys, store, the archive's id and upload (nothing written yet)."""
    settings, options = run.settings, run.options
    secrets = recipients.load_secrets(settings.backup, settings.key_dir, run.environ,
                                      run.warnings, settings.parallel)
    if options.archive_type == "pre-restore":
        # A machine that opens archives with an X25519 identity alone seals the secrets of
        # its safety archive to that identity: else it could not save them (and a restore
        # that replaces them would not start).
        secrets = recipients.sealing_to_identities(secrets)
    run.secrets = secrets
    if plan.encrypts(settings, options) and not secrets.can_encrypt:
        _own_identity(run)          # (no archive at all would be the worst outcome)
    run.secrets = recipients.start_passphrase_kdf(run.secrets)     # runs beside the walk
    run.catalogue = build_catalogue(settings.backup.get("targets", {}), options.targets,
                                    settings.backup.get("exclude", ()), places_of(settings),
                                    paths=options.paths)
    run.key, run.key_created = signing.load_or_generate(settings.key_dir)
    run.store = open_store(settings)
    run.store.ensure()
    run.cleaned = leftovers.clean(run.store)
    run.archive_id = new_archive_id(run.now)
    run.upload = run.store.begin(run.archive_id)


def _walk(run: _Pack) -> None:
    """Step 2: the walk, with what runs beside it."""
    settings, parallel = run.settings, run.parallel
    run.parent_reader = parallel.executor("parent")
    # The parent is read beside the walk: its index mostly by the index's helper, on the
    # other core.  Not with a passphrase: its Argon2id would run beside the pack's own.
    if _parent_beside_walk(run):
        run.parent_read = run.parent_reader.submit(_read_parent, run,
                                                   parallel.tuning.parent_index_share)
        run.parent_read.add_done_callback(
            lambda read: _parent_known(run, None if read.cancelled() or read.exception()
                                       else read.result()))
    # Each database's snapshot copy starts as soon as the walk finds it; the body takes it.
    # An incremental first asks whether the parent's capture stands for it (the copy
    # waits for the parent's facts for that).
    unchanged = None
    if plan.chained(settings, run.options) and not run.options.check_content \
            and parallel.tuning.facts_cache:
        unchanged = lambda path, source: unchanged_capture(  # noqa: E731
            run.parent_known.result(), path, source)
    run.snapshots = SnapshotSession(settings.root, run.store.local_dir,
                                    settings.backup.get("databaseCheck") == "full", parallel,
                                    unchanged)
    skip = (settings.store, settings.key_dir)
    # A directory of many files is walked by a helper beside this walk; not beside an
    # incremental's parent reading (the index's helper has that core), nor for some paths
    # (a partial restore's safety archive: its walk passes over the rest).
    if parallel.shares and not plan.chained(settings, run.options) \
            and run.options.paths is None:
        run.subtree = SubtreeHelper.start(settings.root, run.catalogue, parallel, skip,
                                          run.store.local_dir)
    for path in database_candidates(settings.root, run.catalogue, skip):
        run.snapshots.start(path)       # the largest first, before the walk gets there
    # An incremental compares plain files' lstat facts with its parent's cached ones.
    stat_facts = plan.chained(settings, run.options) and not run.options.check_content
    run.walked, run.subtree = walk_installation(settings.root, run.catalogue, run.warnings,
                                                skip, run.snapshots.start, run.subtree,
                                                stat_facts)


def _parent_known(run: _Pack, parent) -> None:
    """The parent is known (or there is none, or the pack failed): the database copies
    waiting for it go on (``SnapshotSession``)."""
    with contextlib.suppress(InvalidStateError):
        run.parent_known.set_result(parent)


def _parent_beside_walk(run: _Pack) -> bool:
    return plan.chained(run.settings, run.options) and run.secrets.passphrase is None


def _read_parent(run: _Pack, index_share: float | None):
    _, max_incrementals = plan.incremental_settings(run.settings)
    # --check-content compares digests, which only the index's full records carry
    use = run.parallel.tuning.facts_cache and not run.options.check_content
    key = facts.key_of(run.key) if use else None
    return find_parent(run.settings, run.store, sealed_whole=plan.encrypts(run.settings,
                                                                           run.options),
                       warnings=run.parent_warnings, max_incrementals=max_incrementals,
                       index_share=index_share, facts_key=key)


def _own_identity(run: _Pack) -> None:
    """Nothing configured can seal: seal to this machine's own identity (crypto.identity),
    created on first use, and say so once, plainly."""
    key_dir = run.settings.key_dir
    secrets = run.secrets
    if not secrets.identities:
        own, created = identity.ensure(key_dir)
        secrets = replace(secrets, identities=(own,))
        if created:
            run.notices.append(Message(N_(
                "created the encryption identity {path}: secret files{whole} are sealed to "
                "it, and only it opens them; copy it off this machine now (poppoarc keygen "
                "--export=FILE), or a lost machine takes them along"),
                path=str(key_dir / recipients.IDENTITY_NAME),
                whole=Message(N_(" and whole archives")) if plan.encrypts(
                    run.settings, run.options) else ""))
    run.secrets = recipients.sealing_to_identities(secrets)


def _seal(run: _Pack) -> None:
    """Step 3: what is sealed, and the data key wrapped for every recipient."""
    if run.walked.secrets and not run.secrets.can_encrypt:
        _own_identity(run)          # secrets are always kept
    run.scope = plan.scope(plan.encrypts(run.settings, run.options), run.secrets.can_encrypt,
                           bool(run.walked.secrets))
    if run.scope == "archive" and identity.sealed_only_here(run.settings.key_dir,
                                                             run.secrets):
        run.warnings.add(Message(N_(
            "this archive opens only with the identity {path}, which exists only on this "
            "machine (never exported): losing the machine loses every backup; run poppoarc "
            "keygen --export=FILE"), path=str(run.settings.key_dir / recipients.IDENTITY_NAME)))
    if run.scope:
        data_key = recipients.new_data_key()
        run.encryption = {"scheme": ENCRYPTION_SCHEME, "scope": run.scope,
                          "chunk_size": CHUNK_SIZE,
                          "recipients": recipients.wrap(data_key, run.archive_id, run.secrets)}
        run.sealer = Sealer(data_key, run.archive_id)


def _parent(run: _Pack) -> None:
    """Step 4: the parent of an incremental (read beside the walk, or now), or None."""
    if run.parent_read is not None:
        run.parent = run.parent_read.result()
    elif plan.chained(run.settings, run.options):
        run.parent = _read_parent(run, None)
    _parent_known(run, run.parent)
    for warning in run.parent_warnings:
        run.warnings.add(warning)


def _secrets(run: _Pack) -> None:
    """Step 5: secret files are archived only sealed; without a key each is named."""
    walked = run.walked
    if run.sealer is not None:
        added = add_secrets(run.settings.root, walked.entries, walked.secrets, run.warnings)
        walked.target_bytes["security"] = walked.target_bytes.get("security", 0) + added
        return
    for rel in walked.secrets:
        run.warnings.skip(rel, "secret file not archived: secrets are stored only "
                               "encrypted and no key is configured (POPPO_BACKUP_KEY or "
                               "backup.storage.recipients)")


def _write_body(run: _Pack) -> None:
    """Step 6: the body, from the walk's records (which the body holds from now on)."""
    settings, options = run.settings, run.options
    level = plan.level(run.scope)
    sealing = None if run.sealer is None else Sealing(
        run.sealer, run.scope == "archive", frozenset(run.walked.secrets),
        int(run.now.timestamp()) * 10**9)
    body_plan = BodyPlan(sealing, run.parent, options.check_content,
                         block_digests=plan.in_chains(settings, options),
                         keep_damaged_databases=options.archive_type == "pre-restore",
                         share_level=level if run.parallel.shares else None,
                         scratch_dir=run.store.local_dir, parallel=run.parallel)
    if plan.keeps_facts(settings, options) and run.parallel.tuning.facts_cache:
        run.facts = facts.PendingFacts.start(settings, facts.key_of(run.key), run.archive_id)
    run.body = Body(settings.root, run.catalogue.selected, run.warnings, run.progress,
                    body_plan, run.walked, run.snapshots, run.subtree,
                    facts=run.facts.writer if run.facts else None)
    run.references = _references(run)
    dotenv = dotenv_names_of(settings.root, run.walked.secrets)
    env_doc = environment_document(run.environ, settings.env_prefixes, settings.mask_patterns,
                                   dotenv)
    run.head_size = plan.head_size(settings.root, run.walked.databases, run.references)
    run.walked.entries = None       # the body holds the walk's records now
    run.writer = BodyWriter(run.upload, run.head_size, level=level,
                            threads=run.parallel.compression_threads)
    note = note_member(run.archive_id, run.parent.reference(), int(run.now.timestamp())) \
        if run.parent is not None else None
    run.body.write_body(run.writer, env_doc, run.now, note)


def _emptied(run: _Pack) -> None:
    """A selected target with no file, that had files in the store's newest archive, is
    named: a directory moved or a disk not mounted makes an empty backup that succeeds."""
    empty = [name for name, facts in run.body.targets.items() if facts["files"] == 0]
    if not empty or run.options.archive_type == "pre-restore":
        return
    previous = next((row for row in list_archives(run.settings, run.store)
                     if row.status == "ok" and row.type != "pre-restore"
                     and row.target_files is not None), None)
    for name in empty:
        before = previous.target_files.get(name, 0) if previous is not None else 0
        if before:
            run.warnings.add(Message(N_(
                "target {target} is empty now, and the previous archive {id} has {count} "
                "file(s) of it: is a directory gone or a disk not mounted?"),
                target=name, id=previous.id, count=before))


def _references(run: _Pack) -> list[dict]:
    """The certificates the installation refers to, described (never archived)."""
    found = run.walked.references
    references = [describe_reference(str(run.settings.root / rel), rel)
                  for rel in found[:plan.MAX_REFERENCES]]
    if len(found) > plan.MAX_REFERENCES:
        run.warnings.add(f"only the first {plan.MAX_REFERENCES} certificate references "
                         "recorded")
    return references


def _finish(run: _Pack, monotonic):
    """Step 7: the index and the signed manifest written, the upload committed."""
    settings, options, body = run.settings, run.options, run.body
    fields = {
        "version": installation_version(settings.root),
        "tool": {"name": "poppoarc", "version": __version__},
        "type": options.archive_type, "name": options.name, "incremental": run.parent is not None,
        "parent": run.parent.reference() if run.parent else None,
        # a root path that is not UTF-8 is written as the warnings print it (\xNN)
        "host": printable(socket.gethostname()), "root": printable(str(settings.root)),
        "targets": body.targets, "databases": body.databases,
        "certificates": run.references, "encryption": None, "files": body.files,
        "duration": int((monotonic() - run.started) * 1000),
    }
    areas = recorded_areas(run.catalogue)
    if areas:       # (spec §5.2: only an archive with a custom target records areas)
        fields["areas"] = areas
    manifest = finish_archive(run.upload, run.writer, archive_id=run.archive_id, now=run.now,
                              entries=body.index, fields=fields, warnings=list(run.warnings),
                              key=run.key, head_size=run.head_size, level=plan.level(run.scope),
                              encryption=run.encryption, sealer=run.sealer)
    stored = run.upload.commit()
    if run.facts is not None:
        run.facts.commit(manifest["layout"]["index_sha256"])
        run.facts = None
    return manifest, stored


def _close(run: _Pack) -> None:
    """After success or failure: what ran beside the pack stops, temporaries go."""
    _parent_known(run, None)            # (a copy waiting for it must not wait forever)
    if run.parent_reader is not None:   # after a failure, what it read goes unused
        run.parent_reader.shutdown(wait=True)
    if run.subtree is not None:         # (the body has closed it, unless it failed first)
        run.subtree.close()
    if run.snapshots is not None:
        run.snapshots.close()
    if run.body is not None:
        run.body.index.close()
    if run.facts is not None:           # the pack failed: no cache for it
        run.facts.abort()
