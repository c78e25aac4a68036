"""An incremental does not capture a database again whose live files are as they were when
its parent captured it (format/facts.capture_unchanged, the facts cache's source facts):
it writes the parent's snapshot again as an empty delta (spec §12.4, ``delta: []``).  These
tests are the cases where that would be wrong: a write in the same time stamp tick as the
parent's facts, a database replaced by a rename with the same size and mtime, a -wal that
appeared, a -journal, a cache edited to hide a change; and the control of each, so that a
test that passes is one that could have failed."""

import os
import shutil
import sqlite3
import time

import pytest

from poppoarc.archives import facts
from poppoarc.config import resolve
from poppoarc.crypto import signing
from poppoarc.format import facts as factsfmt
from poppoarc.format.entry import IndexEntry
from poppoarc.parallel import SERIAL, Parallelism
from poppoarc.snapshot import sqlite as sqlite_snapshot

from tests.helpers import CLI, EAGER, incremental_four_ways

HISTORY = "data/poppo-history.db"
DATABASES = {".poppo/poppo.db", "data/ccla.db", "data/ccpm/cache.sqlite3", HISTORY,
             "data/security.db"}


@pytest.fixture
def no_margin(monkeypatch):
    """Time stamps count as old from the moment the facts are taken (a copied test
    installation's ctimes are a second old): the rule's other parts are what is tested."""
    monkeypatch.setattr(factsfmt, "RACY_MARGIN_NS", 0)


@pytest.fixture
def copies(monkeypatch):
    """The databases captured with the backup API, by path relative to the root."""
    copied = []
    real = sqlite_snapshot.copy

    def copy(source, destination, **kwargs):
        copied.append(source)
        return real(source, destination, **kwargs)

    monkeypatch.setattr(sqlite_snapshot, "copy", copy)
    return copied


def copied_paths(cli, copies) -> set[str]:
    return {str(os.path.relpath(path, cli.root)) for path in copies}


def records(cli, packed) -> dict[str, IndexEntry]:
    code, inspected = cli.json("inspect", packed["path"], "--entries")
    assert code == 0
    return {entry["path"]: IndexEntry(**entry) for entry in inspected["entries"]}


def rows(path) -> list:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("select * from process_history order by id").fetchall()
    finally:
        conn.close()


def restored(cli, packed, name: str):
    root = cli.root.parent / f"restored-{name}"
    root.mkdir()
    code, _ = CLI(root, cli.store, cli.capsys, cli.parallel).json(
        "unpack", packed["id"], "--skip-backup")
    assert code in (0, 1)
    return root


def add_rows(path, count: int = 50) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.executemany("insert into process_history (task_id, task_type, started_at, status)"
                         " values (?, 'test', '2026-01-01', 'success')",
                         [(f"added-{n}",) for n in range(count)])
        conn.commit()
    finally:
        conn.close()


def test_an_unchanged_database_is_not_captured_again(cli, both_ways, no_margin, copies):
    full = cli.pack("--full")
    assert copied_paths(cli, copies) == DATABASES
    before = records(cli, full)
    copies.clear()
    first = cli.pack("--incremental")
    assert copied_paths(cli, copies) == set()
    second = cli.pack("--incremental")         # the facts carried forward by the first
    assert copied_paths(cli, copies) == set()
    assert second["parent"] == first["id"]
    for packed in (first, second):
        assert {d["path"] for d in packed["databases"]} == DATABASES
        index = records(cli, packed)
        for path in DATABASES:
            record = index[path]
            assert record.sqlite and record.delta == []
            assert (record.size, record.sha256, record.blocks) == \
                (before[path].size, before[path].sha256, before[path].blocks)
        assert cli.json("verify", packed["id"])[0] == 0
    manifest_of = {d["path"]: d for d in full["databases"]}
    assert {d["path"]: d for d in second["databases"]} == manifest_of
    root = restored(cli, second, "second")
    assert rows(root / HISTORY) == rows(cli.root / HISTORY)


