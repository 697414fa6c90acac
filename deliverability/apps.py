"""App config for :mod:`deliverability`."""

from __future__ import annotations

from django.apps import AppConfig


class DeliverabilityConfig(AppConfig):
    name = "deliverability"

    def ready(self) -> None:
        from deliverability.events import suppress_on_provider_event
        from deliverability.signals import provider_event

        provider_event.connect(suppress_on_provider_event, dispatch_uid="deliverability.suppress_on_provider_event")
