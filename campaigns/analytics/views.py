"""Analytics pages: the organisation (a client-user's: its client), a client, a sending account and
a campaign, each with its CSV exports; a message's timeline; the live figures of a sending campaign.

Every object comes through :func:`xes_portal.lib.tenancy.get_for_membership` (404 for other
tenants) and every number through :class:`campaigns.analytics.reports.Scope`, which narrows the
counters with ``for_membership``. Query parameters: ``period`` (days: 7, 30, 90, 365) and
``machines=1`` (machine opens and clicks included).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.http import Http404, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.views.decorators.http import require_safe

from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Client, Membership, SendingAccount
from campaigns.analytics import exports, reports
from campaigns.analytics.models import COUNTERS
from campaigns.analytics.reports import Period, Scope
from campaigns.models import Campaign, Message, tracking_enabled
from xes_portal.lib.tenancy import get_for_membership

LIVE_STATUSES = (Campaign.Status.QUEUEING, Campaign.Status.SENDING)
LIVE_SECONDS = 10  # how often a sending campaign's figures are fetched again
RECIPIENT_RESULTS = 20

# The breakdowns each kind of report shows, in page order.
BREAKDOWNS = {
    "organisation": ("clients", "accounts", "campaigns", "domains"),
    "client": ("accounts", "campaigns", "domains"),
    "account": ("campaigns", "domains"),
    "campaign": ("links", "domains"),
}


@dataclass
class Report:
    """One report page: what it covers and where its links go."""

    kind: str
    title: str
    scope: Scope
    url: str  # the page's URL, without query
    obj: Any = None
    breadcrumbs: list[tuple[str, str]] = field(default_factory=list)

    @property
    def export_url(self) -> str:
        return f"{self.url}export/"

    @property
    def breakdowns(self) -> tuple[str, ...]:
        names = BREAKDOWNS[self.kind]
        if self.scope.membership.is_client_user:
            names = tuple(n for n in names if n != "clients")
        return names

    def query(self, **changes: Any) -> str:
        """The query string of this report with ``changes`` (period, machines, table)."""
        params = QueryDict(mutable=True)
        if self.scope.period is not None:
            params["period"] = str(self.scope.period.days)
        if self.scope.machines:
            params["machines"] = "1"
        for key, value in changes.items():
            if value in (None, "", False):
                params.pop(key, None)
            else:
                params[key] = str(value)
        encoded = params.urlencode()
        return f"?{encoded}" if encoded else ""


def _zone(request: AuthedRequest) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(request.membership.organisation.time_zone)


def _period(request: AuthedRequest) -> Period:
    try:
        days = int(request.GET.get("period", reports.DEFAULT_PERIOD))
    except ValueError:
        days = reports.DEFAULT_PERIOD
    if days not in reports.PERIODS:
        days = reports.DEFAULT_PERIOD
    return Period.last(days, _zone(request))


def _machines(request: AuthedRequest) -> bool:
    return request.GET.get("machines") == "1"


def _analytics_crumb() -> tuple[str, str]:
    return (_("Reports"), reverse("campaigns:analytics:overview"))


def organisation_report(request: AuthedRequest) -> Report:
    m = request.membership
    scope = Scope(m, period=_period(request), machines=_machines(request))
    title = m.client.name if m.is_client_user and m.client else m.organisation.name
    return Report("organisation", title, scope, reverse("campaigns:analytics:overview"))


def client_report(request: AuthedRequest, pk: int) -> Report:
    client = get_for_membership(Client.objects.all(), request.membership, pk=pk)
    scope = Scope(request.membership, client=client, period=_period(request), machines=_machines(request))
    url = reverse("campaigns:analytics:client", args=[client.pk])
    return Report("client", client.name, scope, url, client, [_analytics_crumb()])


def account_report(request: AuthedRequest, pk: int) -> Report:
    account = get_for_membership(SendingAccount.objects.select_related("client"), request.membership, pk=pk)
    scope = Scope(request.membership, sending_account=account, period=_period(request), machines=_machines(request))
    url = reverse("campaigns:analytics:account", args=[account.pk])
    crumbs = [_analytics_crumb()]
    if account.client is not None:
        crumbs.append((account.client.name, reverse("campaigns:analytics:client", args=[account.client.pk])))
    return Report("account", account.name, scope, url, account, crumbs)


def campaign_report(request: AuthedRequest, pk: int) -> Report:
    campaign = get_for_membership(
        Campaign.objects.select_related("sending_account", "template", "organisation"), request.membership, pk=pk
    )
    scope = Scope(request.membership, campaign=campaign, machines=_machines(request))
    url = reverse("campaigns:analytics:campaign", args=[campaign.pk])
    crumbs = [
        (_("Campaigns"), reverse("campaigns:campaign_list")),
        (campaign.name, reverse("campaigns:campaign_detail", args=[campaign.pk])),
    ]
    return Report("campaign", campaign.name, scope, url, campaign, crumbs)


BUILDERS: dict[str, Callable[..., Report]] = {
    "organisation": organisation_report,
    "client": client_report,
    "account": account_report,
    "campaign": campaign_report,
}


def _breakdown(report: Report, name: str, *, export: bool = False) -> list[reports.Row]:
    """The rows of one breakdown table (more of them for an export)."""
    scope = report.scope
    if name == "clients":
        rows = reports.by_client(scope)
        for row in rows:
            if row.key is not None:
                row.url = reverse("campaigns:analytics:client", args=[row.key])
        return rows
    if name == "accounts":
        rows = reports.by_account(scope)
        for row in rows:
            row.url = reverse("campaigns:analytics:account", args=[row.key])
        return rows
    if name == "campaigns":
        rows = reports.by_campaign(scope, limit=reports.EXPORT_ROWS if export else reports.TOP_CAMPAIGNS)
        for row in rows:
            row.url = reverse("campaigns:analytics:campaign", args=[row.key])
        return rows
    if name == "links":
        return reports.links(scope, limit=reports.EXPORT_ROWS if export else reports.TOP_LINKS)
    if export:
        return reports.domains(scope, limit=reports.EXPORT_ROWS, columns=COUNTERS)
    return reports.domains(scope)


def _campaign_context(campaign: Campaign, scope: Scope) -> dict[str, Any]:
    return {
        "campaign": campaign,
        "live": campaign.status in LIVE_STATUSES,
        "live_seconds": LIVE_SECONDS,
        "tracking": tracking_enabled(campaign.tracking, campaign.template.tracking, campaign.promotional),
        "zone": scope.zone,
    }


def campaign_panel_context(membership: Membership, campaign: Campaign) -> dict[str, Any]:
    """What the campaign page's analytics panel shows (also for its template tag)."""
    scope = Scope(membership, campaign=campaign)
    return {
        "figures": reports.totals(scope),
        "freshness": reports.freshness(),
        "sent": campaign.status not in (Campaign.Status.DRAFT, Campaign.Status.SCHEDULED),
        **_campaign_context(campaign, scope),
    }


