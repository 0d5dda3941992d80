# Sourced by .ci/run: extra tools for later test tiers (Python, browser).
:
