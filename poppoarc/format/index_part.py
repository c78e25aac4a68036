"""A large index checked in two parts: a helper process takes the last part of its lines.

Checking one index line is Python's work (canonical JSON, the record's rules, its spooled
form), so a large index keeps one core busy before a verify, a restore or an incremental
pack can start on the body.  Lines are independent but for
the index's runs (``PathRules``: where the records' paths stop rising), which follow the
records in order.  So the helper checks each line of its part as ``decode_lines`` does, writes the
records it checked in ``IndexRecords``' spool form to a temporary file, and sends back
the ``PathRules.add`` calls they make (path, target, kind); this process checks the first
part meanwhile, then appends the helper's records and replays its calls after its own.
The result, and every error, is the same as one process reading every line:

* the helper reads the bytes this process already matched against the signed SHA-256
  (the same temporary file, by ``pread``);
* if it finds any fault, or fails in any way, its part is read again here, where the
  first fault raises exactly as it would have;
* only rules about paths remain for a part the helper passed, and they are checked
  here, in record order, by the replayed calls.

The helper runs in a second process only (``Parallelism.apart``): in serial mode, or
when no process starts, every line is read here.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass

from ..parallel import Parallelism, process
from .records import CHUNK, MAX_INDEX_LINE, bounded_lines, read_chunks, write_chunk

CHUNK_BYTES = 1 << 20   # path bytes of rule calls per chunk


@dataclass
class HelperPart:
    """What the helper checked: its records (spool form) and the rule calls they make."""

    records: object             # binary file, read from its start
    count: int
    sealed: int
    hardlinks: bool
    calls: object               # binary file: chunks of (target, path, is_dir, generated)
    tally: dict                 # summary.Tally.to_json of its records

    def rule_calls(self):
        """The ``PathRules.add`` arguments of its records, in record order."""
        for chunk in read_chunks(self.calls.fileno()):
            yield from chunk


class IndexHelper:
    """A running helper and the temporary files its records and rule calls go to."""

    def __init__(self, split: int, helper: subprocess.Popen, records, calls):
        self.split = split      # the offset of the first line it checks
        self._process, self._records, self._calls = helper, records, calls

    def result(self) -> HelperPart | None:
        """Wait for it: its part, or None if it failed or found a fault."""
        summary = process.answer(self._process)
        if summary is None or "fault" in summary:
            return None
        self._records.seek(0)
        return HelperPart(self._records, summary["count"], summary["sealed"],
                          summary["hardlinks"], self._calls, summary["tally"])

    def close(self) -> None:
        process.stop(self._process)
        self._records.close()
        self._calls.close()


def start(spool, incremental: bool, version, parallel: Parallelism | None,
          share: float | None = None) -> IndexHelper | None:
    """A helper for the last ``share`` of the lines that follow ``spool``'s position (a
    binary file), checked by the rules of ``version`` (a ``versions.FormatVersion``); None
    when they are too few to gain (below ``Tuning.index_min_bytes``: a process's start is
    the time of a few thousand records), the parallelism is serial (or None) or no process
    starts.  ``share`` defaults to ``Tuning.index_share``; a reader that runs beside other
    work of its process (an incremental pack reads its parent's index during the walk)
    gives the helper more."""
    if parallel is None or not parallel.processes:
        return None
    share = parallel.tuning.index_share if share is None else share
    try:
        fd = spool.fileno()
    except (AttributeError, OSError, ValueError):     # in memory: read here
        return None
    position = spool.tell()
    size = spool.seek(0, os.SEEK_END)
    spool.seek(position)
    if size - position < parallel.tuning.index_min_bytes:
        return None
    split = _line_start(fd, position + int((size - position) * (1 - share)), size)
    if split is None:
        return None
    files: list = []
    try:
        for _ in range(2):
            files.append(tempfile.TemporaryFile(prefix=".poppoarc-index-"))
        records, calls = files
        helper = parallel.apart(__name__, {
            "lines": fd, "from": split, "records": records.fileno(), "calls": calls.fileno(),
            "incremental": incremental, "format": version.name}, [spool, records, calls])
    except OSError:                     # no room: every line is read here
        helper = None
    if helper is None:
        for each in files:
            each.close()
        return None
    return IndexHelper(split, helper, records, calls)


def lines_until(spool, helper: IndexHelper | None):
    """``spool``'s lines up to where the helper's part starts (all of them without one);
    the file is left at that offset."""
    if helper is None:
        yield from bounded_lines(spool)
        return
    position, stop = spool.tell(), helper.split
    while position < stop:
        line = spool.readline(MAX_INDEX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_INDEX_LINE:
            raise ValueError(f"index line longer than {MAX_INDEX_LINE} bytes")
        position += len(line)
        yield line


def _line_start(fd: int, offset: int, size: int) -> int | None:
    """The offset of the first line that starts at or after ``offset``; None if none does."""
    while offset < size:
        block = os.pread(fd, 1 << 16, offset - 1)
        newline = block.find(b"\n")
        if newline >= 0:
            start = offset + newline
            return start if start < size else None
        offset += len(block)
    return None


class _RuleCalls:
    """Stands in for ``PathRules``: the calls go to a file, for the reader to replay."""

    def __init__(self, out):
        self._out, self._chunk, self._bytes = out, [], 0

    def add(self, target, path, is_dir, generated=False) -> None:
        self._chunk.append((target, path, is_dir, generated))
        self._bytes += len(path)
        # a chunk is what the reader holds at once: bounded in bytes too (4 KiB paths)
        if len(self._chunk) == CHUNK or self._bytes >= CHUNK_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._chunk:
            write_chunk(self._out, self._chunk)
            self._chunk, self._bytes = [], 0


def _lines(fd: int, offset: int):
    """The lines from ``offset`` to the end, read with ``pread`` (the file offset is the
    reader's: both processes share it)."""
    rest = b""
    while True:
        block = os.pread(fd, 1 << 20, offset)
        if not block:
            break
        offset += len(block)
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_INDEX_LINE:
            raise ValueError("index line too long")     # the reader names it
        for line in lines:
            yield line + b"\n"
    if rest:
        yield rest          # no newline: decode_lines names the fault


def run(spec: dict) -> dict:
    """The helper process: check the lines, write the records and the calls; its answer."""
    from .entry import IndexEntry
    from .manifest import _FIELDS, decode_lines
    from .records import IndexRecords
    from .summary import Tally
    from .versions import VERSIONS
    with open(spec["records"], "wb", closefd=False) as out, \
            open(spec["calls"], "wb", closefd=False) as calls_out:
        records = IndexRecords(IndexEntry, _FIELDS, spool=out)
        records.tally = Tally()
        calls = _RuleCalls(calls_out)
        try:
            hardlinks = decode_lines(_lines(spec["lines"], spec["from"]), records, calls,
                                     spec["incremental"], version=VERSIONS[spec["format"]])
        except Exception:      # any fault: the reader finds it again, and names it
            return {"fault": True}
        calls.flush()
    return {"count": len(records), "sealed": records.sealed, "hardlinks": hardlinks,
            "tally": records.tally.to_json()}
