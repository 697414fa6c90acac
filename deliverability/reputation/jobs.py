"""Background jobs of the reputation app; each is idempotent and calls the services."""

from __future__ import annotations

from django.utils import timezone

from deliverability.reputation import services


def evaluate_standings_job() -> dict[str, int]:
    """Every 15 minutes: rolling rates of every active account, the state machine, the alarms."""
    return services.evaluate_standings(timezone.now())
