"""The dedicated IP page of a sending account: the advisor, the IPs and the warm-up, the order form for
owners, read-only for the other roles, and tenancy (outsider and other client: 404)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
import time_machine
from django.urls import reverse

from accounts.models import SendingAccount
from deliverability import warmup
from deliverability.models import Domain
from plans import services
from plans.models import AddOnProduct, Order, Plan, Subscription
from tests.conftest import Tenant


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _page(account: SendingAccount) -> str:
    return reverse("deliverability:dedicated_ip", args=[account.pk])


def _order_url(account: SendingAccount) -> str:
    return reverse("deliverability:dedicated_ip_order", args=[account.pk])


def _html(response: Any) -> str:
    return response.content.decode()


def _domain(account: SendingAccount, name: str) -> Domain:
    return Domain.objects.create(sending_account=account, name=name, verification_token=f"token-{name}")


def _send(tenant: Tenant, account: SendingAccount, emails: int, at: datetime) -> None:
    reservation = services.reserve(tenant.organisation, emails, sending_account=account, at=at)
    services.consume(reservation, emails, at=at)


@pytest.fixture
def warming(tenant: Tenant) -> None:
    """account_a got its first IP on 10 March 2026: a 45-day warm-up to 175,000 a day."""
    with time_machine.travel(utc(2026, 3, 10, 9, 0), tick=False):
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None)


# --- who sees what ------------------------------------------------------------------------


def test_owner_sees_the_advisor_and_the_order_form(tenant: Tenant, login: Any) -> None:
    _domain(tenant.account_a, "alpha.example")

    response = login(tenant.owner).get(_page(tenant.account_a))

    html = _html(response)
    assert response.status_code == 200
    assert 'data-testid="advisor"' in html
    assert "175,000" in html
    assert "This account sent no e-mails in the last 30 days." in html
    assert 'data-testid="order-form"' in html
    assert '<option value="alpha.example">alpha.example</option>' in html
    assert "No dedicated IP yet" in html
    # The advisor comes right before the order form.
    assert html.index('data-testid="advisor"') < html.index('data-testid="order-form"')


@pytest.mark.parametrize("persona", ["admin", "member"])
def test_other_roles_see_the_page_read_only(tenant: Tenant, login: Any, persona: str) -> None:
    response = login(getattr(tenant, persona)).get(_page(tenant.account_a))

    html = _html(response)
    assert response.status_code == 200
    assert 'data-testid="advisor"' in html
    assert 'data-testid="order-form"' not in html
    assert "Only owners of your organisation can order a dedicated IP." in html


def test_client_user_sees_its_own_clients_account_read_only(tenant: Tenant, login: Any, warming: None) -> None:
    response = login(tenant.client_user).get(_page(tenant.account_a))

    html = _html(response)
    assert response.status_code == 200
    assert "192.0.2.10" in html
    assert 'data-testid="order-form"' not in html
    assert 'data-testid="orders-table"' not in html


@pytest.mark.parametrize("account", ["account_b", "account_org"])
def test_client_user_gets_404_for_other_accounts(tenant: Tenant, login: Any, account: str) -> None:
    response = login(tenant.client_user).get(_page(getattr(tenant, account)))

    assert response.status_code == 404


def test_outsider_gets_404(tenant: Tenant, outsider: Any, login: Any) -> None:
    client = login(outsider)

    assert client.get(_page(tenant.account_a)).status_code == 404
    assert client.post(_order_url(tenant.account_a), {"ip-other_domain": "alpha.example"}).status_code == 404
    assert not Order.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(tenant: Tenant, client: Any) -> None:
    response = client.get(_page(tenant.account_a))

    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]


# --- ordering -----------------------------------------------------------------------------


def test_owner_orders_a_dedicated_ip_for_a_domain_of_the_account(tenant: Tenant, login: Any) -> None:
    _domain(tenant.account_a, "alpha.example")
    client = login(tenant.owner)

    response = client.post(
        _order_url(tenant.account_a), {"ip-domain": "alpha.example", "ip-note": "Black Friday"}, follow=True
    )

    order = Order.objects.get()
    assert (order.status, order.domain, order.requested_by) == (Order.Status.PENDING, "alpha.example", tenant.owner)
    assert order.addon is not None
    assert order.addon.kind == AddOnProduct.Kind.DEDICATED_IP
    assert order.organisation == tenant.organisation
    assert f"“Alpha account” (#{tenant.account_a.pk})" in order.note
    assert "Black Friday" in order.note
    assert response.redirect_chain[-1][0] == _page(tenant.account_a)
    html = _html(response)
    assert "waits for the XES team&#x27;s approval" in html
    assert "assigns the IP to Alpha account and starts its warm-up" in html
    # The page now says the order is with the XES team.
    assert "Your order is with the XES team." in html
    assert f'data-testid="order-{order.pk}"' in html


def test_owner_orders_for_another_domain_typed_in(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).post(_order_url(tenant.account_a), {"ip-other_domain": "Bäckerei-Müller.DE"})

    assert response.status_code == 302
    assert Order.objects.get().domain == "xn--bckerei-mller-bfb28a.de"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Choose the domain the dedicated IP is for, or enter it."),
        ({"ip-domain": "alpha.example", "ip-other_domain": "beta.example"}, "not both"),
        ({"ip-other_domain": "localhost"}, "Enter a full domain name"),
        ({"ip-domain": "beta.example"}, "Select a valid choice"),
    ],
)
def test_an_order_needs_one_valid_domain(tenant: Tenant, login: Any, data: dict[str, str], message: str) -> None:
    _domain(tenant.account_a, "alpha.example")

    response = login(tenant.owner).post(_order_url(tenant.account_a), data)

    assert response.status_code == 400
    assert message in _html(response)
    assert not Order.objects.exists()


def test_without_domains_the_typed_domain_is_required(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).post(_order_url(tenant.account_a), {"ip-other_domain": ""})

    assert response.status_code == 400
    assert "This field is required." in _html(response)
    assert not Order.objects.exists()


def test_a_second_pending_order_for_the_same_domain_is_refused(tenant: Tenant, login: Any) -> None:
    client = login(tenant.owner)
    client.post(_order_url(tenant.account_a), {"ip-other_domain": "alpha.example"})

    response = client.post(_order_url(tenant.account_a), {"ip-other_domain": "alpha.example"})

    assert response.status_code == 400
    assert "You already ordered this add-on for alpha.example." in _html(response)
    assert Order.objects.count() == 1


@pytest.mark.parametrize("persona", ["admin", "member", "client_user"])
def test_only_owners_may_order(tenant: Tenant, login: Any, persona: str) -> None:
    response = login(getattr(tenant, persona)).post(_order_url(tenant.account_a), {"ip-other_domain": "alpha.example"})

    assert response.status_code == 403
    assert not Order.objects.exists()


def test_ordering_needs_post(tenant: Tenant, login: Any) -> None:
    assert login(tenant.owner).get(_order_url(tenant.account_a)).status_code == 405


def test_when_the_addon_is_not_orderable_the_page_says_so(tenant: Tenant, login: Any) -> None:
    AddOnProduct.objects.filter(kind=AddOnProduct.Kind.DEDICATED_IP).update(orderable=False)
    client = login(tenant.owner)

    html = _html(client.get(_page(tenant.account_a)))
    response = client.post(_order_url(tenant.account_a), {"ip-other_domain": "alpha.example"})

    assert 'data-testid="order-form"' not in html
    assert "cannot be ordered in the portal at the moment" in html
    assert response.status_code == 302
    assert "cannot be ordered in the portal at the moment" in _html(client.get(response["Location"]))
    assert not Order.objects.exists()


# --- the advisor, the IPs and the warm-up -------------------------------------------------


def test_the_advisor_shows_the_accounts_average(tenant: Tenant, login: Any) -> None:
    services.grant_plan(
        tenant.organisation, Plan.objects.get(code="PREMIUM"), origin=Subscription.Origin.XES_TEAM, at=utc(2026, 4, 1)
    )
    _send(tenant, tenant.account_a, 1_050_000, utc(2026, 6, 1))

    with time_machine.travel(utc(2026, 6, 15, 10, 0), tick=False):
        response = login(tenant.owner).get(_page(tenant.account_a))

    html = _html(response)
    assert '<div class="xes-figure xes-figure-strong" data-testid="advisor-average">35,000</div>' in html
    assert "20% of the 175,000 a day we recommend" in html
    assert "Not recommended yet." in html
    assert 'data-progress="20"' in html


def test_the_advisor_recommends_a_dedicated_ip_from_175000_a_day(tenant: Tenant, login: Any) -> None:
    services.grant_plan(
        tenant.organisation, Plan.objects.get(code="PREMIUM"), origin=Subscription.Origin.XES_TEAM, at=utc(2026, 4, 1)
    )
    _send(tenant, tenant.account_a, 6_000_000, utc(2026, 6, 1))

    with time_machine.travel(utc(2026, 6, 15, 10, 0), tick=False):
        html = _html(login(tenant.owner).get(_page(tenant.account_a)))

    assert "Recommended." in html
    assert "This account sent 200,000 e-mails a day on average" in html
    assert 'data-progress="100"' in html


def test_the_warmup_on_day_20(tenant: Tenant, login: Any, warming: None) -> None:
    with time_machine.travel(utc(2026, 3, 29, 15, 0), tick=False):
        response = login(tenant.member).get(_page(tenant.account_a))

    html = _html(response)
    assert response.status_code == 200
    assert "192.0.2.10" in html
    assert "Day 20 of 45" in html
    assert '<div class="xes-figure xes-figure-strong" data-testid="warmup-cap">6,300</div>' in html
    assert "Today this account may send up to <strong>6,300</strong> e-mails." in html
    assert 'data-progress="44"' in html
    assert 'aria-current="date"><td>20 · today</td>' in html
    chart = json.loads(html.split('<script id="warmup-chart-data" type="application/json">')[1].split("</script>")[0])
    assert chart["caps"] == warmup.default_schedule(175_000)
    assert chart["states"][19] == "today"
    assert chart["states"].count("past") == 19
    assert "js/warmup" in html
    assert "No dedicated IP yet" not in html


def test_the_warmup_before_its_start(tenant: Tenant, login: Any) -> None:
    with time_machine.travel(utc(2026, 3, 5, 9, 0), tick=False):
        warmup.assign_ip(tenant.account_a, "192.0.2.10", by=None, starts_on=date(2026, 3, 10))
        html = _html(login(tenant.owner).get(_page(tenant.account_a)))

    assert "not started" in html
    assert "The warm-up starts on March 10, 2026. Until then, the first day's cap applies: up to 500" in html


def test_after_the_warmup_there_is_no_cap(tenant: Tenant, login: Any, warming: None) -> None:
    with time_machine.travel(utc(2026, 5, 1, 9, 0), tick=False):
        html = _html(login(tenant.owner).get(_page(tenant.account_a)))

    assert "The warm-up ended on April 23, 2026. The IP is warm: there is no daily cap any more." in html
    assert 'data-testid="warmup-cap">no cap</div>' in html


def test_without_an_ip_there_is_no_chart(tenant: Tenant, login: Any) -> None:
    html = _html(login(tenant.member).get(_page(tenant.account_a)))

    assert "warmup-chart-data" not in html
    assert "js/warmup" not in html
    assert "An owner of your organisation can order a dedicated IP on this page." in html


def test_the_page_with_ips_warmup_domains_and_orders_needs_few_queries(
    tenant: Tenant, login: Any, warming: None, django_assert_max_num_queries: Any
) -> None:
    for name in ("alpha.example", "alpha-news.example", "alpha-shop.example"):
        _domain(tenant.account_a, name)
    client = login(tenant.owner)
    for name in ("alpha.example", "alpha-news.example"):
        client.post(_order_url(tenant.account_a), {"ip-domain": name})
    warmup.assign_ip(tenant.account_a, "192.0.2.11", by=None)

    with django_assert_max_num_queries(12):
        response = client.get(_page(tenant.account_a))

    assert response.status_code == 200
    html = _html(response)
    assert all(f'data-testid="order-{order.pk}"' in html for order in Order.objects.all())
    assert Order.objects.count() == 2
    assert "192.0.2.11" in html
