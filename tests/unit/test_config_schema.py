"""The backup section is validated key by key, with the file, line and key named."""

import json

import pytest

from poppoarc.config import read_backup_section
from poppoarc.config_schema import KEYS, parse_size, validate
from poppoarc.errors import ConfigError


def write(tmp_path, backup) -> object:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"github": {"owner": "x"}, "backup": backup}, indent=2))
    return path


def error_of(tmp_path, backup) -> str:
    with pytest.raises(ConfigError) as caught:
        read_backup_section(write(tmp_path, backup))
    return str(caught.value)


def test_every_example_in_the_table_is_valid(tmp_path):
    for key in KEYS:
        if "*" in key.path:
            continue
        parts = key.path.split(".")
        document: dict = {}
        node = document
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = json.loads(key.example.replace("…", "x"))
        read_backup_section(write(tmp_path, document))


def test_nested_unknown_key_names_line_column_and_suggests(tmp_path):
    message = error_of(tmp_path, {"storage": {"pth": "./b"}})
    assert "unknown key 'backup.storage.pth' (did you mean 'path'?)" in message
    assert "config.json:7:7:" in message


def test_wrong_nested_type(tmp_path):
    assert "'backup.signing.trustedKeys' must be a list of strings" in error_of(
        tmp_path, {"signing": {"trustedKeys": "ed25519:abc"}})
    assert "'backup.restore.hookTimeout' must be an integer" in error_of(
        tmp_path, {"restore": {"hookTimeout": True}})
    assert "'backup.targets.logs.exclude' must be a list of strings" in error_of(
        tmp_path, {"targets": {"logs": {"exclude": "x"}}})


def test_unknown_target_and_named_schedules(tmp_path):
    assert "unknown key 'backup.targets.log' (known: config" in error_of(
        tmp_path, {"targets": {"log": False}})
    read_backup_section(write(tmp_path, {"schedule": {"daily": {"cron": "0 2 * * *",
                                                                "type": "incremental"}}}))
    assert "unknown key 'backup.schedule.daily.crn'" in error_of(
        tmp_path, {"schedule": {"daily": {"crn": "0 2 * * *"}}})


def test_free_form_objects_accept_anything(tmp_path):
    read_backup_section(write(tmp_path, {"security": {"anything": {"url": "x"}},
                                         "keep": {"daily": 7, "weekly": 4}}))


def test_policy_objects_are_checked_key_by_key(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'backup.notifications.slack'"):
        read_backup_section(write(tmp_path, {"notifications": {"slack": {"url": "x"}}}))
    with pytest.raises(ConfigError, match=r"did you mean 'daily'"):
        read_backup_section(write(tmp_path, {"keep": {"dialy": 7}}))


@pytest.mark.parametrize("text,expected", [(0, 0), (1234, 1234), ("5GB", 5 * 10**9),
                                           ("512MiB", 512 << 20), ("1.5 kB", 1500)])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", [-1, "5 parsecs", True, 1.5])
def test_bad_sizes(tmp_path, bad):
    with pytest.raises(ConfigError, match="must be a size"):
        validate({"storage": {"minFree": bad}}, tmp_path / "c.json")
