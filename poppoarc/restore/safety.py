"""Where a restore may write: the one confinement rule (spec/FORMAT.md §13).

An archive is signed, but a signature says who made it, not that it is harmless: the
signing key of a compromised machine, or of another trusted host, signs anything.  So
every record of an index is judged here before anything is written, by ``verify``,
``inspect``, the restore plan and ``unpack`` alike (each passes ``Confinement`` to
``reader.read_index`` as its ``visit``, then calls ``finish``): what a restore would
refuse, ``verify`` refuses first, with the same error.

The rules (CPython's ``tarfile`` ``data`` filter is the model; poppoarc never extracts
with ``tarfile``):

* a path is relative and plain (§1: no ``..``, no empty or ``.`` component, no NUL, at
  most 4096 bytes, 255 per name, 256 levels);
* every record lies in the area of the target it names, as this installation's target
  catalogue decides (``Catalogue.owner``: the walk's own rule), and that target is one
  the manifest lists; a record of no target is a directory above records of targets; a
  custom target's area is this installation's ``backup.targets.NAME``, else the one the
  manifest records, which must not reach poppoarc's own places (``recorded_area_problem``);
* nothing lies in a place poppoarc keeps: a name starting with ``.poppoarc`` (the
  restore's journal and staging, the lock, the generated environment document), the
  store or the key directory when they are inside the installation, SQLite sidecars;
* a symlink's target is relative and stays inside the root, resolved as the kernel
  resolves it: through the symlinks the archive itself creates (``a -> ..`` then
  ``b -> a/x`` leaves the root, though ``a/x`` does not look like it);

A reader that writes or reads only some records (a restore of some targets, or of
``--include``/``--exclude`` paths; ``ls`` or ``dump`` of some paths) passes ``selects``:
the rules of where a restore may write judge the records it selects, and the others only
for what makes the archive itself corrupt (a target it does not know or list, a record of
no target that is not a directory, a database record that is not one).  So one unsafe
record (poppoarc 0.1 packed absolute symlinks: ``state/abs -> /etc/passwd``) stops
``verify`` and a restore of it, while ``unpack --exclude state/abs`` restores the rest.
The selected symlinks are still resolved through every symlink of the archive: a
restore of ``config`` may already have made ``config/l1 -> ../state`` live, and a later
restore of ``state`` must not add ``state/l2 -> ../config/l1/../..``.
* owners fit the system's ids (``--same-owner`` sets them; 2^32 - 1 means "unchanged");
* a record of target ``database`` is a database record (the manifest's ``targets`` and
  ``databases`` agreeing with the index is a rule of every reader: format/summary.py).

Decisions are pure; ``Confinement.for_settings`` reads the file system once to place the
store and the key directory.  Memory is bounded: the symlinks wait in a ``PathTable``
(on disk when many) until every one is known.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import CorruptArchive, UnsafeArchiveEntry
from ..format.entry import IndexEntry
from ..format.order import TARGETS
from ..format.paths import link_target_problem, path_problem
from ..format.spill import PathTable
from ..i18n import N_
from ..snapshot.areas import area_problem, with_recorded
from ..snapshot.catalogue import Catalogue, area_catalogue

RESERVED_PREFIX = ".poppoarc"
ENVIRONMENT = ("config", ".poppoarc/environment.json")   # the generated record (never written)
ARCHIVE_SUFFIX = ".poppo.tar.zst"
MAX_ID = 2**32 - 2              # uid_t/gid_t; (uid_t)-1 asks chown to change nothing
MAX_SYMLINK_HOPS = 40           # Linux's limit on links followed in one lookup


@dataclass(frozen=True)
class Places:
    """Directories inside the installation that no archive may write into, as paths
    relative to the root ("" when it is the root itself)."""

    store: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()


def _relative_places(root, directory) -> tuple[str, ...]:
    """``directory`` relative to ``root`` when it is inside it, literally or after
    resolving symlinks (both forms: a record could name either)."""
    found = []
    for base, path in ((os.path.abspath(root), os.path.abspath(directory)),
                       (os.path.realpath(root), os.path.realpath(directory))):
        relative = os.path.relpath(path, base)
        if relative == ".":
            found.append("")
        elif relative != ".." and not relative.startswith("../"):
            found.append(relative)
    return tuple(dict.fromkeys(found))


def places_of(settings) -> Places:
    local_store = settings.storage.get("type") != "s3"
    return Places(_relative_places(settings.root, settings.store) if local_store else (),
                  _relative_places(settings.root, settings.key_dir))


class Confinement:
    """The confinement rule for one archive (its manifest) in one installation (its
    catalogue and places); ``visit`` each record, then ``finish``."""

    def __init__(self, manifest: dict, catalogue: Catalogue, places: Places, path: object,
                 selects=None):
        """``selects(entry)``: whether the reader writes (or reads) that record — a restore
        of some targets, or of ``--include``/``--exclude`` paths (``selection``); None:
        every record (``verify``, which judges the archive whole)."""
        self.manifest, self.catalogue, self.places, self.path = manifest, catalogue, places, path
        self._listed = set(manifest["targets"])
        self._pre_restore = manifest["type"] == "pre-restore"
        self._selects = selects
        self._symlinks = PathTable()

    @classmethod
    def for_settings(cls, settings, manifest: dict, path: object,
                     selects=None) -> "Confinement":
        """The rule for ``manifest`` here; ``UnsafeArchiveEntry`` at once for a custom area
        the archive records that no restore may use (``recorded_area_problem``)."""
        places = places_of(settings)
        problem = recorded_area_problem(manifest, places)
        if problem:
            raise UnsafeArchiveEntry(problem, path=path)
        targets = with_recorded(settings.backup.get("targets", {}), manifest)
        return cls(manifest, area_catalogue(targets), places, path, selects)

    # -- one record --------------------------------------------------------------
    def problem(self, entry: IndexEntry) -> Exception | None:
        """Why a restore may not write ``entry`` (the error to raise), or None."""
        def unsafe(why: str) -> UnsafeArchiveEntry:
            return unsafe_entry(entry.path, why, self.path)

        syntax = path_problem(entry.path)
        if syntax:
            return unsafe(syntax)
        corrupt = self._target_problem(entry)
        if corrupt is not None:
            return corrupt
        target = entry.target
        if entry.generated:
            if (target, entry.path) != ENVIRONMENT or entry.type != "file":
                return unsafe("only the environment document is generated")
            return None         # described, never restored
        place = self._reserved(entry)
        if place:
            return unsafe(place)
        corrupt = self._database_problem(entry)
        if corrupt is not None:
            return corrupt
        if target is not None:
            area = self._area_problem(entry)
            if area:
                return unsafe(area)
        if entry.type == "symlink":
            link = link_target_problem(entry.path, entry.link)
            if link:
                return unsafe(f"symlink to {entry.link!r}: {link}")
        if entry.uid > MAX_ID or entry.gid > MAX_ID:
            return unsafe(f"owner {entry.uid}:{entry.gid} is not a valid user or group id")
        return None

    def record_problem(self, entry: IndexEntry) -> CorruptArchive | None:
        """What makes the archive itself corrupt, whatever a reader selects of it: a record
        of a target it does not know or list, of no target yet not a directory, of target
        database yet not a database."""
        return self._target_problem(entry) or \
            (None if entry.generated else self._database_problem(entry))

    def _target_problem(self, entry: IndexEntry) -> CorruptArchive | None:
        target = entry.target
        if target is not None and target not in self._listed:
            known = target in TARGETS or target in (self.manifest.get("areas") or {})
            which = N_("the manifest does not list") if known else N_("is unknown")
            return CorruptArchive(f"entry {entry.path!r} names target {target!r}, which {which}",
                                  path=self.path)
        if target is None and entry.type != "dir":
            return CorruptArchive(f"entry {entry.path!r} has no target and is not a directory",
                                  path=self.path)
        return None

    def _database_problem(self, entry: IndexEntry) -> CorruptArchive | None:
        if entry.target == "database" and not entry.sqlite and not self._pre_restore:
            return CorruptArchive(f"entry {entry.path!r} of target database is not a database "
                                  "record", path=self.path)
        return None

    def _reserved(self, entry: IndexEntry) -> str | None:
        path = entry.path
        if path.startswith(RESERVED_PREFIX) or "/" + RESERVED_PREFIX in path:
            return f"a name starting with {RESERVED_PREFIX!r} is poppoarc's own"
        for what, places in (("store", self.places.store), ("key directory", self.places.keys)):
            for place in places:
                if place == "":     # the root itself: its archives, or its keys
                    if what == "store" and "/" not in path and path.endswith(ARCHIVE_SUFFIX):
                        return "it would replace an archive of the store"
                    continue
                if path == place or path.startswith(place + "/"):
                    return f"it lies in the {what} ({place})"
                if entry.type != "dir" and place.startswith(path + "/"):
                    return f"it would replace a directory holding the {what} ({place})"
        return None

    def _area_problem(self, entry: IndexEntry) -> str | None:
        """Whether the record lies in its target's area (``Catalogue.owner``)."""
        target, path = entry.target, entry.path
        kind = "sqlite" if entry.sqlite else "file" if entry.type == "hardlink" else entry.type
        if entry.sqlite and entry.type != "file":
            return "a database record that is not a file"
        owner = self.catalogue.owner(path, kind)
        if owner == target:
            return None
        if target == "database" and entry.type == "file" and self._pre_restore \
                and self.catalogue.database_candidate(path):
            return None         # a damaged database a safety archive kept byte for byte
        belongs = f"target {owner!r}" if owner else "no target"
        return (f"it lies outside the area of target {target!r} (here it belongs to "
                f"{belongs}; an archive made with other backup.targets settings needs "
                "the same settings here)")

    # -- the index as a whole ---------------------------------------------------------
    def visit(self, position: int, entry: IndexEntry) -> None:
        # A record the reader leaves out is never written: only what makes the archive
        # corrupt counts for it (a shared parent, of no target, is scaffolding any restore
        # may make).  Its symlink is still one the selected links are resolved through:
        # an earlier restore of other targets of this archive may have made it.
        chosen = self._selects is None or entry.target is None or self._selects(entry)
        error = self.problem(entry) if chosen else self.record_problem(entry)
        if error is not None:
            raise error
        if entry.type == "symlink":
            self._symlinks.add(entry.path, (entry.link, chosen))

    def finish(self) -> None:
        """The rule that needs every record: symlinks resolved through one another."""
        try:
            self._check_symlinks()
        finally:
            self.close()

    def _check_symlinks(self) -> None:
        """Resolve every symlink through the archive's symlinks (the kernel's way)."""
        if not self._symlinks.count:
            return
        def lookup(path: str) -> str | None:
            found = self._symlinks.get(path)
            return found[0][0] if found else None

        for path, (link, chosen) in self._symlinks.items():
            if chosen and escapes(path, link, lookup):
                raise unsafe_entry(path, f"symlink to {link!r} leaves the installation through "
                                   "the archive's own symlinks", self.path)

    def close(self) -> None:
        self._symlinks.close()