def test_a_changed_database_is_captured_and_the_rest_are_not(cli, both_ways, no_margin,
                                                             copies):
    cli.pack("--full")
    copies.clear()
    add_rows(cli.root / HISTORY)
    packed = cli.pack("--incremental")
    assert copied_paths(cli, copies) == {HISTORY}
    index = records(cli, packed)
    assert index[HISTORY].delta            # the blocks that changed
    assert all(index[p].delta == [] for p in DATABASES - {HISTORY})
    history = next(d for d in packed["databases"] if d["path"] == HISTORY)
    assert history["tables"]["process_history"] == len(rows(cli.root / HISTORY))
    assert rows(restored(cli, packed, "changed") / HISTORY) == rows(cli.root / HISTORY)


def _same_facts_as_the_parent(monkeypatch, cli):
    """Record each database's facts as the full pack takes them; later packs see those
    again (a new clock reading), as when a write lands in the time stamp tick the
    facts recorded and the file system's facts do not move."""
    seen = {}
    real = sqlite_snapshot.source_facts

    def recording(path):
        found = real(path)
        seen[os.path.relpath(path, cli.root)] = found
        return found

    def replaying(path):
        recorded = seen[os.path.relpath(path, cli.root)]
        return [time.time_ns(), *recorded[1:]]

    monkeypatch.setattr(sqlite_snapshot, "source_facts", recording)
    return lambda: monkeypatch.setattr(sqlite_snapshot, "source_facts", replaying)


@pytest.mark.parametrize("margin", ["default", "none (the control)"])
def test_a_write_in_the_same_tick_as_the_parents_facts_is_not_hidden(cli, both_ways, copies,
                                                                      monkeypatch, margin):
    # written just before the full pack: its time stamps are as new as the facts
    add_rows(cli.root / HISTORY, 5)
    if margin != "default":
        monkeypatch.setattr(factsfmt, "RACY_MARGIN_NS", 0)
    replay = _same_facts_as_the_parent(monkeypatch, cli)
    cli.pack("--full")
    add_rows(cli.root / HISTORY)
    replay()
    copies.clear()
    packed = cli.pack("--incremental")
    got = rows(restored(cli, packed, "tick") / HISTORY)
    if margin == "default":
        assert HISTORY in copied_paths(cli, copies)
        assert got == rows(cli.root / HISTORY)
    else:       # without the margin the facts are believed: the change is lost
        assert HISTORY not in copied_paths(cli, copies)
        assert got != rows(cli.root / HISTORY)


def test_the_rule_is_pure_and_refuses_each_dangerous_case():
    now = 1_800_000_000 * 10**9
    old = now - 3600 * 10**9
    recorded = [now, 2049, 100, 8192, old, old, 101, 4152, old, False]
    same = [now + 10**9, *recorded[1:]]
    assert factsfmt.capture_unchanged(recorded, same)

    def live(**changes):
        fields = dict(zip(("dev", "ino", "size", "mtime", "ctime", "wal_ino", "wal_size",
                           "wal_mtime", "journal"), recorded[1:]))
        fields.update(changes)
        return [now + 10**9, *fields.values()]

    for changed in ({"ino": 102}, {"dev": 2050}, {"size": 4096}, {"mtime": old + 1},
                    {"ctime": old + 1}, {"wal_ino": None, "wal_size": None,
                                         "wal_mtime": None},
                    {"wal_size": 8272}, {"wal_mtime": old + 1}, {"journal": True}):
        assert not factsfmt.capture_unchanged(recorded, live(**changed)), changed
    # a -wal that appeared since the parent's facts
    no_wal = recorded[:6] + [None, None, None, False]
    assert factsfmt.capture_unchanged(no_wal, [now + 1, *no_wal[1:]])
    assert not factsfmt.capture_unchanged(no_wal, same)
    # racily clean: a time stamp within the margin of the moment the facts were taken
    for index in (4, 5, 8):
        racy = list(recorded)
        racy[index] = now - factsfmt.RACY_MARGIN_NS + 1
        assert not factsfmt.capture_unchanged(racy, [now + 1, *racy[1:]]), index
        assert factsfmt.capture_unchanged(racy, [now + 1, *racy[1:]], margin_ns=0)
    # a time stamp after the facts were taken (a clock set back, a server's clock ahead)
    future = recorded[:4] + [now + 1] + recorded[5:]
    assert not factsfmt.capture_unchanged(future, [now + 2, *future[1:]], margin_ns=0)
    # a file system without time stamps or inode numbers; a hot journal even if unchanged
    for blank in ({4: 0}, {5: 0}, {2: 0}, {8: 0}, {6: 0}, {9: True}):
        broken = list(recorded)
        for index, value in blank.items():
            broken[index] = value
        assert not factsfmt.capture_unchanged(broken, [now + 1, *broken[1:]]), blank
    # malformed facts (never from this writer; the cache is authenticated)
    for bad in (None, [], recorded[:-1], recorded[:-1] + [0], [str(v) for v in recorded],
                recorded[:6] + [None, 1, None, False]):
        assert not factsfmt.capture_unchanged(bad, same)
        assert not factsfmt.capture_unchanged(recorded, bad)


