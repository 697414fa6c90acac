"""App config for :mod:`campaigns.automation` (trigger rules and outgoing webhooks)."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AutomationConfig(AppConfig):
    name = "campaigns.automation"
    label = "automation"
    verbose_name = _("Automation")

    def ready(self) -> None:
        from campaigns.automation import checks, receivers  # noqa: F401 - registers the system checks

        receivers.connect()
