"""A target's share: its last records packed by a helper, and spliced in at their place.

Packing many small files is bound by Python's work per file (open, fstat, read, close,
a tar header and an index record), which runs on one core while the other waits.
Every target is a frame group of its own (spec/FORMAT.md §4.1), so part of one can be
written apart: a helper packs a target's plain files, directories and symbolic links
from some record on into temporary files (its zstd frames and its index records) while
this process packs the targets before it and the target's first records; ``splice``
then copies them in at their place.  The archive holds the same members and records,
in the same order, as a pack without a share.

Where the helper runs is the parallelism's choice (``Parallelism.helper``): a second
process, or this one when the share's answer is wanted (serial); how the target is cut
(``choose_share``) is not, so both write the same archive, byte for byte.

In an encrypted archive every sealed object is bound to its record's index position
(§11.3), so the helper is told where its records will start (one record per walk record
before its share) and gets the data key in its spec (a pipe, never a file or argv).  If a
record before the target went missing (a file deleted meanwhile), the positions are off
and the helper's part is not used.

The helper only saves time.  If it cannot start or fails, the pack writes the target
itself from the records it gave the helper; a source file the helper cannot read is the
same error as without it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from itertools import islice

from ..errors import SourceError
from ..format.records import read_chunks, write_chunks
from ..format.writer import BodyWriter
from ..parallel import Tuning
from ..format.order import in_target_order
from ..snapshot.scan import DIR, SYMLINK, is_plain, record_fields, record_from_fields

# config ends with the generated environment member, which only the main process writes
# (``Body.write_body``): no helper takes config's records.
NOT_HELPED = frozenset({"config"})


def choose_share(work: list[tuple[str, int, int, bool]], tuning: Tuning,
                 start: int | None = None, min_records: int | None = None,
                 saving: float | None = None) -> tuple[str, int] | None:
    """What a helper should pack: (target, first), the target's records from position
    ``first`` on; None when no share would shorten the pack.

    ``work`` lists (target, records, content bytes, may be helped) in body order.
    This process packs the targets before it and the target's first records while
    the helper packs the rest, then copies the helper's part in and packs the
    targets after it: about ``max(before + first, share + start) + after``
    records' time (``share_time``), against ``before + records + after`` alone.  The
    share is cut so both sides take equally long, and is taken only if it saves
    ``saving`` of the time.  ``start``: the helper's start, in records (0 for one
    already running, which any saving is worth).  The cost model counts records: the
    per-file work is what one process does on one core, while content bytes are
    compressed on both cores by zstd's own workers either way, so they only bound what
    a helper may take (``tuning.share_max_bytes``).
    """
    start = tuning.share_start if start is None else start
    min_records = tuning.share_min_records if min_records is None else min_records
    saving = tuning.share_saving if saving is None else saving
    total = sum(records for _, records, _, _ in work)
    best, best_time = None, total * (1 - saving)
    before = 0
    for target, records, size, helpable in work:
        share = min(records, max(0, (before + records - start) // 2))
        if size and share * size > tuning.share_max_bytes * records:  # content pro rata
            share = tuning.share_max_bytes * records // size
        if helpable and share >= min_records:
            estimate = share_time(work, target, records - share, start)
            if estimate < best_time:
                best, best_time = (target, records - share), estimate
        before += records
    return best


def share_time(work: list[tuple], target: str, first: int, start: int) -> int:
    """The pack's time, in records, with a helper packing ``target`` from ``first`` on."""
    total = sum(each[1] for each in work)
    before = 0
    for name, records, *_ in work:
        if name == target:
            return max(before + first, records - first + start) + total - before - records
        before += records
    return total


