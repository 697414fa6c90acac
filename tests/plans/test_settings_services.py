"""Settings changes never overwrite balances that a worker moves at the same time."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from plans import services
from plans.models import ClientAllocation, CreditAccount


def test_overage_settings_change_only_the_settings(tenant) -> None:
    account = CreditAccount.objects.create(organisation=tenant.organisation)
    stale = CreditAccount.objects.get(pk=account.pk)  # what a form would have loaded
    CreditAccount.objects.filter(pk=account.pk).update(overage_reserved=500, overage_used=70)

    services.update_overage_settings(stale.organisation, False, Decimal("25.00"))

    account.refresh_from_db()
    assert (account.allow_overage, account.monthly_overage_limit) == (False, Decimal("25.00"))
    assert (account.overage_reserved, account.overage_used) == (500, 70)


def test_a_changed_cap_may_warn_again_an_unchanged_one_not(tenant) -> None:
    start = date(2026, 1, 1)
    allocation = services.set_client_cap(tenant.client_a, 1000, ClientAllocation.Mode.SOFT, start)
    ClientAllocation.objects.filter(pk=allocation.pk).update(warned_period_start=start)

    services.set_client_cap(tenant.client_a, 1000, ClientAllocation.Mode.SOFT, start)
    assert ClientAllocation.objects.get(pk=allocation.pk).warned_period_start == start

    services.set_client_cap(tenant.client_a, 2000, ClientAllocation.Mode.SOFT, start)
    assert ClientAllocation.objects.get(pk=allocation.pk).warned_period_start is None


def test_removing_a_cap_lifts_it(tenant) -> None:
    services.set_client_cap(tenant.client_a, 10, ClientAllocation.Mode.HARD, date(2026, 1, 1))
    services.remove_client_cap(tenant.client_a)
    assert services.client_usage(tenant.client_a).cap is None
