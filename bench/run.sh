#!/usr/bin/env bash
# Every figure of docs/benchmarks.md, in one run on one machine: Leasehold's
# workloads next to the raw baselines they are judged against. One JSON
# object per line goes to OUT (default bench/results/latest.jsonl); then
# bench/chart.py draws docs/benchmarks.svg from it.
#
# Needs a release build (cargo build --release -p leasehold-cli) and, for
# the PostgreSQL rows, PostgreSQL server binaries (a throwaway cluster is
# started and removed). Run by hand; takes a few minutes on 2 cores.
#
# usage: bench/run.sh [OUT.jsonl]
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
lh="${LEASEHOLD_BIN:-$root/target/release/leasehold}"
out="${1:-$root/bench/results/latest.jsonl}"
[ -x "$lh" ] || { echo "no $lh; run: cargo build --release -p leasehold-cli" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
: >"$out"
work="$(mktemp -d -t leasehold-bench-XXXXXX)"
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  exec 3>&- 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bench() { echo "+ leasehold $*" >&2; "$lh" --json "$@" | tee -a "$out"; }
# Other work on the machine skews every figure: record the load average.
loadavg() { echo "{\"workload\":\"machine\",\"at\":\"$1\",\"loadavg\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" | tee -a "$out"; }
loadavg start

# SQLite: the physical limit, then Leasehold (32 workers in one process).
bench bench baseline-sqlite --durability full --tasks 20000
bench bench baseline-sqlite --durability normal --tasks 100000
bench bench baseline-sqlite --durability full --batch 100 --tasks 200000
bench bench baseline-sqlite --durability full --bare --tasks 20000
bench bench baseline-sqlite --durability full --bare --batch 100 --tasks 200000
bench bench cycle --durability full --workers 32 --tasks 20000
bench bench cycle --durability normal --workers 32 --tasks 20000
bench bench cycle --durability full --workers 1 --tasks 2000
# More workers than 32 do not help once the CPU, not the fsync, is the limit.
bench bench cycle --durability full --workers 128 --tasks 20000
bench bench create --durability full --workers 32 --tasks 20000
bench bench heartbeat --durability full --workers 32 --tasks 50000
bench bench reclaim --durability full --workers 32 --tasks 20000
# What a fleet gets from the batch calls: claim 100, heartbeat_many and
# complete_many over all 100 (same writes per task; compare with the raw
# UPDATE at 100 per transaction above).
bench bench cycle --durability full --workers 32 --tasks 50000 --batch 100
bench bench heartbeat --durability full --workers 32 --tasks 200000 --batch 100
# 1,000,000 tasks, kept on disk for the server memory check below.
bench --db "$work/million.db" bench stale-scan --durability normal --workers 32 --tasks 1000000 --calls 2000
# The same scan from one thread: per-call latency without 32 threads sharing 2 cores.
bench bench stale-scan --durability normal --workers 1 --tasks 1000000 --calls 2000

# Through the server (SQLite, 64 connections), and the server's memory with
# 1,000,000 tasks in its database.
port=$((20000 + RANDOM % 20000))
"$lh" --db "$work/server.db" serve --listen "127.0.0.1:$port" --reaper-interval off >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
# The server's CPU seconds over one whole command (setup included), for CPU
# per request figures that the neighbours' load does not skew as much.
server_cpu() { awk '{printf "%.2f", ($14 + $15) / 100}' "/proc/$server_pid/stat"; }
sbench() {
  local before; before="$(server_cpu)"
  bench "$@"
  echo "{\"workload\":\"server-cpu\",\"command\":\"$*\",\"cpu_seconds\":$(awk "BEGIN {print $(server_cpu) - $before}")}" | tee -a "$out"
}
# What creating the tasks costs the server (every server cycle run's setup).
sbench bench create --server "http://127.0.0.1:$port" --workers 64 --tasks 20000
# In-process and through the server back to back, three rounds, the same
# workload (64 workers / 64 connections); the ratio is taken per round.
for _ in 1 2 3; do
  bench bench cycle --durability full --workers 64 --tasks 20000
  sbench bench cycle --server "http://127.0.0.1:$port" --workers 64 --tasks 20000
done
# The older driver (64 threads on one blocking HttpStore), for comparison.
bench bench cycle --server "http://127.0.0.1:$port" --workers 64 --tasks 20000 --blocking-client
# Single heartbeats vs the batch routes through the server.
sbench bench heartbeat --server "http://127.0.0.1:$port" --workers 32 --tasks 50000
sbench bench cycle --server "http://127.0.0.1:$port" --workers 32 --tasks 50000 --batch 100
sbench bench heartbeat --server "http://127.0.0.1:$port" --workers 32 --tasks 200000 --batch 100
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
"$lh" --db "$work/million.db" serve --listen "127.0.0.1:$port" --reaper-interval off >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
for path in /v1/counts "/v1/tasks?limit=1000" "/v1/tasks?state=running&limit=1000" /v1/stale /metrics; do
  for _ in 1 2 3 4 5; do curl -fs "http://127.0.0.1:$port$path" >/dev/null || true; done
done
rss_kib="$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")"
hwm_kib="$(awk '/^VmHWM/ {print $2}' "/proc/$server_pid/status")"
echo "{\"workload\":\"server-memory\",\"backend\":\"http\",\"tasks\":1000000,\"rss_kib\":$rss_kib,\"peak_rss_kib\":$hwm_kib}" | tee -a "$out"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
server_pid=""

# PostgreSQL on a throwaway cluster (fsync=off: the same for every row here).
mkfifo "$work/pg.in"
"$lh" bench postgres-cluster <"$work/pg.in" >"$work/pg.url" &
exec 3>"$work/pg.in"
for _ in $(seq 1 600); do [ -s "$work/pg.url" ] && break; sleep 0.1; done
url="$(head -n1 "$work/pg.url")"
if [ -n "$url" ]; then
  bench --db "$url" bench baseline-postgres --workers 1 --tasks 5000
  bench --db "$url" bench baseline-postgres --workers 16 --tasks 20000
  bench --db "$url" bench cycle --workers 16 --tasks 20000
else
  echo "no PostgreSQL: skipping the PostgreSQL rows" >&2
fi
loadavg end
echo "results in $out" >&2
