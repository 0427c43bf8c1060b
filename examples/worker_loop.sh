#!/usr/bin/env bash
# A worker loop: claim -> work -> complete, until the queue is drained.
#
#   examples/worker_loop.sh SESSION [OWNER]
#
# The raw loop, for people who need to see (or change) every step; examples/worker.sh
# does the same with `turnq work`, which also keeps the lease alive and waits for work.
#
# Exit codes it relies on (see README): 0 claimed, 3 nothing to claim (stop
# cleanly), 4 lease lost on complete (someone else owns the work now: drop it).
# The store comes from TURNQ_STORE (default ./turnq.json).
set -uo pipefail

session=${1:?usage: worker_loop.sh SESSION [OWNER]}
owner=${2:-worker-$$}
claim_file=$(mktemp)
trap 'rm -f "$claim_file"' EXIT
handled=0

while true; do
    turnq claim "$session" --owner "$owner" --ttl 2m --json >"$claim_file"
    status=$?
    if [ "$status" -eq 3 ]; then
        echo "worker $owner: queue drained after $handled claim(s)"
        exit 0
    elif [ "$status" -ne 0 ]; then
        echo "worker $owner: claim failed with exit $status" >&2
        exit "$status"
    fi

    # The work itself: here, print what the claim holds. A real worker would feed
    # the turn input to the model, renewing the lease (turnq renew) if it runs long.
    python3 - "$claim_file" <<'PY'
import json, sys
claim = json.load(open(sys.argv[1]))
for batch in claim["batches"]:
    for item in batch["items"]:
        payload = item["payload"]
        if payload["type"] == "turn_input":
            texts = [i["text"] for i in payload["input"]["items"] if i["type"] == "text"]
            print(f"  {claim['claim_id']} (fencing {claim['fencing_token']}): user: {' / '.join(texts)}")
        elif payload["type"] == "process_wake":
            print(f"  {claim['claim_id']} (fencing {claim['fencing_token']}): wake: {payload['wake']['input']}")
        else:
            print(f"  {claim['claim_id']} (fencing {claim['fencing_token']}): command: {payload['command']['kind']}")
PY

    turnq complete --claim @"$claim_file" --json >/dev/null
    status=$?
    if [ "$status" -eq 4 ]; then
        echo "worker $owner: lease lost before completing; the work went back to the queue" >&2
    elif [ "$status" -ne 0 ]; then
        echo "worker $owner: complete failed with exit $status" >&2
        exit "$status"
    fi
    handled=$((handled + 1))
done
