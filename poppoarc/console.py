"""The console entry point (``poppoarc``): as thin as a module can be, so that Ctrl-C
while the command line's modules are still being imported ends as a later Ctrl-C does,
with one line and exit 130, not a traceback."""

import sys

EXIT_INTERRUPTED = 130      # (errors.EXIT_INTERRUPTED: not imported, it may be the one loading)


def main() -> int:
    try:
        from .cli import main as command_line
        return command_line()
    except KeyboardInterrupt:
        try:
            from .i18n import _, setup
            setup()
            line = _("poppoarc: interrupted")
        except BaseException:           # interrupted again, or i18n itself not loaded yet
            line = "poppoarc: interrupted"
        print(line, file=sys.stderr)
        return EXIT_INTERRUPTED
