"""The walk: compact records (pack's) describe the same tree as full ones."""

import os

from poppoarc.errors import Warnings
from poppoarc.snapshot.catalogue import build_catalogue
from poppoarc.snapshot.scan import FILE, SourceEntry, scan


def test_compact_walk_lists_the_same_paths_in_the_same_order(installation):
    os.link(installation / "state" / os.listdir(installation / "state")[0],
            installation / "state" / "hard-linked")  # hard links keep whole records
    catalogue = build_catalogue({}, None)
    full = scan(installation, catalogue, Warnings())
    compact = scan(installation, catalogue, Warnings(), compact=True)
    path = lambda e: e[0] if type(e) is tuple else e.path          # noqa: E731
    assert [path(e) for e in compact.entries] == [e.path for e in full.entries]
    tuples = [e for e in compact.entries if type(e) is tuple]
    plain = {e.path: e for e in full.entries if e.kind == FILE and e.nlink == 1}
    assert tuples and {p for p, _ in tuples} == set(plain)
    assert all(plain[p].target == target for p, target in tuples)
    sizes = {}
    for entry in full.entries:
        if entry.kind in ("file", "sqlite"):
            sizes[entry.target] = sizes.get(entry.target, 0) + entry.size
    assert compact.target_bytes == full.target_bytes == sizes
    assert compact.total_bytes == sum(sizes.values())
    kept = [e for e in compact.entries if isinstance(e, SourceEntry) and e.kind == FILE]
    assert kept and all(e.nlink > 1 for e in kept)


def test_a_directory_that_fails_while_listed_keeps_what_was_read_and_says_so(installation,
                                                                            monkeypatch):
    """The walk reads each directory as it goes (not listed first, for memory), so an
    error part-way through (EIO on a failing disk) must still become a warning."""
    real_scandir = os.scandir
    state = str(installation / "state")

    class FailingAfterOne:
        def __init__(self, path):
            self.inner = real_scandir(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.inner.close()

        def __iter__(self):
            entries = sorted(self.inner, key=lambda e: e.name)
            yield entries[0]
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "scandir",
                        lambda path: FailingAfterOne(path) if path == state else real_scandir(path))
    warnings = Warnings()
    result = scan(installation, build_catalogue({}, None), warnings)
    in_state = [e.path for e in result.entries if e.path.startswith("state/")]
    assert len(in_state) == 1 or all(p.startswith(in_state[0]) for p in in_state)
    assert any(w == "state: cannot read directory: Input/output error; the rest of it skipped"
               for w in warnings.items), warnings.items
    assert any(e.path == "config/config.json" for e in result.entries)   # the rest walked on


def _as_rows(entries):
    return [e if type(e) is tuple else (e.path, e.target, e.kind, e.mode, e.size, e.mtime_ns,
                                        e.nlink, e.link) for e in entries]


def test_the_walk_meets_paths_in_index_order(installation):
    """Each directory's children in the order their paths sort: "a" (its own record),
    "a-b", "a.txt", then a's contents ("a/..."), then "a0" — so no group needs sorting."""
    state = installation / "state"
    (state / "a").mkdir()
    for name in ("a-b", "a.txt", "a0", "a/x", "a/y.json", "a b"):
        (state / name).write_text(name)
    (state / "a" / "sub").mkdir()
    (state / "a" / "sub" / "z").write_text("z")
    os.symlink("a.txt", state / "a.link")
    result = scan(installation, build_catalogue({}, None), Warnings())
    for target in (None, "config", "database", "logs", "agents", "state", "security"):
        paths = [e.path for e in result.entries.group(target)]
        assert paths == sorted(paths), target
    listed = [e.path for e in result.entries]
    assert listed.index("state/a") < listed.index("state/a-b") < listed.index("state/a.txt") \
        < listed.index("state/a/sub/z") < listed.index("state/a0")


def test_a_walk_past_its_memory_bound_lists_the_same_records(installation):
    """Past ``spill_at`` records the groups go to disk; read back they are the same, in
    the same order, compact or not, and as often as asked."""
    catalogue = build_catalogue({}, None)
    for compact in (False, True):
        held = scan(installation, catalogue, Warnings(), compact=compact)
        spilled = scan(installation, catalogue, Warnings(), compact=compact, spill_at=5)
        assert len(held.entries) == len(spilled.entries) > 5
        assert _as_rows(spilled.entries) == _as_rows(held.entries)
        assert _as_rows(spilled.entries) == _as_rows(held.entries)      # read again
        assert (spilled.total_bytes, spilled.target_bytes) == \
            (held.total_bytes, held.target_bytes)
        taken = [e for t in (None, "config", "database", "logs", "agents", "state", "security")
                 for e in spilled.entries.take(t)]
        assert _as_rows(taken) == _as_rows(held.entries)


