"""Dedicated IPs and their warm-up: the default schedule, the daily cap the sending engine obeys (per
UTC day, with frozen time), the XES team's edits, the advisor's figures from the credit ledger, and
assigning IPs (provider first: a provider error leaves nothing behind)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from accounts.models import SendingAccount
from accounts.services import ServiceError
from deliverability import warmup
from deliverability.models import DedicatedIp, IpPool, WarmupDay, WarmupSchedule
from deliverability.providers import ProviderError, ensure_setup, provider_for
from plans import services
from plans.models import Plan, Subscription
from tests.conftest import Tenant

START = date(2026, 3, 10)  # day 1 of the warm-ups below; day 45 is 23 April 2026


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _grant_premium(tenant: Tenant, at: datetime) -> Subscription:
    """12,000,000 included e-mails, enough to send a dedicated IP's volume."""
    return services.grant_plan(
        tenant.organisation, Plan.objects.get(code="PREMIUM"), origin=Subscription.Origin.XES_TEAM, at=at
    )


def _send(account: SendingAccount, emails: int, at: datetime) -> None:
    """Reserve and consume: the ledger's CONSUME entry is what counts as sent."""
    reservation = services.reserve(account.organisation, emails, sending_account=account, at=at)
    services.consume(reservation, emails, at=at)


def _schedule(account: SendingAccount, caps: list[int], starts_on: date = START) -> WarmupSchedule:
    pool = IpPool.objects.create(sending_account=account, name=warmup.pool_name(account))
    DedicatedIp.objects.create(pool=pool, address="192.0.2.10")
    schedule = WarmupSchedule.objects.create(pool=pool, starts_on=starts_on, target_daily_volume=caps[-1])
    WarmupDay.objects.bulk_create(
        WarmupDay(schedule=schedule, day=day, daily_cap=cap) for day, cap in enumerate(caps, start=1)
    )
    return schedule


@pytest.fixture
def warm(tenant: Tenant) -> WarmupSchedule:
    """The default 45-day ramp to 175,000 a day for account_a, starting on START."""
    return _schedule(tenant.account_a, warmup.default_schedule(175_000))


# --- the default schedule -----------------------------------------------------------------


@pytest.mark.parametrize("target", [175_000, 200_000, 1_000_000, 5_000_000])
def test_default_schedule_rises_over_45_days_from_a_small_start_to_the_target(target: int) -> None:
    caps = warmup.default_schedule(target)

    assert len(caps) == warmup.WARMUP_DAYS == 45
    assert caps[0] == 500
    assert caps[-1] == target
    assert all(later >= earlier for earlier, later in zip(caps, caps[1:], strict=False))
    assert max(caps) == target
    # It really ramps: a quarter of the way in, still far below the target.
    assert caps[11] < target / 20


def test_default_schedule_caps_are_readable_numbers() -> None:
    caps = warmup.default_schedule(175_000)

    # Two significant digits at most (the last day is the exact target).
    for cap in caps[:-1]:
        digits = str(cap).rstrip("0")
        assert len(digits) <= 2, cap
    assert caps[19] == 6_300  # day 20
    assert caps[43] == 150_000  # the day before the last


def test_default_schedule_for_a_target_below_the_start_is_flat() -> None:
    assert warmup.default_schedule(300, days=5) == [300, 300, 300, 300, 300]


def test_default_schedule_of_other_lengths() -> None:
    assert warmup.default_schedule(175_000, days=1) == [175_000]
    caps = warmup.default_schedule(175_000, days=30)
    assert len(caps) == 30
    assert (caps[0], caps[-1]) == (500, 175_000)


