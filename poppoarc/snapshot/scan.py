"""Walking an installation: which paths exist and which target owns each.

The walk is the only I/O here; decisions come from ``Catalogue.claim``.  It
lists each directory, stats every candidate once and reads 16 bytes of SQLite
candidates to check the header magic.
"""

from __future__ import annotations

import operator
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SourceError, Warnings
from ..format.paths import MAX_NAME_BYTES
from .catalogue import REFERENCE, SECRET, SQLITE, Catalogue
from .groups import WalkGroups, is_plain
from .naming import printable, symlink_problem, unrepresentable
from .ownership import sidecar_of_database
from .sqlite import has_sqlite_header, is_sqlite_file

FILE, DIR, SYMLINK, DATABASE = "file", "dir", "symlink", "sqlite"


@dataclass(slots=True)
class SourceEntry:
    """One path to archive, with the lstat facts taken during the walk."""

    path: str
    target: str | None          # None: a parent directory shared by targets
    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int
    dev: int = 0
    ino: int = 0
    nlink: int = 1
    link: str | None = None
    ctime_ns: int = 0


@dataclass
class ScanResult:
    # by target, each in path order; with ``compact``, a regular file with one link is a
    # (path, target) tuple (memory), or (path, target, stat facts) (``Walk.stat_facts``)
    entries: WalkGroups
    references: list[str] = field(default_factory=list)   # relative paths
    secrets: list[str] = field(default_factory=list)      # relative paths
    databases: list[str] = field(default_factory=list)    # relative paths
    target_bytes: dict = field(default_factory=dict)    # sizes of files and databases entered
    # a restore's walk (``foreign``): directories with a path below them that no selected
    # target owns (another target's, unclaimed, special, unreadable: a restore never
    # replaces those), and the SQLite sidecars of the selected databases' paths
    impure: set = field(default_factory=set)
    sidecars: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)   # owned paths this user cannot read
    # the symbolic links recorded, [path, text, target] (pack judges them together: a
    # link may leave the installation through another, spec/FORMAT.md §13 rule 5)
    links: list = field(default_factory=list)
    links_left_out: dict = field(default_factory=dict)    # pack: target -> paths (walk.py)

    @property
    def total_bytes(self) -> int:
        return sum(self.target_bytes.values())


_ENTRY_FIELDS = operator.attrgetter(*SourceEntry.__slots__)


def record_fields(record) -> tuple:
    """A walk record as a tuple marshal can write (``record_from_fields`` rebuilds it)."""
    return record if is_plain(record) else _ENTRY_FIELDS(record)


def record_from_fields(fields: tuple):
    return fields if len(fields) <= 3 else SourceEntry(*fields)


_SMALL_INTS: dict[int, int] = {}     # one object per distinct mode/uid/gid (memory)


def _entry(path: str, target: str | None, kind: str, st: os.stat_result,
           link: str | None = None) -> SourceEntry:
    shared = _SMALL_INTS.setdefault
    mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    if st.st_nlink > 1:         # (dev, ino) only matter for hard links
        dev, ino, nlink = st.st_dev, st.st_ino, st.st_nlink
    else:
        dev, ino, nlink = 0, 0, 1
    return SourceEntry(path, target, kind, shared(mode, mode), shared(uid, uid), shared(gid, gid),
                       st.st_mtime_ns, st.st_size if kind in (FILE, DATABASE) else 0,
                       dev, ino, nlink, link, st.st_ctime_ns)


def scan(root: Path, catalogue: Catalogue, warnings: Warnings,
         skip: tuple[Path, ...] = (), compact: bool = False,
         on_database: Callable[[str], None] | None = None,
         spill_at: int | None = None, foreign: bool = False) -> ScanResult:
    """Entries of the selected targets, grouped by target, each group in path order.

    The walk visits each directory's children in the order their paths sort (a
    directory's own record at its name, its contents at its name plus ``/``), so
    the records come in index order and nothing needs sorting: past ``spill_at``
    records (default ``groups.SPILL_AT``) the groups go to disk (``WalkGroups``).
    ``compact``: regular files with one link become (path, target) tuples and only
    their total size is kept — for ``pack``, which takes their metadata from fstat.
    ``on_database(path)`` is called as each database of a selected target is found
    (``pack`` starts its snapshot then).  ``foreign`` (a restore's walk): also note
    what no selected target owns (``ScanResult.impure``, ``sidecars``) and the owned
    paths this user cannot read (``unreadable``).
    """
    walk = Walk(root, catalogue, warnings, skip, compact, on_database, spill_at,
                foreign=foreign)
    walk.run()
    return walk.finish()


