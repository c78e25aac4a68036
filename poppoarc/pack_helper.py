"""One target of a pack written by a second process, so that both cores work.

Packing many small files is bound by Python's work per file (open, fstat, read,
close, a tar header and an index record: ~15 µs), which runs on one core while
the other waits.  Every target is a frame group of its own (spec/FORMAT.md
§4.1), so one can be written apart: a helper process packs a target's plain
files, directories and symbolic links into temporary files (its zstd frames and
its index records) while this process packs the targets before it; the pack then
copies them in at the target's place.  When one target holds most of the files,
the helper takes its last records and this process the first ones.  The archive
holds the same members and records, in the same order, as a pack in one process
writes.

In an encrypted archive every sealed object is bound to its record's index
position (§11.3), so the helper is told where its target's records will start
(one record per walk record before its share) and gets the data key over its stdin
pipe, as the KDF helper gets a passphrase (crypto/kdf.py).  If a record before
the target went missing (a file deleted meanwhile), the positions are off and
the helper's part is not used.

The helper only saves time.  If it cannot start or fails, the pack writes the
target itself from the records it gave the helper; a source file the helper
cannot read is the same error as without it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from itertools import islice

from . import helper_process
from .errors import SourceError
from .format.records import read_chunks, write_chunks
from .snapshot.scan import DIR, SYMLINK, record_fields, record_from_fields

# The cost model of ``choose_share`` counts records: the per-file work is what one
# process does on one core.  Content bytes are compressed on both cores by zstd's own
# workers either way (medium installation: a helper for 7,800 files of 106 MB gained
# nothing), so they only bound what a helper may take.
START_RECORDS = 8000        # the helper's start, an interpreter and its imports: ~0.1 s
MIN_RECORDS = 20000         # a smaller share is not worth a process
MAX_BYTES = 512 << 20       # its members pass through a temporary file: bounded
# config ends with the generated environment member, which only the main process writes
# (``PackJob.write_body``): no helper takes config's records.
NOT_HELPED = frozenset({"config"})

def choose_share(work: list[tuple[str, int, int, bool]], start: int = START_RECORDS,
                 min_records: int = MIN_RECORDS, saving: float = 0.2) -> tuple[str, int] | None:
    """What a helper should pack: (target, first), the target's records from position
    ``first`` on; None when no share would shorten the pack.

    ``work`` lists (target, records, content bytes, may be helped) in body order.
    This process packs the targets before it and the target's first records while
    the helper packs the rest, then copies the helper's part in and packs the
    targets after it: about ``max(before + first, share + start) + after``
    records' time (``share_time``), against ``before + records + after`` alone.  The
    share is cut so both sides take equally long, and is taken only if it saves a
    fifth (``saving``).  ``start``: the helper's start, in records (0 for one already
    running, which any saving is worth).
    """
    total = sum(records for _, records, _, _ in work)
    best, best_time = None, total * (1 - saving)
    before = 0
    for target, records, size, helpable in work:
        share = min(records, max(0, (before + records - start) // 2))
        if size and share * size > MAX_BYTES * records:     # content roughly pro rata
            share = MAX_BYTES * records // size
        if helpable and share >= min_records:
            estimate = share_time(work, target, records - share, start)
            if estimate < best_time:
                best, best_time = (target, records - share), estimate
        before += records
    return best


def share_time(work: list[tuple], target: str, first: int, start: int = START_RECORDS) -> int:
    """The pack's time, in records, with a helper packing ``target`` from ``first`` on."""
    total = sum(each[1] for each in work)
    before = 0
    for name, records, *_ in work:
        if name == target:
            return max(before + first, records - first + start) + total - before - records
        before += records
    return total


@dataclass
class HelperPart:
    """What a helper wrote: its frames and index records, read from the start."""

    data: object            # binary file
    data_length: int
    index: object           # binary file: ``entries`` index lines
    entries: int
    files: int
    size: int
    warnings: list[str]
    skipped: list[str]          # the paths among them it did not archive


