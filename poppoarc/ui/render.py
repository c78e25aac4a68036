"""Text reports of each command, in the operator's language.

Each function takes the ``Output`` and the library's result object and
writes the text form; the JSON form is the result's ``to_json()``.  This module holds
the archive reports (pack, list, inspect, verify) and ``show``; the browsing commands'
are in ``render_browse``, the restores' in ``render_restore``, the store's and keys' in
``render_store``.
"""

from __future__ import annotations

from ..format.order import in_target_order
from ..i18n import N_, _, ngettext, translate_text
from ..text import display_time, human_size, ljust, row, width
from .render_browse import diff, dump, find, ls
from .render_restore import (consolidate, drill, recovered, recovery_note,  # noqa: F401 (cli)
                             unpack)
from .render_store import config, copy, doctor, keygen, metrics, protect, prune, schedule
from .render_widths import RULE, name_width

PROGRESS_LABELS = {"pack": N_("pack"), "verify": N_("verify"), "unpack": N_("unpack"),
                   "drill": N_("drill"), "consolidate": N_("consolidate")}
# The list layout of PoppoBuilder's documentation: ID, date, type, size, padded to these cells.
LIST_COLUMNS = (40, 21, 12, 10)
EXTRA_COLUMNS = (10, 11, 0)     # key, encrypted, name (the last one as long as it is)


def pack(out, result) -> None:
    out.text(_("Created {id}").format(id=result.id))
    out.text(_("  path    {path}").format(path=result.path))
    out.text(_("  size    {size}  ({files} files, {seconds:.1f} s)").format(
        size=human_size(result.size), files=result.files, seconds=result.duration_ms / 1000))
    width = name_width(result.targets)
    for name, summary in result.targets.items():
        out.text("  " + ljust(name, width) + _("{files:>7} files  {size:>10}").format(
            files=summary["files"], size=human_size(summary["size"])))
    if result.parent:
        out.text(_("  incremental on {parent}: {reused} unchanged files stored there").format(
            parent=result.parent, reused=result.reused))
    elif result.named_full:
        out.text(_("  full: a named archive restores on its own (pack --name --incremental "
                   "makes an incremental)"))
    if result.key_created:
        out.text(_("  signed by key {key} (new key created)").format(key=result.signer))
    else:
        out.text(_("  signed by key {key}").format(key=result.signer))
    if result.encryption == "archive":
        out.text(_("  encrypted: everything"))
    elif result.encryption == "secrets":
        out.text(_("  encrypted: secret files only"))
    if result.protected:
        out.text(_("  protected: no retention deletes it or its ancestors"))
    if result.retention is not None:
        _retention(out, result.retention)
    for replica in result.replicas:
        if replica.ok:
            out.text(_("  replica {replica}: up to date ({copied} copied, {verified} verified)")
                     .format(replica=replica.replica, copied=len(replica.copied),
                             verified=len(replica.verified)))
        else:
            out.text(_("  replica {replica}: FAILED, {count} archives missing (see the warning)")
                     .format(replica=replica.replica, count=len(replica.missing)))
    for notice in result.notices:
        out.note(notice)
    for warning in result.warnings:
        out.warn(warning)


def _retention(out, pruned) -> None:
    """The prune after a pack: what the policy deleted and kept."""
    kept = len(pruned.decisions) - len(pruned.deleted)
    if not pruned.deleted:
        out.text(_("  retention ({policy}): nothing to delete, {kept} kept").format(
            policy=pruned.policy.describe(), kept=kept))
        return
    out.text(ngettext("  retention ({policy}): deleted {count} archive ({size}), {kept} kept",
                      "  retention ({policy}): deleted {count} archives ({size}), {kept} kept",
                      len(pruned.deleted)).format(policy=pruned.policy.describe(),
                                                  count=len(pruned.deleted),
                                                  size=human_size(pruned.freed), kept=kept))
    for archive_id in pruned.deleted:
        out.text(_("    deleted {id}").format(id=archive_id))


