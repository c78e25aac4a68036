"""The restore's hooks (``backup.hooks.beforeRestore``/``afterRestore``,
``backup.restore.healthCheck``): shell commands run in the installation root with the
archive, the phase and (after the swap) the outcome in their environment."""

from __future__ import annotations

import os
import subprocess

from ..config import Settings
from ..i18n import N_


def run_hook(command: str, settings: Settings, archive_id: str, phase: str,
             outcome: str | None = None) -> int:
    """The hook's exit status; -1 when it ran past ``backup.restore.hookTimeout``."""
    env = {**os.environ, "POPPO_ROOT": str(settings.root), "POPPOARC_ARCHIVE": archive_id,
           "POPPOARC_PHASE": phase}
    if outcome is not None:
        env["POPPOARC_OUTCOME"] = outcome
    try:
        return subprocess.run(command, shell=True, cwd=settings.root, env=env,
                              timeout=hook_timeout(settings), stdin=subprocess.DEVNULL).returncode
    except subprocess.TimeoutExpired:
        return -1


def hook_timeout(settings: Settings) -> int:
    return settings.backup.get("restore", {}).get("hookTimeout", 600)


def how_it_ended(code: int, settings: Settings) -> str:
    """What a hook's status means to an operator: "exited with 3", "was stopped after
    600 s" (backup.restore.hookTimeout), "was killed by signal 9"."""
    if code == -1:
        return N_(f"was stopped after {hook_timeout(settings)} s (backup.restore.hookTimeout)")
    if code < 0:
        return N_(f"was killed by signal {-code}")
    return N_(f"exited with {code}")
