"""The restore plan's pieces that keep memory flat: changes listed from disk, and
the live lookup that lets a restore into an empty root hold no restored paths."""

import os

from poppoarc.restore.plan import ADD, CHANGE, KEEP, REMOVE, TargetPlan, staging_paths
from poppoarc.restore.stage import live_lookup
from poppoarc.format.entry import IndexEntry


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


def test_staging_keeps_only_the_restored_paths_that_are_live():
    entries = [IndexEntry("state", "state", "dir", 0o755, 0, 0, 1),
               IndexEntry("state/new.json", "state", "file", 0o644, 0, 0, 1, 2),
               IndexEntry("state/old.json", "state", "file", 0o644, 0, 0, 1, 2),
               IndexEntry("state/elsewhere", "state", "file", 0o644, 0, 0, 1, 2),
               IndexEntry("data/h.db", "database", "file", 0o644, 0, 0, 1, 2, "a" * 64,
                          sqlite=True)]
    asked = []

    def is_live(path):
        asked.append(path)
        return path == "state/elsewhere"       # live, but not in the walk of the targets

    paths = staging_paths(entries, ("state", "database"), True, ["state", "state/old.json"],
                          is_live)
    assert paths.restored == {"state", "state/old.json", "state/elsewhere", "data/h.db"}
    assert set(paths.dropped) == {"state", "state/old.json"}
    assert asked == ["state/new.json", "state/elsewhere"]     # the walk's paths need no lookup


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
