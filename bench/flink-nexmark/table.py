"""The side-by-side Nexmark table (bench/flink-nexmark/run.sh): reads the JSON
lines of `weir bench nexmark --json` and of NexmarkSql.java, prints the
Markdown table and writes it into the document between the markers
`<!-- nexmark:begin -->` and `<!-- nexmark:end -->`."""

import argparse
import datetime
import json
import re

# Issue 9's targets: weir's events per CPU-second at least this many times
# Flink's.
TARGETS = {"q0": 2, "q1": 2, "q2": 2, "q5": 2, "q3": 1, "q7": 1, "q8": 1, "q11": 1}
RSS_TARGET = 0.5


def load(path):
    with open(path) as f:
        return {r["query"]: r for r in (json.loads(l) for l in f if l.strip())}


def rate(n):
    if n >= 1e6:
        return f"{n / 1e6:.2f} M"
    return f"{n / 1e3:.0f} k"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weir")
    p.add_argument("flink")
    p.add_argument("--events", type=int, required=True)
    p.add_argument("--parallelism", type=int, required=True)
    p.add_argument("--checkpoint-ms", type=int, required=True)
    p.add_argument("--doc")
    p.add_argument("--latency", help="weir's paced runs (weir bench nexmark --rate --json)")
    p.add_argument("--latency-rate", type=int, default=0)
    p.add_argument("--latency-events", type=int, default=0)
    a = p.parse_args()
    weir, flink = load(a.weir), load(a.flink)
    latency = load(a.latency) if a.latency else {}
    ckpt = f"{a.checkpoint_ms / 1000:g} s checkpoints" if a.checkpoint_ms else "no checkpoints"
    lines = [
        f"{a.events:,} events, parallelism {a.parallelism}, {ckpt}; "
        f"{datetime.date.today().isoformat()}. Command: `EVENTS={a.events} PARALLELISM={a.parallelism} "
        f"CHECKPOINT_MS={a.checkpoint_ms} LATENCY_RATE={a.latency_rate} LATENCY_EVENTS={a.latency_events} "
        f"bash bench/flink-nexmark/run.sh`.",
        "",
        "| query | weir events/CPU-s | Flink events/CPU-s | ratio | target | weir peak RSS | Flink peak RSS | RSS ratio (≤ 0.5) | weir events/s | Flink events/s | results weir / Flink | weir checkpoints | weir latency p50 / p99 |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    if latency:
        lines.insert(1, f"Latency: a second run of weir alone, {a.latency_events:,} events paced at "
                        f"{a.latency_rate:,} events/s, stamped with the wall clock; the time from a result's "
                        f"timestamp to its write (windowed results are stamped with the window's end, so "
                        f"include the 4 s watermark bound).")
        lines.insert(1, "")
    for q in weir:
        w, f = weir[q], flink.get(q, {"failed": True})
        w_cpu = w["events"] / w["cpu_seconds"]
        target = TARGETS.get(q)
        target_text = f"≥ {target}×" if target is not None else "none"
        # Rows of a non-windowed aggregate: weir emits each category's new
        # average as an auction closes; Flink's changelog also holds the
        # retractions and the updates of every higher bid.
        results = f"{w['results']} / {f.get('results', '–')}" + (" (Flink: changelog)" if q == "q4" else "")
        l = latency.get(q, {})
        lat = (f"{l['p50_latency_ms']:,} / {l['p99_latency_ms']:,} ms"
               if "p99_latency_ms" in l else "–")
        if f.get("failed"):
            lines.append(f"| {q} | {rate(w_cpu)} | failed | | {target_text} | {w['peak_rss_mib']:.0f} MiB | | | "
                         f"{rate(w['events'] / w['seconds'])} | | {results} | {w['checkpoints']} | {lat} |")
            continue
        f_cpu = a.events / f["cpu_seconds"]
        ratio = w_cpu / f_cpu
        met = "" if target is None else (": met" if ratio >= target else ": **not met**")
        rss = w["peak_rss_mib"] / f["peak_rss_mib"]
        lines.append(
            f"| {q} | {rate(w_cpu)} | {rate(f_cpu)} | {ratio:.2f}× | {target_text}{met} | "
            f"{w['peak_rss_mib']:.0f} MiB | {f['peak_rss_mib']:.0f} MiB | {rss:.2f}"
            f"{'' if rss <= RSS_TARGET else ' (**not met**)'} | "
            f"{rate(w['events'] / w['seconds'])} | {rate(a.events / f['seconds'])} | "
            f"{results} | {w['checkpoints']} | {lat} |"
        )
    table = "\n".join(lines)
    print(table)
    if a.doc:
        with open(a.doc) as fh:
            doc = fh.read()
        block = f"<!-- nexmark:begin -->\n{table}\n<!-- nexmark:end -->"
        if "<!-- nexmark:begin -->" in doc:
            doc = re.sub(r"<!-- nexmark:begin -->.*?<!-- nexmark:end -->", lambda _: block, doc, flags=re.S)
        else:
            doc += "\n## Nexmark, side by side with Flink\n\n" + block + "\n"
        with open(a.doc, "w") as fh:
            fh.write(doc)


if __name__ == "__main__":
    main()
