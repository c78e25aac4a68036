"""§13: where a restore may write, judged on the index alone (the default areas of rule 3,
and the custom targets' areas the manifest records, §5.2)."""

from __future__ import annotations

import posixpath
import re
from fnmatch import fnmatchcase

from .tar import fail

TARGETS = ("config", "database", "logs", "agents", "state", "security")
# rule 3's table, in order: (kind, target or None, patterns)
CLAIMS = (
    ("secret", "security", (".env", ".env.*", "config/**/*.token", ".poppo/**/*.token")),
    ("reference", None, ("certs/**", "config/**/*.pem", "config/**/*.crt", "config/**/*.key",
                         ".poppo/**/*.pem", ".poppo/**/*.key")),
    ("database", "database", ("data/*", ".poppo/*", "state/*", "data/**/*.db", "data/**/*.sqlite",
                              "data/**/*.sqlite3", "data/**/*.db3", ".poppo/**/*.db",
                              "state/**/*.db")),
    ("store", "security", ("data/access.log", "data/access.log.*")),
    ("store", "agents", ("data/ccla/**", "data/ccag/**", "data/ccpm/**", "config/agents/**",
                         "agents/**")),
    ("store", "config", ("config/**", ".poppo/**")),
    ("store", "logs", ("logs/**/*.gz",)),
    ("store", "state", ("state/**",)),
)
EXCLUDED_NAMES = (".poppoarc*", "*-wal", "*-shm", "*-journal")
MAX_ID = 2**32 - 2
MAX_LINKS = 40
CUSTOM = re.compile(r"[a-z][a-z0-9_-]{0,31}\Z")       # §5.2 "areas"


def areas_well_formed(m: dict) -> bool:
    """§5.2: ``areas`` absent, or 1-32 custom names (not built-in) each with 1-64 globs of
    1-4096 characters, exactly the targets of ``targets`` beyond the six."""
    if not isinstance(m.get("targets"), dict):
        return True                 # (the counts rule says what is wrong)
    areas = m.get("areas", {})
    if "areas" in m and not (isinstance(areas, dict) and 0 < len(areas) <= 32):
        return False
    if set(areas) != {t for t in m["targets"] if t not in TARGETS}:
        return False
    return all(isinstance(n, str) and CUSTOM.match(n) and n not in TARGETS
               and isinstance(g, list) and 0 < len(g) <= 64
               and all(isinstance(x, str) and 0 < len(x) <= 4096 for x in g)
               for n, g in areas.items())


def _area_reaches(glob: str) -> bool:
    """§13 rule 2: a custom area names paths plainly (relative, no empty, '.' or '..'
    name) and cannot reach ``.poppoarc`` (the places of a store or key directory inside
    the root are the reader's installation's: this reader has none)."""
    parts = glob.split("/")
    if glob.startswith("/") or "\0" in glob or any(p in ("", ".", "..") for p in parts):
        return True
    return _could_reach(parts, [".poppoarc"])


def _could_reach(pattern: list, names: list) -> bool:
    """Whether the pattern matches ``names`` or a path below it."""
    if not names:
        return True                 # something below can follow (or the pattern is done)
    if not pattern:
        return False
    if pattern[0] == "**":
        return True
    return fnmatchcase(names[0], pattern[0]) and _could_reach(pattern[1:], names[1:])


def _match(pattern: list, names: list) -> bool:
    """``*`` and ``?`` within one name, ``**`` any number of names (so ``D/**`` is also ``D``)."""
    if not pattern:
        return not names
    if pattern[0] == "**":
        return any(_match(pattern[1:], names[n:]) for n in range(len(names) + 1))
    return bool(names) and fnmatchcase(names[0], pattern[0]) and _match(pattern[1:], names[1:])


def _matches(pattern: str, path: str) -> bool:
    return _match(pattern.split("/"), path.split("/"))


