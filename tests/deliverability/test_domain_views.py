"""Portal pages of the domain wizard: tenancy (outsider 404), roles (403), forms with clear errors,
and the Advanced Sender Package offer in place of the package's steps."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from accounts.models import User
from deliverability import services
from deliverability.models import DnsRecord, Domain
from plans.models import AddOnProduct, Order
from tests.conftest import Tenant
from tests.deliverability.helpers import give_package

STEPS = ["verify", "mail-from", "spf", "dmarc", "tracking"]


@pytest.fixture
def domain(tenant: Tenant) -> Domain:
    return services.add_domain(tenant.account_a, "alpha.example", Domain.DkimMode.EASY)


def test_the_list_says_what_to_do_when_there_are_no_domains(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).get(reverse("deliverability:domain_list"))

    assert response.status_code == 200
    assert b'data-testid="empty-state"' in response.content
    assert reverse("deliverability:domain_create").encode() in response.content


def test_the_list_shows_each_domain_with_badges(
    tenant: Tenant, login: Any, domain: Domain, django_assert_max_num_queries: Any
) -> None:
    services.add_domain(tenant.account_b, "beta.example", Domain.DkimMode.BYO)
    client = login(tenant.owner)

    with django_assert_max_num_queries(12):
        response = client.get(reverse("deliverability:domain_list"))

    body = response.content.decode()
    assert "alpha.example" in body
    assert "beta.example" in body
    assert body.count('data-status="pending"') == 2  # the DKIM group of each domain


def test_a_client_user_sees_only_their_clients_domains(tenant: Tenant, login: Any, domain: Domain) -> None:
    other = services.add_domain(tenant.account_b, "beta.example", Domain.DkimMode.EASY)
    client = login(tenant.client_user)

    body = client.get(reverse("deliverability:domain_list")).content.decode()

    assert "alpha.example" in body
    assert "beta.example" not in body
    assert client.get(reverse("deliverability:domain_step", args=[other.pk, "verify"])).status_code == 404


@pytest.mark.parametrize("step", STEPS)
def test_every_step_page_renders(tenant: Tenant, login: Any, domain: Domain, step: str) -> None:
    response = login(tenant.member).get(reverse("deliverability:domain_step", args=[domain.pk, step]))

    assert response.status_code == 200
    assert domain.display_name in response.content.decode()


def test_an_unknown_step_is_404(tenant: Tenant, login: Any, domain: Domain) -> None:
    assert login(tenant.owner).get(reverse("deliverability:domain_step", args=[domain.pk, "nope"])).status_code == 404


@pytest.mark.parametrize(
    ("name", "args", "method"),
    [
        ("deliverability:domain_detail", [], "get"),
        ("deliverability:domain_step", ["verify"], "get"),
        ("deliverability:domain_step", ["dmarc"], "get"),
        ("deliverability:domain_check", [], "post"),
        ("deliverability:domain_settings", ["tracking"], "post"),
        ("deliverability:domain_order_package", [], "post"),
        ("deliverability:domain_delete", [], "post"),
    ],
)
def test_an_outsider_gets_404_everywhere(
    outsider: User, login: Any, domain: Domain, name: str, args: list[str], method: str
) -> None:
    client = login(outsider)

    response = getattr(client, method)(reverse(name, args=[domain.pk, *args]), {"subdomain": "x", "step": "verify"})

    assert response.status_code == 404
    assert Domain.objects.filter(pk=domain.pk).exists()


def test_members_may_not_add_or_remove_domains(tenant: Tenant, login: Any, domain: Domain) -> None:
    client = login(tenant.member)

    assert client.get(reverse("deliverability:domain_create")).status_code == 403
    assert client.post(reverse("deliverability:domain_delete", args=[domain.pk])).status_code == 403
    assert client.post(reverse("deliverability:domain_settings", args=[domain.pk, "tracking"])).status_code == 403
    assert Domain.objects.filter(pk=domain.pk).exists()


def test_an_owner_adds_a_domain_and_lands_on_the_first_step(tenant: Tenant, login: Any) -> None:
    client = login(tenant.owner)

    response = client.post(
        reverse("deliverability:domain_create"),
        {"sending_account": tenant.account_org.pk, "name": "acme.example", "dkim_mode": "easy"},
    )

    domain = Domain.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("deliverability:domain_step", args=[domain.pk, "verify"])
    page = client.get(response["Location"]).content.decode()
    assert page.count('data-testid="record-dkim"') == 3
    assert f"xes-verification={domain.verification_token}" in page


def test_bad_input_gets_a_clear_error_and_keeps_what_was_typed(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).post(
        reverse("deliverability:domain_create"),
        {"sending_account": tenant.account_org.pk, "name": "http://acme.example/x", "dkim_mode": "easy"},
    )

    assert response.status_code == 400
    body = response.content.decode()
    assert "without http://" in body
    assert 'value="http://acme.example/x"' in body
    assert not Domain.objects.exists()


def test_a_client_user_cannot_add_a_domain_to_another_clients_account(tenant: Tenant, login: Any) -> None:
    # client users have no MANAGE_DOMAINS at all; an admin of the organisation can use every account
    response = login(tenant.client_user).post(
        reverse("deliverability:domain_create"),
        {"sending_account": tenant.account_b.pk, "name": "x.example", "dkim_mode": "easy"},
    )

    assert response.status_code == 403


def test_another_organisations_account_is_not_a_choice(tenant: Tenant, login: Any, outsider: User) -> None:
    foreign = outsider.memberships.get().organisation.sending_accounts.get()

    response = login(tenant.owner).post(
        reverse("deliverability:domain_create"),
        {"sending_account": foreign.pk, "name": "x.example", "dkim_mode": "easy"},
    )

    assert response.status_code == 400
    assert not Domain.objects.exists()


def test_without_the_package_its_steps_offer_it(tenant: Tenant, login: Any, domain: Domain) -> None:
    client = login(tenant.owner)

    body = client.get(reverse("deliverability:domain_step", args=[domain.pk, "dmarc"])).content.decode()

    assert 'data-testid="package-offer"' in body
    assert 'data-testid="step-form"' not in body
    assert 'data-state="locked"' in body


def test_an_owner_orders_the_package_from_the_wizard(tenant: Tenant, login: Any, domain: Domain) -> None:
    client = login(tenant.owner)

    response = client.post(reverse("deliverability:domain_order_package", args=[domain.pk]), {"step": "spf"})

    assert response.status_code == 302
    order = Order.objects.get()
    assert (order.addon.kind, order.domain, order.status) == (
        AddOnProduct.Kind.ADVANCED_SENDER,
        "alpha.example",
        Order.Status.PENDING,
    )
    body = client.get(response["Location"]).content.decode()
    assert 'data-testid="package-pending"' in body


def test_only_owners_order(tenant: Tenant, login: Any, domain: Domain) -> None:
    response = login(tenant.admin).post(reverse("deliverability:domain_order_package", args=[domain.pk]))

    assert response.status_code == 403
    assert not Order.objects.exists()


def test_with_the_package_a_step_saves_its_settings(tenant: Tenant, login: Any, domain: Domain) -> None:
    give_package(tenant.organisation, "alpha.example")
    client = login(tenant.admin)

    response = client.post(
        reverse("deliverability:domain_settings", args=[domain.pk, "mail-from"]), {"subdomain": "bounce"}
    )

    assert response.status_code == 302
    domain.refresh_from_db()
    assert domain.mail_from_subdomain == "bounce"
    body = client.get(response["Location"]).content.decode()
    assert "bounce.alpha.example" in body
    assert 'data-testid="record-mail_from_mx"' in body


def test_a_bad_setting_is_explained_and_changes_nothing(tenant: Tenant, login: Any, domain: Domain) -> None:
    give_package(tenant.organisation, "alpha.example")

    response = login(tenant.owner).post(
        reverse("deliverability:domain_settings", args=[domain.pk, "dmarc"]),
        {"policy": "reject", "report_address": "dmarc@alpha.example"},
    )

    assert response.status_code == 400
    assert "one stage at a time" in response.content.decode()
    domain.refresh_from_db()
    assert domain.dmarc_policy == Domain.DmarcPolicy.NONE


def test_an_owner_removes_a_domain(tenant: Tenant, login: Any, domain: Domain) -> None:
    response = login(tenant.owner).post(reverse("deliverability:domain_delete", args=[domain.pk]))

    assert response.status_code == 302
    assert not Domain.objects.exists()
    assert not DnsRecord.objects.exists()


def test_the_section_root_leads_to_the_domains(tenant: Tenant, login: Any) -> None:
    response = login(tenant.member).get("/deliverability/")

    assert response.status_code == 302
    assert response["Location"] == reverse("deliverability:domain_list")