@pytest.mark.parametrize(("target", "days"), [(0, 45), (175_000, 0)])
def test_default_schedule_refuses_nonsense(target: int, days: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        warmup.default_schedule(target, days)


@pytest.mark.parametrize(
    ("value", "expected"), [(7, 7), (99.6, 100), (987, 990), (1_234, 1_200), (56_789, 57_000), (175_000, 180_000)]
)
def test_readable_rounds_to_two_significant_digits(value: float, expected: int) -> None:
    assert warmup.readable(value) == expected


def test_cap_problems_explain_what_is_wrong() -> None:
    assert warmup.cap_problems([500, 500, 1_000]) == []
    assert warmup.cap_problems([]) == ["A warm-up needs at least one day."]
    assert warmup.cap_problems([500, 0, 1_000]) == [
        "Day 2: the cap must be at least 1 e-mail.",
        "Day 2: the cap (0) is lower than the day before (500); caps never go down.",
    ]
    assert warmup.cap_problems([500, 2_000, 1_500]) == [
        "Day 3: the cap (1,500) is lower than the day before (2,000); caps never go down."
    ]


# --- the daily cap ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "day"),
    [
        (utc(2026, 3, 5, 12, 0), 1),  # before the start: day 1's cap (the IP is already in use)
        (utc(2026, 3, 10, 0, 0), 1),  # day 1 starts at midnight UTC
        (utc(2026, 3, 10, 23, 59, 59), 1),
        (utc(2026, 3, 11, 0, 0), 2),
        (utc(2026, 3, 29, 15, 30), 20),
        (utc(2026, 4, 23, 23, 59, 59), 45),  # the last day
    ],
)
def test_daily_cap_follows_the_schedule_day_by_day(
    tenant: Tenant, warm: WarmupSchedule, now: datetime, day: int
) -> None:
    caps = warmup.default_schedule(175_000)

    with time_machine.travel(now, tick=False):
        assert warmup.daily_cap(tenant.account_a) == caps[day - 1]


