"""``verify --all``: every archive of the store verified once, each result recorded.

Each archive gets the verdict ``verify ARCHIVE`` gives it.  Chains are read as chains:
for each newest archive of a chain, every member not verified yet is checked in one pass
over the chain (``chain.read_members``: each body read once, where verifying each
archive alone reads its ancestors again for every child).  When anything in that pass
fails, every member of the chain is verified alone (``verify_source``), so that each
gets its exact verdict; an archive whose key is not here is verified alone too (what
could not be checked is then listed, and it is not recorded).  Archives whose head is
unreadable are verified alone for their verdict; one of a format only a newer poppoarc
reads is skipped (named, not failed).  Complete checks are recorded in the store's
verification record (``verification.record_location``) for ``doctor``, local and S3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import EXIT_OK, EXIT_WARNING, ArchiveError, NoKey, PoppoarcError
from ..format import reader
from ..store import Store, leftovers, open_store, verified
from . import chain
from .listing import list_archives
from .opening import open_sealer, pinned_keys, read_checked_index
from .verification import VerifyResult, _VerifySink, record_location, verify_source

# verify --all with failures: the archive range's general code (docs/exit-codes.md)
EXIT_SOME_FAILED = 10


@dataclass
class ArchiveVerdict:
    id: str
    path: str
    status: str                         # ok | failed | skipped
    result: VerifyResult | None = None
    error: PoppoarcError | None = None  # failed: the error verify ARCHIVE raises
    reason: str | None = None           # skipped: why

    def to_json(self) -> dict:
        error = None if self.error is None else {
            "type": type(self.error).__name__, "message": str(self.error),
            "exit_code": self.error.exit_code}
        return {"id": self.id, "path": self.path, "status": self.status,
                "verified": self.result.to_json() if self.result else None,
                "error": error, "reason": self.reason}


@dataclass
class StoreVerifyResult:
    store: str
    archives: list[ArchiveVerdict] = field(default_factory=list)    # oldest first
    bodies_read: int = 0          # archive bodies streamed (each at most once, if all is well)
    record: str = ""              # where the results were recorded

    def count(self, status: str) -> int:
        return sum(1 for a in self.archives if a.status == status)

    @property
    def exit_code(self) -> int:
        if self.count("failed"):
            return EXIT_SOME_FAILED
        unfinished = any(a.result.not_checked for a in self.archives if a.result)
        return EXIT_WARNING if self.count("skipped") or unfinished else EXIT_OK

    def to_json(self) -> dict:
        return {"store": self.store, "ok": self.count("ok"), "failed": self.count("failed"),
                "skipped": self.count("skipped"),
                "recorded": sum(1 for a in self.archives if a.result and a.result.recorded),
                "record": self.record, "bodies_read": self.bodies_read,
                "archives": [a.to_json() for a in self.archives]}


def verify_store(settings: Settings, progress=None) -> StoreVerifyResult:
    store = open_store(settings)
    rows = {row.id: row for row in list_archives(settings, store)}
    catalog = {archive.id: archive for archive in store.catalog()}
    result = StoreVerifyResult(str(store), record=str(record_location(settings)))
    verdicts: dict[str, ArchiveVerdict] = {}
    good = [row for row in rows.values() if row.status == "ok" and row.id in catalog]
    for row in rows.values():
        if row.status == "newer":
            verdicts[row.id] = ArchiveVerdict(row.id, str(row.path), "skipped",
                                              reason=row.problem)
        elif row.status != "ok" or row.id not in catalog:
            verdicts[row.id] = _alone(settings, store, catalog.get(row.id), result,
                                      row.problem)
    parents = {row.parent for row in good if row.parent}
    oldest_first = sorted(good, key=lambda r: (r.timestamp or "", r.id))
    for tip in [row for row in oldest_first if row.id not in parents]:
        _verify_chain(settings, store, catalog, tip, verdicts, result, progress)
    for row in oldest_first:        # a member of a loop or of a chain no tip reaches
        if row.id not in verdicts:
            verdicts[row.id] = _alone(settings, store, catalog[row.id], result)
    result.archives = sorted(verdicts.values(), key=lambda v: (
        rows[v.id].timestamp or "", v.id))
    done = {v.id: v.result.checksum for v in result.archives
            if v.status == "ok" and not v.result.not_checked}
    failed = {v.id: str(v.error) for v in result.archives       # a missing key is no fault
              if v.status == "failed" and isinstance(v.error, ArchiveError)}
    if done or failed:
        recorded = verified.record_many(record_location(settings), done, set(catalog),
                                        failed=failed)
        for v in result.archives:
            if v.id in done:
                v.result.recorded = recorded
    return result


def _alone(settings, store: Store, archive, result: StoreVerifyResult,
           problem: str | None = None) -> ArchiveVerdict:
    """``verify ARCHIVE``'s verdict on one archive, its chain read for it."""
    path = str(archive.where)
    try:
        with store.open(archive) as source:
            result.bodies_read += 1
            verdict = verify_source(settings, source, archive.where, store=store)
    except PoppoarcError as exc:
        return ArchiveVerdict(archive.id, path, "failed", error=exc)
    except OSError as exc:      # a store that fails under one archive: that archive fails
        return ArchiveVerdict(archive.id, path, "failed", error=ArchiveError(
            f"cannot read: {exc.strerror or exc}", path=path))
    return ArchiveVerdict(archive.id, path, "ok", verdict)


