"""Reading ``config/config.json`` and resolving where things live.

The application's own configuration file carries a ``backup`` section (see
docs/configuration.md).  Only that section is interpreted
here; the rest of the file belongs to PoppoBuilder and is left alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import config_legacy, config_schema
from .config_legacy import N_
from .errors import ConfigError, Message, SourceError, UsageError
from .fs import within
from .parallel import ENVIRONMENT as PARALLEL_VARIABLE, Parallelism
from .parallel import choose as choose_parallelism

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
    # The resolved ``backup.storage`` settings: {"type": "local"} or {"type": "s3",
    # "url": "s3://bucket/prefix", region, endpointUrl, profile, ...}.  ``store`` stays
    # the local directory (the store itself when local; skipped by the walk either way).
    storage: dict = field(default_factory=lambda: {"type": "local"})
    notices: list[str] = field(default_factory=list)   # config warnings to show
    # where the speed-ups run (``--parallel``, ``POPPOARC_PARALLEL``, ``backup.parallel``)
    parallel: Parallelism = field(default_factory=choose_parallelism)
    legacy: list = field(default_factory=list)     # config_legacy.Mapping of each legacy key
    # ``backup.storage.replicas``: directories (absolute, resolved) and s3:// URLs
    replicas: list[str] = field(default_factory=list)

    @property
    def records_dir(self) -> Path:
        """Where poppoarc keeps its record of this installation's runs (``store.runs``):
        the store directory of a local store; with an S3 store the key directory, so that
        no unused local store directory is created."""
        return self.key_dir if self.storage.get("type") == "s3" else self.store

    @property
    def local_store(self) -> Path | None:
        """The store's directory when the store is local (what ``lock.StoreLock`` locks);
        None for a bucket."""
        return None if self.storage.get("type") == "s3" else self.store

    @property
    def store_url(self) -> str:
        """Where archives live: a directory, or ``s3://bucket/prefix``."""
        if self.storage.get("type") == "s3":
            return self.storage["url"]
        return str(self.store)

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
        # a byte-order mark (some Windows editors write one): JSON readers may ignore it
        # (RFC 8259 §8.1), and PoppoBuilder's own (Node's) config loading does
        return json.loads(text[1:] if text.startswith("\ufeff") else text)
    except RecursionError:
        raise ConfigError("invalid JSON: nested too deeply to read", path=path) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            path=f"{path}:{exc.lineno}:{exc.colno}",
        ) from None


def read_backup_section(config_path: Path) -> dict:
    """The ``backup`` object of the config file, validated; {} if absent."""
    return read_config(config_path)[0]


