"""The index's path rules (no path twice, none below a file or a link), checked in memory
that does not hold every path: same verdicts as sets of every path, in any order, with
hash collisions forced, and writers do list records in the order the fast path needs."""

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


def _expected(listed) -> str | None:
    names = [path for _, path, _ in listed]
    if len(set(names)) < len(names):
        return "listed twice"
    leaves = {path for _, path, kind in listed if kind != "dir"}
    if any(p.rpartition("/")[0].startswith(leaf) and (p + "/").startswith(leaf + "/")
           for p in names for leaf in leaves if p != leaf):
        return "lies below"
    return None


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
            "lies below" if "lies below" in str(exc) else str(exc)
    return None


@settings(max_examples=400)
@given(records, st.booleans())
def test_same_verdict_as_sets_of_every_path(listed, in_index_order):
    if in_index_order:      # as writers list them: the fast path
        listed = sorted(listed, key=lambda r: index_order(r[0], r[1]))
    assert _verdict(listed) == _expected(listed)


@settings(max_examples=200)
@given(records, st.booleans())
def test_hash_collisions_are_checked_on_the_paths(listed, in_index_order, ):
    if in_index_order:
        listed = sorted(listed, key=lambda r: index_order(r[0], r[1]))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(order, "_hash", lambda path: len(path) % 2)   # collisions everywhere
        assert _verdict(listed) == _expected(listed)


@settings(max_examples=200)
@given(records, st.sets(st.integers(0, 13)))
def test_generated_records_do_not_change_the_verdict(listed, generated):
    listed = sorted(listed, key=lambda r: index_order(r[0], r[1]))
    assert _verdict(listed, generated) == _expected(listed)


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
    keys = [(-2, "")] + [index_order(t, p) for t, p, generated in listed if not generated]
    assert rules.in_index_order() == all(a < b for a, b in zip(keys, keys[1:]))


def test_many_records_out_of_order_are_checked_exactly():
    names = [f"state/{n:05d}" for n in range(2000)]
    random.Random(0).shuffle(names)
    listed = [("state", name, "file") for name in names]
    assert _verdict(listed) is None
    assert _verdict(listed + [("state", names[7], "file")]) == "listed twice"
    assert _verdict(listed + [("state", names[7] + "/x", "file")]) == "lies below"


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
