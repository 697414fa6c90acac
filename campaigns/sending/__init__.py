"""The sending pipeline (DESIGN.md, "Sending pipeline"): fast, and every message sent exactly once.

- :mod:`.queueing` — a campaign or a triggered message becomes outbox rows with reserved credits;
- :mod:`.worker` — RQ workers claim rows (``FOR UPDATE SKIP LOCKED``), render, send, record;
- :mod:`.ratelimit` — the per-account rate limiter and warm-up cap in Redis, shared by all workers;
- :mod:`.control` — pause / resume / cancel, reconciliation of rows whose worker died, progress;
- :mod:`.providers` — provider selection (with a test/bench override) and "what did it accept?";
- :mod:`.render` — the seam to :mod:`campaigns.rendering`;
- :mod:`.jobs` — the RQ jobs (queue ``sending``) and the minute tick for cron.

Import the functions from here; the submodules are implementation.
"""

from __future__ import annotations

from campaigns.sending.control import (
    campaign_progress,
    campaigns_progress,
    cancel_campaign,
    pause_campaign,
    reconcile_expired_leases,
    resume_campaign,
)
from campaigns.sending.jobs import send_batch_job, sending_tick_job, start_campaign_async
from campaigns.sending.queueing import queue_campaign, queue_triggered, start_campaign

__all__ = [
    "campaign_progress",
    "campaigns_progress",
    "cancel_campaign",
    "pause_campaign",
    "queue_campaign",
    "queue_triggered",
    "reconcile_expired_leases",
    "resume_campaign",
    "send_batch_job",
    "sending_tick_job",
    "start_campaign",
    "start_campaign_async",
]
