"""pack → list → verify → inspect through the real CLI, checked with real tar and zstd."""

import json
import os
import sqlite3
import subprocess
from pathlib import Path


from tests.helpers import is_database, run_poppoarc, tree_files


def extract_with_tar(archive: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(archive), "-C", str(dest)], check=True)


def test_pack_list_verify_inspect_round_trip(both_ways, cli, tmp_path):
    packed = cli.pack("--name", "before-upgrade")
    assert set(packed) >= {"id", "path", "size", "files", "targets", "warnings"}
    assert packed["path"].endswith(packed["id"] + ".poppo.tar.zst")
    assert os.path.getsize(packed["path"]) == packed["size"]
    assert list(packed["targets"]) == ["config", "database", "logs", "agents", "state", "security"]

    code, listing = cli.json("list")
    assert code == 0 and [a["id"] for a in listing["archives"]] == [packed["id"]]
    assert listing["archives"][0]["status"] == "ok"

    code, verified = cli.json("verify", packed["id"][:20])
    assert code == 0 and verified["ok"] and verified["databases_checked"] >= 4

    code, inspected = cli.json("inspect", packed["path"])
    manifest = inspected["manifest"]
    assert manifest["name"] == "before-upgrade" and manifest["type"] == "manual"
    assert manifest["version"] == "1.0.0" and manifest["incremental"] is False
    assert manifest["size"] == packed["size"]
    assert manifest["checksum"].startswith("sha256:")
    tables = {db["path"]: db["tables"] for db in manifest["databases"]}
    assert "data/poppo-history.db" in tables and sum(tables["data/poppo-history.db"].values()) > 0


def test_tar_extraction_reproduces_every_non_database_file(cli, installation, tmp_path):
    packed = cli.pack()
    out = tmp_path / "out"
    extract_with_tar(Path(packed["path"]), out)
    source = tree_files(installation)
    extracted = tree_files(out, skip=(".poppoarc/",))
    assert extracted, "tar extracted nothing"
    for rel, digest in extracted.items():
        if is_database(out / rel) or rel == "security/env.encrypted":     # (sealed: below)
            continue
        assert source[rel] == digest, rel
    # everything a target owns is there: config, state, agents, compressed logs, access log
    expected = {rel for rel in source if rel.startswith(("config/", "state/", "data/ccla/",
                                                         "data/ccag/", "data/ccpm/"))
                or (rel.startswith("logs/") and rel.endswith(".gz")) or rel == "data/access.log"}
    expected = {rel for rel in expected if not rel.endswith(("-wal", "-shm"))}
    assert expected <= set(extracted)
    # never archived: certificates (by reference), WAL sidecars, unowned files; secrets only
    # sealed (to this machine's own identity: no key is configured)
    assert not any(rel.startswith(("certs/", "node_modules/", "src/")) or rel == ".env"
                   or rel.endswith(("-wal", "-shm")) for rel in extracted)
    assert packed["encryption"] == "secrets" and "security/env.encrypted" in extracted
    assert (installation / ".env").read_bytes() not in (out / "security/env.encrypted").read_bytes()
    assert os.path.islink(out / "certs/current.pem") is False


def test_database_copies_include_the_wal_and_pass_integrity_check(cli, installation, tmp_path):
    live = sqlite3.connect(f"file:{installation}/data/poppo-history.db?mode=ro", uri=True)
    live_rows = live.execute("select count(*) from process_history").fetchone()[0]
    live.close()
    packed = cli.pack("--targets", "database")
    out = tmp_path / "out"
    extract_with_tar(Path(packed["path"]), out)
    copy = out / "data/poppo-history.db"
    assert not (out / "data/poppo-history.db-wal").exists()
    conn = sqlite3.connect(copy)
    assert conn.execute("pragma integrity_check").fetchone()[0] == "ok"
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"   # as the live one
    assert conn.execute("select count(*) from process_history").fetchone()[0] == live_rows
    assert (out / "data/ccpm/cache.sqlite3").exists(), "SQLite found by magic, not by name"
    assert not (out / "data/not-a-db.db").exists() or not is_database(out / "data/not-a-db.db")


def _database_checks(cli, packed) -> dict:
    code, doc = cli.json("inspect", packed["id"])
    assert code == 0
    return {db["path"]: db["check"] for db in doc["manifest"]["databases"]}


