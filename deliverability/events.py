"""Deliverability's receiver of :data:`deliverability.signals.provider_event` (connected in
:meth:`deliverability.apps.DeliverabilityConfig.ready`).

It only hands the event to :func:`deliverability.suppressions.suppress_from_event`: permanent
bounces and complaints go on the sending account's suppression list. The sandbox provider and the
SNS webhook's job send the same signal, so both paths suppress the same way.
"""

from __future__ import annotations

from typing import Any

from deliverability import suppressions


def suppress_on_provider_event(
    sender: Any, event: dict[str, Any], sending_account_id: int | None, **kwargs: Any
) -> None:
    suppressions.suppress_from_event(event, sending_account_id)
