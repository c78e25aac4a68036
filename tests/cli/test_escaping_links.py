"""Follow-up F1 of issue 23: pack leaves out a symbolic link that escapes the installation
through other live symbolic links (``a -> ..``, ``b -> a/../x``), with a named warning, so
that every archive pack writes verifies (the same rule as restore/safety.py's ``escapes``)."""

import os

import pytest

from poppoarc.pack import walk
from poppoarc.pack.walk import escaping_links
from poppoarc.restore import safety


def test_escaping_links_is_the_restore_rule_iterated():
    # b's text stays inside, but through a (-> ..) it leaves the root, and so does c
    # through b: both lead outside on the live system too
    links = [["config/a", "..", "config"], ["config/b", "a/../x", "config"],
             ["config/c", "b", "config"], ["config/ok", "../state/x", "config"]]
    assert escaping_links(links) == {"config/b": "a/../x", "config/c": "b"}
    # through a chain of two links (c -> b -> a -> ..): c escapes, b and a do not
    assert escaping_links([["s/a", "..", "state"], ["s/b", "a", "state"],
                           ["s/c", "b/../y", "state"]]) == {"s/c": "b/../y"}
    assert escaping_links([]) == {}
    assert walk.escapes is safety.escapes           # one rule: the restore's own function


def _plant(root):
    """Links under three targets: config, logs (a shared parent holding only the bad link),
    state (the directory the pack's subtree helper walks, when helpers are eager)."""
    os.symlink("..", root / "config" / "up")                    # config/up -> the root
    os.symlink("up/../x", root / "config" / "sneaky")           # leaves through config/up
    (root / "logs" / "x").mkdir(parents=True, exist_ok=True)
    (root / "logs" / "y").mkdir(parents=True, exist_ok=True)
    os.symlink("..", root / "logs" / "x" / "a.gz")              # logs/x/a.gz -> logs
    os.symlink("../x/a.gz/../..", root / "logs" / "y" / "b.gz")  # -> logs/.. /.. : outside
    os.symlink("../config", root / "state" / "fine")            # inside, kept
    os.symlink("..", root / "state" / "up")
    os.symlink("up/../x", root / "state" / "sneaky")


def test_pack_leaves_out_links_that_escape_through_others_and_verifies(cli, installation,
                                                                       both_ways):
    _plant(installation)
    code, doc = cli.json("pack", "--full")
    assert code == 1, doc
    assert sorted(doc["skipped"]) == ["config/sneaky", "logs/y/b.gz", "state/sneaky"]
    for path in ("config/sneaky", "logs/y/b.gz", "state/sneaky"):
        assert any(w.startswith(f"{path}: symbolic link to ") and "other symbolic links" in w
                   for w in doc["warnings"]), doc["warnings"]
    code, out, err = cli("verify", doc["id"])
    assert code == 0, err
    code, inspected = cli.json("inspect", doc["id"], "--entries")
    paths = {e["path"] for e in inspected["entries"]}
    assert {"config/up", "logs/x/a.gz", "state/fine", "state/up"} <= paths
    assert not {"config/sneaky", "logs/y/b.gz", "logs/y", "state/sneaky"} & paths
    # (logs/y, a shared parent above nothing else, went with its link)
    counts = inspected["manifest"]["targets"]
    assert counts["config"]["entries"] == sum(1 for e in inspected["entries"]
                                              if e["target"] == "config")


@pytest.mark.parametrize("targets", ["logs", "config,state"])
def test_selected_targets_alone_also_verify(cli, installation, targets):
    _plant(installation)
    code, doc = cli.json("pack", "--targets", targets)
    assert code == 1, doc
    assert cli("verify", doc["id"])[0] == 0
