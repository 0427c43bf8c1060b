#!/usr/bin/env bash
# turnq in a CI job: build a queue from a fixture, assert on it, let a "runtime" work,
# assert again, and compare stores. Every step is one line that fails the job when it should.
#
#   examples/ci_checks.sh [STORE]     (default: ci.json; removed first)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export TURNQ_STORE=${1:-ci.json}
export TURNQ_NOW=2026-01-01T00:00:00Z
rm -f "$TURNQ_STORE"

# 1. Build the queue from a hand-written fixture (the same store on every run).
turnq import "$here/fixtures/chat.toml"

# 2. Assert on what the runtime will find.
turnq expect chat --count 5 --source-keys host:m1,host:m2,host:m3,process:build-1:event:1:wake,command:reset_session:reset-1
turnq expect chat --count 1 --state delayed
turnq expect chat --next-claim host:m1,host:m2 --next-text $'hi\nare you there?\nhere is a picture'
turnq expect ops --count 1 --state held

# 3. A failing check exits 1 and prints the difference (here on purpose).
if turnq expect chat --count 4; then echo "expected a failure"; exit 1; else echo "expect: exit $? as planned"; fi

# 4. The "runtime" takes the first turn; diff shows what it changed against the fixture.
turnq claim chat --owner runtime --json > /dev/null
set +e
turnq diff "$here/fixtures/chat.toml" "$TURNQ_STORE"
echo "diff: exit $?"
set -e

# 5. Export the store and check that the export rebuilds it exactly.
turnq export --format json --output "$TURNQ_STORE.fixture.json"
rm -f "$TURNQ_STORE.copy"
turnq import "$TURNQ_STORE.fixture.json" --store "$TURNQ_STORE.copy" --json > /dev/null
cmp "$TURNQ_STORE" "$TURNQ_STORE.copy" && echo "export → import: byte-identical"
turnq diff "$TURNQ_STORE" "$TURNQ_STORE.copy"
rm -f "$TURNQ_STORE.fixture.json" "$TURNQ_STORE.copy"*
