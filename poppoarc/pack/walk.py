"""The pack's walk: the installation's paths by target, what the body needs of them.

Compact records (a regular file with one link is (path, target); the body takes its
facts from ``fstat``), the directories of one target walked by a helper beside this
walk (``subtree.py``), each database's snapshot started as the walk finds it, the symbolic
links a restore would refuse left out (named); then the secret files join the security
target when there is a key to seal them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import Warnings
from ..snapshot.catalogue import Catalogue
from ..snapshot.environment import dotenv_names
from ..restore.safety import escapes
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
            result = walk.finish()
            dropped = leave_out_escaping_links(result, warnings)
            if helper.target in dropped.links_left_out:
                helper.aligned = False      # its spool still holds them: pack from this walk
            return result, helper
        walk.result.entries.close()
    walk = Walk(root, catalogue, warnings, skip, compact=True, on_database=on_database,
                stat_facts=stat_facts)
    walk.run()
    return leave_out_escaping_links(walk.finish(), warnings), None


def escaping_links(links) -> dict[str, str]:
    """The symbolic links (``[path, text, ...]``) that leave the installation when followed
    through the others, as a restore judges an archive holding them (restore/safety.py's
    ``escapes``: the same function), with their texts.  Leaving one out can change where
    another leads, so they are judged again until none escapes."""
    table = {link[0]: link[1] for link in links}
    escaping: dict[str, str] = {}
    while True:
        found = [path for path, text in table.items() if escapes(path, text, table.get)]
        if not found:
            return escaping
        for path in found:
            escaping[path] = table.pop(path)


def leave_out_escaping_links(result, warnings: Warnings):
    """Leave out of the walk's records every link ``escaping_links`` names, each named in a
    warning (``Warnings.skip``), so that every archive pack writes verifies; and the shared
    parent directories that had nothing else below them.  Returns ``result``, whose
    ``links_left_out`` maps each target to the paths left out of it."""
    result.links_left_out = {}
    escaping = escaping_links(result.links)
    if not escaping:
        return result
    groups = result.entries
    for path, target in ((link[0], link[2]) for link in result.links if link[0] in escaping):
        result.links_left_out.setdefault(target, set()).add(path)
        warnings.skip(path, f"symbolic link to {escaping[path]!r} not archived: followed "
                            "through the installation's other symbolic links it leaves the "
                            "installation, which a restore refuses to create")
    for target, paths in result.links_left_out.items():
        groups.drop(target, paths, path_of)
    result.links = [link for link in result.links if link[0] not in escaping]
    _drop_empty_parents(groups, set().union(*result.links_left_out.values()))
    return result


def _drop_empty_parents(groups, removed: set[str]) -> None:
    """Shared parents (target None) are records because something lies below them: those
    above only ``removed`` paths go too (a rare case: one pass over the records)."""
    shared = {path_of(record) for record in groups.group(None)}
    candidates = {parent for path in removed for parent in _ancestors(path)} & shared
    if not candidates:
        return
    needed = set()
    for target in groups.names()[1:]:
        for record in groups.group(target):
            for parent in _ancestors(path_of(record)):
                if parent in candidates:
                    needed.add(parent)
    empty = candidates - needed
    if empty:
        groups.drop(None, empty, path_of)


def _ancestors(path: str):
    while "/" in path:
        path = path.rpartition("/")[0]
        yield path


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
