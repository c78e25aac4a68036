"""Turn the raw rounds into medians and a markdown report."""

from __future__ import annotations

import statistics

SIZE_TARGETS = {"manyfiles": 1.15}    # issue #8: 1.15× for 100,000 small files
SIZE_TARGET = 1.02                      # ... and 1.02× otherwise
OP_NAMES = {"pack": "pack / backup", "verify": "verify / check", "restore": "restore (empty dir)",
            "restore-live": "restore over the live tree (a day's changes)"}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(records: list[dict], tools: list, nproc: int = 1) -> list[dict]:
    """One row per (tool, operation) over the timed (non-warm-up) rounds."""
    timed = [r for r in records if not r["warmup"]]
    rows = []
    for tool in tools:
        for op in OP_NAMES:
            mine = [r for r in timed if r["tool"] == tool.key and r["op"] == op]
            ok = [r for r in mine if r.get("ok")]
            failed = [r for r in mine if not r.get("ok")]
            if not ok and not failed:
                continue
            walls = [r["wall_s"] for r in ok]
            sizes = [r["size_bytes"] for r in ok if r.get("size_bytes") is not None]
            rows.append({
                "tool": tool.key, "label": tool.label, "op": op, "rounds": len(ok),
                "failed": len(failed),
                "wall_s": _median(walls),
                "wall_min": min(walls, default=None), "wall_max": max(walls, default=None),
                "durable_s": _median([r["wall_s"] + r["sync_s"] for r in ok]),
                "rss_mib": _median([r["rss_kb"] / 1024 for r in ok]),
                "tree_pss_mib": _median([r["tree_pss_kb"] / 1024 for r in ok
                                         if r.get("tree_pss_kb") is not None]),
                "cpu_s": _median([r["cpu_s"] for r in ok if r.get("cpu_s") is not None]),
                "other_pct": _median([100 * r["other_cpu_s"] / (r["wall_s"] * nproc) for r in ok
                                      if r.get("other_cpu_s") is not None and r["wall_s"] > 0]),
                "size_bytes": _median(sizes) if sizes else None,
            })
    reference = {row["op"]: row for row in rows if row["tool"] == "tar-zstd"}
    for row in rows:
        ref = reference.get(row["op"])
        row["wall_ratio"] = (row["wall_s"] / ref["wall_s"]
                             if ref and row["wall_s"] and ref["wall_s"] else None)
        row["durable_ratio"] = (row["durable_s"] / ref["durable_s"]
                                if ref and row["durable_s"] and ref["durable_s"] else None)
        ref_size = reference.get("pack", {}).get("size_bytes")
        row["size_ratio"] = (row["size_bytes"] / ref_size
                             if row["size_bytes"] and ref_size else None)
    return rows


def size_target(records: list[dict], scale: str = "") -> dict | None:
    """poppoarc archive size / tar|zstd -3 of the same files, paired per round."""
    limit = SIZE_TARGETS.get(scale, SIZE_TARGET)
    timed = [r for r in records if not r["warmup"] and r["op"] == "pack" and r.get("ok")]
    by_round: dict[int, dict] = {}
    for r in timed:
        by_round.setdefault(r["round"], {})[r["tool"]] = r["size_bytes"]
    ratios, pairs = [], []
    for rnd, sizes in sorted(by_round.items()):
        if "poppoarc" in sizes and "tar-zstd-same" in sizes:
            ratios.append(sizes["poppoarc"] / sizes["tar-zstd-same"])
            pairs.append({"round": rnd, "poppoarc": sizes["poppoarc"],
                          "tar_zstd_same": sizes["tar-zstd-same"]})
    if not ratios:
        return None
    return {"ratio": statistics.median(ratios), "per_round": pairs,
            "poppoarc_bytes": statistics.median(p["poppoarc"] for p in pairs),
            "same_bytes": statistics.median(p["tar_zstd_same"] for p in pairs),
            "target": limit, "met": statistics.median(ratios) <= limit}


def _f(value, fmt: str, suffix: str = "") -> str:
    return "–" if value is None else format(value, fmt) + suffix


