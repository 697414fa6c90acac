"""50 parallel reservations against the real PostgreSQL: the row lock on the credit account lets exactly
the allowed number through, and the ledger and the balances agree afterwards.

These tests commit (transaction=True); tests/conftest.py puts the seeded catalogue back after flushes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from accounts.models import Client, Organisation
from plans import services
from plans.models import ClientAllocation, CreditAccount, CreditEntry, Plan, Reservation, Subscription
from tests.factories import ClientFactory, OrganisationFactory, SendingAccountFactory
from tests.plans.conftest import grant, settings_for, utc

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 50
EACH = 30
AT = utc(2026, 3, 1, 12)
Code = services.CreditRefused.Code


@dataclass
class Outcome:
    ok: list[int]  # reservation ids
    refused: Counter[str]  # refusal codes
    errors: list[str]  # anything else (must stay empty)


def in_parallel(action: Callable[[], int]) -> Outcome:
    """Run ``action`` in THREADS threads that start together; each thread has its own connection."""
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    outcome = Outcome(ok=[], refused=Counter(), errors=[])

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            result = action()
            with lock:
                outcome.ok.append(result)
        except services.CreditRefused as refused:
            with lock:
                outcome.refused[refused.code] += 1
        except Exception as exc:  # noqa: BLE001 - reported by the test
            with lock:
                outcome.errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return outcome


def assert_ledger_and_balances_agree(organisation: Organisation, reserved: int) -> None:
    assert services.rebuild_balances(organisation) == []
    reserve_entries = CreditEntry.objects.filter(organisation=organisation, kind="reserve").aggregate(n=Sum("emails"))
    assert reserve_entries["n"] == reserved
    assert Reservation.objects.filter(organisation=organisation).aggregate(n=Sum("quantity"))["n"] == reserved
    terms = Subscription.objects.filter(organisation=organisation)
    account = CreditAccount.objects.get(organisation=organisation)
    assert sum(t.reserved for t in terms) + account.overage_reserved == reserved
    assert all(t.available >= 0 and t.reserved >= 0 for t in terms)
    assert account.overage_reserved >= 0
    granted = CreditEntry.objects.filter(organisation=organisation, kind="grant").aggregate(n=Sum("emails"))["n"]
    assert sum(t.available + t.reserved + t.used for t in terms) == granted


@pytest.fixture
def org_with(db: None) -> Callable[..., tuple[Organisation, Client]]:
    def _make(emails: int, price: str = "10.00", **credit_settings: object) -> tuple[Organisation, Client]:
        organisation = OrganisationFactory()
        client = ClientFactory(organisation=organisation)
        plan = Plan.objects.create(
            code=f"conc-{emails}",
            name="Concurrency",
            emails_per_year=emails,
            price_per_1000=Decimal(price),
            eligibility=Plan.Eligibility.ANY,
        )
        grant(organisation, plan, utc(2026, 1, 1))
        settings_for(organisation, **credit_settings)
        return organisation, client

    return _make


def test_a_hard_client_cap_lets_exactly_the_allowed_reservations_through(
    org_with: Callable[..., tuple[Organisation, Client]],
) -> None:
    # given a pool of 1,000,000 and a hard cap of 1,000 for the client: room for 33 x 30
    organisation, client = org_with(1_000_000)
    ClientAllocation.objects.create(client=client, yearly_cap=1_000, mode="hard", period_start=date(2026, 1, 1))
    account = SendingAccountFactory(organisation=organisation, client=client)

    # when 50 threads reserve 30 each at once
    outcome = in_parallel(lambda: services.reserve(organisation, EACH, sending_account=account, at=AT).pk)

    # then exactly 33 succeed and 17 are refused for the cap
    assert outcome.errors == []
    assert len(outcome.ok) == 33
    assert outcome.refused == {Code.CLIENT_CAP: 17}
    assert services.client_usage(client, AT).total == 990
    assert_ledger_and_balances_agree(organisation, 990)
    assert services.pool(organisation, AT).available == 1_000_000 - 990


def test_the_monthly_overage_limit_lets_exactly_the_allowed_reservations_through(
    org_with: Callable[..., tuple[Organisation, Client]],
) -> None:
    # given 1,000 included and a limit of $1.00 at $10.00 per 1,000: 100 overage e-mails, 1,100 in all
    organisation, _ = org_with(1_000, monthly_overage_limit=Decimal("1.00"))

    outcome = in_parallel(lambda: services.reserve(organisation, EACH, at=AT).pk)

    # 36 x 30 = 1,080 (1,000 included + 80 overage); a 37th would need 110 overage
    assert outcome.errors == []
    assert len(outcome.ok) == 36
    assert outcome.refused == {Code.OVERAGE_LIMIT: 14}
    account = CreditAccount.objects.get(organisation=organisation)
    assert account.overage_reserved == 80
    assert_ledger_and_balances_agree(organisation, 1_080)


def test_without_overage_the_pool_lets_exactly_the_allowed_reservations_through(
    org_with: Callable[..., tuple[Organisation, Client]],
) -> None:
    organisation, _ = org_with(1_000, allow_overage=False)

    outcome = in_parallel(lambda: services.reserve(organisation, EACH, at=AT).pk)

    assert outcome.errors == []
    assert len(outcome.ok) == 33
    assert outcome.refused == {Code.INSUFFICIENT: 17}
    (term,) = Subscription.objects.filter(organisation=organisation)
    assert (term.available, term.reserved) == (10, 990)
    assert CreditAccount.objects.get(organisation=organisation).overage_reserved == 0
    assert_ledger_and_balances_agree(organisation, 990)


def test_parallel_reserve_consume_release_keep_the_ledger_exact(
    org_with: Callable[..., tuple[Organisation, Client]],
) -> None:
    # given 1,000 included, no overage; each sender reserves 30, sends 20 and releases 10
    organisation, _ = org_with(1_000, allow_overage=False)

    def send() -> int:
        reservation = services.reserve(organisation, EACH, at=AT)
        services.consume(reservation, 20, at=AT)
        services.release(reservation, at=AT)
        return reservation.pk

    outcome = in_parallel(send)

    assert outcome.errors == []
    assert len(outcome.ok) + sum(outcome.refused.values()) == THREADS
    assert set(outcome.refused) <= {Code.INSUFFICIENT}
    (term,) = Subscription.objects.filter(organisation=organisation)
    assert term.used == 20 * len(outcome.ok)
    assert term.reserved == 0
    assert term.available + term.used == 1_000
    assert term.available >= 0
    assert services.rebuild_balances(organisation) == []