class Walk:
    """One walk of an installation, in parts: ``run`` walks the tree (or one directory
    of it), ``merge`` takes in what another walk of a left-out directory found (pack's
    subtree helper), ``finish`` adds the shared parent directories and gives the result.

    ``leave``: directories (relative paths) this walk does not visit, neither their
    own entry nor their contents: another process walks them.
    """

    def __init__(self, root: Path, catalogue: Catalogue, warnings: Warnings,
                 skip: tuple[Path, ...] = (), compact: bool = False,
                 on_database: Callable[[str], None] | None = None,
                 spill_at: int | None = None, leave: tuple[str, ...] = (),
                 foreign: bool = False, stat_facts: bool = False):
        """``stat_facts`` (with ``compact``): a plain file's record also carries its lstat
        facts, (path, target, (size, mtime_ns, ctime_ns, ino, mode, uid, gid)), which an
        incremental compares with its parent's without opening the file."""
        self.root, self.catalogue, self.warnings = str(root), catalogue, warnings
        self.foreign = foreign
        self.skip_real = {os.path.realpath(p) for p in skip}
        self.compact, self.on_database = compact, on_database
        self.stat_facts = stat_facts
        self.result = ScanResult(entries=WalkGroups(record_fields, record_from_fields, spill_at))
        self._leave: dict[str, set[str]] = {}       # directory: names of it not visited
        for rel in leave:
            parent, _, name = rel.rpartition("/")
            self._leave.setdefault(parent, set()).add(name)
        self._recorded: set[str] = set()    # directories in the index: owned, or parents
        self._unowned: dict[str, os.stat_result] = {}   # directories no selected target owns
        self._shared: list[SourceEntry] = []    # shared parents another walk found

    def run(self, within: str | None = None) -> bool:
        """Walk the tree; or, ``within`` (a relative path), only that directory: its own
        entry and its contents, as the whole walk would have met them.  Returns whether
        anything was recorded (every record marks its directory, or itself, as needed)."""
        before = len(self._recorded)
        if within is None:
            self._walk(self.root, "")
        else:
            parent, _, name = within.rpartition("/")
            self._walk(f"{self.root}/{parent}" if parent else self.root, parent, name)
        return len(self._recorded) > before

    def needs_parents_of(self, path: str) -> None:
        """Record the directories above ``path`` as needed (a record below them exists)."""
        parent = path.rpartition("/")[0]
        while parent and parent not in self._recorded:
            self._recorded.add(parent)
            parent = parent.rpartition("/")[0]

    def merge(self, target: str | None, records: list) -> None:
        """Records of one target (None: shared parents) that another walk found in a
        directory this one left out, in path order."""
        if not records:
            return
        if target is None:
            self._shared.extend(records)
        elif self.result.entries.count(target):
            self.result.entries.add_sorted(target, records, key=path_of)
        else:           # (the usual case: that walk found every record of the target)
            for record in records:
                self.result.entries.add(target, record)

    def adopt(self, target: str, spool, count: int) -> bool:
        """The records of ``target`` another walk of a directory this one left out found,
        spooled in the walk's chunk format, when this walk found none: they stay on disk
        (``WalkGroups.adopt``).  False if it found some (``merge`` them instead)."""
        return self.result.entries.adopt(target, spool, count)

    def finish(self) -> ScanResult:
        """The result, with its shared parents: needed by a path below them, owned by no
        selected target."""
        shared = [_entry(rel, None, DIR, self._unowned[rel])
                  for rel in self._recorded if rel in self._unowned]
        for entry in sorted(shared + self._shared, key=path_of):
            self.result.entries.add(None, entry)
        self._recorded, self._unowned, self._shared = set(), {}, []
        return self.result

    def _walk(self, abs_top: str, rel_top: str, only: str | None = None) -> None:
        """The walk itself, one closure (attribute lookups cost per path: 100,000 paths)."""
        catalogue, warnings, result = self.catalogue, self.warnings, self.result
        selected = set(catalogue.selected)
        skip_real, compact, on_database = self.skip_real, self.compact, self.on_database
        stat_facts = self.stat_facts
        groups, target_bytes = result.entries, result.target_bytes
        recorded, unowned, leave = self._recorded, self._unowned, self._leave
        descend: set[str] = set()           # directories whose contents the walk enters
        tracking = self.foreign
        impure, unreadable, links = result.impure, result.unreadable, result.links
        sidecar_owner = "database" in selected

        def foreign(path: str, itself: bool = False) -> None:
            """A path no selected target owns (``itself``: a directory whose contents are
            not known): the directories above it are impure."""
            if itself:
                impure.add(path)
            parent = path.rpartition("/")[0]
            while parent and parent not in impure:
                impure.add(parent)
                parent = parent.rpartition("/")[0]

        def readable(path: str, rel: str, directory: bool) -> None:
            if not os.access(path, os.R_OK | os.X_OK if directory else os.R_OK,
                             effective_ids=os.access in os.supports_effective_ids):
                unreadable.append(rel)

        def add(target: str, record, path: str, size: int) -> None:
            groups.add(target, record)
            target_bytes[target] = target_bytes.get(target, 0) + size
            parent = path.rpartition("/")[0]
            while parent and parent not in recorded:    # a shared parent this path needs
                recorded.add(parent)
                parent = parent.rpartition("/")[0]

        def claimable(path: str, maybe_dir: bool) -> bool:
            """Whether a selected target would have archived ``path`` (or, a directory,
            something in it): only then is it named when it cannot be."""
            if any(rule.target in selected for rule in catalogue.claim(path)):
                return True
            return maybe_dir and catalogue.worth_descending(path)

        def walk(abs_dir: str, rel_dir: str, only: str | None = None) -> None:
            failed: list[str] = []
            children = _children(abs_dir, rel_dir, warnings, failed)
            if only is not None:
                children = (c for c in children if c.name == only)
            elif rel_dir in leave:
                left = leave[rel_dir]
                children = (c for c in children if c.name not in left)
            for name, is_dir in in_path_order(children):
                rel = f"{rel_dir}/{name}" if rel_dir else name
                if is_dir is None:          # the contents of a directory met before
                    if rel in descend:
                        descend.discard(rel)
                        walk(f"{abs_dir}/{name}", rel)
                    continue
                child_path = f"{abs_dir}/{name}"
                try:
                    st = os.lstat(child_path)
                except OSError as exc:
                    if claimable(rel, True):
                        warnings.skip(rel, f"cannot stat ({exc.strerror}); not archived")
                    if tracking:
                        foreign(rel, True)
                    continue
                # what a reader rejects (spec §1) is named here, never written
                problem = unrepresentable(rel) if len(rel) > MAX_NAME_BYTES or not rel.isascii() \
                    else None
                if problem:
                    if claimable(rel, stat.S_ISDIR(st.st_mode)):
                        warnings.skip(printable(rel), f"{problem}; not archived"
                                      + (", nor anything in it" if stat.S_ISDIR(st.st_mode) else ""))
                    if tracking:
                        foreign(rel, True)
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if not is_dir or os.path.realpath(child_path) in skip_real:
                        if tracking:    # the store or key directory; or one just made
                            foreign(rel, True)
                        continue    # a directory that appeared after listing waits for the next walk
                    rules = [r for r in catalogue.claim(rel) if r.action != SQLITE]
                    if rules and rules[0].target in selected \
                            and rules[0].action not in (REFERENCE, SECRET):
                        groups.add(rules[0].target, _entry(rel, rules[0].target, DIR, st))
                        parent = rel
                        while parent and parent not in recorded:    # it needs its parents
                            recorded.add(parent)
                            parent = parent.rpartition("/")[0]
                        if tracking:
                            readable(child_path, rel, True)
                    else:
                        unowned[rel] = st
                        if tracking:    # a shared parent, or another target's: never swapped
                            foreign(rel, True)  # whole (its own mode and times are not ours)
                    if catalogue.worth_descending(rel):
                        descend.add(rel)
                    elif tracking:
                        foreign(rel, True)
                    continue
                rules = catalogue.claim(rel)
                if stat.S_ISLNK(st.st_mode) and not tracking:
                    _name_hidden_targets(catalogue, warnings, child_path, rel,
                                         any(r.target in selected for r in rules))
                if not rules:
                    if tracking and not (sidecar_owner and sidecar_of_database(catalogue, rel)):
                        foreign(rel)
                    elif tracking:
                        result.sidecars.append(rel)
                    continue
                rule = rules[0]
                if rule.action == SQLITE:
                    if stat.S_ISREG(st.st_mode):
                        try:
                            database = has_sqlite_header(child_path)
                        except OSError as exc:  # a database or a file: either way not archived
                            if any(r.target in selected for r in rules):
                                warnings.skip(rel, f"cannot read ({exc.strerror}); not archived")
                            if tracking:    # replaced if it may be a restored database
                                if rule.target in selected:
                                    unreadable.append(rel)
                                else:
                                    foreign(rel)
                            continue
                    else:
                        database = False
                    if database:
                        if rule.target in selected:
                            add(rule.target, _entry(rel, rule.target, DATABASE, st), rel,
                                st.st_size)
                            result.databases.append(rel)
                            if on_database is not None:
                                on_database(rel)
                        elif tracking:
                            foreign(rel)
                        continue
                    rules = rules[1:]
                    if not rules:
                        if tracking:
                            foreign(rel)
                        continue
                    rule = rules[0]
                if rule.target not in selected:
                    if tracking:
                        foreign(rel)
                    continue
                if rule.action == REFERENCE:
                    result.references.append(rel)
                    if tracking:
                        foreign(rel)
                elif rule.action == SECRET:
                    result.secrets.append(rel)
                    if tracking:
                        foreign(rel)
                elif stat.S_ISREG(st.st_mode):
                    if compact and st.st_nlink == 1:
                        add(rule.target, (rel, rule.target, (
                            st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid))
                            if stat_facts else (rel, rule.target), rel, st.st_size)
                    else:
                        add(rule.target, _entry(rel, rule.target, FILE, st), rel, st.st_size)
                    if tracking:
                        readable(child_path, rel, False)
                elif stat.S_ISLNK(st.st_mode):
                    try:
                        link = os.readlink(child_path)
                    except OSError as exc:
                        warnings.skip(rel, f"cannot read symbolic link ({exc.strerror}); "
                                           "not archived")
                        continue
                    problem = symlink_problem(rel, link)
                    if problem:
                        warnings.skip(rel, problem)
                        continue
                    add(rule.target, _entry(rel, rule.target, SYMLINK, st, link), rel, 0)
                    links.append([rel, link, rule.target])
                else:
                    # named, not counted as skipped: it has no content to lose
                    warnings.add(f"{rel}: special file (device, FIFO or socket) not archived")
                    if tracking:    # (a running application's socket: a restore keeps it)
                        foreign(rel)
            if failed and tracking:     # its contents are not known
                foreign(rel_dir, True)

        walk(abs_top, rel_top, only)
        del walk    # it refers to itself: without this the walk's records outlive their last use


