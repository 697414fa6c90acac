"""What the customer's reputation page shows: the window against the thresholds, a 0-100 score
with what drives it, the trend of the 7-day rates, and advice.

The score (higher is better) adds four parts:

1. bounces, 35 points: all at 0% hard bounces, none at the probation level, linear between;
2. complaints, 40 points: likewise against the probation complaint level;
3. authentication, 15 points, averaged over the account's domains: DKIM 6, SPF 4 (2 when only the
   provider's own MAIL FROM passes SPF, not aligned with the domain), DMARC 5; no domain, no points;
4. list hygiene, 10 points: transient bounces (full mailboxes, unreachable servers) all at 1% or
   less, none at 10%.

Without mail in the window the rate parts count as full: a new account starts from its set-up.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q
from django.utils.formats import date_format
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import SendingAccount
from deliverability.models import DnsRecord, Domain
from deliverability.reputation.models import DailyCounter, ReputationState, StandingChange, Thresholds
from deliverability.reputation.rules import Counts, assess, clean_streak, window_counts
from deliverability.reputation.services import lift_baseline, load_counts, percent, probation_baseline, utc_day
from deliverability.views.accounts import STANDING_MEANING

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

__all__ = ["STANDING_MEANING", "Report", "build_report", "score_summary"]

Standing = SendingAccount.Standing
Kind = DnsRecord.Kind
TREND_DAYS = 30
BOUNCE_POINTS, COMPLAINT_POINTS, AUTH_POINTS, HYGIENE_POINTS = 35, 40, 15, 10
DKIM_POINTS, SPF_POINTS, DMARC_POINTS = 6, 4, 5
SOFT_BOUNCE_GOOD, SOFT_BOUNCE_BAD = Decimal(1), Decimal(10)


@dataclass
class Driver:
    """One part of the score."""

    key: str
    label: StrOrPromise
    points: int
    maximum: int
    detail: str

    @property
    def status(self) -> str:
        share = self.points / self.maximum if self.maximum else 1
        return "ok" if share >= 0.8 else "attention" if share >= 0.4 else "bad"

    @property
    def percent(self) -> int:
        return round(self.points * 100 / self.maximum) if self.maximum else 100


@dataclass
class Meter:
    """A rate against its three thresholds, for a bar of four equal zones (see :func:`zone_position`)."""

    label: StrOrPromise
    rate: Decimal | None
    rate_text: str
    detail: str
    levels: Sequence[tuple[StrOrPromise, str, float]]  # (label, threshold text, position 0-100)
    position: float
    level: str


@dataclass
class Report:
    account: SendingAccount
    thresholds: Thresholds
    counts: Counts
    rates_apply: bool
    review: bool
    score: int
    drivers: list[Driver]
    meters: list[Meter]
    advice: list[StrOrPromise]
    chart: dict[str, Any]
    trend_rows: list[dict[str, Any]]
    history: list[StandingChange]
    has_data: bool
    clean_days: int | None = None
    domains: list[dict[str, Any]] = field(default_factory=list)


def _linear(rate: Decimal | None, bad_at: Decimal, points: int) -> int:
    if rate is None or bad_at <= 0:
        return points
    share = max(Decimal(0), 1 - rate / bad_at)
    return int((share * points).quantize(Decimal(1)))


def domain_authentication(account: SendingAccount) -> list[dict[str, Any]]:
    """Per domain of the account: DKIM, SPF and DMARC as ``ok`` / ``partial`` / ``missing``."""
    domains = (
        Domain.objects.filter(sending_account=account)
        .annotate(
            dkim_total=Count("records", filter=Q(records__kind=Kind.DKIM)),
            dkim_good=Count("records", filter=Q(records__kind=Kind.DKIM, records__status__in=DnsRecord.GOOD)),
            spf_total=Count("records", filter=Q(records__kind__in=(Kind.SPF, Kind.MAIL_FROM_SPF))),
            spf_good=Count(
                "records",
                filter=Q(records__kind__in=(Kind.SPF, Kind.MAIL_FROM_SPF), records__status__in=DnsRecord.GOOD),
            ),
            dmarc_total=Count("records", filter=Q(records__kind=Kind.DMARC)),
            dmarc_good=Count("records", filter=Q(records__kind=Kind.DMARC, records__status__in=DnsRecord.GOOD)),
        )
        .order_by("name")
    )
    result = []
    for domain in domains:

        def verdict(total: int, good: int) -> str:
            return "ok" if total and good == total else "missing"

        spf = verdict(domain.spf_total, domain.spf_good)  # type: ignore[attr-defined]
        if spf == "missing" and not domain.spf_total and domain.is_verified:  # type: ignore[attr-defined]
            spf = "partial"  # the provider's own MAIL FROM passes SPF, not aligned with the domain
        result.append(
            {
                "domain": domain,
                "dkim": verdict(domain.dkim_total, domain.dkim_good),  # type: ignore[attr-defined]
                "spf": spf,
                "dmarc": verdict(domain.dmarc_total, domain.dmarc_good),  # type: ignore[attr-defined]
            }
        )
    return result


def _auth_points(domains: list[dict[str, Any]]) -> int:
    if not domains:
        return 0
    total = 0.0
    for entry in domains:
        total += DKIM_POINTS * (entry["dkim"] == "ok")
        total += SPF_POINTS if entry["spf"] == "ok" else SPF_POINTS / 2 if entry["spf"] == "partial" else 0
        total += DMARC_POINTS * (entry["dmarc"] == "ok")
    return round(total / len(domains))


def score_parts(counts: Counts, thresholds: Thresholds, domains: list[dict[str, Any]]) -> list[Driver]:
    soft = counts.soft_bounce_rate
    if soft is None or soft <= SOFT_BOUNCE_GOOD:
        hygiene = HYGIENE_POINTS
    else:
        hygiene = _linear(soft - SOFT_BOUNCE_GOOD, SOFT_BOUNCE_BAD - SOFT_BOUNCE_GOOD, HYGIENE_POINTS)
    auth = _auth_points(domains)
    verified = [d for d in domains if d["dkim"] == "ok"]
    return [
        Driver(
            "bounces",
            gettext_lazy("Bounces"),
            _linear(counts.bounce_rate, thresholds.probation_bounce_rate, BOUNCE_POINTS),
            BOUNCE_POINTS,
            _("%(rate)s hard bounces") % {"rate": percent(counts.bounce_rate)}
            if counts.attempted
            else _("No e-mails sent in the window"),
        ),
        Driver(
            "complaints",
            gettext_lazy("Spam complaints"),
            _linear(counts.complaint_rate, thresholds.probation_complaint_rate, COMPLAINT_POINTS),
            COMPLAINT_POINTS,
            _("%(rate)s of deliveries") % {"rate": percent(counts.complaint_rate, 3)}
            if counts.delivered
            else _("No deliveries in the window"),
        ),
        Driver(
            "authentication",
            gettext_lazy("Authentication (DKIM, SPF, DMARC)"),
            auth,
            AUTH_POINTS,
            _("No domain set up yet")
            if not domains
            else _("%(ok)s of %(n)s domains sign with DKIM") % {"ok": len(verified), "n": len(domains)},
        ),
        Driver(
            "hygiene",
            gettext_lazy("List hygiene"),
            hygiene,
            HYGIENE_POINTS,
            _("%(rate)s transient bounces") % {"rate": percent(soft)}
            if counts.attempted
            else _("Nothing to judge yet"),
        ),
    ]


def zone_position(rate: Decimal | None, thresholds: list[Decimal]) -> float:
    """Where ``rate`` sits on a meter of four equal zones: below warning, warning, probation, and
    suspension up to 25% beyond its level (the levels are far apart for complaints: 0.08, 0.1, 0.3)."""
    if rate is None:
        return 0.0
    edges = [Decimal(0), *thresholds, thresholds[-1] * Decimal("1.25")]
    for zone, (low, high) in enumerate(itertools.pairwise(edges)):
        if rate < high:
            return round(25 * zone + 25 * float((rate - low) / (high - low)), 1)
    return 100.0


def _meter(kind: str, counts: Counts, thresholds: Thresholds, level: str) -> Meter:
    rate = counts.bounce_rate if kind == "bounce" else counts.complaint_rate
    places = 2 if kind == "bounce" else 3
    levels = list(reversed(thresholds.levels(kind)))  # warning first
    names = {
        Standing.WARNING: gettext_lazy("warning"),
        Standing.PROBATION: gettext_lazy("probation"),
        Standing.SUSPENDED: gettext_lazy("suspension"),
    }
    marks = [(names[Standing(name)], percent(value, places), 25.0 * (n + 1)) for n, (name, value) in enumerate(levels)]
    if kind == "bounce":
        label = gettext_lazy("Bounce rate")
        detail = _("%(hard)s hard bounces of %(sent)s e-mails sent") % {
            "hard": f"{counts.hard_bounces:,}",
            "sent": f"{counts.attempted:,}",
        }
    else:
        label = gettext_lazy("Complaint rate")
        detail = _("%(n)s spam complaints of %(delivered)s deliveries") % {
            "n": f"{counts.complaints:,}",
            "delivered": f"{counts.delivered:,}",
        }
    position = zone_position(rate, [value for _name, value in levels])
    return Meter(label, rate, percent(rate, places), detail, marks, position, level)


def _trend(
    by_day: dict[date, Counts], today: date, thresholds: Thresholds, state: ReputationState | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The 7-day rates as they stood at the end of each of the last days (what the rules judged)."""
    baseline = lift_baseline(state) if state is not None else None
    days = [today - timedelta(days=n) for n in range(TREND_DAYS - 1, -1, -1)]
    rows: list[dict[str, Any]] = []
    for day in days:
        # Before a lift the trend shows what the rules judged then; from the lift on, the restarted window.
        applies = baseline is not None and day >= baseline.day
        window = window_counts(by_day, day, thresholds.window_days, baseline if applies else None)
        own = by_day.get(day, Counts())
        rows.append(
            {
                "day": day,
                "sent": own.attempted,
                "delivered": own.delivered,
                "bounce_rate": window.bounce_rate,
                "complaint_rate": window.complaint_rate,
                "bounce_text": percent(window.bounce_rate),
                "complaint_text": percent(window.complaint_rate, 3),
            }
        )

    def number(value: Decimal | None, places: int) -> float | None:
        return None if value is None else round(float(value), places)

    chart = {
        "labels": [date_format(d, "SHORT_DATE_FORMAT") for d in days],
        "sent": [r["sent"] for r in rows],
        "bounce": [number(r["bounce_rate"], 3) for r in rows],
        "complaint": [number(r["complaint_rate"], 4) for r in rows],
        "levels": {
            "bounce": {
                "warning": float(thresholds.warning_bounce_rate),
                "probation": float(thresholds.probation_bounce_rate),
            },
            "complaint": {
                "warning": float(thresholds.warning_complaint_rate),
                "probation": float(thresholds.probation_complaint_rate),
            },
        },
        "text": {
            "bounce": _("Bounce rate, 7 days"),
            "complaint": _("Complaint rate, 7 days"),
            "sent": _("E-mails sent that day"),
            "warning": _("warning"),
            "probation": _("probation"),
        },
    }
    return chart, list(reversed(rows))


