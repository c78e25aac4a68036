"""Protected archives: a mark in the store that every retention honours (issue 31)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from poppoarc.archives.pruning import prune
from poppoarc.config import resolve
from poppoarc.store.local import SUFFIX

from tests.helpers import CLI

MARK = ".poppo.protected"
SCHEMAS = Path(__file__).resolve().parents[2] / "spec" / "json"


def valid(name: str, document: dict) -> dict:
    from jsonschema import Draft202012Validator
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    errors = list(Draft202012Validator(schema).iter_errors(document))
    assert not errors, [e.message for e in errors]
    return document


def configure(root: Path, **backup) -> None:
    path = root / "config/config.json"
    document = json.loads(path.read_text())
    document.setdefault("backup", {}).update(backup)
    path.write_text(json.dumps(document))


def archives(store: Path) -> set[str]:
    return {p.name[:-len(SUFFIX)] for p in store.glob("*" + SUFFIX)}


def test_pack_protect_keeps_the_archive_and_its_chain_past_max_backups(cli, installation):
    configure(installation, maxBackups=2, incremental={"enabled": True})
    base = cli.pack("--full", "--no-prune")        # prune itself is what this test runs
    (installation / "state" / "new.json").write_text("{}")
    protected = cli.pack("--protect", "--no-prune")
    assert protected["incremental"] and protected["parent"] == base["id"]
    assert protected["protected"] and (cli.store / (protected["id"] + MARK)).is_file()
    later = [cli.pack("--full", "--no-prune")["id"] for _ in range(4)]

    code, plan = cli.json("prune", "--dry-run")
    assert code == 0
    decisions = {d["id"]: d for d in plan["decisions"]}
    assert decisions[protected["id"]]["rules"] == ["protected"]
    assert decisions[protected["id"]]["protected"] is True
    valid("pack", protected), valid("prune", plan)
    assert "parent" in decisions[base["id"]]["rules"]
    code, done = cli.json("prune")
    assert code == 0 and sorted(done["deleted"]) == sorted(later[:2])
    assert archives(cli.store) == {base["id"], protected["id"], *later[2:]}

    # the chain still restores: the protected incremental verifies through its parent
    code, verified = cli.json("verify", protected["id"])
    assert code == 0 and verified["ok"]

    # lifted, retention applies again (the parent goes with it)
    code, lifted = cli.json("unprotect", protected["id"][:30])
    valid("unprotect", lifted)
    assert code == 0 and lifted == {"schema_version": 1, "id": protected["id"],
                                    "store": str(cli.store), "protected": False,
                                    "changed": True}
    code, done = cli.json("prune")
    assert code == 0 and sorted(done["deleted"]) == sorted([base["id"], protected["id"]])
    assert archives(cli.store) == set(later[2:])


def test_every_prune_honours_the_mark_scheduled_too(cli, installation):
    """The schedule's prune (and a pack's) call prune_locked with the same store."""
    configure(installation, maxBackups=1)
    first = cli.pack()["id"]
    code, marked = cli.json("protect", first)
    assert code == 0 and marked["protected"] and marked["changed"] and valid("protect", marked)
    code, again = cli.json("protect", first)
    assert code == 0 and not again["changed"]
    for _ in range(2):
        cli.pack()
    result = prune(resolve(str(installation), None, str(cli.store)))
    assert first in archives(cli.store) and len(archives(cli.store)) == 2
    assert first not in result.deleted


def test_list_marks_protected_archives_text_and_json(cli):
    first, second = cli.pack()["id"], cli.pack()["id"]
    cli("protect", first)
    code, listed = cli.json("list")
    assert {a["id"]: a["protected"] for a in listed["archives"]} == {first: True, second: False}
    valid("list", listed)
    code, out, _ = cli("list")
    [line] = [l for l in out.splitlines() if l.startswith(first)]
    assert line.endswith("[PROTECTED]")
    assert "[PROTECTED]" not in next(l for l in out.splitlines() if l.startswith(second))
    code, out, _ = cli("protect", second)
    assert code == 0 and out.startswith(f"Protected {second} in {cli.store}")


def test_the_mark_survives_copy(cli, tmp_path):
    packed = cli.pack("--protect")
    other = tmp_path / "offsite"
    code, copied = cli.json("copy", packed["id"], "--to", str(other))
    assert code == 0 and copied["protected"] and valid("copy", copied)
    assert (other / (packed["id"] + MARK)).is_file()
    code, listed = CLI(cli.root, other, cli.capsys).json("list")
    assert listed["archives"][0]["protected"]
    plain = cli.pack()
    code, copied = cli.json("copy", plain["id"], "--to", str(other))
    assert code == 0 and not copied["protected"]
    assert not (other / (plain["id"] + MARK)).exists()


@pytest.mark.parametrize("junk", ["directory", "fifo", "dangling-symlink", "orphan", "bare",
                                  "hidden", "unreadable"])
def test_junk_marks_stop_nothing(cli, installation, junk):
    """Whatever lies in the store under a mark's name: list, pack, prune and doctor go on;
    only the name counts, so it can keep an archive, never stop a command."""
    configure(installation, maxBackups=1)
    first = cli.pack()["id"]
    path = cli.store / (first + MARK)
    if junk == "directory":
        path.mkdir()
    elif junk == "fifo":
        os.mkfifo(path)
    elif junk == "dangling-symlink":
        path.symlink_to(cli.store / "nowhere")
    elif junk == "orphan":
        path = cli.store / ("backup-2000-01-01T00-00-00-000Z-gone00" + MARK)
        path.write_text("{}")
    elif junk == "bare":
        path = cli.store / MARK
        path.write_bytes(os.urandom(100))
    elif junk == "hidden":
        path = cli.store / ("." + first + MARK)
        path.write_text("x")
    elif junk == "unreadable":
        path.write_bytes(b"\xff" * 10)
        path.chmod(0)
    keeps_first = junk in ("directory", "fifo", "dangling-symlink", "unreadable")
    code, listed = cli.json("list")
    assert code == 0 and listed["archives"][0]["protected"] is keeps_first
    second = cli.pack()["id"]
    code, done = cli.json("prune")
    assert code == 0
    assert (first in archives(cli.store)) is keeps_first and second in archives(cli.store)
    code, _, err = cli("doctor")
    assert code in (0, 1, 7) and "Traceback" not in err
    assert path.exists() or path.is_symlink()         # poppoarc never deletes a mark itself
    if junk == "directory":
        code, out, err = cli("unprotect", first)
        assert code not in (0, 1, 70) and err.count("\n") == 1 and str(path) in err
    elif keeps_first:
        code, lifted = cli.json("unprotect", first)
        assert code == 0 and lifted["changed"] and not os.path.lexists(path)


def test_unprotect_an_archive_that_is_gone_by_its_full_id(cli):
    packed = cli.pack("--protect")
    (cli.store / (packed["id"] + SUFFIX)).unlink()
    code, lifted = cli.json("unprotect", packed["id"])
    assert code == 0 and lifted["changed"]
    code, out, err = cli("protect", packed["id"])
    assert code != 0 and packed["id"] in err


def test_a_failed_pack_leaves_no_mark(cli, monkeypatch):
    from poppoarc.pack import steps

    def broken(run, monotonic):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(steps, "_finish", broken)
    code, out, err = cli("pack", "--protect")
    assert code not in (0, 1)
    assert not list(cli.store.glob("*" + MARK)) and not list(cli.store.glob("*" + SUFFIX))
