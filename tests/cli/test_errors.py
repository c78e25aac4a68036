"""Errors: one line, a documented exit code, no traceback, nothing half-written."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poppoarc.crypto import signing
from poppoarc.errors import PoppoarcError, all_error_classes

from tests.helpers import run_poppoarc

EXIT_CODES = Path(__file__).resolve().parents[2] / "docs/exit-codes.md"


def test_exit_codes_are_unique_and_documented_in_the_exit_code_table():
    classes = all_error_classes()
    codes = [cls.exit_code for cls in classes if cls is not PoppoarcError]
    assert len(codes) == len(set(codes)), "two error classes share an exit code"
    table = dict(re.findall(r"^\|\s*(\d+)\s*\|\s*`(\w+)`", EXIT_CODES.read_text(), re.M))
    for cls in classes:
        if cls is PoppoarcError:
            continue
        assert table.get(str(cls.exit_code)) == cls.__name__, f"{cls.__name__} missing from docs/exit-codes.md"


def test_bad_config_json_names_file_line_and_column(cli, installation):
    (installation / "config/config.json").write_text('{\n  "backup": {\n    "enabled": tru\n  }\n}\n')
    code, out, err = cli("pack")
    assert code == 3
    assert err.count("\n") == 1 and "config/config.json:3:16" in err and "invalid JSON" in err
    # reading commands carry on with defaults: a broken config is a reason to restore
    code, out, err = cli("list")
    assert code == 0 and "config/config.json:3:16" in err and "using default settings" in err


def test_unknown_config_key_and_wrong_type(cli, installation):
    (installation / "config/config.json").write_text('{"backup": {"retension": 3}}')
    code, _, err = cli("pack")
    assert code == 3 and "unknown key 'backup.retension'" in err
    (installation / "config/config.json").write_text('{"backup": {"retention": "30"}}')
    code, _, err = cli("pack")
    assert code == 3 and "'backup.retention' must be an integer" in err


def test_usage_errors_exit_2(cli):
    assert cli("pack", "--targets", "nope")[0] == 2
    assert cli("frobnicate")[0] == 2


@pytest.mark.parametrize("content,code,fragment", [
    (b"", 14, "too short"),
    (b"PK\x03\x04 not a zstd file at all", 11, "not a zstd file"),
    (b"\x28\xb5\x2f\xfd\x24\x00\x01\x00\x00" + b"x" * 40, 11, "without a poppoarc head"),
])
def test_foreign_files_are_refused(cli, tmp_path, content, code, fragment):
    path = tmp_path / "x.poppo.tar.zst"
    path.write_bytes(content)
    got, _, err = cli("verify", str(path))
    assert got == code and fragment in err and str(path) in err


def test_missing_and_ambiguous_archives(cli):
    assert cli("verify", "backup-1999")[0] == 4
    cli.pack()
    cli.pack()
    code, _, err = cli("verify", "backup-")
    assert code == 5 and "matches 2 archives" in err


def test_archive_signed_by_an_unpinned_key_is_untrusted(cli, key_home, tmp_path, monkeypatch):
    packed = cli.pack()
    monkeypatch.setenv("POPPOARC_HOME", str(tmp_path / "other-machine"))
    signing.generate(tmp_path / "other-machine")
    code, _, err = cli("verify", packed["path"])
    assert code == 16 and "not trusted" in err
    # pinning the original public key in config makes it trusted
    public = (key_home / "signing.pub").read_text().strip()
    config = cli.root / "config/config.json"
    config.write_text('{"backup": {"signing": {"trustedKeys": ["%s"]}}}' % public)
    assert cli("verify", packed["path"])[0] == 0


def test_resigned_head_with_attacker_key_is_rejected(cli, tmp_path):
    """An attacker who edits the manifest and re-signs with their own key."""
    from poppoarc.format import head as headfmt
    from poppoarc.format.reader import read_head

    path = Path(cli.pack()["path"])
    with open(path, "rb") as handle:
        raw = read_head(handle, path)
    manifest = dict(raw.manifest, name="evil")
    member = headfmt.pad_manifest(headfmt.canonical_json(manifest), raw.head_size)
    attacker = signing.generate(tmp_path / "attacker")
    sig = headfmt.canonical_json(attacker.sign_document(headfmt.signed_message(member)))
    frame = headfmt.encode_head(member, sig, raw.head_size, int(path.stat().st_mtime))
    data = path.read_bytes()
    path.write_bytes(frame + data[len(frame):])
    code, _, err = cli("verify", str(path))
    assert code == 16 and attacker.key_id in err


def test_private_key_readable_by_others_is_refused(cli, key_home):
    cli.pack()
    os.chmod(key_home / "signing.key", 0o644)
    code, _, err = cli("pack")
    assert code == 40 and "chmod 600" in err


def test_lock_held_names_the_holder(cli, installation):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from poppoarc.lock import InstallationLock\n"
        f"with InstallationLock({str(installation)!r}, 'test'):\n"
        "    print('locked', flush=True); time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = cli("pack")
        assert code == 6 and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    assert cli("pack")[0] in (0, 1)


def test_killed_pack_leaves_no_archive_and_the_next_run_cleans_up(installation, tmp_path):
    store = tmp_path / "store"
    args = ["--root", str(installation), "--store", str(store), "pack", "-q"]
    # slow the body down so the kill lands mid-write: a big incompressible file
    (installation / "state/big.bin").write_bytes(os.urandom(64 << 20))
    proc = subprocess.Popen([sys.executable, "-m", "poppoarc", *args])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        temps = list(store.glob(".*.tmp-*")) if store.exists() else []
        if temps and temps[0].stat().st_size > 1 << 20:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(store.glob("*.poppo.tar.zst")), "a killed pack left a final-named archive"
    assert list(store.glob(".*.tmp-*")), "expected the temp file of the killed run"
    assert run_poppoarc(*args).returncode == 0
    assert not list(store.glob(".*.tmp-*"))
    assert len(list(store.glob("*.poppo.tar.zst"))) == 1


def test_no_traceback_for_unreadable_root(tmp_path):
    result = run_poppoarc("--root", str(tmp_path / "missing"), "list")
    assert result.returncode == 20 and "Traceback" not in result.stderr
    assert "installation root does not exist" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_bug_exits_70_with_one_line_naming_the_log_of_its_traceback(cli, key_home, monkeypatch):
    """A crash is not "success with warnings" (1): a scheduler must see it fail."""
    import importlib

    list_command = importlib.import_module("poppoarc.commands.list")

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug\nover two lines")

    monkeypatch.setattr(list_command, "list_archives", broken)
    code, out, err = cli("list")
    assert code == 70, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "ZeroDivisionError: a bug over two lines" in err
    log = Path(re.search(r"traceback in (\S+);", err).group(1))
    assert log.parent == key_home / "logs" and log.stat().st_mode & 0o077 == 0
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "in broken" in text and "list" in text
    code, document = cli.json("list")
    assert code == 70 and document["error"]["type"] == "InternalError"
    assert document["error"]["exit_code"] == 70


def test_a_bug_in_the_real_entry_point_exits_70(tmp_path, key_home):
    """In a process of its own, as the console script runs it: the exit status itself."""
    boom = tmp_path / "boom.py"
    boom.write_text("import importlib\nimport poppoarc.cli as c\n"
                    "def f(*a, **k):\n    raise KeyError('x')\n"
                    "importlib.import_module('poppoarc.commands.list').list_archives = f\n"
                    "raise SystemExit(c.main(['--root', %r, 'list']))\n" % str(tmp_path))
    result = subprocess.run([sys.executable, str(boom)], capture_output=True, text=True,
                            env={**os.environ, "POPPOARC_HOME": str(key_home)})
    assert result.returncode == 70 and result.stderr.count("\n") == 1, result.stderr
    assert list((key_home / "logs").glob("poppoarc-crash-*.log"))


def test_a_config_file_with_a_byte_order_mark_is_read(cli, installation):
    """Windows editors write one; JSON readers may ignore it (RFC 8259 §8.1)."""
    config = installation / "config/config.json"
    config.write_bytes(b"\xef\xbb\xbf" + b'{"backup": {"retention": 7}}')
    code, _, err = cli("pack", "--targets", "config")
    assert code == 0, err
