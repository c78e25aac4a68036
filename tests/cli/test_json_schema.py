"""Every command's --json document parses and matches its schema in spec/json/."""

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from poppoarc import cli as cli_module
from poppoarc.restore import journal as journal_mod
from poppoarc.restore import swap

SCHEMAS = Path(__file__).resolve().parents[2] / "spec" / "json"
DEAD_PID = 2**22 + 12345


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def check(name: str, document: dict) -> None:
    assert document["schema_version"] == 1
    errors = sorted(Draft202012Validator(schema(name)).iter_errors(document), key=str)
    assert not errors, f"{name}: " + "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])


def run(cli, name: str, *args: str, codes=(0, 1)) -> dict:
    code, out, err = cli(*args, "--json")
    assert code in codes, err
    document = json.loads(out)
    check(name, document)
    return document


def test_schemas_are_valid_and_versioned():
    for path in SCHEMAS.glob("*.schema.json"):
        document = json.loads(path.read_text())
        Draft202012Validator.check_schema(document)
        assert document["properties"]["schema_version"] == {"const": 1, "description": document[
            "properties"]["schema_version"]["description"]}
        assert "schema_version" in document["required"]


def test_every_command_has_a_schema():
    commands = set()
    for line in cli_module.__doc__.split("Usage:")[1].split("\n\n")[0].splitlines():
        commands.update(re.findall(r"(?<![-\w])([a-z]{3,})(?![-\w=])", line.replace("poppoarc", "")))
    commands -= {"options"}
    aliases = {"create": "pack", "restore": "unpack"}
    assert {aliases.get(c, c) for c in commands} <= {p.name.split(".")[0] for p in SCHEMAS.iterdir()}
    assert {"pack", "list", "inspect", "verify", "unpack", "keygen", "doctor"} <= commands


def test_every_command_output_matches_its_schema(cli):
    packed = run(cli, "pack", "pack", "--name", "schema test")
    run(cli, "pack", "create", "--targets", "config,state")
    listed = run(cli, "list", "list")
    assert listed["total"] == 2
    run(cli, "inspect", "inspect", packed["id"])
    with_entries = run(cli, "inspect", "inspect", packed["id"], "--entries")
    assert with_entries["entries"]
    run(cli, "verify", "verify", packed["id"])
    listing = run(cli, "ls", "ls", packed["id"], "data", "--exclude", "data/ccla")
    assert any("database" in e for e in listing["entries"])
    found = run(cli, "find", "find", "state/*.json")
    assert found["paths"] and found["paths"][0]["history"][-1]["state"] == "added"
    (cli.root / "state/last-run.json").write_text("{}")
    later = run(cli, "pack", "pack")
    difference = run(cli, "diff", "diff", packed["id"], later["id"])
    assert any(t["changed"] for t in difference["targets"])
    run(cli, "dump", "dump", packed["id"], "data/poppo-history.db", "-o",
        str(cli.root.parent / "history.db"))
    run(cli, "unpack", "unpack", packed["id"], "--dry-run")
    run(cli, "unpack", "unpack", packed["id"], "--dry-run", "--include", "state/*.json",
        "--exclude", "state/last-run.json")
    (cli.root / "state/stray.json").write_text("{}")
    restored = run(cli, "unpack", "restore", packed["id"], "--targets", "state")
    assert restored["outcome"] == "committed" and restored["safety_archive"]
    run(cli, "recover", "unpack", "--recover")
    run(cli, "keygen", "keygen", "--force")
    run(cli, "doctor", "doctor")


def test_recovery_document(cli):
    packed = cli.pack()
    swap.begin(cli.root, "r1", packed["id"])
    journal = journal_mod.read_journal(cli.root)
    journal.pid, journal.pid_start = DEAD_PID, None
    journal_mod.write_journal(cli.root, journal)
    document = run(cli, "recover", "unpack", "--recover")
    assert document["recovered"]["action"] == "rolled_back"


@pytest.mark.parametrize("args,code", [(("verify", "backup-1999"), 4), (("pack", "--targets", "x"), 2),
                                       (("inspect", "/nonexistent.poppo.tar.zst"), 4)])
def test_error_documents(cli, args, code):
    got, out, err = cli(*args, "--json")
    assert got == code
    document = json.loads(out)
    check("error", document)
    assert document["error"]["exit_code"] == code and err.count("\n") == 1


def test_policy_command_outputs_match_their_schemas(cli, installation, key_home, monkeypatch):
    config = json.loads((installation / "config/config.json").read_text())
    config["backup"].update(schedule={"daily": {"cron": "0 2 * * *", "type": "incremental"}},
                            maxBackups=1)
    (installation / "config/config.json").write_text(json.dumps(config))
    run(cli, "pack", "pack", "--no-prune")
    run(cli, "pack", "pack", "--no-prune")
    document = run(cli, "prune", "prune", "--dry-run")
    assert document["dry_run"] and len(document["would_delete"]) == 1
    document = run(cli, "pack", "pack")        # and prunes after itself
    assert len(document["retention"]["deleted"]) == 2 and document["retention"]["kept"] == 1
    document = run(cli, "schedule", "schedule", "--next", "--count=3")
    assert len(document["next"]) == 3
    monkeypatch.setenv("POPPO_BACKUP_KEY", "schema test")
    document = run(cli, "keygen", "keygen", "--encryption", "--force")   # (pack made one)
    assert document["public_key"].startswith("x25519:")
    document = run(cli, "keygen", "keygen", f"--export={cli.root.parent / 'identity.key'}")
    assert document["kind"] == "export" and document["path"].endswith("identity.key")


def test_config_upgrade_matches_its_schema(cli, installation):
    from poppoarc.demo.real_layout import LEGACY_BACKUP, config_text
    (installation / "config/config.json").write_text(config_text([("backup", LEGACY_BACKUP)]))
    document = run(cli, "config", "config", "--upgrade")
    assert document["changed"] and not document["written"]
    assert any(m["kind"] == "problem" for m in document["mappings"])
    document = run(cli, "config", "config", "--upgrade", "--write")
    assert document["written"]
