#!/usr/bin/env python3
"""Draw docs/benchmarks.svg from the JSON lines of bench/run.sh (stdlib only).

Each bar is one run's ops_per_sec, drawn as a ratio to the baseline of the
same run that it is judged against (the label says which), so the chart
shows what docs/benchmarks.md claims: Leasehold relative to the physical
limit of this machine, not absolute numbers that mostly describe the disk.

usage: bench/chart.py [IN.jsonl] [OUT.svg]
       bench/chart.py --table IN.jsonl...   (markdown tables for docs/benchmarks.md)
"""
import json
import re
import sys
from html import escape


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def find(rows, **kw):
    for r in rows:
        if all(r.get(k, {"batch": 1, "bare": False}.get(k)) == v for k, v in kw.items()):
            return r
    return None


def rounds(rows):
    """(in-process row, server row) for every server cycle (64 connections,
    no batch, async driver) and the in-process 64-worker cycle just before it."""
    out, last = [], None
    for r in rows:
        if r.get("workload") != "cycle" or r.get("batch", 1) != 1 or r.get("workers") != 64:
            continue
        if r["backend"] == "sqlite":
            last = r
        elif r["backend"] == "http" and r.get("client", "async") == "async" and last:
            out.append((last, r))
            last = None
    return out


def bars(rows):
    """(label, value, baseline label, baseline value) for every comparison."""
    out = []
    raw1 = find(rows, workload="baseline-sqlite", durability="full", batch=1, bare=False)
    rawb = find(rows, workload="baseline-sqlite", durability="full", batch=100, bare=False)
    rawn = find(rows, workload="baseline-sqlite", durability="normal", batch=1, bare=False)
    cyc = find(rows, workload="cycle", backend="sqlite", durability="full", workers=32, batch=1)
    cycn = find(rows, workload="cycle", backend="sqlite", durability="normal", workers=32, batch=1)
    cycb = find(rows, workload="cycle", backend="sqlite", durability="full", batch=100)
    hbb = find(rows, workload="heartbeat", backend="sqlite", durability="full", batch=100)
    http1 = find(rows, workload="heartbeat", backend="http", batch=1)
    httpcb = find(rows, workload="cycle", backend="http", batch=100)
    httphb = find(rows, workload="heartbeat", backend="http", batch=100)
    pgraw = find(rows, workload="baseline-postgres", workers=16)
    pgcyc = find(rows, workload="cycle", backend="postgres", batch=1)
    if cyc and rawb:
        out.append(("SQLite cycle writes/s, full, 32 workers", cyc["writes_per_sec"],
                    "raw UPDATE, 100/tx, full", rawb["ops_per_sec"]))
    if cycb and rawb:
        out.append(("SQLite cycle writes/s, batch calls of 100", cycb["writes_per_sec"],
                    "raw UPDATE, 100/tx, full", rawb["ops_per_sec"]))
    if hbb and rawb:
        out.append(("SQLite heartbeat_many writes/s, 100 per call", hbb["writes_per_sec"],
                    "raw UPDATE, 100/tx, full", rawb["ops_per_sec"]))
    if cyc and raw1:
        out.append(("SQLite cycle writes/s, full, 32 workers", cyc["writes_per_sec"],
                    "raw UPDATE, 1/tx, full", raw1["ops_per_sec"]))
    if cycn and rawn:
        out.append(("SQLite cycle writes/s, normal, 32 workers", cycn["writes_per_sec"],
                    "raw UPDATE, 1/tx, normal", rawn["ops_per_sec"]))
    pairs = rounds(rows)
    if pairs:
        pairs.sort(key=lambda p: p[1]["ops_per_sec"] / p[0]["ops_per_sec"])
        inproc, http = pairs[len(pairs) // 2]
        out.append((f"cycle via HTTP server, 64 conns (median of {len(pairs)} rounds)",
                    http["ops_per_sec"], "in-process cycle, 64 workers, same round",
                    inproc["ops_per_sec"]))
    if httpcb and cycb:
        out.append(("cycle via HTTP, batch routes, 100 per call", httpcb["ops_per_sec"],
                    "in-process cycle, batch calls of 100", cycb["ops_per_sec"]))
    if httphb and http1:
        out.append(("heartbeats/s via HTTP, POST /v1/heartbeats of 100", httphb["ops_per_sec"],
                    "via HTTP, one request per heartbeat", http1["ops_per_sec"]))
    if pgcyc and pgraw:
        out.append(("PostgreSQL cycle, 16 workers", pgcyc["ops_per_sec"],
                    "raw SKIP LOCKED claim+complete, 16", pgraw["ops_per_sec"]))
    # Peers: the latest run of each (peer, workers) with the Leasehold
    # PostgreSQL cycle that bench/peers.sh ran right after it.
    latest, pending = {}, []
    for r in rows:
        if r.get("workload") == "peer-cycle":
            pending.append(r)
        elif r.get("workload") == "cycle" and r.get("backend") == "postgres" and pending:
            for p in pending:
                if p["workers"] == r["workers"]:
                    latest[(p["backend"], p["workers"])] = (p, r)
            pending = [p for p in pending if p["workers"] != r["workers"]]
    for (peer, workers), (p, pc) in sorted(latest.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        out.append((f"PostgreSQL cycle, {workers} workers", pc["ops_per_sec"],
                    f"{peer} {p.get('version', '')}, same run", p["ops_per_sec"]))
    return out


def svg(items):
    """Horizontal bars on a log scale (ratios span 0.1x to 30x)."""
    import math
    w, row, left = 900, 46, 330
    h = 70 + row * max(1, len(items))
    lo = 0.1
    hi = max([v / b for _, v, _, b in items] + [2.0]) * 1.5
    span = math.log10(hi) - math.log10(lo)
    scale = (w - left - 170) / span

    def x(r):
        return left + (math.log10(max(r, lo)) - math.log10(lo)) * scale

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        '<text x="10" y="22" font-size="15" font-weight="bold">'
        "Leasehold / baseline of the same run (log scale; red line = 1.0)</text>",
    ]
    for tick in (0.1, 0.3, 1, 3, 10, 30):
        if tick <= hi:
            parts.append(f'<text x="{x(tick):.1f}" y="{h - 6}" fill="#777" '
                         f'text-anchor="middle">{tick:g}×</text>')
    parts.append(f'<line x1="{x(1):.1f}" y1="34" x2="{x(1):.1f}" y2="{h - 20}" '
                 'stroke="#c00" stroke-dasharray="4 3"/>')
    for i, (label, v, base, b) in enumerate(items):
        y = 40 + i * row
        ratio = v / b
        parts.append(f'<text x="10" y="{y + 14}">{escape(label)}</text>')
        parts.append(f'<text x="10" y="{y + 30}" fill="#555">vs {escape(base)}</text>')
        parts.append(f'<rect x="{left}" y="{y + 4}" width="{x(ratio) - left:.1f}" height="26" '
                     f'fill="{"#2a7" if ratio >= 1 else "#d84"}"/>')
        parts.append(f'<text x="{x(ratio) + 6:.1f}" y="{y + 22}">'
                     f'{ratio:.2f}× ({v:,.0f} vs {b:,.0f}/s)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def command(r):
    """The command line that produced a row (see bench/run.sh, bench/peers.sh)."""
    w = r.get("workload")
    if w == "peer-cycle":
        return f"bench/peers.sh  (node peers.js {r['backend']} … {r['tasks']} {r['workers']})"
    if w == "server-memory":
        return "bench/run.sh  (leasehold serve on the 1,000,000-task database; VmRSS after the read endpoints)"
    parts = ["leasehold"]
    if r["backend"] in ("postgres", "postgres-raw"):
        parts.append("--db $PG_URL")
    parts += ["bench", w]
    if r["backend"] == "http":
        parts.append("--server $URL")
    parts += [f"--workers {r['workers']}", f"--tasks {r['tasks']}"]
    if r["durability"] in ("full", "normal"):
        parts.append(f"--durability {r['durability']}")
    if r.get("batch", 1) != 1:
        parts.append(f"--batch {r['batch']}")
    if r.get("bare"):
        parts.append("--bare")
    if r.get("client") == "blocking" and w in ("cycle", "heartbeat"):
        parts.append("--blocking-client")
    return " ".join(parts)


def cpu_per_op(r):
    """The bench process's CPU per op in µs (the client's share with --server)."""
    if r.get("cpu_seconds") is None or not r.get("ops"):
        return ""
    return f"{r['cpu_seconds'] * 1e6 / r['ops']:,.0f}"


def table(rows):
    """A markdown table of every row, with its command."""
    out = ["| workload | backend | durability | workers | ops/s | writes/s | p50 µs | p99 µs | CPU µs/op | command |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r.get("workload") == "server-cpu":
            out.append(f"| server-cpu | http | | | | | | | | server process CPU {r['cpu_seconds']:.2f} s "
                       f"over `leasehold {re.sub(r'http://[0-9.:]+', '$URL', r['command'])}` (setup included) |")
            continue
        if r.get("workload") == "machine":
            out.append(f"| machine | | | | | | | | | load average {r['loadavg']} ({r['at']} of the run) |")
            continue
        if r.get("workload") == "server-memory":
            out.append(f"| server-memory | http | | | | | | | | RSS {r['rss_kib'] / 1024:.0f} MiB, "
                       f"peak {r['peak_rss_kib'] / 1024:.0f} MiB: `{command(r)}` |")
            continue
        out.append(
            f"| {r['workload']} | {r['backend']} {r.get('version', '')} | {r['durability']} | "
            f"{r['workers']} | {r['ops_per_sec']:,.0f} | {r['writes_per_sec']:,.0f} | "
            f"{r['p50_us']:,} | {r['p99_us']:,} | {cpu_per_op(r)} | `{command(r)}` |")
    return "\n".join(out)


def main():
    if sys.argv[1:2] == ["--table"]:
        for path in sys.argv[2:]:
            print(table(load(path)))
            print()
        return
    src = sys.argv[1] if len(sys.argv) > 1 else "bench/results/latest.jsonl"
    dst = sys.argv[2] if len(sys.argv) > 2 else "docs/benchmarks.svg"
    rows = load(src)
    # The peers' runs: bench/peers.sh's file, then the PostgreSQL engineer's
    # reruns (bench/results/postgres.jsonl), oldest first.
    for name in ("peers.jsonl", "postgres.jsonl"):
        extra = src.replace("latest.jsonl", name)
        if extra == src:
            continue
        try:
            rows += load(extra)
        except OSError:
            pass
    items = bars(rows)
    if not items:
        sys.exit(f"no comparable rows in {src}")
    with open(dst, "w") as f:
        f.write(svg(items))
    print(f"wrote {dst} ({len(items)} bars)", file=sys.stderr)


if __name__ == "__main__":
    main()
