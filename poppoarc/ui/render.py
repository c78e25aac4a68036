"""Text reports of each command, in the operator's language.

Each function takes the ``Output`` and the library's result object and
writes the text form; the JSON form is the result's ``to_json()``.
"""

from __future__ import annotations

import json
import signal

from ..format.order import in_target_order
from ..i18n import N_, _, ngettext, translate_text
from ..text import display_time, human_size, ljust, rjust, row, shown_path, width

RULE = "─" * 80
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
    width = _name_width(result.targets)
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
    width = _name_width(m["targets"])
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


def _name_width(names) -> int:
    """The column of target names: the built-in ones, or the longest custom one."""
    return max([9, *(len(name) + 1 for name in names)])


PLAN_PATHS = 10        # paths shown per target in the text plan (--json lists them all)
ACTION_MARKS = {"add": "+", "change": "~", "remove": "-"}


def unpack(out, result) -> None:
    plan = result.plan
    if result.dry_run:
        out.text(_("Restore plan {id} (dry run: nothing changed)").format(id=plan.archive_id))
    else:
        out.text(_("Restored {id}").format(id=plan.archive_id))
    columns = (_("target"), _("add"), _("change"), _("remove"), _("unchanged"), _("bytes"))
    sizes = (max(10, _name_width(t.name for t in plan.targets) + 1), 7, 8, 8, 11, 12)
    out.text("  " + ljust(columns[0], sizes[0])
             + "".join(rjust(c, s) for c, s in zip(columns[1:], sizes[1:])))
    for target in plan.targets:
        written = target.bytes("add") + target.bytes("change")
        values = (target.count("add"), target.count("change"), target.count("remove"),
                  target.count("unchanged"), human_size(written))
        out.text("  " + ljust(target.name, sizes[0])
                 + "".join(rjust(str(v), s) for v, s in zip(values, sizes[1:])))
    for name, area in plan.areas.items():
        where = _("the archive's area, used as recorded") if area["from"] == "archive" \
            else _("this installation's backup.targets")
        out.text(_("  {target}: {globs}  ({where})").format(
            target=name, globs=", ".join(area["include"]), where=where))
    if result.dry_run:
        _planned_paths(out, plan)
    if plan.databases:
        out.text(_("Databases (rows now -> in archive):"))
        for db in plan.databases:
            if db.identical:
                out.text("  " + _("{path}: identical to the archive (unchanged)").format(
                    path=db.path))
                continue
            now = db.tables_now or {}
            parts = [f"{name} {now.get(name, 0)} -> {rows}" for name, rows in db.tables_archive.items()]
            out.text(f"  {db.path}: " + ("; ".join(parts) if parts else _("no tables")))
    if plan.paths is not None:      # a partial restore: the paths themselves
        _partial_paths(out, plan)
    out.text(_("Version: installed {now}, archive {archive}").format(
        now=plan.version_now or _("unknown"), archive=plan.version_archive or _("unknown")))
    if not any(t.changes_anything for t in plan.targets):
        out.text(_("Every target already matches the archive (files by type, mode, size and "
                   "time, databases by content); all are restored anyway, as asked."))
    if result.dry_run:
        out.text(_("Would stage {size} and swap: {names}").format(
            size=human_size(plan.bytes_to_stage), names=", ".join(plan.top_level)))
    elif result.safety_archive:
        out.text(_("Safety archive: {id} (restore it to undo)").format(id=result.safety_archive))
    for warning in result.warnings:
        out.warn(warning)


PARTIAL_SHOWN = 50      # paths a partial restore's report lists before "and N more"


def _partial_paths(out, plan) -> None:
    """What a restore of --include/--exclude paths adds (+), changes (M), removes (-)."""
    out.text(_("Paths ({selection}):").format(selection=plan.paths.describe()))
    marks = {"add": "+", "change": "M", "remove": "-"}
    shown = total = 0
    for target in plan.targets:
        for change in target.changes():
            total += 1
            if shown < PARTIAL_SHOWN:
                out.text(f"  {marks[change.action]} {shown_path(change.path)}")
                shown += 1
    if total > shown:
        out.text(_("  ... and {count} more").format(count=total - shown))
    if not total:
        out.text(_("  (nothing to change)"))


