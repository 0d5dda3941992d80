#!/usr/bin/env bash
# Peer comparison, run by hand (not in CI): the same 20,000-task no-op
# workload with 8 workers on graphile-worker and pg-boss (from the npm
# registry, versions pinned in bench/peers/package.json), next to Leasehold's
# cycle on the same throwaway PostgreSQL and on SQLite, and the raw SKIP
# LOCKED baseline. Prints one JSON object per line; with an argument, also
# appends them to that file.
#
# Needs: node + npm, PostgreSQL server binaries (as for the PostgreSQL
# backend's tests), and a release build: cargo build --release -p leasehold-cli
#
# usage: bench/peers.sh [OUT.jsonl]    (env: TASKS=20000 WORKERS=8)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
leasehold="${LEASEHOLD_BIN:-$root/target/release/leasehold}"
tasks="${TASKS:-20000}"
workers="${WORKERS:-8}"
out="${1:-/dev/null}"

[ -x "$leasehold" ] || { echo "no $leasehold; run: cargo build --release -p leasehold-cli" >&2; exit 1; }

work="$(mktemp -d -t leasehold-peers-XXXXXX)"
cleanup() {
  # Closing the helper's stdin stops and removes the throwaway cluster.
  exec 3>&- 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "installing peers from the npm registry into $work ..." >&2
cp "$root/bench/peers/package.json" "$root/bench/peers/peers.js" "$work/"
(cd "$work" && npm install --no-audit --no-fund --loglevel=error >&2)

# A throwaway PostgreSQL from the PostgreSQL backend's test support; it lives
# until we close fd 3 (its stdin).
mkfifo "$work/pg.in"
"$leasehold" bench postgres-cluster <"$work/pg.in" >"$work/pg.url" &
exec 3>"$work/pg.in"
for _ in $(seq 1 600); do
  [ -s "$work/pg.url" ] && break
  sleep 0.1
done
url="$(head -n1 "$work/pg.url")"
[ -n "$url" ] || { echo "the throwaway PostgreSQL did not start" >&2; exit 1; }
echo "throwaway PostgreSQL at $url" >&2

emit() { tee -a "$out"; }

# Each peer gets a database of its own on the same cluster.
for peer in graphile-worker pg-boss; do
  db="peer_${peer//-/_}"
  psql -q "$url" -c "CREATE DATABASE $db" >&2
  node "$work/peers.js" "$peer" "${url%/*}/$db" "$tasks" "$workers" | emit
done
"$leasehold" --json --db "$url" bench cycle --workers "$workers" --tasks "$tasks" | emit
"$leasehold" --json --db "$url" bench baseline-postgres --workers "$workers" --tasks "$tasks" | emit
"$leasehold" --json bench cycle --workers "$workers" --tasks "$tasks" --durability full | emit
