"""The ``backup`` section PoppoBuilder Suite ships, read in the documented (modern) shape.

Every installation's ``config/config.json`` carries a ``backup`` section in the shape the
application's own ``lib/backup/backup-manager.js`` reads (``backupPath``,
``encryptionEnabled``, ``items``, ``excludePatterns``, ``storageBackends``...), and older
releases one with keys only their scheduler read (``beforeBackup``, ``retry``,
``notifications.onSuccess``, ``incremental: true``).  ``modernise`` maps each such key to
its modern meaning, purely: the modern section, and one ``Mapping`` per legacy key saying
what it became (the notice ``config.py`` prints once per run, ``doctor``'s table,
``poppoarc config --upgrade``).  A key set in both shapes keeps its modern value.  Keys
neither shape knows are left for ``config_schema.validate`` to refuse ("did you mean").

``upgraded_text`` gives the file with that section rewritten in the modern shape and every
other byte as it was.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from .config_schema import KEYS
from .errors import ConfigError, Message


def N_(text: str) -> str:
    """Marks a message for the catalog (ui/msgfmt finds the calls)."""
    return text

# the names of the legacy `items`: what each held in backup-manager.js, as targets
# ("config" took config/config.json, .env and .poppo/config.json: the secrets too)
ITEM_TARGETS = {"config": ("config", "security"), "state": ("state",),
                "database": ("database",), "logs": ("logs",)}
LEGACY_KEYS = ("backupPath", "encryptionEnabled", "compressionEnabled", "compressionLevel",
               "retentionDays", "scheduleEnabled", "incrementalEnabled", "items",
               "excludePatterns", "storageBackends", "beforeBackup", "retry")
_NOTIFY_LEGACY = ("enabled", "onSuccess", "onError", "channels")
# every dotted legacy key read here (docs/configuration.md names them; a test checks)
LEGACY_PATHS = LEGACY_KEYS + tuple(f"notifications.{k}" for k in _NOTIFY_LEGACY) + (
    "storageBackends.local", "storageBackends.local.path", "storageBackends.local.enabled",
    "storageBackends.s3", "beforeBackup.checkIntegrity", "retry.enabled", "retry.maxRetries",
    "retry.delay")


@dataclass(frozen=True)
class Mapping:
    """One legacy key and what it means now: ``modern`` (a dotted key below ``backup``)
    set to ``value``, or None with ``note`` saying why nothing is (or what instead)."""

    legacy: str
    modern: str | None
    value: object = None
    note: Message | None = None
    # "set" (modern = value), "kept" (read; means what the defaults mean), "ignored" (no
    # meaning here), "problem" (the operator should act: data left out, a value lost)
    kind: str = "set"

    @property
    def problem(self) -> bool:
        return self.kind == "problem"

    def describe(self) -> Message:
        """One line for doctor's details and config --upgrade."""
        if self.modern is None:
            return Message("{legacy}: {note}", legacy=self.legacy, note=self.note)
        value = json.dumps(self.value, ensure_ascii=False)
        if self.note:
            return Message("{legacy} → {modern} = {value} ({note})", legacy=self.legacy,
                           modern=self.modern, value=value, note=self.note)
        return Message("{legacy} → {modern} = {value}", legacy=self.legacy, modern=self.modern,
                       value=value)

    def to_json(self) -> dict:
        return {"legacy": f"backup.{self.legacy}",
                "modern": f"backup.{self.modern}" if self.modern else None,
                "value": self.value, "note": self.note and str(self.note), "kind": self.kind}


def drop_nulls(node: object) -> object:
    """``null`` means "not set" (the shipped file has ``"encryptionKey": null``)."""
    if isinstance(node, dict):
        return {k: drop_nulls(v) for k, v in node.items() if v is not None}
    return node


def is_legacy(backup: dict) -> bool:
    return any(key in backup for key in LEGACY_KEYS) or isinstance(backup.get("incremental"), bool) \
        or any(key in backup.get("notifications", {}) for key in _NOTIFY_LEGACY
               if isinstance(backup.get("notifications"), dict))


