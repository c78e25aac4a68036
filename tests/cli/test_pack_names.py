"""Text that is not UTF-8 never reaches the signed manifest (F20): ``--name`` is refused
before any work, a root path that is not UTF-8 is recorded as warnings print it."""

import os
import shutil

import pytest

from poppoarc.cli import main
from poppoarc.snapshot.naming import NAME_MAX_CHARACTERS


@pytest.mark.parametrize("name, says", [
    (os.fsdecode(b"n\xffame"), "not valid UTF-8"),
    ("two\nlines", "control character U+000A"),
    ("x" * 100_000, f"1 to {NAME_MAX_CHARACTERS} characters (it has 100000)"),
    ("", "1 to"),
])
def test_a_bad_name_is_a_usage_error_before_any_work(cli, name, says):
    code, out, err = cli("pack", "--name", name)
    assert code == 2 and out == ""
    assert says in err and len(err.strip().splitlines()) == 1
    assert not cli.store.exists()          # nothing made: no store, no archive


def test_the_longest_name_is_packed(cli):
    packed = cli.pack("--name", "é" * NAME_MAX_CHARACTERS)
    code, inspected = cli.json("inspect", packed["id"])
    assert code == 0 and inspected["manifest"]["name"] == "é" * NAME_MAX_CHARACTERS


def test_a_root_that_is_not_utf8_is_packed_and_recorded_printable(installation, tmp_path,
                                                                    capsys):
    root = os.fsdecode(os.fsencode(str(tmp_path)) + b"/r\xffoot")
    shutil.move(str(installation), root)
    store = str(tmp_path / "store")
    code = main(["--root", root, "--store", store, "pack", "--json"])
    capsys.readouterr()
    assert code in (0, 1)
    code = main(["--root", root, "--store", store, "list", "--json"])
    capsys.readouterr()
    archive = next(p for p in os.listdir(store) if p.endswith(".poppo.tar.zst"))
    code = main(["--root", root, "--store", store, "inspect", os.path.join(store, archive),
                 "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert str(tmp_path) + "/r\\\\xffoot" in out      # JSON of the text "\xff"
    # the next pack chains to it: the recorded root is this root
    code = main(["--root", root, "--store", store, "pack", "--incremental", "--json"])
    assert code in (0, 1) and '"incremental": true' in capsys.readouterr().out


def test_consolidate_checks_its_name_first_too(cli):
    code, out, err = cli("consolidate", "no-such-archive", "--name", "x" * 1000)
    assert code == 2 and "--name must have 1 to" in err
