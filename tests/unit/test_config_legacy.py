"""The backup section PoppoBuilder Suite ships is read in its modern meaning (issue 26)."""

import json

import pytest

from poppoarc.config import read_config, resolve
from poppoarc.config_legacy import modernise, upgraded_text
from poppoarc.demo.real_layout import LEGACY_BACKUP, SEED_ERA_BACKUP, config_text
from poppoarc.errors import ConfigError
from poppoarc.snapshot.catalogue import build_catalogue


def write(tmp_path, sections) -> object:
    path = tmp_path / "config.json"
    path.write_text(config_text(sections))
    return path


def test_the_shipped_section_maps_to_modern_keys(tmp_path):
    backup, mappings, notices = read_config(write(tmp_path, [("github", {"owner": "x"}),
                                                             ("backup", LEGACY_BACKUP)]))
    assert backup == {"enabled": True, "schedule": "0 2 * * *", "retention": 30,
                      "maxBackups": 10,
                      "storage": {"path": "./backups", "encrypt": True, "compress": True},
                      "exclude": ["*.tmp", "*.log.gz", "node_modules"],
                      "incremental": {"enabled": True}}
    read = {m.legacy: m.modern for m in mappings}
    assert read["backupPath"] == "storage.path" and read["retentionDays"] == "retention"
    assert read["incrementalEnabled"] == "incremental.enabled"
    assert read["compressionLevel"] is None          # no modern meaning: said, not lost
    # one line names every modern key, one more for what the operator must act on
    assert len(notices) == 2
    assert "backupPath → storage.path" in notices[0] and "compressionLevel (ignored)" in notices[0]
    assert "config --upgrade" in notices[0]
    assert "'uploads': names no target" in notices[1] and "backup.targets.uploads" in notices[1]


def test_both_sections_of_the_shipped_file_last_one_read(tmp_path):
    path = write(tmp_path, [("backup", SEED_ERA_BACKUP), ("redis", {}), ("backup", LEGACY_BACKUP)])
    backup, _, notices = read_config(path)
    assert backup["storage"]["encrypt"] is True          # the legacy section, as JSON.parse
    assert any("2 'backup' sections; the last (line" in n for n in notices)


def test_the_seed_era_section_with_scheduler_keys(tmp_path):
    backup, mappings, _ = read_config(write(tmp_path, [("backup", {**SEED_ERA_BACKUP,
                                                                   "incremental": True})]))
    assert "encryptionKey" not in backup["storage"]      # null: not set
    assert backup["databaseCheck"] == "full"             # beforeBackup.checkIntegrity
    assert backup["notifications"] == {"on": ["success", "failure"]}
    assert backup["incremental"] == {"enabled": True}
    assert "retry" not in backup and "beforeBackup" not in backup
    assert {m.legacy for m in mappings} >= {"retry", "notifications.channels", "incremental"}


def test_modern_keys_win_and_typos_stay_errors(tmp_path):
    backup, mappings = modernise({"retentionDays": 30, "retention": 7,
                                  "storage": {"encrypt": False}, "encryptionEnabled": True})
    assert backup["retention"] == 7 and backup["storage"]["encrypt"] is False
    assert all(m.modern is None and "is set" in m.note for m in mappings)
    with pytest.raises(ConfigError, match=r"unknown key 'backup.retenton' \(did you mean "
                                          r"'retention'\?\)"):
        read_config(write(tmp_path, [("backup", {"retenton": 3})]))
    with pytest.raises(ConfigError, match=r"did you mean 'backupPath'"):
        read_config(write(tmp_path, [("backup", {"backupPth": "./b"})]))
    with pytest.raises(ConfigError, match=r"'backup.retentionDays' must be an integer"):
        read_config(write(tmp_path, [("backup", {"retentionDays": "30"})]))


def test_items_turn_off_the_targets_they_leave_out():
    backup, _ = modernise({"items": ["database", "logs"]})
    assert backup["targets"] == {"config": False, "security": False, "state": False}
    backup, _ = modernise({"items": ["config", "state", "database", "logs"],
                           "targets": {"logs": {"exclude": ["logs/x/**"]}}})
    assert "targets" in backup and backup["targets"] == {"logs": {"exclude": ["logs/x/**"]}}
    backup, _ = modernise({"items": ["config"], "targets": {"state": True}})
    assert backup["targets"] == {"state": True, "database": False, "logs": False}


