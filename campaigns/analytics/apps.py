"""App config for :mod:`campaigns.analytics`."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AnalyticsConfig(AppConfig):
    name = "campaigns.analytics"
    label = "analytics"
    verbose_name = _("Analytics")

    def ready(self) -> None:
        from campaigns.analytics import receivers

        receivers.connect()
