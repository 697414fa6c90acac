"""Reputation services: the scheduled evaluation, the XES team's decisions, alarms, the rate factor.

Every change of standing goes through :func:`change_standing` with the account row locked
(``SELECT ... FOR UPDATE``), so the job and a team member acting at the same moment cannot both
act on a stale standing. Side effects (the ``standing_changed`` signal, e-mails) run after commit.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.mail import mail_admins
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import SendingAccount, User
from accounts.services import ServiceError
from deliverability.reputation import emails
from deliverability.reputation.models import (
    Alarm,
    CountedEvent,
    DailyCounter,
    ReputationState,
    StandingChange,
    Thresholds,
)
from deliverability.reputation.rules import (
    Baseline,
    Counts,
    Verdict,
    assess,
    clean_streak,
    next_standing,
    window_counts,
)
from deliverability.signals import standing_changed

logger = logging.getLogger(__name__)

Standing = SendingAccount.Standing
Kind = StandingChange.Kind
# Event identities are kept this much longer than the window, for events that arrive late.
COUNTED_EVENT_GRACE = timedelta(days=7)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


# --- reading counters ---------------------------------------------------------------------------


def days_needed(thresholds: Thresholds) -> int:
    """Days of counters the evaluation reads: the window, and the windows of the clean days."""
    return thresholds.window_days + thresholds.clean_days - 1


def load_counts(account_ids: list[int] | None, start: date, end: date) -> dict[int, dict[date, Counts]]:
    """Counters from ``start`` to ``end`` (included) per account and day; all accounts with None."""
    rows = DailyCounter.objects.filter(day__gte=start, day__lte=end)
    if account_ids is not None:
        rows = rows.filter(sending_account_id__in=account_ids)
    result: dict[int, dict[date, Counts]] = defaultdict(dict)
    for account_id, day, *values in rows.values_list(
        "sending_account_id", "day", "sent", "delivered", "hard_bounces", "soft_bounces", "complaints"
    ).order_by():
        result[account_id][day] = Counts(*values)
    return result


def _baseline(day: date | None, counts: dict[str, Any]) -> Baseline | None:
    return Baseline(day, Counts.from_dict(counts)) if day is not None else None


def lift_baseline(state: ReputationState) -> Baseline | None:
    return _baseline(state.floor_day, state.floor_counts)


def probation_baseline(state: ReputationState) -> Baseline | None:
    return Baseline.latest(lift_baseline(state), _baseline(state.probation_day, state.probation_counts))


def _counts_today(account_id: int, today: date) -> Counts:
    row = DailyCounter.objects.filter(sending_account_id=account_id, day=today).first()
    return Counts(row.sent, row.delivered, row.hard_bounces, row.soft_bounces, row.complaints) if row else Counts()


# --- words with numbers -------------------------------------------------------------------------


def percent(rate: Decimal | None, places: int = 2) -> str:
    if rate is None:
        return "–"
    text = f"{rate:.{places}f}".rstrip("0").rstrip(".")
    return f"{text}%"


def describe_window(counts: Counts, thresholds: Thresholds) -> str:
    """The window's figures in one sentence, for reasons and alarms."""
    return _(
        "Last %(days)s days: bounce rate %(bounce)s (%(hard)s hard bounces of %(sent)s e-mails sent), complaint "
        "rate %(complaint)s (%(complaints)s complaints of %(delivered)s delivered)."
    ) % {
        "days": thresholds.window_days,
        "bounce": percent(counts.bounce_rate),
        "hard": f"{counts.hard_bounces:,}",
        "sent": f"{counts.attempted:,}",
        "complaint": percent(counts.complaint_rate, 3),
        "complaints": f"{counts.complaints:,}",
        "delivered": f"{counts.delivered:,}",
    }


def figures(counts: Counts) -> dict[str, Any]:
    return {
        **counts.as_dict(),
        "bounce_rate": None if counts.bounce_rate is None else str(round(counts.bounce_rate, 3)),
        "complaint_rate": None if counts.complaint_rate is None else str(round(counts.complaint_rate, 4)),
    }


def _levels_text(verdict: Verdict, thresholds: Thresholds, level: str) -> str:
    """Which rate reached ``level``, and that level's thresholds."""
    parts = []
    if verdict.bounce_level == level:
        parts.append(
            _("the bounce rate reached %(rate)s")
            % {"rate": percent(getattr(thresholds, f"{_prefix(level)}_bounce_rate"))}
        )
    if verdict.complaint_level == level:
        parts.append(
            _("the complaint rate reached %(rate)s")
            % {"rate": percent(getattr(thresholds, f"{_prefix(level)}_complaint_rate"), 3)}
        )
    return _(" and ").join(parts)


