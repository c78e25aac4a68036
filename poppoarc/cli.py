"""The command line: parse (docopt, over the usage text the commands assemble), dispatch
to the command, show its result (``ui``), map errors to exit codes.

The grammar of each command lives with it (``commands/<name>.py``: ``USAGE``,
``OPTIONS``); ``USAGE`` here is the whole text, as ``poppoarc --help`` prints it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import nullcontext

from docopt import DocoptExit, docopt

from . import __version__, commands
from .config import resolve
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PoppoarcError, \
    as_space_error
from .parallel import Parallelism
from . import i18n
from .i18n import _
from .ui import crash, render
from .ui.output import Output, service_log

USAGE = __doc__ = commands.usage()


def main(argv: list[str] | None = None, *, parallel: Parallelism | None = None) -> int:
    """The command line; ``parallel`` replaces the parallelism it would choose (a test's
    or an embedding program's: thresholds no option sets)."""
    i18n.setup()
    try:
        args = docopt(USAGE, argv=argv, version=f"poppoarc {__version__}")
    except DocoptExit as exc:
        print(str(exc).strip(), file=sys.stderr)
        return EXIT_USAGE
    out = Output(bool(args["--json"]), bool(args["--quiet"]))
    try:
        return dispatch(args, out, parallel)
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


def dispatch(args: dict, out: Output, parallel: Parallelism | None = None) -> int:
    command = commands.chosen(args)
    name = command.__name__.rpartition(".")[2]
    options = command.options(args)
    settings = resolve(args["--root"], args["--config"], args["--store"],
                       strict=command.STRICT_CONFIG, parallel=args["--parallel"])
    if parallel is not None:
        settings = dataclasses.replace(settings, parallel=parallel)
    if not getattr(command, "ONLY_LOOKS", False):
        if settings.config_problem:
            out.warn(_("{problem}; using default settings").format(
                problem=settings.config_problem))
        for notice in settings.notices if getattr(command, "CONFIG_NOTICES", True) else ():
            out.warn(notice)
        if getattr(command, "RECOVERS_FIRST", True):
            recovered = commands.recover_first(settings)
            if recovered is not None:
                out.note(render.recovery_note(recovered))
    progress = out.progress(_(render.PROGRESS_LABELS[name])) if command.PROGRESS \
        else nullcontext()
    log = service_log(out.quiet) if getattr(command, "LOGS", False) else nullcontext()
    with progress as reporter, log:
        result = command.run(settings, options, reporter)
    code = result.exit_code
    render.show(out, name, result)
    return code
