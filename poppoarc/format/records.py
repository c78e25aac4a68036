"""Index lines (spec/FORMAT.md §5.4) fast: written without ``json.dumps``, checked without
a per-object hook, and read back lazily from a spool file.

The index of 100,000 files is ~25 MB of JSON lines; as objects it would be ~60 MB
more, and ``json.dumps``/``strict_loads`` per record cost a few seconds.  Every
function here produces or accepts exactly the canonical JSON that ``head`` defines.
"""

from __future__ import annotations

import json
import marshal
import operator
import os
import shutil
import tempfile
from array import array
from json.encoder import c_make_encoder

from .head import canonical_json, check_json_depth, reject_constant, reject_float

_text = json.encoder.encode_basestring     # the C escaper json.dumps(ensure_ascii=False) uses

# The longest line a reader takes (spec §5.4): a database's block digests at the writer's
# bound (131,072 blocks: 2.8 MB of base64) with its delta list fit; so does the sealed
# member list of a file of up to ~450 GiB.  A reader holds one line at a time.
MAX_INDEX_LINE = 4 << 20


def bounded_lines(handle, limit: int = MAX_INDEX_LINE):
    """The lines of a binary file from its position, none longer than ``limit`` bytes
    (ValueError): iterating a file would read a 1 GiB line into memory whole."""
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        if len(line) > limit:
            raise ValueError(f"index line longer than {limit} bytes")
        yield line


def encode_entry(entry) -> bytes:
    """One index line: ``canonical_json(entry.to_json()) + b"\\n"``, built directly for
    the common records (plain files and directories, an incremental's references to
    unchanged files, and sealed files and their bundles) — a third of the time."""
    if (entry.link is None and not (entry.sqlite or entry.changed or entry.generated)
            and entry.blocks is None and entry.delta is None
            and type(entry.bundle) in (int, type(None))
            and type(entry.stored_in) in (str, type(None))
            and type(entry.path) is str and type(entry.type) is str
            and type(entry.target) in (str, type(None)) and type(entry.sha256) in (str, type(None))
            and type(entry.hmac_sha256) in (str, type(None))
            and type(entry.ino) in (int, type(None)) and type(entry.ctime_ns) in (int, type(None))
            and type(entry.gid) is int and type(entry.mode) is int and type(entry.uid) is int
            and type(entry.mtime_ns) is int and type(entry.size) is int):
        sealed = "" if entry.sealed is None else _sealed_members(entry.sealed)
        if sealed is not None:
            # keys in code point order: bundle ctime_ns gid hmac_sha256 ino mode mtime_ns path
            # sealed sha256 size stored_in target type uid
            bundle = "" if entry.bundle is None else f'"bundle":{entry.bundle},'
            ctime = "" if entry.ctime_ns is None else f'"ctime_ns":{entry.ctime_ns},'
            mac = "" if entry.hmac_sha256 is None else f'"hmac_sha256":{_text(entry.hmac_sha256)},'
            ino = "" if entry.ino is None else f'"ino":{entry.ino},'
            digest = "" if entry.sha256 is None else f',"sha256":{_text(entry.sha256)}'
            holder = "" if entry.stored_in is None else f'"stored_in":{_text(entry.stored_in)},'
            target = "null" if entry.target is None else _text(entry.target)
            return (f'{{{bundle}{ctime}"gid":{entry.gid},{mac}{ino}"mode":{entry.mode},'
                    f'"mtime_ns":{entry.mtime_ns},"path":{_text(entry.path)}{sealed}{digest},'
                    f'"size":{entry.size},{holder}"target":{target},"type":{_text(entry.type)},'
                    f'"uid":{entry.uid}}}\n').encode("utf-8")
    return canonical_json(entry.to_json()) + b"\n"


def _sealed_members(members) -> str | None:
    """``,"sealed":[[name,size],...]``, or None when the list is not of that plain shape."""
    if type(members) is not list:
        return None
    parts = []
    for member in members:
        if type(member) is not list or len(member) != 2 or type(member[0]) is not str \
                or type(member[1]) is not int:
            return None
        parts.append(f"[{_text(member[0])},{member[1]}]")
    return ',"sealed":[' + ",".join(parts) + "]"


def _no_default(value):
    raise TypeError(f"{type(value).__name__} is not JSON")


# head.strict_loads' decoder, without its duplicate-key hook (see strict_record)
_scan_record = json.JSONDecoder(parse_float=reject_float,
                                parse_constant=reject_constant).scan_once
if c_make_encoder is not None:
    # head.canonical_json's encoder, built once: json.dumps builds a new one on every call,
    # a noticeable part of checking one record.  No cycle check: decoded JSON has none.
    _canonical_parts = c_make_encoder(None, _no_default, _text, None, ":", ",", True, False,
                                      False)

    def _canonical(value) -> bytes:
        return "".join(_canonical_parts(value, 0)).encode("utf-8")
else:                                   # an interpreter without the C accelerator
    _canonical = canonical_json


def strict_record(line: bytes) -> object:
    """``strict_loads`` for index lines at a third of the cost: no duplicate-key hook, since
    a duplicate key cannot survive the canonical re-encoding (the object comes out shorter),
    and the decoder's and encoder's C parts are called directly."""
    check_json_depth(line)
    text = line.decode("utf-8")
    try:
        value, end = _scan_record(text, 0)
    except StopIteration:
        raise ValueError("index line is not JSON") from None
    if end != len(text) or _canonical(value) != line:
        raise ValueError("JSON is not in canonical form")
    return value


