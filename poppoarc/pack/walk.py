"""The pack's walk: the installation's paths by target, what the body needs of them.

Compact records (a regular file with one link is (path, target); the body takes its
facts from ``fstat``), the directories of one target walked by a helper beside this
walk (``subtree.py``), each database's snapshot started as the walk finds it; then the
secret files join the security target when there is a key to seal them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import Warnings
from ..snapshot.catalogue import Catalogue
from ..snapshot.environment import dotenv_names
from ..snapshot.scan import FILE, SourceEntry, Walk, path_of


def walk_installation(root, catalogue: Catalogue, warnings: Warnings, skip=(),
                      on_database=None, helper=None, stat_facts: bool = False):
    """The pack's walk (compact records): with ``helper``, this process walks all but the
    helper's directories and merges what the helper found there; if the helper fails,
    it walks the whole tree again (a rare case, and the simplest that keeps the order).
    ``stat_facts``: plain files' records carry their lstat facts (``Walk``; not with a
    helper, whose records do not).  Returns (the walk's ``ScanResult``, the helper if it is still wanted)."""
    if helper is not None:
        own = Warnings()
        walk = Walk(root, catalogue, own, skip, compact=True, on_database=on_database,
                    leave=helper.directories)
        walk.run()
        if helper.merge_into(walk):
            for message in own:
                warnings.add(message)
            warnings.skipped.extend(own.skipped)
            return walk.finish(), helper
        walk.result.entries.close()
    walk = Walk(root, catalogue, warnings, skip, compact=True, on_database=on_database,
                stat_facts=stat_facts)
    walk.run()
    return walk.finish(), None


def add_secrets(root: Path, groups, secrets: list[str], warnings: Warnings) -> int:
    """Secret files join the security target, to be stored sealed; returns their bytes."""
    added = []
    for rel in secrets:
        try:
            st = os.lstat(root / rel)
        except OSError as exc:
            warnings.skip(rel, f"cannot stat ({exc.strerror}); not archived")
            continue
        if stat.S_ISREG(st.st_mode):
            added.append(SourceEntry(rel, "security", FILE, stat.S_IMODE(st.st_mode), st.st_uid,
                                     st.st_gid, st.st_mtime_ns, st.st_size, st.st_dev, st.st_ino, 1,
                                     ctime_ns=st.st_ctime_ns))
    groups.add_sorted("security", added, key=path_of)
    return sum(entry.size for entry in added)


def dotenv_names_of(root: Path, secrets: list[str]) -> dict[str, list[str]]:
    """The variable names of each ``.env*`` file among the secrets (values never)."""
    names = {}
    for rel in secrets:
        if rel.startswith(".env"):
            try:
                names[rel] = dotenv_names((root / rel).read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
    return names