def test_storage_backends():
    backup, _ = modernise({"storageBackends": {"local": {"enabled": False},
                                               "s3": {"enabled": True, "bucket": "b",
                                                      "region": "ap-northeast-1"}}})
    assert backup["storage"] == {"type": "s3", "bucket": "b", "region": "ap-northeast-1"}
    backup, mappings = modernise({"storageBackends": {"local": {"enabled": True, "path": "/b"},
                                                      "s3": {"enabled": True, "bucket": "b"}}})
    # S3 enabled beside a local store: an off-site copy, i.e. a replica (issue 31)
    assert backup["storage"] == {"path": "/b", "replicas": ["s3://b"]}
    assert any(m.modern == "storage.replicas" and "s3://b" in m.note for m in mappings)


def test_exclude_leaves_names_out_at_any_depth():
    catalogue = build_catalogue({}, None, ["*.tmp", "node_modules", "state/cache"])
    assert catalogue.owner("state/a.json", "file") == "state"
    assert catalogue.owner("state/deep/x.tmp", "file") is None
    assert catalogue.owner("config/node_modules/a/b.json", "file") is None
    assert catalogue.owner("state/cache/a.json", "file") is None
    assert catalogue.owner("state/x/cache/a.json", "file") == "state"


def test_upgrade_rewrites_only_the_section(tmp_path):
    path = write(tmp_path, [("github", {"owner": "x"}), ("backup", SEED_ERA_BACKUP),
                            ("redis", {"port": 6379}), ("backup", LEGACY_BACKUP),
                            ("disasterRecovery", {"rto": 1})])
    text = path.read_text()
    new, modern, _ = upgraded_text(text)
    document = json.loads(new)
    assert list(document) == ["github", "redis", "backup", "disasterRecovery"]
    assert document["backup"] == modern == read_config(path)[0]
    last = text.rindex('"backup": {')
    assert new.startswith(text[:text.index('"backup": {')])
    assert new.endswith(text[text.index('"disasterRecovery"') - 5:])
    assert new[:new.index('"backup"')].endswith(text[:last][-len('"port": 6379\n  },\n  '):])
    path.write_text(new)
    backup, mappings, notices = read_config(path)
    assert (backup, mappings, notices) == (modern, [], [])
    # the first member, repeated later: it goes with the separator after it
    text = config_text([("backup", {"retentionDays": 3}), ("a", 1), ("backup", {"retention": 4})])
    assert json.loads(upgraded_text(text)[0]) == {"a": 1, "backup": {"retention": 4}}


def test_upgrade_write_keeps_crlf_line_endings(cli, installation):
    """F18: a config.json saved by a Windows editor stays CRLF throughout (the rewritten
    section was LF among CRLF lines)."""
    path = installation / "config/config.json"
    text = config_text([("github", {"owner": "x"}), ("backup", LEGACY_BACKUP),
                        ("redis", {"port": 6379})])
    path.write_bytes(text.replace("\n", "\r\n").encode())
    code, out, err = cli("config", "--upgrade", "--write")
    assert code in (0, 1), err
    data = path.read_bytes()
    assert data != text.replace("\n", "\r\n").encode()              # it was rewritten
    assert data.count(b"\n") == data.count(b"\r\n") > 10
    assert json.loads(data)["backup"] == read_config(path)[0]


@pytest.mark.parametrize("timeout", [0, -5])
def test_a_hook_timeout_below_one_second_is_a_config_error(cli, installation, timeout):
    """F18: hookTimeout 0 was accepted and stopped every hook at once (exit 32)."""
    path = installation / "config/config.json"
    path.write_text(json.dumps({"backup": {"restore": {"hookTimeout": timeout}}}))
    code, out, err = cli("pack")
    assert code == 3 and "'backup.restore.hookTimeout' must be an integer from 1 up" in err