def archive_list(out, result) -> None:
    """PoppoBuilder's documented table: ID, date, type, size; a rule of 80 cells; a total.
    After those columns: the key that signed each archive (its first 8 digits, named
    below the table), what is encrypted, and the archive's name."""
    rows = result.rows
    out.text(_("Backups:"))
    out.text(RULE)
    headers = (_("ID"), _("Date"), _("Type"), _("Size"), _("Key"), _("Encrypted"), _("Name"))
    out.text(row(list(zip(headers, LIST_COLUMNS + EXTRA_COLUMNS))).rstrip())
    out.text(RULE)
    sealed = {"archive": _("all"), "secrets": _("secrets"), None: "-"}
    for item in rows:
        kind = item.type or "?"
        if item.incremental:
            kind += "+inc"
        cells = (item.id, display_time(item.timestamp), kind, human_size(item.size),
                 (item.signer or "?")[:8], sealed.get(item.encryption, "?"), item.name or "")
        line = row(list(zip(cells, LIST_COLUMNS + EXTRA_COLUMNS))).rstrip()
        if item.status != "ok":
            line += "  [" + status_word(item.status) + "]"
        if item.protected:
            line += "  [" + _("PROTECTED") + "]"
        out.text(line)
    out.text(RULE)
    out.text(ngettext("Total: {count} backup", "Total: {count} backups", len(rows)).format(
        count=len(rows)))
    roles = {"local": _("this machine's signing key"),
             "retired": _("a retired key of this machine (keygen --rotate), trusted for its "
                          "archives"),
             "pinned": _("pinned in backup.signing.trustedKeys")}
    signers = dict.fromkeys((item.signer, item.signer_key) for item in rows
                            if item.signer and item.signer_key)
    for signer, role in signers:
        out.text(_("Key {key}: {role}").format(key=signer[:8], role=roles[role]))
    for item in rows:
        if item.status != "ok":
            out.warn(f"{item.id}: {translate_text(item.problem)}")


def status_word(status: str) -> str:
    return {"damaged": _("DAMAGED"), "untrusted": _("UNTRUSTED"),
            "newer": _("NEWER FORMAT"), "unreadable": _("UNREADABLE")}.get(status, status.upper())


def inspect(out, result) -> None:
    m = result.manifest
    out.text(_("Archive   {id}").format(id=m["id"]))
    out.text(_("  path      {path}").format(path=result.path))
    created = _("  created   {timestamp}  type {type}").format(timestamp=m["timestamp"],
                                                             type=m["type"])
    if m["name"]:
        created += _("  name {name!r}").format(name=m["name"])
    out.text(created)
    if m["parent"]:
        out.text(_("  incremental on {parent} (incremental {depth} of its chain)").format(
            parent=m["parent"]["id"], depth=m["parent"]["depth"]))
    if m["host"] is None and m["root"] is None:     # in the sealed part of the manifest
        out.text(_("  source    sealed (no key here)  (installation version {version})").format(
            version=m["version"] or _("unknown")))
    else:
        out.text(_("  source    {host}:{root}  (installation version {version})").format(
            host=m["host"], root=m["root"], version=m["version"] or _("unknown")))
    out.text(_("  size      {size}  {files} files  {checksum}...").format(
        size=human_size(m["size"]), files=m["files"], checksum=m["checksum"][:23]))
    out.text(_("  signer    key {key} (trusted)").format(key=result.signer))
    if m["encryption"]:
        kinds = ", ".join(r["type"] for r in m["encryption"]["recipients"])
        out.text(_("  encrypted {scope} (recipients: {kinds})").format(
            scope=m["encryption"]["scope"], kinds=kinds))
        if result.sealed:
            out.text(_("  no key here: paths and details stay sealed"))
    out.text(_("Targets:"))
    width = name_width(m["targets"])
    for name in in_target_order(m["targets"]):
        t = m["targets"][name]
        out.text("  " + ljust(name, width) + _("{files:>7} files  {size:>10}").format(
            files=t["files"], size=human_size(t["size"])))
    if m["databases"]:
        out.text(_("Databases:"))
        for db in m["databases"]:
            out.text("  " + _("{path}  {size}  {tables} tables, {rows} rows  user_version "
                              "{user_version}  passed {check}").format(
                path=db["path"], size=human_size(db["size"]), tables=len(db["tables"]),
                rows=sum(db["tables"].values()), user_version=db["user_version"],
                check=db.get("check", "integrity_check")))
    if m["certificates"]:
        out.text(_("Certificates (by reference, not archived):"))
        for ref in m["certificates"]:
            detail = ref.get("subject") or ref.get("kind")
            expiry = _("  expires {date}").format(date=ref["not_after"]) \
                if ref.get("not_after") else ""
            out.text(f"  {ref['path']}  {detail}{expiry}")
    if m["warnings_total"]:
        out.text(_("Warnings ({count}):").format(count=m["warnings_total"]))
        for warning in m["warnings"]:
            out.text(f"  {translate_text(warning)}")
    _changed_while_packed(out, result.changed)
    for entry in result.entries:
        out.text(f"  {entry.type:<8} {oct(entry.mode)[2:]:>4} {entry.size:>12}  {entry.path}")