def test_the_manifest_names_the_check_each_snapshot_passed(cli, installation):
    # An index that misses rows: quick_check does not compare indexes with their tables,
    # integrity_check does.  (A partial index redefined as a full one, the same trick as
    # SQLite's own tests.)
    db = installation / "data/ccpm/mismatch.db"
    conn = sqlite3.connect(db)
    conn.executescript("CREATE TABLE t(a); CREATE INDEX i ON t(a) WHERE a > 5;"
                       "INSERT INTO t VALUES (1),(2),(7),(9);")
    conn.execute("PRAGMA writable_schema=ON")
    conn.execute("UPDATE sqlite_master SET sql='CREATE INDEX i ON t(a)' WHERE name='i'")
    conn.commit()
    conn.close()
    packed = cli.pack("--targets", "database")
    checks = _database_checks(cli, packed)
    assert checks["data/ccpm/mismatch.db"] == "quick_check"
    assert set(checks.values()) == {"quick_check"}
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["databaseCheck"] = "full"
    config.write_text(json.dumps(document))
    code, _, err = cli("pack", "--targets", "database")
    assert code == 21 and "data/ccpm/mismatch.db" in err and "integrity_check" in err
    db.unlink()
    checks = _database_checks(cli, cli.pack("--targets", "database"))
    assert set(checks.values()) == {"integrity_check"}
    # verify always runs the full check
    code, _, err = cli("verify", packed["id"])
    assert code == 13 and "data/ccpm/mismatch.db" in err and "integrity_check" in err


def test_stock_tools_read_the_archive(cli):
    path = cli.pack()["path"]
    # GNU tar auto-detection needs a real zstd frame first, not a skippable one
    listed = subprocess.run(["tar", "-tf", path], capture_output=True, text=True, check=True)
    assert listed.stdout.splitlines()[:2] == [".poppoarc/manifest.json", ".poppoarc/manifest.sig"]
    subprocess.run(["zstd", "-t", "-q", path], check=True)
    with open(path, "rb") as handle:
        assert handle.read(5) == b"\x28\xb5\x2f\xfd\xe0"


