"""Key rotation that keeps old archives trusted, archives named and listed as an operator
sees them (which key signed what, what is encrypted, the name), and the reports of an
archive this machine has no key for."""

import json
import os
import re
import stat

from poppoarc.crypto import recipients


def test_keygen_refuses_to_replace_a_key_and_names_rotate(cli, key_home):
    cli.pack()
    before = (key_home / "signing.key").read_bytes()
    code, _, err = cli("keygen")
    assert code == 40 and "keygen --rotate" in err and err.count("\n") == 1
    assert (key_home / "signing.key").read_bytes() == before


def test_rotated_signing_key_stays_trusted_for_its_archives(cli, key_home):
    old = cli.pack("--targets", "config")
    code, document = cli.json("keygen", "--rotate")
    assert code == 0
    retired = document["retired"]
    assert retired["key_id"] == old["signer"] and document["key_id"] != old["signer"]
    kept = key_home / "retired" / f"signing-{retired['retired_at']}-{old['signer']}.key"
    assert retired["path"] == str(kept) and stat.S_IMODE(kept.stat().st_mode) == 0o600
    # the old archive verifies and restores; new ones are signed by the new key
    assert cli("verify", old["id"])[0] == 0
    assert cli("unpack", old["id"], "--dry-run")[0] == 0
    new = cli.pack("--targets", "config")
    assert new["signer"] == document["key_id"]
    code, listed = cli.json("list")
    keys = {row["id"]: (row["signer"], row["signer_key"]) for row in listed["archives"]}
    assert keys == {old["id"]: (old["signer"], "retired"),
                    new["id"]: (new["signer"], "local")}
    code, out, _ = cli("list")
    assert f"Key {old['signer'][:8]}: a retired key of this machine" in out
    assert f"Key {new['signer'][:8]}: this machine's signing key" in out
    # --force is the same, and keeps each one
    code, again = cli.json("keygen", "--force")
    assert code == 0 and again["retired"]["key_id"] == new["signer"]
    assert len(list((key_home / "retired").glob("signing-*.pub"))) == 2
    assert cli("verify", old["id"])[0] == cli("verify", new["id"])[0] == 0


def test_rotated_identity_still_opens_what_was_sealed_to_it(cli, key_home, installation):
    cli("keygen", "--encryption")
    recipient = (key_home / recipients.RECIPIENT_NAME).read_text().strip()
    config = installation / "config/config.json"
    document = json.loads(config.read_text())
    document.setdefault("backup", {})["storage"] = {"recipients": [recipient]}
    config.write_text(json.dumps(document))
    sealed = cli.pack("--encrypt", "--targets", "config")
    code, out, _ = cli("keygen", "--encryption", "--rotate")
    assert code == 0 and "still opens the archives sealed to it" in out
    assert (key_home / recipients.RECIPIENT_NAME).read_text().strip() != recipient
    code, verified = cli.json("verify", sealed["id"])
    assert code == 0 and not verified["structure_only"] and verified["not_checked"] == []


def test_an_archive_is_selected_by_its_name(cli):
    first = cli.pack("--name", "before-upgrade", "--targets", "config")
    cli.pack("--targets", "config")
    code, document = cli.json("inspect", "before-upgrade")
    assert code == 0 and document["manifest"]["id"] == first["id"]
    assert cli("unpack", "before-upgrade", "--dry-run")[0] == 0
    cli.pack("--name", "before-upgrade", "--targets", "config")
    code, _, err = cli("verify", "before-upgrade")
    assert code == 5 and "is given to 2 archives" in err and first["id"] in err
    assert cli("verify", "no-such-name")[0] == 4


def test_list_shows_name_encryption_and_incremental(cli, monkeypatch, installation):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "a passphrase")
    full = cli.pack("--full", "--name", "nightly")
    (installation / "state/new.json").write_text("{}")
    child = cli.pack("--incremental")
    sealed = cli.pack("--full", "--encrypt", "--targets", "config")
    code, out, _ = cli("list")
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("backup-")}
    # the demo's .env is always sealed: "secrets"; --encrypt seals "all"
    assert re.search(r"  manual +\S+ k?B +[0-9a-f]{8}  secrets +nightly$", rows[full["id"]])
    assert re.search(r"  manual\+inc +\S+ k?B +[0-9a-f]{8}  secrets$", rows[child["id"]])
    assert re.search(r"  manual +\S+ k?B +[0-9a-f]{8}  all$", rows[sealed["id"]])
    code, listed = cli.json("list")
    by_id = {row["id"]: row for row in listed["archives"]}
    assert (by_id[full["id"]]["name"], by_id[full["id"]]["encryption"]) == ("nightly", "secrets")
    assert by_id[child["id"]]["incremental"] and by_id[child["id"]]["parent"] == full["id"]
    assert by_id[sealed["id"]]["encryption"] == "archive" and by_id[sealed["id"]]["encrypted"]


