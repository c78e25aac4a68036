"""The restore's hooks (``backup.hooks.beforeRestore``/``afterRestore``,
``backup.restore.healthCheck``): shell commands run in the installation root with the
archive, the phase and (after the swap) the outcome in their environment."""

from __future__ import annotations

import os
import subprocess

from ..config import Settings


def run_hook(command: str, settings: Settings, archive_id: str, phase: str,
             outcome: str | None = None) -> int:
    """The hook's exit status; -1 when it ran past ``backup.restore.hookTimeout``."""
    env = {**os.environ, "POPPO_ROOT": str(settings.root), "POPPOARC_ARCHIVE": archive_id,
           "POPPOARC_PHASE": phase}
    if outcome is not None:
        env["POPPOARC_OUTCOME"] = outcome
    try:
        return subprocess.run(command, shell=True, cwd=settings.root, env=env,
                              timeout=settings.backup.get("restore", {}).get("hookTimeout", 600),
                              stdin=subprocess.DEVNULL).returncode
    except subprocess.TimeoutExpired:
        return -1
