"""Client volume sharing: yearly caps drawn from the organisation's pool, hard (refused) or soft (owner warned)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest

from accounts.models import Client
from plans import services
from plans.models import ClientAllocation, Plan
from tests.conftest import Tenant
from tests.plans.conftest import grant, utc

Code = services.CreditRefused.Code
AT = utc(2026, 3, 1, 12)


def cap(client: Client, emails: int, mode: str = "hard", start: date = date(2026, 1, 1)) -> ClientAllocation:
    return ClientAllocation.objects.create(client=client, yearly_cap=emails, mode=mode, period_start=start)


@pytest.fixture
def funded(tenant: Tenant, plan: Callable[[str], Plan]) -> Tenant:
    """The tenant with STANDARD (1,000,000 e-mails) from 2026-01-01 and PROFESSIONAL from 2027-01-01."""
    grant(tenant.organisation, plan("STANDARD"), utc(2026, 1, 1))
    grant(tenant.organisation, plan("PROFESSIONAL"), utc(2026, 12, 31))
    return tenant


def test_a_hard_cap_refuses_sending_beyond_it(funded: Tenant) -> None:
    cap(funded.client_a, 1_000)
    services.reserve(funded.organisation, 600, client=funded.client_a, at=AT)

    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(funded.organisation, 401, client=funded.client_a, at=AT)

    assert refused.value.code == Code.CLIENT_CAP
    assert str(refused.value) == (
        "Client “Alpha Bakery” would exceed its yearly cap: 600 of 1,000 e-mails used or reserved "
        "until 2027-01-01, 401 more requested."
    )


def test_a_hard_cap_can_be_used_exactly(funded: Tenant) -> None:
    cap(funded.client_a, 1_000)
    services.reserve(funded.organisation, 600, client=funded.client_a, at=AT)
    services.reserve(funded.organisation, 400, client=funded.client_a, at=AT)

    with pytest.raises(services.CreditRefused):
        services.reserve(funded.organisation, 1, client=funded.client_a, at=AT)
    assert services.client_usage(funded.client_a, AT).total == 1_000


def test_the_cap_applies_through_the_clients_sending_account(funded: Tenant) -> None:
    cap(funded.client_a, 100)

    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(funded.organisation, 101, sending_account=funded.account_a, at=AT)

    assert refused.value.code == Code.CLIENT_CAP


def test_consumed_and_outstanding_credits_count_released_ones_do_not(funded: Tenant) -> None:
    cap(funded.client_a, 1_000)
    r = services.reserve(funded.organisation, 1_000, client=funded.client_a, at=AT)
    services.consume(r, 700, at=AT)
    assert services.client_usage(funded.client_a, AT).total == 1_000

    services.release(r, at=AT)

    usage = services.client_usage(funded.client_a, AT)
    assert (usage.used, usage.outstanding, usage.total, usage.percent) == (700, 0, 700, 70)
    services.reserve(funded.organisation, 300, client=funded.client_a, at=AT)


def test_one_clients_cap_does_not_limit_the_others(funded: Tenant) -> None:
    cap(funded.client_a, 10)
    services.reserve(funded.organisation, 10, client=funded.client_a, at=AT)

    assert services.reserve(funded.organisation, 5_000, client=funded.client_b, at=AT).quantity == 5_000
    assert services.reserve(funded.organisation, 5_000, sending_account=funded.account_org, at=AT).quantity == 5_000


def test_the_cap_year_starts_again_after_twelve_months(funded: Tenant) -> None:
    cap(funded.client_a, 1_000, start=date(2026, 1, 1))
    services.consume(services.reserve(funded.organisation, 1_000, client=funded.client_a, at=AT), 1_000, at=AT)

    with pytest.raises(services.CreditRefused):
        services.reserve(funded.organisation, 1, client=funded.client_a, at=utc(2026, 12, 31, 23, 59))
    r = services.reserve(funded.organisation, 1_000, client=funded.client_a, at=utc(2027, 1, 1))

    assert r.quantity == 1_000
    usage = services.client_usage(funded.client_a, utc(2027, 1, 1))
    assert (usage.period_start, usage.period_end, usage.used, usage.outstanding) == (
        date(2027, 1, 1),
        date(2028, 1, 1),
        0,
        1_000,
    )


@pytest.mark.parametrize(
    ("start", "at", "period"),
    [
        (date(2026, 1, 1), utc(2026, 1, 1), (date(2026, 1, 1), date(2027, 1, 1))),
        (date(2026, 1, 1), utc(2026, 12, 31, 23, 59), (date(2026, 1, 1), date(2027, 1, 1))),
        (date(2026, 6, 1), utc(2026, 3, 1), (date(2026, 6, 1), date(2027, 6, 1))),  # not started yet
        (date(2024, 2, 29), utc(2025, 2, 27), (date(2024, 2, 29), date(2025, 2, 28))),
        (date(2024, 2, 29), utc(2025, 2, 28), (date(2025, 2, 28), date(2026, 2, 28))),
        (date(2024, 2, 29), utc(2028, 2, 28), (date(2027, 2, 28), date(2028, 2, 29))),
        (date(2024, 2, 29), utc(2028, 2, 29), (date(2028, 2, 29), date(2029, 2, 28))),
    ],
)
def test_cap_years_are_counted_from_the_start_date_also_on_a_leap_day(
    start: date, at: datetime, period: tuple[date, date]
) -> None:
    assert services.cap_period(start, at) == period


def test_a_soft_cap_lets_sending_continue_and_warns_the_owners_once(
    funded: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    cap(funded.client_a, 1_000, mode="soft")

    with django_capture_on_commit_callbacks(execute=True):
        services.reserve(funded.organisation, 999, client=funded.client_a, at=AT)
    assert mailoutbox == []

    with django_capture_on_commit_callbacks(execute=True):
        services.reserve(funded.organisation, 500, client=funded.client_a, at=AT)
        services.reserve(funded.organisation, 500, client=funded.client_a, at=AT)

    assert services.client_usage(funded.client_a, AT).total == 1_999
    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == ["owner@acme.example"]
    assert message.subject == "Alpha Bakery has used its yearly e-mail allocation"
    assert "Alpha Bakery has used or reserved 1,499 e-mails of its soft yearly cap of 1,000" in message.body
    html = message.alternatives[0].content
    assert "Alpha Bakery has used or reserved 1,499 e-mails of its soft yearly cap of 1,000" in html


def test_the_soft_cap_warning_comes_again_in_the_next_cap_year(
    funded: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    allocation = cap(funded.client_a, 100, mode="soft")
    with django_capture_on_commit_callbacks(execute=True):
        services.consume(services.reserve(funded.organisation, 100, client=funded.client_a, at=AT), 100, at=AT)
        services.reserve(funded.organisation, 100, client=funded.client_a, at=utc(2026, 12, 1))
    assert len(mailoutbox) == 1
    allocation.refresh_from_db()
    assert allocation.warned_period_start == date(2026, 1, 1)

    with django_capture_on_commit_callbacks(execute=True):
        # In 2027 the outstanding 100 from December still count: the cap is reached again at once.
        services.reserve(funded.organisation, 1, client=funded.client_a, at=utc(2027, 1, 2))

    assert len(mailoutbox) == 2
    allocation.refresh_from_db()
    assert allocation.warned_period_start == date(2027, 1, 1)


def test_a_hard_cap_sends_no_warning(
    funded: Tenant, django_capture_on_commit_callbacks: Any, mailoutbox: list[Any]
) -> None:
    cap(funded.client_a, 100)
    with django_capture_on_commit_callbacks(execute=True):
        services.reserve(funded.organisation, 100, client=funded.client_a, at=AT)

    assert mailoutbox == []


def test_client_usage_without_a_cap_counts_the_calendar_year(funded: Tenant) -> None:
    services.consume(services.reserve(funded.organisation, 30, client=funded.client_b, at=AT), 30, at=AT)

    usage = services.client_usage(funded.client_b, AT)

    assert (usage.cap, usage.mode, usage.percent, usage.used) == (None, None, None, 30)
    assert (usage.period_start, usage.period_end) == (date(2026, 1, 1), date(2027, 1, 1))


def test_capped_sending_still_draws_from_the_organisations_pool(funded: Tenant) -> None:
    cap(funded.client_a, 5_000)

    services.reserve(funded.organisation, 5_000, client=funded.client_a, at=AT)

    assert services.pool(funded.organisation, AT).available == 995_000
