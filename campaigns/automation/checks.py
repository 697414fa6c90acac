"""System checks of :mod:`campaigns.automation`: webhook settings that are wrong in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

from campaigns.automation import conf


@register("security", deploy=True)
def check_webhook_settings(app_configs: Any, **kwargs: Any) -> list[Warning]:
    problems: list[Warning] = []
    if getattr(settings, "PRODUCTION", False) or not settings.DEBUG:
        if conf.allow_private_addresses():
            problems.append(
                Warning(
                    "WEBHOOKS_ALLOW_PRIVATE_ADDRESSES is on: customers' webhook URLs may reach internal addresses.",
                    hint="Turn it off outside tests and local development.",
                    id="automation.W001",
                )
            )
        if conf.allow_http():
            problems.append(
                Warning(
                    "WEBHOOKS_ALLOW_HTTP is on: webhook events may be sent unencrypted.",
                    hint="Turn it off in production.",
                    id="automation.W002",
                )
            )
    return problems