def _planned_paths(out, plan) -> None:
    """The first paths each target would add (+), change (~) or remove (-), then how many
    more (``--json`` lists them all)."""
    for target in plan.targets:
        total = sum(target.count(action) for action in ACTION_MARKS)
        if not total:
            continue
        out.text(_("{target}:").format(target=target.name))
        for shown, change in enumerate(target.changes()):
            if shown == PLAN_PATHS:
                break
            out.text(f"  {ACTION_MARKS[change.action]} {shown_path(change.path)}")
        if total > PLAN_PATHS:
            out.text("  " + _("…and {count} more").format(count=total - PLAN_PATHS))


def recovered(out, result) -> None:
    """``unpack --recover``: the recovery's note (also with --json), then its report."""
    if result.recovery is not None:
        out.note(recovery_note(result.recovery))
    if out.as_json:
        out.json(result.to_json(), "recover")
    elif result.recovery is None:
        out.text(_("No interrupted restore to recover."))


def recovery_note(recovery) -> str:
    """The stderr line every command prints after recovering an interrupted restore."""
    template = (_("recovered interrupted restore {restore} of {archive}: {action}; the "
                  "installation holds the archive's tree") if recovery.restored else
                _("recovered interrupted restore {restore} of {archive}: {action}; the "
                  "installation holds the previous tree"))
    return template.format(restore=recovery.restore_id, archive=recovery.archive_id,
                           action=recovery.action.replace("_", " "))


def keygen(out, result) -> None:
    if result.kind == "export":
        out.text(_("Copied the encryption identity {key} to {path}").format(
            key=result.key_id, path=result.path))
        out.text(_("  keep it off this machine (it opens every archive sealed to {recipient}); "
                   "on another machine use it with POPPO_BACKUP_IDENTITY=FILE or "
                   "backup.storage.identityFile").format(recipient=result.public_key))
        return
    old = result.retired
    if result.kind == "encryption":
        out.text(_("Created encryption identity {path}").format(path=result.path))
        out.text(_("  recipient: {recipient}").format(recipient=result.public_key))
        out.text(_("  add it to backup.storage.recipients where archives are written; "
                   "keep the identity file offline"))
        if old is not None:
            out.text(_("  the previous identity {key} is kept in {path}: it still opens the "
                       "archives sealed to it; replace its recipient in "
                       "backup.storage.recipients elsewhere").format(key=old.key_id,
                                                                    path=old.private))
        return
    out.text(_("Created signing key {key} in {dir}").format(key=result.key_id,
                                                           dir=result.key_dir))
    out.text(_("  public key: {public}").format(public=result.public_key))
    out.text(_("  pin it on other machines under backup.signing.trustedKeys"))
    if old is not None:
        out.text(_("  the previous key {key} is kept in {path} and stays trusted here for "
                   "the archives it signed; new archives are signed by {new}").format(
            key=old.key_id, path=old.public or old.private, new=result.key_id))


def status_label(status: str) -> str:
    return {"ok": _("ok"), "info": _("info"), "n/a": _("n/a"), "warn": _("WARN"),
            "fail": _("FAIL")}[status]


def doctor(out, report) -> None:
    out.text(_("Checking {root} (store {store})").format(root=report.root, store=report.store))
    labels = [status_label(f.status) for f in report.findings]
    label_cells = max(width(status_label(s)) for s in ("ok", "info", "n/a", "warn", "fail")) + 2
    title_cells = max(width(_(f.title)) for f in report.findings) + 2
    indent = " " * (2 + label_cells + title_cells)
    for finding, label in zip(report.findings, labels):
        out.text("  " + ljust(label, label_cells) + ljust(_(finding.title), title_cells)
                 + finding.render(_))
        for detail in finding.details[:10]:
            translated = getattr(detail, "translated", None)     # (an errors.Message)
            out.text(indent + "- " + (translated(_) if translated else translate_text(detail)))
        if len(finding.details) > 10:
            out.text(indent + _("- ... and {count} more").format(count=len(finding.details) - 10))
        if finding.fix and finding.status in ("warn", "fail"):
            out.text(indent + _("fix: {fix}").format(fix=finding.render_fix(_)))
    fails = sum(1 for f in report.findings if f.status == "fail")
    warns = sum(1 for f in report.findings if f.status == "warn")
    if not fails and not warns:
        out.text(_("All clear."))
    else:
        out.text(_("{fails} problem(s), {warns} warning(s).").format(fails=fails, warns=warns))


