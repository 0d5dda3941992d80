#!/usr/bin/env bash
# Python tier: build and install the `leasehold` package (./python) into a
# fresh virtualenv, build the `leasehold` binary for the client tests, and run
# pytest. Self-contained: installs maturin and pytest from PyPI. Exits non-zero
# on any failure, and also when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

step() { printf '\n=== python: %s (%ss)\n' "$*" "$SECONDS"; }

# Reuse the Rust build cache: the CI's shared target dir, else ./target.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$CARGO_TARGET_DIR"
CACHE_DIR="$CARGO_TARGET_DIR/python-ci"
mkdir -p "$CACHE_DIR"

step "interpreter"
PY=""
for cand in python3.13 python3.12 python3.11 python3; do
  if command -v "$cand" >/dev/null 2>&1 &&
     "$cand" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    PY="$(command -v "$cand")"
    break
  fi
done
if [ -z "$PY" ]; then
  echo "python: need Python 3.11 or newer (python3.11+ not found on PATH)" >&2
  exit 1
fi
"$PY" --version
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian splits venv/ensurepip out of the interpreter package.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi

step "virtualenv"
VENV="$(mktemp -d "${TMPDIR:-/tmp}/leasehold-py.XXXXXX")/venv"
trap 'rm -rf "$(dirname "$VENV")"' EXIT
"$PY" -m venv "$VENV"
# maturin's build hook runs the `maturin` executable: the venv's bin must be on PATH.
export PATH="$VENV/bin:$PATH"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "maturin>=1.5,<2" "pytest>=7"

step "build and install ./python (maturin, PyO3)"
# The extension's own Cargo workspace builds into a subfolder of the shared
# target dir, so its dependencies are compiled once across runs.
CARGO_TARGET_DIR="$CARGO_TARGET_DIR/python" \
  "$VENV/bin/python" -m pip install --quiet --no-build-isolation ./python
"$VENV/bin/python" -c 'import leasehold, leasehold._native as n; print("leasehold", leasehold.__version__, "from", leasehold.__file__)'

step "build the leasehold binary for the client tests"
cargo build --quiet -p leasehold-cli
export LEASEHOLD_BIN="$CARGO_TARGET_DIR/debug/leasehold"
test -x "$LEASEHOLD_BIN"

step "pytest"
LOG="$CACHE_DIR/pytest.log"
set +e
# Run from the repository root with the venv's pytest script, so `leasehold`
# is imported from the installed wheel, not from the source folder.
LEASEHOLD_REQUIRE_SERVER=1 "$VENV/bin/pytest" python/tests -p no:cacheprovider -q -rs 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "python: pytest failed (exit $status)" >&2
  exit "$status"
fi
passed=$(grep -Eo '[0-9]+ passed' "$LOG" | tail -1 | grep -Eo '[0-9]+' || echo 0)
if [ "${passed:-0}" -eq 0 ]; then
  echo "python: no test passed; refusing to report success" >&2
  exit 1
fi
step "done: $passed passed"
