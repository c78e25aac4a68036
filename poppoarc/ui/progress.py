"""Progress of long work (pack, verify, unpack, copy), shown on stderr.

The library reports progress through a callback ``progress(done_bytes,
total_bytes, path)`` and never prints; this module turns those calls into:

* a tqdm bar (bytes, rate, ETA) when stderr is a terminal;
* plain lines every few seconds when it is not (a log, a pipe, cron mail):
  no carriage returns, no escape sequences;
* nothing with ``-q``, and nothing but the bar with ``--json`` (a script
  reading the JSON document gets no extra lines on stderr).

``POPPOARC_PROGRESS`` overrides the choice: ``bar``, ``lines`` or ``none``;
``POPPOARC_PROGRESS_INTERVAL`` sets the seconds between plain lines (5).
"""

from __future__ import annotations

import os
import sys
import time

from ..i18n import _
from ..text import duration, human_size

DEFAULT_INTERVAL = 5.0


class Progress:
    """Shows nothing; the base of the real reporters, and a context manager."""

    def __call__(self, done: int, total: int, path: str | None = None) -> None:
        pass

    def close(self, completed: bool = True) -> None:
        pass

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self.close(completed=kind is None)


class BarProgress(Progress):
    """A tqdm bar: label, percentage, bytes done of total, rate and ETA."""

    def __init__(self, label: str, stream):
        from tqdm import tqdm

        self.bar = tqdm(desc=label, total=0, unit="B", unit_scale=True, unit_divisor=1000,
                        file=stream, dynamic_ncols=True, leave=True, mininterval=0.2,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B "
                                   "[{rate_fmt}, ETA {remaining}]")
        self.started = False

    def __call__(self, done: int, total: int, path: str | None = None) -> None:
        total = max(total, done)        # a file that grew while read: never show "?" or >100 %
        if not self.started:            # rate and ETA count from the first report, not from
            self.started = True         # the planning that came before it
            self.bar.reset(total=total)
        if total != self.bar.total:
            self.bar.total = total
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)

    def close(self, completed: bool = True) -> None:
        if completed and self.bar.total and self.bar.n < self.bar.total:
            self.bar.update(self.bar.total - self.bar.n)
        self.bar.close()


class LineProgress(Progress):
    """One plain line every ``interval`` seconds, and one at the end."""

    def __init__(self, label: str, stream, interval: float = DEFAULT_INTERVAL, clock=time.monotonic):
        self.label, self.stream, self.interval, self.clock = label, stream, interval, clock
        self.started = clock()
        self.last_line = self.started
        self.done = self.total = 0
        self.lines = 0
        # (time, bytes) of the first report: the rate and ETA count from there, as the
        # bar's do, not from the planning or safety archive before it (counted from the
        # start, a long plan makes the rate tiny and the ETA absurd)
        self.first: tuple[float, int] | None = None

    def __call__(self, done: int, total: int, path: str | None = None) -> None:
        self.done, self.total = done, max(total, done)
        now = self.clock()
        if self.first is None:          # no rate yet: the first line comes later
            self.first = (now, done)
            return
        if now - self.last_line >= self.interval:
            self.last_line = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = max(now - self.started, 1e-6)
        since, done_then = self.first if self.first is not None else (self.started, 0)
        rate = (self.done - done_then) / (now - since) if now > since else 0.0
        fields = {"label": self.label, "done": human_size(self.done),
                  "total": human_size(self.total), "rate": human_size(int(rate)),
                  "percent": int(100 * self.done / self.total) if self.total else 100,
                  "elapsed": duration(elapsed)}
        if final:
            text = _("{label}: {done} in {elapsed} ({rate}/s)").format(**fields)
        else:
            eta = duration((self.total - self.done) / rate) if rate > 0 else "?"
            text = _("{label}: {done} of {total} ({percent}%), {rate}/s, ETA {eta}").format(
                eta=eta, **fields)
        self.stream.write(text + "\n")
        self.stream.flush()
        self.lines += 1

    def close(self, completed: bool = True) -> None:
        if self.lines and completed:    # a short job needs no "done" line of its own
            self._line(self.clock(), final=True)


def make_progress(label: str, *, quiet: bool, as_json: bool, stream=None,
                  environ=None) -> Progress:
    """The reporter that fits where stderr goes."""
    stream = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    mode = env.get("POPPOARC_PROGRESS", "")
    if quiet or mode == "none":
        return Progress()
    is_tty = _isatty(stream)
    if mode == "bar" or (not mode and is_tty):
        return BarProgress(label, stream)
    if as_json and mode != "lines":
        return Progress()
    try:
        interval = float(env.get("POPPOARC_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
    except ValueError:
        interval = DEFAULT_INTERVAL
    return LineProgress(label, stream, interval)


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