def copy(out, result) -> None:
    if result.outcome == "copied":
        out.text(_("Copied {id} ({size})").format(id=result.id, size=human_size(result.size)))
    else:
        out.text(_("Already present: {id} ({size})").format(id=result.id,
                                                            size=human_size(result.size)))
    out.text(_("  from    {path}").format(path=result.source))
    out.text(_("  to      {path}").format(path=result.destination))
    for ancestor in result.ancestors:
        template = (_("  ancestor {id} ({size}): copied") if ancestor.outcome == "copied"
                    else _("  ancestor {id} ({size}): already there"))
        out.text(template.format(id=ancestor.id, size=human_size(ancestor.size)))
    v = result.verified
    archives = len(v.chain) + 1
    out.text(ngettext("  verified at the destination as a restore reads it: the signature and "
                      "every byte of {count} archive",
                      "  verified at the destination as a restore reads it: the signatures and "
                      "every byte of {count} archives (the chain)", archives).format(
                          count=archives))
    out.text(_("    signed by key {key}; {entries} entries, {size} of content checked, "
               "{databases} database(s) pass integrity_check").format(
                   key=v.signer, entries=v.entries, size=human_size(v.bytes),
                   databases=v.databases))
    for item in v.not_checked:
        out.text(_("  not checked: {what}").format(what=item))
    if result.protected:
        out.text(_("  protected there too"))


def drill(out, result) -> None:
    """A drill's report: what came back, how it compares with the manifest, what a real
    restore needs."""
    head = _("Drill of {id} passed") if result.ok else _("Drill of {id} FAILED")
    out.text(head.format(id=result.archive_id))
    if result.chain:
        out.text(_("  through its chain: {chain}").format(chain=", ".join(result.chain)))
    out.text(_("  files     {restored} restored, {manifest} in the manifest").format(
        restored=result.files[1], manifest=result.files[0]))
    out.text(_("  bytes     {restored} restored, {manifest} in the manifest").format(
        restored=human_size(result.bytes[1]), manifest=human_size(result.bytes[0])))
    for check in result.databases:
        state = _("integrity ok") if not check.integrity else "; ".join(check.integrity[:2])
        rows = sum(r or 0 for _m, r in check.tables.values())
        out.text(_("  database  {path}: {state}, {tables} tables, {rows} rows{same}").format(
            path=check.path, state=state, tables=len(check.tables), rows=rows,
            same=_(" as in the manifest") if check.ok else _(" (differs from the manifest)")))
    if result.health is not None:
        out.text(_("  health check: exit {code}").format(code=result.health["exit_code"]))
    out.text(_("  a real restore needs about {space} and {seconds:.1f} s; {free} free on the "
               "installation's filesystem").format(
        space=human_size(result.space_bytes), seconds=result.restore_seconds,
        free=human_size(result.free_bytes)))
    if result.removed:
        out.text(_("  scratch root removed"))
    for _cls, problem in result.problems:
        out.error(problem)
    for warning in result.warnings:
        out.warn(warning)


def consolidate(out, result) -> None:
    """What a consolidation verified and wrote (or, dry run / a full archive, would)."""
    plan = result.plan
    if not plan.incremental:
        out.text(_("{id} is a full archive: it restores on its own; nothing written").format(
            id=plan.archive_id))
        return
    out.text(_("Chain of {id} verified: {count} ancestor(s) {chain}, {size} in the store, "
               "{files} files").format(id=plan.archive_id, count=len(plan.chain),
                                       chain=", ".join(plan.chain),
                                       size=human_size(plan.chain_size), files=plan.files))
    if result.dry_run:
        out.text(_("dry run: would write a full archive named {name}; nothing "
                   "written").format(name=plan.name))
    else:
        out.text(_("Created {id} (full, named {name}), verified").format(
            id=result.id, name=plan.name))
    if plan.encrypt:
        out.text(_("  sealed whole, to the recipients configured now"))
    if result.dry_run:
        return
    out.text(_("  path    {path}").format(path=result.path))
    out.text(_("  size    {size} (the chain: {chain}); {cpu:.1f} CPU s").format(
        size=human_size(result.size), chain=human_size(plan.chain_size),
        cpu=result.cpu_seconds))
    if result.protected:
        out.text(_("  protected: no retention deletes it"))
    for warning in result.warnings:
        out.warn(warning)


def metrics(out, result) -> None:
    """The Prometheus text format itself (what node_exporter's textfile collector reads)."""
    for line in result.text.rstrip("\n").splitlines():     # (one text() call per line:
        out.text(line)                                    # a line never holds a newline)


def protect(out, result) -> None:
    if result.protected:
        message = _("Protected {id} in {store}: no retention deletes it or its ancestors.") \
            if result.changed else _("{id} in {store} was already protected.")
    else:
        message = _("Unprotected {id} in {store}: retention applies to it again.") \
            if result.changed else _("{id} in {store} was not protected.")
    out.text(message.format(id=result.id, store=result.store))


