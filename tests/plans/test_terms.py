"""Terms last 12 calendar months (UTC), expire at exactly their end, never roll over; the pool is drawn
from the term that ends first (FIFO); the cron configuration schedules the expiry and STARTER jobs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis
import time_machine
from django.conf import settings
from rq.cron import CronScheduler

from plans import jobs, services
from plans.models import CreditEntry, Plan, Subscription
from tests.conftest import Tenant
from tests.plans.conftest import T0, balances, grant, utc

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (utc(2026, 3, 1), utc(2027, 3, 1)),
        (utc(2024, 2, 29), utc(2025, 2, 28)),  # leap day: ends on 28 February
        (utc(2028, 2, 29, 13, 45), utc(2029, 2, 28, 13, 45)),
        (utc(2027, 3, 1), utc(2028, 3, 1)),  # spans 29 Feb 2028: 366 days
        (utc(2023, 2, 28), utc(2024, 2, 28)),  # does not jump to the leap day
        (utc(2026, 1, 31, 23, 59, 59), utc(2027, 1, 31, 23, 59, 59)),
        (utc(2026, 12, 31, 23, 30), utc(2027, 12, 31, 23, 30)),
    ],
)
def test_term_end_is_twelve_calendar_months_later(start: datetime, end: datetime) -> None:
    assert services.term_end(start) == end


def test_term_spanning_a_leap_day_has_366_days() -> None:
    assert services.term_end(utc(2027, 3, 1)) - utc(2027, 3, 1) == timedelta(days=366)
    assert services.term_end(utc(2026, 3, 1)) - utc(2026, 3, 1) == timedelta(days=365)


def test_term_end_is_counted_in_utc_whatever_the_time_zone_of_the_start() -> None:
    # 29 Feb 2024 00:30 in Berlin is 28 Feb 23:30 UTC: the term ends 28 Feb 2025 23:30 UTC,
    # not 28 Feb 00:30 Berlin (which wall-clock arithmetic in Berlin would give).
    start = datetime(2024, 2, 29, 0, 30, tzinfo=BERLIN)

    assert services.term_end(start) == utc(2025, 2, 28, 23, 30)


def test_term_end_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        services.term_end(datetime(2026, 3, 1))  # noqa: DTZ001


def test_a_granted_term_starts_now_and_ends_twelve_months_later(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    # given a frozen clock on a leap day
    with time_machine.travel(utc(2024, 2, 29, 10, 0), tick=False):
        # when
        term = services.grant_plan(tenant.organisation, plan("STANDARD"), origin=Subscription.Origin.XES_TEAM)

    # then
    assert term.starts_at == utc(2024, 2, 29, 10, 0)
    assert term.ends_at == utc(2025, 2, 28, 10, 0)
    assert balances(term) == (1_000_000, 0, 0)
    grant_entry = CreditEntry.objects.get(subscription=term)
    assert (grant_entry.kind, grant_entry.emails) == ("grant", 1_000_000)
    assert grant_entry.created_at == utc(2024, 2, 29, 10, 0)


def test_a_term_counts_until_the_instant_it_ends(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), utc(2027, 3, 1))
    assert term.ends_at == utc(2028, 3, 1)
    last_moment = term.ends_at - timedelta(microseconds=1)

    assert term.is_active(last_moment)
    assert not term.is_active(term.ends_at)
    assert not term.is_active(term.starts_at - timedelta(microseconds=1))
    assert services.pool(tenant.organisation, last_moment).available == 1_000_000
    assert services.pool(tenant.organisation, term.ends_at).available == 0


def test_sending_is_refused_from_the_instant_the_term_ends(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), utc(2024, 2, 29))
    assert term.ends_at == utc(2025, 2, 28)

    services.reserve(tenant.organisation, 10, at=term.ends_at - timedelta(seconds=1))
    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(tenant.organisation, 10, at=term.ends_at)

    assert refused.value.code == services.CreditRefused.Code.NO_PLAN


def test_the_rest_expires_at_exactly_the_end_of_the_term(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), utc(2024, 2, 29, 12, 0))
    r = services.reserve(tenant.organisation, 250_000, at=utc(2024, 6, 1))
    services.consume(r, 250_000, at=utc(2024, 6, 1))

    assert services.expire_due_terms(at=term.ends_at - timedelta(microseconds=1)) == 0
    assert services.expire_due_terms(at=utc(2025, 2, 28, 12, 0)) == 1

    term.refresh_from_db()
    assert term.expired_at == utc(2025, 2, 28, 12, 0)
    assert (term.available, term.reserved, term.used) == (0, 0, 250_000)
    expire = CreditEntry.objects.get(subscription=term, kind="expire")
    assert expire.emails == 750_000
    assert expire.created_at == utc(2025, 2, 28, 12, 0)


def test_expiry_is_idempotent(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)

    assert services.expire_due_terms(at=term.ends_at) == 1
    assert services.expire_due_terms(at=term.ends_at + timedelta(days=1)) == 0
    assert CreditEntry.objects.filter(subscription=term, kind="expire").count() == 1


def test_expire_job_uses_the_clock(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), utc(2026, 3, 1))

    with time_machine.travel(utc(2027, 2, 28, 23, 59), tick=False):
        assert jobs.expire_terms_job() == 0
    with time_machine.travel(utc(2027, 3, 1, 0, 5), tick=False):
        assert jobs.expire_terms_job() == 1

    term.refresh_from_db()
    assert term.available == 0


def test_included_emails_never_roll_over_into_the_renewal(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    # given a term with 600,000 e-mails left and its renewal queued behind it
    org = tenant.organisation
    first = grant(org, plan("STANDARD"), utc(2026, 3, 1))
    r = services.reserve(org, 400_000, at=utc(2026, 5, 1))
    services.consume(r, 400_000, at=utc(2026, 5, 1))
    renewal = grant(org, plan("STANDARD"), utc(2027, 1, 15))
    assert renewal.starts_at == first.ends_at == utc(2027, 3, 1)
    # the renewal does not count before it starts
    assert services.pool(org, utc(2027, 2, 28)).available == 600_000

    # when the first term ends
    services.expire_due_terms(at=utc(2027, 3, 1))

    # then its rest expired and the new term holds only its own included e-mails
    assert CreditEntry.objects.get(subscription=first, kind="expire").emails == 600_000
    assert balances(first) == (0, 0, 400_000)
    current = services.pool(org, utc(2027, 3, 1))
    assert [t.pk for t in current.terms] == [renewal.pk]
    assert (current.included, current.available) == (1_000_000, 1_000_000)


def test_the_pool_does_not_roll_over_even_before_the_expiry_job_runs(
    tenant: Tenant, plan: Callable[[str], Plan]
) -> None:
    org = tenant.organisation
    grant(org, plan("STANDARD"), utc(2026, 3, 1))
    grant(org, plan("STANDARD"), utc(2027, 1, 15))

    # The expiry job has not run yet, but the ended term no longer counts.
    assert services.pool(org, utc(2027, 3, 1, 0, 30)).available == 1_000_000
    r = services.reserve(org, 1_000_000, at=utc(2027, 3, 1, 0, 30))
    assert [p.subscription.starts_at for p in r.parts.all()] == [utc(2027, 3, 1)]


def test_a_second_renewal_queues_behind_the_first(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    org = tenant.organisation
    grant(org, plan("STANDARD"), utc(2026, 3, 1))
    second = grant(org, plan("STANDARD"), utc(2026, 4, 1))
    third = grant(org, plan("STANDARD"), utc(2026, 5, 1))

    assert (second.starts_at, second.ends_at) == (utc(2027, 3, 1), utc(2028, 3, 1))
    assert (third.starts_at, third.ends_at) == (utc(2028, 3, 1), utc(2029, 3, 1))


def test_the_pool_is_drawn_from_the_term_that_ends_first(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    # given two plans at once: PROFESSIONAL granted first but ending later, STANDARD ending first
    org = tenant.organisation
    professional = grant(org, plan("PROFESSIONAL"), utc(2026, 6, 1))
    standard = grant(org, plan("STANDARD"), utc(2026, 1, 1))

    # when
    r = services.reserve(org, 1_500_000, at=utc(2026, 7, 1))

    # then STANDARD (ends 2027-01-01) is drawn first, then PROFESSIONAL (ends 2027-06-01)
    parts = [(p.subscription_id, p.quantity) for p in r.parts.order_by("position")]
    assert parts == [(standard.pk, 1_000_000), (professional.pk, 500_000)]
    assert balances(standard) == (0, 1_000_000, 0)
    assert balances(professional) == (4_500_000, 500_000, 0)
    pool = services.pool(org, utc(2026, 7, 1))
    assert (pool.included, pool.available, pool.reserved) == (6_000_000, 4_500_000, 1_500_000)


def test_after_the_first_term_ends_the_next_one_is_drawn(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    org = tenant.organisation
    standard = grant(org, plan("STANDARD"), utc(2026, 1, 1))
    professional = grant(org, plan("PROFESSIONAL"), utc(2026, 6, 1))
    services.consume(services.reserve(org, 100_000, at=utc(2026, 7, 1)), 100_000, at=utc(2026, 7, 1))
    services.expire_due_terms(at=utc(2027, 1, 1))

    r = services.reserve(org, 300_000, at=utc(2027, 1, 1))

    assert [(p.subscription_id, p.quantity) for p in r.parts.all()] == [(professional.pk, 300_000)]
    assert balances(standard) == (0, 0, 100_000)
    assert CreditEntry.objects.get(subscription=standard, kind="expire").emails == 900_000


def test_a_small_draw_touches_only_the_first_term(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    org = tenant.organisation
    first = grant(org, plan("STANDARD"), utc(2026, 1, 1))
    second = grant(org, plan("PREMIUM"), utc(2026, 2, 1))

    services.reserve(org, 10, at=utc(2026, 3, 1))

    assert balances(first) == (999_990, 10, 0)
    assert balances(second) == (12_000_000, 0, 0)


def test_cron_registers_the_periodic_jobs() -> None:
    connection = redis.Redis.from_url(settings.REDIS_URL)
    scheduler = CronScheduler(connection=connection)

    scheduler.load_config_from_file("xes_portal.cron")

    registered = {job.func_name: (job.queue_name, job.cron or job.interval) for job in scheduler.get_jobs()}
    assert registered == {
        "plans.jobs.expire_terms_job": ("low", "5 * * * *"),
        "plans.jobs.sync_starters_job": ("low", "15 3 * * *"),
        "deliverability.jobs.recheck_domains_job": ("low", "40 4 * * *"),
        "deliverability.jobs.retry_unknown_job": ("low", "25 * * * *"),
        "campaigns.sending.jobs.sending_tick_job": ("sending", "* * * * *"),
        "campaigns.automation.jobs.automation_tick_job": ("default", "* * * * *"),
        "campaigns.tracking.jobs.flush_events_job": ("default", 5),
        "deliverability.reputation.jobs.evaluate_standings_job": ("low", "*/15 * * * *"),
        "deliverability.jobs.requeue_sns_notifications_job": ("default", "*/5 * * * *"),
        "deliverability.jobs.prune_sns_notifications_job": ("low", "50 2 * * *"),
        "campaigns.analytics.jobs.aggregate_events_job": ("default", 30),
    }