def test_a_database_replaced_by_a_rename_with_the_same_size_and_mtime(cli, both_ways,
                                                                       no_margin, copies):
    live = cli.root / HISTORY
    conn = sqlite3.connect(live)        # a rollback-journal database: one file
    conn.execute("pragma journal_mode=delete")
    conn.close()
    cli.pack("--full")
    replacement = cli.root / "data" / "replacement.tmp"
    shutil.copy2(live, replacement)
    conn = sqlite3.connect(replacement)
    conn.execute("update process_history set status = 'failure' where id = 1")
    conn.commit()
    conn.close()
    st = live.stat()
    os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert replacement.stat().st_size == st.st_size
    os.replace(replacement, live)
    copies.clear()
    packed = cli.pack("--incremental")
    assert HISTORY in copied_paths(cli, copies)
    got = rows(restored(cli, packed, "renamed") / HISTORY)
    assert got == rows(live) and got[0][7] == "failure"


def test_a_wal_that_appeared_is_a_change(cli, both_ways, no_margin, copies):
    live = cli.root / "data" / "ccla.db"
    conn = sqlite3.connect(live)        # checkpointed and closed: no -wal beside it
    conn.execute("pragma wal_checkpoint(truncate)")
    conn.close()
    assert not os.path.exists(f"{live}-wal")
    cli.pack("--full")
    main = live.stat()
    writer = sqlite3.connect(live)      # a commit goes to a new -wal, not to the file
    try:
        writer.execute("create table appeared (x)")
        writer.execute("insert into appeared values (1)")
        writer.commit()
        assert os.path.getsize(f"{live}-wal") > 0
        after = live.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns, after.st_ctime_ns) == \
            (main.st_ino, main.st_size, main.st_mtime_ns, main.st_ctime_ns)
        copies.clear()
        packed = cli.pack("--incremental")
    finally:
        writer.close()
    assert "data/ccla.db" in copied_paths(cli, copies)
    root = restored(cli, packed, "wal")
    conn = sqlite3.connect(f"file:{root / 'data/ccla.db'}?mode=ro", uri=True)
    try:
        assert conn.execute("select x from appeared").fetchall() == [(1,)]
    finally:
        conn.close()


def test_a_journal_beside_the_database_is_never_trusted(cli, no_margin, copies):
    cli.pack("--full")
    journal = cli.root / "data" / "security.db-journal"
    journal.write_bytes(b"")            # (an empty journal is not hot: SQLite ignores it)
    copies.clear()
    cli.pack("--incremental")
    assert copied_paths(cli, copies) == {"data/security.db"}


