"""The restore plan's pieces that keep memory flat: changes listed from disk, and
the live lookup that lets a restore into an empty root hold no restored paths."""

import os

from poppoarc.format.entry import IndexEntry
from poppoarc.format.order import index_order
from poppoarc.restore.plan import (ADD, CHANGE, KEEP, REMOVE, TargetPlan, pair_with_live,
                                   staging_paths)
from poppoarc.restore.stage import live_lookup
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


def test_staging_knows_directories_databases_and_live_paths_outside_the_walk():
    """Paired with the walk, a restored file needs no entry (the walk drops it); the
    rest are kept only if live: here state/elsewhere, which another target owns now."""
    asked = []

    def is_live(path):
        asked.append(path)
        return path == "state/elsewhere"

    walk = [("state/old.json", "state"), ("config/x", "config")]
    for entries in (_Ordered(_records()), _records()):      # merged, or by dictionary
        asked.clear()
        paths = staging_paths(entries, ("state", "security"), True, walk, is_live)
        assert paths.restored == {"state", "state/elsewhere", "data/h.db"}
        assert sorted(asked) == ["state/elsewhere", "state/new.json"]


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


def test_live_lookup_asks_the_disk_once_per_missing_directory(tmp_path, monkeypatch):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "here.json").write_text("{}")
    os.symlink("nowhere", tmp_path / "state" / "dangling")
    calls = []
    real_lstat = os.lstat
    monkeypatch.setattr(os, "lstat", lambda path, *a, **k: calls.append(path) or real_lstat(path))
    is_live = live_lookup(tmp_path)
    assert is_live("state/here.json") and is_live("state/dangling")
    assert not is_live("state/gone.json")
    assert not is_live("state/here.json/below")             # under a file: not there
    calls.clear()
    assert not any(is_live(f"data/agents/{n}.json") for n in range(100))
    assert len(calls) <= 3       # the first path and its parent; then the cache answers