def verify(out, result) -> None:
    if hasattr(result, "archives"):
        verify_all(out, result)
        return
    if result.structure_only:
        out.text(_("OK {id}: signed by key {key}; structure checked: the {size} archive "
                   "decodes and matches its signed checksum").format(
            id=result.id, key=result.signer, size=human_size(result.archive_size)))
    else:
        out.text(_("OK {id}: signed by key {key}; {entries} entries, {size} checked, "
                   "{databases} databases pass integrity_check").format(
            id=result.id, key=result.signer, entries=result.entries,
            size=human_size(result.bytes), databases=result.databases))
    if result.chain:
        out.text(_("  chain: {count} earlier archives read and checked, from {first}").format(
            count=len(result.chain), first=result.chain[0]))
    for item in result.not_checked:
        out.text(_("  not checked without a key: {what}").format(what=translate_text(item)))
    _changed_while_packed(out, result.changed)


def verify_all(out, result) -> None:
    """``verify --all``: one line per archive, oldest first, then the counts."""
    out.text(_("Verified every archive of {store}:").format(store=result.store))
    for verdict in result.archives:
        if verdict.status == "ok":
            v = verdict.result
            line = _("  ok       {id}  {entries} entries, {size}, {databases} database(s)").format(
                id=verdict.id, entries=v.entries, size=human_size(v.bytes),
                databases=v.databases)
            if v.chain:
                line += _(" (with its {count} earlier archive(s))").format(count=len(v.chain))
            out.text(line)
            for item in v.not_checked:
                out.text(_("           not checked without a key: {what}").format(what=item))
        elif verdict.status == "failed":
            out.text(_("  FAILED   {id}  {error} (exit {code})").format(
                id=verdict.id, error=verdict.error, code=verdict.error.exit_code))
        else:
            out.text(_("  skipped  {id}  {reason}").format(id=verdict.id, reason=verdict.reason))
    recorded = sum(1 for a in result.archives if a.result and a.result.recorded)
    out.text(_("{ok} verified, {failed} failed, {skipped} skipped; {recorded} recorded for "
               "doctor in {record}").format(
                   ok=result.count("ok"), failed=result.count("failed"),
                   skipped=result.count("skipped"), recorded=recorded, record=result.record))
    for verdict in result.archives:
        if verdict.status == "failed":
            out.warn(_("{id} fails verification: {error}").format(id=verdict.id,
                                                                  error=verdict.error))


def _changed_while_packed(out, paths: list[str]) -> None:
    """The files a pack saw change while it read them (index records flagged ``changed``)."""
    if not paths:
        return
    out.text(_("  {count} file(s) changed while they were packed and are stored as read "
               "(their content may be inconsistent):").format(count=len(paths)))
    for path in paths[:20]:
        out.text(f"    {path}")
    if len(paths) > 20:
        out.text(_("    ... and {count} more").format(count=len(paths) - 20))






















































TEXT = {"pack": pack, "list": archive_list, "ls": ls, "find": find, "diff": diff,
        "dump": dump, "inspect": inspect, "verify": verify,
        "copy": copy, "unpack": unpack, "keygen": keygen, "doctor": doctor, "prune": prune,
        "schedule": schedule, "config": config, "protect": protect, "unprotect": protect,
        "metrics": metrics, "drill": drill, "consolidate": consolidate}
BOTH = {"recover": recovered,       # these write their JSON document themselves
        "schedule": schedule}


def show(out, name: str, result) -> None:
    """A command's result: its JSON document with ``--json``, else its text report."""
    if name in BOTH:
        BOTH[name](out, result)
    elif out.as_json:
        out.json(result.to_json(), name)
    else:
        TEXT[name](out, result)