def _page(request: AuthedRequest, report: Report) -> HttpResponse:
    figures = reports.totals(report.scope)
    data = reports.series(report.scope)
    context: dict[str, Any] = {
        "report": report,
        "figures": figures,
        "series": data,
        "chart": data.chart(),
        "breakdowns": [(name, _breakdown(report, name)) for name in report.breakdowns],
        "periods": reports.PERIODS,
        "freshness": reports.freshness(),
        "zone": report.scope.zone,
    }
    if report.kind == "campaign":
        context.update(_campaign_context(report.obj, report.scope))
        query = request.GET.get("recipient", "").strip()
        if query:
            context["recipient_query"] = query
            context["recipients"] = (
                Message.objects.for_membership(request.membership)  # type: ignore[attr-defined]
                .filter(campaign=report.obj, to_email__icontains=query)
                .order_by("pk")[:RECIPIENT_RESULTS]
            )
    return render(request, "campaigns/analytics/report.html", context)


@require_safe
@membership_required()
def overview(request: AuthedRequest) -> HttpResponse:
    return _page(request, organisation_report(request))


@require_safe
@membership_required()
def client_page(request: AuthedRequest, pk: int) -> HttpResponse:
    return _page(request, client_report(request, pk))


@require_safe
@membership_required()
def account_page(request: AuthedRequest, pk: int) -> HttpResponse:
    return _page(request, account_report(request, pk))