class _Mapper:
    def __init__(self, backup: dict, where: str):
        self.original, self.where = backup, where
        self.modern = {k: copy.deepcopy(v) for k, v in backup.items()
                       if k not in LEGACY_KEYS}
        self.mappings: list[Mapping] = []

    def typed(self, key: str, value: object, kind: type, words: str) -> object:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"'backup.{key}' must be {words}", path=self.where)
        return value

    def has(self, dotted: str) -> bool:
        node = self.original
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def put(self, legacy: str, modern: str, value: object, note: Message | None = None) -> None:
        """Set ``modern`` unless the section sets it itself (then the legacy key is moot)."""
        if self.has(modern):
            self.mappings.append(Mapping(legacy, None, kind="ignored", note=Message(
                N_("ignored: backup.{key} is set"), key=modern)))
            return
        node = self.modern
        *parents, last = modern.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"'backup.{part}' must be an object", path=self.where)
        node[last] = value
        self.mappings.append(Mapping(legacy, modern, value, note))

    def ignore(self, legacy: str, note: Message, kind: str = "ignored") -> None:
        self.mappings.append(Mapping(legacy, None, note=note, kind=kind))


def modernise(backup: dict, where: object = "config") -> tuple[dict, list[Mapping]]:
    """(the section in the modern shape, what each legacy key became), in the order the
    keys appear.  Raises ConfigError for a legacy key of the wrong type."""
    m = _Mapper(backup, str(where))
    if isinstance(backup.get("incremental"), bool):
        del m.modern["incremental"]
        m.put("incremental", "incremental.enabled", backup["incremental"],
              Message(N_("the boolean form of the application's own scheduler")))
    for key, value in backup.items():
        handler = _HANDLERS.get(key)
        if handler is not None:
            handler(m, value)
    notify = backup.get("notifications")
    if isinstance(notify, dict) and any(k in notify for k in _NOTIFY_LEGACY):
        _notifications(m, notify)
    return _in_reference_order(m.modern), m.mappings


def _in_reference_order(section: dict) -> dict:
    """Top-level keys in the order of the key reference (docs/configuration.md)."""
    rank = {key.path: n for n, key in enumerate(k for k in KEYS if "." not in k.path)}
    return dict(sorted(section.items(), key=lambda item: rank.get(item[0], len(rank))))


def _backup_path(m: _Mapper, value) -> None:
    m.put("backupPath", "storage.path", m.typed("backupPath", value, str, "a string"))


def _flag(legacy: str, modern: str, note: Message | None = None):
    def handle(m: _Mapper, value) -> None:
        m.put(legacy, modern, m.typed(legacy, value, bool, "true/false"), note)
    return handle


def _compression_level(m: _Mapper, value) -> None:
    m.typed("compressionLevel", value, int, "an integer")
    m.ignore("compressionLevel", Message(N_("archives are always zstd-compressed, at the "
                                            "level poppoarc chooses")))


def _schedule_enabled(m: _Mapper, value) -> None:
    on = m.typed("scheduleEnabled", value, bool, "true/false")
    if on:
        m.ignore("scheduleEnabled", Message(N_("scheduled backups run while backup.enabled is "
                                               "true")), "kept")
    else:
        m.modern["enabled"] = False
        m.mappings.append(Mapping("scheduleEnabled", "enabled", False,
                                  Message(N_("no scheduled backups; pack still works"))))


def _items(m: _Mapper, value) -> None:
    names = m.typed("items", value, list, "a list of strings")
    if not all(isinstance(n, str) for n in names):
        raise ConfigError("'backup.items' must be a list of strings", path=m.where)
    targets = m.modern.setdefault("targets", {})
    if not isinstance(targets, dict):
        return              # validate names the wrong type
    custom = {n for n, s in targets.items() if isinstance(s, dict) and "include" in s}
    listed = set(names)
    off = [t for item, covered in ITEM_TARGETS.items() if item not in listed for t in covered]
    for target in dict.fromkeys(off):
        if target not in targets:
            targets[target] = False
    if not targets:
        del m.modern["targets"]
    unknown = [n for n in names if n not in ITEM_TARGETS and n not in custom
               and n not in ("agents", "security")]
    shown = {t: False for t in dict.fromkeys(off) if t in m.modern.get("targets", {})}
    if shown:
        m.mappings.append(Mapping("items", "targets", shown, Message(N_(
            "a target holding none of the items is off (config holds config and security)"))))
    else:
        m.mappings.append(Mapping("items", None, kind="kept", note=Message(N_(
            "{items}: every target stays on (config holds config and security)"),
            items=", ".join(names) or "-")))
    for name in unknown:
        m.ignore(f"items: {name!r}", Message(N_(
            "names no target, so nothing of it is backed up; to back it up, define "
            "backup.targets.{name} with include globs (for example [\"{name}/**\"])"),
            name=name), "problem")


