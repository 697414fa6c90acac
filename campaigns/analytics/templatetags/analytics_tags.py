"""Template tags of the analytics pages, and the pieces other pages include: the campaign page's
analytics panel, the dashboard's card and the contact page's activity timeline.

The included pieces read the counters themselves (one or two small queries each), so the pages
that show them need no change in their views."""

from __future__ import annotations

import zoneinfo
from typing import Any

from django import template
from django.utils.translation import gettext_lazy as _

from campaigns.analytics import reports
from campaigns.analytics.reports import Period, Scope

register = template.Library()

TITLES = {
    "clients": _("Clients"),
    "accounts": _("Sending accounts"),
    "campaigns": _("Campaigns started in this period"),
    "links": _("Links"),
    "domains": _("Recipient domains"),
}
HEADINGS = {
    "clients": _("Client"),
    "accounts": _("Sending account"),
    "campaigns": _("Campaign"),
    "links": _("Link"),
    "domains": _("Domain"),
}
EMPTY = {
    "clients": _("No client has sent e-mail in this period."),
    "accounts": _("No sending account has sent e-mail in this period."),
    "campaigns": _("No campaign started in this period. Campaigns you send appear here with their results."),
    "links": _("No clicks on tracked links yet. Each link of the e-mail appears here once someone clicks it."),
    "domains": _("No e-mail sent yet. Once messages go out, the domains of the recipients appear here, busiest first."),
}
DASHBOARD_DAYS = 30


@register.simple_tag
def report_query(report: Any, **changes: Any) -> str:
    """The report's query string with ``changes`` (an empty value drops the parameter)."""
    return str(report.query(**changes))


@register.simple_tag
def breakdown_title(name: str) -> str:
    return str(TITLES.get(name, name))


@register.simple_tag
def breakdown_heading(name: str) -> str:
    return str(HEADINGS.get(name, name))


@register.simple_tag
def breakdown_empty(name: str) -> str:
    return str(EMPTY.get(name, ""))


@register.inclusion_tag("campaigns/analytics/partials/campaign_panel.html", takes_context=True)
def analytics_campaign_panel(context: template.Context, campaign: Any) -> dict[str, Any]:
    """The campaign page's analytics panel (it polls itself while the campaign sends)."""
    from campaigns.analytics.views import campaign_panel_context

    membership = context["membership"]
    return {**campaign_panel_context(membership, campaign), "can": context.get("can", {})}


@register.inclusion_tag("campaigns/analytics/partials/dashboard_card.html", takes_context=True)
def analytics_dashboard_card(context: template.Context) -> dict[str, Any]:
    """The dashboard's card: the last 30 days of the membership's tenant."""
    membership = context["membership"]
    zone = zoneinfo.ZoneInfo(membership.organisation.time_zone)
    scope = Scope(membership, period=Period.last(DASHBOARD_DAYS, zone))
    return {"figures": reports.totals(scope), "days": DASHBOARD_DAYS, "can": context.get("can", {})}


@register.inclusion_tag("campaigns/analytics/partials/contact_activity.html", takes_context=True)
def analytics_contact_activity(context: template.Context, contact: Any) -> dict[str, Any]:
    """The contact page's timeline: the newest events of the messages sent to the contact."""
    membership = context["membership"]
    return {
        "contact": contact,
        "events": reports.contact_timeline(membership, contact),
        "zone": zoneinfo.ZoneInfo(membership.organisation.time_zone),
    }