def unsafe_entry(entry_path: str, why: str, archive: object) -> UnsafeArchiveEntry:
    """The refusal of one record; ``entry`` names it (a restore can leave it out:
    ``refusals.unsafe_hint``)."""
    error = UnsafeArchiveEntry(f"entry {entry_path!r}: {why}", path=archive)
    error.entry = entry_path
    return error


def recorded_area_problem(manifest: dict, places: Places) -> str | None:
    """Why an area the archive records for a custom target (its manifest's ``areas``,
    spec §5.2) is one no restore may use, or None: each ``include`` glob is plain and
    relative and reaches neither ``.poppoarc`` nor the store nor the key directory
    (``catalogue.area_problem``, the rule ``backup.targets`` meets at pack time too;
    spec §13 rule 2).  Areas of the built-in targets are this installation's own."""
    for name, include in (manifest.get("areas") or {}).items():
        for glob in include:
            problem = area_problem(glob, places)
            if problem:
                return f"custom target {name!r}: {problem}"
    return None


def escapes(path: str, link: str, lookup) -> bool:
    """Whether the symlink ``path -> link`` resolves outside the root when the kernel
    follows it through the links ``lookup(path)`` knows (a link's text, or None).

    Each component is taken in turn from the directory holding the link; a component
    that is a known link is replaced by its text, read from the directory holding that
    link, and ``..`` leaves the component before it (a real directory: links were
    replaced), so ``..`` after a link goes where the kernel goes, not where the text
    suggests.  More than 40 links in one resolution is a loop (ELOOP): nothing escapes.
    """
    current = path.split("/")[:-1]
    pending = list(reversed(link.split("/")))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                return True
            current.pop()
            continue
        current.append(part)
        text = lookup("/".join(current))
        if text is not None:
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                return False
            current.pop()
            if text.startswith("/"):
                return True
            pending.extend(reversed(text.split("/")))
    return False