def start(body, groups):
    """Hand part of a target to a helper when that shortens the pack: the one that walked
    the target's directory, if any (told its share now), else a new one.  The running
    ``Share``, or None."""
    subtree, body.subtree = body.subtree, None
    level = body.plan.share_level
    if level is None:
        if subtree is not None:
            subtree.close()
        return None
    tuning = body.plan.parallel.tuning
    work = [(t, groups.count(t), body.target_bytes.get(t, 0), t not in NOT_HELPED)
            for t in in_target_order(body.selected)]
    if tuning.plan is not None:         # fixed: (target, first), or () for none
        chosen = tuning.plan or None
    elif subtree is None:
        chosen = choose_share(work, tuning)
    else:
        from .subtree import helper_plan
        chosen = helper_plan(work, subtree.target if subtree.aligned else None,
                             subtree.linked, tuning)
    if chosen is None:
        if subtree is not None:
            subtree.close()
        return None
    target, first = chosen
    sealing = _sealing(body, groups, target, first)
    records = islice(groups.group(target), first, None)
    if subtree is not None:
        return subtree.share(target, first, level, sealing, records)
    return Share.start(body, target, first, records, level, sealing)


def _sealing(body, groups, target: str, first: int) -> dict | None:
    """What the helper needs to seal its records (an encrypted archive): the data key and
    where its records will start if every record before them is written (one per walk
    record, and the generated environment member; ``splice`` checks)."""
    if not body.seal_all:
        return None
    order = in_target_order(body.selected)
    before = order[:order.index(target)]
    base = len(body.index) + first + sum(groups.count(t) + (t == "config") for t in before)
    return {"key": body.sealer.data_key.hex(), "archive_id": body.sealer.archive_id,
            "mtime_ns": body.archive_mtime_ns, "index_base": base}


def splice(body, writer: BodyWriter, helper: Share,
           plain_path: bool) -> tuple[int, tuple[int, int]]:
    """The helper's share, after this process's first records of the target: its frames
    and index records copied in, or, if the helper failed, written here from the records
    it was given.  Returns its content bytes and the range of the target's whole frame
    group."""
    start_offset, _ = writer.end_frame()
    part = helper.result()
    if part is not None and helper.index_base not in (None, len(body.index)):
        part = None     # a record before it is missing: its sealed positions are off
    if part is None:
        size = body.write_records(writer, helper.target, helper.records(), plain_path)
        end = writer.end_frame()
    else:
        end = writer.add_frames(part.data, part.data_length)
        body.index.extend_encoded(part.index, part.entries)
        for message in part.warnings:
            body.warnings.add(message)
        body.warnings.skipped.extend(part.skipped)
        body.files += part.files
        body.bytes_done += part.size
        size = part.size
        if body.progress:
            body.progress(body.bytes_done, body.bytes_total, None)
    return size, (start_offset, end[0] + end[1] - start_offset)


@dataclass
class Part:
    """What a helper wrote: its frames and index records, read from the start."""

    data: object            # binary file
    data_length: int
    index: object           # binary file: ``entries`` index lines
    entries: int
    files: int
    size: int
    warnings: list[str]
    skipped: list[str]          # the paths among them it did not archive


