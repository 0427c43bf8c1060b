"""The Python API in a few lines: the same operations as the CLI, with a fixed clock.

    python examples/python_api.py [STORE]
"""

import sys
import tempfile
from pathlib import Path

from turnq import FixedClock, LeaseLost, Queue

store = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "turnq.json"
clock = FixedClock(1767225600000)  # 2026-01-01T00:00:00Z
queue = Queue(store, now=clock)

queue.enqueue_text("root", "hello", source_key="host:1", delivery_policy="earliest_safe_boundary")
claim = queue.claim("root", owner="worker-a", ttl_ms=30_000)
print("claimed", claim.claim_id, "fencing", claim.fencing_token, [b.batch_id[:16] for b in claim.batches])

clock.advance("1m")  # the lease runs out; another worker takes the work
again = queue.claim("root", owner="worker-b")
print("re-claimed", again.claim_id, "fencing", again.fencing_token)
try:
    queue.complete(claim)
except LeaseLost as err:
    print("stale completion refused:", err)
print("completed", queue.complete(again).batch_ids)
print("replay:", queue.enqueue_text("root", "hello", source_key="host:1").outcome)
