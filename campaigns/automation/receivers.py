"""The receiver of :data:`campaigns.signals.message_events`: it only hands event ids to jobs
(trigger rules, webhooks), so the sender (a provider event job, the tracking flusher) pays one or
two small queries per batch and nothing when no rule or endpoint wants the events."""

from __future__ import annotations

import logging
from typing import Any

from campaigns.signals import message_events

logger = logging.getLogger(__name__)


def on_message_events(sender: Any, events: list[Any], **kwargs: Any) -> None:
    from campaigns.automation import triggers, webhooks

    if not events:
        return
    for consumer in (triggers.events_stored, webhooks.events_stored):
        try:
            consumer(events)
        except Exception:  # noqa: BLE001 - never break the sender's batch; the rows are stored
            logger.exception("%s failed for %d events", consumer.__module__, len(events))


def connect() -> None:
    message_events.connect(on_message_events, dispatch_uid="campaigns.automation.receivers.on_message_events")
