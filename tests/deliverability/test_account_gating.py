"""Issue 4 point 4: the first sending account is included; each further one needs an active
Additional-account add-on. Accounts asks through a hook that plans registers at start-up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import Membership, Organisation, SendingAccount, User
from plans.entitlements import sending_accounts_allowed
from plans.models import AddOnProduct, AddOnSubscription
from tests.conftest import Tenant
from tests.factories import MembershipFactory, SendingAccountFactory
from tests.plans.conftest import ensure_catalogue

CREATE = reverse("account_create")
LIST = reverse("account_list")
ADDONS_LINK = reverse("plans_overview") + "#addons"


def give_addons(organisation: Organisation, n: int = 1, *, days_left: int = 200, started_days_ago: int = 10) -> None:
    """``n`` Additional-account add-on terms for ``organisation`` (ended ones with ``days_left`` < 0)."""
    ensure_catalogue()
    product = AddOnProduct.objects.get(kind=AddOnProduct.Kind.ADDITIONAL_ACCOUNT)
    now = timezone.now()
    for i in range(n):
        AddOnSubscription.objects.create(
            organisation=organisation,
            product=product,
            domain=f"extra{i}.example",
            starts_at=now - timedelta(days=started_days_ago),
            ends_at=now + timedelta(days=days_left),
        )


@dataclass
class Org:
    organisation: Organisation
    owner: User
    admin: User


@pytest.fixture
def org(db: None) -> Org:
    """An organisation with an owner and an admin and no sending account yet."""
    owner_membership = MembershipFactory(role=Membership.Role.OWNER, user__email="owner@solo.example")
    organisation = owner_membership.organisation
    admin = MembershipFactory(organisation=organisation, role=Membership.Role.ADMIN, user__email="admin@solo.example")
    return Org(organisation, owner_membership.user, admin.user)


def _accounts(organisation: Organisation) -> int:
    return SendingAccount.objects.filter(organisation=organisation).count()


# --- the hook -----------------------------------------------------------------------------


def test_plans_registers_the_allowance_with_accounts(org: Org) -> None:
    assert services.sending_accounts_allowed(org.organisation) == 1
    give_addons(org.organisation, 2)
    assert services.sending_accounts_allowed(org.organisation) == 3


@pytest.fixture
def no_limit_rule() -> Iterator[None]:
    services.set_sending_account_limit(None)
    yield
    services.set_sending_account_limit(sending_accounts_allowed)


def test_without_a_registered_rule_there_is_no_limit(org: Org, login, no_limit_rule: None) -> None:
    SendingAccountFactory(organisation=org.organisation)

    response = login(org.owner).post(CREATE, {"name": "Second"})

    assert response.status_code == 302
    assert _accounts(org.organisation) == 2
    assert "account-allowance" not in login(org.owner).get(LIST).content.decode()


# --- the form -----------------------------------------------------------------------------


def test_the_first_account_is_included(org: Org, login) -> None:
    response = login(org.owner).post(CREATE, {"name": "Main"})

    assert response.status_code == 302
    assert SendingAccount.objects.filter(organisation=org.organisation, name="Main").exists()


def test_a_second_account_is_refused_without_the_addon(org: Org, login) -> None:
    SendingAccountFactory(organisation=org.organisation, name="Main")

    response = login(org.owner).post(CREATE, {"name": "Second"})

    assert response.status_code == 400
    (error,) = response.context["form"].non_field_errors()
    assert "Your plan allows 1 sending account and your organisation has 1." in error
    assert "“Additional sending account” add-on" in error
    assert "Plan & usage" in error
    page = response.content.decode()
    assert f'href="{ADDONS_LINK}"' in page
    assert "Order the add-on" in page
    assert _accounts(org.organisation) == 1


def test_an_active_addon_allows_one_more_account(org: Org, login) -> None:
    SendingAccountFactory(organisation=org.organisation, name="Main")
    give_addons(org.organisation, 1)
    http = login(org.owner)

    assert http.post(CREATE, {"name": "Second"}).status_code == 302
    third = http.post(CREATE, {"name": "Third"})

    assert third.status_code == 400
    assert (
        "Your plan allows 2 sending accounts and your organisation has 2." in third.context["form"].errors["__all__"][0]
    )
    assert _accounts(org.organisation) == 2


@pytest.mark.parametrize(
    ("days_left", "started_days_ago"),
    [(-1, 400), (300, -5)],
    ids=["expired", "not-started-yet"],
)
def test_an_addon_outside_its_term_allows_nothing(org: Org, login, days_left: int, started_days_ago: int) -> None:
    SendingAccountFactory(organisation=org.organisation, name="Main")
    give_addons(org.organisation, 1, days_left=days_left, started_days_ago=started_days_ago)

    response = login(org.owner).post(CREATE, {"name": "Second"})

    assert response.status_code == 400
    assert _accounts(org.organisation) == 1


def test_accounts_of_another_organisation_do_not_count(org: Org, outsider: User, login) -> None:
    # the outsider fixture's organisation has one account already
    response = login(org.owner).post(CREATE, {"name": "Main"})

    assert response.status_code == 302


def test_editing_is_not_gated_even_above_the_allowance(org: Org, login) -> None:
    # given two accounts from a time when the add-on was active
    SendingAccountFactory(organisation=org.organisation, name="Main")
    second = SendingAccountFactory(organisation=org.organisation, name="Second")

    response = login(org.owner).post(reverse("account_edit", args=[second.pk]), {"name": "Second renamed"})

    assert response.status_code == 302
    second.refresh_from_db()
    assert second.name == "Second renamed"


# --- the pages ----------------------------------------------------------------------------


def test_the_list_shows_n_of_m_and_the_button_while_there_is_room(org: Org, login) -> None:
    SendingAccountFactory(organisation=org.organisation, name="Main")
    give_addons(org.organisation, 1)

    page = login(org.owner).get(LIST).content.decode()

    assert "1 in use · 2 sending accounts allowed" in page
    assert 'data-testid="account-create"' in page
    assert 'data-testid="account-limit"' not in page


def test_at_the_limit_the_list_explains_instead_of_offering_the_button(org: Org, login) -> None:
    SendingAccountFactory(organisation=org.organisation, name="Main")

    page = login(org.owner).get(LIST).content.decode()

    assert "1 in use · 1 sending account allowed" in page
    assert 'data-testid="account-create"' not in page
    assert 'data-testid="account-limit"' in page
    assert "Each further account needs the “Additional sending account” add-on" in page
    assert f'href="{ADDONS_LINK}"' in page
    assert "Order the add-on" in page


def test_an_admin_at_the_limit_is_pointed_to_the_plan_page_not_to_ordering(org: Org, login) -> None:
    # admins see billing but only owners order add-ons
    SendingAccountFactory(organisation=org.organisation, name="Main")

    page = login(org.admin).get(LIST).content.decode()

    assert 'data-testid="account-limit"' in page
    assert "Order the add-on" not in page
    assert "See Plan & usage" in page


def test_members_see_the_count_but_no_call_to_order(tenant: Tenant, login) -> None:
    page = login(tenant.member).get(LIST).content.decode()

    assert "3 in use · 1 sending account allowed" in page
    assert 'data-testid="account-limit"' not in page


def test_client_users_see_nothing_of_the_organisations_allowance(tenant: Tenant, login) -> None:
    page = login(tenant.client_user).get(LIST).content.decode()

    assert 'data-testid="account-allowance"' not in page
    assert 'data-testid="account-limit"' not in page


def test_the_create_page_at_the_limit_explains_without_a_form(org: Org, login) -> None:
    SendingAccountFactory(organisation=org.organisation, name="Main")

    response = login(org.owner).get(CREATE)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-testid="account-limit"' in page
    assert "Save sending account" not in page


def test_an_organisation_above_its_allowance_sees_it(org: Org, login) -> None:
    # given three accounts and add-ons that have since expired
    for name in ("A", "B", "C"):
        SendingAccountFactory(organisation=org.organisation, name=name)

    page = login(org.owner).get(LIST).content.decode()

    assert "3 in use · 1 sending account allowed" in page
    assert "Your plan allows 1 sending account and your organisation has 3." in page


# --- concurrency --------------------------------------------------------------------------

THREADS = 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_let_only_the_allowed_number_through() -> None:
    # given one account and two add-ons: room for exactly two more
    owner_membership = MembershipFactory(role=Membership.Role.OWNER, user__email="owner@race.example")
    organisation = owner_membership.organisation
    SendingAccountFactory(organisation=organisation, name="Main")
    give_addons(organisation, 2)
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    statuses: list[int] = []
    errors: list[str] = []

    def create(i: int) -> None:
        try:
            http = HttpClient()
            http.force_login(owner_membership.user)
            barrier.wait(timeout=30)
            response = http.post(CREATE, {"name": f"Racer {i}"})
            with lock:
                statuses.append(response.status_code)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            with lock:
                errors.append(repr(exc))
        finally:
            connection.close()

    # when ten people create an account at the same moment
    threads = [threading.Thread(target=create, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # then two succeed and eight are refused
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert sorted(statuses) == [302] * 2 + [400] * (THREADS - 2)
    assert _accounts(organisation) == 3
