"""The order of index records, and the path rules checked with its help.

Writers list records in index order (spec/FORMAT.md §5.4): shared parent
directories (target null) first, then the targets in ``TARGETS`` order, each by
path; the generated environment document comes last in its target.  Readers do
not require that order, but use it: within a run of one target's records in path
order no path can repeat, so ``PathRules`` checks "no path listed twice" without
holding every path of the archive (100,000 paths: ~11 MB; the bound is on memory
at any size).
"""

from __future__ import annotations

from array import array

TARGETS = ("config", "database", "logs", "agents", "state", "security")
_RANK = {name: rank for rank, name in enumerate(TARGETS)}

# Beyond this many runs (an index in some other order) or with two long runs whose path
# ranges overlap, the paths are checked the way any order needs: all of them in one set.
_MAX_RUNS = 64
_SHORT_RUN = 1 << 16        # a run this long or shorter is compared by a set of its hashes
_hash = hash                # a name of its own, so that tests can force collisions


def index_order(target: str | None, path: str) -> tuple[int, str]:
    """Where an entry sits in a walk, a body and an index: shared parent directories
    first, then by target in ``TARGETS`` order, then by path."""
    return _RANK.get(target, -1), path


class PathRules:
    """No path listed twice; no path below a file or a link (§5.4), in 8 bytes a record
    (its path's ``hash``) beside the directories, which the second rule needs anyway.

    The records fall into runs: one target, paths increasing.  Two runs can share a path
    only where their path ranges overlap; there the shorter run's hashes are looked up in
    the other's.  A hash found is checked on the paths themselves with one more pass over
    the records (``finish``), so a collision never decides anything.
    """

    def __init__(self) -> None:
        self._hashes = array("q")           # hash(path) of every record, in order
        # [start, end, target, first path, last path, generated]: a generated record (the
        # environment document, last in its target) is a run of its own
        self._runs: list[list] = []
        self.dirs: set[str] = set()
        self.parents: set[str] = set()      # every path some record lies below

    def add(self, target: str | None, path: str, is_dir: bool, generated: bool = False) -> None:
        run = self._runs[-1] if self._runs else None
        if run is not None and run[2] == target and path >= run[4] and not (generated or run[5]):
            if path == run[4]:
                raise ValueError(f"{path!r}: listed twice")
            run[1] += 1
            run[4] = path
        else:
            position = len(self._hashes)
            self._runs.append([position, position + 1, target, path, path, generated])
        self._hashes.append(_hash(path))
        if is_dir:
            self.dirs.add(path)
        parent = path.rpartition("/")[0]
        while parent and parent not in self.parents:
            self.parents.add(parent)
            parent = parent.rpartition("/")[0]

    def in_index_order(self) -> bool:
        """Whether the records came in index order, generated ones aside: each run
        starts after the one before it ends."""
        last = (-2, "")
        for _, _, target, first, final, generated in self._runs:
            if not generated:
                if index_order(target, first) <= last:
                    return False
                last = index_order(target, final)
        return True

    def finish(self, records) -> None:
        """Raise ValueError if a rule is broken; ``records`` iterates the index again."""
        if self._may_repeat():
            _check_unique(records)
        # a parent that is not a directory record is a file or a link record, or none
        parent_hashes = {_hash(p) for p in self.parents if p not in self.dirs}
        if parent_hashes and not parent_hashes.isdisjoint(self._hashes):
            below = sorted(r.path for r in records if r.type != "dir" and r.path in self.parents)
            if below:
                raise ValueError(f"a path lies below {below[0]!r}, which is not a directory")

    def _may_repeat(self) -> bool:
        """Whether two runs may share a path (then every path is checked)."""
        if len(self._runs) > _MAX_RUNS:
            return True
        hashes = memoryview(self._hashes)
        runs = sorted(self._runs, key=lambda run: run[1] - run[0])
        for n, (start, end, _, first, last, _) in enumerate(runs):
            others = [r for r in runs[n + 1:] if r[3] <= last and first <= r[4]]
            if not others:
                continue
            if end - start > _SHORT_RUN:
                return True
            mine = set(hashes[start:end])
            if any(not mine.isdisjoint(hashes[r[0]:r[1]]) for r in others):
                return True
        return False


def _check_unique(records) -> None:
    seen: set[str] = set()
    for record in records:
        if record.path in seen:
            raise ValueError(f"{record.path!r}: listed twice")
        seen.add(record.path)