def read_config(config_path: Path) -> tuple[dict, list[config_legacy.Mapping], list[str]]:
    """(the ``backup`` section in the modern shape, validated; what its legacy keys became
    (config_legacy); notices about the file)."""
    try:
        os.stat(config_path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.lexists(config_path):    # a link to a file gone: not "no config"
            raise ConfigError(f"a symbolic link to {os.readlink(config_path)}, which does "
                              "not exist", path=config_path) from None
        return {}, [], []
    except OSError as exc:      # a directory above it this user cannot search, a loop
        raise ConfigError(f"cannot read: {exc.strerror}", path=config_path) from None
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
    backup, mappings = config_legacy.modernise(config_legacy.drop_nulls(backup), config_path)
    notices = config_legacy.notice(config_path, mappings)
    sections = config_legacy.backup_members(text) if text else []
    if len(sections) > 1:
        notices.append(Message(N_("{path}: {count} 'backup' sections; the last (line {line}) "
                                  "is read, as every JSON reader reads it; poppoarc config "
                                  "--upgrade --write removes the others"),
                               path=str(config_path), count=len(sections), line=sections[-1]))
    config_schema.validate(backup, config_path, text,   # unknown keys, wrong types
                           also_top=config_legacy.LEGACY_KEYS)
    config_schema.check_values(backup, config_path)     # cron syntax, time zone, ranges
    _check_storage(backup.get("storage", {}), config_path)   # store kind and limits
    if backup.get("databaseCheck", "quick") not in ("quick", "full"):
        raise ConfigError("'backup.databaseCheck' must be \"quick\" or \"full\"",
                          path=config_path)
    return backup, mappings, notices


# Credentials in the config file are accepted but warned about (config_schema lists the keys).
CREDENTIAL_KEYS = ("accessKeyId", "secretAccessKey", "sessionToken")


def _check_storage(storage: dict, config_path: Path) -> None:
    """Values the key table cannot express (names and types are checked there)."""
    kind = storage.get("type", "local")
    if kind not in ("local", "s3"):
        raise ConfigError("'backup.storage.type' must be \"local\" or \"s3\"", path=config_path)
    if kind == "s3" and not storage.get("bucket"):
        raise ConfigError("'backup.storage.bucket' is required when type is \"s3\"",
                          path=config_path)
    if storage.get("addressingStyle", "auto") not in ("auto", "path", "virtual"):
        raise ConfigError("'backup.storage.addressingStyle' must be auto, path or virtual",
                          path=config_path)
    if storage.get("staleUploadHours", 0) < 0:
        raise ConfigError("'backup.storage.staleUploadHours' must not be negative", path=config_path)
    if not 5 <= storage.get("partSizeMiB", 8) <= 5120:
        raise ConfigError("'backup.storage.partSizeMiB' must be between 5 and 5120",
                          path=config_path)


def resolve_storage(store: str | None, storage: dict, root: Path,
                    config_path: Path) -> tuple[dict, Path, list[str]]:
    """The store to use: (resolved storage settings, local store directory, notices)."""
    resolved = dict(storage)
    notices = [f"{config_path}: backup.storage.{key} holds a credential; it is used, but keep "
               "credentials in the environment or an AWS profile instead"
               for key in CREDENTIAL_KEYS if key in storage]
    if store and store.startswith("s3://"):
        resolved.update(type="s3", url=store.rstrip("/"))
    elif store:
        resolved["type"] = "local"
    elif storage.get("type") == "s3":
        prefix = storage.get("prefix", "").strip("/")
        resolved["url"] = f"s3://{storage['bucket']}" + (f"/{prefix}" if prefix else "")
    resolved.setdefault("type", "local")
    if store and not store.startswith("s3://"):
        local = Path(store)
    elif storage.get("path"):
        local = Path(storage["path"])
        if not local.is_absolute():
            local = root / local
    else:
        local = root / "backups"
    return resolved, local.absolute(), notices


def resolve_replicas(replicas: list[str], root: Path, storage: dict, store: Path,
                     key_dir: Path, config_path: Path) -> list[str]:
    """``backup.storage.replicas`` resolved (a directory relative to the root, as
    ``storage.path``); a replica that is the primary store, or lies inside the installation
    root or the key directory, is a configuration error naming it."""
    resolved = []
    primary = storage.get("url") if storage.get("type") == "s3" else None
    for replica in replicas:
        if replica.startswith("s3://"):
            url = replica.rstrip("/")
            if url == primary:
                raise ConfigError(f"'backup.storage.replicas': {replica} is the primary store "
                                  "itself", path=config_path)
            resolved.append(url)
            continue
        path = Path(os.path.abspath(root / replica))
        real = Path(os.path.realpath(path))
        if primary is None and real == Path(os.path.realpath(store.absolute())):
            raise ConfigError(f"'backup.storage.replicas': {replica} is the primary store "
                              "itself", path=config_path)
        if within(real, root):
            raise ConfigError(f"'backup.storage.replicas': {replica} is inside the "
                              f"installation root ({root})", path=config_path)
        if within(real, key_dir):
            raise ConfigError(f"'backup.storage.replicas': {replica} is inside the key "
                              f"directory ({key_dir})", path=config_path)
        resolved.append(str(path))
    return resolved


def default_key_dir() -> Path:
    """Where the signing key lives: outside every installation's backed-up set."""
    if os.environ.get("POPPOARC_HOME"):
        return Path(os.environ["POPPOARC_HOME"])
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "poppoarc"


def _exists(path: Path, error, what: str) -> bool:
    """Whether ``path`` exists; a directory above it this user cannot search is ``error``
    naming it (Path.exists raises PermissionError there)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        raise error(f"cannot reach {what}: {exc.strerror}", path=path) from None
    return True


def resolve(root: str | None = None, config: str | None = None,
            store: str | None = None, *, strict: bool = True,
            parallel: str | None = None, missing_root_ok: bool = False) -> Settings:
    """Settings from the command line, the environment and the config file.

    Precedence: explicit option, then environment, then config file, then default.
    With ``strict=False`` a broken config file is reported in
    ``config_problem`` and defaults are used: a broken config is one of the
    reasons to restore, so it must not stop list, verify or unpack.  A root that does not
    exist is ``SourceError`` (exit 20) unless ``missing_root_ok`` (unpack creates it on a
    new machine; doctor reports it).
    """
    root_path = Path(root or os.environ.get("POPPO_ROOT") or os.getcwd()).absolute()
    root_exists = _exists(root_path, SourceError, "the installation root")
    if root_exists and not root_path.is_dir():
        raise SourceError("installation root is not a directory", path=root_path)
    if not missing_root_ok and not root_exists:
        raise SourceError("installation root does not exist; check --root or $POPPO_ROOT",
                          path=root_path)
    config_path = Path(config) if config else root_path / "config" / "config.json"
    if config and not _exists(config_path, ConfigError, "the config file"):
        raise ConfigError("config file does not exist", path=config_path)
    problem, legacy, file_notices = None, [], []
    try:
        backup, legacy, file_notices = read_config(config_path)
    except ConfigError as exc:
        if strict:
            raise
        backup, problem = {}, str(exc)
    storage, store_path, notices = resolve_storage(store, backup.get("storage", {}), root_path,
                                                   config_path)
    key_dir = Path(backup.get("signing", {}).get("keyDir") or default_key_dir())
    try:
        replicas = resolve_replicas(backup.get("storage", {}).get("replicas", []), root_path,
                                    storage, store_path, key_dir, config_path)
    except ConfigError as exc:
        if strict:
            raise
        replicas, problem = [], problem or str(exc)
    return Settings(replicas=replicas, root=root_path, config_path=config_path, store=store_path,
                    backup=backup, key_dir=key_dir, config_problem=problem,
                    storage=storage, notices=file_notices + notices, legacy=legacy,
                    parallel=resolve_parallelism(parallel, backup.get("parallel")))


def resolve_parallelism(option: str | None, configured: str | None) -> Parallelism:
    """``--parallel``, else ``POPPOARC_PARALLEL``, else ``backup.parallel`` (validated with
    the config), else auto; an unknown mode is a usage or a configuration error."""
    try:
        return choose_parallelism(option, os.environ, configured)
    except ValueError as exc:
        if option:
            raise UsageError(f"--parallel: {exc}") from None
        if str(exc).startswith("POPPOARC_THREADS"):
            threads = os.environ.get("POPPOARC_THREADS")
            raise ConfigError(f"POPPOARC_THREADS={threads!r}: not a whole number of "
                              "threads") from None
        raise ConfigError(f"{PARALLEL_VARIABLE}: {exc}") from None
