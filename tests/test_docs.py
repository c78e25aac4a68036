"""The README is checked against the code it documents (sqlite-utils style)."""

import json
import re
from pathlib import Path

from poppoarc import cli
from poppoarc.config_schema import KEYS, reference_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 3)
    return README[start:end if end > 0 else None]


def test_every_usage_and_option_line_is_in_the_command_reference():
    reference = {line.strip() for line in section("Command reference").splitlines()}
    usage = cli.__doc__.split("Usage:")[1].split("\nExit codes:")[0]
    lines = [line.strip() for line in usage.splitlines() if line.strip()]
    assert len(lines) > 20
    missing = [line for line in lines if line not in reference]
    assert not missing, f"README's command reference lacks: {missing}"


def test_every_command_is_described_in_the_command_table():
    reference = section("Command reference")
    for command in ("pack", "list", "inspect", "verify", "unpack", "keygen", "doctor"):
        assert re.search(rf"^\| `{command}[ `]", reference, re.M), command


def test_configuration_reference_is_generated_from_the_schema_table():
    assert reference_table() in README
    for key in KEYS:
        assert f"`backup.{key.path}`" in README


def test_doctor_checks_are_all_documented():
    schema = json.loads((ROOT / "spec/json/doctor.schema.json").read_text())
    ids = schema["properties"]["checks"]["items"]["properties"]["id"]["enum"]
    table = section("Using it")
    for check_id in ids:
        assert f"(`{check_id}`)" in table, check_id


def test_every_json_schema_is_listed():
    for path in (ROOT / "spec/json").glob("*.schema.json"):
        assert f"`{path.name.split('.')[0]}`" in section("Using it"), path.name


def test_quick_start_is_two_commands():
    block = section("Quick start").split("```sh\n")[1].split("```")[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split()[:2] for c in commands] == [["make", "demo"], ["make", "test"]]
