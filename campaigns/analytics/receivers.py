"""Signal receivers of :mod:`campaigns.analytics`: they only schedule work (STYLE.md)."""

from __future__ import annotations

from typing import Any

from campaigns import signals


def on_message_events(sender: Any, events: list[Any] | None = None, **kwargs: Any) -> None:
    """Stored events: bring the counters up to date soon (one job for a burst of batches)."""
    if events:
        from campaigns.analytics.jobs import schedule_aggregation

        schedule_aggregation()


def connect() -> None:
    signals.message_events.connect(on_message_events, dispatch_uid="analytics.on_message_events")
