"""Reading ``config/config.json`` and resolving where things live.

The application's own configuration file carries a ``backup`` section (see
the README's configuration reference).  Only that section is interpreted
here; the rest of the file belongs to PoppoBuilder and is left alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import config_schema
from .errors import ConfigError

DEFAULT_MASK_PATTERNS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
DEFAULT_ENV_PREFIXES = ("POPPO_", "CLAUDE_", "GITHUB_")

@dataclass
class Settings:
    """Everything a command needs to know about where and how to work."""

    root: Path
    config_path: Path
    store: Path
    backup: dict = field(default_factory=dict)
    key_dir: Path = Path()
    config_problem: str | None = None      # set when a lenient resolve ignored the file

    @property
    def env_prefixes(self) -> tuple[str, ...]:
        env = self.backup.get("environment", {})
        return tuple(env.get("prefixes", DEFAULT_ENV_PREFIXES))

    @property
    def mask_patterns(self) -> tuple[str, ...]:
        env = self.backup.get("environment", {})
        return tuple(p.upper() for p in env.get("maskPatterns", DEFAULT_MASK_PATTERNS))

    @property
    def trusted_keys(self) -> list[str]:
        return list(self.backup.get("signing", {}).get("trustedKeys", []))


def load_json_file(path: Path) -> object:
    """Parse a JSON file; a syntax error names the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            path=f"{path}:{exc.lineno}:{exc.colno}",
        ) from None


def read_backup_section(config_path: Path) -> dict:
    """The ``backup`` object of the config file, validated; {} if absent."""
    if not config_path.exists():
        return {}
    document = load_json_file(config_path)
    if not isinstance(document, dict):
        raise ConfigError("top level must be a JSON object", path=config_path)
    backup = document.get("backup", {})
    if not isinstance(backup, dict):
        raise ConfigError("'backup' must be an object", path=config_path)
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError:
        text = None
    config_schema.validate(backup, config_path, text)   # unknown keys, wrong types
    return backup


def default_key_dir() -> Path:
    """Where the signing key lives: outside every installation's backed-up set."""
    if os.environ.get("POPPOARC_HOME"):
        return Path(os.environ["POPPOARC_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "poppoarc"


def resolve(root: str | None = None, config: str | None = None,
            store: str | None = None, *, strict: bool = True) -> Settings:
    """Settings from the command line, the environment and the config file.

    Precedence: explicit option, then environment, then config file, then default.
    With ``strict=False`` a broken config file is reported in
    ``config_problem`` and defaults are used: a broken config is one of the
    reasons to restore, so it must not stop list, verify or unpack.
    """
    root_path = Path(root or os.environ.get("POPPO_ROOT") or os.getcwd()).absolute()
    if not root_path.is_dir():
        raise ConfigError("installation root is not a directory", path=root_path)
    config_path = Path(config) if config else root_path / "config" / "config.json"
    if config and not config_path.exists():
        raise ConfigError("config file does not exist", path=config_path)
    problem = None
    try:
        backup = read_backup_section(config_path)
    except ConfigError as exc:
        if strict:
            raise
        backup, problem = {}, str(exc)
    storage = backup.get("storage", {})
    if store:
        store_path = Path(store)
    elif storage.get("path"):
        store_path = Path(storage["path"])
        if not store_path.is_absolute():
            store_path = root_path / store_path
    else:
        store_path = root_path / "backups"
    key_dir = Path(backup.get("signing", {}).get("keyDir") or default_key_dir())
    return Settings(root=root_path, config_path=config_path, store=store_path.absolute(),
                    backup=backup, key_dir=key_dir, config_problem=problem)
