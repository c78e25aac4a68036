"""The documents are checked against the code they document (sqlite-utils style).

README.md is a user's first page and docs/ holds the rest: every `poppoarc` command shown
parses against the usage text, every option and configuration key named exists, every
relative link resolves, every environment variable the code reads is documented, and the
how-tos' commands are run as written.
"""

import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from poppoarc import cli as cli_module
from poppoarc.config_schema import KEYS, reference_table
from poppoarc.ui.usage import UsageProblem
from tests.helpers import digest, is_database

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
# every Markdown page a user reads: README, docs/ and the benchmark's two pages
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md")), ROOT / "bench/README.md",
         ROOT / "bench/RESULTS.md"]
# Written by issue 25's refactor (the module map); linked from the index already.
PENDING = {DOCS / "architecture.md"}


def text(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def section(page: str, title: str) -> str:
    """From the heading that starts with ``title`` to the next heading of its level."""
    body = text(page)
    match = re.search(rf"^(#+) {re.escape(title)}", body, re.M)
    assert match, f"{page} has no section {title!r}"
    level = match.group(1)
    end = re.search(rf"^{level} ", body[match.end():], re.M)
    return body[match.start():match.end() + end.start() if end else None]


def code_blocks(body: str, languages=("sh", "")) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", body, re.M | re.S)
            if m.group(1) in languages]


def all_docs() -> dict[Path, str]:
    return {page: page.read_text(encoding="utf-8") for page in PAGES if page.exists()}


def usage_lines() -> list[str]:
    usage = cli_module.__doc__.split("Usage:")[1].split("\nExit codes:")[0]
    return [line.strip() for line in usage.splitlines() if line.strip()]


def usage_options() -> set[str]:
    return set(re.findall(r"(--[a-z][a-z-]*)", cli_module.__doc__)) | {"-q", "-h"}


# -- the command line ------------------------------------------------------------------

def test_every_usage_and_option_line_is_in_the_command_reference():
    reference = {line.strip() for line in text("docs/commands.md").splitlines()}
    lines = usage_lines()
    assert len(lines) > 20
    missing = [line for line in lines if line not in reference]
    assert not missing, f"docs/commands.md lacks: {missing}"


def test_every_command_is_described_in_the_command_table():
    table = section("docs/commands.md", "Commands")
    commands = set(re.findall(r"^  poppoarc \[options\] \(?(\w+)", cli_module.__doc__, re.M))
    assert {"pack", "unpack", "copy", "schedule"} <= commands
    for command in commands:
        assert re.search(rf"^\| `{command}[ `]", table, re.M), command


def shown_command_lines():
    """(page, argv after `poppoarc`) of every command line in a code block."""
    for page, body in all_docs().items():
        if page.parent.name == "bench":
            continue
        for block in code_blocks(body, ("sh", "", "crontab", "ini")):
            if "Usage:" in block:           # the grammar itself
                continue
            for line in block.splitlines():
                try:
                    words = shlex.split(line, comments=True)
                except ValueError:
                    continue
                for at, word in enumerate(words):
                    if os.path.basename(word) == "poppoarc" and at + 1 < len(words):
                        argv = []
                        for arg in words[at + 1:]:
                            if arg[:1] in "|;&>" or arg.startswith(("2>", "1>")):
                                break
                            argv.append(arg)
                        yield page, line, argv
                        break


def test_every_poppoarc_command_shown_in_a_code_block_parses():
    seen = 0
    for page, line, argv in shown_command_lines():
        try:
            cli_module.GRAMMAR.parse(argv)
        except UsageProblem:
            pytest.fail(f"{page.relative_to(ROOT)}: not a valid command line: {line.strip()}")
        seen += 1
    assert seen > 40


