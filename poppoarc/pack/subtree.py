"""The directories of one target walked, and mostly packed, by a helper from the start of
a pack.

With a share (``share.py``) the body of a pack runs on both cores, but the walk before it
ran on one (an ``lstat`` and a claim per path).  When every include
pattern of one target names a directory literally (``state/**``: ``state``; agents:
``data/ccla``, ``data/ccag``, ...) and those directories hold many entries, a helper
process walks them while this process walks the rest of the tree:

1. The helper walks each directory exactly as the whole walk would (``Walk.run`` with
   ``within``), spools the target's records, and reports everything else it found there
   (records of other targets, shared parent directories, databases, secrets,
   certificate references, warnings).  Then it waits.
2. This process merges that into its own walk (which left the directories out), so the
   pack sees what one walk would have given; the target's records stay in the helper's
   spool.  If the helper fails before its report, this process walks the whole tree again.
3. When the body begins, this process tells the helper its share (``helper_plan``):
   its own target's records from some record on, read from its spool; or, when another
   target holds most of the work, that target's last records, written for it here.  With
   the data key when the archive is encrypted.  From there it is a ``share.Share``,
   spliced in at the target's place in the same way, with the same fallback (the
   records it was given, written here).

The archive holds the same members and records, in the same order, as a pack in one
process writes.  In serial mode the helper's walk runs in this process when its report
is asked for (step 2), and its share when its answer is: the same archive again.
"""

from __future__ import annotations

import os
import stat
import tempfile
from itertools import islice

from ..errors import Warnings
from ..format.order import in_target_order
from ..format.records import read_chunks, write_chunks
from ..parallel import Parallelism, Tuning
from ..snapshot.catalogue import STORE, Catalogue, Rule
from ..snapshot.scan import FILE, Walk, is_plain, record_fields, record_from_fields
from .share import NOT_HELPED, NotForHelper, Share, choose_share, pack_share, share_time, \
    write_helper_records


def literal_directories(patterns: tuple[str, ...]) -> tuple[str, ...] | None:
    """The directories the patterns name literally before their first wildcard
    (``state/**``: ``state``; ``data/ccla/**`` and ``data/ccla/x/*.json``: ``data/ccla``),
    none inside another, in the order their contents sort; None if a pattern names none."""
    found = []
    for pattern in patterns:
        literal = []
        for part in pattern.split("/")[:-1]:    # the last part names entries
            if part in ("", ".", "..") or any(ch in part for ch in "*?["):
                break
            literal.append(part)
        if not literal:
            return None
        found.append("/".join(literal))
    outermost = {d for d in found if not any(d.startswith(o + "/") for o in found)}
    return tuple(sorted(outermost, key=lambda d: d + "/"))


def candidates(catalogue: Catalogue) -> list[tuple[str, tuple[str, ...]]]:
    """(target, directories) for each selected target whose rules only store paths, all
    in literally named directories; the targets the body writes last first (the
    helper's part is spliced in at its target's place, so a late target keeps this
    process busy meanwhile).  Not config (``share.NOT_HELPED``)."""
    found = []
    for target in reversed(in_target_order(catalogue.selected)):
        rules = [rule for rule in catalogue.rules if rule.target == target]
        if target not in catalogue.selected or target in NOT_HELPED or not rules \
                or any(rule.action != STORE for rule in rules):
            continue
        directories = literal_directories(tuple(p for rule in rules for p in rule.include))
        if directories:
            found.append((target, directories))
    return found


def count_entries(paths, cap: int) -> int:
    """Entries below ``paths`` (not following symbolic links), counted up to ``cap``."""
    count, pending = 0, list(paths)
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


def choose_directories(root: str, catalogue: Catalogue, skip=(),
                       min_entries: int = Tuning.subtree_min_entries
                       ) -> tuple[str, tuple[str, ...]] | None:
    """(target, directories) for a helper's walk, or None: those of a candidate's
    directories that the walk would enter (real directories, no symbolic link on the way
    from the root, neither they nor one above them skipped), if they hold
    ``min_entries`` or more (``Tuning.subtree_min_entries``: then their walk takes about
    as long as a helper's start)."""
    skip_real = {os.path.realpath(p) for p in skip}
    root_real = os.path.realpath(root)
    for target, directories in candidates(catalogue):
        real = []
        for directory in directories:
            path = os.path.join(root, directory)
            try:
                if not stat.S_ISDIR(os.lstat(path).st_mode):
                    continue
            except OSError:
                continue
            resolved = os.path.realpath(path)
            above = [directory[:at] for at, ch in enumerate(directory) if ch == "/"]
            if resolved == os.path.join(root_real, directory) and not any(
                    os.path.realpath(os.path.join(root, each)) in skip_real
                    or not catalogue.worth_descending(each) for each in above + [directory]):
                real.append(directory)      # the walk would meet it, and enter it
        if real and count_entries([os.path.join(root, d) for d in real],
                                  min_entries) >= min_entries:
            return target, tuple(real)
    return None


