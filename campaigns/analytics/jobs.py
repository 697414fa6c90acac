"""RQ jobs of analytics (queue ``default``). Both are safe to run twice or at once: one
aggregator runs at a time and the others return (see :mod:`campaigns.analytics.aggregation`)."""

from __future__ import annotations

from typing import Any

import django_rq

from campaigns.analytics import aggregation

QUEUE = "default"
# Stored batches within this many seconds share one job (the job counts all of them).
DEBOUNCE_SECONDS = 2
DEBOUNCE_KEY = "xes:analytics:scheduled"
REBUILD_TIMEOUT = 1800


def aggregate_events_job() -> dict[str, Any]:
    """Every 30 seconds (cron) and after stored events: count what was committed since the last run."""
    result = aggregation.run_incremental()
    return {"from": result.counted_from, "upto": result.counted_upto, "waiting": result.waiting, "busy": result.busy}


def rebuild_aggregates_job() -> dict[str, Any]:
    """Count every event again from scratch (admin action, ``manage.py rebuild_analytics``)."""
    result = aggregation.rebuild()
    return {"upto": result.counted_upto, "seconds": round(result.seconds, 2), "busy": result.busy}


def schedule_aggregation() -> None:
    """Queue :func:`aggregate_events_job` unless one was queued in the last few seconds."""
    queue = django_rq.get_queue(QUEUE)
    if queue.connection.set(DEBOUNCE_KEY, 1, nx=True, ex=DEBOUNCE_SECONDS):
        queue.enqueue(aggregate_events_job)


def schedule_rebuild() -> None:
    django_rq.get_queue(QUEUE).enqueue(rebuild_aggregates_job, job_timeout=REBUILD_TIMEOUT)