def _prefix(level: str) -> str:
    return {Standing.WARNING: "warning", Standing.PROBATION: "probation", Standing.SUSPENDED: "suspended"}[
        Standing(level)
    ]


def automatic_reason(old: str, new: str, why: str, verdict: Verdict, thresholds: Thresholds) -> str:
    numbers = describe_window(verdict.counts, thresholds)
    if why == "clean":
        head = ngettext(
            "%(n)s day in a row below the warning levels: the probation has ended.",
            "%(n)s days in a row below the warning levels: the probation has ended.",
            thresholds.clean_days,
        ) % {"n": thresholds.clean_days}
    elif why == "repeat":
        head = _(
            "Bounces or complaints reached the probation level again; a probation number %(n)s within %(days)s days "
            "suspends the account."
        ) % {"n": thresholds.probations_to_suspend, "days": thresholds.probation_period_days}
    elif new == Standing.GOOD:
        head = _("Bounces and complaints are back below the warning levels.")
    else:
        strictest = {
            Standing.WARNING: _("Warning level reached"),
            Standing.PROBATION: _("Probation level reached"),
            Standing.SUSPENDED: _("Suspension level reached"),
        }[Standing(new)]
        head = f"{strictest}: {_levels_text(verdict, thresholds, new)}."
    return f"{head} {numbers}"


# --- the scheduled evaluation -------------------------------------------------------------------


def evaluate_standings(now: datetime | None = None) -> dict[str, int]:
    """Evaluate every account with recent mail or a standing other than good, then the platform.

    1. Read the counters of the days the rules need, for all accounts, in one query.
    2. For each account (its row locked): assess the window, open a review if needed, and apply
       the automatic move of :func:`~deliverability.reputation.rules.next_standing`.
    3. Check the platform's rates over all accounts (the platform alarm).
    4. Forget event identities older than the window and its grace.
    Returns counts for the job's log.
    """
    now = now or timezone.now()
    thresholds = Thresholds.current()
    today = utc_day(now)
    start = today - timedelta(days=days_needed(thresholds) - 1)
    counts = load_counts(None, start, today)
    watched = set(SendingAccount.objects.exclude(standing=Standing.GOOD).values_list("pk", flat=True))
    summary = {"accounts": 0, "changed": 0, "reviews": 0}
    for account_id in sorted(set(counts) | watched):
        summary["accounts"] += 1
        outcome = evaluate_account(account_id, counts.get(account_id, {}), now, thresholds)
        summary["changed"] += int(outcome.changed)
        summary["reviews"] += int(outcome.review_opened)
    check_platform(counts, now, thresholds)
    CountedEvent.objects.filter(
        counted_at__lt=now - timedelta(days=thresholds.window_days) - COUNTED_EVENT_GRACE
    ).delete()
    return summary


@dataclass
class Outcome:
    """What one account's evaluation did."""

    changed: bool = False
    review_opened: bool = False


def evaluate_account(account_id: int, by_day: dict[date, Counts], now: datetime, thresholds: Thresholds) -> Outcome:
    """Assess one account's window and apply the automatic move (one transaction, row locked)."""
    today = utc_day(now)
    outcome = Outcome()
    with transaction.atomic():
        account = SendingAccount.objects.select_for_update().filter(pk=account_id).first()
        if account is None:
            return outcome
        state, _created = ReputationState.objects.get_or_create(sending_account=account)
        verdict = assess(window_counts(by_day, today, thresholds.window_days, lift_baseline(state)), thresholds)
        _store_snapshot(state, verdict.counts, now)
        if verdict.review:
            outcome.review_opened = _open_review(account, verdict, thresholds, now)
        may_end = account.standing == Standing.PROBATION and _probation_may_end(account, state, by_day, now, thresholds)
        recent = 0
        if verdict.level == Standing.PROBATION and account.standing in (Standing.GOOD, Standing.WARNING):
            recent = recent_probations(account.pk, now, thresholds)
        move = next_standing(
            account.standing, verdict, probation_may_end=may_end, recent_probations=recent, thresholds=thresholds
        )
        if move is not None:
            new, why = move
            change_standing(
                account,
                new,
                kind=Kind.AUTOMATIC,
                reason=automatic_reason(account.standing, new, why, verdict, thresholds),
                figures={**figures(verdict.counts), "why": why},
                now=now,
            )
            outcome.changed = True
    return outcome


