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
    assert compact.compact_bytes == sum(plain[p].size for p, _ in tuples)
    kept = [e for e in compact.entries if isinstance(e, SourceEntry) and e.kind == FILE]
    assert kept and all(e.nlink > 1 for e in kept)