class Share:
    """A running helper packing a share, and the temporary files it reads and writes."""

    def __init__(self, target: str, first: int, records, helper, data, index,
                 index_base: int | None = None, spooled_from: int = 0):
        self.target, self.first = target, first   # the target's records from ``first`` on
        self.index_base = index_base    # sealed: the index position its records start at
        self._records, self._helper, self._data, self._index = records, helper, data, index
        self._spooled_from = spooled_from   # the position of the records file's first record

    @classmethod
    def start(cls, body, target: str, first: int, records, level: int,
              sealing: dict | None = None) -> Share | None:
        """A helper for ``records`` (one target's walk records from position ``first`` on,
        index order); its temporary files go beside the archive when the store is local.
        ``sealing``: seal every file (an encrypted archive) with the data key, archive id
        and time given, from the index position given.

        None when the share holds a record only this process can write (a database,
        a file with hard links, a secret file) or the helper cannot start; the
        walk's records are then untouched.
        """
        files: list = []
        try:
            for _ in range(3):
                files.append(tempfile.TemporaryFile(dir=body.plan.scratch_dir,
                                                    prefix=".poppoarc-helper-"))
            records_file, data, index = files
            write_helper_records(records, records_file)
            records_file.flush()
            helper = body.plan.parallel.helper(__name__, {
                "root": body._root_text, "target": target, "level": level,
                "records": records_file.fileno(), "data": data.fileno(),
                "index": index.fileno(), "sealing": sealing}, files)
            if helper is None:
                raise OSError("no helper process")
        except (OSError, ValueError, NotForHelper):    # no room, no process: pack here
            for each in files:
                each.close()
            return None
        return cls(target, first, records_file, helper, data, index,
                   None if sealing is None else sealing["index_base"], spooled_from=first)

    def result(self) -> Part | None:
        """Wait for the helper: its part, or None if it failed (see ``records``).
        Raises ``SourceError`` for a source file it could not read."""
        summary = self._helper.answer()
        if summary is None:
            return None
        if "error" in summary:
            raise SourceError(summary["error"], path=summary["path"])
        data_length = self._data.seek(0, os.SEEK_END)
        if data_length != summary["data_length"]:
            return None
        self._data.seek(0)
        self._index.seek(0)
        return Part(self._data, data_length, self._index, summary["entries"],
                    summary["files"], summary["size"], summary["warnings"],
                    summary["skipped"])

    def records(self):
        """The records given to the helper, read back (a failed helper's share)."""
        return islice(_read_records(self._records.fileno()), self.first - self._spooled_from,
                      None)

    def close(self) -> None:
        self._helper.stop()
        for each in (self._records, self._data, self._index):
            each.close()


class NotForHelper(Exception):
    """The target holds a record the helper cannot write."""


def write_helper_records(records, out) -> None:
    """The records into ``out``, in the walk's spill format (``records.write_chunks``);
    ``NotForHelper`` at the first one a helper cannot write: it takes plain files,
    directories and symbolic links only."""
    write_chunks(out, map(_helper_fields, records))


def _helper_fields(record) -> tuple:
    if not is_plain(record) and record.kind not in (DIR, SYMLINK):
        raise NotForHelper
    return record_fields(record)


def _read_records(fd: int):
    for chunk in read_chunks(fd):
        yield from map(record_from_fields, chunk)


def run(spec: dict) -> dict:
    """The helper: pack the records; the summary ``Share.result`` reads."""
    return pack_share(spec, _read_records(spec["records"]))


def pack_share(spec: dict, records) -> dict:
    """Pack ``records`` (one target's, in index order) as ``spec`` says (root, target,
    level, sealing, the data and index files); the summary ``Share.result`` reads."""
    from ..crypto.sealer import Sealer
    from ..errors import Warnings
    from .body import Body
    from .bodyplan import BodyPlan, Sealing
    warnings = Warnings()
    target, sealing = spec["target"], spec["sealing"]
    if sealing is not None:
        sealing = Sealing(Sealer(bytes.fromhex(sealing["key"]), sealing["archive_id"]),
                          everything=True, mtime_ns=sealing["mtime_ns"],
                          index_base=sealing["index_base"])
    body = Body(spec["root"], (target,), warnings, plan=BodyPlan(sealing, block_digests=False))
    with open(spec["data"], "wb", closefd=False) as data:
        # sealing runs on a pool: one thread here, beside this process's two
        writer = BodyWriter(data, None, level=spec["level"], threads=1)
        try:
            size = body.write_records(writer, target, records, plain_path=sealing is None)
        except SourceError as exc:
            return {"error": exc.message, "path": exc.path}
        writer.end_frame()
        writer.close()
        data_length = writer.offset
    with open(spec["index"], "wb", closefd=False) as index:
        body.index.write_to(index)
    return {"data_length": data_length, "entries": len(body.index), "files": body.files,
            "size": size, "warnings": list(warnings), "skipped": warnings.skipped}