def test_environment_is_masked_and_secrets_never_stored(cli, installation, tmp_path, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_SECRETVALUE123456")
    monkeypatch.setenv("POPPO_LOG_LEVEL", "debug")
    monkeypatch.setenv("UNRELATED_VAR", "not-recorded")
    packed = cli.pack()
    # kept, sealed to the identity pack creates when no key is configured, and said once
    assert packed["encryption"] == "secrets" and not packed["warnings"]
    assert "created the encryption identity" in packed["notices"][0]
    assert "poppoarc keygen --export=FILE" in packed["notices"][0]
    assert not cli.pack()["notices"]
    raw = subprocess.run(["zstd", "-dc", packed["path"]], capture_output=True, check=True).stdout
    dotenv = (installation / ".env").read_text()
    token = next(line.split("=", 1)[1] for line in dotenv.splitlines()
                 if line.startswith("GITHUB_TOKEN="))
    for secret in (b"ghp_SECRETVALUE123456", token.encode(), b"not-recorded"):
        assert secret not in raw
    out = tmp_path / "out"
    extract_with_tar(Path(packed["path"]), out)
    env = json.loads((out / ".poppoarc/environment.json").read_text())
    assert env["process"]["GITHUB_TOKEN"] == "********"
    assert env["process"]["POPPO_LOG_LEVEL"] == "debug"
    assert "GITHUB_TOKEN" in env["dotenv_names"][".env"]


def test_certificates_recorded_by_reference_only(cli):
    code, inspected = cli.json("inspect", cli.pack()["id"])
    refs = {r["path"]: r for r in inspected["manifest"]["certificates"]}
    assert refs["certs/server.key"]["kind"] == "private-key"
    cert = refs["certs/server.pem"]
    assert cert["kind"] == "certificate" and cert["subject"] and cert["not_after"]
    assert refs["certs/current.pem"]["link"] == "server.pem"
    assert len(cert["sha256"]) == 64


def test_targets_option_limits_the_archive(cli):
    packed = cli.pack("--targets", "state,config")
    assert list(packed["targets"]) == ["config", "state"]
    code, inspected = cli.json("inspect", packed["id"], "--entries")
    targets = {e["target"] for e in inspected["entries"]}
    assert targets <= {"state", "config", None}


def test_text_output_of_each_command(cli):
    code, out, err = cli("pack")
    assert code == 0 and out.startswith("Created backup-")
    assert "  encrypted: secret files only" in out
    assert err.startswith("poppoarc: created the encryption identity ")
    code, out, _ = cli("list")
    lines = out.splitlines()
    assert lines[0] == "Backups:" and lines[2].split() == ["ID", "Date", "Type", "Size", "Key",
                                                           "Encrypted", "Name"]
    assert lines[-2] == "Total: 1 backup" and " manual " in lines[4]
    assert lines[-1].endswith(": this machine's signing key")
    code, out, _ = cli("verify", lines[4].split()[0])
    assert code == 0 and out.startswith("OK ")
    code, out, _ = cli("inspect", lines[4].split()[0])
    assert code == 0 and "Targets:" in out and "Databases:" in out


def test_console_script_runs(installation, tmp_path):
    result = run_poppoarc("--root", str(installation), "--store", str(tmp_path / "s"), "pack", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr


def test_pack_leaves_the_live_installation_untouched(cli, installation):
    from tests.helpers import digest

    before = digest(installation)
    wal = (installation / "data/poppo-history.db-wal").read_bytes()
    cli.pack()
    assert digest(installation) == before
    assert (installation / "data/poppo-history.db-wal").read_bytes() == wal, "pack checkpointed the WAL"


def test_list_reads_only_each_archives_head(cli, installation, monkeypatch):
    """list must not read archive bodies: its cost is flat in archive size."""
    (installation / "state/big.bin").write_bytes(os.urandom(8 << 20))
    cli.pack()
    cli.pack("--targets", "state")
    from poppoarc.store import local

    read = {}
    real_open = local.open_archive_file

    class Counting:
        def __init__(self, handle, name):
            self.handle, self.name = handle, name

        def read(self, size=-1):
            data = self.handle.read(size)
            read[self.name] = read.get(self.name, 0) + len(data)
            return data

        def __getattr__(self, attr):
            return getattr(self.handle, attr)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def counting_open(path):
        source = real_open(path)
        source.handle = Counting(source.handle, str(path))
        return source

    monkeypatch.setattr(local, "open_archive_file", counting_open)
    code, listing = cli.json("list")
    assert code == 0 and len(listing["archives"]) == 2
    assert all(a["status"] == "ok" for a in listing["archives"])
    assert read and max(read.values()) <= (1 << 20) + 64, read


def test_a_pack_whose_walk_goes_to_disk_archives_the_same_tree(cli, monkeypatch):
    """An installation larger than the walk's memory bound (forced here to 8 records)
    packs the same records in the same order, and verifies."""
    from poppoarc.snapshot import groups

    def listed(packed):
        code, inspected = cli.json("inspect", packed["path"], "--entries")
        assert code == 0
        # (a directory holding a WAL database changes: reading it makes a -shm file)
        return [(e["path"], e["target"], e["type"], e["size"], e.get("sha256"),
                 e["mtime_ns"] if e["type"] != "dir" else 0)
                for e in inspected["entries"] if not e.get("generated")]

    held = listed(cli.pack())
    monkeypatch.setattr(groups, "SPILL_AT", 8)
    packed = cli.pack()
    assert listed(packed) == held and len(held) > 8
    code, _ = cli.json("verify", packed["path"])
    assert code == 0


def test_database_copies_start_before_the_walk_with_the_largest(cli, installation, monkeypatch):
    from poppoarc.pack.databases import SnapshotSession
    from poppoarc.snapshot.scan import Walk
    events = []
    real_start, real_run = SnapshotSession.start, Walk.run

    def start(self, path):
        events.append(path)
        return real_start(self, path)

    def walk(*args, **kwargs):
        events.append(None)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(SnapshotSession, "start", start)
    monkeypatch.setattr(Walk, "run", walk)
    packed = cli.pack()
    before_walk = events[:events.index(None)]
    databases = [d["path"] for d in packed["databases"]]
    largest = max(databases, key=lambda p: (installation / p).stat().st_size)
    assert before_walk and before_walk[0] == largest
    assert set(before_walk) <= set(databases) and set(databases) <= set(events)
    assert cli("verify", packed["id"], "-q")[0] == 0


def test_a_data_directory_moved_away_and_linked_back_is_named_not_silently_dropped(
        cli, installation, tmp_path):
    """F17: ``mv data /mnt/big/data; ln -s /mnt/big/data data`` packed with exit 0 and no
    warning while every database under data/ and the agents' data were left out."""
    elsewhere = tmp_path / "big-data"
    (installation / "data").rename(elsewhere)
    (installation / "data").symlink_to(elsewhere)
    code, document = cli.json("pack")
    assert code == 1
    assert "data" in document["skipped"]
    warning = next(w for w in document["warnings"] if w.startswith("data: "))
    assert f"a symbolic link to a directory (-> {elsewhere})" in warning
    assert "nothing below it is archived (targets database" in warning
    assert "agents" in warning
    code, dry = cli.json("unpack", document["id"], "--dry-run")
    assert code in (0, 1) and (installation / "data").is_symlink()   # left alone


def test_a_claimed_link_to_a_directory_says_what_is_below_it_is_not_archived(cli, installation,
                                                                             tmp_path):
    elsewhere = tmp_path / "old-state"
    (installation / "state").rename(elsewhere)
    (installation / "state").symlink_to(os.path.relpath(elsewhere, installation))
    code, document = cli.json("pack")
    assert code == 1
    warning = next(w for w in document["warnings"]
                   if w.startswith("state: a symbolic link to a directory"))
    assert "archived as a link" in warning and "state" in warning.split("(targets ")[1]
