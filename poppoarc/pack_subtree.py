"""One directory of many files walked, and mostly packed, by a second process from the
start of a pack.

With ``pack_helper`` the body of a pack runs on both cores, but the walk before it ran
on one: 100,000 paths take ~0.5 s (an ``lstat`` and a claim each).  When every include
pattern of one target names the same directory literally (``state/**``: ``state``) and
that directory holds many entries, a helper process walks it while this process walks
the rest of the tree:

1. The helper walks the directory exactly as the whole walk would (``Walk.run`` with
   ``within``), spools the target's records, and reports everything else it found there
   (records of other targets, shared parent directories, databases, secrets,
   certificate references, warnings).  Then it waits.
2. This process merges that into its own walk (which left the directory out), so the
   pack sees what one walk would have given.  If the helper fails before its report,
   this process walks the directory itself.
3. At the target's place in the body, this process packs the target's first records
   and tells the helper from which record on to pack the rest, with the data key when
   the archive is encrypted: from there it is ``pack_helper``'s share, spliced in the
   same way, with the same fallback (the helper's spooled records, written here).

The archive holds the same members and records, in the same order, as a pack in one
process writes.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
from itertools import islice

from . import helper_process
from .errors import Warnings
from .format.order import TARGETS
from .format.records import CHUNK, read_chunks, write_chunk
from .pack_helper import MAX_BYTES, TargetHelper, pack_share
from .snapshot.catalogue import STORE, Catalogue, Rule
from .snapshot.scan import FILE, Walk, record_fields, record_from_fields

# A directory is worth a process from this many entries (files and directories) on: its
# walk then takes ~0.1 s, the helper's start (beside this process's walk) ~0.07 s.
MIN_ENTRIES = 20000
MIN_SHARE = 2000        # fewer records are packed here rather than sent to the helper


def literal_directory(patterns: tuple[str, ...]) -> str | None:
    """The deepest directory every pattern names literally before its first wildcard
    (``state/**`` and ``state/locks/*.json``: ``state``), or None."""
    common: list[str] | None = None
    for pattern in patterns:
        parts = pattern.split("/")[:-1]     # the last part names entries, not a directory
        literal = []
        for part in parts:
            if part in ("", ".", "..") or any(ch in part for ch in "*?["):
                break
            literal.append(part)
        if common is None:
            common = literal
        else:
            same = 0
            while same < min(len(common), len(literal)) and common[same] == literal[same]:
                same += 1
            common = common[:same]
    return "/".join(common) if common else None


def candidates(catalogue: Catalogue) -> list[tuple[str, str]]:
    """(target, directory) for each selected target whose rules only store paths, all in
    one literally named directory; the targets the body writes last first (the helper's
    part is spliced in at its target's place, so a late target keeps this process busy
    meanwhile)."""
    found = []
    for target in reversed(TARGETS):
        rules = [rule for rule in catalogue.rules if rule.target == target]
        if target not in catalogue.selected or not rules \
                or any(rule.action != STORE for rule in rules):
            continue
        directory = literal_directory(tuple(p for rule in rules for p in rule.include))
        if directory is not None:
            found.append((target, directory))
    return found


def count_entries(path: str, cap: int) -> int:
    """Entries below ``path`` (not following symbolic links), counted up to ``cap``."""
    count, pending = 0, [path]
    while pending and count < cap:
        try:
            with os.scandir(pending.pop()) as children:
                for child in children:
                    count += 1
                    if child.is_dir(follow_symlinks=False):
                        pending.append(child.path)
        except OSError:
            continue
    return min(count, cap)


def choose_directory(root: str, catalogue: Catalogue, skip=()) -> tuple[str, str] | None:
    """The (target, directory) for a helper's walk, or None: a real directory (no
    symbolic link on its way from the root, not skipped) of at least ``MIN_ENTRIES``."""
    skip_real = {os.path.realpath(p) for p in skip}
    root_real = os.path.realpath(root)
    for target, directory in candidates(catalogue):
        path = os.path.join(root, directory)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
        except OSError:
            continue
        real = os.path.realpath(path)
        if real != os.path.join(root_real, directory) or real in skip_real:
            continue        # the walk would not enter it (a symbolic link on the way)
        if count_entries(path, MIN_ENTRIES) >= MIN_ENTRIES:
            return target, directory
    return None


def helper_first(work: list[tuple[str, int, int]], target: str, linked: bool) -> int | None:
    """From which of ``target``'s records on the helper packs, or None: none (this
    process packs them all).  ``work``: (target, records, content bytes) in body order.

    The helper has walked already; it packs its share while this process packs the
    targets before it and the target's first records, so the share is cut to make both
    sides equally long (``pack_helper.choose_share`` without the start).  With hard
    links in the target the helper packs all of it: a link's first record must be
    packed by the process that packs the link.
    """
    before = 0
    for name, records, size in work:
        if name == target:
            share = records if linked else min(records, (before + records) // 2)
            if size and share * size > MAX_BYTES * records:     # content roughly pro rata
                if linked:
                    return None
                share = MAX_BYTES * records // size
            return records - share if share >= MIN_SHARE else None
        before += records
    return None


_REPORTED = {"records", "linked", "found", "bytes", "references", "secrets", "databases",
             "warnings"}


class SubtreeHelper:
    """The helper process of one pack, its files, and the merge of its walk."""

    def __init__(self, root: str, target: str, directory: str, process, files: list):
        self.root, self.target, self.directory = root, target, directory
        self._process = process
        self._records, self._foreign, self._data, self._index = files
        self.linked = False     # the target has records of hard-linked files
        self.aligned = False    # the target's walk records are exactly the helper's, in order

    @classmethod
    def start(cls, root, catalogue: Catalogue, skip=(), scratch_dir=None) -> SubtreeHelper | None:
        """A helper walking the directory ``choose_directory`` picks; None when there is
        none or the helper cannot start."""
        chosen = choose_directory(str(root), catalogue, skip)
        if chosen is None:
            return None
        target, directory = chosen
        files: list = []
        try:
            for _ in range(4):
                files.append(tempfile.TemporaryFile(dir=scratch_dir, prefix=".poppoarc-helper-"))
            process = helper_process.start(__name__, {
                "root": str(root), "directory": directory, "target": target,
                "skip": [str(p) for p in skip], "selected": list(catalogue.selected),
                "rules": [[r.target, r.action, list(r.include), list(r.exclude)]
                          for r in catalogue.rules], "excludes": list(catalogue.excludes),
                "files": [each.fileno() for each in files]}, files, keep_stdin=True)
        except (OSError, ValueError):
            for each in files:
                each.close()
            return None
        return cls(str(root), target, directory, process, files)

    def merge_into(self, walk: Walk) -> bool:
        """Wait for the helper's walk and merge it into ``walk``, which left its directory
        out; False (nothing merged) if the helper failed: walk the directory here."""
        report = helper_process.read_report(self._process)
        if report is None or not _REPORTED <= report.keys():
            self.close()
            return False
        result = walk.result
        self.aligned = result.entries.count(self.target) == 0
        walk.merge(self.target, self._spooled())
        foreign: dict = {}
        for chunk in read_chunks(self._foreign.fileno()):
            for target, fields in chunk:
                foreign.setdefault(target, []).append(record_from_fields(fields))
        for target, records in foreign.items():
            walk.merge(target, records)
        for target, size in report["bytes"].items():
            result.target_bytes[target] = result.target_bytes.get(target, 0) + size
        for name in ("references", "secrets", "databases"):
            getattr(result, name).extend(report[name])
            getattr(result, name).sort()        # path order, as one walk lists them
        if walk.on_database is not None:
            for path in report["databases"]:
                walk.on_database(path)
        for message in report["warnings"]:
            walk.warnings.add(message)
        if report["found"]:
            walk.needs_parents_of(self.directory)
        self.linked = report["linked"]
        return True

    def _spooled(self):
        for chunk in read_chunks(self._records.fileno()):
            yield from map(record_from_fields, chunk)

    def share(self, first: int | None, level: int, sealing: dict | None) -> TargetHelper | None:
        """Tell the helper to pack the target's records from ``first`` on: the running
        helper as a ``TargetHelper``; None (and the helper stopped) for ``first`` None or
        a helper that can no longer be told."""
        if first is None or not self.aligned or not helper_process.tell(
                self._process, {"first": first, "level": level, "sealing": sealing}):
            self.close()
            return None
        return TargetHelper(self.target, first, self._records, self._process, self._data,
                            self._index, None if sealing is None else sealing["index_base"])

    def close(self) -> None:
        helper_process.stop(self._process)
        for each in (self._records, self._foreign, self._data, self._index):
            each.close()


def run(spec: dict) -> int:
    """The helper process: walk, report, then pack the share it is told (or nothing)."""
    records_fd, foreign_fd, data_fd, index_fd = spec["files"]
    catalogue = Catalogue(tuple(Rule(t, a, tuple(i), tuple(e)) for t, a, i, e in spec["rules"]),
                          tuple(spec["selected"]), tuple(spec["excludes"]))
    warnings = Warnings()
    walk = Walk(spec["root"], catalogue, warnings, skip=tuple(spec["skip"]), compact=True)
    walk.run(within=spec["directory"])
    result = walk.finish()
    groups, target = result.entries, spec["target"]
    linked = False
    with open(records_fd, "wb", closefd=False) as out:
        chunk = []
        for record in groups.group(target):
            linked = linked or (type(record) is not tuple and record.kind == FILE)
            chunk.append(record_fields(record))
            if len(chunk) == CHUNK:
                write_chunk(out, chunk)
                chunk = []
        if chunk:
            write_chunk(out, chunk)
    with open(foreign_fd, "wb", closefd=False) as out:
        chunk = []
        for name in (None, *TARGETS):
            if name == target:
                continue
            for record in groups.group(name):
                chunk.append((name, record_fields(record)))
                if len(chunk) == CHUNK:
                    write_chunk(out, chunk)
                    chunk = []
        if chunk:
            write_chunk(out, chunk)
    helper_process.report({
        "records": groups.count(target), "linked": linked, "found": len(groups) > 0,
        "bytes": result.target_bytes, "references": result.references,
        "secrets": result.secrets, "databases": result.databases,
        "warnings": list(warnings)})
    groups.close()
    line = sys.stdin.buffer.readline()
    if not line:
        return 0            # not wanted: this process packs the target itself
    told = json.loads(line)
    records = (record_from_fields(fields) for chunk in read_chunks(records_fd)
               for fields in chunk)
    return pack_share({"root": spec["root"], "target": target, "level": told["level"],
                       "sealing": told["sealing"], "data": data_fd, "index": index_fd},
                      islice(records, told["first"], None))