def test_every_poppoarc_command_and_option_named_in_the_text_exists():
    commands = set(re.findall(r"^  poppoarc \[options\] (.*)$", cli_module.__doc__, re.M))
    words = {w for line in commands for w in re.findall(r"\b([a-z]+)\b", line)}
    options = usage_options()
    for page, body in all_docs().items():
        if page.parent.name == "bench":
            continue
        for span in re.findall(r"`([^`\n]+)`", body):
            if span.startswith("poppoarc "):
                parts = span.split()
                if not parts[1].startswith("-") and parts[1] != "COMMAND":
                    assert parts[1] in words, f"{page.name}: no command {parts[1]!r}: `{span}`"
                for part in parts[1:]:
                    if part.startswith("-"):
                        assert part.split("=")[0] in options, f"{page.name}: `{span}`"
            elif re.fullmatch(r"--[a-z][a-z-]*(=\S+)?", span) and span != "--zstd":  # tar's
                assert span.split("=")[0] in options, f"{page.name}: no option `{span}`"


# -- configuration ---------------------------------------------------------------------

def test_configuration_reference_is_generated_from_the_schema_table():
    page = text("docs/configuration.md")
    assert reference_table() in page
    for key in KEYS:
        assert f"`backup.{key.path}`" in page


def key_exists(path: str) -> bool:
    """Whether a dotted key below ``backup.`` is in the schema (``*`` matches any name), or
    a legacy key poppoarc reads in its modern meaning (config_legacy)."""
    from poppoarc.config_legacy import LEGACY_PATHS
    if path in LEGACY_PATHS:
        return True
    for key in KEYS:
        pattern = re.escape(key.path).replace(r"\*", r"[^.]+")
        if re.fullmatch(pattern, path) or key.path == path:
            return True
    return False


def test_every_configuration_key_named_in_the_docs_exists():
    tops = {key.path.split(".")[0] for key in KEYS}
    for page, body in all_docs().items():
        named = set(re.findall(r"(?<![\w/.-])backup\.([A-Za-z*][\w*]*(?:\.[A-Za-z*][\w*]*)*)",
                               body))
        # short forms in code spans: `storage.keyFile`, `keep.preRestore.last`
        named |= {span for span in re.findall(r"`([a-zA-Z]\w*(?:\.[\w*]+)+)`", body)
                  if span.split(".")[0] in tops
                  and not span.endswith((".json", ".md", ".key", ".pub", ".lock"))}  # files
        for path in named:
            path = re.sub(r"^backup\.", "", path)
            assert key_exists(path), f"{page.relative_to(ROOT)} names an unknown key {path!r}"


def test_every_environment_variable_the_code_reads_is_documented_and_no_other():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "poppoarc").rglob("*.py"))
    read = set(re.findall(r"[\"'](POPPO(?:ARC)?_[A-Z][A-Z_]*)[\"']", source))
    assert {"POPPO_ROOT", "POPPO_BACKUP_KEY", "POPPOARC_HOME"} <= read
    documented = text("docs/configuration.md")
    assert not [name for name in read if f"`{name}`" not in documented]
    everywhere = "\n".join(all_docs().values())
    named = set(re.findall(r"\b(POPPO(?:ARC)?_[A-Z][A-Z_]*[A-Z])\b", everywhere))
    assert not named - read, f"documented but never read: {named - read}"


# -- links, paths, modules -------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m) for m in re.findall(r"^#+ (.*)$", page.read_text(encoding="utf-8"), re.M)}