def _store_snapshot(state: ReputationState, counts: Counts, now: datetime) -> None:
    state.evaluated_at = now
    state.sent, state.delivered = counts.attempted, counts.delivered
    state.hard_bounces, state.complaints = counts.hard_bounces, counts.complaints
    state.bounce_rate = None if counts.bounce_rate is None else round(counts.bounce_rate, 3)
    state.complaint_rate = None if counts.complaint_rate is None else round(counts.complaint_rate, 3)
    state.save()


def _probation_may_end(
    account: SendingAccount, state: ReputationState, by_day: dict[date, Counts], now: datetime, t: Thresholds
) -> bool:
    """The probation has lasted ``clean_days`` days, each below the warning levels (judged on the
    mail since it began)."""
    began = account.standing_changed_at
    if began is not None and now - began < timedelta(days=t.clean_days):
        return False
    return clean_streak(by_day, utc_day(now), t, probation_baseline(state)) >= t.clean_days


def recent_probations(account_id: int, now: datetime, thresholds: Thresholds) -> int:
    """Probations that began within the period (automatic or by the XES team)."""
    return (
        StandingChange.objects.filter(
            sending_account_id=account_id,
            new=Standing.PROBATION,
            at__gt=now - timedelta(days=thresholds.probation_period_days),
        )
        .exclude(kind=Kind.NOTE)
        .count()
    )


# --- changing the standing ----------------------------------------------------------------------


def change_standing(
    account: SendingAccount,
    new: str,
    *,
    kind: str,
    reason: str,
    figures: dict[str, Any] | None = None,
    by: User | None = None,
    notes: str = "",
    now: datetime | None = None,
) -> StandingChange:
    """Record a change of standing (the caller holds the account row locked).

    Keeps the history, the probation baseline and the alarms; after commit, sends
    ``standing_changed`` (campaigns pause) and e-mails the organisation's owners."""
    now = now or timezone.now()
    old = account.standing
    account.standing, account.standing_changed_at = new, now
    SendingAccount.objects.filter(pk=account.pk).update(standing=new, standing_changed_at=now)
    change = StandingChange.objects.create(
        sending_account=account,
        kind=kind,
        old=old,
        new=new,
        reason=reason,
        notes=notes,
        figures=figures or {},
        at=now,
        by=by,
    )
    if new == Standing.PROBATION:
        ReputationState.objects.update_or_create(
            sending_account=account,
            defaults={
                "probation_day": utc_day(now),
                "probation_counts": _counts_today(account.pk, utc_day(now)).as_dict(),
            },
        )
    _alarms_for_change(account, old, new, reason, change.figures, by, notes, now)
    account_id = account.pk

    def announce() -> None:
        standing_changed.send(sender=SendingAccount, sending_account_id=account_id, old=old, new=new, reason=reason)
        emails.standing_changed(change)

    transaction.on_commit(announce)
    return change


def _alarms_for_change(
    account: SendingAccount,
    old: str,
    new: str,
    reason: str,
    data: dict[str, Any],
    by: User | None,
    notes: str,
    now: datetime,
) -> None:
    closing = notes or reason
    if old == Standing.PROBATION and new != Standing.PROBATION:
        resolve_alarms(account, [Alarm.Kind.PROBATION], by=by, note=closing, now=now)
    if old == Standing.SUSPENDED and new != Standing.SUSPENDED:
        resolve_alarms(account, [Alarm.Kind.SUSPENSION], by=by, note=closing, now=now)
    if new == Standing.PROBATION:
        open_alarm(Alarm.Kind.PROBATION, account, reason, data, now)
    elif new == Standing.SUSPENDED:
        open_alarm(Alarm.Kind.SUSPENSION, account, reason, data, now)


def _locked(account: SendingAccount) -> SendingAccount:
    return SendingAccount.objects.select_for_update().select_related("organisation").get(pk=account.pk)


def _require_note(note: str) -> str:
    note = (note or "").strip()
    if not note:
        raise ServiceError(_("A note is required."))
    return note


def _restart_window(account: SendingAccount, now: datetime) -> None:
    """After a lift, judge the account only on what it sends from now on."""
    today = utc_day(now)
    ReputationState.objects.update_or_create(
        sending_account=account,
        defaults={"floor_day": today, "floor_counts": _counts_today(account.pk, today).as_dict()},
    )


