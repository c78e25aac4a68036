"""poppoarc - backup and transactional restore for PoppoBuilder Suite.

Usage:
  poppoarc [options] (pack | create) [--targets=LIST] [--name=NAME] [--json]
  poppoarc [options] list [--json]
  poppoarc [options] inspect ARCHIVE [--entries] [--json]
  poppoarc [options] verify ARCHIVE [--json]
  poppoarc [options] copy ARCHIVE --to=STORE [--json]
  poppoarc [options] (unpack | restore) ARCHIVE [--targets=LIST] [--dry-run] [--skip-backup]
                     [--same-owner] [--keep-special-bits] [--json]
  poppoarc [options] (unpack | restore) --recover [--json]
  poppoarc [options] keygen [--force] [--json]
  poppoarc (-h | --help)
  poppoarc --version

Arguments:
  ARCHIVE          An archive id, a unique id prefix, a path to a .poppo.tar.zst file,
                   or an s3://bucket/key URL of one.

Options:
  --root=DIR       Installation root (else $POPPO_ROOT, else the current directory).
  --config=FILE    Configuration file (else ROOT/config/config.json).
  --store=STORE    Where archives are kept: a directory or s3://bucket/prefix
                   (else backup.storage, else ROOT/backups).
  --to=STORE       With copy: the destination store (a directory or s3://bucket/prefix).
  --targets=LIST   Comma-separated targets: config,database,logs,agents,state,security.
  --name=NAME      A label stored in the archive's manifest.
  --entries        With inspect: also list every archived entry.
  --dry-run        With unpack: print what would change and change nothing.
  --skip-backup    With unpack: do not write the pre-restore safety archive.
  --same-owner     With unpack as root: restore file owners (uid/gid) too.
  --keep-special-bits  With unpack: keep setuid/setgid bits (stripped by default).
  --recover        With unpack: only finish or undo an interrupted restore.
  --force          With keygen: replace an existing signing key.
  --json           Print one JSON document instead of text.
  -q --quiet       Print nothing but errors.
  -h --help        Show this help.
  --version        Show the version.

Exit codes: 0 success, 1 success with warnings, 2 usage error, 3-49 errors
(see the table in README.md), 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from docopt import DocoptExit, docopt

from . import __version__
from .config import resolve
from .crypto import signing
from .errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_WARNING, PoppoarcError
from .inspection import inspect, list_archives, verify
from .pack import pack
from .transfer import copy_archive
from .restore.unpack import recover_if_needed, unpack
from .snapshot.catalogue import TARGETS, parse_target_list

RULE = "─" * 80


def human_size(size: int) -> str:
    """Decimal units, as in the seed's list output (125.3 MB)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"


def display_time(timestamp: str | None) -> str:
    if not timestamp:
        return "?"
    parsed = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return parsed.strftime("%Y/%m/%d %H:%M:%S")


