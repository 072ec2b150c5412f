#!/usr/bin/env python3
"""Writes BENCHMARKS.md from a scripts/bench run (results.jsonl, meta.json, commands.tsv,
notes.tsv in the run's work folder) and the hand-kept analysis of missed targets
(scripts/bench.d/analysis.md: sections `## <row id> ...`).

  report.py --work DIR --analysis FILE --out FILE
"""
import json
import os
import statistics
import sys

MIB = 1024 * 1024

# Each row: a devbox figure beside its docker CLI counterpart from the same run.
#   metric   seconds | context_bytes | rss_kib
#   target   ("ratio", x): devbox median / docker median <= x
#            ("max", x):   devbox median <= x (in the metric's unit: s, KiB)
#            ("flat", a, b, x): |median(b) - median(a)| of devbox <= x KiB (rows' devbox keys)
ROWS = [
    dict(id="1a", item=1, what="Cold build (`--no-cache`): time", dev="b1.devbox",
         dock="b1.root", versus="`docker build`, project root as context",
         metric="seconds", target=("ratio", 0.10), target_text="≥ 10× faster (≤ 0.10)"),
    dict(id="1b", item=1, what="Cold build (`--no-cache`): time", dev="b1.devbox",
         dock="b1.ignore", versus="`docker build`, hand-written `.dockerignore`",
         metric="seconds", target=("ratio", 1.0), target_text="no slower (≤ 1.00)"),
    dict(id="1c", item=1, what="Build context sent", dev="b1.devbox", dock="b1.root",
         versus="`docker build`, project root as context", metric="context_bytes"),
    dict(id="1d", item=1, what="Build context sent", dev="b1.devbox", dock="b1.ignore",
         versus="`docker build`, hand-written `.dockerignore`", metric="context_bytes"),
    dict(id="1e", item=1, what="Cold build: until the engine runs step 1 (context sent and unpacked)",
         dev="b1.devbox", dock="b1.root", versus="`docker build`, project root as context",
         metric="marked_seconds"),
    dict(id="1f", item=1, what="Cold build: until the engine runs step 1 (context sent and unpacked)",
         dev="b1.devbox", dock="b1.ignore", versus="`docker build`, hand-written `.dockerignore`",
         metric="marked_seconds"),
    dict(id="2a", item=2, what="No-op rebuild: time", dev="b2.devbox", dock="b2.root",
         versus="`docker build`, project root as context", metric="seconds",
         target=("ratio", 0.10), target_text="≥ 10× faster (≤ 0.10)"),
    dict(id="2b", item=2, what="No-op rebuild: time", dev="b2.devbox", dock="b2.ignore",
         versus="`docker build`, hand-written `.dockerignore`", metric="seconds",
         target=("ratio", 1.0), target_text="no slower (≤ 1.00)"),
    dict(id="3a", item=3, what="Max RSS, ~100 MB project (data/ not sent)", dev="m3.p100.devbox",
         dock="m3.p100.ignore", versus="`docker build` (`.dockerignore`), same bytes sent",
         metric="rss_kib", target=("max", 30 * 1024), target_text="< 30 MiB"),
    dict(id="3b", item=3, what="Max RSS, ~2 GB project (data/ not sent)", dev="m3.p2g.devbox",
         dock="m3.p2g.ignore", versus="`docker build` (`.dockerignore`), same bytes sent",
         metric="rss_kib", target=("max", 30 * 1024), target_text="< 30 MiB"),
    dict(id="3c", item=3, what="Max RSS, ~100 MB sent (in images/)", dev="m3.s100.devbox",
         dock="m3.s100.ignore", versus="`docker build` (`.dockerignore`), same bytes sent",
         metric="rss_kib", target=("max", 30 * 1024), target_text="< 30 MiB"),
    dict(id="3d", item=3, what="Max RSS, ~2 GB sent (in images/)", dev="m3.s2g.devbox",
         dock="m3.s2g.ignore", versus="`docker build` (`.dockerignore`), same bytes sent",
         metric="rss_kib", target=("max", 30 * 1024), target_text="< 30 MiB"),
    dict(id="3e", item=3, what="Max RSS growth, 100 MB → 2 GB project (3b − 3a)",
         flat=("3a", "3b"), metric="rss_kib", target=("flat", 3 * 1024),
         target_text="flat (within 3 MiB)"),
    dict(id="3f", item=3, what="Max RSS growth, 100 MB → 2 GB sent (3d − 3c)",
         flat=("3c", "3d"), metric="rss_kib", target=("flat", 3 * 1024),
         target_text="flat (within 3 MiB)"),
    dict(id="4a", item=4, what="Start to running", dev="busybox.start.devbox", dock="busybox.start.docker",
         versus="`docker run -d`, same mounts, ports, environment", metric="seconds",
         target=("ratio", 1.05), target_text="within 5% (≤ 1.05)"),
    dict(id="4b", item=4, what="Stop and remove", dev="busybox.stop.devbox", dock="busybox.stop.docker",
         versus="`docker stop` + `docker rm`", metric="seconds",
         target=("ratio", 1.05), target_text="within 5% (≤ 1.05)"),
    dict(id="5", item=5, what="Command round trip", dev="connect.devbox", dock="connect.docker",
         versus="`docker exec <c> true`", metric="seconds",
         target=("ratio", 1.05), target_text="within 5% (≤ 1.05)"),
    dict(id="6", item=6, what="Own start-up (`--version`)", dev="version.devbox",
         dock="version.docker", versus="`docker --version`", metric="seconds",
         target=("max", 0.005), target_text="< 5 ms"),
    dict(id="7a", item=7, what="Ray head: `cluster-join`", dev="ray.head.devbox",
         dock="ray.head.docker", versus="`docker exec` + bare `ray start --head …`",
         metric="seconds"),
    dict(id="7b", item=7, what="Ray worker: `cluster-join`", dev="ray.worker.devbox",
         dock="ray.worker.docker", versus="`docker exec` + bare `ray start --address …`",
         metric="seconds"),
    dict(id="7c", item=7, what="Ray cluster bring-up (head + worker)",
         dev=("ray.head.devbox", "ray.worker.devbox"),
         dock=("ray.head.docker", "ray.worker.docker"),
         versus="the two bare `ray start` commands", metric="seconds"),
    dict(id="7d", item=7, what="Ray leave (worker, then head): `cluster-leave`",
         dev="ray.leave.devbox", dock="ray.leave.docker", versus="`docker exec` + `ray stop`",
         metric="seconds"),
    dict(id="7e", item=7, what="Start to running, devbox's real image", dev="real.start.devbox",
         dock="real.start.docker", versus="`docker run -d`, same mounts, ports, environment",
         metric="seconds", target=("ratio", 1.05), target_text="within 5% (≤ 1.05), as 4a"),
    dict(id="7f", item=7, what="Stop and remove, devbox's real image", dev="real.stop.devbox",
         dock="real.stop.docker", versus="`docker stop` + `docker rm`", metric="seconds",
         target=("ratio", 1.05), target_text="within 5% (≤ 1.05), as 4b"),
]

