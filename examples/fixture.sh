#!/usr/bin/env bash
# Build a queue fixture deterministically: with TURNQ_NOW fixed, the same script
# writes a byte-identical store every time (ids, tokens and timestamps included),
# so a CI job can commit it or compare it.
#
#   examples/fixture.sh [STORE]     (default: fixture.json)
set -euo pipefail

export TURNQ_STORE=${1:-fixture.json}
export TURNQ_NOW=2026-01-01T00:00:00Z
rm -f "$TURNQ_STORE"

# A chat session: two user messages that travel together, one held back by a delay.
turnq enqueue chat --text "hi" --source-key host:m1 --delivery earliest_safe_boundary --merge group:chat --json >/dev/null
turnq enqueue chat --text "are you there?" --source-key host:m2 --delivery earliest_safe_boundary --merge group:chat --json >/dev/null
turnq enqueue chat --text "later" --source-key host:m3 --delay 10m --json >/dev/null
# A process wake and a session command.
turnq wake chat --process-id build-1 --sequence 1 --input "tests passed" --json >/dev/null
turnq reset-session chat --reason "user asked for a fresh start" --json >/dev/null
# Another session with a live claim held by a worker (expires at 00:15).
turnq enqueue ops --text "rotate the logs" --json >/dev/null
turnq claim ops --owner worker-a --ttl 15m --json >/dev/null

sha256sum "$TURNQ_STORE"