def _lift(
    account: SendingAccount, *, standing: str, refusal: str, reason: str, by: User, note: str, now: datetime | None
) -> StandingChange:
    """The XES team returns an account from ``standing`` to good standing; the window restarts now."""
    note, now = _require_note(note), now or timezone.now()
    with transaction.atomic():
        locked = _locked(account)
        if locked.standing != standing:
            raise ServiceError(refusal % {"account": locked})
        _restart_window(locked, now)
        return change_standing(locked, Standing.GOOD, kind=Kind.TEAM, reason=reason, by=by, notes=note, now=now)


def lift_probation(account: SendingAccount, *, by: User, note: str, now: datetime | None = None) -> StandingChange:
    """The XES team ends a probation early (good standing; the window restarts now)."""
    return _lift(
        account,
        standing=Standing.PROBATION,
        refusal=_("%(account)s is not on probation."),
        reason=_("The XES team lifted the probation."),
        by=by,
        note=note,
        now=now,
    )


def lift_suspension(account: SendingAccount, *, by: User, note: str, now: datetime | None = None) -> StandingChange:
    """The XES team lifts a suspension (good standing; the window restarts now). Paused campaigns
    stay paused until the customer resumes them."""
    return _lift(
        account,
        standing=Standing.SUSPENDED,
        refusal=_("%(account)s is not suspended."),
        reason=_("The XES team lifted the suspension."),
        by=by,
        note=note,
        now=now,
    )


def put_on_probation(account: SendingAccount, *, by: User, note: str, now: datetime | None = None) -> StandingChange:
    """The XES team puts an account on probation (after a review, or from suspended)."""
    note, now = _require_note(note), now or timezone.now()
    with transaction.atomic():
        locked = _locked(account)
        if locked.standing == Standing.PROBATION:
            raise ServiceError(_("%(account)s is already on probation.") % {"account": locked})
        if locked.standing == Standing.SUSPENDED:
            _restart_window(locked, now)
        change = change_standing(
            locked,
            Standing.PROBATION,
            kind=Kind.TEAM,
            reason=_("The XES team put the account on probation after a review."),
            by=by,
            notes=note,
            now=now,
        )
        resolve_alarms(locked, [Alarm.Kind.REVIEW], by=by, note=note, now=now)
        return change


def suspend(account: SendingAccount, *, by: User, note: str, now: datetime | None = None) -> StandingChange:
    """The XES team suspends an account."""
    note, now = _require_note(note), now or timezone.now()
    with transaction.atomic():
        locked = _locked(account)
        if locked.standing == Standing.SUSPENDED:
            raise ServiceError(_("%(account)s is already suspended.") % {"account": locked})
        change = change_standing(
            locked,
            Standing.SUSPENDED,
            kind=Kind.TEAM,
            reason=_("The XES team suspended the account after a review."),
            by=by,
            notes=note,
            now=now,
        )
        resolve_alarms(locked, [Alarm.Kind.REVIEW], by=by, note=note, now=now)
        return change


def add_note(account: SendingAccount, *, by: User, note: str, now: datetime | None = None) -> StandingChange:
    """A note of the XES team in the account's history (the customer does not see notes)."""
    note = _require_note(note)
    return StandingChange.objects.create(
        sending_account=account,
        kind=Kind.NOTE,
        old=account.standing,
        new=account.standing,
        reason=_("Note of the XES team."),
        notes=note,
        at=now or timezone.now(),
        by=by,
    )


# --- alarms -------------------------------------------------------------------------------------


def open_alarm(
    kind: str, account: SendingAccount | None, message: str, data: dict[str, Any], now: datetime
) -> Alarm | None:
    """Open an alarm unless one of that kind is open for the account; None when one was."""
    if Alarm.objects.filter(kind=kind, sending_account=account, resolved_at__isnull=True).exists():
        return None
    try:
        with transaction.atomic():
            alarm = Alarm.objects.create(
                kind=kind, sending_account=account, message=message, figures=data, opened_at=now
            )
    except IntegrityError:  # opened concurrently
        return None
    subject = f"{alarm.get_kind_display()}: {account or _('all accounts')}"
    logger.warning("reputation alarm: %s — %s", subject, message)
    transaction.on_commit(lambda: _tell_the_team(subject, message))
    return alarm


def _tell_the_team(subject: str, message: str) -> None:
    """E-mail ``ADMINS`` (nobody when unset); the admin's home page lists the alarm either way."""
    try:
        mail_admins(subject, message)
    except Exception:  # noqa: BLE001 - a mail server problem must not undo or fail the evaluation
        logger.exception("reputation: could not e-mail the alarm to ADMINS")


