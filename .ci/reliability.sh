#!/usr/bin/env bash
# The reliability battery (docs/reliability.md) beyond `cargo nextest run --workspace`.
#
#   .ci/reliability.sh          quick extras for CI (minutes): kill -9 at the
#                               server's and the backends' failpoints, and
#                               faults injected inside the backends (both need
#                               the `failpoints` feature, so a separate build),
#                               and a short libFuzzer run per target when
#                               cargo-fuzz works.
#   .ci/reliability.sh soak     the long tier: every battery test at the issue's
#                               full sizes (LEASEHOLD_SOAK=1), then longer fuzz runs.
#
# Knobs: LEASEHOLD_FUZZ_SECONDS (per target; 15 quick, 600 soak),
# LEASEHOLD_SEED (replay a failing run), LEASEHOLD_SKIP_FUZZ=1.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-quick}"
if ! declare -F step >/dev/null; then
  step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }
fi

fuzz_targets=(timestamp duration id json_request machine)

run_fuzz() {
  local seconds="$1"
  if [ "${LEASEHOLD_SKIP_FUZZ:-0}" = 1 ]; then
    echo "fuzz: skipped (LEASEHOLD_SKIP_FUZZ=1)"
    return 0
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    if [ "${CI:-}" = true ]; then
      cargo install cargo-fuzz --locked
    else
      echo "fuzz: cargo-fuzz is not installed (cargo install cargo-fuzz); the stable fallback loop ran in nextest"
      return 0
    fi
  fi
  # libFuzzer needs nightly flags (-Zsanitizer, coverage passes); the stable
  # toolchain accepts them with RUSTC_BOOTSTRAP=1. The fuzz crate has its own
  # workspace and target directory (sanitizer builds share nothing).
  export RUSTC_BOOTSTRAP=1
  export CARGO_TARGET_DIR="${LEASEHOLD_FUZZ_TARGET_DIR:-$HOME/.cache/leasehold-fuzz/target}"
  mkdir -p "$CARGO_TARGET_DIR"
  (
    cd fuzz
    cargo fuzz build -O
    for t in "${fuzz_targets[@]}"; do
      step "fuzz $t for ${seconds}s"
      mkdir -p "corpus/$t"
      cargo fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 \
        | grep -E '^(#[0-9]+ *DONE|Done|==[0-9]+==|SUMMARY|thread .* panicked|.*Test unit written)' || true
      if ls "artifacts/$t"/crash-* >/dev/null 2>&1; then
        echo "fuzz $t found a crash: $(ls "artifacts/$t"/crash-*)"
        exit 1
      fi
    done
  )
}

case "$mode" in
  quick)
    step "reliability: kill -9 at failpoints, backend faults (feature failpoints)"
    cargo nextest run -p leasehold-reliability --features failpoints \
      --test kill --test backend_faults ${CI:+--profile ci}
    step "reliability: short fuzz runs"
    run_fuzz "${LEASEHOLD_FUZZ_SECONDS:-15}"
    ;;
  soak)
    step "reliability: long tier (LEASEHOLD_SOAK=1), one test at a time"
    # cargo test, not nextest: the long tests run for minutes (nextest's
    # slow-test timeout would kill them), and one at a time so that timing
    # checks are not starved by each other.
    LEASEHOLD_SOAK=1 cargo test -p leasehold-reliability --features failpoints --no-fail-fast \
      -- --test-threads 1 --nocapture 2>&1 | tee "${LEASEHOLD_SOAK_LOG:-/dev/null}" \
      | grep -E '^(race on|paused worker on|kill -9 on|rescue on|heartbeat soak on|store faults on|sqlite busy|sqlite backend faults|postgres|committed but unacknowledged|fuzz fallback|test result|test .* FAILED)|backend faults:'
    step "reliability: long fuzz runs"
    run_fuzz "${LEASEHOLD_FUZZ_SECONDS:-600}"
    ;;
  *)
    echo "usage: .ci/reliability.sh [quick|soak]" >&2
    exit 2
    ;;
esac