ITEM_TITLES = {
    1: "Build context: a project with 20,000 small files in src/ and 2 GiB in data/",
    2: "No-op rebuild of the same project",
    3: "devbox's max RSS during `devbox build`",
    4: "Start to running, and stop",
    5: "A command round trip",
    6: "devbox's own start-up",
    7: "Ray cluster bring-up on two containers",
}


def load(work):
    results = [json.loads(l) for l in open(os.path.join(work, "results.jsonl")) if l.strip()]
    meta = json.load(open(os.path.join(work, "meta.json")))
    commands = {}
    for line in open(os.path.join(work, "commands.tsv")):
        key, _, text = line.rstrip("\n").partition("\t")
        commands.setdefault(key, text)
    notes = []
    for line in open(os.path.join(work, "notes.tsv")):
        item, _, text = line.rstrip("\n").partition("\t")
        notes.append((int(item), text))
    return results, meta, commands, notes


def samples(results, key, metric):
    """The metric of every successful run of key (sums of several keys run by run)."""
    keys = key if isinstance(key, tuple) else (key,)
    per_key = []
    for k in keys:
        runs = {r["run"]: r.get(metric) for r in results
                if r.get("key") == k and r.get("exit") == 0 and r.get(metric) is not None}
        per_key.append(runs)
    common = set(per_key[0]).intersection(*per_key[1:]) if per_key else set()
    return {run: sum(runs[run] for runs in per_key) for run in sorted(common)}


def stats(values):
    if not values:
        return None
    return min(values), statistics.median(values), max(values)


