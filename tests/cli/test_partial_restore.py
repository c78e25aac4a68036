"""Partial restores (issue 28): ``unpack --include/--exclude`` restores only the selected
paths, with every guarantee of a whole restore (the plan, a safety archive of exactly what
it replaces, staging, the swap); ``--to DIR`` restores into another directory.  And a
restore can leave out the one record it would refuse (F5), which ``verify`` still
refuses, saying so."""

from __future__ import annotations

import hashlib
import json
import os

from tests.helpers import CLI, digest
from tests.helpers.craft import craft, entry

PENDING = "state/pending-tasks.json"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def changed_paths(before: dict, after: dict) -> set[str]:
    return {p for p in set(before) | set(after) if before.get(p) != after.get(p)}


def test_one_file_dry_run_real_run_and_its_safety_archive(cli, installation):
    packed = cli.pack()
    archived = (installation / PENDING).read_bytes()
    (installation / PENDING).write_text('{"broken": true}\n')
    (installation / "state/last-run.json").write_text('{"kept": "as it is"}\n')
    (installation / "config/config.json").write_text('{"kept": true}\n')
    (installation / "state/new-since.json").write_text("{}\n")
    before = digest(installation)

    code, out, err = cli("unpack", packed["id"], "--include", PENDING, "--dry-run")
    assert code == 0, err
    assert f"M {PENDING}" in out and out.count("\n  M ") + out.count("\n  + ") \
        + out.count("\n  - ") == 1, out
    code, document = cli.json("unpack", packed["id"], "--include", PENDING, "--dry-run")
    changes = [c for t in document["plan"]["targets"] for c in t["changes"]]
    assert changes == [{"path": PENDING, "action": "change", "size": len(archived)}]
    assert document["plan"]["units"] == [PENDING]
    assert document["plan"]["include"] == [PENDING]
    assert digest(installation) == before

    code, document = cli.json("unpack", packed["id"], "--include", PENDING)
    assert code == 0, document
    after = digest(installation)
    assert changed_paths(before, after) == {PENDING}
    assert (installation / PENDING).read_bytes() == archived

    safety = document["safety_archive"]
    code, listed = cli.json("ls", safety)
    files = [e["path"] for e in listed["entries"] if e["type"] != "dir"]
    assert files == [PENDING], files
    code, out, err = cli("dump", safety, PENDING)
    assert out == '{"broken": true}\n'
    # undoing it is a partial restore of the safety archive
    code, _ = cli.json("unpack", safety, "--include", PENDING, "--skip-backup")
    assert code == 0 and digest(installation) == before


def test_a_folder_becomes_what_the_archive_holds_and_nothing_else_moves(cli, installation):
    packed = cli.pack()
    folder = installation / "data/ccla"
    (folder / "learning-data.json").write_text("[]\n")
    (folder / "added-since.json").write_text("{}\n")
    (installation / "data/ccpm/cache-note.json").write_text("{}\n")
    before = digest(installation)
    code, document = cli.json("unpack", packed["id"], "--include", "data/ccla")
    assert code == 0, document
    after = digest(installation)
    assert changed_paths(before, after) == {"data/ccla/learning-data.json",
                                            "data/ccla/added-since.json"}
    assert not (folder / "added-since.json").exists()
    assert document["plan"]["units"] == ["data/ccla"]
    # the safety archive holds what was replaced: the folder as it was, the new file too
    code, listed = cli.json("ls", document["safety_archive"])
    paths = {e["path"] for e in listed["entries"]}
    assert "data/ccla/added-since.json" in paths
    assert not [p for p in paths if not (p == "data" or p.startswith("data/ccla"))], paths


def test_exclude_keeps_the_live_paths_it_names(cli, installation):
    packed = cli.pack()
    for name in ("last-run.json", "issue-status.json"):
        (installation / "state" / name).write_text('{"live": 1}\n')
    before = digest(installation)
    code, document = cli.json("unpack", packed["id"], "--targets", "state", "--exclude",
                              "state/last-run.json", "--skip-backup")
    assert code == 0, document
    after = digest(installation)
    assert changed_paths(before, after) == {"state/issue-status.json"}
    assert (installation / "state/last-run.json").read_text() == '{"live": 1}\n'


def test_an_include_that_selects_nothing_changes_nothing(cli, installation):
    packed = cli.pack()
    (installation / "state/typo.json").write_text("{}\n")
    before = digest(installation)
    for args in (("--include", "state/tpyo.json"), ("--include", "state/typo.json"),
                 ("--exclude", "**")):
        code, out, err = cli("unpack", packed["id"], *args)
        assert code == 2 and "selects nothing" in err and err.count("\n") == 1, err
    code, out, err = cli("unpack", packed["id"], "--include", "/etc/passwd")
    assert code == 2 and "relative path" in err
    assert digest(installation) == before


