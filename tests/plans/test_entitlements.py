"""The entitlement API later features call: add-ons per domain (IDN normalised), at term boundaries,
and the number of sending accounts allowed."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine

from accounts.models import User
from accounts.services import ServiceError
from plans import entitlements, services
from plans.models import AddOnProduct, AddOnSubscription, Order
from tests.conftest import Tenant
from tests.factories import OrganisationFactory
from tests.plans.conftest import ensure_catalogue, utc

Kind = AddOnProduct.Kind
ASP = Kind.ADVANCED_SENDER
APPROVED = utc(2026, 3, 1, 9, 0)


@pytest.fixture(autouse=True)
def _catalogue(db: None) -> None:
    ensure_catalogue()


def addon(tenant: Tenant, staff_user: User, kind: str, domain: str, at: datetime = APPROVED) -> AddOnSubscription:
    """Order an add-on as the owner and have the XES team approve it at ``at``."""
    order = services.order_addon(tenant.organisation, AddOnProduct.objects.get(kind=kind), domain, tenant.owner)
    term = services.approve_order(order, by=staff_user, at=at)
    assert isinstance(term, AddOnSubscription)
    return term


def test_the_advanced_sender_package_belongs_to_one_domain(tenant: Tenant, staff_user: User) -> None:
    term = addon(tenant, staff_user, ASP, "news.acme.example")
    at = utc(2026, 6, 1)

    assert (term.starts_at, term.ends_at) == (APPROVED, utc(2027, 3, 1, 9, 0))
    assert entitlements.has_addon(tenant.organisation, ASP, "news.acme.example", at=at)
    assert not entitlements.has_addon(tenant.organisation, ASP, "acme.example", at=at)
    assert not entitlements.has_addon(tenant.organisation, Kind.DEDICATED_IP, "news.acme.example", at=at)
    assert not entitlements.has_addon(OrganisationFactory(), ASP, "news.acme.example", at=at)


@pytest.mark.parametrize("asked", ["bücher.example", "BÜCHER.Example.", " xn--bcher-kva.example ", "Bücher.example"])
def test_domains_are_compared_normalised(tenant: Tenant, staff_user: User, asked: str) -> None:
    term = addon(tenant, staff_user, ASP, "Bücher.EXAMPLE")

    assert term.domain == "xn--bcher-kva.example"
    assert entitlements.has_addon(tenant.organisation, ASP, asked, at=utc(2026, 6, 1))


def test_idna_2008_keeps_the_sharp_s(tenant: Tenant, staff_user: User) -> None:
    addon(tenant, staff_user, ASP, "straße.example")

    assert entitlements.has_addon(tenant.organisation, ASP, "STRASSE.example", at=utc(2026, 6, 1)) is False
    assert entitlements.has_addon(tenant.organisation, ASP, "straße.example", at=utc(2026, 6, 1))


def test_a_string_that_is_no_domain_has_no_addon(tenant: Tenant, staff_user: User) -> None:
    addon(tenant, staff_user, ASP, "acme.example")

    assert entitlements.has_addon(tenant.organisation, ASP, "not a domain!", at=utc(2026, 6, 1)) is False


def test_an_addon_counts_from_its_start_until_the_instant_it_ends(tenant: Tenant, staff_user: User) -> None:
    term = addon(tenant, staff_user, ASP, "acme.example", at=utc(2024, 2, 29, 12, 0))
    org = tenant.organisation

    assert term.ends_at == utc(2025, 2, 28, 12, 0)
    assert not entitlements.has_addon(org, ASP, "acme.example", at=term.starts_at - timedelta(microseconds=1))
    assert entitlements.has_addon(org, ASP, "acme.example", at=term.starts_at)
    assert entitlements.has_addon(org, ASP, "acme.example", at=term.ends_at - timedelta(microseconds=1))
    assert not entitlements.has_addon(org, ASP, "acme.example", at=term.ends_at)


def test_the_clock_decides_by_default(tenant: Tenant, staff_user: User) -> None:
    addon(tenant, staff_user, ASP, "acme.example")

    with time_machine.travel(utc(2027, 3, 1, 8, 59), tick=False):
        assert entitlements.has_addon(tenant.organisation, ASP, "acme.example")
    with time_machine.travel(utc(2027, 3, 1, 9, 0), tick=False):
        assert not entitlements.has_addon(tenant.organisation, ASP, "acme.example")


def test_a_renewal_follows_the_running_addon_without_a_gap(tenant: Tenant, staff_user: User) -> None:
    first = addon(tenant, staff_user, ASP, "acme.example")
    product = AddOnProduct.objects.get(kind=ASP)

    # while it runs, the owner cannot order the same add-on for the domain again ...
    with pytest.raises(ServiceError, match="already has"):
        services.order_addon(tenant.organisation, product, "ACME.example", tenant.owner)

    # ... but an order the XES team enters and approves queues behind the running term
    order = Order.objects.create(organisation=tenant.organisation, addon=product, domain="acme.example")
    second = services.approve_order(order, by=staff_user, at=utc(2027, 2, 1))

    assert (second.starts_at, second.ends_at) == (first.ends_at, utc(2028, 3, 1, 9, 0))
    assert entitlements.has_addon(tenant.organisation, ASP, "acme.example", at=first.ends_at)
    assert not entitlements.has_addon(tenant.organisation, ASP, "acme.example", at=second.ends_at)


def test_addon_domains_lists_the_domains_with_an_addon_now(tenant: Tenant, staff_user: User) -> None:
    addon(tenant, staff_user, ASP, "b.example")
    addon(tenant, staff_user, ASP, "a.example")
    addon(tenant, staff_user, Kind.DEDICATED_IP, "c.example")

    assert entitlements.addon_domains(tenant.organisation, ASP, at=utc(2026, 6, 1)) == ["a.example", "b.example"]
    assert entitlements.addon_domains(tenant.organisation, ASP, at=utc(2027, 6, 1)) == []


def test_one_sending_account_is_included_and_each_addon_allows_one_more(tenant: Tenant, staff_user: User) -> None:
    org = tenant.organisation
    assert entitlements.sending_accounts_allowed(org, at=utc(2026, 6, 1)) == 1

    addon(tenant, staff_user, Kind.ADDITIONAL_ACCOUNT, "a.example")
    addon(tenant, staff_user, Kind.ADDITIONAL_ACCOUNT, "b.example", at=utc(2026, 5, 1))
    addon(tenant, staff_user, ASP, "c.example")  # another kind does not count

    assert entitlements.sending_accounts_allowed(org, at=utc(2026, 2, 1)) == 1
    assert entitlements.sending_accounts_allowed(org, at=utc(2026, 6, 1)) == 3
    assert entitlements.sending_accounts_allowed(org, at=utc(2027, 3, 15)) == 2  # the first has ended
    assert entitlements.sending_accounts_allowed(org, at=utc(2027, 5, 1)) == 1
    assert entitlements.sending_accounts_allowed(OrganisationFactory(), at=utc(2026, 6, 1)) == 1
