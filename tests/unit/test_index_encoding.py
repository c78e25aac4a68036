"""The index's fast record encoder and the pack's index spool write canonical JSON."""

import io

from hypothesis import given, settings, strategies as st

from poppoarc.format.head import canonical_json
from poppoarc.format.entry import IndexEntry
from poppoarc.format.manifest import write_index
from poppoarc.format.records import encode_entry
from poppoarc.format.spool import IndexSpool

texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)
ints = st.integers(min_value=0, max_value=2**63 - 1)


@st.composite
def entries(draw):
    kind = draw(st.sampled_from(["file", "dir", "symlink", "hardlink"]))
    entry = IndexEntry(draw(texts), draw(st.none() | st.sampled_from(["config", "state"])), kind,
                       draw(st.integers(0, 0o7777)), draw(ints), draw(ints), draw(ints),
                       draw(ints), draw(st.none() | st.text("0123456789abcdef", min_size=64,
                                                            max_size=64)))
    if kind in ("symlink", "hardlink"):
        entry.link = draw(texts)
    entry.sqlite, entry.changed, entry.generated = draw(st.tuples(st.booleans(), st.booleans(),
                                                                  st.booleans()))
    if draw(st.booleans()):
        entry.sealed = draw(st.none() | st.lists(st.tuples(texts, ints).map(list), max_size=3))
        entry.hmac_sha256 = draw(st.none() | st.text("0123456789abcdef", min_size=64,
                                                      max_size=64))
        entry.bundle = draw(st.none() | ints)
    entry.ino, entry.ctime_ns = draw(st.none() | ints), draw(st.none() | ints)
    if draw(st.booleans()):
        entry.stored_in = draw(st.just("backup-2025-06-19T12-00-00-000Z-abc123") | texts)
    if draw(st.booleans()):
        entry.blocks, entry.delta = {"size": 65536, "digests": "AAAA"}, [0]
    return entry


@given(entries())
def test_fast_encoding_is_the_canonical_encoding(entry):
    assert encode_entry(entry) == canonical_json(entry.to_json()) + b"\n"


def test_names_that_need_escaping():
    for path in ['a"b', "back\\slash", "tab\there", "new\nline", "\x00\x1f", "日本語/ファイル",
                 "\u2028\u2029", "emoji\U0001f600"]:
        entry = IndexEntry(path, "state", "file", 0o644, 0, 0, 1, 2, "0" * 64, ino=7)
        assert encode_entry(entry) == canonical_json(entry.to_json()) + b"\n"


def test_spool_keeps_order_and_encodes_deferred_records_last_minute():
    records = [IndexEntry(f"state/{n}", "state", "file", 0o644, 0, 0, n, n, f"{n:064x}")
               for n in range(5)]
    spool = IndexSpool()
    for n, record in enumerate(records):
        spool.append(record, deferred=n in (0, 3))
    records[0].sqlite = True                # changed after it was appended: still written
    records[3].changed = True
    spooled, listed = io.BytesIO(), io.BytesIO()
    write_index(spooled, "backup-x", spool)
    write_index(listed, "backup-x", records)
    spool.close()
    assert len(spool) == 5 and spooled.getvalue() == listed.getvalue()
    assert b'"sqlite":true' in spooled.getvalue() and b'"changed":true' in spooled.getvalue()


# -- reading ---------------------------------------------------------------------

import pytest  # noqa: E402

from poppoarc.errors import CorruptArchive  # noqa: E402
from poppoarc.format.manifest import decode_index  # noqa: E402

from tests.helpers import encode_index  # noqa: E402


GOOD = [IndexEntry("state", "state", "dir", 0o755, 0, 0, 1),
        IndexEntry("state/a", "state", "file", 0o644, 0, 0, 2, 1, "a" * 64, ino=5),
        IndexEntry("state/b", "state", "hardlink", 0o644, 0, 0, 2, 1, "a" * 64, link="state/a")]


def test_records_decode_lazily_and_repeatably_from_bytes_or_a_file(tmp_path):
    data = encode_index("backup-x", GOOD)
    records, sealed = decode_index(data, "backup-x", "t")
    assert sealed is None and len(records) == 3
    assert list(records) == GOOD and list(records) == GOOD     # a second pass
    spool = tmp_path / "index"
    spool.write_bytes(data)
    with open(spool, "rb") as handle:
        assert list(decode_index(handle, "backup-x", "t")[0]) == GOOD


def _line(text: str) -> bytes:
    return encode_index("backup-x", GOOD[:1]).replace(b'"entries":1', b'"entries":2') \
        + text.encode() + b"\n"


@pytest.mark.parametrize("line", [
    '{"gid":0,"gid":0,"mode":420,"mtime_ns":1,"path":"state/x","size":0,"target":"state",'
    '"type":"dir","uid":0}',                                           # duplicate key
    '{"gid":0,"mode":420,"mtime_ns":1.5,"path":"state/x","size":0,"target":"state",'
    '"type":"dir","uid":0}',                                           # float
    '{"gid":0, "mode":420,"mtime_ns":1,"path":"state/x","size":0,"target":"state",'
    '"type":"dir","uid":0}',                                           # not canonical
    '{"gid":0,"mode":420,"mtime_ns":1,"path":"state","size":0,"target":"state",'
    '"type":"dir","uid":0}',                                           # listed twice
    '{"gid":0,"mode":420,"mtime_ns":1,"path":"state/x","size":0,"target":"state",'
    '"type":"dir","uid":0} ',                                          # trailing space
    '{"gid":0,"mode":420,"mtime_ns":1,"path":"state/x","size":0,"target":"state",'
    '"type":"dir","uid":0}{}',                                         # extra data
    ' {"gid":0,"mode":420,"mtime_ns":1,"path":"state/x","size":0,"target":"state",'
    '"type":"dir","uid":0}',                                           # leading space
    'NaN', '', '[]', '"state"', '{"gid":0,"mode":NaN}',                 # not a record
    '{"gid":0,"mode":420,"mtime_ns":1,"path":"state/\\u0078","size":0,"target":"state",'
    '"type":"dir","uid":0}',                                           # needless escape
])
def test_bad_records_are_rejected(line):
    with pytest.raises(CorruptArchive):
        decode_index(_line(line), "backup-x", "t")


