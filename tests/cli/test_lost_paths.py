"""Nothing a selected target claims is left out silently: every path is archived or named
in a warning, in the manifest's warnings and in ``pack --json`` (``skipped``), and doctor
says when a database cannot be read or is missing since the last archive (issue 24, 1)."""

import json
import os
import shutil


def _installation(nobody, installation_template):
    root = nobody.home / "inst"
    shutil.copytree(installation_template("tiny"), root, symlinks=True)
    nobody.give(root)
    return root


def _pack(nobody, root, *args):
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "pack",
                      "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def _doctor(nobody, root):
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "doctor",
                      "--json")
    report = json.loads(done.stdout)
    return done.returncode, {check["id"]: check for check in report["checks"]}


def test_an_unreadable_database_is_named_not_dropped(nobody, installation_template):
    root = _installation(nobody, installation_template)
    os.chmod(root / "data/ccla.db", 0)
    code, document = _pack(nobody, root)
    databases = [d["path"] for d in document["databases"]]
    assert "data/ccla.db" not in databases and len(databases) == 4
    assert code == 1
    assert "data/ccla.db" in document["skipped"]
    message = "data/ccla.db: cannot read (Permission denied); not archived"
    assert message in document["warnings"]
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "inspect",
                      document["id"], "--json")
    assert message in json.loads(done.stdout)["manifest"]["warnings"]
    code, checks = _doctor(nobody, root)
    assert code == 7 and checks["databases"]["status"] == "fail"
    assert "1 database file(s) cannot be read" in checks["databases"]["message"]
    assert any(d.startswith("data/ccla.db: cannot read") for d in checks["databases"]["details"])


def test_doctor_compares_the_databases_with_the_newest_archive(nobody, installation_template):
    root = _installation(nobody, installation_template)
    code, document = _pack(nobody, root)
    assert len(document["databases"]) == 5
    code, checks = _doctor(nobody, root)
    assert checks["databases"]["status"] == "ok"
    assert f"all 5 of {document['id']} are there" in checks["databases"]["message"]
    os.unlink(root / "data/security.db")
    code, checks = _doctor(nobody, root)
    assert checks["databases"]["status"] == "warn"
    assert "1 of the 5 in" in checks["databases"]["message"]
    assert checks["databases"]["details"] == ["data/security.db"]


def test_a_database_sqlite_cannot_open_is_a_warning_and_the_rest_is_packed(
        nobody, installation_template):
    """Readable, but in a directory this user cannot write, with its WAL index gone:
    SQLite cannot open it read-only.  The pack names it and goes on."""
    root = _installation(nobody, installation_template)
    ccpm = root / "data/ccpm"
    for sidecar in ("cache.sqlite3-shm",):
        (ccpm / sidecar).unlink(missing_ok=True)
    assert (ccpm / "cache.sqlite3-wal").exists()
    os.chmod(ccpm, 0o555)
    try:
        code, document = _pack(nobody, root)
    finally:
        os.chmod(ccpm, 0o755)
    assert code == 1
    assert "data/ccpm/cache.sqlite3" in document["skipped"]
    assert any(w.startswith("data/ccpm/cache.sqlite3: cannot open database (")
               and w.endswith("; not archived") for w in document["warnings"])
    assert [d["path"] for d in document["databases"]] == [
        ".poppo/poppo.db", "data/ccla.db", "data/poppo-history.db", "data/security.db"]


def test_every_unreadable_path_is_named(nobody, installation_template):
    root = _installation(nobody, installation_template)
    os.chmod(root / "config/defaults.json", 0)           # a file it cannot open
    (root / "state/private").mkdir()
    (root / "state/private/task.json").write_text("{}")
    os.chmod(root / "state/private", 0)                   # a directory it cannot list
    os.mkfifo(root / "state/queue.fifo")                  # a special file
    os.symlink("/etc/passwd", root / "state/outside")     # a link a restore refuses
    os.symlink("../../..", root / "state/up")
    nobody.give(root)
    code, document = _pack(nobody, root)
    assert code == 1
    warnings = document["warnings"]
    assert "config/defaults.json: cannot open (Permission denied); not archived" in warnings
    assert "state/private: cannot read directory: Permission denied; skipped" in warnings
    assert "state/queue.fifo: special file (device, FIFO or socket) not archived" in warnings
    assert any(w.startswith("state/outside: symbolic link to '/etc/passwd' not archived: "
                            "absolute link target") for w in warnings)
    assert any(w.startswith("state/up: symbolic link to '../../..' not archived: link "
                            "target leaves the installation") for w in warnings)
    assert {"config/defaults.json", "state/private", "state/outside",
            "state/up"} <= set(document["skipped"])
    assert "state/queue.fifo" not in document["skipped"]      # it holds no content
    done = nobody.run("--root", str(root), "--store", str(nobody.home / "store"), "verify",
                      document["id"])
    assert done.returncode == 0, done.stderr


def test_names_an_archive_cannot_hold_are_named(installation, cli):
    """Not UTF-8, or deeper than a reader accepts (spec §1): named, and pack writes an
    archive that verifies."""
    raw = os.fsencode(installation / "state") + b"/caf\xe9.json"
    with open(raw, "w") as handle:
        handle.write("{}")
    deep = installation / "state/deep"
    path = deep
    for _ in range(260):
        path = path / "d"
    os.makedirs(path)
    (path / "leaf.json").write_text("{}")
    code, document = cli.json("pack")
    assert code == 1
    assert "state/caf\\xe9.json: name is not valid UTF-8 (an archive path is UTF-8); not " \
        "archived" in document["warnings"]
    too_deep = "state/deep" + "/d" * 255
    assert f"{too_deep}: path deeper than 256 levels (beyond what an archive may name); " \
        "not archived, nor anything in it" in document["warnings"]
    assert cli("verify", document["id"])[0] == 0
