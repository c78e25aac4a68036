"""What a bug leaves behind: its traceback in a log file, so the operator's terminal (or
cron mail) gets one line naming that file and the exit code 70 (sysexits' EX_SOFTWARE),
never 1, which means "success with warnings".

The log goes to ``$POPPOARC_HOME/logs`` when that is set (the tests, and installations
that keep poppoarc's state together), else ``$XDG_STATE_HOME/poppoarc/logs`` or
``~/.local/state/poppoarc/logs``; when none of them can be written, the temporary
directory.  Nothing here prints: ``cli`` does.
"""

from __future__ import annotations

import os
import platform
import tempfile
import traceback
from datetime import datetime, timezone
from pathlib import Path


def log_directories() -> list[Path]:
    """Where a crash log may go, in order of preference."""
    if os.environ.get("POPPOARC_HOME"):
        first = Path(os.environ["POPPOARC_HOME"]) / "logs"
    else:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"),
                                                                 ".local", "state")
        first = Path(state) / "poppoarc" / "logs"
    return [first, Path(tempfile.gettempdir())]


def write_crash_log(error: BaseException, argv: list[str], version: str) -> Path | None:
    """Write the traceback of ``error`` with what was run; the log's path, or None when
    no directory could take it."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = "".join([
        f"poppoarc {version} crashed at {stamp}\n",
        f"command: {' '.join(argv)}\n",
        f"python {platform.python_version()} on {platform.platform()}\n\n",
        *traceback.format_exception(type(error), error, error.__traceback__),
    ])
    for directory in log_directories():
        try:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = directory / f"poppoarc-crash-{stamp}-{os.getpid()}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as out:
                out.write(text)
            return path
        except OSError:
            continue
    return None


def one_line(error: BaseException) -> str:
    """The exception as one line (a message may hold newlines)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__

