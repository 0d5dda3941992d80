#!/usr/bin/env bash
# Installs what the console's browser test needs: Debian's chromium and its
# chromedriver (no browser download of its own). Called by .ci/run; safe to
# run again. The test itself runs in the normal `cargo nextest` pass
# (crates/leasehold-console/tests/browser.rs) and fails under CI=true when
# these are missing, instead of skipping.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "browser: $(chromium --version 2>/dev/null | head -n1); $(chromedriver --version | head -n1)"
