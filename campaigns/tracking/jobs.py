"""RQ jobs of tracking and event storage (queue ``default``)."""

from __future__ import annotations

from typing import Any

from campaigns.events import settle_deferred
from campaigns.tracking.buffer import flush, prune_batches

PRUNE_EVERY = 720  # flushes (about an hour at one every five seconds)


def flush_events_job() -> dict[str, Any]:
    """Every few seconds (cron) and when the buffer fills: store buffered opens and clicks, then
    apply the deferred status effects of provider events (see :mod:`campaigns.events`)."""
    result = flush()
    settled = settle_deferred()
    pruned = 0
    from campaigns.tracking.buffer import redis_connection

    conn = redis_connection()
    if conn is not None and conn.incr("xes:trk:flushes") % PRUNE_EVERY == 0:
        pruned = prune_batches()
    return {"batches": result.batches, "stored": result.stored, "settled": settled, "pruned": pruned}
