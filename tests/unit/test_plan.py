"""The restore plan's pieces: changes listed from disk (memory stays flat), the pairing
with the live walk, and the paths the swap replaces whole (``SwapUnits``)."""

from poppoarc.format.entry import IndexEntry
from poppoarc.format.order import index_order
from poppoarc.restore.plan import (ADD, CHANGE, KEEP, REMOVE, SwapUnits, TargetPlan,
                                   pair_with_live, staging_paths)
from poppoarc.snapshot.scan import SourceEntry


def test_changes_are_counted_and_listed_by_path_from_both_sides():
    plan = TargetPlan("state")
    for path, action, size in [("state/a", ADD, 3), ("state/c", CHANGE, 5), ("state/d", KEEP, 7),
                               ("state/f", ADD, 11)]:
        plan.add(path, action, size)
    for path in ("state/b", "state/e"):            # live paths, in walk order
        plan.add(path, REMOVE, 1)
    listed = [(c.path, c.action, c.size) for c in plan.changes()]
    assert listed == [("state/a", ADD, 3), ("state/b", REMOVE, 1), ("state/c", CHANGE, 5),
                      ("state/e", REMOVE, 1), ("state/f", ADD, 11)]
    assert [c.path for c in plan.changes()] == [p for p, _, _ in listed]     # read again
    assert (plan.count(ADD), plan.bytes(ADD), plan.count(KEEP), plan.bytes(KEEP)) == (2, 14, 1, 7)
    document = plan.to_json()
    assert document[REMOVE] == {"paths": 2, "bytes": 2}
    assert [c["path"] for c in document["changes"]] == [p for p, _, _ in listed]


class _Ordered(list):
    in_index_order = True       # as decode_index marks an index in index order


def _records():
    return [IndexEntry("state", "state", "dir", 0o755, 0, 0, 1),
            IndexEntry("state/elsewhere", "state", "file", 0o644, 0, 0, 1, 2),
            IndexEntry("state/new.json", "state", "file", 0o644, 0, 0, 1, 2),
            IndexEntry("state/old.json", "state", "file", 0o644, 0, 0, 1, 2),
            IndexEntry("data/h.db", "security", "file", 0o644, 0, 0, 1, 2, "a" * 64,
                       sqlite=True)]


def test_staging_paths_give_units_link_sources_and_the_directories_inside_units():
    walk = [SourceEntry("state", "state", "dir", 0o755, 0, 0, 1, 0, ctime_ns=7),
            SourceEntry("state/old.json", "state", "file", 0o644, 0, 0, 1, 2)]
    records = _records() + [IndexEntry("state/copy", "state", "hardlink", 0o644, 0, 0, 1, 2,
                                       link="state/new.json")]
    for entries in (_Ordered(records), records):
        paths = staging_paths(entries, ("state", "security"), True, walk, {"data"},
                              ["data/h.db-wal"])
        assert paths.units.sorted() == ["data/h.db", "data/h.db-wal", "state"]
        assert paths.link_sources == {"state/new.json"}
        assert paths.unit_dirs == [("state", 7)]


def test_a_unit_is_the_highest_path_with_nothing_foreign_below():
    """data/ holds the agents' files (not restored): a database restore swaps the
    database files, never data/; state/ holds nothing foreign: swapped whole."""
    units = SwapUnits({"data", "data/ccla"})
    for path in ("data/ccla.db", "data/ccla/x.db", "state/a/b.json", "state/c.json", "new/x"):
        units.add(path, False, True)
    assert units.sorted() == ["data/ccla.db", "data/ccla/x.db", "new", "state"]
    assert units.covers("state/a") and units.covers("data/ccla.db")
    assert not units.covers("data") and not units.covers("data/ccla/y.json")
    assert units.conflicts == []
    units.add("data/ccla", False, True)         # a file where a foreign directory is
    units.add("data", True, True)               # a directory that stays in place
    assert units.conflicts == ["data/ccla"]
    assert "data" not in units.units


def test_pairing_by_order_and_by_dictionary_agree():
    """The merge (index in index order) and the dictionary (any other order) pair the same
    records: by target and path, so a path that changed targets is removed and added."""
    walk = [SourceEntry("state", "state", "dir", 0o755, 0, 0, 1, 0),
            SourceEntry("state/a", "state", "file", 0o644, 0, 0, 1, 2),
            SourceEntry("state/new.json", "config", "file", 0o644, 0, 0, 1, 2),
            SourceEntry("state/old.json", "state", "file", 0o644, 0, 0, 1, 2),
            SourceEntry("state/z", "state", "file", 0o644, 0, 0, 1, 2)]
    walk.sort(key=lambda e: index_order(e.target, e.path))

    def pairs(entries):
        return sorted((r.path if r else "-", l.path if l else "-", (r or l).target)
                      for r, l in pair_with_live(entries, walk, ("config", "state")))

    merged = pairs(_Ordered(_records()))
    assert merged == pairs(_records())
    assert ("state/new.json", "-", "state") in merged and \
        ("-", "state/new.json", "config") in merged
    assert ("state/old.json", "state/old.json", "state") in merged
    assert ("-", "state/a", "state") in merged and ("state/elsewhere", "-", "state") in merged