def test_every_relative_link_resolves():
    checked = 0
    for page, body in all_docs().items():
        body = re.sub(r"^```.*?^```", "", body, flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", body):
            if re.match(r"[a-z]+:", target):
                continue
            where, _, anchor = target.partition("#")
            path = (page.parent / where).resolve() if where else page
            if path in PENDING and not path.exists():
                continue
            assert path.exists(), f"{page.relative_to(ROOT)}: broken link {target}"
            if anchor:
                assert anchor in anchors(path), f"{page.relative_to(ROOT)}: no anchor {target}"
            checked += 1
    assert checked > 50


def test_every_repository_path_and_module_named_exists():
    for page, body in all_docs().items():
        if page.parent.name == "bench":      # names its own git-ignored output
            continue
        for span in re.findall(r"`([^`\s]+)`", body):
            # (`poppoarc/2` is a format version, not a path)
            if re.match(r"(poppoarc|tests|spec|fixtures|bench)/(?!\d+$)[\w./-]*$", span) \
                    and "…" not in span and "*" not in span:
                assert (ROOT / span).exists(), f"{page.relative_to(ROOT)}: no {span}"
        for module in re.findall(r"python3? -m (poppoarc[\w.]*|bench[\w.]*)", body):
            assert importlib.util.find_spec(module), f"{page.relative_to(ROOT)}: no {module}"


def test_doctor_checks_are_all_documented():
    schema = json.loads((ROOT / "spec/json/doctor.schema.json").read_text())
    ids = schema["properties"]["checks"]["items"]["properties"]["id"]["enum"]
    table = text("docs/doctor.md")
    for check_id in ids:
        assert f"(`{check_id}`)" in table, check_id


def test_every_json_schema_is_listed():
    output = section("docs/commands.md", "Output")
    for path in (ROOT / "spec/json").glob("*.schema.json"):
        assert f"`{path.name.split('.')[0]}`" in output, path.name


def test_the_readme_is_a_first_page():
    readme = text("README.md")
    assert len(readme.splitlines()) <= 220
    assert not re.search(r"\d+(\.\d+)? ?(s|ms|MiB)\b", readme), "figures belong in bench/RESULTS.md"
    for page in sorted(DOCS.glob("*.md")):
        if page.name != "README.md":
            assert f"](docs/{page.name})" in readme, f"README does not link {page.name}"
            assert f"]({page.name})" in text("docs/README.md"), f"the index lacks {page.name}"


def test_quick_start_is_two_commands():
    block = code_blocks(section("README.md", "Quick start"))[0]
    commands = [line for line in block.splitlines() if line.strip()]
    assert [c.split()[:2] for c in commands] == [["make", "demo"], ["make", "test"]]


# -- the how-tos, run as written ---------------------------------------------------------

def test_the_tar_how_to_tells_an_incremental_from_a_full_archive(cli, installation, tmp_path):
    """The how-to's commands, run as written on a full and an incremental archive: only the
    incremental's listing shows the note, the note says how to restore it, and the full
    archive extracts into a tree whose database passes integrity_check."""
    block = code_blocks(text("docs/tar.md"))[0]
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[0].startswith("A=") and "README" in lines[2]
    full = cli.pack("--full")
    incremental = cli.pack("--incremental")
    outputs = {}
    for archive in (full, incremental):
        path = next(cli.store.glob(archive["id"] + "*"))
        look = tmp_path / f"look-{archive['id']}"
        script = [f"A={path}"] + [line.replace("/tmp/look", str(look)) for line in lines[1:]]
        if shutil.which("sqlite3") is None:
            script = [line for line in script if not line.startswith("sqlite3")]
        done = subprocess.run(["bash", "-c", "\n".join(script)], capture_output=True,
                              text=True, cwd=installation)
        outputs[archive["id"]] = done
        assert (look / ".poppoarc/manifest.json").exists()
    shown = outputs[incremental["id"]].stdout
    assert ".poppoarc/README" not in outputs[full["id"]].stdout
    assert ".poppoarc/README" in shown and "THIS IS AN INCREMENTAL POPPOARC ARCHIVE" in shown
    assert f"poppoarc unpack {incremental['id']}" in shown
    complete = outputs[full["id"]]
    assert complete.returncode == 0, complete.stderr
    if shutil.which("sqlite3"):
        assert "\nok\n" in complete.stdout


def machine(tmp_path: Path, name: str) -> dict:
    """The environment of one machine: its own HOME (so its own ~/.config/poppoarc)."""
    home = tmp_path / f"{name}-home"
    home.mkdir()
    bin_dir = tmp_path / "bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        wrapper = bin_dir / "poppoarc"
        wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m poppoarc \"$@\"\n")
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("POPPO", "XDG_")) and k != "HOME"}
    env.update(HOME=str(home), PATH=f"{bin_dir}:{env['PATH']}", LANG="C.UTF-8")
    return env


def run_block(block: str, env: dict, replacements: dict[str, str]) -> subprocess.CompletedProcess:
    """The commands of a how-to's block in one shell, placeholders replaced in order."""
    for old, new in replacements.items():
        block = block.replace(old, new)
    return subprocess.run(["bash", "-c", block], env=env, capture_output=True, text=True)