def helper_plan(work: list[tuple[str, int, int, bool]], own: str | None,
                linked: bool, tuning: Tuning) -> tuple[str, int] | None:
    """What the helper that walked ``own``'s directories packs: (target, first), or None.

    The share of any target that shortens the pack most, cut as ``share.choose_share``
    cuts one but with no start and no minimum saving: the helper runs already.  Its own target's records are in its spool; another's (agents' 80,000
    records beside 20,000 in ``state/``) this process writes for it.  With hard links
    in its own target it packs all of it or none: a link's first record must be packed
    by the process that packs the link.  ``work``: (target, records, content bytes, may
    be helped) in body order; ``own`` None: its spool is not the target's records
    (``SubtreeHelper.aligned``), so any share is written for it.
    """
    cut = [(target, records, size, helpable and not (target == own and linked))
           for target, records, size, helpable in work]
    plan = choose_share(cut, tuning, start=0, min_records=tuning.subtree_min_share, saving=0)
    if own is not None and linked:
        records, size = next((r, b) for t, r, b, _ in work if t == own)
        if records >= tuning.subtree_min_share and size <= tuning.share_max_bytes and (
                plan is None or share_time(work, own, 0, 0) < share_time(work, *plan, 0)):
            plan = (own, 0)
    return plan


_REPORTED = {"records", "linked", "found", "bytes", "references", "secrets", "databases",
             "warnings", "skipped", "links"}


class SubtreeHelper:
    """The helper of one pack, its files, and the merge of its walk."""

    def __init__(self, target: str, directories: tuple[str, ...], helper, files: list):
        self.target, self.directories = target, directories
        self._helper = helper
        self._records, self._foreign, self._data, self._index, self._share = files
        self.linked = False     # the target has records of hard-linked files
        self.aligned = False    # the target's walk records are exactly the helper's, in order

    @classmethod
    def start(cls, root, catalogue: Catalogue, parallel: Parallelism, skip=(),
              scratch_dir=None) -> SubtreeHelper | None:
        """A helper walking the directories ``choose_directories`` picks; None when there
        are none or the helper cannot start."""
        tuning = parallel.tuning
        chosen = choose_directories(str(root), catalogue, skip, tuning.subtree_min_entries)
        if chosen is None:
            return None
        target, directories = chosen
        files: list = []
        try:
            for _ in range(5):
                files.append(tempfile.TemporaryFile(dir=scratch_dir, prefix=".poppoarc-helper-"))
            helper = parallel.helper(__name__, {
                "root": str(root), "directories": directories, "target": target,
                "skip": [str(p) for p in skip], "selected": list(catalogue.selected),
                "rules": [[r.target, r.action, list(r.include), list(r.exclude)]
                          for r in catalogue.rules], "excludes": list(catalogue.excludes),
                "files": [each.fileno() for each in files],
                # Its records are spooled for this process anyway: holding fewer before they
                # go to disk keeps the two processes' memory together near one's bound.
                "spill_at": tuning.subtree_spill_at}, files, keep_stdin=True)
            if helper is None:
                raise OSError("no helper process")
        except (OSError, ValueError):
            for each in files:
                each.close()
            return None
        return cls(target, directories, helper, files)

    def merge_into(self, walk: Walk) -> bool:
        """Wait for the helper's walk and merge it into ``walk``, which left its
        directories out; False (nothing merged, the helper stopped) if it failed."""
        report = self._helper.report()
        if report is None or not _REPORTED <= report.keys():
            self.close()
            return False
        result = walk.result
        # The target's records stay in the helper's spool (this process would hold them
        # all, ~150 bytes each, while it packs the targets before), read as they are packed.
        spool = os.fdopen(os.dup(self._records.fileno()), "rb")
        self.aligned = walk.adopt(self.target, spool, report["records"])
        if not self.aligned:        # this walk found records of the target too: in order
            spool.close()
            walk.merge(self.target, list(self._spooled()))
        foreign: dict = {}
        for chunk in read_chunks(self._foreign.fileno()):
            for target, fields in chunk:
                foreign.setdefault(target, []).append(record_from_fields(fields))
        for target, records in foreign.items():
            walk.merge(target, records)
        for target, size in report["bytes"].items():
            result.target_bytes[target] = result.target_bytes.get(target, 0) + size
        for name in ("references", "secrets", "databases", "links"):
            getattr(result, name).extend(report[name])
            getattr(result, name).sort()        # path order, as one walk lists them
        if walk.on_database is not None:
            for path in report["databases"]:
                walk.on_database(path)
        for message in report["warnings"]:
            walk.warnings.add(message)
        walk.warnings.skipped.extend(report["skipped"])
        for directory in report["found"]:
            walk.needs_parents_of(directory)
        self.linked = report["linked"]
        return True

    def _spooled(self):
        for chunk in read_chunks(self._records.fileno()):
            yield from map(record_from_fields, chunk)

    def share(self, target: str, first: int, level: int, sealing: dict | None,
              records=None) -> Share | None:
        """Tell the helper to pack ``target``'s records from ``first`` on: its own
        target's from its spool (when ``aligned``), or ``records`` (from ``first`` on),
        written for it here.  The running helper as a ``share.Share``; None (and the
        helper stopped) for a share it cannot take or a helper that can no longer be told."""
        own = target == self.target and self.aligned
        if not own:
            try:
                write_helper_records(records, self._share)
                self._share.flush()
            except (NotForHelper, OSError):     # a hard-linked file (see there); no room
                self.close()
                return None
        if not self._helper.tell({"target": target, "first": first, "from_spool": own,
                                  "level": level, "sealing": sealing}):
            self.close()
            return None
        return Share(target, first, self._records if own else self._share, self._helper,
                     self._data, self._index, None if sealing is None else sealing["index_base"],
                     spooled_from=0 if own else first)

    def close(self) -> None:
        self._helper.stop()
        for each in (self._records, self._foreign, self._data, self._index, self._share):
            each.close()