def _name_hidden_targets(catalogue: Catalogue, warnings: Warnings, path: str, rel: str,
                         archived: bool) -> None:
    """A symbolic link to a directory where selected targets would find paths (``data``
    moved to another disk and linked back): the walk never follows a link, so everything
    below it is left out, and that is said, never silent.  ``archived``: the link itself
    is archived (a target claims it), only what is below it is not."""
    hidden = catalogue.targets_below(rel)
    if not hidden or not os.path.isdir(path):
        return
    try:
        link = os.readlink(path)
    except OSError:
        link = "?"
    targets = ", ".join(hidden)
    if archived:
        warnings.add(f"{rel}: a symbolic link to a directory (-> {link}), archived as a link: "
                     f"poppoarc does not follow links, so nothing below it is archived "
                     f"(targets {targets}); see docs/targets.md")
    else:
        warnings.skip(rel, f"a symbolic link to a directory (-> {link}); poppoarc does not "
                           f"follow links, so nothing below it is archived (targets "
                           f"{targets}); see docs/targets.md")


def database_candidates(root: Path, catalogue: Catalogue,
                        skip: tuple[Path, ...] = ()) -> list[str]:
    """The databases directly inside the directories the database rules name literally
    (``data/*``, ``.poppo/*``, ``state/*``), largest first.

    Found before the walk reaches them, their snapshot copies can start at once: the
    body wants the database target second, and the walk meets a large database in
    ``data/`` only after thousands of agent files.  The walk still decides what is
    archived; a candidate it does not take only costs a copy made for nothing.
    """
    selected = set(catalogue.selected)
    skip_real = {os.path.realpath(p) for p in skip}
    directories = dict.fromkeys(
        parts[0] for rule in catalogue.rules if rule.action == SQLITE
        for parts in (pattern.split("/") for pattern in rule.include)
        if len(parts) == 2 and parts[1] == "*" and not any(ch in parts[0] for ch in "*?["))
    found = []
    for directory in directories:
        path = os.path.join(root, directory)
        if os.path.islink(path) or os.path.realpath(path) in skip_real:
            continue        # the walk does not enter a symlink, nor a skipped directory
        try:
            with os.scandir(path) as children:
                for child in children:
                    rel = f"{directory}/{child.name}"
                    rules = catalogue.claim(rel)
                    if rules and rules[0].action == SQLITE and rules[0].target in selected \
                            and child.is_file(follow_symlinks=False) \
                            and is_sqlite_file(child.path):
                        found.append((child.stat(follow_symlinks=False).st_size, rel))
        except OSError:     # the walk reports what it cannot read
            continue
    return [rel for _, rel in sorted(found, key=lambda item: (-item[0], item[1]))]


