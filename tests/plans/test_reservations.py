"""The sending API: reserve for (organisation, client, account), consume on acceptance, release the rest."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.models import SendingAccount
from accounts.services import ServiceError
from plans import services
from plans.models import CreditAccount, CreditEntry, Plan, Reservation, Subscription
from tests.conftest import Tenant
from tests.factories import ClientFactory, SendingAccountFactory
from tests.plans.conftest import T0, balances, grant, utc

Code = services.CreditRefused.Code


def test_reserve_sets_credits_aside(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)

    r = services.reserve(tenant.organisation, 1_000, sending_account=tenant.account_a, purpose="Spring news", at=T0)

    assert (r.quantity, r.consumed, r.released, r.outstanding) == (1_000, 0, 0, 1_000)
    assert (r.client, r.sending_account, r.purpose) == (tenant.client_a, tenant.account_a, "Spring news")
    assert balances(term) == (999_000, 1_000, 0)
    entry = CreditEntry.objects.get(kind="reserve")
    assert (entry.reservation, entry.client, entry.sending_account) == (r, tenant.client_a, tenant.account_a)


def test_without_an_active_plan_sending_is_refused(tenant: Tenant) -> None:
    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(tenant.organisation, 1, at=T0)

    assert refused.value.code == Code.NO_PLAN
    assert "no active plan" in str(refused.value)


@pytest.mark.parametrize("quantity", [0, -5])
def test_a_reservation_needs_a_positive_quantity(tenant: Tenant, plan: Callable[[str], Plan], quantity: int) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)

    with pytest.raises(ValueError, match="positive"):
        services.reserve(tenant.organisation, quantity, at=T0)


def test_a_suspended_account_may_send_nothing(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    account = tenant.account_a
    account.standing = SendingAccount.Standing.SUSPENDED
    account.save()

    for promotional in (True, False):
        with pytest.raises(services.CreditRefused) as refused:
            services.reserve(tenant.organisation, 10, sending_account=account, promotional=promotional, at=T0)
        assert refused.value.code == Code.STANDING
        assert "“Alpha account” is suspended" in str(refused.value)
    assert not CreditEntry.objects.filter(kind="reserve").exists()


def test_probation_pauses_promotional_but_not_transactional_mail(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    account = tenant.account_a
    account.standing = SendingAccount.Standing.PROBATION
    account.save()

    with pytest.raises(services.CreditRefused) as refused:
        services.reserve(tenant.organisation, 10, sending_account=account, at=T0)
    r = services.reserve(tenant.organisation, 10, sending_account=account, promotional=False, at=T0)

    assert refused.value.code == Code.STANDING
    assert "on probation" in str(refused.value)
    assert r.quantity == 10


@pytest.mark.parametrize("standing", [SendingAccount.Standing.GOOD, SendingAccount.Standing.WARNING])
def test_good_and_warning_accounts_send(tenant: Tenant, plan: Callable[[str], Plan], standing: str) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    tenant.account_a.standing = standing
    tenant.account_a.save()

    assert services.reserve(tenant.organisation, 10, sending_account=tenant.account_a, at=T0).quantity == 10


def test_a_client_or_account_of_another_organisation_is_refused(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    foreign_client = ClientFactory()
    foreign_account = SendingAccountFactory()

    with pytest.raises(ServiceError, match="client does not belong"):
        services.reserve(tenant.organisation, 1, client=foreign_client, at=T0)
    with pytest.raises(ServiceError, match="sending account does not belong"):
        services.reserve(tenant.organisation, 1, sending_account=foreign_account, at=T0)
    with pytest.raises(ServiceError, match="another client"):
        services.reserve(tenant.organisation, 1, client=tenant.client_b, sending_account=tenant.account_a, at=T0)
    assert not tenant.organisation.reservations.exists()


def test_consume_then_release_the_rest(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)
    r = services.reserve(tenant.organisation, 1_000, at=T0)

    services.consume(r, 600, at=T0)
    released = services.release(r, at=T0)

    assert released == 400
    assert (r.consumed, r.released, r.outstanding) == (600, 400, 0)
    assert balances(term) == (999_400, 0, 600)
    assert services.release(r, at=T0) == 0  # nothing outstanding: a no-op


def test_a_reservation_cannot_be_settled_twice(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), T0)
    r = services.reserve(tenant.organisation, 100, at=T0)
    services.consume(r, 70, at=T0)

    with pytest.raises(ServiceError, match="only 30 are still reserved"):
        services.consume(r, 31, at=T0)
    with pytest.raises(ServiceError, match="only 30 are still reserved"):
        services.release(r, 31, at=T0)
    with pytest.raises(ServiceError):
        services.consume(r, -1, at=T0)
    services.release(r, 30, at=T0)
    with pytest.raises(ServiceError, match="only 0 are still reserved"):
        services.consume(r, 1, at=T0)

    assert balances(term) == (999_930, 0, 70)
    assert services.rebuild_balances(tenant.organisation) == []


def test_a_stale_reservation_object_cannot_over_settle(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)
    r = services.reserve(tenant.organisation, 100, at=T0)
    stale = type(r).objects.get(pk=r.pk)
    services.consume(r, 100, at=T0)

    with pytest.raises(ServiceError):
        services.release(stale, 1, at=T0)


def _with_overage(tenant: Tenant, small_plan: Callable[..., Plan]) -> tuple[Subscription, Reservation]:
    """1,000 included at $10.00; a reservation of 1,500: 1,000 included + 500 overage."""
    term = grant(tenant.organisation, small_plan(1_000, "10.00"), T0)
    r = services.reserve(tenant.organisation, 1_500, at=T0)
    return term, r


def test_consume_uses_included_credits_before_overage(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    term, r = _with_overage(tenant, small_plan)

    services.consume(r, 1_200, at=T0)

    assert balances(term) == (0, 0, 1_000)
    account = CreditAccount.objects.get(organisation=tenant.organisation)
    assert (account.overage_reserved, account.overage_used) == (300, 200)
    consume = list(CreditEntry.objects.filter(kind="consume").values_list("subscription", "emails", "price_per_1000"))
    assert consume == [(term.pk, 1_000, None), (None, 200, Decimal("10.00"))]


def test_release_returns_overage_before_included_credits(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    term, r = _with_overage(tenant, small_plan)

    services.release(r, 700, at=T0)

    account = CreditAccount.objects.get(organisation=tenant.organisation)
    assert (account.overage_reserved, account.overage_used) == (0, 0)
    assert balances(term) == (200, 800, 0)
    released = list(CreditEntry.objects.filter(kind="release").values_list("subscription", "emails"))
    assert released == [(None, 500), (term.pk, 200)]


def test_release_goes_back_to_the_later_term_first(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    early = grant(tenant.organisation, small_plan(1_000, "10.00", code="early"), utc(2026, 1, 1))
    late = grant(tenant.organisation, small_plan(1_000, "10.00", code="late"), utc(2026, 2, 1))
    r = services.reserve(tenant.organisation, 1_500, at=T0)

    services.release(r, 600, at=T0)

    # the early term (drawn first) keeps its share, so the next draw still comes from it
    assert balances(early) == (100, 900, 0)
    assert balances(late) == (1_000, 0, 0)


def test_credits_released_into_an_expired_term_expire_at_once(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    # given a reservation made just before the term ends
    term = grant(tenant.organisation, plan("STANDARD"), utc(2026, 1, 1))
    r = services.reserve(tenant.organisation, 1_000, at=utc(2026, 12, 31, 23))
    assert services.expire_due_terms(at=utc(2027, 1, 1)) == 1
    assert balances(term) == (0, 1_000, 0)

    # when part is consumed and the rest released after the end
    services.consume(r, 400, at=utc(2027, 1, 1, 1))
    services.release(r, at=utc(2027, 1, 1, 2))

    # then the released 600 expire at once: nothing comes back to life
    assert balances(term) == (0, 0, 400)
    late = list(CreditEntry.objects.filter(subscription=term).values_list("kind", "emails"))
    assert late[-2:] == [("release", 600), ("expire", 600)]
    assert services.pool(tenant.organisation, utc(2027, 1, 2)).available == 0
    assert services.rebuild_balances(tenant.organisation) == []


def test_a_release_after_the_end_but_before_the_expiry_job_expires_with_the_job(
    tenant: Tenant, plan: Callable[[str], Plan]
) -> None:
    term = grant(tenant.organisation, plan("STANDARD"), utc(2026, 1, 1))
    r = services.reserve(tenant.organisation, 1_000, at=utc(2026, 12, 31))
    services.release(r, at=utc(2027, 1, 1, 0, 1))

    # the ended term is no longer in the pool ...
    assert services.pool(tenant.organisation, utc(2027, 1, 1, 0, 1)).available == 0
    services.expire_due_terms(at=utc(2027, 1, 1, 0, 5))

    # ... and the job expires everything that was left
    assert balances(term) == (0, 0, 0)
    assert CreditEntry.objects.get(subscription=term, kind="expire").emails == 1_000_000


def test_the_client_follows_from_the_sending_account(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)

    r = services.reserve(tenant.organisation, 5, sending_account=tenant.account_b, at=T0)
    org_wide = services.reserve(tenant.organisation, 5, sending_account=tenant.account_org, at=T0)

    assert r.client == tenant.client_b
    assert org_wide.client is None


def test_reservation_parts_explain_where_the_credits_came_from(tenant: Tenant, small_plan: Callable[..., Plan]) -> None:
    term, r = _with_overage(tenant, small_plan)

    parts = [(p.subscription_id, p.quantity, p.price_per_1000) for p in r.parts.all()]

    assert parts == [(term.pk, 1_000, None), (None, 500, Decimal("10.00"))]


def test_the_purpose_is_cut_to_fit(tenant: Tenant, plan: Callable[[str], Plan]) -> None:
    grant(tenant.organisation, plan("STANDARD"), T0)

    r = services.reserve(tenant.organisation, 1, purpose="x" * 500, at=T0 + timedelta(minutes=1))

    assert len(r.purpose) == 200
