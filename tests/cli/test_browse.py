"""Browsing archives (issue 28): ``ls``, ``dump``, ``find`` and ``diff`` on an incremental
chain of three archives, plain and encrypted, each checked against the installation's
own history (what its files and databases held when each archive was made)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from poppoarc.demo.changes import simulate_day
from tests.helpers import CLI, tree_files

HISTORY_DB = "data/poppo-history.db"
PASSPHRASE = "browse the chain"


def table_rows(db: Path) -> dict[str, list]:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        names = [r[0] for r in connection.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {n: connection.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall()
                for n in names}
    finally:
        connection.close()


@pytest.fixture(params=["plain", "encrypted"])
def history(request, installation, tmp_path, capsys, monkeypatch):
    """Three archives of one chain, one simulated day apart, with what the installation
    held at each: its files (SHA-256) and the history database's rows."""
    extra = ()
    if request.param == "encrypted":
        monkeypatch.setenv("POPPO_BACKUP_KEY", PASSPHRASE)
        extra = ("--encrypt",)
    cli = CLI(installation, tmp_path / "store", capsys)
    archives, states = [], []

    def pack(*args):
        archives.append(cli.pack(*args, *extra))
        states.append({"files": tree_files(installation), "rows": table_rows(
            installation / HISTORY_DB)})

    pack("--full")
    simulate_day(installation, fraction=0.05, seed=1)
    (installation / "state/added-on-day-1.txt").write_text('{"day": 1}\n')
    (installation / "state/running-tasks.json").unlink()
    pack("--incremental")
    simulate_day(installation, fraction=0.05, seed=2)
    pack("--incremental")
    assert archives[1]["parent"] == archives[0]["id"]
    assert archives[2]["parent"] == archives[1]["id"]
    return cli, archives, states, request.param


def ls(cli, archive_id, *paths):
    code, listed = cli.json("ls", archive_id, *paths)
    assert code == 0, listed
    return {e["path"]: e for e in listed["entries"]}


def test_ls_lists_the_tree_each_archive_was_made_of(history):
    cli, archives, states, kind = history
    for archive, state in zip(archives, states):
        entries = ls(cli, archive["id"])
        files = {p: e for p, e in entries.items() if e["type"] == "file"}
        # every archived file existed then, with that size; the databases with their rows
        for path, entry in files.items():
            if path == ".poppoarc/environment.json":
                continue
            assert path in state["files"], path
        assert "state/running-tasks.json" in files if archive is archives[0] \
            else "state/running-tasks.json" not in files
        assert ("state/added-on-day-1.txt" in files) == (archive is not archives[0])
        database = files[HISTORY_DB]["database"]
        assert database["tables"] == {t: len(r) for t, r in state["rows"].items()}
        assert files[HISTORY_DB]["sealed"] == (kind == "encrypted")
    newest = ls(cli, archives[2]["id"], "config")
    assert newest and all(p == "config" or p.startswith("config/") for p in newest)
    assert newest["config/config.json"]["stored_in"] == archives[0]["id"]


def test_dump_a_file_last_changed_in_the_first_archive(history, tmp_path):
    cli, archives, states, kind = history
    path = "config/config.json"
    assert states[0]["files"][path] == states[2]["files"][path]
    code, out, err = cli("dump", archives[2]["id"], path)
    assert code == 0, err
    assert hashlib.sha256(out.encode()).hexdigest() == states[0]["files"][path]
    # -o FILE: replaced whole, with the record's mode and time
    target = tmp_path / "config.json"
    target.write_text("old")
    code, document = cli.json("dump", archives[2]["id"], path, "-o", str(target))
    assert code == 0 and document["held_by"] == archives[0]["id"], document
    assert hashlib.sha256(target.read_bytes()).hexdigest() == states[0]["files"][path]
    assert document["verified_by"] in (("hmac_sha256",) if kind == "encrypted"
                                       else ("checksum", "sha256"))
    assert not list(tmp_path.glob("config.json.*.tmp"))