@require_safe
@membership_required()
def campaign_page(request: AuthedRequest, pk: int) -> HttpResponse:
    return _page(request, campaign_report(request, pk))


@require_safe
@membership_required()
def campaign_live(request: AuthedRequest, pk: int) -> HttpResponse:
    """The figures and chart of a campaign's report (htmx polls them while it sends)."""
    report = campaign_report(request, pk)
    data = reports.series(report.scope)
    context = {
        "report": report,
        "figures": reports.totals(report.scope),
        "series": data,
        "chart": data.chart(),
        "breakdowns": [(name, _breakdown(report, name)) for name in report.breakdowns],
        "freshness": reports.freshness(),
        **_campaign_context(report.obj, report.scope),
    }
    return render(request, "campaigns/analytics/partials/campaign_live.html", context)


@require_safe
@membership_required()
def campaign_panel(request: AuthedRequest, pk: int) -> HttpResponse:
    """The analytics panel of the campaign page (htmx polls it while the campaign sends)."""
    campaign = get_for_membership(Campaign.objects.select_related("template"), request.membership, pk=pk)
    context = campaign_panel_context(request.membership, campaign)
    return render(request, "campaigns/analytics/partials/campaign_panel.html", context)


@require_safe
@membership_required()
def message_page(request: AuthedRequest, pk: int) -> HttpResponse:
    """Everything that happened to one message, in order."""
    message = get_for_membership(
        Message.objects.select_related("campaign", "contact", "sending_account"), request.membership, pk=pk
    )
    return render(
        request,
        "campaigns/analytics/message.html",
        {"message": message, "events": reports.message_timeline(message), "zone": _zone(request)},
    )


def _export(request: AuthedRequest, report: Report) -> HttpResponse:
    table = request.GET.get("table", "summary")
    scope = report.scope
    if table == "summary":
        since = scope.period.since if scope.period else None
        until = scope.period.until if scope.period else None
        header, rows = exports.summary_rows(report.title, since, until, reports.totals(scope))
    elif table == "series":
        header, rows = exports.series_rows(reports.series(scope))
    elif table in report.breakdowns:
        headings = {
            "clients": _("Client"),
            "accounts": _("Sending account"),
            "campaigns": _("Campaign"),
            "links": _("Link"),
            "domains": _("Recipient domain"),
        }
        breakdown = _breakdown(report, table, export=True)
        header, rows = exports.breakdown_rows(headings[table], breakdown, link=table == "links")
    else:
        raise Http404
    span = f"-{scope.period.days}d" if scope.period else ""
    filename = f"{slugify(report.title) or report.kind}-{table}{span}.csv"
    return exports.response(filename, header, rows)


@require_safe
@membership_required()
def overview_export(request: AuthedRequest) -> HttpResponse:
    return _export(request, organisation_report(request))


@require_safe
@membership_required()
def client_export(request: AuthedRequest, pk: int) -> HttpResponse:
    return _export(request, client_report(request, pk))


@require_safe
@membership_required()
def account_export(request: AuthedRequest, pk: int) -> HttpResponse:
    return _export(request, account_report(request, pk))


@require_safe
@membership_required()
def campaign_export(request: AuthedRequest, pk: int) -> HttpResponse:
    return _export(request, campaign_report(request, pk))


urlpatterns = [
    path("", overview, name="overview"),
    path("export/", overview_export, name="overview_export"),
    path("clients/<int:pk>/", client_page, name="client"),
    path("clients/<int:pk>/export/", client_export, name="client_export"),
    path("accounts/<int:pk>/", account_page, name="account"),
    path("accounts/<int:pk>/export/", account_export, name="account_export"),
    path("campaigns/<int:pk>/", campaign_page, name="campaign"),
    path("campaigns/<int:pk>/export/", campaign_export, name="campaign_export"),
    path("campaigns/<int:pk>/live/", campaign_live, name="campaign_live"),
    path("campaigns/<int:pk>/panel/", campaign_panel, name="campaign_panel"),
    path("messages/<int:pk>/", message_page, name="message"),
]
