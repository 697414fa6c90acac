"""Template helpers of the reputation pages: the account page's summary and the admin's alarms."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from accounts.models import SendingAccount
from deliverability.reputation.advice import score_summary
from deliverability.reputation.models import Alarm, Thresholds
from deliverability.reputation.services import percent, platform_counts

register = template.Library()

ADMIN_ALARMS_SHOWN = 20


@register.inclusion_tag("deliverability/reputation/partials/panel_summary.html")
def reputation_summary(account: SendingAccount) -> dict[str, Any]:
    """A line for the account page's reputation panel: score, rates, link to the page."""
    return {"account": account, "summary": score_summary(account, timezone.now())}


@register.inclusion_tag("deliverability/reputation/admin/alarms.html")
def open_alarms() -> dict[str, Any]:
    """The open alarms and the platform's 7-day rates, for the back office's home page."""
    alarms = Alarm.objects.filter(resolved_at__isnull=True).select_related("sending_account__organisation")
    thresholds = Thresholds.cached()
    platform = platform_counts()
    return {
        "alarms": list(alarms[:ADMIN_ALARMS_SHOWN]),
        "total": alarms.count(),
        "platform": platform,
        "platform_bounce": percent(platform.bounce_rate),
        "platform_complaint": percent(platform.complaint_rate, 3),
        "alarm_bounce": percent(thresholds.platform_bounce_alarm),
        "alarm_complaint": percent(thresholds.platform_complaint_alarm, 3),
    }