def table(rows: list[dict]) -> list[str]:
    lines = ["| tool | operation | median wall s | min–max s | × tar\\|zstd | wall+sync s "
             "| × tar\\|zstd (synced) | CPU s | archive MB | size × tar\\|zstd | peak RSS MiB "
             "| all processes, PSS MiB | other load | rounds |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for row in rows:
        spread = (f"{row['wall_min']:.2f}–{row['wall_max']:.2f}"
                  if row["wall_min"] is not None else "–")
        rounds = str(row["rounds"]) + (f" ({row['failed']} failed)" if row["failed"] else "")
        lines.append(
            f"| {row['label']} | {OP_NAMES[row['op']]} | {_f(row['wall_s'], '.2f')} | {spread} "
            f"| {_f(row['wall_ratio'], '.2f', '×')} | {_f(row['durable_s'], '.2f')} "
            f"| {_f(row['durable_ratio'], '.2f', '×')} | {_f(row['cpu_s'], '.2f')} "
            f"| {_f(row['size_bytes'] and row['size_bytes'] / 1e6, '.1f')} "
            f"| {_f(row['size_ratio'], '.3f', '×')} | {_f(row['rss_mib'], '.0f')} "
            f"| {_f(row['tree_pss_mib'], '.0f')} "
            f"| {_f(row['other_pct'], '.0f', '%')} | {rounds} |")
    return lines


def markdown(doc: dict, tools: list) -> str:
    m = doc["machine"]
    out = [f"# poppoarc benchmark — {doc['date']}", ""]
    out.append(f"- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']:.1f} GiB RAM, "
               f"{m['kernel']}; work dir on {m['workdir_fs']}; Python {m['python']}")
    versions = "; ".join(f"{k}: {v}" for k, v in doc["versions"].items())
    out.append(f"- Versions: {versions}")
    s = doc["settings"]
    out.append(f"- Settings: {s['rounds']} timed rounds after 1 untimed warm-up round per tool "
               f"(page cache warm — dropping caches is not possible here); tools round-robin, "
               f"start rotated each round; medians; zstd threads = POPPOARC_THREADS = "
               f"{s['threads']}; generator seed {s['seed']}; time limit {s['timeout']:.0f} s per "
               f"command; quiet gate up to {s.get('quiet_wait', 0):.0f} s per command.")
    out.append("- *wall+sync* adds a `sync` timed right after the command: poppoarc fsyncs its "
               "archive and syncs the restored tree itself, the peers leave dirty pages behind. "
               "Ratios (×) divide by the same operation of `tar | zstd -3` over the whole "
               "installation; archive size = file or repository bytes (MB = 10^6 B).")
    out.append(f"- Peak RSS: {doc['rss_method']}; median over rounds. *all processes, PSS*: "
               "the peak of the command's processes' PSS summed (shared pages divided among "
               "them), sampled every 50 ms: what the command occupies at once. *CPU s* = user + sys "
               "of the command's process tree (less sensitive to contention than wall time). "
               "*other load* = CPU time used by anything else on the machine while the command "
               "ran (other processes, kernel threads, hypervisor steal), as a share of all "
               f"{m['nproc']} cores × wall: well above 0 % means the wall times are noisy.")
    for scale, block in doc["scales"].items():
        inst = block["installation"]
        out += ["", f"## {scale} — {inst['files']:,} files, {inst['bytes'] / 1e6:.1f} MB "
                    f"(generated in {inst['generate_s']:.1f} s)", ""]
        rows = summarise(block["records"], tools, m["nproc"] or 1)
        out += table(rows)
        target = size_target(block["records"], scale)
        out.append("")
        if target:
            verdict = "met" if target["met"] else "**not met**"
            out.append(f"Size target: poppoarc archive {target['poppoarc_bytes'] / 1e6:.2f} MB / "
                       f"`tar | zstd -3` of the same files {target['same_bytes'] / 1e6:.2f} MB = "
                       f"**{target['ratio']:.3f}×** (target ≤ {target['target']}×: {verdict}).")
        else:
            out.append("Size target: not computed (needs poppoarc and tar-zstd-same).")
        timed = [r for r in block["records"] if not r["warmup"] and r.get("ok")
                 and r.get("other_cpu_s") is not None and r["wall_s"] > 0]
        if timed:
            other = sum(r["other_cpu_s"] for r in timed)
            share = 100 * other / (sum(r["wall_s"] for r in timed) * (m["nproc"] or 1))
            busy = share >= 10
            out.append(f"{'- **Busy machine**: ' if busy else '- '}other work used {other:.0f} "
                       f"CPU-s ({share:.0f} % of the cores) during the timed commands"
                       + ("; wall times are inflated and noisy, compare CPU s." if busy else "."))
            gates = [r["extra"]["quiet_gate"] for r in timed
                     if r.get("extra", {}).get("quiet_gate")]
            if gates:
                idle = sum(1 for g in gates if g.get("quiet"))
                out.append(f"- Quiet gate: {idle} of {len(gates)} timed commands started on an "
                           f"idle machine; {sum(g['waited_s'] for g in gates):.0f} s spent "
                           "waiting for one.")
        for note in block["notes"]:
            out.append(f"- {note}")
    if doc["skipped"]:
        out += ["", "## Skipped tools", ""] + [f"- {k}: {v}" for k, v in doc["skipped"].items()]
    out += ["", "## How each tool is run", ""]
    out += [f"- **{t.label.replace(chr(92), '')}**: {t.notes}" for t in tools]
    return "\n".join(out) + "\n"