def _verify_chain(settings, store: Store, catalog, tip, verdicts, result, progress) -> None:
    """Every member of ``tip``'s chain not verified yet, in one pass; alone on any fault."""
    pinned = pinned_keys(settings)
    try:
        with store.open(catalog[tip.id]) as source:
            head = reader.open_trusted(source, pinned, catalog[tip.id].where)
        links = chain.resolve(store, head, pinned)
    except ArchiveError:
        links, head = None, None
    if links is None:
        verdicts[tip.id] = _alone(settings, store, catalog[tip.id], result)
        return
    links.append(chain.Link(catalog[tip.id], catalog[tip.id].where, head))
    wanted = [link for link in links if link.id not in verdicts]
    try:
        verdicts.update(_one_pass(settings, store, links, {l.id for l in wanted}, result,
                                  progress))
        return
    except (ArchiveError, NoKey, _Alone):
        pass
    for link in wanted:             # each alone, for its exact verdict
        verdicts[link.id] = _alone(settings, store, link.archive, result)


class _Alone(Exception):
    """This chain cannot be read in one pass (a key is missing): each archive alone."""


def _one_pass(settings, store, links, wanted: set[str], result,
              progress) -> dict[str, ArchiveVerdict]:
    done = {}
    with leftovers.temporary_directory(leftovers.VERIFY_PREFIX) as workdir:
        members: list[chain.Member] = []
        sinks: dict[str, _VerifySink] = {}
        try:
            for number, link in enumerate(links):
                with store.open(link.archive) as source:
                    sealer = open_sealer(settings, link.head, link.path)
                    index = read_checked_index(settings, source, link.head, link.path, sealer)
                if index.entries is None:
                    raise _Alone()
                sink = None
                if link.id in wanted:       # its own directory: sinks name files alike
                    own = Path(workdir) / f"member-{number}"
                    own.mkdir(mode=0o700)
                    sink = _VerifySink(str(own), link.path)
                if sink is not None:
                    sinks[link.id] = sink
                members.append(chain.Member(link, index.entries, sealer, sink, Path(workdir)))
            unchecked, read = chain.read_members(members, store)
            result.bodies_read += read
            if unchecked:
                raise _Alone()
            for sink in sinks.values():
                sink.finish()
        finally:
            for member in members:
                member.close()
            for sink in sinks.values():
                sink.close()
        for number, member in enumerate(members):
            if member.consumer is None:
                continue
            link, entries = member.link, member.entries
            manifest = link.head.manifest
            if manifest["incremental"]:
                total = sum(e.size for e in entries if e.type == "file")
            else:
                total = sum(e.payload_size() for e in entries if e.type == "file")
            sink = sinks[link.id]
            verdict = VerifyResult(link.path, link.id, link.head.signer,
                                   manifest["layout"]["entries"], manifest["files"], total,
                                   sink.databases_checked, reader.scope(manifest),
                                   checksum=manifest["checksum"],
                                   chain=[m.link.id for m in members[:number]],
                                   changed=sink.changed)
            done[link.id] = ArchiveVerdict(link.id, str(link.path), "ok", verdict)
    return done