def _exclude_patterns(m: _Mapper, value) -> None:
    patterns = m.typed("excludePatterns", value, list, "a list of strings")
    if not all(isinstance(p, str) for p in patterns):
        raise ConfigError("'backup.excludePatterns' must be a list of strings", path=m.where)
    m.put("excludePatterns", "exclude", list(patterns), Message(N_(
        "left out of every target; a pattern without / names a file or directory at any "
        "depth")))


def _storage_backends(m: _Mapper, value) -> None:
    backends = m.typed("storageBackends", value, dict, "an object")
    local, s3 = backends.get("local") or {}, backends.get("s3") or {}
    for name, part in (("local", local), ("s3", s3)):
        if not isinstance(part, dict):
            raise ConfigError(f"'backup.storageBackends.{name}' must be an object", path=m.where)
    s3_on, local_on = bool(s3.get("enabled")), bool(local.get("enabled", bool(local)))
    if s3_on and not local_on:
        m.put("storageBackends.s3", "storage.type", "s3")
        for key in ("bucket", "region", "accessKeyId", "secretAccessKey", "prefix",
                    "endpointUrl"):
            if s3.get(key):
                m.put(f"storageBackends.s3.{key}", f"storage.{key}", s3[key])
        return
    if local.get("path"):
        if "backupPath" in m.original and m.original["backupPath"] != local["path"]:
            m.ignore("storageBackends.local.path", Message(N_(
                "ignored: backupPath ({path}) is where the application wrote"),
                path=m.original["backupPath"]), "problem")
        elif "backupPath" not in m.original:
            m.put("storageBackends.local.path", "storage.path", local["path"])
        else:
            m.ignore("storageBackends.local", Message(N_("the store backupPath names")), "kept")
    if s3_on and not s3.get("bucket"):
        m.ignore("storageBackends.s3", Message(N_(
            "enabled beside local without a bucket: nothing to copy to")), "problem")
    elif s3_on:         # an off-site copy of the local store: a replica
        prefix = str(s3.get("prefix") or "").strip("/")
        url = f"s3://{s3['bucket']}" + (f"/{prefix}" if prefix else "")
        m.put("storageBackends.s3", "storage.replicas", [url], Message(N_(
            "enabled beside local: every archive is also copied to {url} after each pack"),
            url=url))
        for key in ("region", "accessKeyId", "secretAccessKey", "endpointUrl"):
            if s3.get(key):
                m.put(f"storageBackends.s3.{key}", f"storage.{key}", s3[key])
    elif s3:
        m.ignore("storageBackends.s3", Message(N_("disabled: nothing to map")))


def _before_backup(m: _Mapper, value) -> None:
    section = m.typed("beforeBackup", value, dict, "an object")
    if "checkIntegrity" in section:
        check = m.typed("beforeBackup.checkIntegrity", section["checkIntegrity"], bool,
                        "true/false")
        m.put("beforeBackup.checkIntegrity", "databaseCheck", "full" if check else "quick",
              Message(N_("every database snapshot is checked; full runs integrity_check")))
    for key in section:
        if key != "checkIntegrity":
            m.ignore(f"beforeBackup.{key}", Message(N_("ignored: no such setting")), "problem")


def _retry(m: _Mapper, value) -> None:
    m.typed("retry", value, dict, "an object")
    m.ignore("retry", Message(N_("poppoarc schedule retries a failed run 3 times (after 60, "
                                 "120 and 240 s)")))


def _notifications(m: _Mapper, notify: dict) -> None:
    modern = m.modern["notifications"]
    for key in _NOTIFY_LEGACY:
        modern.pop(key, None)
    if "on" in notify:
        m.ignore("notifications.onSuccess/onError", Message(N_("ignored: backup.{key} is set"),
                                                            key="notifications.on"))
    else:
        on = [] if notify.get("enabled") is False else \
            ["success"] * bool(notify.get("onSuccess")) + ["failure"] * bool(notify.get("onError", True))
        modern["on"] = on
        m.mappings.append(Mapping("notifications.enabled/onSuccess/onError", "notifications.on",
                                  on, Message(N_("sent by notifications.command or .url"))))
    if "channels" in notify:
        m.ignore("notifications.channels", Message(N_(
            "schedule logs every run; other channels are notifications.command and .url")))
    if not modern:
        del m.modern["notifications"]


_HANDLERS = {
    "backupPath": _backup_path,
    "encryptionEnabled": _flag("encryptionEnabled", "storage.encrypt"),
    "compressionEnabled": _flag("compressionEnabled", "storage.compress"),
    "compressionLevel": _compression_level,
    "retentionDays": lambda m, v: m.put("retentionDays", "retention",
                                        m.typed("retentionDays", v, int, "an integer")),
    "scheduleEnabled": _schedule_enabled,
    "incrementalEnabled": _flag("incrementalEnabled", "incremental.enabled"),
    "items": _items,
    "excludePatterns": _exclude_patterns,
    "storageBackends": _storage_backends,
    "beforeBackup": _before_backup,
    "retry": _retry,
}