def moving(installation: Path, tmp_path: Path):
    """The migration how-to's two machines: the old one's root (incrementals on, so a plain
    `pack` makes an incremental), the new one's root-to-be and temporary directory, and
    each machine's environment (its own key directory): (old_root, new_root, new_tmp,
    old, new)."""
    old_root, new_root, new_tmp = installation, tmp_path / "new" / "srv", tmp_path / "new-tmp"
    new_root.parent.mkdir()
    new_tmp.mkdir()
    config = old_root / "config/config.json"
    settings = json.loads(config.read_text())
    settings["backup"]["incremental"] = {"enabled": True}
    config.write_text(json.dumps(settings, indent=2))
    return old_root, new_root, new_tmp, machine(tmp_path, "old"), machine(tmp_path, "new")


def test_the_migration_how_to_moves_an_installation_between_two_machines(installation,
                                                                         tmp_path):
    """docs/migration.md followed as written: two machines with their own key directories,
    incrementals on at the old one (so a plain `pack` would make an incremental), the
    archive carried by `cp` where the how-to says `scp`."""
    old_root, new_root, new_tmp, old, new = moving(installation, tmp_path)
    # the old machine's life before the move: a chain in its store
    earlier = subprocess.run(["poppoarc", "--root", str(old_root), "pack"], env=old,
                             capture_output=True, text=True)
    assert earlier.returncode in (0, 1), earlier.stderr
    page = text("docs/migration.md")
    on_old, _consolidating, on_new, afterwards = code_blocks(page, ("sh",))
    # `pack` prints the id; the operator reads it from there ("Created ID")
    pack_line = next(line for line in on_old.splitlines() if " pack --name" in line)
    first, rest = on_old.split(pack_line + "\n")
    packed = run_block(first + pack_line, old, {"/srv/poppobuilder": str(old_root)})
    assert packed.returncode == 0, packed.stderr
    archive_id = re.search(r"^Created (\S+)", packed.stdout, re.M).group(1)
    assert "incremental on" not in packed.stdout
    assert "full: a named archive restores on its own" in packed.stdout
    replacements = {"/srv/poppobuilder": str(old_root), "new-host:/tmp/": f"{new_tmp}/",
                    "scp ": "cp ", "ID": archive_id}
    carried = run_block(first + rest, old, replacements)
    assert carried.returncode == 0, carried.stderr
    assert "certs/" in carried.stdout                    # inspect lists the certificates
    public = (tmp_path / "old-home/.config/poppoarc/signing.pub").read_text().strip()
    assert public in carried.stdout
    assert (new_tmp / f"{archive_id}.poppo.tar.zst").exists()

    # in this order: the paths put in hold "/tmp/", a public key may hold "ID"
    replacements = {"/tmp/": f"{new_tmp}/", "/srv/poppobuilder": str(new_root),
                    "ID": archive_id, "ed25519:…from signing.pub…": public}
    moved = run_block(on_new, new, replacements)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert "verified at the destination" in moved.stdout and "Restored" in moved.stdout
    for path in (".env", "config/config.json", "state", "data/ccla", "logs"):
        assert (new_root / path).exists(), path
    assert (new_root / ".env").read_bytes() == (old_root / ".env").read_bytes()
    assert not (new_root / "certs").exists()             # by reference only, as it says

    # the three edits the how-to asks for in the restored config/config.json
    restored = new_root / "config/config.json"
    settings = json.loads(restored.read_text())
    settings["backup"].setdefault("signing", {})["trustedKeys"] = [public]
    key_file = tmp_path / "new-home/backup.key"
    key_file.write_text("a passphrase for the move\n")
    key_file.chmod(0o600)
    settings["backup"].setdefault("storage", {})["keyFile"] = str(key_file)
    restored.write_text(json.dumps(settings, indent=2))

    final = run_block(afterwards, new, replacements)
    assert final.returncode in (0, 1), final.stdout + final.stderr   # doctor/pack: warnings
    assert f"OK {archive_id}" in final.stdout
    assert " FAIL " not in final.stdout, final.stdout
    verified = json.loads((new_root / "backups/.poppoarc-verified.json").read_text())
    assert archive_id in json.dumps(verified)
    created = re.search(r"^Created (\S+)", final.stdout, re.M).group(1)
    new_key = (tmp_path / "new-home/.config/poppoarc/signing.pub").read_text().strip()
    assert new_key != public
    listing = subprocess.run(["poppoarc", "--root", str(new_root), "list", "--json"], env=new,
                             capture_output=True, text=True)
    rows = {row["id"]: row for row in json.loads(listing.stdout)["archives"]}
    assert set(rows) >= {archive_id, created}
    assert "UNTRUSTED" not in subprocess.run(["poppoarc", "--root", str(new_root), "list"],
                                             env=new, capture_output=True, text=True).stdout


