# Sourced by .ci/run before the Rust tests: tools the test tiers need.
# Debian's chromium + chromedriver for the console's browser test.
bash .ci/browser.sh