class IndexRecords:
    """The records of a checked index, read back from a spool file on each pass.

    Iterable any number of times, with ``len``; records held as objects would grow with
    the index, in a temporary file they cost no memory.  ``decode_index`` writes each
    record it checked with ``add``, as the ``marshal`` form of its fields in order
    (length-prefixed): a pass then costs far less than parsing the JSON lines again,
    and the file holds only what this process wrote itself.  ``sealed`` counts the records of sealed files (a reader
    without the key skips them), so that nobody needs a pass to learn there are none.
    """

    def __init__(self, make, fields: tuple[str, ...], spool=None):
        self._spool = tempfile.TemporaryFile() if spool is None else spool
        self._make = make
        self._fields = operator.attrgetter(*fields)
        self._count = 0
        self._marks, self._marks_for = array("q"), -1     # see _seek
        self.sealed = 0
        self.in_index_order = False     # set by decode_index: restores pair records by order
        self.tally = None               # set by decode_index: the sums §5.2 checks (summary)

    def add(self, record) -> None:
        data = marshal.dumps(self._fields(record))
        self._spool.write(len(data).to_bytes(4, "little") + data)
        self._count += 1

    def extend(self, spooled, count: int, sealed: int) -> None:
        """Append ``count`` records another ``IndexRecords`` wrote to the binary file
        ``spooled`` (read from its position), ``sealed`` of them sealed."""
        shutil.copyfileobj(spooled, self._spool, 1 << 20)
        self._count += count
        self.sealed += sealed

    def close_writing(self) -> None:
        self._spool.flush()

    def __len__(self) -> int:
        return self._count

    def __iter__(self):
        loads, make = marshal.loads, self._make
        for data in self._blobs(0):
            yield make(*loads(data))

    def iter_range(self, start: int, end: int):
        """The records at positions ``start`` to ``end`` (not included), from the nearest
        mark before ``start`` on (a mark every ``MARK_EVERY`` records: 8 bytes each)."""
        if start >= end:
            return
        offset, skip = self._seek(start)
        loads, make = marshal.loads, self._make
        wanted = end - start
        for data in self._blobs(offset):
            if skip:
                skip -= 1
                continue
            yield make(*loads(data))
            wanted -= 1
            if not wanted:
                return

    def spooled(self):
        """(path, spooled bytes) of each record, for ``rebuild`` (sorting on disk)."""
        loads = marshal.loads
        for data in self._blobs(0):
            yield loads(data)[0], bytes(data)

    def rebuild(self, data: bytes):
        return self._make(*marshal.loads(data))

    def _seek(self, index: int) -> tuple[int, int]:
        """(byte offset of a record at or before position ``index``, records to skip)."""
        if self._marks_for != self._count:
            self._marks = array("q")
            for n, offset in enumerate(self._offsets()):
                if n % MARK_EVERY == 0:
                    self._marks.append(offset)
            self._marks_for = self._count
        mark = index // MARK_EVERY
        return self._marks[mark], index - mark * MARK_EVERY

    def _offsets(self):
        """The byte offset of every record, from their length prefixes alone."""
        fd, position = self._spool.fileno(), 0
        block, block_start = b"", 0        # bytes of the file from block_start on
        while True:
            at = position - block_start
            if at + 4 > len(block):
                block, block_start = os.pread(fd, 1 << 20, position), position
                at = 0
                if len(block) < 4:
                    return
            yield position
            position += 4 + int.from_bytes(block[at:at + 4], "little")

    def _blobs(self, position: int):
        """Each record's spooled bytes from the byte offset ``position`` on (a view,
        valid until the next is taken)."""
        fd, rest, want = self._spool.fileno(), b"", 1 << 20
        while True:
            block = os.pread(fd, want, position)
            if not block:
                return
            position += len(block)
            data = memoryview(rest + block)
            start, end, want = 0, len(data), 1 << 20
            while start + 4 <= end:
                stop = start + 4 + int.from_bytes(data[start:start + 4], "little")
                if stop > end:
                    # the rest of a record larger than a block comes in one read, not
                    # block by block with all of it copied each time
                    want = max(want, stop - end)
                    break
                yield data[start + 4:stop]
                start = stop
            rest = bytes(data[start:])


CHUNK = 4096                # records per marshal chunk on disk (what a reader holds)
MARK_EVERY = 4096           # records between two marks of IndexRecords (iter_range)


def write_chunk(out, fields: list) -> None:
    """One chunk of records' fields: its length (4 bytes, little-endian), then marshal."""
    data = marshal.dumps(fields)
    out.write(len(data).to_bytes(4, "little") + data)


def write_chunks(out, items) -> None:
    """Every item of an iterable, in chunks of ``CHUNK`` (``write_chunk``)."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            write_chunk(out, chunk)
            chunk = []
    if chunk:
        write_chunk(out, chunk)


def read_chunks(fd: int):
    """Every chunk ``write_chunk`` wrote to the file ``fd``, from its start (by pread,
    so the file's position is left alone)."""
    position = 0
    while size := int.from_bytes(os.pread(fd, 4, position) or bytes(4), "little"):
        yield marshal.loads(os.pread(fd, size, position + 4))
        position += 4 + size
