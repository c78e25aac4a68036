"""Telling someone how a scheduled backup went: a command, a webhook, a heartbeat.

``backup.notifications`` = ``{command, url, heartbeatUrl, on, timeoutSeconds}``.
On each event listed in ``on`` (default ``["failure"]``) the command runs with
the JSON payload on its standard input and the URL receives it as a POST;
after each success the heartbeat URL (a dead man's switch such as
healthchecks.io) gets a GET.  Nothing here ever raises: a notification that
fails is logged and the backup's outcome stands.

The payload names the archive and counts things; it never carries file
paths, warning texts, configuration values or the environment, so a secret
cannot leak through it.  URLs are logged by scheme and host only, because
webhook URLs often embed a token.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import urlsplit

from .. import __version__

SUCCESS, FAILURE = "success", "failure"
DEFAULT_EVENTS = (FAILURE,)
DEFAULT_TIMEOUT = 10
MAX_ERROR_CHARS = 300

log = logging.getLogger("poppoarc.notify")


@dataclass(frozen=True)
class Notifications:
    command: str | list[str] | None = None
    url: str | None = None
    heartbeat_url: str | None = None
    events: tuple[str, ...] = DEFAULT_EVENTS
    timeout: int = DEFAULT_TIMEOUT

    @classmethod
    def from_config(cls, backup: dict) -> "Notifications":
        raw = backup.get("notifications", {})
        return cls(raw.get("command"), raw.get("url"), raw.get("heartbeatUrl"),
                   tuple(raw.get("on", DEFAULT_EVENTS)), raw.get("timeoutSeconds", DEFAULT_TIMEOUT))

    @property
    def configured(self) -> bool:
        return bool(self.command or self.url or self.heartbeat_url)


def payload(event: str, *, archive_id: str | None = None, size: int | None = None,
            duration_ms: int | None = None, warnings_count: int = 0, error: str | None = None,
            schedule: list[str] | None = None, now: datetime | None = None,
            kind: str = "pack") -> dict:
    """The document sent for one event (docs/scheduling.md); ``kind``: what ran (pack,
    verify, drill)."""
    if error and len(error) > MAX_ERROR_CHARS:
        error = error[:MAX_ERROR_CHARS - 3] + "..."
    return {"event": event, "kind": kind, "archive_id": archive_id, "size": size, "duration_ms": duration_ms,
            "warnings_count": warnings_count, "error": error, "host": socket.gethostname(),
            "time": (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
            .isoformat(timespec="seconds").replace("+00:00", "Z"),
            "schedule": schedule or [], "tool": f"poppoarc {__version__}"}


def redact(url: str) -> str:
    """scheme://host[:port] — what a log line may say about a URL."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def send(config: Notifications, document: dict, cwd: str | None = None) -> list[str]:
    """Deliver one event as configured; returns the problems (also logged)."""
    problems: list[str] = []
    if document["event"] in config.events:
        if config.command:
            problems += _run_command(config, document, cwd)
        if config.url:
            problems += _post(config.url, document, config.timeout)
    # the dead-man's switch is for backups: a drill's or a verify's success is not one
    if document["event"] == SUCCESS and config.heartbeat_url \
            and document.get("kind", "pack") == "pack":
        problems += _get(config.heartbeat_url, config.timeout)
    for problem in problems:
        log.warning("notification failed: %s", problem)
    return problems


def _run_command(config: Notifications, document: dict, cwd: str | None) -> list[str]:
    argv = ["/bin/sh", "-c", config.command] if isinstance(config.command, str) else list(config.command)
    env = {**os.environ, "POPPOARC_EVENT": document["event"],
           "POPPOARC_KIND": document.get("kind", "pack"),
           "POPPOARC_ARCHIVE_ID": document["archive_id"] or ""}
    name = os.path.basename(argv[0]) if isinstance(config.command, list) else "command"
    try:
        result = subprocess.run(argv, input=json.dumps(document).encode(), cwd=cwd, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                timeout=config.timeout, check=False)
    except subprocess.TimeoutExpired:
        return [f"notification {name} did not finish within {config.timeout} s"]
    except OSError as exc:
        return [f"notification {name} could not start: {exc.strerror}"]
    if result.returncode != 0:
        tail = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        return [f"notification {name} exited with status {result.returncode}"
                + (f": {tail[0][:200]}" if tail[0] else "")]
    log.info("notification %s ran for event %s", name, document["event"])
    return []


def _urllib():
    """``urllib.request``, imported when a notification is sent: it brings http.client,
    email and ssl, whose memory every pack and restore process would carry otherwise."""
    import urllib.error
    import urllib.request
    return urllib


def _request(request, timeout: int) -> list[str]:
    urllib = _urllib()
    where = redact(request.full_url)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(65536)
            status = response.status
    except urllib.error.HTTPError as exc:
        return [f"{request.get_method()} {where} answered HTTP {exc.code}"]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return [f"{request.get_method()} {where} failed: {reason}"]
    log.info("notification %s %s: HTTP %s", request.get_method(), where, status)
    return []


def _post(url: str, document: dict, timeout: int) -> list[str]:
    body = json.dumps(document).encode()
    request = _urllib().request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": f"poppoarc/{__version__}"})
    return _request(request, timeout)


def _get(url: str, timeout: int) -> list[str]:
    request = _urllib().request.Request(url, method="GET",
                                     headers={"User-Agent": f"poppoarc/{__version__}"})
    return _request(request, timeout)