def _advice(report_counts: Counts, drivers: list[Driver], account: SendingAccount, review: bool) -> list[StrOrPromise]:
    tips: list[StrOrPromise] = []
    if account.standing == Standing.SUSPENDED:
        tips.append(
            gettext_lazy(
                "Contact XES support: the team lifts the suspension once the cause is understood and the lists are "
                "cleaned. Paused campaigns stay paused until you resume them."
            )
        )
    elif account.standing == Standing.PROBATION:
        tips.append(
            gettext_lazy(
                "Transactional e-mail keeps going; promotional campaigns are paused and sending is slowed down. "
                "Resume a campaign only after cleaning its list."
            )
        )
    by_key = {d.key: d for d in drivers}
    if by_key["bounces"].status != "ok":
        tips.append(
            gettext_lazy(
                "Remove addresses that bounce: old, mistyped and bought addresses are the usual cause. Collect "
                "addresses with double opt-in so that only working ones reach your lists."
            )
        )
    if by_key["complaints"].status != "ok" or review:
        tips.append(
            gettext_lazy(
                "Mail only people who asked for it, say who you are in the sender name and subject, and keep the "
                "unsubscribe link easy to find. Stop mailing contacts who have not opened anything for months."
            )
        )
    if by_key["authentication"].status != "ok":
        tips.append(
            gettext_lazy(
                "Set up DKIM, SPF and DMARC for every sending domain: receivers trust authenticated mail more, and "
                "some reject mail without it."
            )
        )
    if by_key["hygiene"].status != "ok":
        tips.append(
            gettext_lazy(
                "Many messages were deferred (full mailboxes, unreachable servers): send less often to contacts "
                "who keep bouncing softly, and remove them if it goes on."
            )
        )
    if not tips:
        tips.append(
            gettext_lazy(
                "All good. Keep it that way: welcome new contacts promptly, send at a steady pace, and clean out "
                "inactive contacts now and then."
            )
        )
    return tips