def resolve_alarms(
    account: SendingAccount | None, kinds: list[str], *, by: User | None, note: str, now: datetime
) -> int:
    return Alarm.objects.filter(sending_account=account, kind__in=kinds, resolved_at__isnull=True).update(
        resolved_at=now, resolved_by=by, resolution=note
    )


def resolve_alarm(alarm: Alarm, *, by: User, note: str, now: datetime | None = None) -> bool:
    """The XES team closes an alarm with a note. A closed review reopens only on more complaints or
    hard bounces than it was closed with."""
    note = _require_note(note)
    now = now or timezone.now()
    if alarm.kind == Alarm.Kind.REVIEW and alarm.sending_account_id is not None:
        state = ReputationState.objects.filter(sending_account_id=alarm.sending_account_id).first()
        if state is not None:
            alarm.figures = {
                **alarm.figures,
                "closed_with": {"complaints": state.complaints, "hard_bounces": state.hard_bounces},
            }
    changed = Alarm.objects.filter(pk=alarm.pk, resolved_at__isnull=True).update(
        resolved_at=now, resolved_by=by, resolution=note, figures=alarm.figures
    )
    return changed == 1


def _open_review(account: SendingAccount, verdict: Verdict, thresholds: Thresholds, now: datetime) -> bool:
    """Few deliveries but enough complaints or hard bounces: a review for the XES team."""
    counts = verdict.counts
    last = (
        Alarm.objects.filter(
            kind=Alarm.Kind.REVIEW,
            sending_account=account,
            resolved_at__gt=now - timedelta(days=thresholds.window_days),
        )
        .order_by("-resolved_at")
        .first()
    )
    if last is not None:
        closed_with = last.figures.get("closed_with") or last.figures
        if counts.complaints <= int(closed_with.get("complaints") or 0) and counts.hard_bounces <= int(
            closed_with.get("hard_bounces") or 0
        ):
            return False  # nothing new since the team looked
    message = _(
        "Only %(delivered)s deliveries in the last %(days)s days (rates apply from %(min)s), but %(complaints)s "
        "complaints and %(hard)s hard bounces: please review the account."
    ) % {
        "delivered": f"{counts.delivered:,}",
        "days": thresholds.window_days,
        "min": f"{thresholds.min_deliveries:,}",
        "complaints": counts.complaints,
        "hard": counts.hard_bounces,
    }
    return open_alarm(Alarm.Kind.REVIEW, account, message, figures(counts), now) is not None


def check_platform(by_account: dict[int, dict[date, Counts]], now: datetime, thresholds: Thresholds) -> bool:
    """The rates over all accounts against the platform alarm levels (near SES's own review levels:
    SES judges the whole SES account). Opens the alarm, or resolves it once the rates are back."""
    today = utc_day(now)
    total = Counts.total(window_counts(days, today, thresholds.window_days) for days in by_account.values())
    high = total.delivered >= thresholds.min_deliveries and (
        (total.bounce_rate or 0) >= thresholds.platform_bounce_alarm
        or (total.complaint_rate or 0) >= thresholds.platform_complaint_alarm
    )
    if high:
        message = _(
            "Platform-wide rates are close to the levels at which SES reviews the whole SES account (5%% bounces, "
            "0.1%% complaints). %(figures)s"
        ) % {"figures": describe_window(total, thresholds)}
        open_alarm(Alarm.Kind.PLATFORM, None, message, figures(total), now)
    else:
        resolve_alarms(
            None,
            [Alarm.Kind.PLATFORM],
            by=None,
            note=_("The platform's rates are back below the alarm levels."),
            now=now,
        )
    return high


def platform_counts(now: datetime | None = None) -> Counts:
    """The window's counts over all accounts (the admin's alarm panel)."""
    now = now or timezone.now()
    thresholds = Thresholds.cached()
    today = utc_day(now)
    totals = DailyCounter.objects.filter(
        day__gt=today - timedelta(days=thresholds.window_days), day__lte=today
    ).aggregate(*(Sum(c) for c in ("sent", "delivered", "hard_bounces", "soft_bounces", "complaints")))
    return Counts(
        *(int(totals[f"{c}__sum"] or 0) for c in ("sent", "delivered", "hard_bounces", "soft_bounces", "complaints"))
    )


# --- for the sending engine ---------------------------------------------------------------------


def rate_factor(sending_account: SendingAccount) -> float:
    """The share of its normal sending rate an account may use: lower on probation (and when
    suspended, where nothing is sent anyway), 1.0 otherwise. No query beyond a cached setting."""
    if sending_account.standing in (Standing.PROBATION, Standing.SUSPENDED):
        return float(Thresholds.cached().probation_rate_factor)
    return 1.0
