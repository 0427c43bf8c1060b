#!/usr/bin/env bash
# turnq quick start: enqueue work, look at the queue, claim it, complete it.
# Runs in a fresh temporary folder on the default JSON store (./turnq.json there),
# with a fixed clock (TURNQ_NOW) so that every run prints the same ids and tokens.
set -euo pipefail

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export TURNQ_NOW=2026-01-01T00:00:00Z COLUMNS=${COLUMNS:-100}

run() { printf '\n$ %s\n' "$1"; eval "$1"; }

run 'turnq enqueue root --text "What changed in the build?" --source-key host:msg-1 --delivery earliest_safe_boundary'
run 'turnq enqueue root --text "Also check the tests." --delivery earliest_safe_boundary'
run 'turnq wake root --process-id build-7 --sequence 3 --input "build finished: 2 warnings"'
run 'turnq inspect root'
run 'turnq claim root --owner worker-a --json > claim.json'
run 'turnq complete --claim @claim.json'
run 'turnq claim root --owner worker-a --json | turnq complete --claim - --json'
run 'turnq claim root --owner worker-a || echo "exit code $? (nothing to claim)"'
run 'turnq inspect'
