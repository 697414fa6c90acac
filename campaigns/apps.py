"""App config for :mod:`campaigns`."""

from __future__ import annotations

from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"

    def ready(self) -> None:
        from campaigns.events import on_provider_event
        from deliverability.signals import provider_event

        provider_event.connect(on_provider_event, dispatch_uid="campaigns.events.on_provider_event")
        from campaigns import standing_hooks  # noqa: F401 - connects the standing_changed receiver
