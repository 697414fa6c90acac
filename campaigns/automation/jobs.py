"""RQ jobs of :mod:`campaigns.automation`: they take ids and call the services."""

from __future__ import annotations

from django.core.cache import cache

from campaigns.automation import triggers, webhooks


def fire_for_events_job(event_ids: list[int]) -> int:
    """Fire the trigger rules that these stored opens and clicks match."""
    return triggers.fire_for_events(event_ids)


def fire_not_opened_job(rule_id: int) -> int:
    """Fire a "did not open within N days" rule for the recipients now due."""
    return triggers.fire_not_opened(rule_id)


def dispatch_events_job(event_ids: list[int]) -> int:
    """Create the webhook deliveries of these stored events."""
    return webhooks.dispatch(event_ids)


def deliver_webhook_job(delivery_id: int) -> str:
    """One attempt of a webhook delivery (nothing if it is not due)."""
    return webhooks.deliver(delivery_id)


NOT_OPENED_LOCK = "automation:not-opened-scan"


def automation_tick_job() -> dict[str, int]:
    """Every minute: queue due webhook retries (and lost jobs), prune the delivery log, and every
    ``NOT_OPENED_INTERVAL`` queue one scan job per "did not open" rule."""
    result = {"webhooks": webhooks.requeue_due(), "pruned": webhooks.prune(), "not_opened": 0}
    if cache.add(NOT_OPENED_LOCK, 1, timeout=int(triggers.NOT_OPENED_INTERVAL.total_seconds()) - 5):
        result["not_opened"] = triggers.queue_not_opened_scans()
    return result
