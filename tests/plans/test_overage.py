"""Overage: what is consumed beyond the pool, priced per 1,000 (pro rata, half up to the cent), allowed by
default, optionally refused, and limited per calendar month."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest

from plans import services
from plans.models import CreditAccount, CreditEntry, Plan, overage_amount
from tests.conftest import Tenant
from tests.plans.conftest import T0, balances, grant, settings_for, utc

Code = services.CreditRefused.Code


@pytest.mark.parametrize(
    ("emails", "price", "amount"),
    [
        (1_000, "10.00", "10.00"),
        (1_500, "2.20", "3.30"),
        (1, "2.20", "0.00"),  # 0.0022
        (3, "2.20", "0.01"),  # 0.0066
        (1, "5.00", "0.01"),  # 0.005: half up
        (5, "5.00", "0.03"),  # 0.025: half up (banker's rounding would give 0.02)
        (15, "3.00", "0.05"),  # 0.045: half up
        (1_234_567, "3.00", "3703.70"),  # 3703.701
        (333, "6.00", "2.00"),  # 1.998
        (0, "8.00", "0.00"),
    ],
)
def test_overage_is_priced_pro_rata_and_rounded_half_up_to_the_cent(emails: int, price: str, amount: str) -> None:
    assert overage_amount(emails, Decimal(price)) == Decimal(amount)


def test_overage_is_allowed_by_default_without_a_limit(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    services.reserve(tenant.organisation, 1, at=T0)  # creates the credit account

    account = CreditAccount.objects.get(organisation=tenant.organisation)
    assert (account.allow_overage, account.monthly_overage_limit) == (True, None)


def test_what_goes_beyond_the_pool_is_overage_at_the_plans_price(
    tenant: Tenant, small_plan: Callable[..., Plan]
) -> None:
    org = tenant.organisation
    term = grant(org, small_plan(1_000, "8.00"), T0)

    r = services.reserve(org, 2_234, at=T0)
    services.consume(r, 2_234, at=T0)

    assert balances(term) == (0, 0, 1_000)
    overage = CreditEntry.objects.get(kind="consume", subscription=None)
    assert (overage.emails, overage.price_per_1000) == (1_234, Decimal("8.00"))
    charges = services.overage_charges(org, utc(2026, 3, 1), utc(2026, 4, 1))
    assert charges == [services.OverageCharge(Decimal("8.00"), 1_234, Decimal("9.87"))]  # 9.872


def test_released_overage_is_not_charged(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    org = tenant.organisation
    grant(org, small_plan(1_000, "8.00"), T0)

    r = services.reserve(org, 3_000, at=T0)
    services.consume(r, 1_500, at=T0)
    services.release(r, at=T0)

    charges = services.overage_charges(org, utc(2026, 3, 1), utc(2026, 4, 1))
    assert charges == [services.OverageCharge(Decimal("8.00"), 500, Decimal("4.00"))]
    account = CreditAccount.objects.get(organisation=org)
    assert (account.overage_reserved, account.overage_used) == (0, 500)


def test_overage_charges_are_one_line_per_price_each_rounded(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    org = tenant.organisation
    first = grant(org, small_plan(10, "3.00", code="three"), utc(2026, 1, 1))
    services.consume(services.reserve(org, 25, at=utc(2026, 3, 2)), 25, at=utc(2026, 3, 2))  # 15 at $3.00
    services.expire_due_terms(at=first.ends_at)
    grant(org, small_plan(10, "5.00", code="five"), utc(2027, 1, 1))
    services.consume(services.reserve(org, 15, at=utc(2027, 1, 2)), 15, at=utc(2027, 1, 2))  # 5 at $5.00

    charges = services.overage_charges(org, utc(2026, 1, 1), utc(2028, 1, 1))

    assert charges == [
        services.OverageCharge(Decimal("3.00"), 15, Decimal("0.05")),
        services.OverageCharge(Decimal("5.00"), 5, Decimal("0.03")),
    ]


def test_overage_uses_the_lowest_price_among_the_active_terms(
    tenant: Tenant, plan: Callable[[str], Plan], small_plan: Callable[..., Plan]
) -> None:
    org = tenant.organisation
    grant(org, small_plan(100, "10.00"), T0)
    grant(org, plan("PREMIUM"), utc(2025, 3, 2))  # $3.00, nearly over
    services.reserve(org, 12_000_000, at=T0)  # empty PREMIUM

    r = services.reserve(org, 300, at=T0)

    overage = r.parts.get(subscription=None)
    assert (overage.quantity, overage.price_per_1000) == (200, Decimal("3.00"))
    assert services.pool(org, T0).overage_price == Decimal("3.00")
    # once PREMIUM has ended, the remaining plan's price applies
    assert services.pool(org, utc(2026, 3, 2)).overage_price == Decimal("10.00")


def test_switched_off_overage_refuses_with_the_numbers(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    org = tenant.organisation
    term = grant(org, small_plan(1_000, "10.00"), T0)
    settings_for(org, allow_overage=False)
    services.reserve(org, 700, at=T0)

    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(org, 1_500, at=T0)

    assert refused.value.code == Code.INSUFFICIENT
    assert str(refused.value) == (
        "Not enough credits: 300 e-mails left in your plans, 1,500 requested, "
        "and overage is switched off in your settings."
    )
    assert balances(term) == (300, 700, 0)
    services.reserve(org, 300, at=T0)  # exactly what is left is fine


@pytest.mark.parametrize(
    ("limit", "price", "emails"),
    [
        (None, "8.00", None),
        ("10.00", "3.00", 3_333),  # 3,333.33: floor
        ("10.00", "8.00", 1_250),
        ("0.01", "10.00", 1),
        ("0.00", "6.00", 0),
        ("100.00", "2.20", 45_454),  # 45,454.54
        ("5.00", "0.00", None),  # free overage: no limit in e-mails
    ],
)
def test_the_monthly_limit_in_dollars_becomes_a_number_of_emails(
    limit: str | None, price: str, emails: int | None
) -> None:
    account = CreditAccount(monthly_overage_limit=Decimal(limit) if limit is not None else None)

    assert services.overage_limit_emails(account, Decimal(price)) == emails


def test_the_monthly_overage_limit_refuses_what_would_exceed_it(
    tenant: Tenant, small_plan: Callable[..., Plan]
) -> None:
    org = tenant.organisation
    grant(org, small_plan(1_000, "3.00"), T0)
    settings_for(org, monthly_overage_limit=Decimal("10.00"))  # 3,333 overage e-mails
    first = services.reserve(org, 3_000, at=T0)  # 1,000 included + 2,000 overage
    services.consume(first, 3_000, at=T0)
    services.reserve(org, 1_000, at=T0)  # 3,000 overage used or reserved

    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(org, 334, at=T0)

    assert refused.value.code == Code.OVERAGE_LIMIT
    assert str(refused.value) == (
        "This would exceed your monthly overage limit of $10.00 (3,333 e-mails at $3.00 per 1,000); "
        "3,000 overage e-mails are already used or reserved this month."
    )
    services.reserve(org, 333, at=T0)  # exactly up to the limit
    with pytest.raises(services.CreditRefused):
        services.reserve(org, 1, at=T0)


def test_released_overage_frees_room_under_the_limit(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    org = tenant.organisation
    grant(org, small_plan(100, "10.00"), T0)
    settings_for(org, monthly_overage_limit=Decimal("1.00"))  # 100 overage e-mails
    r = services.reserve(org, 200, at=T0)

    with pytest.raises(services.CreditRefused):
        services.reserve(org, 1, at=T0)
    services.release(r, 50, at=T0)

    assert services.reserve(org, 50, at=T0).quantity == 50


def test_the_overage_limit_starts_again_next_calendar_month(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    org = tenant.organisation
    grant(org, small_plan(100, "10.00"), utc(2026, 1, 1))
    settings_for(org, monthly_overage_limit=Decimal("1.00"))  # 100 overage e-mails
    services.consume(services.reserve(org, 200, at=utc(2026, 3, 31, 23, 59)), 200, at=utc(2026, 3, 31, 23, 59))
    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(org, 1, at=utc(2026, 3, 31, 23, 59, 59))
    assert refused.value.code == Code.OVERAGE_LIMIT

    r = services.reserve(org, 100, at=utc(2026, 4, 1))

    assert r.parts.get().subscription is None
    assert services.overage_used_in_month(org, utc(2026, 3, 15)) == 100
    assert services.overage_used_in_month(org, utc(2026, 4, 15)) == 0


def test_a_refused_overage_leaves_the_included_credits_untouched(
    tenant: Tenant, small_plan: Callable[..., Plan]
) -> None:
    org = tenant.organisation
    term = grant(org, small_plan(1_000, "10.00"), T0)
    settings_for(org, monthly_overage_limit=Decimal("0.00"))

    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(org, 1_001, at=T0)

    assert refused.value.code == Code.OVERAGE_LIMIT
    assert balances(term) == (1_000, 0, 0)
    assert services.rebuild_balances(org) == []
