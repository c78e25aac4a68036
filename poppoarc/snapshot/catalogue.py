"""What an installation contains: the six targets as data, and pure selection.

Each path of the installation is claimed by at most one target.  Claims are
tried in ``CLAIM_ORDER`` so that, for example, a SQLite file under
``data/ccla/`` is a database (captured with the backup API) and not an agent
file, and ``.env`` is a secret of the security target, never plain config.
Nothing here touches the disk: the scanner feeds in paths and facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ConfigError, UsageError
from ..format.order import TARGETS, in_target_order, is_custom_name
from .areas import MAX_AREA_GLOBS, MAX_CUSTOM_TARGETS, area_problem, custom_areas
from .globs import compile_glob, could_match_below, glob_match


# What each kind of claim does with a path.
STORE = "store"            # archived as a file, directory or symlink
SQLITE = "sqlite"          # archived as an online-backup snapshot
REFERENCE = "reference"    # recorded by fingerprint only (certificates, keys)
SECRET = "secret"          # stored only encrypted; skipped without a key


@dataclass(frozen=True)
class Rule:
    """One claim: paths matching ``include`` and not ``exclude`` go to ``target``."""

    target: str
    action: str
    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()


# The order of this table is the claim order.
DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("security", SECRET, (".env", ".env.*", "config/**/*.token", ".poppo/**/*.token")),
    Rule("security", REFERENCE, ("certs/**", "config/**/*.pem", "config/**/*.crt",
                                 "config/**/*.key", ".poppo/**/*.pem", ".poppo/**/*.key")),
    Rule("database", SQLITE, ("data/*", ".poppo/*", "state/*", "data/**/*.db",
                              "data/**/*.sqlite", "data/**/*.sqlite3", "data/**/*.db3",
                              ".poppo/**/*.db", "state/**/*.db")),
    Rule("security", STORE, ("data/access.log", "data/access.log.*")),
    Rule("agents", STORE, ("data/ccla/**", "data/ccag/**", "data/ccpm/**",
                           "config/agents/**", "agents/**")),
    Rule("config", STORE, ("config/**", ".poppo/**")),
    Rule("logs", STORE, ("logs/**/*.gz",)),
    Rule("state", STORE, ("state/**",)),
)

# Never archived by any target: poppoarc's own files and SQLite sidecars,
# which the backup API makes unnecessary (and stale ones are harmful).
GLOBAL_EXCLUDES = (".poppoarc*", "**/.poppoarc*", "**/*.db-wal", "**/*.db-shm",
                   "**/*.db-journal", "**/*-wal", "**/*-shm", "**/*-journal",
                   "**/*.sqlite-wal", "**/*.sqlite-shm", ".poppo/poppoarc/**")


def _combined(patterns: tuple[str, ...]) -> re.Pattern | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{compile_glob(p).pattern})" for p in patterns), re.S)


_EVERY = object()


def _within(directory: str, prefix: str) -> bool:
    return directory == prefix or directory.startswith(prefix + "/")


def _for_names(pattern: str, directory: str):
    """What ``pattern`` says about ``directory/NAME``: ``_EVERY`` (every name matches),
    a one-segment glob the name alone must match, or None (match the whole path).

    ``P/**`` and ``P/**/G`` with a literal ``P`` and ``**/G`` are decided by the name
    once the directory is ``P`` or below it: ``**`` absorbs the rest of the directory.
    """
    parts = pattern.split("/")
    if "**" not in parts:
        return None
    cut = parts.index("**")
    prefix, rest = "/".join(parts[:cut]), parts[cut + 1:]
    if any(ch in prefix for ch in "*?") or (prefix and not _within(directory, prefix)):
        return None
    if not rest:
        return _EVERY if prefix else None     # a lone ``**`` also matches "" (never a path)
    if len(rest) == 1 and rest[0] != "**":
        return rest[0]
    return None


def _matcher(patterns: tuple[str, ...], directory: str) -> tuple:
    """(every name matches, name regex or None, path regex or None) for ``directory``."""
    names, paths = [], []
    for pattern in patterns:
        decided = _for_names(pattern, directory)
        if decided is _EVERY:
            return True, None, None
        (paths if decided is None else names).append(pattern if decided is None else decided)
    return False, _combined(tuple(names)), _combined(tuple(paths))


# Per-directory caches hold at most this many directories, then start afresh: a walk
# or an index visits one directory after another, and an index may name millions.
_CACHE_DIRECTORIES = 256


def _remember(cache: dict, key: str, value) -> None:
    if len(cache) >= _CACHE_DIRECTORIES:
        cache.clear()
    cache[key] = value


def _ancestry(patterns: tuple[str, ...]) -> tuple[re.Pattern, re.Pattern | None]:
    """(a regex that finds a path, or a directory above it, that one of ``patterns``
    matches, for the patterns it can express; the rest combined, or None)."""
    def name(glob: str) -> str:
        return "".join("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch)
                       for ch in glob)

    parts, others = [], []
    for pattern in patterns:
        pieces = pattern.split("/")
        if len(pieces) == 2 and pieces[0] == "**" and "**" not in pieces[1]:
            parts.append(f"(?:^|/){name(pieces[1])}(?:/|$)")       # a name, any depth
        elif len(pieces) == 1 and "**" not in pattern:
            parts.append(f"^{name(pattern)}(?:/|$)")               # a first name
        elif pieces[-1] == "**" and not any(ch in "*?[" for ch in "/".join(pieces[:-1])):
            parts.append(f"^{re.escape('/'.join(pieces[:-1]))}(?:/|$)")     # a prefix
        else:
            others.append(pattern)
    return re.compile("|".join(parts) or "(?!)", re.S), _combined(tuple(others))


@dataclass
class Catalogue:
    """The rules in force for one run: defaults, config overrides, selection."""

    rules: tuple[Rule, ...]
    selected: tuple[str, ...]
    excludes: tuple[str, ...] = GLOBAL_EXCLUDES
    # a restore's --include/--exclude (``selection.PathSelection``): a path it does not
    # select belongs to no target, as if no rule claimed it
    paths: object = None
    _compiled: list = field(default_factory=list, repr=False)
    _exclude_re: re.Pattern | None = field(default=None, repr=False)
    _per_dir: dict = field(default_factory=dict, repr=False)
    _per_dir_names: dict = field(default_factory=dict, repr=False)
    _ancestry_re: re.Pattern | None = field(default=None, repr=False)
    _other_excludes: re.Pattern | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        # One alternation per rule keeps per-file work to a few regex calls.
        self._compiled = [(rule, _combined(rule.include), _combined(rule.exclude))
                          for rule in self.rules]
        self._exclude_re = _combined(self.excludes)

    def _rules_for_dir(self, directory: str) -> list:
        cached = self._per_dir.get(directory)
        if cached is None:
            cached = [entry for entry in self._compiled
                      if not directory or any(could_match_below(p, directory) for p in entry[0].include)]
            _remember(self._per_dir, directory, cached)
        return cached

    def _names_in(self, directory: str) -> tuple:
        """The rules specialised to the names in ``directory`` (cached): most paths are
        then decided by one short regex on the name, or none (``dir/**``)."""
        cached = self._per_dir_names.get(directory)
        if cached is None:
            rules = [(rule, *_matcher(rule.include, directory), _combined(rule.exclude))
                     for rule, _, _ in self._rules_for_dir(directory)]
            cached = (_matcher(self.excludes, directory), rules)
            _remember(self._per_dir_names, directory, cached)
        return cached

    def claim(self, path: str) -> list[Rule]:
        """Rules that want ``path``, in claim order (exclusions applied).

        More than one rule is returned only when a content test decides, as for
        SQLite candidates that turn out not to be databases.
        """
        if self.paths is not None and not self.paths.selects(path):
            return []
        directory, _, name = path.rpartition("/")
        (skip_all, skip_name, skip_path), rules = self._names_in(directory)
        if skip_all or (skip_name and skip_name.match(name)) or (skip_path and skip_path.match(path)):
            return []
        wanted = []
        for rule, every, by_name, by_path, exclude in rules:
            if (every or (by_name is not None and by_name.match(name))
                    or (by_path is not None and by_path.match(path))) \
                    and not (exclude and exclude.match(path)):
                wanted.append(rule)
                if rule.action != SQLITE:
                    break
        return wanted

    def owner(self, path: str, kind: str) -> str | None:
        """The target a record of ``kind`` ("dir", "file", "symlink" or "sqlite") at
        ``path`` belongs to, decided as the walk decides (scan.py): the first claim,
        skipping the database claim unless it is a database; a directory only by a
        claim that stores it; nothing that a reference claims, nor anything at or below
        a name an exclusion matches.  The area rule of a restore (restore/safety.py).

        One regex per rule on the whole path: an index names directories one path at a
        time, where the walk's per-directory specialisation (``claim``) would cost more
        than it saves (a path of 250 levels under a directory of its own)."""
        rule = self.owning_rule(path, kind)
        return rule.target if rule is not None else None

    def owning_rule(self, path: str, kind: str) -> Rule | None:
        """The claim ``owner`` decides by (its target is the owner): a secret's claim
        tells a caller the walk archives it only sealed."""
        if self._excluded_here_or_above(path) or \
                (self.paths is not None and not self.paths.selects(path)):
            return None
        rules = []
        for rule, include, exclude in self._compiled:
            if include is not None and include.match(path) \
                    and not (exclude is not None and exclude.match(path)):
                rules.append(rule)
                if rule.action != SQLITE:
                    break
        if kind == "sqlite":
            return rules[0] if rules and rules[0].action == SQLITE else None
        rule = next((r for r in rules if r.action != SQLITE), None)
        if rule is None or rule.action == REFERENCE or (kind == "dir" and rule.action != STORE):
            return None
        return rule

    def database_candidate(self, path: str) -> bool:
        """Whether the walk would test the file at ``path`` for being a database."""
        if self._excluded_here_or_above(path) or \
                (self.paths is not None and not self.paths.selects(path)):
            return False
        rule, include, exclude = next(((r, i, e) for r, i, e in self._compiled
                                       if i is not None and i.match(path)
                                       and not (e is not None and e.match(path))),
                                      (None, None, None))
        return rule is not None and rule.action == SQLITE

    def _excluded_here_or_above(self, path: str) -> bool:
        """Whether an exclusion matches ``path`` or a directory above it (the walk does
        not enter an excluded directory).  Exclusions of one name at any depth
        (``**/G``), of a first name (``G``) and of a literal prefix (``P/**``) are decided
        by one regex over the whole path; any other kind, directory by directory."""
        if self._ancestry_re is None:
            self._ancestry_re, self._other_excludes = _ancestry(self.excludes)
        if self._ancestry_re.search(path):
            return True
        if self._other_excludes is None:
            return False
        parts = path.split("/")
        return any(self._other_excludes.match("/".join(parts[:n]))
                   for n in range(1, len(parts) + 1))

    def worth_descending(self, directory: str) -> bool:
        """Whether any rule could claim something inside ``directory``."""
        if self._exclude_re.match(directory):
            return False
        if self.paths is not None and not self.paths.may_hold(directory):
            return False
        return bool(self._rules_for_dir(directory))

    def targets_below(self, directory: str) -> tuple[str, ...]:
        """The selected targets one of whose rules could claim something inside
        ``directory`` (what a symbolic link in its place hides from the walk)."""
        if self._exclude_re.match(directory):
            return ()
        found = dict.fromkeys(entry[0].target for entry in self._rules_for_dir(directory))
        return tuple(target for target in found if target in self.selected)


def parse_target_list(text: str | None) -> tuple[str, ...] | None:
    """``--targets a,b`` → ("a", "b"); None when not given.  A name that is neither a
    built-in target nor shaped like a custom one is refused here; whether a custom name
    exists is for the command to say (the configuration, or the archive, defines it)."""
    if text is None:
        return None
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError("--targets needs at least one target name")
    unknown = [n for n in names if n not in TARGETS and not is_custom_name(n)]
    if unknown:
        raise UsageError(f"unknown target {unknown[0]!r} (known: {', '.join(TARGETS)}, and "
                         "the custom targets of backup.targets)")
    return names


def area_catalogue(config_targets: dict, selected: tuple[str, ...] = TARGETS,
                   paths=None) -> Catalogue:
    """The targets' areas for a restore: this installation's catalogue (its ``include``
    settings, custom targets' too) without its ``exclude`` patterns, which say what to back
    up, not what an archive made before they were set may restore.  The global exclusions
    (poppoarc's own names, SQLite sidecars) stay: nothing may restore those.  For an
    archive's custom targets pass ``with_recorded(config_targets, manifest)``."""
    catalogue = build_catalogue(config_targets, TARGETS)
    return Catalogue(rules=tuple(Rule(r.target, r.action, r.include) for r in catalogue.rules),
                     selected=selected, paths=paths)


def exclusion_glob(pattern: str) -> str:
    """A ``backup.exclude`` pattern as a path glob: one without ``/`` names a file or
    directory at any depth (``node_modules``, ``*.tmp``), as the application's own
    ``excludePatterns`` did; one with ``/`` is a path from the root."""
    pattern = pattern.strip().removeprefix("./").rstrip("/")
    return pattern if "/" in pattern else f"**/{pattern}"


def build_catalogue(config_targets: dict, requested: tuple[str, ...] | None,
                    exclude: tuple[str, ...] | list[str] = (), places=None,
                    paths=None) -> Catalogue:
    """Apply ``backup.targets`` from config and the ``--targets`` selection (and a
    restore's ``--include``/``--exclude``: ``paths``).

    A target set to false in config is skipped unless named on the command
    line; an object may replace ``include`` and add ``exclude`` patterns.
    ``exclude`` (``backup.exclude``) leaves paths out of every target, a directory
    with everything in it.  A name that is not a built-in target is a custom one: its
    ``include`` is required and judged by ``area_problem`` (``places``: the store and key
    directory inside the root, when known); it claims after the built-in targets and
    stores what it claims, and is selected by default like them.
    """
    custom = custom_areas(config_targets)
    for name, setting in config_targets.items():
        if name in TARGETS or name in custom:
            continue
        if not is_custom_name(name):
            raise ConfigError(f"unknown target 'backup.targets.{name}' (known: "
                              f"{', '.join(TARGETS)}; a custom target's name is lowercase "
                              "letters, digits, '-' and '_', at most 32)")
        raise ConfigError(f"custom target 'backup.targets.{name}' needs 'include' (the globs "
                          "of the paths it archives)")
    if len(custom) > MAX_CUSTOM_TARGETS:
        raise ConfigError(f"backup.targets defines {len(custom)} custom targets; at most "
                          f"{MAX_CUSTOM_TARGETS}")
    for name, include in custom.items():
        problem = None if 0 < len(include) <= MAX_AREA_GLOBS else \
            f"needs 1 to {MAX_AREA_GLOBS} include globs"
        problem = problem or next(filter(None, (area_problem(g, places) for g in include)), None)
        if problem:
            raise ConfigError(f"custom target 'backup.targets.{name}': {problem}")
    enabled = []
    for name in (*TARGETS, *in_target_order(custom)):
        setting = config_targets.get(name, True)
        on = setting if isinstance(setting, bool) else setting.get("enabled", True)
        if on:
            enabled.append(name)
    if requested is not None:
        unknown = [n for n in requested if n not in TARGETS and n not in custom]
        if unknown:
            raise UsageError(f"unknown target {unknown[0]!r}: backup.targets defines no custom "
                             f"target of that name (known: {', '.join((*TARGETS, *custom))})")
    selected = requested if requested is not None else tuple(enabled)
    rules = []
    for rule in DEFAULT_RULES:
        setting = config_targets.get(rule.target)
        if isinstance(setting, dict) and rule.action == STORE:
            include = tuple(setting.get("include", rule.include))
            exclude = rule.exclude + tuple(setting.get("exclude", ()))
            rule = Rule(rule.target, rule.action, include, exclude)
        rules.append(rule)
    for name in in_target_order(custom):    # after the built-in claims: they keep theirs
        exclusions = tuple(config_targets[name].get("exclude", ()))
        rules.append(Rule(name, STORE, custom[name], exclusions))
    excludes = GLOBAL_EXCLUDES + tuple(dict.fromkeys(exclusion_glob(p) for p in exclude
                                                     if p.strip().strip("./")))
    return Catalogue(rules=tuple(rules), selected=tuple(selected), excludes=excludes,
                     paths=paths)
