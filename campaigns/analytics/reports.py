"""The numbers of the analytics reports, read from the counters (never from the raw events, except
the timelines of one message or one contact).

A report covers a :class:`Scope`: the membership's tenant (through ``for_membership``, so a
client-user only ever sees its own client's sending accounts), narrowed to one campaign, sending
account or client, and for all but campaigns to a period of whole days in the organisation's time
zone. Unique opens and clicks of a period are the messages opened (clicked) for the first time in
it. Machine opens and clicks are left out unless the scope asks for them.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import F, QuerySet, Sum
from django.db.models.functions import Trunc
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext_lazy as _

from accounts.models import Client, Membership, SendingAccount
from campaigns.analytics.models import (
    COUNTERS,
    AccountDomainDay,
    AccountHour,
    AggregationState,
    CampaignDomain,
    CampaignHour,
    CampaignLink,
    OrgDomainDay,
)
from campaigns.models import Campaign, Contact, Message, MessageEvent, TrackedLink

PERIODS = (7, 30, 90, 365)
DEFAULT_PERIOD = 30
TOP_DOMAINS = 20
# What the domain tables of the pages show (exports add up every counter).
DOMAIN_COLUMNS = (
    "sent",
    "delivered",
    "hard_bounces",
    "soft_bounces",
    "complaints",
    "unique_opens",
    "unique_opens_all",
    "unique_clicks",
    "unique_clicks_all",
    "unsubscribes",
)
TOP_LINKS = 50
TOP_CAMPAIGNS = 20
EXPORT_ROWS = 1000
TIMELINE_EVENTS = 200
# A campaign chart has one bar per hour up to this span, one per day beyond it.
HOURLY_SPAN = timedelta(hours=72)


@dataclass(frozen=True)
class Period:
    """Whole days in the organisation's time zone, the last of them today."""

    days: int
    zone: zoneinfo.ZoneInfo
    since: datetime  # aware, the first day's midnight in ``zone``
    until: datetime  # now

    @classmethod
    def last(cls, days: int, zone: zoneinfo.ZoneInfo, now: datetime | None = None) -> Period:
        now = now or timezone.now()
        first = now.astimezone(zone).date() - timedelta(days=days - 1)
        since = datetime(first.year, first.month, first.day, tzinfo=zone)
        return cls(days=days, zone=zone, since=since, until=now)

    @property
    def since_day_utc(self) -> date:
        """The first UTC day of the per-domain counters that the period touches."""
        return self.since.astimezone(UTC).date()


@dataclass(frozen=True)
class Scope:
    """What one report covers."""

    membership: Membership
    campaign: Campaign | None = None
    sending_account: SendingAccount | None = None
    client: Client | None = None
    period: Period | None = None
    machines: bool = False

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.membership.organisation.time_zone)

    def narrow(self, queryset: QuerySet[Any], *, time_field: str | None = None) -> QuerySet[Any]:
        """``queryset`` of a counter model restricted to this scope."""
        queryset = queryset.for_membership(self.membership)  # type: ignore[attr-defined]
        if self.campaign is not None:
            queryset = queryset.filter(campaign=self.campaign)
        if self.sending_account is not None:
            queryset = queryset.filter(sending_account=self.sending_account)
        if self.client is not None:
            queryset = queryset.filter(sending_account__client=self.client)
        if self.period is not None and time_field == "hour":
            queryset = queryset.filter(hour__gte=self.period.since)
        elif self.period is not None and time_field == "day":
            queryset = queryset.filter(day__gte=self.period.since_day_utc)
        return queryset