class Output:
    def __init__(self, as_json: bool, quiet: bool):
        self.as_json, self.quiet = as_json, quiet

    def text(self, line: str = "") -> None:
        if not self.quiet and not self.as_json:
            print(line)

    def json(self, document: dict) -> None:
        print(json.dumps(document, ensure_ascii=False, indent=2))

    def warn(self, message: str) -> None:
        if not self.quiet and not self.as_json:
            print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        args = docopt(__doc__, argv=argv, version=f"poppoarc {__version__}")
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
        return EXIT_USAGE
    out = Output(bool(args["--json"]), bool(args["--quiet"]))
    try:
        return dispatch(args, out)
    except PoppoarcError as exc:
        if out.as_json:
            out.json({"error": {"type": type(exc).__name__, "message": str(exc),
                                "exit_code": exc.exit_code}})
        print(f"poppoarc: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("poppoarc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def dispatch(args: dict, out: Output) -> int:
    writing = bool(args["pack"] or args["create"] or args["keygen"])
    settings = resolve(args["--root"], args["--config"], args["--store"], strict=writing)
    if settings.config_problem:
        out.warn(f"{settings.config_problem}; using default settings")
    for notice in settings.notices:
        out.warn(notice)
    recovered = recover_if_needed(settings)
    if recovered is not None:
        state = "the archive's tree" if recovered.restored else "the previous tree"
        print(f"poppoarc: recovered interrupted restore {recovered.restore_id} of "
              f"{recovered.archive_id}: {recovered.action.replace('_', ' ')}; the installation "
              f"holds {state}", file=sys.stderr)
    if args["unpack"] or args["restore"]:
        if args["--recover"]:
            if out.as_json:
                out.json({"recovered": None if recovered is None else {
                    "action": recovered.action, "restore_id": recovered.restore_id,
                    "archive_id": recovered.archive_id, "restored": recovered.restored,
                    "details": recovered.details}})
            elif recovered is None:
                out.text("No interrupted restore to recover.")
            return EXIT_OK
        return cmd_unpack(settings, args, out)
    if args["pack"] or args["create"]:
        return cmd_pack(settings, args, out)
    if args["list"]:
        return cmd_list(settings, out)
    if args["inspect"]:
        return cmd_inspect(settings, args, out)
    if args["verify"]:
        return cmd_verify(settings, args, out)
    if args["copy"]:
        return cmd_copy(settings, args, out)
    if args["keygen"]:
        return cmd_keygen(settings, args, out)
    raise AssertionError("docopt accepted a command dispatch does not know")


def cmd_pack(settings, args, out: Output) -> int:
    result = pack(settings, targets=parse_target_list(args["--targets"]), name=args["--name"])
    if out.as_json:
        out.json(result.to_json())
    else:
        out.text(f"Created {result.id}")
        out.text(f"  path    {result.path}")
        out.text(f"  size    {human_size(result.size)}  ({result.files} files, "
                 f"{result.duration_ms / 1000:.1f} s)")
        for name, summary in result.targets.items():
            out.text(f"  {name:<9}{summary['files']:>7} files  {human_size(summary['size']):>10}")
        if result.cleaned:
            out.text(f"  cleaned up {len(result.cleaned)} interrupted upload(s) or temporary file(s)")
        note = " (new key created)" if result.key_created else ""
        out.text(f"  signed by key {result.signer}{note}")
        for warning in result.warnings:
            out.warn(warning)
    return EXIT_WARNING if result.warnings else EXIT_OK


def cmd_list(settings, out: Output) -> int:
    rows = list_archives(settings)
    if out.as_json:
        out.json({"store": settings.store_url, "archives": [r.to_json() for r in rows],
                  "total": len(rows)})
        return EXIT_OK
    out.text("Backups:")
    out.text(RULE)
    out.text(f"{'ID':<40}{'Date':<21}{'Type':<12}{'Size':<10}")
    out.text(RULE)
    for row in rows:
        kind = row.type or "?"
        if row.incremental:
            kind += "+inc"
        out.text(f"{row.id:<40}{display_time(row.timestamp):<21}{kind:<12}{human_size(row.size):<10}"
                 + ("" if row.status == "ok" else f"  [{row.status.upper()}]"))
    out.text(RULE)
    out.text(f"Total: {len(rows)} backup{'s' if len(rows) != 1 else ''}")
    for row in rows:
        if row.status != "ok":
            out.warn(f"{row.id}: {row.problem}")
    return EXIT_OK


def cmd_inspect(settings, args, out: Output) -> int:
    result = inspect(settings, args["ARCHIVE"], with_entries=bool(args["--entries"]))
    m = result.manifest
    if out.as_json:
        out.json(result.to_json(with_entries=bool(args["--entries"])))
        return EXIT_OK
    out.text(f"Archive   {m['id']}")
    out.text(f"  path      {result.path}")
    out.text(f"  created   {m['timestamp']}  type {m['type']}"
             + (f"  name {m['name']!r}" if m["name"] else ""))
    out.text(f"  source    {m['host']}:{m['root']}  (installation version {m['version'] or 'unknown'})")
    out.text(f"  size      {human_size(m['size'])}  {m['files']} files  {m['checksum'][:23]}...")
    out.text(f"  signer    key {result.signer} (trusted)")
    out.text("Targets:")
    for name in sorted(m["targets"], key=TARGETS.index):
        t = m["targets"][name]
        out.text(f"  {name:<9}{t['files']:>7} files  {human_size(t['size']):>10}")
    if m["databases"]:
        out.text("Databases:")
        for db in m["databases"]:
            rows = sum(db["tables"].values())
            out.text(f"  {db['path']}  {human_size(db['size'])}  {len(db['tables'])} tables, {rows} rows"
                     f"  user_version {db['user_version']}")
    if m["certificates"]:
        out.text("Certificates (by reference, not archived):")
        for ref in m["certificates"]:
            detail = ref.get("subject") or ref.get("kind")
            expiry = f"  expires {ref['not_after']}" if ref.get("not_after") else ""
            out.text(f"  {ref['path']}  {detail}{expiry}")
    if m["warnings_total"]:
        out.text(f"Warnings ({m['warnings_total']}):")
        for warning in m["warnings"]:
            out.text(f"  {warning}")
    for entry in result.entries:
        out.text(f"  {entry.type:<8} {oct(entry.mode)[2:]:>4} {entry.size:>12}  {entry.path}")
    return EXIT_OK


def cmd_verify(settings, args, out: Output) -> int:
    result = verify(settings, args["ARCHIVE"])
    if out.as_json:
        out.json(result.to_json())
    else:
        out.text(f"OK {result.id}: signed by key {result.signer}; {result.entries} entries, "
                 f"{human_size(result.bytes)} checked, {result.databases} databases pass integrity_check")
    return EXIT_OK


def cmd_copy(settings, args, out: Output) -> int:
    result = copy_archive(settings, args["ARCHIVE"], args["--to"])
    if out.as_json:
        out.json(result.to_json())
        return EXIT_OK
    verb = "Copied" if result.outcome == "copied" else "Already present:"
    out.text(f"{verb} {result.id} ({human_size(result.size)})")
    out.text(f"  from    {result.source}")
    out.text(f"  to      {result.destination}")
    v = result.verified
    out.text(f"  verified at the destination: signed by key {v.signer}; {v.entries} entries, "
             f"{human_size(v.bytes)} checked, {v.databases} databases pass integrity_check")
    return EXIT_OK


def cmd_unpack(settings, args, out: Output) -> int:
    result = unpack(settings, args["ARCHIVE"], targets=parse_target_list(args["--targets"]),
                    dry_run=bool(args["--dry-run"]), skip_backup=bool(args["--skip-backup"]),
                    same_owner=bool(args["--same-owner"]),
                    special_bits=bool(args["--keep-special-bits"]))
    if out.as_json:
        out.json(result.to_json())
        return EXIT_WARNING if result.warnings else EXIT_OK
    plan = result.plan
    title = "Restore plan" if result.dry_run else "Restored"
    out.text(f"{title} {plan.archive_id}" + (" (dry run: nothing changed)" if result.dry_run else ""))
    out.text(f"  {'target':<10}{'add':>7}{'change':>8}{'remove':>8}{'unchanged':>11}{'bytes':>12}")
    for target in plan.targets:
        written = target.bytes("add") + target.bytes("change")
        out.text(f"  {target.name:<10}{target.count('add'):>7}{target.count('change'):>8}"
                 f"{target.count('remove'):>8}{target.count('unchanged'):>11}{human_size(written):>12}")
    if plan.databases:
        out.text("Databases (rows now -> in archive):")
        for db in plan.databases:
            now = db.tables_now or {}
            parts = [f"{name} {now.get(name, 0)} -> {rows}" for name, rows in db.tables_archive.items()]
            out.text(f"  {db.path}: " + ("; ".join(parts) if parts else "no tables"))
    out.text(f"Version: installed {plan.version_now or 'unknown'}, archive {plan.version_archive or 'unknown'}")
    if result.dry_run:
        out.text(f"Would stage {human_size(plan.bytes_to_stage)} and swap: {', '.join(plan.top_level)}")
    elif result.safety_archive:
        out.text(f"Safety archive: {result.safety_archive} (restore it to undo)")
    for warning in result.warnings:
        out.warn(warning)
    return EXIT_WARNING if result.warnings else EXIT_OK


def cmd_keygen(settings, args, out: Output) -> int:
    key = signing.generate(settings.key_dir, force=bool(args["--force"]))
    public = signing.format_public(key.public)
    if out.as_json:
        out.json({"key_id": key.key_id, "public_key": public,
                  "path": str(settings.key_dir / signing.PRIVATE_NAME)})
    else:
        out.text(f"Created signing key {key.key_id} in {settings.key_dir}")
        out.text(f"  public key: {public}")
        out.text("  pin it on other machines under backup.signing.trustedKeys")
    return EXIT_OK
