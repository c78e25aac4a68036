"""The restore plan as text: the paths it would change (the first ones of each target,
then how many more), and databases compared by content."""

import sqlite3


def test_dry_run_names_the_first_paths_of_each_target(cli, installation):
    packed = cli.pack()
    for n in range(12):
        (installation / f"state/extra-{n:02}.json").write_text("{}")
    (installation / "config/config.json").write_text('{"backup": {}}\n')
    code, out, _ = cli("unpack", packed["id"], "--dry-run")
    assert code in (0, 1)
    lines = out.splitlines()
    assert "config:" in lines and "  ~ config/config.json" in lines
    start = lines.index("state:")
    shown = lines[start + 1:start + 11]
    assert shown == [f"  - state/extra-{n:02}.json" for n in range(10)]
    assert lines[start + 11] == "  …and 2 more"
    # --json lists them all
    code, document = cli.json("unpack", packed["id"], "--dry-run")
    state = next(t for t in document["plan"]["targets"] if t["target"] == "state")
    assert len([c for c in state["changes"] if c["action"] == "remove"]) == 12


def test_databases_are_compared_by_content(cli, installation):
    packed = cli.pack("--targets", "database")
    code, document = cli.json("unpack", packed["id"], "--dry-run")
    database = next(t for t in document["plan"]["targets"] if t["target"] == "database")
    assert database["change"]["paths"] == 0 and database["unchanged"]["paths"] >= 5
    assert all(db["identical"] for db in document["plan"]["databases"])
    code, out, _ = cli("unpack", packed["id"], "--dry-run")
    assert "  data/ccla.db: identical to the archive (unchanged)" in out.splitlines()

    conn = sqlite3.connect(installation / "data/ccla.db")
    table = conn.execute("select name from sqlite_master where type='table'").fetchone()[0]
    conn.execute(f"delete from {table}")
    conn.commit()
    conn.close()
    code, document = cli.json("unpack", packed["id"], "--dry-run")
    database = next(t for t in document["plan"]["targets"] if t["target"] == "database")
    assert database["change"]["paths"] == 1
    assert [c["path"] for c in database["changes"]] == ["data/ccla.db"]
    identical = {db["path"]: db["identical"] for db in document["plan"]["databases"]}
    assert identical["data/ccla.db"] is False
    assert sum(identical.values()) == len(identical) - 1


def test_control_characters_in_names_are_shown_not_obeyed(cli, installation):
    """A name may hold an escape sequence or a newline (spec §1 allows it): the terminal
    is never told to act on it, and no line is forged."""
    packed = cli.pack("--targets", "state")
    (installation / "state/x\x1b]0;PWNED\x07").write_text("{}")
    (installation / "state/y\n  file 644 fake").write_text("{}")
    for args in (("pack", "--targets", "state"), ("unpack", packed["id"], "--dry-run"),
                 ("inspect", packed["id"], "--entries")):
        code, out, err = cli(*args)
        assert "\x1b" not in out + err and "\x07" not in out + err, args
        assert not any(line.startswith("  file 644 fake") for line in (out + err).splitlines())
    code, out, _ = cli("unpack", packed["id"], "--dry-run")
    assert "  - $'state/x\\x1b]0;PWNED\\x07'" in out.splitlines()
    assert "  - $'state/y\\n  file 644 fake'" in out.splitlines()
