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


def test_the_tar_how_to_tells_an_incremental_from_a_full_archive(cli, installation):
    """The how-to's first commands, run as written on a full and an incremental archive:
    only the incremental's listing shows the note, and the note says how to restore it."""
    import subprocess

    block = section("How-to: inspect an archive with standard `tar`").split("```sh\n")[1]
    first = [line for line in block.split("```")[0].splitlines() if line.strip()][:3]
    assert first[0].startswith("A=") and "README" in first[2]
    full = cli.pack("--full")
    incremental = cli.pack("--incremental")
    outputs = {}
    for archive in (full, incremental):
        path = next(cli.store.glob(archive["id"] + "*"))
        script = "\n".join([f"A={path}", *first[1:]])
        outputs[archive["id"]] = subprocess.run(["bash", "-c", script], capture_output=True,
                                                text=True).stdout
    assert ".poppoarc/README" not in outputs[full["id"]]
    shown = outputs[incremental["id"]]
    assert ".poppoarc/README" in shown and "THIS IS AN INCREMENTAL POPPOARC ARCHIVE" in shown
    assert f"poppoarc unpack {incremental['id']}" in shown