def prune(out, result) -> None:
    doomed = result.to_delete
    title = _("Prune plan (dry run: nothing deleted)") if result.dry_run else _("Prune")
    out.text(_("{title}; policy: {policy}").format(title=title,
                                                   policy=_reasons(result.policy.describe())))
    out.text(RULE)
    actions = {"keep": _("keep"), "delete": _("delete")}
    for decision in result.decisions:
        a = decision.archive
        when = a.timestamp.strftime("%Y/%m/%d %H:%M:%S") if a.timestamp else "?"
        kind = (a.type or "?") + ("+inc" if a.incremental else "")
        out.text(ljust(actions.get(decision.action, decision.action), 7) + ljust(a.id, 40)
                 + ljust(when, 21) + ljust(kind, 12) + _reasons(decision.reason))
    out.text(RULE)
    freed = sum(d.archive.size for d in doomed)
    kept = len(result.decisions) - len(doomed)
    template = ngettext("Would delete {count} archive ({size}); {kept} kept.",
                        "Would delete {count} archives ({size}); {kept} kept.", len(doomed)) \
        if result.dry_run else \
        ngettext("Deleted {count} archive ({size}); {kept} kept.",
                 "Deleted {count} archives ({size}); {kept} kept.", len(doomed))
    out.text(template.format(count=len(doomed), size=human_size(freed), kept=kept))
    for warning in result.warnings:
        out.warn(warning)


def _reasons(text: str) -> str:
    """A retention rule's reasons ("; "-joined English, policy/retention.py) translated."""
    return "; ".join(translate_text(part) for part in text.split("; "))


def schedule(out, result) -> None:
    """``schedule --next``; the service itself reports through its log, but
    ``--once`` stopped by a signal before a due run was done says so last (exit 130/143)."""
    if not hasattr(result, "fires"):
        if out.as_json:
            out.json(result.to_json(), "schedule")
        if result.once and result.abandoned and result.stop_signal:      # also with --json
            out.note(_("interrupted ({signal}): a due scheduled run was not done; the next "
                       "schedule --once runs it").format(
                signal=signal.Signals(result.stop_signal).name))
        return
    if out.as_json:
        out.json(result.to_json(), "schedule")
        return
    schedule = result.schedule
    out.text(_("Next scheduled backups (time zone {zone}):").format(
        zone=schedule.timezone_name))
    for entry, when in result.fires:
        out.text(f"  {when.strftime('%Y-%m-%d %H:%M %z')}  {entry.name:<10} {entry.type}")
    for name, when in sorted(result.last.items()):
        out.text(_("  last handled: {name} at {when}").format(
            name=name, when=when.astimezone(schedule.timezone).strftime('%Y-%m-%d %H:%M %z')))
    if not schedule.enabled:
        out.warn(_("backup.enabled is false: the scheduler does not run these"))


def config(out, result) -> None:
    """``config --upgrade``: the section to paste (or written), and where each key went."""
    if not result.changed:
        out.text(_("The backup section of {path} is in the documented shape: nothing to "
                   "change.").format(path=result.path))
        return
    if result.written:
        out.text(_("Wrote the backup section of {path} in the documented shape (the rest of "
                   "the file is unchanged):").format(path=result.path))
    else:
        out.text(_("The backup section of {path} in the documented shape (poppoarc config "
                   "--upgrade --write puts it into the file):").format(path=result.path))
    for line in ('"backup": ' + json.dumps(result.section, ensure_ascii=False,
                                           indent=2)).splitlines():
        out.text(line)
    if result.mappings:
        out.text(_("What each legacy key became:"))
        for mapping in result.mappings:
            if not mapping.problem:         # (those are warnings, below)
                out.text("  " + mapping.describe().translated(_))
    if result.removed_sections:
        out.text(_("An earlier 'backup' section, which JSON readers ignore, is removed."))
    for mapping in result.problems:
        out.warn(_("backup.{key}: {note}").format(key=mapping.legacy,
                                                  note=mapping.note.translated(_)))


def _mode_text(kind: str, mode: int) -> str:
    """``drwxr-xr-x``: the type letter and the permission bits, as ``ls -l`` shows them."""
    letter = {"dir": "d", "symlink": "l", "hardlink": "h"}.get(kind, "-")
    bits = "".join(ch if mode & (1 << (8 - n)) else "-" for n, ch in enumerate("rwxrwxrwx"))
    return letter + bits