def run(spec: dict):
    """The helper: walk, report (what it yields), then pack the share it is told (what it
    returns: ``share.pack_share``'s summary), or nothing if it is not told one."""
    records_fd, foreign_fd, data_fd, index_fd, share_fd = spec["files"]
    catalogue = Catalogue(tuple(Rule(t, a, tuple(i), tuple(e)) for t, a, i, e in spec["rules"]),
                          tuple(spec["selected"]), tuple(spec["excludes"]))
    warnings = Warnings()
    walk = Walk(spec["root"], catalogue, warnings, skip=tuple(spec["skip"]), compact=True,
                spill_at=spec["spill_at"])
    # in the order their contents sort: each target's records come in path order
    found = [directory for directory in spec["directories"] if walk.run(within=directory)]
    result = walk.finish()
    groups, target = result.entries, spec["target"]
    linked = []         # one pass over the target's records (past the spill, from disk)

    def target_fields():
        for record in groups.group(target):
            if not is_plain(record) and record.kind == FILE and not linked:
                linked.append(True)     # a hard-linked file keeps a full compact record
            yield record_fields(record)

    with open(records_fd, "wb", closefd=False) as out:
        write_chunks(out, target_fields())
    with open(foreign_fd, "wb", closefd=False) as out:
        write_chunks(out, ((name, record_fields(record)) for name in groups.names()
                           if name != target for record in groups.group(name)))
    report = {"records": groups.count(target), "linked": bool(linked), "found": found,
              "bytes": result.target_bytes, "references": result.references,
              "secrets": result.secrets, "databases": result.databases,
              "warnings": list(warnings), "skipped": warnings.skipped, "links": result.links}
    groups.close()
    told = yield report
    if told is None:
        return None         # not wanted: the pack writes the target itself
    if told["from_spool"]:              # its own target's records, from the walk
        records = islice((record_from_fields(fields) for chunk in read_chunks(records_fd)
                          for fields in chunk), told["first"], None)
    else:                               # a share written for it
        records = (record_from_fields(fields) for chunk in read_chunks(share_fd)
                   for fields in chunk)
    return pack_share({"root": spec["root"], "target": told["target"], "level": told["level"],
                       "sealing": told["sealing"], "data": data_fd, "index": index_fd},
                      records)