@pytest.mark.parametrize("entries", [
    [GOOD[1], IndexEntry("state/a/x", "state", "file", 0o644, 0, 0, 2, 1, "a" * 64)],
    [IndexEntry("state/x/y", "state", "dir", 0o755, 0, 0, 1),
     IndexEntry("state/x", "state", "symlink", 0o777, 0, 0, 1, link="../config")],
    [GOOD[2], GOOD[1]],                                                 # link before its file
    [GOOD[1], IndexEntry("state/b", "state", "hardlink", 0o644, 0, 0, 2, 2, "a" * 64,
                         link="state/a")],                              # other content
])
def test_structural_lies_are_rejected(entries):
    with pytest.raises(CorruptArchive):
        decode_index(encode_index("backup-x", entries), "backup-x", "t")


def test_sealed_records_are_encoded_as_soon_as_their_members_are_known():
    spool = IndexSpool()
    records = []
    for n in range(6):
        record = IndexEntry(f"state/{n}", "state", "file", 0o644, 0, 0, n, 10, None,
                            sealed=[] if n % 2 else None, hmac_sha256=f"{n:064x}" if n % 2 else None)
        if record.sealed is None:
            record.sha256 = f"{n:064x}"
        records.append(record)
        spool.append(record, deferred=record.sealed is not None)
        if n == 3:          # the pool wrote the first sealed file's member: it settles
            records[1].sealed.append(["objects/00000001.0000", 90])
    assert [entry for _, _, entry in spool._pending] == [records[3], records[5]]
    records[3].sealed.append(["objects/00000003.0000", 90])
    records[5].sealed.append(["objects/00000005.0000", 90])
    spooled, listed = io.BytesIO(), io.BytesIO()
    write_index(spooled, "backup-x", spool)
    write_index(listed, "backup-x", records)
    spool.close()
    assert spooled.getvalue() == listed.getvalue()


from dataclasses import fields  # noqa: E402

from poppoarc.format.records import IndexRecords  # noqa: E402


@settings(deadline=None)     # up to 3,000 records a run: over 200 ms on a loaded machine
@given(st.lists(entries(), max_size=20), st.integers(0, 3000))
def test_records_read_back_field_for_field_on_every_pass(drawn, filler):
    # Filler records carry the spool across its 1 MiB read blocks.
    names = tuple(f.name for f in fields(IndexEntry))
    records = IndexRecords(IndexEntry, names)
    big = "x" * 400
    padding = [IndexEntry(f"state/{n}-{big}", "state", "file", 0o644, 0, 0, n, n, f"{n:064x}")
               for n in range(filler)]
    expected = padding[:filler // 2] + drawn + padding[filler // 2:]
    for entry in expected:
        records.add(entry)
    records.close_writing()
    assert len(records) == len(expected)
    assert list(records) == expected and list(records) == expected


def test_records_larger_than_a_read_block_read_back_whole():
    # a database's page digests can make one record several MiB
    names = tuple(f.name for f in fields(IndexEntry))
    records = IndexRecords(IndexEntry, names)
    expected = [IndexEntry(f"data/{n}.db", "database", "file", 0o644, 0, 0, n, n, "a" * 64,
                           sqlite=True, blocks={"size": 4096, "digests": "A" * size})
                for n, size in enumerate([10, 3 << 20, 10, (1 << 20) - 7, 5 << 20, 10])]
    for entry in expected:
        records.add(entry)
    records.close_writing()
    assert list(records) == expected and list(records) == expected


from poppoarc.format.paths import path_problem  # noqa: E402


@pytest.mark.parametrize("path, problem", [
    ("state/a.json", None),
    ("a/" + "n" * 255, None),                               # a name of exactly 255 bytes
    ("日" * 85, None),                                       # 255 bytes in UTF-8
    ("/".join(["d"] * 256), None),
    ("", "empty path"),
    ("state/\0", "NUL in path"),
    ("/etc/passwd", "absolute path"),
    ("state//a", "empty, '.' or '..' component"),
    ("state/./a", "empty, '.' or '..' component"),
    ("state/../../etc", "empty, '.' or '..' component"),
    ("state/", "empty, '.' or '..' component"),
    ("..", "empty, '.' or '..' component"),
    ("a/" + "n" * 256, "name longer than 255 bytes"),
    ("x/" + "日" * 86, "name longer than 255 bytes"),        # 258 bytes, 86 characters
    ("/".join(["d" * 200] * 21), "path longer than 4096 bytes"),
    ("/".join(["d"] * 257), "path deeper than 256 levels"),
])
def test_path_rules(path, problem):
    assert path_problem(path) == problem
