"""App config for :mod:`deliverability.reputation`."""

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReputationConfig(AppConfig):
    name = "deliverability.reputation"
    label = "reputation"
    verbose_name = _("Reputation")

    def ready(self) -> None:
        from django.contrib import admin

        from deliverability.reputation import receivers

        receivers.connect()
        # The back office's home page lists the open alarms above the apps (a template of ours that
        # extends Django's admin index), so the XES team sees them first.
        admin.site.index_template = "deliverability/reputation/admin/index.html"
