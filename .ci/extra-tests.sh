# Sourced by .ci/run after the Rust tests: extra test tiers (Python, browser).
:
