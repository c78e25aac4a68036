"""The index's path rules (no path twice, none below a file or a link, a shared parent
above a record of a target), checked in path order with memory that holds no path but
the chain above the current one: same verdicts as sets of every path, in any order (many
runs are sorted on disk), and writers do list records in the order the fast path needs."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from poppoarc.format import order
from poppoarc.format.entry import IndexEntry
from poppoarc.format.order import PathRules, index_order

# few names and shallow paths, so that repeats and paths below files are frequent
paths = st.lists(st.sampled_from(["a", "b", "a.b", "a-"]), min_size=1, max_size=3).map("/".join)
records = st.lists(st.tuples(st.sampled_from([None, "config", "state"]), paths,
                             st.sampled_from(["dir", "file", "symlink"])), max_size=14)


def _broken(listed) -> set[str]:
    """Every rule the records break (a reader names the first it meets in path order)."""
    names = [path for _, path, _ in listed]
    broken = set()
    if len(set(names)) < len(names):
        broken.add("listed twice")
    leaves = {path for _, path, kind in listed if kind != "dir"}
    if any(p.startswith(leaf + "/") for p in names for leaf in leaves):
        broken.add("lies below")
    targeted = [path for target, path, _ in listed if target is not None]
    if any(target is None and not any(p.startswith(path + "/") for p in targeted)
           for target, path, _ in listed):
        broken.add("shared parent")
    return broken


def _agrees(listed, verdict) -> bool:
    broken = _broken(listed)
    return verdict is None if not broken else verdict in broken


def _verdict(listed, generated=()) -> str | None:
    """``generated``: positions of records flagged generated (runs of their own)."""
    rules = PathRules()
    entries = [IndexEntry(path, target, kind, 0o755, 0, 0, 1) for target, path, kind in listed]
    try:
        for n, entry in enumerate(entries):
            rules.add(entry.target, entry.path, entry.type == "dir", n in generated)
        rules.finish(entries)
    except ValueError as exc:
        return "listed twice" if "listed twice" in str(exc) else \
            "lies below" if "lies below" in str(exc) else \
            "shared parent" if "shared parent" in str(exc) else str(exc)
    return None


@settings(max_examples=400)
@given(records, st.booleans())
def test_same_verdict_as_sets_of_every_path(listed, in_index_order):
    if in_index_order:      # as writers list them: the fast path
        listed = sorted(listed, key=lambda r: index_order(r[0], r[1]))
    assert _agrees(listed, _verdict(listed))


@settings(max_examples=200)
@given(records)
def test_an_index_of_many_runs_is_sorted_on_disk_with_the_same_verdict(listed):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(order, "_MAX_RUNS", 1)        # every index takes the disk's way
        assert _agrees(listed, _verdict(listed))


@settings(max_examples=200)
@given(records, st.sets(st.integers(0, 13)))
def test_generated_records_do_not_change_the_verdict(listed, generated):
    listed = sorted(listed, key=lambda r: index_order(r[0], r[1]))
    assert _agrees(listed, _verdict(listed, generated))


@settings(max_examples=400)
@given(st.lists(st.tuples(st.sampled_from([None, "config", "state"]), paths, st.booleans()),
                max_size=14), st.booleans())
def test_in_index_order_means_every_record_but_generated_ones_follows_the_last(listed, sort):
    """What a restore relies on to pair records with the live tree by one merge."""
    if sort:
        listed = sorted(listed, key=lambda r: index_order(r[0], r[1]))
    rules = PathRules()
    try:
        for target, path, generated in listed:
            rules.add(target, path, False, generated)
    except ValueError:          # a path repeated in a row: the index is rejected anyway
        return
    keys = [((-2, ""), "")] + [index_order(t, p) for t, p, generated in listed if not generated]
    assert rules.in_index_order() == all(a < b for a, b in zip(keys, keys[1:]))


def test_many_records_out_of_order_are_checked_exactly():
    names = [f"state/{n:05d}" for n in range(2000)]
    random.Random(0).shuffle(names)
    listed = [("state", name, "file") for name in names]
    assert _verdict(listed) is None
    assert _verdict(listed + [("state", names[7], "file")]) == "listed twice"
    assert _verdict(listed + [("state", names[7] + "/x", "file")]) == "lies below"
    assert _verdict([(None, "data", "dir")] + listed) == "shared parent"
    assert _verdict(listed + [(None, "state", "dir")]) is None


@pytest.mark.parametrize("listed,verdict", [
    # "a" stays open past "a-b" (it sorts before "a/c"): "a/c" is below the file "a"
    ([("state", "a", "file"), ("state", "a-b", "file"), ("state", "a/c", "file")], "lies below"),
    ([("state", "a", "dir"), ("state", "a-b", "file"), ("state", "a/c", "file")], None),
    # a record below "a" whose nearest open record ("a/x") is not its ancestor
    ([(None, "a", "dir"), ("state", "a/x", "file"), ("state", "a/x-y", "file")], None),
    ([(None, "a", "dir"), (None, "a/x", "dir"), ("state", "a/x-y", "file")], "shared parent"),
    ([(None, "a", "dir"), (None, "a/x", "dir"), ("state", "a/x/y", "file")], None),
    ([(None, "a", "dir"), ("state", "a/x", "dir"), ("state", "a/x-/y", "file"),
      ("state", "a/x/z", "symlink"), ("state", "a/x/z/w", "file")], "lies below"),
])
def test_tricky_orders(listed, verdict):
    assert _verdict(listed) == verdict and _agrees(listed, verdict)


def test_writers_list_records_in_index_order(cli):
    """The fast path is what a poppoarc archive takes: every record in index order, but
    the generated environment document (last in its target)."""
    packed = cli.pack()
    code, inspected = cli.json("inspect", packed["path"], "--entries")
    assert code == 0
    keys = [index_order(e["target"], e["path"]) for e in inspected["entries"]
            if not e.get("generated")]
    assert len(keys) > 50 and keys == sorted(set(keys))
    # ... and a reader finds it so: a restore pairs it with the live tree by one merge
    from poppoarc.restore import plan
    marked = []
    real = plan.pair_with_live

    def spy(entries, *args, **kwargs):
        marked.append(entries.in_index_order)
        return real(entries, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plan, "pair_with_live", spy)
        code, _ = cli.json("unpack", packed["id"], "--dry-run")
    assert code == 0 and marked == [True]
