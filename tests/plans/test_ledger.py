"""The append-only credit ledger: every movement is an entry, balances follow from it and can be
rebuilt from it; usage is tracked per client and per sending account."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.db.models import F

from accounts.services import ServiceError
from plans import services
from plans.models import CreditAccount, CreditEntry, LedgerIsAppendOnly, Plan, Subscription
from tests.conftest import Tenant
from tests.plans.conftest import T0, balances, grant, kinds, settings_for, utc


def test_every_movement_is_one_entry(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    org = tenant.organisation
    term = grant(org, plan("STANDARD"), T0)
    r = services.reserve(org, 1_000, sending_account=tenant.account_a, at=T0)
    services.consume(r, 700, at=T0)
    services.release(r, at=T0)
    services.adjust_credits(term, 5_000, "Goodwill for the outage", by=tenant.owner)
    services.expire_due_terms(at=term.ends_at)

    assert kinds(org) == [
        ("grant", 1_000_000),
        ("reserve", 1_000),
        ("consume", 700),
        ("release", 300),
        ("adjust", 5_000),
        ("expire", 1_004_300),
    ]
    assert balances(term) == (0, 0, 700)


def test_an_adjustment_records_its_reason_and_who(
    tenant: Tenant, plan: Callable[[str], Plan], staff_user: object
) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)

    entry = services.adjust_credits(term, -20_000, "  Duplicate grant  ", by=staff_user)

    assert (entry.kind, entry.emails, entry.reason, entry.created_by) == (
        "adjust",
        -20_000,
        "Duplicate grant",
        staff_user,
    )
    assert entry.subscription == term
    assert balances(term) == (980_000, 0, 0)


@pytest.mark.parametrize(("delta", "reason", "message"), [(100, "  ", "reason"), (0, "Because", "other than zero")])
def test_an_adjustment_needs_a_reason_and_a_number(
    tenant: Tenant, plan: Callable[[str], Plan], delta: int, reason: str, message: str
) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)

    with pytest.raises(ServiceError, match=message):
        services.adjust_credits(term, delta, reason, by=tenant.owner)
    assert CreditEntry.objects.filter(kind="adjust").count() == 0


def test_an_adjustment_cannot_remove_more_than_is_available(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)
    services.reserve(tenant.organisation, 999_000, at=T0)

    with pytest.raises(ServiceError, match="only 1,000 are available"):
        services.adjust_credits(term, -1_001, "Correction", by=tenant.owner)
    services.adjust_credits(term, -1_000, "Correction", by=tenant.owner)
    assert balances(term) == (0, 999_000, 0)


def test_an_ended_term_cannot_be_adjusted(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)
    services.expire_due_terms(at=term.ends_at)

    with pytest.raises(ServiceError, match="has ended"):
        services.adjust_credits(term, 10, "Late goodwill", by=tenant.owner)


def test_entries_cannot_be_changed_or_deleted(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    entry = CreditEntry.objects.get()

    entry.emails = 5
    with pytest.raises(LedgerIsAppendOnly):
        entry.save()
    with pytest.raises(LedgerIsAppendOnly):
        entry.delete()
    with pytest.raises(LedgerIsAppendOnly):
        CreditEntry.objects.filter(pk=entry.pk).update(emails=5)
    with pytest.raises(LedgerIsAppendOnly):
        CreditEntry.objects.filter(pk=entry.pk).delete()

    entry.refresh_from_db()
    assert entry.emails == 1_000_000


def test_the_database_refuses_negative_entries_and_adjustments_without_reason(tenant: Tenant) -> None:
    org = tenant.organisation
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(organisation=org, kind="grant", emails=-1)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(organisation=org, kind="consume", emails=0)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(organisation=org, kind="adjust", emails=-5, reason="")


def test_the_database_refuses_a_negative_balance(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)

    with pytest.raises(IntegrityError), transaction.atomic():
        Subscription.objects.filter(pk=term.pk).update(available=-1)


def _busy_ledger(tenant: Tenant, plan: Callable[[str], Plan]) -> tuple[Subscription, Subscription]:
    """Two terms, overage, client and account usage, an adjustment, an expiry."""
    org = tenant.organisation
    small = Plan.objects.create(
        code="tiny", name="Tiny", emails_per_year=1_000, price_per_1000="9.00", eligibility="any"
    )
    first = grant(org, small, utc(2026, 1, 1))
    second = grant(org, plan("STANDARD"), utc(2026, 2, 1))
    r1 = services.reserve(org, 600, client=tenant.client_a, at=utc(2026, 3, 1))
    r2 = services.reserve(org, 1_000_000, sending_account=tenant.account_b, at=utc(2026, 3, 2))
    r3 = services.reserve(org, 2_000, sending_account=tenant.account_org, at=utc(2026, 3, 3))  # 1,600 overage
    services.consume(r1, 600, at=utc(2026, 3, 4))
    services.consume(r2, 999_000, at=utc(2026, 3, 5))
    services.release(r2, at=utc(2026, 3, 5))
    services.consume(r3, 1_500, at=utc(2026, 3, 6))
    services.adjust_credits(second, 10_000, "Goodwill", by=tenant.owner)
    services.expire_due_terms(at=utc(2027, 1, 1))
    return first, second


def test_balances_follow_from_the_ledger(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    first, second = _busy_ledger(tenant, plan)

    terms, overage = services.balances_from_ledger(tenant.organisation)

    for term in (first, second):
        term.refresh_from_db()
        assert terms[term.pk] == services.Balances(term.available, term.reserved, term.used)
    account = CreditAccount.objects.get(organisation=tenant.organisation)
    assert (overage.reserved, overage.used) == (account.overage_reserved, account.overage_used)
    assert services.rebuild_balances(tenant.organisation) == []


def test_every_term_balances_against_what_was_granted(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    _busy_ledger(tenant, plan)

    for term in Subscription.objects.filter(organisation=tenant.organisation):
        entries = {k: 0 for k in ("grant", "adjust", "expire")}
        for kind, emails in CreditEntry.objects.filter(subscription=term).values_list("kind", "emails"):
            if kind in entries:
                entries[kind] += emails
        assert term.available + term.reserved + term.used + entries["expire"] == entries["grant"] + entries["adjust"]


def test_rebuild_repairs_a_tampered_term_balance_and_reports_it(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    _, second = _busy_ledger(tenant, plan)
    before = balances(second)
    Subscription.objects.filter(pk=second.pk).update(available=F("available") + 5, used=F("used") - 5)

    differences = services.rebuild_balances(tenant.organisation)

    available, reserved, used = before
    assert differences == [
        f"term {second.pk}: stored Balances(available={available + 5}, reserved={reserved}, used={used - 5}), "
        f"ledger Balances(available={available}, reserved={reserved}, used={used})"
    ]
    assert balances(second) == before
    assert services.rebuild_balances(tenant.organisation) == []


def test_rebuild_repairs_the_overage_balance(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    _busy_ledger(tenant, plan)
    account = CreditAccount.objects.get(organisation=tenant.organisation)
    right = (account.overage_reserved, account.overage_used)
    CreditAccount.objects.filter(pk=account.pk).update(overage_used=0, overage_reserved=42)

    differences = services.rebuild_balances(tenant.organisation)

    assert len(differences) == 1
    assert differences[0].startswith("overage:")
    account.refresh_from_db()
    assert (account.overage_reserved, account.overage_used) == right == (500, 1_100)


def test_usage_is_tracked_per_client_and_per_sending_account(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    _busy_ledger(tenant, plan)
    march = (utc(2026, 3, 1), utc(2026, 4, 1))

    # account_b belongs to client_b: the client follows from the account
    assert services.sending_account_usage(tenant.account_b, *march) == 999_000
    assert services.sending_account_usage(tenant.account_org, *march) == 1_500
    assert services.sending_account_usage(tenant.account_a, *march) == 0
    assert services.client_usage(tenant.client_a, at=utc(2026, 3, 10)).used == 600
    assert services.client_usage(tenant.client_b, at=utc(2026, 3, 10)).used == 999_000
    consumed = CreditEntry.objects.filter(kind="consume", sending_account=tenant.account_b)
    assert set(consumed.values_list("client", flat=True)) == {tenant.client_b.pk}


def test_ledger_times_follow_the_frozen_clock(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    with time_machine.travel(utc(2026, 5, 17, 8, 30), tick=False):
        services.grant_plan(tenant.organisation, plan("STANDARD"), origin=Subscription.Origin.XES_TEAM)
        r = services.reserve(tenant.organisation, 5)
        services.consume(r, 5)
    times = set(CreditEntry.objects.values_list("created_at", flat=True))
    assert times == {utc(2026, 5, 17, 8, 30)}


def test_no_entry_is_written_when_a_reservation_is_refused(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    org = tenant.organisation
    term = grant(org, plan("STANDARD"), T0)
    settings_for(org, allow_overage=False)
    count = CreditEntry.objects.count()

    with pytest.raises(services.CreditRefused):
        services.reserve(org, 1_000_001, at=T0 + timedelta(hours=1))

    assert CreditEntry.objects.count() == count
    assert balances(term) == (1_000_000, 0, 0)
    assert not org.reservations.exists()
