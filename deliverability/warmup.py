"""Dedicated IPs and their automatic warm-up, and the advisor that tells an owner whether one pays off.

A new IP has no reputation: mailbox providers distrust sudden volume from it. So an account whose
pool gets its first dedicated IP also gets a warm-up schedule: day N (counted in UTC from
``starts_on``) may send at most day N's cap, rising over about 45 days to the account's normal
volume. :func:`daily_cap` is the number the sending engine obeys; after the last day it is None.

PRODUCT.md: a dedicated IP is "recommended only for a steady sending pattern of at least 175,000
e-mails per day on average"; :func:`advice` compares the account's recent average with that.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import SendingAccount, User
from accounts.services import ServiceError
from deliverability.models import DedicatedIp, IpPool, WarmupDay, WarmupSchedule
from deliverability.providers import account_resource_name, ensure_setup, provider_for
from plans.services import sending_account_usage

RECOMMENDED_DAILY_VOLUME = 175_000  # PRODUCT.md: a dedicated IP only from this average daily volume
WARMUP_DAYS = 45  # length of the default warm-up
WARMUP_START_CAP = 500  # day 1 of the default warm-up: small enough for any mailbox provider
ADVICE_WINDOW_DAYS = 30  # the advisor averages this many full UTC days
CLOSE_PERCENT = 80  # from this share of the recommendation, the advisor says "close"

AdviceKey = Literal["no_volume", "below", "close", "enough"]
DayState = Literal["past", "today", "future"]


def today_utc() -> date:
    """Warm-up days are UTC calendar days, whatever the server's or the user's time zone."""
    return timezone.now().astimezone(UTC).date()


def pool_name(account: SendingAccount) -> str:
    """The provider's name of the account's dedicated IP pool (also stored on :class:`IpPool`):
    ``<SES_NAME_PREFIX>-acct-<pk>``, like its configuration set."""
    return account_resource_name(account.pk)


# --- the advisor --------------------------------------------------------------------------


def average_daily_volume(account: SendingAccount, now: datetime | None = None) -> int:
    """E-mails the account sent per day on average over the last 30 full UTC days (today excluded).

    Sent means consumed in the credit ledger (the provider accepted the message). The sum is divided
    by 30 even for a younger account: the recommendation is about a *steady* pattern, and a few busy
    days must not look like one. The result is rounded down, so the advisor never calls an account
    that falls short of the recommendation by a fraction of an e-mail "enough".
    """
    now = now or timezone.now()
    end = datetime.combine(now.astimezone(UTC).date(), datetime.min.time(), tzinfo=UTC)
    start = end - timedelta(days=ADVICE_WINDOW_DAYS)
    return sending_account_usage(account, start, end) // ADVICE_WINDOW_DAYS


@dataclass(frozen=True)
class Advice:
    """The advisor's verdict: the account's recent average against the recommended volume."""

    average: int
    recommended_volume: int
    percent: int  # the average as a share of the recommendation, rounded down; may exceed 100
    recommended: bool  # a dedicated IP is recommended for this account
    key: AdviceKey  # which plain-words explanation the page shows

    @property
    def bar(self) -> str:
        """Width of the progress bar as a CSS percentage (a plain string, never localised)."""
        return str(min(100, self.percent))

    @property
    def shortfall(self) -> int:
        """E-mails per day missing to reach the recommendation (0 when it is reached)."""
        return max(0, self.recommended_volume - self.average)


def advice(account: SendingAccount, now: datetime | None = None) -> Advice:
    """Whether a dedicated IP is recommended for ``account``, from its last 30 days of sending."""
    average = average_daily_volume(account, now)
    percent = average * 100 // RECOMMENDED_DAILY_VOLUME
    key: AdviceKey
    if average >= RECOMMENDED_DAILY_VOLUME:
        key = "enough"
    elif average == 0:
        key = "no_volume"
    elif percent >= CLOSE_PERCENT:
        key = "close"
    else:
        key = "below"
    return Advice(
        average=average,
        recommended_volume=RECOMMENDED_DAILY_VOLUME,
        percent=percent,
        recommended=key == "enough",
        key=key,
    )


# --- schedules ----------------------------------------------------------------------------


def readable(value: float) -> int:
    """Round to two significant digits (12,345 -> 12,000; 987 -> 990), so caps read like plans."""
    if value < 100:
        return max(1, round(value))
    magnitude = 10 ** (int(math.log10(value)) - 1)
    return round(value / magnitude) * magnitude


def default_schedule(target_daily_volume: int, days: int = WARMUP_DAYS) -> list[int]:
    """Daily caps that rise geometrically from :data:`WARMUP_START_CAP` to ``target_daily_volume``.

    A constant daily growth factor is how providers recommend warming an IP up: the same relative
    step every day, small in absolute numbers at first. Caps are rounded to readable numbers, never
    go down, never exceed the target, and the last day is exactly the target.
    """
    if target_daily_volume < 1:
        raise ValueError("target_daily_volume must be positive")
    if days < 1:
        raise ValueError("days must be positive")
    start = min(WARMUP_START_CAP, target_daily_volume)
    if days == 1:
        return [target_daily_volume]
    growth = (target_daily_volume / start) ** (1 / (days - 1))
    caps: list[int] = []
    previous = 0
    for index in range(days - 1):
        cap = min(target_daily_volume, max(previous, readable(start * growth**index)))
        caps.append(cap)
        previous = cap
    caps.append(target_daily_volume)
    return caps


def cap_problems(caps: Sequence[int]) -> list[str]:
    """What is wrong with a list of daily caps (day 1 first), in plain words; empty when all is fine.

    Caps must be positive and must not go down: a warm-up that lowers the cap would throttle an
    account that is doing exactly what it should.
    """
    problems: list[str] = []
    if not caps:
        problems.append(_("A warm-up needs at least one day."))
    for day, cap in enumerate(caps, start=1):
        if cap < 1:
            problems.append(_("Day %(day)s: the cap must be at least 1 e-mail.") % {"day": day})
    for day in range(2, len(caps) + 1):
        before, cap = caps[day - 2], caps[day - 1]
        if cap < before:
            message = _("Day %(day)s: the cap (%(cap)s) is lower than the day before (%(before)s); caps never go down.")
            problems.append(message % {"day": day, "cap": f"{cap:,}", "before": f"{before:,}"})
    return problems


def _write_days(schedule: WarmupSchedule, caps: Sequence[int]) -> None:
    WarmupDay.objects.bulk_create(
        WarmupDay(schedule=schedule, day=day, daily_cap=cap) for day, cap in enumerate(caps, start=1)
    )


def regenerate_schedule(schedule: WarmupSchedule, target_daily_volume: int, days: int = WARMUP_DAYS) -> WarmupSchedule:
    """Replace a schedule's days with the default ramp to a new target (the XES team's tool).

    ``starts_on`` stays: an account in the middle of its warm-up continues on the new curve at the
    same day number.
    """
    caps = default_schedule(target_daily_volume, days)
    with transaction.atomic():
        locked = WarmupSchedule.objects.select_for_update().get(pk=schedule.pk)
        locked.days.all().delete()
        _write_days(locked, caps)
        locked.target_daily_volume = target_daily_volume
        locked.save(update_fields=["target_daily_volume"])
    schedule.refresh_from_db()
    return schedule


def warmup_target(account: SendingAccount, now: datetime | None = None) -> int:
    """The volume a new warm-up ramps up to: the account's normal daily volume, at least 175,000.

    A dedicated IP is sized for the recommended volume; an account that sends less (or has no
    history yet, say it moves from another platform) still gets a ramp that ends where a dedicated
    IP is meant to be, and an account that sends more ramps up to its own average.
    """
    return max(average_daily_volume(account, now), RECOMMENDED_DAILY_VOLUME)


# --- assigning IPs ------------------------------------------------------------------------


def assign_ip(account: SendingAccount, address: str, by: User | None, starts_on: date | None = None) -> DedicatedIp:
    """Put a dedicated IP into the account's pool, at the provider and in the database.

    1. Make sure the account is set up at its provider (its own idempotent step, before anything else).
    2. In one transaction: create the pool if the account has none, add the IP, and create the
       warm-up schedule if the pool has none (``starts_on`` defaults to today, UTC). A second IP
       joins the running warm-up: the pool's reputation is warmed as a whole, it does not restart.
    3. Still inside the transaction, tell the provider: ensure the pool, assign the IP, and send
       the account's mail through the pool. A provider error rolls the rows back, so nothing
       changes half-way here; the provider calls are idempotent, so trying again is safe.

    Raises :class:`~accounts.services.ServiceError` for an invalid or already assigned address and
    :class:`~deliverability.providers.ProviderError` (``.user_message``) when the provider refuses.
    """
    try:
        ip = str(ipaddress.ip_address(address.strip()))
    except ValueError as exc:
        raise ServiceError(_("“%(address)s” is not an IP address.") % {"address": address}) from exc
    taken = DedicatedIp.objects.filter(address=ip).select_related("pool").first()
    if taken is not None:
        raise ServiceError(
            _("%(address)s is already assigned to the pool %(pool)s.") % {"address": ip, "pool": taken.pool.name}
        )
    setup = ensure_setup(account)
    provider = provider_for(setup)
    with transaction.atomic():
        pool, _created = IpPool.objects.get_or_create(sending_account=account, defaults={"name": pool_name(account)})
        # Serialise assignments to one pool, so that two of them cannot both create the schedule.
        pool = IpPool.objects.select_for_update().get(pk=pool.pk)
        dedicated = DedicatedIp.objects.create(pool=pool, address=ip, assigned_by=by)
        if not WarmupSchedule.objects.filter(pool=pool).exists():
            target = warmup_target(account)
            schedule = WarmupSchedule.objects.create(
                pool=pool, starts_on=starts_on or today_utc(), target_daily_volume=target
            )
            _write_days(schedule, default_schedule(target))
        provider.ensure_ip_pool(pool.name)
        provider.assign_dedicated_ip(pool.name, ip)
        provider.use_ip_pool(setup, pool.name)
    return dedicated


# --- the cap and the progress -------------------------------------------------------------


def _day_number(starts_on: date, on: date) -> int:
    """1-based warm-up day of ``on``; days before the start count as day 1 (see :func:`daily_cap`)."""
    return max(1, (on - starts_on).days + 1)


def _cap_on(days: Sequence[tuple[int, int]], number: int) -> int | None:
    """The cap of day ``number`` in ``(day, cap)`` rows sorted by day; None after the last day.

    With a gap in the days (the admin does not allow one) the latest day before applies.
    """
    if not days or number > days[-1][0]:
        return None
    cap = days[0][1]
    for day, day_cap in days:
        if day > number:
            break
        cap = day_cap
    return cap


def daily_cap(account: SendingAccount | int, on: date | None = None) -> int | None:
    """How many e-mails the account may send on the UTC day ``on`` (today) under its warm-up.

    None means no warm-up limit: the account has no dedicated IP (no schedule), or the schedule is
    over (after its last day). Before ``starts_on`` the day-1 cap applies: :func:`assign_ip` routes
    the account through its pool at once, so the new IP is already in use and must be treated
    gently; a later ``starts_on`` just lengthens the first day.

    One query (a schedule has a few dozen days): the sending engine calls this often.
    """
    account_id = account if isinstance(account, int) else account.pk
    rows = list(
        WarmupDay.objects.filter(schedule__pool__sending_account_id=account_id)
        .order_by("day")
        .values_list("day", "daily_cap", "schedule__starts_on")
    )
    if not rows:
        return None
    number = _day_number(rows[0][2], on or today_utc())
    return _cap_on([(day, cap) for day, cap, _starts in rows], number)


@dataclass(frozen=True)
class WarmupDayRow:
    """One day of a schedule as the portal shows it."""

    day: int
    date: date
    cap: int
    state: DayState


@dataclass(frozen=True)
class WarmupProgress:
    """Where an account stands in its warm-up on one UTC day."""

    starts_on: date
    ends_on: date  # the last day with a cap
    target: int
    day: int  # today's day number; 0 before the start, ``days`` + n after the end
    days: int
    cap: int | None  # today's cap (day 1's before the start), None when the warm-up is over
    rows: list[WarmupDayRow]

    @property
    def started(self) -> bool:
        return self.day >= 1

    @property
    def finished(self) -> bool:
        return self.day > self.days

    @property
    def percent(self) -> int:
        """Share of the warm-up days completed, today included (100 once it is over)."""
        return min(100, max(0, self.day) * 100 // self.days) if self.days else 100


def progress(account: SendingAccount, on: date | None = None) -> WarmupProgress | None:
    """The account's warm-up for the portal on the UTC day ``on`` (today); None without a schedule."""
    on = on or today_utc()
    schedule = WarmupSchedule.objects.filter(pool__sending_account=account).first()
    if schedule is None:
        return None
    days = list(schedule.days.order_by("day").values_list("day", "daily_cap"))
    if not days:
        return None
    elapsed = (on - schedule.starts_on).days + 1  # 0 or less before the start
    rows = []
    for day, cap in days:
        when = schedule.starts_on + timedelta(days=day - 1)
        state: DayState = "past" if when < on else "today" if when == on else "future"
        rows.append(WarmupDayRow(day=day, date=when, cap=cap, state=state))
    last = days[-1][0]
    return WarmupProgress(
        starts_on=schedule.starts_on,
        ends_on=schedule.starts_on + timedelta(days=last - 1),
        target=schedule.target_daily_volume,
        day=max(0, elapsed),
        days=last,
        cap=_cap_on(days, _day_number(schedule.starts_on, on)),
        rows=rows,
    )


__all__ = [
    "RECOMMENDED_DAILY_VOLUME",
    "WARMUP_DAYS",
    "Advice",
    "WarmupDayRow",
    "WarmupProgress",
    "advice",
    "assign_ip",
    "average_daily_volume",
    "cap_problems",
    "daily_cap",
    "default_schedule",
    "pool_name",
    "progress",
    "regenerate_schedule",
    "today_utc",
    "warmup_target",
]
