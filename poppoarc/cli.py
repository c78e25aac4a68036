"""The command line: parse (docopt, over the grammar of the command named: ``ui/usage.py``),
dispatch to the command, show its result (``ui``), map errors to exit codes.

The grammar of each command lives with it (``commands/<name>.py``: ``SUMMARY``,
``USAGE``, ``OPTIONS``); ``USAGE`` here is the whole grammar in one text (what
docs/commands.md shows); ``GRAMMAR`` is the same as data, which parses, helps and
explains a command line that does not fit.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from contextlib import nullcontext

from . import __version__, commands
from .config import resolve
from .errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, InsufficientSpace, \
    PoppoarcError, as_space_error, resource_limit
from .parallel import Parallelism
from . import i18n
from .i18n import _
from .ui import crash, help, render
from .ui.output import Output, service_log
from .ui.usage import CommandGrammar, Grammar, UsageProblem, argument_specs, option_specs

USAGE = __doc__ = commands.usage()
GRAMMAR = Grammar(
    tuple(CommandGrammar(name, module.SUMMARY, module.USAGE, tuple(option_specs(module.OPTIONS)),
                         tuple(argument_specs(getattr(module, "ARGUMENTS", ""))))
          for name, module in commands.COMMANDS.items()),
    tuple(option_specs(commands.GLOBAL_OPTIONS)), tuple(argument_specs(commands.ARGUMENTS)))


def main(argv: list[str] | None = None, *, parallel: Parallelism | None = None) -> int:
    """The command line; ``parallel`` replaces the parallelism it would choose (a test's
    or an embedding program's: thresholds no option sets)."""
    i18n.setup()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        parsed = GRAMMAR.parse(argv)
    except UsageProblem as problem:
        return Output("--json" in argv, False).fail(
            "UsageError", help.problem_message(problem, GRAMMAR), EXIT_USAGE)
    if parsed.version:
        print(f"poppoarc {__version__}")
        return EXIT_OK
    if parsed.help:
        print(help.command_help(GRAMMAR, parsed.group) if parsed.group
              else help.overview(GRAMMAR, __version__), end="")
        return EXIT_OK
    args = parsed.args
    out = Output(bool(args["--json"]), bool(args["--quiet"]), bool(args["--verbose"]))
    try:
        return dispatch(args, out, parallel, [c.name for c in parsed.group])
    except BrokenPipeError:     # `poppoarc list | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(_("poppoarc: interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        # a full disk or quota is exit 23 wherever it happened (InsufficientSpace); a limit
        # of this process or machine (open files, memory, threads) is 9 (ResourceLimit)
        exc = as_space_error(exc) or resource_limit(exc) or exc
        if not isinstance(exc, PoppoarcError):  # a bug: its own exit code, the traceback
            return internal_error(exc, out, ["poppoarc", *argv])    # in a log file
        shown = (f"{exc.path}: " if exc.path else "") + i18n.translate_text(exc.message)
        return out.fail(type(exc).__name__, str(exc), exc.exit_code, exc.details, shown)


def internal_error(exc: Exception, out: Output, argv: list[str]) -> int:
    """One line on stderr naming the log that holds the traceback; exit 70 (never 1,
    which a scheduler may accept as "success with warnings")."""
    log = crash.write_crash_log(exc, argv, __version__)
    where = _("traceback in {log}").format(log=log) if log else _("no log could be written")
    message = _("internal error ({error}); {where}; please report it").format(
        error=crash.one_line(exc), where=where)
    return out.fail("InternalError", message, EXIT_INTERNAL)


def dispatch(args: dict, out: Output, parallel: Parallelism | None = None,
             names=commands.NAMES) -> int:
    command = commands.chosen(args, names)
    name = command.__name__.rpartition(".")[2]
    options = command.options(args)
    settings = resolve(args["--root"], args["--config"], args["--store"],
                       strict=command.STRICT_CONFIG, parallel=args["--parallel"],
                       missing_root_ok=getattr(command, "NEW_ROOT", False))
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
    with progress as reporter, log, settings.parallel.switching():
        result = command.run(settings, options, reporter)
    code = result.exit_code
    try:
        render.show(out, name, result)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise stdout_error(exc) from exc
    return code


def stdout_error(exc: OSError) -> Exception:
    """A write to standard output that failed for want of space (``list > /dev/full``):
    said of standard output, not of the store; stdout is then discarded (a --json error
    document could not be written there either).  Other errors stay what they are."""
    if as_space_error(exc) is None:
        return exc
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return InsufficientSpace(f"cannot write to standard output: {exc.strerror} (the file "
                             "or device it is redirected to)")