def notice(config_path: object, mappings: list[Mapping]) -> list[Message]:
    """What a run says about a legacy section: one line naming the modern key of each
    legacy key, then one line per mapping the operator must act on."""
    if not mappings:
        return []
    words = {"kept": N_("no change"), "ignored": N_("ignored")}
    shown = [Message("{legacy} → {modern}", legacy=x.legacy, modern=x.modern)
             if x.kind == "set" else
             Message("{legacy} ({what})", legacy=x.legacy, what=Message(words[x.kind]))
             for x in mappings if x.kind != "problem"]
    lines = [Message(N_("{path}: the backup section has the shape PoppoBuilder ships, read as "
                        "the documented keys: {mapped}; poppoarc config --upgrade prints it "
                        "in that shape"), path=str(config_path), mapped=_joined(shown))]
    lines += [Message(N_("{path}: backup.{key}: {note}"), path=str(config_path), key=x.legacy,
                      note=x.note) for x in mappings if x.problem]
    return lines


class _Joined(Message):
    def translated(self, translate) -> str:
        return ", ".join(p.translated(translate) for p in self.fields["parts"])


def _joined(parts: list[Message]) -> Message:
    joined = str.__new__(_Joined, ", ".join(parts))
    joined.template, joined.fields = "", {"parts": parts}
    return joined


# -- rewriting the file -----------------------------------------------------------------

def _members(text: str) -> list[tuple[str, int, int, int]]:
    """(key, start of the key, start of the value, end of the value) of every member of
    the top-level object, duplicates included, in order."""
    decoder = json.JSONDecoder()
    scan = json.decoder.scanstring
    spaces = " \t\r\n"
    i = len(text) - len(text.lstrip(spaces))
    if not text.startswith("{", i):
        raise ConfigError("top level must be a JSON object")
    i += 1
    members = []
    while True:
        while text[i] in spaces:
            i += 1
        if text[i] == "}":
            return members
        if text[i] == ",":
            i += 1
            continue
        key_start = i
        key, i = scan(text, i + 1)
        while text[i] in spaces:
            i += 1
        i += 1          # the colon
        while text[i] in spaces:
            i += 1
        _, end = decoder.raw_decode(text, i)
        members.append((key, key_start, i, end))
        i = end


def backup_members(text: str) -> list[int]:
    """The line of each top-level ``backup`` member (a file may repeat it: JSON readers
    take the last); [] when the text is not an object."""
    try:
        return [text.count("\n", 0, start) + 1 for key, start, _, _ in _members(text)
                if key == "backup"]
    except (ValueError, IndexError, ConfigError):
        return []


def upgraded_text(text: str, where: object = "config") -> tuple[str, dict, list[Mapping]]:
    """(the file with its ``backup`` section in the modern shape, that section, the
    mappings).  Only the section JSON readers use (the last ``backup`` member) changes,
    re-indented as it was; an earlier ``backup`` member, which every JSON reader ignores,
    is removed with the separator before it; every other byte stays."""
    document = json.loads(text)
    backup = document.get("backup") if isinstance(document, dict) else None
    if not isinstance(backup, dict):
        raise ConfigError("there is no 'backup' object to upgrade", path=where)
    modern, mappings = modernise(drop_nulls(backup), where)
    members = [m for m in _members(text) if m[0] == "backup"]
    key, key_start, start, end = members[-1]
    line_start = text.rfind("\n", 0, key_start) + 1
    indent = text[line_start:key_start] if not text[line_start:key_start].strip() else ""
    # the file's own line ending (a Windows editor's CRLF stays CRLF)
    newline = "\r\n" if text.count("\r\n") * 2 > text.count("\n") else "\n"
    body = json.dumps(modern, ensure_ascii=False, indent=2).replace("\n", newline + indent)
    new = text[:start] + body + text[end:]
    opening = text.index("{")
    for _, first_key, _, first_end in reversed(members[:-1]):
        before = text.rfind(",", 0, first_key)          # the separator before the member
        if before > opening:
            new = new[:before] + new[first_end:]
        else:                                            # the first member: the one after
            after = text.index(",", first_end) + 1
            while text[after] in " \t\r\n":
                after += 1
            new = new[:first_key] + new[after:]
    return new, modern, mappings