def test_the_migration_how_to_moves_an_incremental_by_consolidating_it(installation, tmp_path):
    """docs/migration.md's "An incremental you already have", followed as written: a chain
    on the old machine, `consolidate` of its newest incremental, the one file carried, then
    the new machine's block (its own key directory) restores it: the same tree."""
    old_root, new_root, new_tmp, old, new = moving(installation, tmp_path)
    old["POPPO_BACKUP_KEY"] = "a passphrase for the move"
    for day in (1, 2):
        packed = subprocess.run(["poppoarc", "--root", str(old_root), "pack", "--json"],
                                env=old, capture_output=True, text=True)
        assert packed.returncode in (0, 1), packed.stderr
        (old_root / "state" / f"day-{day}.json").write_text(f'{{"day": {day}}}\n')
    packed = subprocess.run(["poppoarc", "--root", str(old_root), "pack", "--json"],
                            env=old, capture_output=True, text=True)
    incremental = json.loads(packed.stdout)
    assert incremental["parent"], incremental
    page = text("docs/migration.md")
    _on_old, consolidating, on_new, _afterwards = code_blocks(page, ("sh",))
    # the operator reads NEWID from consolidate's "Created NEWID" before the scp line
    copy_line = next(line for line in consolidating.splitlines() if line.startswith("scp "))
    before_copy = consolidating.split(copy_line)[0]
    made = run_block(before_copy, old, {"/srv/poppobuilder": str(old_root),
                                        "ID": incremental["id"]})
    assert made.returncode == 0, made.stdout + made.stderr
    # from the store where the block ran (cd /srv/poppobuilder: backups/ is relative)
    new_id = re.search(r"^Created (\S+)", made.stdout, re.M).group(1)
    assert f"Chain of {incremental['id']} verified" in made.stdout
    assert "dry run: would write a full archive" in made.stdout
    carried = run_block("cd /srv/poppobuilder\n" + copy_line, old, {"/srv/poppobuilder": str(old_root), "scp ": "cp ",
                                         "new-host:/tmp/": f"{new_tmp}/", "NEWID": new_id})
    assert carried.returncode == 0, carried.stderr
    assert [p.name for p in new_tmp.iterdir()] == [f"{new_id}.poppo.tar.zst"]

    public = (tmp_path / "old-home/.config/poppoarc/signing.pub").read_text().strip()
    replacements = {"/tmp/": f"{new_tmp}/", "/srv/poppobuilder": str(new_root),
                    "ID": new_id, "ed25519:…from signing.pub…": public}
    moved = run_block(on_new, new, replacements)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    assert (new_root / ".env").read_bytes() == (old_root / ".env").read_bytes()
    for part in ("state", "config"):
        assert digest(new_root / part) == digest(old_root / part), part
    # the live databases are in WAL mode: compared by their rows, not their bytes at rest
    for database in (p for p in (old_root / "data").rglob("*")
                     if p.is_file() and is_database(p)):
        moved_db = new_root / database.relative_to(old_root)
        assert _all_rows(moved_db) == _all_rows(database), database


def _all_rows(path: Path) -> list:
    import sqlite3
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute(
            "select name from sqlite_master where type='table' order by name")]
        return [(t, sorted(map(repr, db.execute(f'select * from "{t}"')))) for t in tables]