def area(record: dict, custom: dict | None = None) -> str | None:
    """The target a writer's walk gives this record's path, or None (rule 3); ``custom``:
    the manifest's ``areas``, store claims after the table's, by name."""
    path = record["path"]
    if any(fnmatchcase(name, x) for name in path.split("/") for x in EXCLUDED_NAMES) \
            or _matches(".poppo/poppoarc/**", path):
        return None
    table = CLAIMS + tuple(("store", name, tuple(custom[name])) for name in sorted(custom or {}))
    claims = [(kind, target) for kind, target, patterns in table
              if any(_matches(pattern, path) for pattern in patterns)]
    if record.get("sqlite"):        # the database claim first, or nothing
        return "database" if claims and claims[0][0] == "database" else None
    kind, target = next(((k, t) for k, t in claims if k != "database"), (None, None))
    if record["type"] == "dir" and kind != "store":
        return None                 # a directory only by a claim that stores it
    return target


def check(manifest: dict, records: list) -> None:
    """Rules 2-7 (rule 1, the paths of §1, is checked with the index)."""
    links = {r["path"]: r["link"] for r in records if r["type"] == "symlink"}
    custom = manifest.get("areas", {})
    for name, globs in sorted(custom.items()):
        if any(_area_reaches(g) for g in globs):
            fail("UnsafeArchiveEntry", f"custom target {name}: an area no restore may use "
                                       "(rule 2)")
    for r in records:
        target, path = r["target"], r["path"]
        if target is not None and target not in manifest["targets"]:
            fail("CorruptArchive", f"{path}: unknown target {target!r} (rule 2)")
        if r.get("generated"):
            if (path, target) != (".poppoarc/environment.json", "config"):
                fail("UnsafeArchiveEntry", f"{path}: a generated record elsewhere (rule 4)")
            continue
        if any(name.startswith(".poppoarc") for name in path.split("/")):
            fail("UnsafeArchiveEntry", f"{path}: a reserved name (rule 4)")
        if r["uid"] > MAX_ID or r["gid"] > MAX_ID:
            fail("UnsafeArchiveEntry", f"{path}: owner beyond the system's ids (rule 6)")
        kept_database = manifest["type"] == "pre-restore" and target == "database" \
            and r["type"] == "file" and not r.get("sqlite")
        if target == "database" and not r.get("sqlite") and not kept_database:
            fail("CorruptArchive", f"{path}: a database record that is not sqlite (rule 7)")
        if target is not None:
            owner = area({**r, "sqlite": True}, custom) if kept_database else area(r, custom)
            if owner != target:
                fail("UnsafeArchiveEntry", f"{path}: in the area of {owner}, not {target} (rule 3)")
    for path, text in links.items():
        if not text or "\0" in text or text.startswith("/") or _escapes(path, text, links):
            fail("UnsafeArchiveEntry", f"{path}: the link leaves the root (rule 5)")


def _escapes(path: str, text: str, links: dict) -> bool:
    if posixpath.normpath(posixpath.join(posixpath.dirname(path), text)).split("/")[0] == "..":
        return True
    try:
        _resolve(path.split("/")[:-1], text, links, [0])
    except _Escape:
        return True
    except _Loop:
        return False
    return False


class _Escape(Exception):
    pass


class _Loop(Exception):
    pass


def _resolve(directory: list, text: str, links: dict, count: list) -> list:
    """Where ``text`` leads from ``directory``, replacing the archive's links as the kernel
    would; raises _Escape on leaving the root, _Loop past 40 links."""
    if text.startswith("/"):
        raise _Escape
    where = list(directory)
    for name in text.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not where:
                raise _Escape
            where.pop()
            continue
        candidate = "/".join(where + [name])
        if candidate in links:
            count[0] += 1
            if count[0] > MAX_LINKS:
                raise _Loop
            where = _resolve(where, links[candidate], links, count)
        else:
            where.append(name)
    return where
