"""Browsing hostile archives (issue 28): archives made by the real writer and signed with
the installation's own key, as an attacker holding it would make them.  ``ls``, ``find``,
``diff`` and ``dump`` show what such an archive names without handing the terminal a
control sequence, write nowhere but ``-o FILE``, and answer from verified bytes only."""

from __future__ import annotations

import os
import stat

import pytest

from tests.helpers.craft import craft, entry
from tests.helpers.scene import snapshot

CONTROLS = ("\x1b", "\x07", "\x9b", "\u202e", "\r")
EVIL = "state/\x1b]0;owned\x07\x1b[2J\u202ereadme\r.json"
NEWLINE = "state/two\nlines.json"
STATE = [entry("state", "dir"), entry("state/last-run.json", data=b'{"ok": true}\n')]


def hostile(cli, key_home):
    return craft(cli.store, key_home, STATE + [
        entry(EVIL, data=b"evil\n"),
        entry(NEWLINE, data=b"two\n"),
        entry("state/\x9bcsi", "symlink", link="last-run.json\x1b[8m"),
        entry("state/\x1b[1mdir", "dir")])


def assert_no_controls(*texts: str) -> None:
    for text in texts:
        for control in CONTROLS:
            assert control not in text, (control, text)


def test_record_names_reach_the_terminal_escaped(cli, installation, key_home, tmp_path):
    cli.pack()
    archive = hostile(cli, key_home)
    archive_id = archive.name.split(".")[0]
    code, out, err = cli("ls", archive_id)
    assert code == 0, err
    assert_no_controls(out, err)
    # quoted as bash's $'...': a shell reads the very name back from it
    assert "$'state/\\x1b]0;owned\\x07\\x1b[2J\\u202ereadme\\r.json'" in out, out
    assert "$'state/two\\nlines.json'" in out
    assert "$'state/\\u009bcsi' -> $'last-run.json\\x1b[8m'" in out
    assert len(out.splitlines()) == 7       # six records, one summary: no line is forged
    for args in (("find", "state/**"), ("diff", archive_id, archive_id),
                 ("inspect", archive_id), ("verify", archive_id)):
        code, out, err = cli(*args)
        assert code in (0, 1), (args, err)
        assert_no_controls(out, err)
    code, out, err = cli("dump", archive_id, EVIL, "-o", str(tmp_path / "evil.json"))
    assert code == 0 and (tmp_path / "evil.json").read_bytes() == b"evil\n", err
    assert_no_controls(out, err)
    code, out, err = cli("dump", archive_id, "state/\x1b[31mmissing")   # an error names it
    assert code == 2 and "missing" in err
    assert_no_controls(out, err)
    code, document = cli.json("ls", archive_id)     # JSON escapes them as JSON does
    assert EVIL in {e["path"] for e in document["entries"]}


def test_dump_writes_nowhere_but_its_output(cli, installation, key_home, tmp_path):
    """dump of a file whose name climbs is refused like a restore of it; dump of a good
    file of such an archive writes that file, where -o says, and nothing else."""
    cli.pack()
    archive = craft(cli.store, key_home, STATE + [
        entry("state/link", "symlink", link="../../outside"),
        entry("state/x.json", data=b"x\n")])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    before = snapshot(tmp_path)
    code, _, err = cli("dump", str(archive), "state/link", "-o", str(out_dir / "l"))
    assert code == 31 and "state/link" in err, err
    assert snapshot(tmp_path) == before
    code, _, err = cli("dump", str(archive), "state/x.json", "-o", str(out_dir / "x.json"))
    assert code == 0, err
    after = snapshot(tmp_path)
    assert set(after) - set(before) == {"out/x.json"}, set(after) ^ set(before)
    assert {k: v for k, v in after.items() if k != "out/x.json"} == before


def test_dump_output_replaces_a_file_or_link_and_refuses_the_rest(cli, installation,
                                                                 tmp_path):
    packed = cli.pack()
    member = "config/config.json"
    content = (installation / member).read_bytes()
    precious = tmp_path / "precious"
    precious.write_text("must stay\n")
    link = tmp_path / "link.json"
    link.symlink_to(precious)
    code, _, err = cli("dump", packed["id"], member, "-o", str(link))
    assert code == 0, err
    assert not link.is_symlink() and link.read_bytes() == content      # the link is replaced
    assert precious.read_text() == "must stay\n"                        # not written through
    existing = tmp_path / "existing.json"
    existing.write_text("old")
    assert cli("dump", packed["id"], member, "-o", str(existing))[0] == 0
    assert existing.read_bytes() == content
    for where, fragment in ((tmp_path, "is a directory"),
                            (tmp_path / "no/such/dir/x", "no such directory")):
        before = snapshot(tmp_path)
        code, _, err = cli("dump", packed["id"], member, "-o", str(where))
        assert code == 2 and fragment in err and err.count("\n") == 1, err
        assert snapshot(tmp_path) == before
    pipes = tmp_path / "pipes"      # (apart: reading the snapshot would open the FIFO)
    pipes.mkdir()
    os.mkfifo(pipes / "fifo")
    code, _, err = cli("dump", packed["id"], member, "-o", str(pipes / "fifo"))
    assert code == 2 and "not a regular file" in err and err.count("\n") == 1, err
    assert [p.name for p in pipes.iterdir()] == ["fifo"]
    assert stat.S_ISFIFO((pipes / "fifo").lstat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_frame_group_in_the_wrong_place_costs_a_whole_read_never_a_wrong_answer(
        cli, installation, key_home, tmp_path):
    """``targets.<name>.stored`` is signed, but no reader rule ties it to the body: dump
    of a file with a digest of its own reads that range first, and when it does not hold
    the target's members (a forger's or a buggy writer's), the whole body decides."""
    cli.pack()
    big = os.urandom(200_000)
    members = STATE + [entry("state/big.bin", data=big)]
    archive = craft(cli.store, key_home, members,
                    targets={"state": {"files": 2, "size": 13 + len(big), "entries": 3,
                                       "stored": [0, 10]}})
    code, document = cli.json("dump", str(archive), "state/big.bin", "-o",
                              str(tmp_path / "big.bin"))
    assert code == 0, document
    assert (tmp_path / "big.bin").read_bytes() == big
    assert document["bytes_read"] >= archive.stat().st_size - 8192


@pytest.mark.parametrize("pattern", ["data/poppo-history.db-wal", "data/*.db-shm",
                                     "data/poppo-history.db-*"])
def test_a_glob_that_matches_only_a_sidecar(cli, installation, pattern):
    """Sidecars are never archived (spec §4.3): a glob naming only them selects nothing,
    which every command says instead of doing nothing silently (or, in a restore, removing
    the live sidecar the pattern names)."""
    packed = cli.pack()
    database = installation / "data/poppo-history.db"
    sidecar = installation / "data/poppo-history.db-wal"
    assert sidecar.exists()
    before = snapshot(installation)
    code, out, err = cli("unpack", packed["id"], "--include", pattern, "--skip-backup")
    assert code == 2 and "selects nothing" in err or "matches nothing" in err, (code, err)
    assert snapshot(installation) == before
    code, listed = cli.json("ls", packed["id"], pattern)
    assert code == 1 and listed["count"] == 0 and listed["warnings"], listed
    code, _, err = cli("dump", packed["id"], "data/poppo-history.db-wal")
    assert code == 2 and "no entry" in err, err
    assert database.exists()
