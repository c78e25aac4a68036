"""poppoarc - backup and transactional restore for PoppoBuilder Suite.

Usage:
  poppoarc [options] (pack | create) [--targets=LIST] [--name=NAME] [--encrypt]
                     [--incremental | --full] [--check-content] [--json]
  poppoarc [options] list [--json]
  poppoarc [options] inspect ARCHIVE [--entries] [--json]
  poppoarc [options] verify ARCHIVE [--json]
  poppoarc [options] copy ARCHIVE --to=STORE [--json]
  poppoarc [options] (unpack | restore) ARCHIVE [--targets=LIST] [--dry-run] [--skip-backup]
                     [--same-owner] [--keep-special-bits] [--json]
  poppoarc [options] (unpack | restore) --recover [--json]
  poppoarc [options] keygen [--encryption] [--force] [--json]
  poppoarc [options] doctor [--json]
  poppoarc [options] prune [--dry-run] [--json]
  poppoarc [options] schedule [--once] [--json]
  poppoarc [options] schedule --next [--count=N] [--json]
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
  --encrypt        With pack: encrypt the whole archive (also backup.storage.encrypt).
  --incremental    With pack: store only what changed since the newest good archive
                   (the default when backup.incremental.enabled is true).
  --full           With pack: make a full archive even when incrementals are enabled.
  --check-content  With pack --incremental: compare file contents, not stat facts.
  --encryption     With keygen: create an X25519 encryption identity instead.
  --entries        With inspect: also list every archived entry.
  --dry-run        With unpack or prune: print what would change and change nothing.
  --skip-backup    With unpack: do not write the pre-restore safety archive.
  --same-owner     With unpack as root: restore file owners (uid/gid) too.
  --keep-special-bits  With unpack: keep setuid/setgid bits (stripped by default).
  --recover        With unpack: only finish or undo an interrupted restore.
  --force          With keygen: replace an existing signing key.
  --once           With schedule: run what is due now, then exit (for system cron).
  --next           With schedule: print the next fire times and exit.
  --count=N        With schedule --next: how many fire times [default: 5].
  --json           Print one JSON document instead of text.
  -q --quiet       Print nothing but errors.
  -h --help        Show this help.
  --version        Show the version.

Exit codes: 0 success, 1 success with warnings, 2 usage error, 3-49 errors
(see docs/exit-codes.md), 7 doctor found a problem, 70 internal error (a bug:
the traceback is in the log file named on stderr), 130 interrupted.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import signal
import sys
from datetime import datetime, timezone

from docopt import DocoptExit, docopt

from . import __version__, doctor
from .config import resolve
from .crypto import recipients, signing
from .errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EXIT_WARNING,
                     ConfigError, PoppoarcError, UsageError, as_space_error)
from .archives.listing import list_archives
from .archives.pruning import prune
from .archives.verification import verify
from .inspection import inspect
from .pack import pack
from .policy.schedule import next_fires, parse_schedule
from .service.scheduler import Scheduler, clock_from_env
from .service.state import last_runs_of, load_state
from .transfer import copy_archive
from .restore.unpack import recover_if_needed, unpack
from .snapshot.catalogue import parse_target_list
from .ui import crash, i18n, render
from .ui.i18n import _
from .ui.output import Output
from .ui.text import human_size


def main(argv: list[str] | None = None) -> int:
    i18n.setup()
    try:
        args = docopt(__doc__, argv=argv, version=f"poppoarc {__version__}")
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
        return EXIT_USAGE
    out = Output(bool(args["--json"]), bool(args["--quiet"]))
    try:
        return dispatch(args, out)
    except BrokenPipeError:     # `poppoarc list | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (PoppoarcError, OSError) as exc:
        # a full disk or quota is exit 23 wherever it happened (InsufficientSpace)
        exc = as_space_error(exc) or exc
        if not isinstance(exc, PoppoarcError):      # an OSError nobody expected: a bug
            return internal_error(exc, out, ["poppoarc",
                                             *(sys.argv[1:] if argv is None else argv)])
        if out.as_json:
            out.json({"error": {"type": type(exc).__name__, "message": str(exc),
                                "exit_code": exc.exit_code}}, "error")
        out.error(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        print(_("poppoarc: interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:    # a bug: its own exit code, the traceback in a log file
        return internal_error(exc, out, ["poppoarc", *(sys.argv[1:] if argv is None else argv)])


def internal_error(exc: Exception, out: Output, argv: list[str]) -> int:
    """One line on stderr naming the log that holds the traceback; exit 70 (never 1,
    which a scheduler may accept as "success with warnings")."""
    log = crash.write_crash_log(exc, argv, __version__)
    where = _("traceback in {log}").format(log=log) if log else _("no log could be written")
    message = _("internal error ({error}); {where}; please report it").format(
        error=crash.one_line(exc), where=where)
    if out.as_json:
        try:
            out.json({"error": {"type": "InternalError", "message": message,
                                "exit_code": EXIT_INTERNAL}}, "error")
        except Exception:       # stdout itself may be what failed
            pass
    out.error(message)
    return EXIT_INTERNAL


def dispatch(args: dict, out: Output) -> int:
    writing = bool(args["pack"] or args["create"] or args["keygen"] or args["prune"]
                   or args["schedule"])
    settings = resolve(args["--root"], args["--config"], args["--store"], strict=writing)
    if args["doctor"]:          # only looks: reports the config and any unfinished restore
        return cmd_doctor(settings, out)
    if settings.config_problem:
        out.warn(_("{problem}; using default settings").format(problem=settings.config_problem))
    for notice in settings.notices:
        out.warn(notice)
    recovered = recover_if_needed(settings)
    if recovered is not None:
        out.note(render.recovery_note(recovered))
    if args["unpack"] or args["restore"]:
        if args["--recover"]:
            if out.as_json:
                out.json(render.recovery_json(recovered), "recover")
            else:
                render.recovered(out, recovered)
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
    if args["prune"]:
        return cmd_prune(settings, args, out)
    if args["schedule"]:
        return cmd_schedule_next(settings, args, out) if args["--next"] else cmd_schedule(settings, args, out)
    raise AssertionError("docopt accepted a command dispatch does not know")


def cmd_pack(settings, args, out: Output) -> int:
    with out.progress(_("pack")) as progress:
        incremental = True if args["--incremental"] else False if args["--full"] else None
        result = pack(settings, targets=parse_target_list(args["--targets"]), name=args["--name"],
                      encrypt=bool(args["--encrypt"]), progress=progress,
                      incremental=incremental, check_content=bool(args["--check-content"]))
    if out.as_json:
        out.json(result.to_json(), "pack")
    else:
        render.pack(out, result)
    return EXIT_WARNING if result.warnings else EXIT_OK


def cmd_list(settings, out: Output) -> int:
    rows = list_archives(settings)
    if out.as_json:
        out.json({"store": settings.store_url, "archives": [r.to_json() for r in rows],
                  "total": len(rows)}, "list")
    else:
        render.archive_list(out, rows)
    return EXIT_OK


def cmd_inspect(settings, args, out: Output) -> int:
    result = inspect(settings, args["ARCHIVE"], with_entries=bool(args["--entries"]))
    if out.as_json:
        out.json(result.to_json(with_entries=bool(args["--entries"])), "inspect")
    else:
        render.inspect(out, result)
    return EXIT_OK


def cmd_verify(settings, args, out: Output) -> int:
    with out.progress(_("verify")) as progress:
        result = verify(settings, args["ARCHIVE"], progress=progress)
    if out.as_json:
        out.json(result.to_json(), "verify")
    else:
        render.verify(out, result)
    return EXIT_OK


def cmd_copy(settings, args, out: Output) -> int:
    result = copy_archive(settings, args["ARCHIVE"], args["--to"])
    if out.as_json:
        out.json(result.to_json(), "copy")
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
    with out.progress(_("unpack")) as progress:
        result = unpack(settings, args["ARCHIVE"], targets=parse_target_list(args["--targets"]),
                        dry_run=bool(args["--dry-run"]), skip_backup=bool(args["--skip-backup"]),
                        same_owner=bool(args["--same-owner"]),
                        special_bits=bool(args["--keep-special-bits"]), progress=progress)
    if out.as_json:
        out.json(result.to_json(), "unpack")
    else:
        render.unpack(out, result)
    return EXIT_WARNING if result.warnings else EXIT_OK


def cmd_keygen(settings, args, out: Output) -> int:
    if args["--encryption"]:
        public = recipients.generate_identity(settings.key_dir, force=bool(args["--force"]))
        text = recipients.X25519_PREFIX + base64.b64encode(public).decode("ascii")
        path = settings.key_dir / recipients.IDENTITY_NAME
        if out.as_json:
            out.json({"key_id": hashlib.sha256(public).hexdigest()[:16], "public_key": text,
                      "path": str(path)}, "keygen")
        else:
            render.keygen_encryption(out, path, text)
        return EXIT_OK
    key = signing.generate(settings.key_dir, force=bool(args["--force"]))
    public = signing.format_public(key.public)
    if out.as_json:
        out.json({"key_id": key.key_id, "public_key": public,
                  "path": str(settings.key_dir / signing.PRIVATE_NAME)}, "keygen")
    else:
        render.keygen(out, key.key_id, public, settings.key_dir)
    return EXIT_OK


def cmd_doctor(settings, out: Output) -> int:
    report = doctor.run(settings)
    if out.as_json:
        out.json(report.to_json(), "doctor")
    else:
        render.doctor(out, report)
    return report.exit_code


def cmd_prune(settings, args, out: Output) -> int:
    result = prune(settings, dry_run=bool(args["--dry-run"]))
    if out.as_json:
        out.json(result.to_json(), "prune")
        return EXIT_WARNING if result.warnings else EXIT_OK
    doomed = result.to_delete
    title = "Prune plan (dry run: nothing deleted)" if result.dry_run else "Prune"
    out.text(f"{title}; policy: {result.policy.describe()}")
    out.text(render.RULE)
    for decision in result.decisions:
        a = decision.archive
        when = a.timestamp.strftime("%Y/%m/%d %H:%M:%S") if a.timestamp else "?"
        kind = (a.type or "?") + ("+inc" if a.incremental else "")
        out.text(f"{decision.action:<7}{a.id:<40}{when:<21}{kind:<12}{decision.reason}")
    out.text(render.RULE)
    freed = sum(d.archive.size for d in doomed)
    kept = len(result.decisions) - len(doomed)
    verb = "Would delete" if result.dry_run else "Deleted"
    out.text(f"{verb} {len(doomed)} archive{'s' if len(doomed) != 1 else ''} "
             f"({human_size(freed)}); {kept} kept.")
    for warning in result.warnings:
        out.warn(warning)
    return EXIT_WARNING if result.warnings else EXIT_OK


def _positive_count(value: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = 0
    if count < 1:
        raise UsageError(f"--count must be a positive integer, not {value!r}")
    return count


def cmd_schedule_next(settings, args, out: Output) -> int:
    count = _positive_count(args["--count"])
    schedule = parse_schedule(settings.backup)
    if schedule is None:
        raise ConfigError("'backup.schedule' is not set: there is nothing to schedule",
                          path=settings.config_path)
    fires = next_fires(schedule, clock_from_env(os.environ).now(), count)
    state, _ = load_state(settings.store)
    names = {e.name for e in schedule.entries}
    last = {name: when for name, when in last_runs_of(state).items() if name in names}
    if out.as_json:
        out.json({"timezone": schedule.timezone_name, "enabled": schedule.enabled,
                  "next": [{"name": e.name, "type": e.type, "cron": e.cron,
                            "time": when.isoformat()} for e, when in fires],
                  "last": {name: when.isoformat() for name, when in last.items()}}, "schedule")
        return EXIT_OK
    out.text(f"Next scheduled backups (time zone {schedule.timezone_name}):")
    for entry, when in fires:
        out.text(f"  {when.strftime('%Y-%m-%d %H:%M %z')}  {entry.name:<10} {entry.type}")
    for name, when in sorted(last.items()):
        out.text(f"  last handled: {name} at {when.astimezone(schedule.timezone).strftime('%Y-%m-%d %H:%M %z')}")
    if not schedule.enabled:
        out.warn("backup.enabled is false: the scheduler does not run these")
    return EXIT_OK


def cmd_schedule(settings, args, out: Output) -> int:
    # The service reports through logging; this handler is its only output channel.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%Y-%m-%dT%H:%M:%S%z"))
    logger = logging.getLogger("poppoarc")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if out.quiet else logging.INFO)
    try:
        scheduler = Scheduler(settings, clock=clock_from_env(os.environ))
        records = scheduler.run_once() if args["--once"] else scheduler.run_forever()
    finally:
        logger.removeHandler(handler)
    if out.as_json:
        stopped = signal.Signals(scheduler.stop_signal).name if scheduler.stop_signal else None
        out.json({"runs": [r.to_json() for r in records], "stopped_by": stopped,
                  "time": datetime.now(timezone.utc).isoformat()}, "schedule")
    failed = [r for r in records if not r.ok]
    if args["--once"] and failed:
        return getattr(failed[-1].error, "exit_code", EXIT_INTERNAL)
    if args["--once"] and any(r.warnings or r.checks for r in records):
        return EXIT_WARNING
    # The service itself stopped as asked: failed runs were logged and notified.
    return EXIT_OK