def test_dump_a_database_is_its_snapshot_through_the_page_deltas(history, tmp_path):
    cli, archives, states, kind = history
    for archive, state in zip(archives, states):
        target = tmp_path / f"{archive['id']}.db"
        code, document = cli.json("dump", archive["id"], HISTORY_DB, "-o", str(target))
        assert code == 0, document
        assert document["database"] and document["sha256"] == \
            hashlib.sha256(target.read_bytes()).hexdigest()
        assert table_rows(target) == state["rows"]
        with sqlite3.connect(target) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_find_says_when_each_path_changed_appeared_and_disappeared(history):
    cli, archives, states, kind = history
    code, found = cli.json("find", "state/**")
    assert code == 0, found
    assert [a["id"] for a in found["archives"]] == [a["id"] for a in reversed(archives)]
    timelines = {p["path"]: p["history"] for p in found["paths"]}
    gone = timelines["state/running-tasks.json"]
    assert [(r["archive_id"], r["state"]) for r in gone] == \
        [(archives[1]["id"], "absent"), (archives[0]["id"], "added")]
    added = timelines["state/added-on-day-1.txt"]
    assert [r["state"] for r in added] == ["unchanged", "added"]
    for path, timeline in timelines.items():
        rows = {r["archive_id"]: r for r in timeline}
        for older, newer, state_older, state_newer in zip(archives, archives[1:], states,
                                                          states[1:]):
            row = rows.get(newer["id"])
            if row is None or row["state"] == "absent" or row["type"] != "file":
                continue
            content_changed = state_older["files"].get(path) != state_newer["files"].get(path)
            if path in state_older["files"]:
                assert (row["state"] == "changed") == content_changed, (path, row)


def test_diff_of_the_first_and_third_archives(history):
    cli, archives, states, kind = history
    code, difference = cli.json("diff", archives[0]["id"], archives[2]["id"])
    assert code == 0, difference
    first, third = ls(cli, archives[0]["id"]), ls(cli, archives[2]["id"])
    by_action = {"added": set(), "removed": set(), "changed": set()}
    for target in difference["targets"]:
        for change in target["changes"]:
            by_action[change["action"]].add(change["path"])
    assert by_action["added"] == set(third) - set(first) == {"state/added-on-day-1.txt"}
    assert by_action["removed"] == set(first) - set(third) == {"state/running-tasks.json"}
    for path in set(first) & set(third):
        if first[path]["type"] != "file" or path == ".poppoarc/environment.json":
            continue
        content_changed = states[0]["files"][path] != states[2]["files"][path]
        if path == HISTORY_DB:
            assert content_changed and path in by_action["changed"]
        elif content_changed:
            assert path in by_action["changed"], path
        else:
            assert path not in by_action["changed"], path
    databases = {d["path"]: d for d in difference["databases"]}
    tables = databases[HISTORY_DB]["tables"]
    for name, rows in states[2]["rows"].items():
        if len(rows) != len(states[0]["rows"][name]):
            assert tables[name] == {"from": len(states[0]["rows"][name]), "to": len(rows)}
    code, out, err = cli("diff", archives[0]["id"], archives[2]["id"])
    assert code == 0 and "+ state/added-on-day-1.txt" in out \
        and "- state/running-tasks.json" in out


def test_browsing_reads_heads_and_indexes_only(history):
    """ls, find and diff never read a body: every body byte of the store could be garbage."""
    cli, archives, states, kind = history
    for archive in archives:
        path = cli.store / f"{archive['id']}.poppo.tar.zst"
        manifest = cli.json("inspect", archive["id"])[1]["manifest"]
        layout = manifest["layout"]
        data = bytearray(path.read_bytes())
        data[layout["body_offset"]:layout["index_offset"]] = \
            bytes(layout["index_offset"] - layout["body_offset"])
        path.write_bytes(bytes(data))
    assert cli.json("ls", archives[2]["id"])[0] == 0
    assert cli.json("find", "state/**")[0] == 0
    assert cli.json("diff", archives[0]["id"], archives[2]["id"])[0] == 0
    assert cli("dump", archives[2]["id"], "config/config.json")[0] in (13, 17)