def _edit_sources(cached, key, edit):
    """The cache at ``cached`` with its databases' source facts changed by ``edit``, tagged
    again with ``key``."""
    import json
    import pyzstd
    data = cached.read_bytes()
    position, chunks = len(factsfmt.MAGIC), []
    while position < len(data):
        (length,) = factsfmt._LENGTH.unpack_from(data, position)
        start = position + factsfmt._LENGTH.size
        chunks.append(pyzstd.decompress(data[start:start + length]))
        position = start + length + factsfmt.TAG
    trailer = json.loads(chunks[-1])
    edit(trailer["sources"])
    chunks[-1] = json.dumps(trailer).encode()
    header = json.loads(chunks[0])
    binding = factsfmt._binding(header["archive_id"], header["root"])
    out = bytearray(factsfmt.MAGIC)
    for number, piece in enumerate(chunks):
        packed = pyzstd.compress(piece, 1)
        out += factsfmt._LENGTH.pack(len(packed)) + packed + factsfmt._tag(
            key, binding, number, number == len(chunks) - 1, packed)
    cached.write_bytes(bytes(out))


@pytest.mark.parametrize("key", ["another key", "the installation's key (the control)"])
def test_a_tampered_cache_cannot_hide_a_changed_database(cli, both_ways, no_margin, copies,
                                                         key):
    settings = resolve(str(cli.root), store=str(cli.store))
    full = cli.pack("--full")
    add_rows(cli.root / HISTORY)
    rows(cli.root / HISTORY)    # (a reader leaves an empty -wal, as the pack's own will)
    live = sqlite_snapshot.source_facts(cli.root / HISTORY)

    def hide(sources):
        for row in sources:
            if row[0] == HISTORY:
                row[1] = list(live)     # the facts of now, taken now
                return
        raise AssertionError("no source facts of the history database")

    (cached,) = facts.directory(settings).iterdir()
    mac = b"\0" * 32 if key == "another key" else facts.key_of(signing.load(settings.key_dir))
    _edit_sources(cached, mac, hide)
    copies.clear()
    packed = cli.pack("--incremental")
    assert packed["parent"] == full["id"]
    got = rows(restored(cli, packed, key.split()[0]) / HISTORY)
    if key == "another key":
        assert any(f"the facts cache of {full['id']} is ignored" in w
                   for w in packed["warnings"])
        assert HISTORY in copied_paths(cli, copies)
        assert got == rows(cli.root / HISTORY)
    else:       # only the key keeps an edit from hiding the change
        assert HISTORY not in copied_paths(cli, copies)
        assert got != rows(cli.root / HISTORY)


def test_check_content_and_the_switch_always_capture(cli, no_margin, copies):
    import dataclasses
    cli.pack("--full")
    copies.clear()
    cli.pack("--incremental", "--check-content")
    assert copied_paths(cli, copies) == DATABASES
    cli.parallel = Parallelism(SERIAL, 2, dataclasses.replace(EAGER, facts_cache=False))
    copies.clear()
    cli.pack("--incremental")
    assert copied_paths(cli, copies) == DATABASES


def test_serial_and_two_process_write_the_same_archive(cli, fixed_pack, installation,
                                                      no_margin, copies):
    """An unchanged database written from the parent's capture, both ways, byte for byte;
    and the same bytes as when it is captured and found unchanged block by block (the
    parent's index read, no cache)."""
    cli.pack("--full")

    def captured_only_from_the_index(source):
        assert bool(copies) == (source == "index")

    archives = incremental_four_ways(fixed_pack, installation, before=copies.clear,
                                     after=captured_only_from_the_index)
    assert len(archives) == 4 and len(set(archives.values())) == 1


def test_a_parent_record_of_another_target_is_no_base(cli, no_margin, copies, monkeypatch):
    """A delta's base is the parent's record of the same path and target (§12.4): should
    the cache name another target for a database, it is captured as without a cache."""
    import dataclasses
    cli.pack("--full")
    real = factsfmt.CachedFacts.capture

    def other_target(self, path):
        found = real(self, path)
        if found is None:
            return None
        record, source, manifest = found
        return (dataclasses.replace(record, target="state"), source, manifest)

    monkeypatch.setattr(factsfmt.CachedFacts, "capture", other_target)
    copies.clear()
    packed = cli.pack("--incremental")
    assert copied_paths(cli, copies) == DATABASES
    assert cli.json("verify", packed["id"])[0] == 0
