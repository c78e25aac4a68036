"""A target's share packed by a helper (a second process, or this one in serial mode):
the same records either way, and the same bytes whichever mode runs it."""

import os
import signal
import subprocess
import sys

import pytest

from poppoarc.format.spool import IndexSpool
from poppoarc.pack import body as body_module, share as share_module
from poppoarc.pack.share import choose_share
from poppoarc.parallel import SERIAL, TWO_PROCESS, Parallelism, Tuning, process

from tests.helpers import CLI, digest, listed_records, records_alone, tree_files

TUNING = Tuning()
START_RECORDS, MIN_RECORDS, MAX_BYTES = (TUNING.share_start, TUNING.share_min_records,
                                         TUNING.share_max_bytes)

PASS = "correct horse battery staple"


def test_the_helper_takes_the_share_that_shortens_the_pack_most():
    many = [("config", 10, 0, False), ("logs", 5, 0, True), ("agents", 50_000, 0, True),
            ("state", 50_000, 0, True), ("security", 1, 0, True)]
    # state runs beside agents; its first records stay here, so both sides take as long
    target, first = choose_share(many, TUNING)
    assert target == "state"
    assert abs((10 + 5 + 50_000 + first) - (50_000 - first + START_RECORDS)) <= 1
    # one target holding nearly everything: the helper takes its last half or so
    target, first = choose_share([("config", 10, 0, False), ("state", 100_000, 0, True)],
                                 TUNING)
    assert target == "state" and abs((10 + first) - (100_000 - first + START_RECORDS)) <= 1
    # too few records to be worth a process; a target only this process can write
    assert choose_share([("agents", 2 * MIN_RECORDS + START_RECORDS - 2, 0, True)],
                        TUNING) is None
    assert choose_share([("config", 100_000, 0, False)], TUNING) is None
    # a share is cut to MAX_BYTES of content (pro rata): here too small to be worth it
    big = [("agents", 50_000, 0, False), ("state", 50_000, 20 * MAX_BYTES, True)]
    assert choose_share(big, TUNING) is None
    target, first = choose_share([("agents", 50_000, 0, False),
                                  ("state", 50_000, 2 * MAX_BYTES, True)], TUNING)
    assert target == "state" and first == 25_000      # half the records: MAX_BYTES


@pytest.fixture(params=[(TWO_PROCESS, 0), (TWO_PROCESS, 20), (SERIAL, 20)],
                ids=["whole-target", "last-records", "serial"])
def helped(cli, monkeypatch, request):
    """``cli``'s packs hand the agents target to a helper, all of it or its records from
    the 21st on (a fixed plan: the tiny installation is far below the cost model's
    thresholds), in a second process or (serial) in this one.  Returns the helper results
    seen: a part, None when the helper failed, or the error it reported."""
    mode, first = request.param
    cli.parallel = Parallelism(mode, 2, Tuning(plan=("agents", first)))
    results = []
    real = share_module.Share.result

    def spy(self):
        try:
            part = real(self)
        except Exception as exc:
            results.append(exc)
            raise
        results.append(part)
        return part

    monkeypatch.setattr(share_module.Share, "result", spy)
    return results