def _time_text(mtime_ns: int) -> str:
    """A record's modification time, UTC, to the second."""
    from datetime import datetime, timezone

    seconds = mtime_ns // 10**9
    try:
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):    # beyond what datetime shows
        return str(seconds)


def ls(out, result) -> None:
    """One line per record, as ``ls -l`` lays it out; a database with its tables."""
    sealed = _("sealed")
    for entry in result.records():
        size = "" if entry.type == "dir" else human_size(entry.size)
        shown = shown_path(entry.path) \
            + (f" -> {shown_path(entry.link)}" if entry.type == "symlink" else "") \
            + (f" => {shown_path(entry.link)}" if entry.type == "hardlink" else "") \
            + (f"  ({sealed})" if entry.needs_key() else "")
        out.text(f"{_mode_text(entry.type, entry.mode)} {rjust(size, 10)}  "
                 f"{_time_text(entry.mtime_ns)}  {shown}")
        database = result.databases.get(entry.path) if entry.sqlite else None
        if database is not None:
            tables = database.get("tables", {})
            out.text("    " + _("database: {tables} tables, {rows} rows, user_version "
                              "{version}").format(tables=len(tables), rows=sum(tables.values()),
                                                  version=database.get("user_version")))
            for table, rows in tables.items():
                out.text(f"      {shown_path(table)}: {rows}")
    out.text(_("{count} entries, {size} in files ({id})").format(
        count=result.count, size=human_size(result.size), id=result.archive_id))
    for warning in result.warnings:
        out.warn(warning)


def find(out, result) -> None:
    """Each path found, then one line per archive searched, newest first."""
    states = {"added": _("added"), "changed": _("changed"), "unchanged": _("unchanged"),
              "absent": _("absent")}
    for path, history in result.histories():
        out.text(shown_path(path))
        for row in history:
            when = display_time(row["timestamp"])
            if row["state"] == "absent":
                detail = ""
            else:
                detail = f"{rjust(human_size(row['size']), 10)}  {_time_text(row['mtime_ns'])}"
            out.text(f"  {when}  {ljust(row['archive_id'], 40)} {ljust(states[row['state']], 10)}"
                     f"{detail}")
    out.text(ngettext("{count} path found in {archives} archive(s)",
                      "{count} paths found in {archives} archive(s)", result.matched).format(
        count=result.matched, archives=len(result.archives)))
    for warning in result.warnings:
        out.warn(warning)


def diff(out, result) -> None:
    """Per target: counts, then each path added (+), removed (-) or changed (M)."""
    out.text(_("From {older} ({older_time}) to {newer} ({newer_time}):").format(
        older=result.older["id"], older_time=display_time(result.older["timestamp"]),
        newer=result.newer["id"], newer_time=display_time(result.newer["timestamp"])))
    marks = {"added": "+", "removed": "-", "changed": "M"}
    for target in result.targets:
        counts = target.counts
        out.text("  " + _("{target}: {added} added, {removed} removed, {changed} changed, "
                          "{unchanged} unchanged").format(target=target.name, **counts))
        for change in target.changes():
            detail = ""
            if change.action == "changed":
                detail = f"  ({change.fields.replace(',', ', ')}"
                if change.size_from != change.size_to:
                    detail += f"; {human_size(change.size_from)} -> {human_size(change.size_to)}"
                detail += ")"
            out.text(f"    {marks[change.action]} {shown_path(change.path)}{detail}")
    if result.databases:
        out.text(_("Databases (rows {older} -> {newer}):").format(
            older=result.older["id"], newer=result.newer["id"]))
        for database in result.databases:
            parts = [f"{shown_path(table)} {_rows(t['from'])} -> {_rows(t['to'])}"
                     for table, t in database["tables"].items()]
            out.text(f"  {marks[database['action']]} {shown_path(database['path'])}: "
                     + ("; ".join(parts) if parts else _("no tables")))
    if not result.changed:
        out.text(_("No differences."))
    for warning in result.warnings:
        out.warn(warning)


def _rows(count) -> str:
    return "-" if count is None else str(count)


def dump(out, result) -> None:
    """The content itself to standard output, or a line naming the file written."""
    if result.output is None:
        import sys

        stream = sys.stdout.buffer
        for chunk in result.stream():
            stream.write(chunk)
        stream.flush()
        return
    e = result.extracted
    out.text(_("Wrote {path} ({size}) from {id}: {entry}, verified by its {how}").format(
        path=result.output, size=human_size(e.size), id=e.archive_id, entry=shown_path(e.entry.path),
        how=e.verified_by))


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