class TargetHelper:
    """A running helper process and the temporary files it reads and writes."""

    def __init__(self, target: str, first: int, records, process: subprocess.Popen, data,
                 index, index_base: int | None = None, spooled_from: int = 0):
        self.target, self.first = target, first   # the target's records from ``first`` on
        self.index_base = index_base    # sealed: the index position its records start at
        self._records, self._process, self._data, self._index = records, process, data, index
        self._spooled_from = spooled_from   # the position of the records file's first record

    @classmethod
    def start(cls, root: str, target: str, first: int, records, level: int,
              scratch_dir=None, sealing: dict | None = None) -> TargetHelper | None:
        """Start a helper for ``records`` (one target's walk records from position
        ``first`` on, index order); its temporary files go to ``scratch_dir`` (None:
        the system's).  ``sealing``: seal every file (an encrypted archive) with the
        data key, archive id and time given, from the index position given.

        None when the share holds a record only this process can write (a database,
        a file with hard links, a secret file) or the helper cannot start; the
        walk's records are then untouched.
        """
        files: list = []
        try:
            for _ in range(3):
                files.append(tempfile.TemporaryFile(dir=scratch_dir, prefix=".poppoarc-helper-"))
            records_file, data, index = files
            write_helper_records(records, records_file)
            records_file.flush()
            process = helper_process.start(__name__, {
                "root": root, "target": target, "level": level,
                "records": records_file.fileno(), "data": data.fileno(),
                "index": index.fileno(), "sealing": sealing}, files)
        except (OSError, ValueError, NotForHelper):    # no room, no process: pack here
            for each in files:
                each.close()
            return None
        return cls(target, first, records_file, process, data, index,
                   None if sealing is None else sealing["index_base"], spooled_from=first)

    def result(self) -> HelperPart | None:
        """Wait for the helper: its part, or None if it failed (see ``records``).
        Raises ``SourceError`` for a source file it could not read."""
        summary = helper_process.answer(self._process)
        if summary is None:
            return None
        if "error" in summary:
            raise SourceError(summary["error"], path=summary["path"])
        data_length = self._data.seek(0, os.SEEK_END)
        if data_length != summary["data_length"]:
            return None
        self._data.seek(0)
        self._index.seek(0)
        return HelperPart(self._data, data_length, self._index, summary["entries"],
                          summary["files"], summary["size"], summary["warnings"],
                          summary["skipped"])

    def records(self):
        """The records given to the helper, read back (a failed helper's share)."""
        return islice(_read_records(self._records.fileno()), self.first - self._spooled_from,
                      None)

    def close(self) -> None:
        helper_process.stop(self._process)
        for each in (self._records, self._data, self._index):
            each.close()


class NotForHelper(Exception):
    """The target holds a record the helper cannot write."""


def write_helper_records(records, out) -> None:
    """The records into ``out``, in the walk's spill format (``records.write_chunks``);
    ``NotForHelper`` at the first one a helper cannot write: it takes plain files
    (tuples), directories and symbolic links only."""
    write_chunks(out, map(_helper_fields, records))


def _helper_fields(record) -> tuple:
    if type(record) is not tuple and record.kind not in (DIR, SYMLINK):
        raise NotForHelper
    return record_fields(record)


def _read_records(fd: int):
    for chunk in read_chunks(fd):
        yield from map(record_from_fields, chunk)


def run(spec: dict) -> int:
    """The helper process: pack the records, write the summary line to stdout."""
    return pack_share(spec, _read_records(spec["records"]))


def pack_share(spec: dict, records) -> int:
    """In a helper process: pack ``records`` (one target's, in index order) as ``spec``
    says (root, target, level, sealing, the data and index files) and reply with the
    summary ``TargetHelper.result`` reads."""
    from .errors import Warnings
    from .format.writer import BodyWriter
    from .pack_job import PackJob
    warnings = Warnings()
    target, sealing = spec["target"], spec["sealing"]
    if sealing is None:
        job = PackJob(spec["root"], (target,), None, warnings, None, None, block_digests=False)
    else:
        from .crypto.sealer import Sealer
        job = PackJob(spec["root"], (target,), None, warnings, None, None, block_digests=False,
                      sealer=Sealer(bytes.fromhex(sealing["key"]), sealing["archive_id"]),
                      seal_all=True, archive_mtime_ns=sealing["mtime_ns"],
                      index_base=sealing["index_base"])
    with open(spec["data"], "wb", closefd=False) as data:
        # sealing runs on a pool: one thread here, beside this process's two
        writer = BodyWriter(data, None, level=spec["level"], threads=1)
        try:
            size = job.write_records(writer, target, records, plain_path=sealing is None)
        except SourceError as exc:
            return helper_process.reply({"error": exc.message, "path": exc.path})
        writer.end_frame()
        writer.close()
        data_length = writer.offset
    with open(spec["index"], "wb", closefd=False) as index:
        job.index.write_to(index)
    return helper_process.reply({"data_length": data_length, "entries": len(job.index),
                                 "files": job.files, "size": size,
                                 "warnings": list(warnings), "skipped": warnings.skipped})
