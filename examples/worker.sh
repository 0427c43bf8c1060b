#!/usr/bin/env bash
# A worker: `turnq work` claims, runs the handler once per claim (the claim's JSON on its
# stdin) while renewing the lease, and completes the claim when the handler exits 0
# (a non-zero exit abandons it, so it is retried with a larger fencing token).
#
#   examples/worker.sh SESSION [OWNER]
#
# --idle-exit stops when the queue is drained; leave it out (and add --wait 30s or not)
# to keep waiting for work. The store comes from TURNQ_STORE (default ./turnq.json).
# examples/worker_loop.sh is the same worker as a raw shell loop of claim/complete.
set -euo pipefail

session=${1:?usage: worker.sh SESSION [OWNER]}
owner=${2:-worker-$$}

# The work itself: here, print what the claim holds. A real handler would feed the turn
# input to the model; $TURNQ_FENCING_TOKEN guards its side effects against a stale claim.
handler=$(cat <<'PY'
import json, sys
claim = json.load(sys.stdin)
for batch in claim["batches"]:
    for item in batch["items"]:
        payload = item["payload"]
        if payload["type"] == "turn_input":
            texts = [i["text"] for i in payload["input"]["items"] if i["type"] == "text"]
            what = f"user: {' / '.join(texts)}"
        elif payload["type"] == "process_wake":
            what = f"wake: {payload['wake']['input']}"
        else:
            what = f"command: {payload['command']['kind']}"
        print(f"  {claim['claim_id']} (fencing {claim['fencing_token']}): {what}")
PY
)

turnq work "$session" --owner "$owner" --ttl 2m --idle-exit -- python3 -c "$handler"
echo "worker $owner: queue drained"
