"""Helpers for the plans tests: fixed instants (UTC), catalogue plans, small plans and credit settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from accounts.models import Organisation
from plans import services
from plans.models import CreditAccount, CreditEntry, Plan, Subscription
from tests.conftest import rerun_data_migrations

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def ensure_catalogue() -> None:
    """Seed rows of the data migrations (the catalogue), put back after a transactional test's flush."""
    rerun_data_migrations()


@pytest.fixture
def plan(db: None) -> Callable[[str], Plan]:
    """A plan of the seeded catalogue by code."""
    ensure_catalogue()

    def _plan(code: str) -> Plan:
        return Plan.objects.get(code=code)

    return _plan


@pytest.fixture
def small_plan(db: None) -> Callable[..., Plan]:
    """A plan with a small volume, so that tests can exhaust it in a few steps."""

    def _small(emails: int = 1_000, price: str = "10.00", code: str | None = None) -> Plan:
        return Plan.objects.create(
            code=code or f"small-{emails}-{price.replace('.', '-')}",
            name=f"Small {emails}",
            emails_per_year=emails,
            price_per_1000=Decimal(price),
            eligibility=Plan.Eligibility.ANY,
        )

    return _small


def settings_for(organisation: Organisation, **values: Any) -> CreditAccount:
    """Set the organisation's overage settings (allow_overage, monthly_overage_limit)."""
    account, _ = CreditAccount.objects.update_or_create(organisation=organisation, defaults=values)
    return account


def grant(organisation: Organisation, plan: Plan, at: datetime) -> Subscription:
    return services.grant_plan(organisation, plan, origin=Subscription.Origin.XES_TEAM, at=at)


def balances(term: Subscription) -> tuple[int, int, int]:
    term.refresh_from_db()
    return term.available, term.reserved, term.used


def kinds(organisation: Organisation) -> list[tuple[str, int]]:
    """The organisation's ledger as (kind, e-mails), oldest first."""
    return list(CreditEntry.objects.filter(organisation=organisation).values_list("kind", "emails"))