def test_a_helped_pack_holds_the_same_records_and_restores_the_tree(cli, helped, tmp_path,
                                                                    monkeypatch):
    expected = records_alone(cli)
    packed = cli.pack()
    assert len(helped) == 1 and helped[0] is not None and helped[0].files > 0
    assert listed_records(cli, packed) == expected
    code, verified = cli.json("verify", packed["path"])
    assert code == 0 and verified["ok"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _ = CLI(fresh, cli.store, cli.capsys).json("unpack", packed["id"], "--skip-backup")
    assert code == 0
    helped_part = cli.root / "data" / "ccag"       # what the helper wrote (agents)
    assert digest(fresh / "data" / "ccag") == digest(helped_part)
    assert digest(fresh / "state") == digest(cli.root / "state")


def test_a_helped_encrypted_pack_seals_at_the_same_positions(cli, helped, tmp_path,
                                                              monkeypatch):
    """Sealed objects are bound to their record's index position: the helper's records
    must start where this process's end, or nothing would open."""
    monkeypatch.setenv("POPPO_BACKUP_KEY", PASS)
    expected = records_alone(cli, "--encrypt", bundles=False)
    packed = cli.pack("--encrypt")
    assert packed["encryption"] == "archive"
    assert len(helped) == 1 and helped[0] is not None and helped[0].files > 0
    assert listed_records(cli, packed, bundles=False) == expected
    assert any(e.get("bundle") for e in listed_records(cli, packed) if e["target"] == "agents")
    code, verified = cli.json("verify", packed["path"])
    assert code == 0 and verified["ok"] and verified["not_checked"] == []
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    code, _ = CLI(fresh, cli.store, cli.capsys).json("unpack", packed["id"], "--skip-backup")
    assert code == 0
    assert digest(fresh / "data" / "ccag") == digest(cli.root / "data" / "ccag")


def test_a_record_missing_before_the_helped_target_leaves_it_to_this_process(
        cli, helped, monkeypatch):
    """A file of an earlier target deleted after the walk moves every later position by
    one: the helper's sealed part is not used, this process seals the target again."""
    monkeypatch.setenv("POPPO_BACKUP_KEY", PASS)
    gone = next(e["path"] for e in records_alone(cli, "--encrypt")
                if e["target"] == "config" and e["type"] == "file")
    _after_the_walk(monkeypatch, lambda: os.unlink(cli.root / gone))
    written_here = []
    real = body_module.Body.write_records

    def spy(self, writer, target, records, plain_path):
        written_here.append(target)
        return real(self, writer, target, records, plain_path)

    monkeypatch.setattr(body_module.Body, "write_records", spy)
    packed = cli.pack("--encrypt")
    assert helped and helped[0] is not None         # the helper did its part ...
    assert "agents" in written_here                 # ... and it was written again here
    assert any(w.startswith(f"{gone}: cannot open") for w in packed["warnings"])
    code, verified = cli.json("verify", packed["path"])
    assert code == 0 and verified["not_checked"] == []


@pytest.mark.parametrize("failure", ["exits", "killed"])
def test_a_failed_helper_leaves_the_target_to_this_process(cli, helped, monkeypatch, failure):
    if not cli.parallel.processes:
        pytest.skip("a helper process fails; serial mode starts none")
    expected = records_alone(cli)
    if failure == "exits":
        monkeypatch.setattr(process, "BOOT", "import sys; sys.exit(3)")
    else:
        real_start = share_module.Share.start.__func__

        def start_then_kill(cls, *args):
            helper = real_start(cls, *args)
            os.kill(helper._helper.process.pid, signal.SIGKILL)
            return helper

        monkeypatch.setattr(share_module.Share, "start", classmethod(start_then_kill))
    packed = cli.pack()
    assert helped == [None]
    assert listed_records(cli, packed) == expected
    code, _ = cli.json("verify", packed["path"])
    assert code == 0


def _agents_files(root):
    return sorted(p for p in tree_files(root) if p.startswith("data/ccag/"))


def _after_the_walk(monkeypatch, change):
    """Run ``change`` once the walk has listed the installation, before the body."""
    from poppoarc.snapshot.scan import Walk
    real_finish = Walk.finish

    def finish_then_change(self):
        result = real_finish(self)
        change()
        return result

    monkeypatch.setattr(Walk, "finish", finish_then_change)


def test_a_file_gone_before_the_helper_reads_it_is_a_warning(cli, helped, monkeypatch):
    gone = _agents_files(cli.root)[-1]         # among the helper's records either way
    _after_the_walk(monkeypatch, lambda: os.unlink(cli.root / gone))
    packed = cli.pack()
    assert helped and helped[0] is not None
    assert any(w.startswith(f"{gone}: cannot open") for w in packed["warnings"])
    assert gone not in {e["path"] for e in listed_records(cli, packed)}
    code, _ = cli.json("verify", packed["path"])
    assert code == 0


def test_a_file_replaced_by_a_directory_before_the_helper_reads_it_is_named(cli, helped,
                                                                            monkeypatch):
    """Something else took the file's name since the walk (it used to fail the whole
    pack when read() met a directory): named as skipped, by the helper too."""
    broken = _agents_files(cli.root)[-1]

    def replace_by_directory():
        os.unlink(cli.root / broken)
        os.mkdir(cli.root / broken)

    _after_the_walk(monkeypatch, replace_by_directory)
    code, packed = cli.json("pack")
    assert code == 1 and len(helped) == 1 and helped[0] is not None
    assert f"{broken}: no longer a regular file (replaced since the walk); not archived" \
        in packed["warnings"]
    assert broken in packed["skipped"]
    assert broken not in {e["path"] for e in listed_records(cli, packed)}
    assert cli.json("verify", packed["path"])[0] == 0


def test_hard_links_in_the_helpers_share_keep_it_in_this_process(cli, helped, monkeypatch):
    """A hard link is written against the file it links to, which one process must
    know: a share holding one is not given away (a link before the share is fine)."""
    linked = _agents_files(cli.root)[-1]
    os.link(cli.root / linked, cli.root / (linked + ".link"))
    expected = records_alone(cli)
    packed = cli.pack()
    assert helped == []                 # no helper started: the records were not given away
    assert listed_records(cli, packed) == expected
    assert {"path": linked + ".link", "type": "hardlink"}.items() <= \
        next(e for e in expected if e["path"] == linked + ".link").items()


def test_encoded_records_must_be_as_many_as_announced(tmp_path):
    spool = IndexSpool()
    lines = tmp_path / "lines"
    lines.write_bytes(b'{"a":1}\n{"b":2}\n')
    with open(lines, "rb") as source, pytest.raises(ValueError, match="2 encoded records where 3"):
        spool.extend_encoded(source, 3)
    spool.close()


def test_the_helper_needs_no_cryptography():
    """Its memory adds to the pack's: it imports only what packing plain files needs."""
    code = ("import sys; sys.path[:] = %r; import poppoarc.pack.share, poppoarc.pack.body, "
            "poppoarc.format.writer; "
            "print(sorted(m for m in sys.modules if m.startswith('cryptography')))" % sys.path)
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_no_room_for_the_helpers_files_means_no_helper(tmp_path):
    records = [("data/ccag/a.json", "agents")]
    body = body_module.Body(tmp_path, ("agents",), None,
                            plan=body_module.BodyPlan(scratch_dir=tmp_path / "missing"))
    assert share_module.Share.start(body, "agents", 0, records, 3) is None