def fmt(value, metric, signed=False):
    if value is None:
        return "–"
    sign = "+" if signed and value > 0 else ""
    if metric in ("seconds", "marked_seconds"):
        if abs(value) < 0.01:
            return f"{sign}{value * 1e3:.2f} ms"
        if abs(value) < 1:
            return f"{sign}{value * 1e3:.0f} ms"
        return f"{sign}{value:.2f} s"
    if metric == "context_bytes":
        for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(value) >= size:
                return f"{sign}{value / size:.3g} {unit}"
        return f"{sign}{value:.0f} B"
    if metric == "rss_kib":
        return f"{sign}{value / 1024:.1f} MiB"
    return f"{sign}{value}"


def fmt_ratio(ratio):
    if ratio < 0.1:
        return f"{ratio:.2g} (1/{1 / ratio:.0f})"
    return f"{ratio:.2f}"


def fmt_stats(s, metric):
    if s is None:
        return "not measured"
    lo, mid, hi = s
    if metric == "context_bytes" or lo == hi:
        return fmt(mid, metric) if lo == hi else f"{fmt(lo, metric)} / **{fmt(mid, metric)}** / {fmt(hi, metric)}"
    return f"{fmt(lo, metric)} / **{fmt(mid, metric)}** / {fmt(hi, metric)}"


def evaluate(rows, results):
    """Fills in each row's figures, ratio and whether its target is met."""
    by_id = {}
    for row in rows:
        row = dict(row)
        if "flat" in row:
            a, b = (by_id[i] for i in row["flat"])
            row["dev_stats"] = row["dock_stats"] = None
            if a["dev_stats"] and b["dev_stats"]:
                row["delta_dev"] = b["dev_stats"][1] - a["dev_stats"][1]
            if a["dock_stats"] and b["dock_stats"]:
                row["delta_dock"] = b["dock_stats"][1] - a["dock_stats"][1]
        else:
            dev = samples(results, row["dev"], row["metric"])
            dock = samples(results, row["dock"], row["metric"])
            row["dev_stats"] = stats(list(dev.values()))
            row["dock_stats"] = stats(list(dock.values()))
            if row["dev_stats"] and row["dock_stats"] and row["dock_stats"][1]:
                row["ratio"] = row["dev_stats"][1] / row["dock_stats"][1]
            # Repetition by repetition: the two commands of one repetition ran next to each
            # other, so drift in the machine's load cancels out.
            paired = [dev[run] / dock[run] for run in dev if run in dock and dock[run]]
            if len(paired) > 1 and row["metric"] != "context_bytes":
                row["paired"] = stats(paired)
        target = row.get("target")
        if target:
            kind = target[0]
            if kind == "ratio" and "ratio" in row:
                row["met"] = row["ratio"] <= target[1]
            elif kind == "max" and row["dev_stats"]:
                row["met"] = row["dev_stats"][1] <= target[1]
            elif kind == "flat" and "delta_dev" in row:
                row["met"] = abs(row["delta_dev"]) <= target[1]
        by_id[row["id"]] = row
    return list(by_id.values())


TITLES = {}


def analysis_sections(path):
    """{row id: text} from `## <ids> — <title>` sections; titles go to TITLES."""
    sections, current = {}, None
    if not os.path.exists(path):
        return sections
    for line in open(path):
        if line.startswith("## "):
            ids, _, title = line[3:].partition("—")
            current = []
            for i in ids.replace(",", " ").split():
                sections[i] = current
                TITLES[i] = title.strip()
        elif current is not None:
            current.append(line)
    return {k: "".join(v).strip() for k, v in sections.items()}


def capitalised(title):
    return title if title.startswith("devbox") else title[:1].upper() + title[1:]


def grouped(rows, analysis):
    """Rows with the same analysis together, in the order they first appear."""
    groups = []
    for row in rows:
        text = analysis.get(row["id"])
        for group in groups:
            if text is not None and analysis.get(group[0]["id"]) == text:
                group.append(row)
                break
        else:
            groups.append([row])
    return groups


def shortfall(row):
    metric = row["metric"]
    kind = row["target"][0]
    if kind == "ratio":
        dev, dock = row["dev_stats"][1], row["dock_stats"][1]
        goal = row["target"][1] * dock
        return (f"devbox {fmt(dev, metric)} against {fmt(dock, metric)}: ratio {row['ratio']:.2f}, "
                f"target ≤ {row['target'][1]:.2f}, i.e. {fmt(goal, metric)} or less; "
                f"{fmt(dev - goal, metric)} to find")
    if kind == "max":
        dev = row["dev_stats"][1]
        return (f"devbox {fmt(dev, metric)}, target {row['target_text']}; "
                f"{fmt(dev - row['target'][1], metric)} over")
    return (f"devbox grew by {fmt(row['delta_dev'], metric)}, target {row['target_text']}")


