"""The index's fast record encoder and the pack's index spool write canonical JSON."""

import io

from hypothesis import given, strategies as st

from poppoarc.format.head import canonical_json
from poppoarc.format.manifest import IndexEntry, encode_entry, write_index
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
        entry.sealed, entry.hmac_sha256 = [["objects/00000001.0000", 64]], "ab" * 32
    entry.ino, entry.ctime_ns = draw(st.none() | ints), draw(st.none() | ints)
    if draw(st.booleans()):
        entry.stored_in = "backup-2025-06-19T12-00-00-000Z-abc123"
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
