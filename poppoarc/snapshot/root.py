"""Whether a directory is a PoppoBuilder installation, before anything is backed up from it
or restored into it.

A root that is not one is almost always a mistake: a typo in ``POPPO_ROOT`` in a cron line,
a disk not mounted, ``--root`` pointing one level too high.  Packing it would make an empty
backup "successfully" every night; restoring into it would mix an installation into
someone else's files.  So ``pack``, ``schedule`` and ``unpack`` refuse it (exit 20) unless
forced, and ``doctor`` reports it.  One exception: ``unpack`` into an empty root (a new
machine) is what a restore is for.

``root_problem`` decides from ``RootFacts`` alone (pure); ``look_at_root`` gathers them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..i18n import N_

# What every installation of PoppoBuilder Suite has, one of them at least: its
# configuration file, its home for agent state, its state and its data directories.
MARKERS = ("config/config.json", ".poppo/", "state/", "data/")
OWN_PREFIX = ".poppoarc"        # poppoarc's own names (lock, journal, staging)


@dataclass(frozen=True)
class RootFacts:
    path: str
    exists: bool
    is_dir: bool
    markers: tuple[str, ...] = ()       # the MARKERS found
    others: tuple[str, ...] = ()        # top-level names that are neither poppoarc's own
                                        # nor a place of its store or keys (sorted)


def look_at_root(root, places=()) -> RootFacts:
    """The facts ``root_problem`` needs; ``places``: directories poppoarc keeps (its store
    and key directory) whose top-level names inside the root do not count as content."""
    path = os.path.abspath(root)
    if not os.path.lexists(path):
        return RootFacts(path, False, False)
    if not os.path.isdir(path):
        return RootFacts(path, True, False)
    found = []
    for marker in MARKERS:
        check = os.path.isdir if marker.endswith("/") else os.path.isfile
        if check(os.path.join(path, marker.rstrip("/"))):
            found.append(marker)
    own = set()
    for place in places:
        relative = os.path.relpath(os.path.abspath(place), path)
        if relative != "." and relative != ".." and not relative.startswith("../"):
            own.add(relative.split("/", 1)[0])
    try:
        names = os.listdir(path)
    except OSError as exc:
        raise SourceError(f"cannot read installation root: {exc.strerror}", path=path) from None
    others = sorted(n for n in names if not n.startswith(OWN_PREFIX) and n not in own)
    return RootFacts(path, True, True, tuple(found), tuple(others))


def root_problem(facts: RootFacts, *, empty_is_fine: bool = False) -> str | None:
    """Why ``facts.path`` is not a root to work on, or None.  ``empty_is_fine``: a root that
    does not exist yet or holds nothing (but poppoarc's own places) is accepted — a
    restore onto a new machine."""
    if not facts.exists:
        return None if empty_is_fine else N_("does not exist")
    if not facts.is_dir:
        return N_("is not a directory")
    if facts.markers or (empty_is_fine and not facts.others):
        return None
    if not facts.others:
        return N_("is empty: not a PoppoBuilder installation")
    return N_("is not a PoppoBuilder installation (it has none of config/config.json, "
              ".poppo/, state/, data/)")


def require_installation(root, places=(), *, force: bool = False,
                         empty_is_fine: bool = False, doing: str = "back it up") -> None:
    """Raise ``SourceError`` (exit 20) naming the root and the way out, unless ``force``."""
    if force:
        return
    problem = root_problem(look_at_root(root, places), empty_is_fine=empty_is_fine)
    if problem:
        raise SourceError(f"{problem}; check --root or $POPPO_ROOT, or pass --force to "
                          f"{doing} anyway", path=Path(root))
