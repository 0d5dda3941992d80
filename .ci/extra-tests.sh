# Sourced by .ci/run after the Rust tests: extra test tiers.
step "python package (pytest)"
bash .ci/python.sh
step "reliability quick extras (failpoint kills, short fuzz runs)"
bash .ci/reliability.sh quick