def test_into_another_directory(cli, installation, tmp_path):
    packed = cli.pack()
    hook = tmp_path / "hook-ran"
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"]["hooks"] = {"beforeRestore": f"touch {hook}"}
    (installation / "config/config.json").write_text(json.dumps(config))
    before = digest(installation)
    scratch = tmp_path / "scratch"
    code, document = cli.json("unpack", packed["id"], "--include", "state", "--to",
                              str(scratch))
    assert code == 0, document
    assert document["safety_archive"] is None       # nothing was there to save
    assert digest(installation) == before and not hook.exists()
    restored = {p.relative_to(scratch).as_posix() for p in scratch.rglob("*")}
    assert PENDING in restored and all(p.startswith("state") or p.startswith(".poppoarc")
                                       for p in restored), restored
    assert sha(scratch / PENDING) == sha(installation / PENDING)
    # a scratch copy: its selected paths are replaced, with a safety archive of them
    (scratch / PENDING).write_text("scratch\n")
    code, document = cli.json("unpack", packed["id"], "--include", PENDING, "--to",
                              str(scratch))
    assert code == 0 and document["safety_archive"], document
    assert sha(scratch / PENDING) == sha(installation / PENDING)



def test_into_the_installation_the_store_or_the_keys_is_refused(cli, installation, key_home):
    """--to DIR is a place of its own: inside the installation its targets would take the
    restored tree for theirs (state/config/config.json); in the store or the key directory
    it would put files among poppoarc's own.  Refused before anything is made there."""
    packed = cli.pack()
    before = {where: digest(where) for where in (installation, cli.store, key_home)}
    for where, what in ((installation / "state", "the installation"),
                        (installation / "state/new-dir", "the installation"),
                        (cli.store, "the store"), (cli.store / "x", "the store"),
                        (key_home, "the key directory")):
        code, out, err = cli("unpack", packed["id"], "--include", "config", "--to", str(where),
                             "--skip-backup")
        assert code == 2 and f"inside {what}" in err and err.count("\n") == 1, (where, err)
        assert {w: digest(w) for w in before} == before, where


def test_a_partial_restore_of_an_encrypted_incremental(installation, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "partial")
    cli = CLI(installation, tmp_path / "store", capsys)
    first = cli.pack("--encrypt", "--full")
    archived = (installation / "config/config.json").read_bytes()
    (installation / "state/last-run.json").write_text("{}\n")
    second = cli.pack("--encrypt", "--incremental")
    assert second["parent"] == first["id"]
    (installation / "config/config.json").write_text("{}\n")
    before = digest(installation)
    code, document = cli.json("unpack", second["id"], "--include", "config/config.json")
    assert code == 0, document
    assert changed_paths(before, digest(installation)) == {"config/config.json"}
    assert (installation / "config/config.json").read_bytes() == archived


# -- one unsafe record: leave it out (F5) -------------------------------------------------

CONFIG = [entry("config", "dir", target="config"),
          entry("config/config.json", data=b'{"from": "archive"}\n', target="config")]
STATE = [entry("state", "dir", target="state"),
         entry("state/last-run.json", data=b'{"ok": true}\n'),
         entry("state/abs", "symlink", link="/etc/passwd")]


def test_one_escaping_symlink_stops_only_what_selects_it(cli, installation, key_home):
    """poppoarc 0.1 packed absolute symlinks (``state/abs -> /etc/passwd``): such an
    archive is refused whole by verify and by a restore that selects the link, and the
    refusal names the ``--exclude`` that restores the rest."""
    cli.pack()
    archive = craft(cli.store, key_home, CONFIG + STATE)
    before = digest(installation)
    for run in (("unpack", str(archive)), ("unpack", str(archive), "--dry-run"),
                ("unpack", str(archive), "--targets", "state"), ("ls", str(archive)),
                ("unpack", str(archive), "--include", "state")):
        code, out, err = cli(*run)
        assert code == 31, (run, err)
        assert "state/abs" in err and "--exclude state/abs" in err and err.count("\n") == 1
    code, out, err = cli("verify", str(archive))
    assert code == 31 and "verify judges every entry" in err and "--exclude state/abs" in err
    assert digest(installation) == before

    code, document = cli.json("unpack", str(archive), "--targets", "config")
    assert code == 0, document
    assert (installation / "config/config.json").read_text() == '{"from": "archive"}\n'
    code, document = cli.json("unpack", str(archive), "--exclude", "state/abs")
    assert code == 0, document
    assert (installation / "state/last-run.json").read_text() == '{"ok": true}\n'
    assert not os.path.lexists(installation / "state/abs")
    code, listed = cli.json("ls", str(archive), "--exclude", "state/abs")
    assert code == 0 and "state/abs" not in {e["path"] for e in listed["entries"]}
    code, out, err = cli("dump", str(archive), "state/last-run.json")
    assert code == 0 and out == '{"ok": true}\n'


def test_a_link_resolved_through_a_left_out_link_is_still_judged(cli, installation,
                                                                  key_home):
    """Leaving a link out does not make the links that go through it safe: a restore of
    other targets may already have made it live."""
    cli.pack()
    archive = craft(cli.store, key_home, CONFIG + [
        entry("config/l1", "symlink", link="../state", target="config"),
        entry("state", "dir", target="state"),
        entry("state/l2", "symlink", link="../config/l1/../..")])
    code, out, err = cli("unpack", str(archive), "--exclude", "config/l1", "--dry-run")
    assert code == 31 and "state/l2" in err and "--exclude state/l2" in err, err
    code, document = cli.json("unpack", str(archive), "--exclude", "state/l2", "--skip-backup")
    assert code == 0, document
