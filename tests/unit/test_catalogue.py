"""Target selection is a pure function of paths, rules and the requested targets."""

import pytest

from poppoarc.errors import ConfigError, UsageError
from poppoarc.snapshot.catalogue import (
    SECRET,
    SQLITE,
    build_catalogue,
    could_match_below,
    glob_match,
    parse_target_list,
)


@pytest.mark.parametrize("pattern,path,expected", [
    ("config/**", "config", True),
    ("config/**", "config/a/b.json", True),
    ("config/**", "configx/a", False),
    ("**/*.db", "a/b/c.db", True),
    ("**/*.db", "c.db", True),
    ("logs/**/*.gz", "logs/a.gz", True),
    ("logs/**/*.gz", "logs/archive/2025/a.gz", True),
    ("logs/**/*.gz", "logs/a.log", False),
    ("data/*", "data/x.db", True),
    ("data/*", "data/ccla/x", False),
    (".env.*", ".env.local", True),
    ("**/*-wal", "data/x.db-wal", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a?c", "abc", True),
    ("a?c", "a/c", False),
])
def test_glob(pattern, path, expected):
    assert glob_match(pattern, path) is expected


def test_pruning_only_skips_directories_no_rule_can_reach():
    assert could_match_below("data/ccla/**", "data")
    assert not could_match_below("data/ccla/**", "node_modules")
    assert could_match_below("**/*.db", "anything")
    assert not could_match_below("data/*", "data/ccla")


def claims(catalogue, path):
    return [(rule.target, rule.action) for rule in catalogue.claim(path)]


def test_claim_order_gives_each_path_one_owner():
    c = build_catalogue({}, None)
    assert claims(c, "config/config.json") == [("config", "store")]
    # SQLite candidates fall through to the next rule when the magic test fails
    assert claims(c, ".poppo/poppo.db") == [("database", SQLITE), ("config", "store")]
    assert claims(c, "data/ccla/x.db") == [("database", SQLITE), ("agents", "store")]
    assert claims(c, ".env") == [("security", SECRET)]
    assert claims(c, "config/github.token") == [("security", SECRET)]
    assert claims(c, "certs/ca.pem")[0] == ("security", "reference")
    assert claims(c, "config/agents/custom.json") == [("agents", "store")]
    assert claims(c, "logs/poppo.log") == []
    assert claims(c, "logs/archive/poppo.log.gz") == [("logs", "store")]
    assert claims(c, "state/requests/r1.json") == [("state", "store")]
    assert claims(c, "node_modules/x/index.js") == []


def test_sidecars_and_poppoarc_files_are_never_claimed():
    c = build_catalogue({}, None)
    for path in ("data/poppo-history.db-wal", "data/x.db-shm", ".poppo/poppo.db-journal",
                 ".poppoarc.lock", ".poppoarc-stage-1/x", ".poppo/poppoarc/signing.key"):
        assert claims(c, path) == [], path


def test_config_can_disable_and_override_targets():
    c = build_catalogue({"logs": False, "state": {"exclude": ["state/requests/**"]}}, None)
    assert "logs" not in c.selected
    assert claims(c, "state/requests/a.json") == []
    assert claims(c, "state/running-tasks.json")[-1] == ("state", "store")
    # the command line wins over config
    assert build_catalogue({"logs": False}, ("logs",)).selected == ("logs",)
    custom = build_catalogue({"agents": {"include": ["bots/**"]}}, None)
    assert claims(custom, "bots/a.json") == [("agents", "store")]
    assert claims(custom, "data/ccla/learning.json") == []


def test_unknown_targets_are_rejected_clearly():
    with pytest.raises(UsageError, match="unknown target 'Data Base'"):
        parse_target_list("config,Data Base")       # no target has such a name
    # a name shaped like a custom target's: the configuration says whether it exists
    assert parse_target_list("config,databse") == ("config", "databse")
    with pytest.raises(UsageError, match="unknown target 'databse': backup.targets defines "
                                         "no custom target of that name"):
        build_catalogue({}, ("config", "databse"))
    with pytest.raises(UsageError):
        parse_target_list(",")
    with pytest.raises(ConfigError, match="backup.targets.foo"):
        build_catalogue({"foo": True}, None)
    assert parse_target_list("state, config,state") == ("state", "config")


# -- claim's per-directory fast path agrees with plain glob matching ------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

SEGMENTS = ["data", "ccla", "ccag", "state", "config", "agents", "logs", "archive", "certs",
            ".poppo", "poppoarc", "x.db", "a.gz", "b.json", ".env", ".env.local", "y-wal",
            "y.db-shm", "k.pem", "z.token", "access.log", "access.log.1", ".poppoarc.lock",
            "node_modules", "requests"]


def reference_claim(catalogue, path):
    if any(glob_match(p, path) for p in catalogue.excludes):
        return []
    wanted = []
    for rule in catalogue.rules:
        if any(glob_match(p, path) for p in rule.include) \
                and not any(glob_match(p, path) for p in rule.exclude):
            wanted.append(rule)
            if rule.action != SQLITE:
                break
    return wanted


CATALOGUES = [
    build_catalogue({}, None),
    build_catalogue({"state": {"include": ["state/**/*.json", "data/**"],
                               "exclude": ["state/requests/**"]},
                     "agents": {"exclude": ["**/*.gz"]}}, None),
]


@settings(max_examples=400)
@given(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5), st.sampled_from([0, 1]))
def test_claim_agrees_with_glob_matching(parts, which):
    catalogue = CATALOGUES[which]
    path = "/".join(parts)
    assert catalogue.claim(path) == reference_claim(catalogue, path)


# -- the area rule of a restore: Catalogue.owner decides as the walk does ----------------

_OWNER_NAMES = ["config", "state", "data", "logs", ".poppo", "agents", "ccla", "certs",
                "a.db", "a.db-wal", "x-journal", "b.gz", "access.log", ".env", ".env.x",
                "k.pem", "t.token", ".poppoarc", ".poppoarc-stage-1", "poppoarc", "n"]


def _walk_owner(catalogue, path: str, kind: str):
    """The walk's decision, spelled out: it enters every directory above ``path`` (none
    excluded, each worth descending), then takes the first claim as scan.py does."""
    parts = path.split("/")
    if not all(catalogue.worth_descending("/".join(parts[:n])) for n in range(1, len(parts))):
        return None
    rules = catalogue.claim(path)
    if kind == "sqlite":
        return rules[0].target if rules and rules[0].action == "sqlite" else None
    rules = [r for r in rules if r.action != "sqlite"]
    if not rules or rules[0].action == "reference":
        return None
    if kind == "dir" and rules[0].action != "store":
        return None
    return rules[0].target


@settings(max_examples=600)
@given(st.lists(st.sampled_from(_OWNER_NAMES), min_size=1, max_size=5),
       st.sampled_from(["dir", "file", "symlink", "sqlite"]), st.booleans())
def test_owner_decides_as_the_walk_does(names, kind, configured):
    from poppoarc.snapshot.catalogue import area_catalogue

    config = {"config": {"include": ["config/**", ".poppo/**", "n/**"]}} if configured else {}
    catalogue = area_catalogue(config)
    path = "/".join(names)
    assert catalogue.owner(path, kind) == _walk_owner(catalogue, path, kind), path