def in_path_order(children):
    """(name, is_dir) of each ``DirEntry``, in the order its path sorts, and (name, None)
    where a directory's contents sort (name + "/": after "a.txt", before "a0").  Only the
    names are held, in one list, while the directory is walked."""
    keys: list[str] = []
    dirs: set[str] = set()
    for child in children:
        keys.append(child.name)
        try:
            if child.is_dir(follow_symlinks=False):
                dirs.add(child.name)
                keys.append(child.name + "/")   # no file name holds a "/"
        except OSError:
            pass
    keys.sort()
    for key in keys:
        if key[-1] == "/":
            yield key[:-1], None
        else:
            yield key, key in dirs


def _children(abs_dir: str, rel_dir: str, warnings: Warnings, failed: list | None = None):
    """The entries of one directory, one at a time: only their names are kept
    (``DirEntry`` objects with their cached lstat results cost many times more for a
    large directory, and the memory stayed with the process).  A directory that fails part-way keeps what
    was read, with a warning (and its path in ``failed``).
    """
    started = False
    try:
        with os.scandir(abs_dir) as iterator:
            for child in iterator:
                started = True
                yield child
    except OSError as exc:
        if not rel_dir:
            raise SourceError(f"cannot read installation root: {exc.strerror}",
                              path=abs_dir) from None
        skipped = "the rest of it skipped" if started else "skipped"
        warnings.skip(rel_dir, f"cannot read directory: {exc.strerror}; {skipped}")
        if failed is not None:
            failed.append(rel_dir)


def path_of(entry: SourceEntry | tuple[str, str]) -> str:
    return entry[0] if is_plain(entry) else entry.path


def target_of(entry: SourceEntry | tuple[str, str]) -> str | None:
    return entry[1] if is_plain(entry) else entry.target