def _percent(part: int, whole: int) -> Decimal | None:
    if not whole:
        return None
    return (Decimal(100 * part) / Decimal(whole)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


@dataclass
class Figures:
    """Counter totals of a report, with the figures and rates it shows."""

    raw: dict[str, int]
    machines: bool = False

    def __getattr__(self, name: str) -> int:
        try:
            return self.__dict__["raw"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def bounces(self) -> int:
        return self.raw["hard_bounces"] + self.raw["soft_bounces"]

    @property
    def unique_opens_shown(self) -> int:
        return self.raw["unique_opens_all" if self.machines else "unique_opens"]

    @property
    def opens_shown(self) -> int:
        return self.raw["opens"] + (self.raw["machine_opens"] if self.machines else 0)

    @property
    def unique_clicks_shown(self) -> int:
        return self.raw["unique_clicks_all" if self.machines else "unique_clicks"]

    @property
    def clicks_shown(self) -> int:
        return self.raw["clicks"] + (self.raw["machine_clicks"] if self.machines else 0)

    @property
    def delivery_rate(self) -> Decimal | None:
        return _percent(self.raw["delivered"], self.raw["sent"])

    @property
    def bounce_rate(self) -> Decimal | None:
        return _percent(self.raw["hard_bounces"], self.raw["sent"])

    @property
    def complaint_rate(self) -> Decimal | None:
        return _percent(self.raw["complaints"], self.raw["delivered"])

    @property
    def open_rate(self) -> Decimal | None:
        return _percent(self.unique_opens_shown, self.raw["delivered"])

    @property
    def click_rate(self) -> Decimal | None:
        return _percent(self.unique_clicks_shown, self.raw["delivered"])

    @property
    def click_to_open_rate(self) -> Decimal | None:
        return _percent(self.unique_clicks_shown, self.unique_opens_shown)

    @property
    def unsubscribe_rate(self) -> Decimal | None:
        return _percent(self.raw["unsubscribes"], self.raw["delivered"])

    @property
    def empty(self) -> bool:
        return not any(self.raw.values())


def _sums(columns: Iterable[str] = COUNTERS) -> dict[str, Sum]:
    return {c: Sum(c) for c in columns}


def _figures(row: Mapping[str, Any], machines: bool) -> Figures:
    return Figures({c: int(row.get(c) or 0) for c in COUNTERS}, machines=machines)


def _hour_model(scope: Scope) -> type[CampaignHour] | type[AccountHour]:
    return CampaignHour if scope.campaign is not None else AccountHour


def totals(scope: Scope) -> Figures:
    """The report's totals (one query)."""
    queryset = scope.narrow(_hour_model(scope).objects.all(), time_field="hour")
    return _figures(queryset.aggregate(**_sums()), scope.machines)


# --- over time ----------------------------------------------------------------------------------


@dataclass
class Series:
    """Counters per hour or per day, gaps filled with zeros, ready for a chart and a table."""

    kind: str  # "hour" or "day"
    rows: list[tuple[datetime, Figures]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return all(f.empty for _at, f in self.rows)

    def label(self, at: datetime) -> str:
        return date_format(at, "SHORT_DATETIME_FORMAT" if self.kind == "hour" else "SHORT_DATE_FORMAT")

    def chart(self) -> dict[str, Any]:
        """The data of the chart (``json_script``; charts.js draws it)."""
        return {
            "labels": [self.label(at) for at, _f in self.rows],
            "series": [
                {"key": key, "label": str(label), "data": [getattr(f, attr) for _at, f in self.rows]}
                for key, label, attr in SERIES
            ],
        }

    def table(self) -> list[dict[str, Any]]:
        return [
            {"label": self.label(at), "values": [getattr(f, attr) for _key, _label, attr in SERIES]}
            for at, f in self.rows
        ]


SERIES = (
    ("delivered", _("Delivered"), "delivered"),
    ("opens", _("Unique opens"), "unique_opens_shown"),
    ("clicks", _("Unique clicks"), "unique_clicks_shown"),
    ("bounces", _("Bounces"), "bounces"),
    ("complaints", _("Complaints"), "complaints"),
    ("unsubscribes", _("Unsubscribes"), "unsubscribes"),
)


def _steps(start: datetime, end: datetime, kind: str, zone: zoneinfo.ZoneInfo) -> list[datetime]:
    """Every bucket start from ``start`` to ``end`` (in ``zone``; days step in local time)."""
    out: list[datetime] = []
    current = start
    while current <= end:
        out.append(current)
        if kind == "hour":
            current = (current.astimezone(UTC) + timedelta(hours=1)).astimezone(zone)
        else:
            day = current.date() + timedelta(days=1)
            current = datetime(day.year, day.month, day.day, tzinfo=zone)
    return out


def series(scope: Scope) -> Series:
    """Counters over time: a campaign by the hour (by the day past three days), other reports by
    the day of the period, in the organisation's time zone (one query)."""
    zone = scope.zone
    queryset = scope.narrow(_hour_model(scope).objects.all(), time_field="hour")
    empty = _figures({}, scope.machines)
    if scope.period is None:
        # A campaign has a few hundred hours at most: fetch them and bucket here.
        hours = [
            (row["hour"], _figures(row, scope.machines))
            for row in queryset.values("hour").annotate(**_sums()).order_by("hour")
        ]
        if not hours:
            return Series("hour")
        kind = "hour" if hours[-1][0] - hours[0][0] <= HOURLY_SPAN else "day"
        found: dict[datetime, Figures] = {}
        for hour, figures in hours:
            local = hour.astimezone(zone)
            bucket = local if kind == "hour" else datetime(local.year, local.month, local.day, tzinfo=zone)
            found[bucket] = _add(found[bucket], figures) if bucket in found else figures
        start, end = hours[0][0], hours[-1][0]
    else:
        kind, start, end = "day", scope.period.since, scope.period.until
        rows = (
            queryset.annotate(bucket=Trunc("hour", kind, tzinfo=zone))
            .values("bucket")
            .annotate(**_sums())
            .order_by("bucket")
        )
        found = {row["bucket"]: _figures(row, scope.machines) for row in rows}
    local_start = start.astimezone(zone)
    if kind == "day":
        local_start = datetime(local_start.year, local_start.month, local_start.day, tzinfo=zone)
    result = Series(kind)
    for step in _steps(local_start, end.astimezone(zone), kind, zone):
        result.rows.append((step, found.get(step, empty)))
    return result


def _add(a: Figures, b: Figures) -> Figures:
    return Figures({c: a.raw[c] + b.raw[c] for c in COUNTERS}, machines=a.machines)


# --- breakdowns ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of a breakdown table: what it is about, and its figures."""

    key: Any
    label: str
    figures: Figures
    url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def domains(scope: Scope, limit: int = TOP_DOMAINS, columns: Iterable[str] = DOMAIN_COLUMNS) -> list[Row]:
    """The recipient domains with the most messages sent (one or two queries).

    A campaign reads its own domain counters; the whole organisation its organisation-wide days;
    a client, a sending account or a client-user the days of the sending accounts in scope
    (looked up first, so that the days are read by the sending-account index)."""
    m = scope.membership
    if scope.campaign is not None:
        queryset = scope.narrow(CampaignDomain.objects.all())
    elif scope.sending_account is None and scope.client is None and not m.is_client_user:
        queryset = OrgDomainDay.objects.for_membership(m)  # type: ignore[attr-defined]
        if scope.period is not None:
            queryset = queryset.filter(day__gte=scope.period.since_day_utc)
    else:
        accounts = SendingAccount.objects.for_membership(m)  # type: ignore[attr-defined]
        if scope.sending_account is not None:
            accounts = accounts.filter(pk=scope.sending_account.pk)
        if scope.client is not None:
            accounts = accounts.filter(client=scope.client)
        ids = list(accounts.values_list("pk", flat=True))
        queryset = AccountDomainDay.objects.for_membership(m).filter(sending_account_id__in=ids)  # type: ignore[attr-defined]
        if scope.period is not None:
            queryset = queryset.filter(day__gte=scope.period.since_day_utc)
    rows = (
        queryset.values("recipient_domain")
        .annotate(**_sums(columns))
        .order_by("-sent", "-delivered", "recipient_domain")[:limit]
    )
    return [
        Row(key=r["recipient_domain"], label=r["recipient_domain"] or "—", figures=_figures(r, scope.machines))
        for r in rows
    ]


def links(scope: Scope, limit: int = TOP_LINKS) -> list[Row]:
    """Clicks per tracked link, most clicked first (two queries)."""
    queryset = scope.narrow(CampaignLink.objects.all())
    order = "-unique_clicks_all" if scope.machines else "-unique_clicks"
    rows = list(
        queryset.values("link_id")
        .annotate(**_sums(("clicks", "machine_clicks", "unique_clicks", "unique_clicks_all")))
        .order_by(order, "link_id")[:limit]
    )
    urls = dict(TrackedLink.objects.filter(pk__in=[r["link_id"] for r in rows]).values_list("pk", "url"))
    return [Row(key=r["link_id"], label=urls.get(r["link_id"], ""), figures=_figures(r, scope.machines)) for r in rows]


def by_account(scope: Scope) -> list[Row]:
    """The period's figures per sending account, busiest first."""
    rows = (
        scope.narrow(AccountHour.objects.all(), time_field="hour")
        .values("sending_account_id")
        .annotate(**_sums())
        .order_by("-sent", "sending_account_id")
    )
    figures = {r["sending_account_id"]: _figures(r, scope.machines) for r in rows}
    accounts = SendingAccount.objects.for_membership(scope.membership).select_related("client")  # type: ignore[attr-defined]
    if scope.client is not None:
        accounts = accounts.filter(client=scope.client)
    empty = _figures({}, scope.machines)
    out = [Row(key=a.pk, label=a.name, figures=figures.get(a.pk, empty), extra={"client": a.client}) for a in accounts]
    out.sort(key=lambda row: (-row.figures.sent, row.label.lower()))
    return out


def by_client(scope: Scope) -> list[Row]:
    """The period's figures per client (accounts without a client as one line), busiest first."""
    rows = (
        scope.narrow(AccountHour.objects.all(), time_field="hour")
        .values(client_id=F("sending_account__client_id"))
        .annotate(**_sums())
    )
    figures = {r["client_id"]: _figures(r, scope.machines) for r in rows}
    empty = _figures({}, scope.machines)
    out = [
        Row(key=c.pk, label=c.name, figures=figures.get(c.pk, empty))
        for c in Client.objects.for_membership(scope.membership)  # type: ignore[attr-defined]
    ]
    out.sort(key=lambda row: (-row.figures.sent, row.label.lower()))
    if None in figures and not scope.membership.is_client_user:
        out.append(Row(key=None, label=str(_("No client (organisation's own accounts)")), figures=figures[None]))
    return out


def by_campaign(scope: Scope, limit: int = TOP_CAMPAIGNS) -> list[Row]:
    """The campaigns started in the period, newest first, with their results so far (two queries:
    the campaigns, then their counters by the campaign index)."""
    campaigns = Campaign.objects.for_membership(scope.membership)  # type: ignore[attr-defined]
    if scope.sending_account is not None:
        campaigns = campaigns.filter(sending_account=scope.sending_account)
    if scope.client is not None:
        campaigns = campaigns.filter(sending_account__client=scope.client)
    if scope.period is not None:
        campaigns = campaigns.filter(started_at__gte=scope.period.since)
    newest = campaigns.filter(started_at__isnull=False).order_by("-started_at", "-pk")
    chosen = list(newest.values("pk", "name")[:limit])
    rows = (
        CampaignHour.objects.for_membership(scope.membership)  # type: ignore[attr-defined]
        .filter(campaign_id__in=[c["pk"] for c in chosen])
        .values("campaign_id")
        .annotate(**_sums())
        .order_by()
    )
    figures = {r["campaign_id"]: _figures(r, scope.machines) for r in rows}
    empty = _figures({}, scope.machines)
    return [Row(key=c["pk"], label=c["name"], figures=figures.get(c["pk"], empty)) for c in chosen]


# --- timelines ----------------------------------------------------------------------------------


def message_timeline(message: Message) -> list[MessageEvent]:
    """Every event of one message, oldest first (the (message, at) index)."""
    events = list(MessageEvent.objects.filter(message=message).order_by("at", "pk")[:TIMELINE_EVENTS])
    _attach_links(events)
    return events


def contact_timeline(membership: Membership, contact: Contact, limit: int = 50) -> list[MessageEvent]:
    """The newest events of the messages sent to one contact, with their message and campaign."""
    messages = Message.objects.for_membership(membership).filter(contact=contact)  # type: ignore[attr-defined]
    events = list(
        MessageEvent.objects.filter(message__in=messages.values("pk"))
        .select_related("message", "message__campaign")
        .order_by("-at", "-pk")[:limit]
    )
    _attach_links(events)
    return events


def _attach_links(events: list[MessageEvent]) -> None:
    """Load the tracked links of click events in one query (``event.link_url``)."""
    ids = {e.link_id for e in events if e.link_id}
    urls = dict(TrackedLink.objects.filter(pk__in=ids).values_list("pk", "url")) if ids else {}
    for event in events:
        event.link_url = urls.get(event.link_id, "") if event.link_id else ""  # type: ignore[attr-defined]


def freshness() -> AggregationState | None:
    """When the counters were last brought up to date (for the "as of" note)."""
    return AggregationState.objects.filter(pk=1).first()