def test_database_candidates_are_the_walks_shallow_databases_largest_first(installation):
    """Found before the walk, so their snapshot copies start at once (pack.py)."""
    from poppoarc.snapshot.scan import database_candidates
    import sqlite3
    big = sqlite3.connect(installation / "state" / "big.db")
    big.execute("CREATE TABLE t (x)")
    big.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 2000)
    big.commit()
    big.close()
    (installation / "data" / "linked.db").symlink_to(installation / "state" / "big.db")
    catalogue = build_catalogue({}, None)
    found = database_candidates(installation, catalogue)
    walked = scan(installation, catalogue, Warnings()).databases
    shallow = [p for p in walked if p.count("/") == 1]
    assert found[0] == "state/big.db" and sorted(found) == sorted(shallow)
    sizes = [os.path.getsize(installation / p) for p in found]
    assert sizes == sorted(sizes, reverse=True)
    assert "data/not-a-db.db" not in found and "data/linked.db" not in found
    assert not any(p.endswith(("-wal", "-shm")) for p in found)
    # not selected, or skipped like the walk skips the store: none
    assert database_candidates(installation, build_catalogue({}, ("state",))) == []
    assert "state/big.db" not in database_candidates(installation, catalogue,
                                                     skip=(installation / "state",))
    # a directory that is a symlink is not entered, as the walk does not enter it
    (installation / "state").rename(installation / "elsewhere")
    (installation / "state").symlink_to(installation / "elsewhere")
    assert not any(p.startswith("state/") for p in database_candidates(installation, catalogue))
    assert not any(p.startswith("state/") for p in scan(installation, catalogue,
                                                        Warnings()).databases)


def test_an_owned_directory_needs_the_unowned_directories_above_it(installation):
    """With only agents selected, data/ccla is agents' but data is no target's: it is a
    shared parent, so a restore recreates it as it was (mode, times)."""
    result = scan(installation, build_catalogue({}, ("agents",)), Warnings())
    shared = [e.path for e in result.entries.group(None)]
    assert "data" in shared
    assert all(not p.startswith("data/cc") for p in shared)
    os.chmod(installation / "data", 0o750)
    result = scan(installation, build_catalogue({}, ("agents",)), Warnings())
    assert next(e for e in result.entries.group(None) if e.path == "data").mode == 0o750


def test_records_spooled_by_another_process_are_adopted_only_into_an_empty_group(tmp_path):
    from poppoarc.format.records import write_chunks
    from poppoarc.snapshot.groups import WalkGroups
    from poppoarc.snapshot.scan import record_fields, record_from_fields
    records = [(f"state/{n:05d}.json", "state") for n in range(5000)] + \
        [SourceEntry("state/zz", "state", "dir", 0o755, 0, 0, 1, 0)]
    with open(tmp_path / "spool", "wb") as out:
        write_chunks(out, map(record_fields, records))
    groups = WalkGroups(record_fields, record_from_fields)
    groups.add("agents", ("data/ccla/a", "agents"))
    spool = open(tmp_path / "spool", "rb")
    assert not groups.adopt("agents", spool, len(records))     # it has records: merge them
    assert groups.adopt("state", spool, len(records))
    assert groups.count("state") == len(records) and len(groups) == len(records) + 1
    assert list(groups.group("state")) == records               # read again on each call
    assert list(groups.take("state")) == records and spool.closed
    groups.close()


def test_one_path_ownership_is_the_walks(installation, tmp_path):
    """claimed_by_walk (a restore's last look, one path at a time, by Catalogue.owner)
    decides every path of two trees as the restore's walk does: a file it archives,
    a database sidecar, a directory of the target with nothing foreign below it."""
    from poppoarc.demo.real_layout import make_real_layout
    from poppoarc.snapshot.ownership import claimed_by_walk

    real = tmp_path / "real"
    make_real_layout(real)
    (installation / "state" / "pipe").mkdir()
    os.mkfifo(installation / "state" / "pipe" / "fifo")
    (installation / "config" / "x.token").write_text("secret")
    for root in (installation, real):
        for selected in (None, ("config", "state"), ("database",), ("agents", "security")):
            catalogue = build_catalogue({}, selected)
            result = scan(root, catalogue, Warnings(), foreign=True)
            records = {e.path: e.kind for e in result.entries if e.target is not None}
            for directory, dirs, files in os.walk(root):
                for name in dirs + files:
                    rel = os.path.relpath(os.path.join(directory, name), root)
                    if name in dirs:
                        walk = records.get(rel) == "dir" and rel not in result.impure
                    else:
                        walk = rel in records or rel in result.sidecars
                    assert claimed_by_walk(catalogue, str(root), rel) == walk, (root, selected, rel)