def build_report(account: SendingAccount, now: datetime) -> Report:
    """Everything the reputation page shows for ``account`` at ``now``."""
    thresholds = Thresholds.cached()
    today = utc_day(now)
    history_days = max(TREND_DAYS + thresholds.window_days, thresholds.window_days + thresholds.clean_days)
    by_day = load_counts([account.pk], today - timedelta(days=history_days), today).get(account.pk, {})
    state = ReputationState.objects.filter(sending_account=account).first()
    counts = window_counts(by_day, today, thresholds.window_days, lift_baseline(state) if state else None)
    verdict = assess(counts, thresholds)
    domains = domain_authentication(account)
    drivers = score_parts(counts, thresholds, domains)
    chart, trend_rows = _trend(by_day, today, thresholds, state)
    history = list(
        StandingChange.objects.filter(sending_account=account)
        .exclude(kind=StandingChange.Kind.NOTE)
        .select_related("by")[:50]
    )
    has_data = bool(by_day) or bool(history) or DailyCounter.objects.filter(sending_account=account).exists()
    clean = None
    if account.standing == Standing.PROBATION:
        baseline = probation_baseline(state) if state else None
        streak = clean_streak(by_day, today, thresholds, baseline)
        if baseline is not None:
            streak = min(streak, (today - baseline.day).days + 1)
        clean = streak
    return Report(
        account=account,
        thresholds=thresholds,
        counts=counts,
        rates_apply=verdict.rates_apply,
        review=verdict.review,
        score=sum(d.points for d in drivers),
        drivers=drivers,
        meters=[
            _meter("bounce", counts, thresholds, verdict.bounce_level),
            _meter("complaint", counts, thresholds, verdict.complaint_level),
        ],
        advice=_advice(counts, drivers, account, verdict.review),
        chart=chart,
        trend_rows=trend_rows,
        history=history,
        has_data=has_data,
        clean_days=clean,
        domains=domains,
    )


def score_summary(account: SendingAccount, now: datetime) -> dict[str, Any]:
    """The score and the two rates only (the account page's panel): two small queries."""
    thresholds = Thresholds.cached()
    today = utc_day(now)
    by_day = load_counts([account.pk], today - timedelta(days=thresholds.window_days), today).get(account.pk, {})
    state = ReputationState.objects.filter(sending_account=account).first()
    counts = window_counts(by_day, today, thresholds.window_days, lift_baseline(state) if state else None)
    drivers = score_parts(counts, thresholds, domain_authentication(account))
    return {
        "score": sum(d.points for d in drivers),
        "bounce": percent(counts.bounce_rate),
        "complaint": percent(counts.complaint_rate, 3),
        "has_mail": bool(counts.attempted),
    }