def test_daily_cap_values_on_fixed_days(tenant: Tenant, warm: WarmupSchedule) -> None:
    with time_machine.travel(utc(2026, 3, 10, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) == 500
    with time_machine.travel(utc(2026, 3, 29, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) == 6_300
    with time_machine.travel(utc(2026, 4, 23, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) == 175_000


def test_after_the_last_day_there_is_no_cap(tenant: Tenant, warm: WarmupSchedule) -> None:
    with time_machine.travel(utc(2026, 4, 24, 0, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) is None
    with time_machine.travel(utc(2027, 1, 1, 0, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) is None


def test_an_account_without_a_dedicated_ip_has_no_cap(tenant: Tenant, warm: WarmupSchedule) -> None:
    with time_machine.travel(utc(2026, 3, 20, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_b) is None
        assert warmup.daily_cap(tenant.account_a) is not None


def test_days_are_utc_days_whatever_the_active_time_zone(tenant: Tenant, warm: WarmupSchedule) -> None:
    caps = warmup.default_schedule(175_000)

    # 23:30 UTC on day 20 is already the next calendar day in Berlin: still day 20.
    with time_machine.travel(utc(2026, 3, 29, 23, 30), tick=False), timezone.override("Europe/Berlin"):
        assert warmup.daily_cap(tenant.account_a) == caps[19]


def test_daily_cap_for_an_explicit_day_and_by_account_id(tenant: Tenant, warm: WarmupSchedule) -> None:
    caps = warmup.default_schedule(175_000)

    assert warmup.daily_cap(tenant.account_a, on=date(2026, 3, 14)) == caps[4]
    assert warmup.daily_cap(tenant.account_a.pk, on=date(2026, 3, 14)) == caps[4]


def test_daily_cap_is_one_query(tenant: Tenant, warm: WarmupSchedule, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(1):
        warmup.daily_cap(tenant.account_a, on=date(2026, 3, 29))
    with django_assert_num_queries(1):
        warmup.daily_cap(tenant.account_b, on=date(2026, 3, 29))


def test_edits_by_the_xes_team_change_the_cap_at_once(tenant: Tenant, warm: WarmupSchedule) -> None:
    warm.days.filter(day=20).update(daily_cap=8_000)
    WarmupDay.objects.create(schedule=warm, day=46, daily_cap=175_000)

    with time_machine.travel(utc(2026, 3, 29, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) == 8_000
    # A day added at the end lengthens the warm-up.
    with time_machine.travel(utc(2026, 4, 24, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) == 175_000
    with time_machine.travel(utc(2026, 4, 25, 8, 0), tick=False):
        assert warmup.daily_cap(tenant.account_a) is None


def test_a_later_start_date_keeps_day_one(tenant: Tenant, warm: WarmupSchedule) -> None:
    WarmupSchedule.objects.filter(pk=warm.pk).update(starts_on=date(2026, 3, 20))

    assert warmup.daily_cap(tenant.account_a, on=date(2026, 3, 15)) == 500
    assert warmup.daily_cap(tenant.account_a, on=date(2026, 3, 21)) == warmup.default_schedule(175_000)[1]


def test_regenerate_schedule_replaces_the_caps_and_keeps_the_start(tenant: Tenant, warm: WarmupSchedule) -> None:
    warm.days.filter(day=20).update(daily_cap=8_000)

    warmup.regenerate_schedule(warm, 400_000, days=30)

    assert warm.target_daily_volume == 400_000
    assert warm.starts_on == START
    assert list(warm.days.order_by("day").values_list("daily_cap", flat=True)) == warmup.default_schedule(400_000, 30)
    assert warmup.daily_cap(tenant.account_a, on=date(2026, 4, 8)) == 400_000  # day 30
    assert warmup.daily_cap(tenant.account_a, on=date(2026, 4, 9)) is None


# --- progress -----------------------------------------------------------------------------


def test_progress_on_day_20(tenant: Tenant, warm: WarmupSchedule) -> None:
    with time_machine.travel(utc(2026, 3, 29, 8, 0), tick=False):
        progress = warmup.progress(tenant.account_a)

    assert progress is not None
    assert (progress.day, progress.days, progress.cap, progress.target) == (20, 45, 6_300, 175_000)
    assert (progress.started, progress.finished, progress.percent) == (True, False, 44)
    assert (progress.starts_on, progress.ends_on) == (START, date(2026, 4, 23))
    states = [row.state for row in progress.rows]
    assert states == ["past"] * 19 + ["today"] + ["future"] * 25
    assert progress.rows[19].date == date(2026, 3, 29)


def test_progress_before_the_start_and_after_the_end(tenant: Tenant, warm: WarmupSchedule) -> None:
    before = warmup.progress(tenant.account_a, on=date(2026, 3, 1))
    after = warmup.progress(tenant.account_a, on=date(2026, 5, 1))

    assert before is not None
    assert (before.started, before.day, before.cap, before.percent) == (False, 0, 500, 0)
    assert {row.state for row in before.rows} == {"future"}
    assert after is not None
    assert (after.finished, after.cap, after.percent) == (True, None, 100)
    assert {row.state for row in after.rows} == {"past"}


def test_no_progress_without_a_schedule(tenant: Tenant) -> None:
    assert warmup.progress(tenant.account_a) is None


# --- the advisor --------------------------------------------------------------------------


NOW = utc(2026, 6, 15, 10, 0)  # the window is 16 May 00:00 – 15 June 00:00 UTC


def test_average_counts_consumed_emails_of_the_last_30_full_utc_days(tenant: Tenant) -> None:
    _grant_premium(tenant, utc(2026, 4, 1))
    _send(tenant.account_a, 30_000, utc(2026, 5, 16, 0, 0))  # first instant of the window
    _send(tenant.account_a, 60_000, utc(2026, 6, 14, 23, 59))  # last minute of the window
    _send(tenant.account_a, 1_000_000, utc(2026, 5, 15, 23, 59))  # the day before the window
    _send(tenant.account_a, 1_000_000, utc(2026, 6, 15, 0, 0))  # today: not a full day yet
    _send(tenant.account_b, 1_000_000, utc(2026, 6, 1))  # another account
    reserved = services.reserve(tenant.organisation, 500_000, sending_account=tenant.account_a, at=utc(2026, 6, 1))
    services.consume(reserved, 90_000, at=utc(2026, 6, 1))
    services.release(reserved, at=utc(2026, 6, 1))  # released e-mails were not sent

    assert warmup.average_daily_volume(tenant.account_a, NOW) == (30_000 + 60_000 + 90_000) // 30 == 6_000


def test_average_is_rounded_down(tenant: Tenant) -> None:
    _grant_premium(tenant, utc(2026, 4, 1))
    _send(tenant.account_a, 29, utc(2026, 6, 1))

    assert warmup.average_daily_volume(tenant.account_a, NOW) == 0


def test_advice_recommends_from_175000_a_day(tenant: Tenant) -> None:
    _grant_premium(tenant, utc(2026, 4, 1))
    _send(tenant.account_a, 5_250_029, utc(2026, 6, 1))  # 175,000.97 a day
    _send(tenant.account_b, 5_249_999, utc(2026, 6, 1))  # 174,999.97 a day

    enough = warmup.advice(tenant.account_a, NOW)
    short = warmup.advice(tenant.account_b, NOW)

    assert (enough.average, enough.recommended_volume, enough.percent) == (175_000, 175_000, 100)
    assert (enough.recommended, enough.key, enough.bar, enough.shortfall) == (True, "enough", "100", 0)
    assert (short.average, short.percent, short.recommended, short.key, short.shortfall) == (
        174_999,
        99,
        False,
        "close",
        1,
    )


def test_advice_for_little_and_no_volume(tenant: Tenant) -> None:
    _grant_premium(tenant, utc(2026, 4, 1))
    _send(tenant.account_a, 1_050_000, utc(2026, 6, 1))  # 35,000 a day

    little = warmup.advice(tenant.account_a, NOW)
    nothing = warmup.advice(tenant.account_b, NOW)

    assert (little.average, little.percent, little.key, little.recommended, little.bar) == (
        35_000,
        20,
        "below",
        False,
        "20",
    )
    assert (nothing.average, nothing.percent, nothing.key, nothing.recommended) == (0, 0, "no_volume", False)


def test_advice_bar_stops_at_100_percent(tenant: Tenant) -> None:
    _grant_premium(tenant, utc(2026, 4, 1))
    _send(tenant.account_a, 10_500_000, utc(2026, 6, 1))  # 350,000 a day

    result = warmup.advice(tenant.account_a, NOW)

    assert (result.percent, result.bar) == (200, "100")


# --- assigning IPs ------------------------------------------------------------------------


def test_assigning_the_first_ip_creates_the_pool_and_starts_the_warmup_today(tenant: Tenant) -> None:
    with time_machine.travel(utc(2026, 3, 10, 22, 0), tick=False):
        ip = warmup.assign_ip(tenant.account_a, " 192.0.2.10 ", by=tenant.owner)

    pool = IpPool.objects.get(sending_account=tenant.account_a)
    assert pool.name == f"{settings.SES_NAME_PREFIX}-acct-{tenant.account_a.pk}"
    assert (ip.pool, ip.address, ip.assigned_by) == (pool, "192.0.2.10", tenant.owner)
    schedule = WarmupSchedule.objects.get(pool=pool)
    assert schedule.starts_on == date(2026, 3, 10)
    # No sending history: the warm-up still ramps to the recommended volume.
    assert schedule.target_daily_volume == 175_000
    assert list(schedule.days.order_by("day").values_list("daily_cap", flat=True)) == warmup.default_schedule(175_000)
    assert warmup.daily_cap(tenant.account_a, on=date(2026, 3, 10)) == 500


def test_the_warmup_ramps_to_a_higher_normal_volume(tenant: Tenant) -> None:
    _grant_premium(tenant, utc(2026, 4, 1))
    _send(tenant.account_a, 7_500_000, utc(2026, 6, 1))  # 250,000 a day

    with time_machine.travel(NOW, tick=False):
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None, starts_on=date(2026, 6, 20))

    schedule = WarmupSchedule.objects.get(pool__sending_account=tenant.account_a)
    assert (schedule.starts_on, schedule.target_daily_volume) == (date(2026, 6, 20), 250_000)
    assert schedule.days.get(day=45).daily_cap == 250_000


def test_a_second_ip_joins_the_running_warmup(tenant: Tenant) -> None:
    with time_machine.travel(utc(2026, 3, 10, 8, 0), tick=False):
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=tenant.owner)
    schedule = WarmupSchedule.objects.get(pool__sending_account=tenant.account_a)
    schedule.days.filter(day=20).update(daily_cap=7_000)

    with time_machine.travel(utc(2026, 3, 29, 8, 0), tick=False):
        warmup.assign_ip(tenant.account_a, "192.0.2.11", by=tenant.owner, starts_on=date(2026, 3, 29))
        assert warmup.daily_cap(tenant.account_a) == 7_000

    assert IpPool.objects.count() == 1
    assert list(DedicatedIp.objects.values_list("address", flat=True)) == ["192.0.2.10", "192.0.2.11"]
    assert WarmupSchedule.objects.get().starts_on == date(2026, 3, 10)
    assert WarmupDay.objects.count() == 45


def test_assigning_calls_the_provider_in_order(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    provider_class = type(provider_for(ensure_setup(tenant.account_a)))
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(provider_class, "ensure_ip_pool", lambda self, name: calls.append(("ensure", name)))
    monkeypatch.setattr(
        provider_class, "assign_dedicated_ip", lambda self, name, ip: calls.append(("assign", name, ip))
    )
    monkeypatch.setattr(
        provider_class,
        "use_ip_pool",
        lambda self, setup, name: calls.append(("use", setup.sending_account_id, name)),
    )

    warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None)

    name = warmup.pool_name(tenant.account_a)
    assert calls == [("ensure", name), ("assign", name, "192.0.2.10"), ("use", tenant.account_a.pk, name)]


@pytest.mark.parametrize("failing", ["ensure_ip_pool", "assign_dedicated_ip", "use_ip_pool"])
def test_a_provider_error_changes_nothing(tenant: Tenant, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    provider_class = type(provider_for(ensure_setup(tenant.account_a)))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ProviderError("The IP is not leased in this provider account.", code="NotFoundException")

    monkeypatch.setattr(provider_class, failing, refuse)

    with pytest.raises(ProviderError) as excinfo:
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=tenant.owner)

    assert excinfo.value.user_message == "The IP is not leased in this provider account."
    assert not IpPool.objects.exists()
    assert not DedicatedIp.objects.exists()
    assert not WarmupSchedule.objects.exists()
    assert not WarmupDay.objects.exists()


def test_a_provider_error_on_a_second_ip_keeps_the_pool_as_it_was(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None)
    provider_class = type(provider_for(ensure_setup(tenant.account_a)))

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ProviderError()

    monkeypatch.setattr(provider_class, "assign_dedicated_ip", refuse)

    with pytest.raises(ProviderError):
        warmup.assign_ip(tenant.account_a, "192.0.2.11", by=None)

    assert list(DedicatedIp.objects.values_list("address", flat=True)) == ["192.0.2.10"]
    assert WarmupSchedule.objects.count() == 1
    assert WarmupDay.objects.count() == 45


@pytest.mark.parametrize(("address", "message"), [("192.0.2.300", "is not an IP address"), ("", "not an IP")])
def test_an_invalid_address_is_refused(tenant: Tenant, address: str, message: str) -> None:
    with pytest.raises(ServiceError, match=message):
        warmup.assign_ip(tenant.account_a, address, by=None)
    assert not IpPool.objects.exists()


def test_an_ip_cannot_be_in_two_pools(tenant: Tenant) -> None:
    warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None)

    with pytest.raises(ServiceError, match=r"192\.0\.2\.10 is already assigned to the pool"):
        warmup.assign_ip(tenant.account_b, "192.0.2.10", by=None)
    assert not IpPool.objects.filter(sending_account=tenant.account_b).exists()


def test_the_warmup_starts_today_in_utc(tenant: Tenant) -> None:
    # 23:30 UTC on 9 March is already 10 March in Berlin: the warm-up still starts on the UTC day.
    with time_machine.travel(utc(2026, 3, 9, 23, 30), tick=False), timezone.override("Europe/Berlin"):
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None)

    assert WarmupSchedule.objects.get().starts_on == date(2026, 3, 9)
    assert warmup.progress(tenant.account_a, on=date(2026, 3, 9) + timedelta(days=44)) is not None
