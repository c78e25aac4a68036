"""What the manifest says about the index: per-target counts and the databases (§5.2).

The head's ``targets``, ``files`` and ``databases`` are what ``list`` and
``inspect`` show before any body byte is read, so a reader that has the index
checks that they are exactly what the index implies.  ``Tally`` sums them
record by record while the index is checked (here and in its helper process);
``check`` compares.
"""

from __future__ import annotations

from ..errors import CorruptArchive
from .entry import is_int


# A manifest lists at most what its head (1 MiB) or its index header line (4 MiB) holds:
# more database records' paths than this cannot all be listed, so the tally stops keeping
# them (memory) and the check fails.
MAX_DATABASE_BYTES = 8 << 20


class Tally:
    """Per target: [records, files, content bytes]; per database record: (size, sha256)."""

    __slots__ = ("targets", "databases", "_database_bytes")

    def __init__(self) -> None:
        self.targets: dict[str | None, list[int]] = {}
        self.databases: dict[str, list] | None = {}
        self._database_bytes = 0

    def add(self, entry) -> None:
        counts = self.targets.get(entry.target)
        if counts is None:
            counts = self.targets[entry.target] = [0, 0, 0]
        counts[0] += 1
        if entry.generated:             # poppoarc's own document: a record, not a file
            return
        if entry.type == "file":
            counts[1] += 1
            counts[2] += entry.size     # the tree's bytes, also when an ancestor holds them
            if entry.sqlite and self.databases is not None:
                self._database_bytes += len(entry.path) + 100
                self.databases[entry.path] = [entry.size, entry.sha256]
                if self._database_bytes > MAX_DATABASE_BYTES:
                    self.databases = None       # more than any manifest can list
        elif entry.type == "hardlink":
            counts[1] += 1              # a file of the tree, whose bytes are counted once

    def to_json(self) -> dict:
        return {"targets": [[t, c] for t, c in self.targets.items()],
                "databases": self.databases}

    def merge(self, document: dict) -> None:
        """Add what a helper process summed (``to_json``) to this tally."""
        for target, counts in document["targets"]:
            mine = self.targets.setdefault(target, [0, 0, 0])
            for n, value in enumerate(counts):
                mine[n] += value
        if self.databases is None or document["databases"] is None:
            self.databases = None
            return
        self.databases.update(document["databases"])
        self._database_bytes += sum(len(path) + 100 for path in document["databases"])
        if self._database_bytes > MAX_DATABASE_BYTES:
            self.databases = None


def check(manifest: dict, tally: Tally, path: object) -> None:
    """``manifest`` with the sealed fields merged in (an archive sealed whole, §11.4)."""
    targets = manifest["targets"]
    if not isinstance(targets, dict):
        raise CorruptArchive("manifest targets are malformed", path=path)
    unknown = sorted(t for t in tally.targets if t is not None and t not in targets)
    if unknown:
        raise CorruptArchive(f"index has records of targets the manifest does not list: "
                             f"{', '.join(unknown)}", path=path)
    for name, stats in targets.items():
        expected = tally.targets.get(name, [0, 0, 0])
        stated = [stats.get(k) for k in ("entries", "files", "size")] \
            if isinstance(stats, dict) else None
        if stated is None or not all(map(is_int, stated)) or stated != expected:
            raise CorruptArchive(f"manifest says target {name} has {_counts(stated)}, its index "
                                 f"{_counts(expected)}", path=path)
    files = sum(counts[1] for target, counts in tally.targets.items() if target is not None)
    if not is_int(manifest["files"]) or manifest["files"] != files:
        raise CorruptArchive(f"manifest says {manifest['files']} files, its index {files}",
                             path=path)
    databases = manifest["databases"]
    stated_dbs = {d.get("path"): [d.get("size"), d.get("sha256")] for d in databases
                  if isinstance(d, dict)} if isinstance(databases, list) else None
    if stated_dbs is None or tally.databases is None or len(stated_dbs) != len(databases) \
            or stated_dbs != tally.databases:
        raise CorruptArchive("manifest databases differ from the index's database records",
                             path=path)


def _counts(values) -> str:
    if not values:
        return "malformed counts"
    return f"{values[0]} records, {values[1]} files, {values[2]} bytes"