def write(work, analysis_path, out):
    results, meta, commands, notes = load(work)
    items_run = {int(i) for i in meta["only"].split(",")}
    rows = evaluate([r for r in ROWS if r["item"] in items_run], results)
    values = {r["key"]: r["value"] for r in results if "value" in r}
    analysis = analysis_sections(analysis_path)
    m, e, d = meta["machine"], meta["engine"], meta["devbox"]
    reps = meta["repetitions"]
    lines = []
    w = lines.append
    w("# Benchmarks: devbox beside the docker CLI")
    w("")
    w("Written by `scripts/bench`" + (" --quick" if meta["quick"] else "") +
      f" on {meta['date']} (run `{meta['run_id']}`, {values.get('duration.total', 0):.0f} s in all). "
      "Every figure was measured in this one run, on the same engine, with the devbox and the "
      "docker CLI commands interleaved (the order rotated each repetition). "
      "**Ratio** = devbox's median ÷ the docker CLI's median from this run: below 1, devbox "
      "is faster (or smaller); targets are judged on it. **Paired ratios**: devbox ÷ docker CLI "
      "within each repetition, where the two ran one after the other: their median (and "
      "range) is less sensitive to the shared machine's load drifting during the run. "
      "Cells are min / **median** / max over the repetitions. "
      "To measure again: `scripts/bench` (about 12 minutes on this machine) or "
      "`scripts/bench --quick`; `scripts/bench --help` lists the options.")
    w("")
    w("## Machine and versions")
    w("")
    load_end = ""
    if os.path.exists(os.path.join(work, "load-at-end")):
        load_end = ", at the end " + open(os.path.join(work, "load-at-end")).read().strip()
    w(f"- Machine: {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
      f"{m['os']}; load average at the start {' '.join(m['load_at_start'])}{load_end} "
      "(the machine and the engine are shared with other work)")
    w(f"- Docker Engine {e['version']} (API {e['api']}, {e['storage']}, swarm {e['swarm']}, "
      f"{e['running_containers_at_start']} containers running at the start)")
    w(f"- docker CLI {meta['docker_cli']}, classic builder (`DOCKER_BUILDKIT=0`), as the old scripts and devbox use it")
    w(f"- {d['version']}, commit {d['commit']}, release build, {d['size_bytes'] / 1e6:.1f} MB static binary")
    w(f"- Repetitions: {reps['heavy']} for builds that send 2 GiB, {reps['builds']} for other "
      f"builds, {reps['fast']} for start/stop, {reps['trips']} for connect/exec, "
      f"{reps['version']} for `--version`, {reps['ray']} for the Ray cluster")
    if "size.p2g" in values:
        w(f"- Projects: item 1/2 project {values['size.p2g'] / 1e9:.2f} GB "
          f"({values.get('files.p2g.src', 0):.0f} files in src/, 2 GiB of random data in data/); "
          f"item 3 projects {values['size.p100'] / 1e6:.0f} MB and {values['size.p2g'] / 1e9:.2f} GB "
          f"(data/ not sent), {values['size.s100'] / 1e6:.0f} MB and {values['size.s2g'] / 1e9:.2f} GB "
          "(the bulk in images/payload/, which every build sends)")
    w("")
    w("## Results")
    w("")
    w("| # | Figure | devbox | docker CLI | Ratio | Paired ratios | Target | Met |")
    w("|---|---|---|---|---|---|---|---|")
    for row in rows:
        metric = row["metric"]
        paired = "–"
        if "flat" in row:
            dev = fmt(row.get("delta_dev"), metric, signed=True)
            dock = fmt(row.get("delta_dock"), metric, signed=True)
            ratio = "–"
        else:
            dev = fmt_stats(row["dev_stats"], metric)
            dock = fmt_stats(row["dock_stats"], metric) + f"<br>{row['versus']}"
            ratio = fmt_ratio(row["ratio"]) if "ratio" in row else "–"
            if "paired" in row:
                lo, mid, hi = row["paired"]
                r = lambda x: f"{x:.2g}" if x < 0.1 else f"{x:.2f}"
                paired = f"{r(mid)} ({r(lo)}–{r(hi)})"
        met = {True: "yes", False: "**no**", None: "–"}[row.get("met")] if row.get("target") else "–"
        if row.get("target") and "met" not in row:
            met = "not measured"
        w(f"| {row['id']} | {row['what']} | {dev} | {dock} | {ratio} | {paired} | {row.get('target_text', '–')} | {met} |")
    w("")
    if values.get("image.ray.build") is not None:
        w(f"Item 7 builds devbox's real image on devbox-test/debian:bookworm first "
          f"({values['image.ray.build']:.0f} s, not compared).")
        w("")

    item_notes = {}
    for item, text in notes:
        item_notes.setdefault(item, []).append(text)
    if item_notes:
        w("## Notes from the run")
        w("")
        for item in sorted(item_notes):
            for text in item_notes[item]:
                w(f"- Item {item}: {text}" if item else f"- {text}")
        w("")

    w("## Missed targets: what is left, and why")
    w("")
    missed = [r for r in rows if r.get("met") is False]
    unmeasured = [r for r in rows if r.get("target") and "met" not in r]
    if not missed and not unmeasured:
        w("None: every target was met in this run.")
        w("")
    no_analysis = "No analysis recorded for this row yet (scripts/bench.d/analysis.md)."
    for group in grouped(missed, analysis):
        title = TITLES.get(group[0]["id"]) or group[0]["what"]
        w("### " + ", ".join(r["id"] for r in group) + ". " + capitalised(title))
        w("")
        for row in group:
            against = f", against {row['versus']}" if row.get("versus") else ""
            w(f"- {row['id']} ({row['what']}{against}) missed in this run: {shortfall(row)}.")
        w("")
        w(analysis.get(group[0]["id"], no_analysis))
        w("")
    for row in unmeasured:
        w(f"### {row['id']}. {row['what']}: not measured")
        w("")
        w("See the notes from the run above.")
        w("")
    shown = {r["id"] for r in missed}
    others = [r for r in rows if r["id"] in analysis and r["id"] not in shown
              and analysis[r["id"]] not in {analysis.get(m["id"]) for m in missed}]
    if others:
        w("## Other observations")
        w("")
        for group in grouped(others, analysis):
            title = TITLES.get(group[0]["id"]) or group[0]["what"]
            w("### " + ", ".join(r["id"] for r in group) + ". " + capitalised(title))
            w("")
            w(analysis[group[0]["id"]])
            w("")

    w("## The exact commands")
    w("")
    w("`$WORK` is the run's throwaway folder, `$RUN` its unique name "
      f"(`{meta['run_id']}`); `devbox` is the binary the run built, copied to `$WORK/bin`. "
      "The process environment has every key of env.example unset and `DOCKER_BUILDKIT=0`. "
      "Each project's `.env` sets `IMAGE_NAME=$RUN-<project>`, `IMAGE_TAG=latest`, "
      "`BASE_IMAGE=devbox-test/busybox:latest`. The benchmark Dockerfile is "
      "scripts/bench.d/Dockerfile (the project's own images/Dockerfile); the hand-written "
      "`.dockerignore` is `*`, `!images/`, `!certs/`, `!licenses/`, `!agx/`, "
      "`!requirements.txt`, `!devbox`.")
    w("")
    shown = []
    for row in rows:
        for key in (row.get("dev"), row.get("dock")):
            for k in (key if isinstance(key, tuple) else (key,)):
                if k and k not in shown and k in commands:
                    shown.append(k)
    current_item = None
    for key in shown:
        item = next(r["item"] for r in rows
                    if key in ((r.get("dev") if isinstance(r.get("dev"), tuple) else (r.get("dev"),)) +
                               (r.get("dock") if isinstance(r.get("dock"), tuple) else (r.get("dock"),))))
        if item != current_item:
            w("")
            w(f"{item}. {ITEM_TITLES[item]}")
            w("")
            current_item = item
        w(f"- `{key}`: `{commands[key]}`")
    w("")
    w("Item 3 measures max RSS with GNU time (`/usr/bin/time -f %M`) around each build; "
      "item 1 and 2 commands run the same way. Times are wall-clock, from just before the "
      "process is spawned to just after it is reaped.")
    w("")
    with open(out, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def main():
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    write(args["--work"], args["--analysis"], args["--out"])


if __name__ == "__main__":
    main()
