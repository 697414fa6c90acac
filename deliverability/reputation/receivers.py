"""Signal receivers of the reputation app: each only hands over to a service."""

from __future__ import annotations

from typing import Any

from deliverability.reputation import counters
from deliverability.signals import provider_event


def count_provider_event(
    sender: Any, *, event: dict[str, Any], sending_account_id: int | None = None, **kwargs: Any
) -> None:
    """Every provider event (sandbox or SNS) feeds the per-day reputation counters."""
    counters.count_event(event, sending_account_id)


def connect() -> None:
    provider_event.connect(count_provider_event, dispatch_uid="reputation.count_provider_event")