def test_pack_json_carries_the_timestamp_list_shows(cli):
    packed = cli.pack("--name", "x")
    code, listed = cli.json("list")
    row = next(r for r in listed["archives"] if r["id"] == packed["id"])
    assert packed["timestamp"] == row["timestamp"] and packed["timestamp"]
    assert (packed["type"], packed["name"]) == (row["type"], row["name"]) == ("manual", "x")


def test_without_a_key_verify_and_inspect_say_what_they_checked(cli, monkeypatch):
    monkeypatch.setenv("POPPO_BACKUP_KEY", "a passphrase")
    sealed = cli.pack("--encrypt", "--targets", "config")
    monkeypatch.delenv("POPPO_BACKUP_KEY")
    code, out, _ = cli("verify", sealed["id"])
    assert code == 0 and "0 B checked" not in out
    assert re.search(r"structure checked: the \S+ k?B archive decodes and matches its signed "
                     r"checksum", out)
    assert "not checked without a key: file contents and their digests" in out
    code, document = cli.json("verify", sealed["id"])
    assert document["structure_only"] is True
    code, out, _ = cli("inspect", sealed["id"])
    assert code == 0 and "None" not in out and "source    sealed (no key here)" in out


def test_concurrent_first_packs_share_one_key(installation_template, tmp_path, key_home):
    """Six installations of one user packing at once on a new machine (cron at 02:00):
    one key is created and every archive is trusted (the last writer used to win)."""
    import shutil
    import subprocess
    import sys
    roots = []
    for n in range(6):
        root = tmp_path / f"inst{n}"
        shutil.copytree(installation_template("tiny"), root, symlinks=True)
        roots.append(root)
    procs = [subprocess.Popen([sys.executable, "-m", "poppoarc", "--root", str(root),
                               "--store", str(root / "backups"), "pack", "--targets", "config",
                               "-q", "--json"], stdout=subprocess.PIPE, text=True)
             for root in roots]
    packed = [json.loads(p.communicate()[0]) for p in procs]
    assert len({p["signer"] for p in packed}) == 1
    for root, p in zip(roots, packed):
        done = subprocess.run([sys.executable, "-m", "poppoarc", "--root", str(root),
                               "--store", str(root / "backups"), "verify", p["id"]],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_a_public_key_file_of_another_key_stops_pack_and_fails_doctor(cli, key_home, tmp_path):
    from poppoarc.crypto import signing
    cli.pack("--targets", "config")
    signing.generate(tmp_path / "other")
    (key_home / "signing.pub").write_text((tmp_path / "other/signing.pub").read_text())
    code, _, err = cli("pack", "--targets", "config")
    assert code == 40 and "signing.pub" in err and "would not be trusted" in err
    code, document = cli.json("doctor")
    finding = next(f for f in document["checks"] if f["id"] == "signing-key")
    assert finding["status"] == "fail"
    (key_home / "signing.pub").unlink()         # written again from the private key
    assert cli("pack", "--targets", "config")[0] in (0, 1)
    assert signing.key_id(signing.parse_public((key_home / "signing.pub").read_text())) \
        == signing.load(key_home).key_id


def test_keygen_export_never_replaces_what_is_not_a_file(cli, key_home, tmp_path):
    """keygen --export=/dev/full --force, as root, renamed the copy over the device node:
    /dev/full was gone and the operator held no copy (exit 0).  A FIFO or a directory at
    the destination is refused even with --force, and stays."""
    code, _, err = cli("keygen", "--encryption")
    assert code == 0, err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    for place in (fifo, folder):
        code, _, err = cli("keygen", f"--export={place}", "--force")
        assert code == 40 and "not a regular file" in err, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and folder.is_dir()
    assert not (key_home / "encryption.key.exported").exists()
    plain = tmp_path / "copy.key"
    plain.write_text("old")
    code, _, err = cli("keygen", f"--export={plain}", "--force")
    assert code == 0 and plain.read_bytes() == (key_home / "encryption.key").read_bytes()
