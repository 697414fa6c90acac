"""The Plan & usage page and its actions: ordering, cancelling, overage settings, client caps, and
who may see and do what (owner acts, admin and member view, client-user sees its client, outsider 404)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from accounts.models import Membership, Organisation
from plans import services
from plans.models import AddOnProduct, AddOnSubscription, ClientAllocation, CreditAccount, Order, Plan
from plans.services import client_usages
from plans.views import forecast
from tests.conftest import Tenant
from tests.factories import ClientFactory, SendingAccountFactory
from tests.plans.conftest import grant, settings_for, utc

OVERVIEW = reverse("plans_overview")


def _html(response: Any) -> str:
    return response.content.decode()


def _order_url(plan: Plan) -> str:
    return reverse("plans_order_plan", args=[plan.pk])


def _cap_data(client_pk: int, cap: Any = "50000", mode: str = "hard", start: str = "2026-01-01") -> dict[str, Any]:
    prefix = f"cap{client_pk}"
    return {f"{prefix}-yearly_cap": cap, f"{prefix}-mode": mode, f"{prefix}-period_start": start}


def _consume(tenant: Tenant, emails: int, account: Any = None, at: Any = None) -> None:
    reservation = services.reserve(tenant.organisation, emails, sending_account=account or tenant.account_a, at=at)
    services.consume(reservation, emails, at=at)


# --- the page -----------------------------------------------------------------------------


def test_owner_sees_the_catalogue_with_prices_and_reasons(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).get(OVERVIEW)

    html = _html(response)
    assert response.status_code == 200
    assert "No active plan" in html
    assert "1,000,000" in html
    assert "$6.00" in html
    assert "$2.20" in html
    assert "free first year" in html
    assert "price on request" in html
    # BASIC needs a cross-media configuration; STARTER comes with cloud e-media: both greyed with the reason.
    assert "BASIC is only for customers with an XMPie cross-media configuration." in html
    assert "STARTER is included automatically" in html
    assert html.count('data-testid="plan-') == 6
    assert f'action="{_order_url(Plan.objects.get(code="STANDARD"))}"' in html
    assert f'action="{_order_url(Plan.objects.get(code="BASIC"))}"' not in html


def test_owner_sees_the_pool_bar_terms_and_forecast(tenant: Tenant, login: Any, plan: Any) -> None:
    now = timezone.now()
    grant(tenant.organisation, plan("STANDARD"), now - timedelta(days=40))
    _consume(tenant, 300_000, at=now - timedelta(days=10))
    services.reserve(tenant.organisation, 100_000, sending_account=tenant.account_b)

    html = _html(login(tenant.owner).get(OVERVIEW))

    assert 'data-testid="pool-included">1,000,000<' in html
    assert 'data-testid="pool-available">600,000<' in html
    assert 'aria-valuenow="300000"' in html
    assert 'data-progress="30.00"' in html
    assert 'aria-valuenow="100000"' in html
    assert 'data-progress="10.00"' in html
    assert "40% of your pool is used or reserved." in html
    # 300,000 in the last 30 days = 10,000 a day: 600,000 left last 60 days.
    runs_out = timezone.localtime(now + timedelta(days=60)).date()
    assert "(10,000 e-mails per day) the included e-mails run out on" in html
    assert f"run out on <strong>{date_format(runs_out)}</strong>" in html
    assert 'data-testid="terms-table"' in html
    assert "ends in 324 days" in html


def test_overage_rule_is_stated_with_a_worked_example(tenant: Tenant, login: Any, plan: Any) -> None:
    grant(tenant.organisation, plan("STANDARD"), timezone.now())

    html = _html(login(tenant.owner).get(OVERVIEW))

    assert "pro rata" in html
    assert "rounded half up to the cent" in html
    # 1,234 e-mails at $6.00 per 1,000 = $7.404, rounded to $7.40.
    assert "Example: 1,234 e-mails at $6.00 per 1,000 cost $7.40." in html


def test_monthly_chart_splits_included_and_overage(tenant: Tenant, login: Any, small_plan: Any) -> None:
    now = timezone.now()
    grant(tenant.organisation, small_plan(1_000), now - timedelta(days=1))
    _consume(tenant, 1_500, at=now)

    response = login(tenant.owner).get(OVERVIEW)

    chart = response.context["chart"]["data"]
    assert len(chart["labels"]) == 12
    assert [s["key"] for s in chart["series"]] == ["included", "overage"]
    assert chart["series"][0]["data"][-1] == 1_000
    assert chart["series"][1]["data"][-1] == 500
    assert 'id="usage-chart-data"' in _html(response)


# --- ordering plans -----------------------------------------------------------------------


def test_owner_orders_a_plan_and_the_order_waits_for_approval(tenant: Tenant, login: Any, plan: Any) -> None:
    standard = plan("STANDARD")

    response = login(tenant.owner).post(_order_url(standard), follow=True)

    order = Order.objects.get(organisation=tenant.organisation)
    assert (order.plan, order.status, order.requested_by) == (standard, Order.Status.PENDING, tenant.owner)
    html = _html(response)
    assert "waits for the XES team" in html
    assert f'data-testid="order-{order.pk}"' in html
    assert "Waiting for approval" in html


def _cross_media_with_basic_order(tenant: Tenant) -> None:
    Organisation.objects.filter(pk=tenant.organisation.pk).update(has_cross_media_configuration=True)
    Order.objects.create(organisation=tenant.organisation, plan=Plan.objects.get(code="BASIC"))


@pytest.mark.parametrize(
    ("code", "prepare", "reason"),
    [
        ("BASIC", None, "BASIC is only for customers with an XMPie cross-media configuration."),
        ("STARTER", None, "STARTER is included automatically for cloud e-media customers"),
        ("BASIC", _cross_media_with_basic_order, "BASIC is only for new customers who never had an XES plan"),
    ],
    ids=["basic-without-cross-media", "starter", "second-basic"],
)
def test_ineligible_plan_is_refused_with_the_reason(
    tenant: Tenant, login: Any, code: str, prepare: Any, reason: str
) -> None:
    if prepare:
        prepare(tenant)
    before = Order.objects.count()

    response = login(tenant.owner).post(_order_url(Plan.objects.get(code=code)), follow=True)

    assert Order.objects.count() == before
    assert reason in _html(response)


def test_the_same_plan_cannot_be_ordered_twice_while_pending(tenant: Tenant, login: Any, plan: Any) -> None:
    http = login(tenant.owner)
    http.post(_order_url(plan("STANDARD")))

    response = http.post(_order_url(plan("STANDARD")), follow=True)

    assert Order.objects.filter(plan__code="STANDARD").count() == 1
    assert "You already ordered this plan" in _html(response)


def test_basic_can_be_ordered_by_a_new_cross_media_customer(tenant: Tenant, login: Any, plan: Any) -> None:
    Organisation.objects.filter(pk=tenant.organisation.pk).update(has_cross_media_configuration=True)

    login(tenant.owner).post(_order_url(plan("BASIC")))

    assert Order.objects.filter(organisation=tenant.organisation, plan__code="BASIC", status="pending").exists()


def test_another_organisations_custom_plan_is_404(tenant: Tenant, outsider: Any, login: Any) -> None:
    other = outsider.memberships.get().organisation
    custom = Plan.objects.create(
        code="custom-other",
        name="Custom for other",
        emails_per_year=40_000_000,
        price_per_1000=Decimal("1.50"),
        eligibility=Plan.Eligibility.CUSTOM,
        organisation=other,
    )

    response = login(tenant.owner).post(_order_url(custom))

    assert response.status_code == 404
    assert not Order.objects.exists()


# --- add-ons ------------------------------------------------------------------------------


def _addon_data(domain: str, kind: str = AddOnProduct.Kind.ADVANCED_SENDER) -> dict[str, Any]:
    return {"addon-product": AddOnProduct.objects.get(kind=kind).pk, "addon-domain": domain}


def test_owner_orders_an_addon_for_an_international_domain(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).post(reverse("plans_order_addon"), _addon_data(" Müller.Example. "), follow=True)

    order = Order.objects.get(organisation=tenant.organisation)
    assert order.domain == "xn--mller-kva.example"
    assert order.addon.kind == AddOnProduct.Kind.ADVANCED_SENDER
    assert order.status == Order.Status.PENDING
    html = _html(response)
    assert "Advanced Sender Package · müller.example" in html


def test_duplicate_addon_order_is_refused_with_a_message(tenant: Tenant, login: Any) -> None:
    http = login(tenant.owner)
    http.post(reverse("plans_order_addon"), _addon_data("example.com"))

    response = http.post(reverse("plans_order_addon"), _addon_data("EXAMPLE.com"))

    assert response.status_code == 400
    assert "You already ordered this add-on for example.com." in _html(response)
    assert Order.objects.count() == 1


def test_addon_already_active_is_refused(tenant: Tenant, login: Any) -> None:
    now = timezone.now()
    AddOnSubscription.objects.create(
        organisation=tenant.organisation,
        product=AddOnProduct.objects.get(kind=AddOnProduct.Kind.DEDICATED_IP),
        domain="example.com",
        starts_at=now - timedelta(days=1),
        ends_at=now + timedelta(days=300),
    )

    response = login(tenant.owner).post(
        reverse("plans_order_addon"), _addon_data("example.com", AddOnProduct.Kind.DEDICATED_IP)
    )

    assert response.status_code == 400
    assert "example.com already has the Dedicated IP." in _html(response)
    assert 'data-testid="addons-table"' in _html(response)


@pytest.mark.parametrize("domain", ["", "not a domain!", "localhost"])
def test_invalid_domain_is_refused(tenant: Tenant, login: Any, domain: str) -> None:
    response = login(tenant.owner).post(reverse("plans_order_addon"), _addon_data(domain))

    assert response.status_code == 400
    assert 'class="errorlist' in _html(response)
    assert not Order.objects.exists()


# --- cancelling and decisions -------------------------------------------------------------


def test_owner_cancels_a_pending_order(tenant: Tenant, login: Any, plan: Any) -> None:
    order = services.order_plan(tenant.organisation, plan("STANDARD"), tenant.owner)

    response = login(tenant.owner).post(reverse("plans_cancel_order", args=[order.pk]), follow=True)

    order.refresh_from_db()
    assert order.status == Order.Status.CANCELLED
    assert "Your order was cancelled." in _html(response)


def test_a_decided_order_cannot_be_cancelled(tenant: Tenant, login: Any, plan: Any, staff_user: Any) -> None:
    order = services.order_plan(tenant.organisation, plan("STANDARD"), tenant.owner)
    services.approve_order(order, staff_user)

    response = login(tenant.owner).post(reverse("plans_cancel_order", args=[order.pk]), follow=True)

    order.refresh_from_db()
    assert order.status == Order.Status.APPROVED
    assert "Only orders that wait for approval can be cancelled." in _html(response)


def test_rejected_order_shows_the_xes_teams_reason(tenant: Tenant, login: Any, plan: Any, staff_user: Any) -> None:
    order = services.order_plan(tenant.organisation, plan("PREMIUM"), tenant.owner)
    services.reject_order(order, staff_user, "Please talk to us about a custom plan first.")

    html = _html(login(tenant.owner).get(OVERVIEW))

    assert "Rejected" in html
    assert "Please talk to us about a custom plan first." in html
    assert f'action="{reverse("plans_cancel_order", args=[order.pk])}"' not in html


# --- overage settings ---------------------------------------------------------------------


def test_owner_changes_the_overage_settings(tenant: Tenant, login: Any) -> None:
    response = login(tenant.owner).post(
        reverse("plans_overage_settings"), {"overage-monthly_overage_limit": "250.50"}, follow=True
    )

    account = CreditAccount.objects.get(organisation=tenant.organisation)
    assert (account.allow_overage, account.monthly_overage_limit) == (False, Decimal("250.50"))
    assert "Overage settings saved." in _html(response)


def test_overage_limit_can_be_cleared(tenant: Tenant, login: Any) -> None:
    settings_for(tenant.organisation, monthly_overage_limit=Decimal("100"))

    login(tenant.owner).post(
        reverse("plans_overage_settings"), {"overage-allow_overage": "on", "overage-monthly_overage_limit": ""}
    )

    account = CreditAccount.objects.get(organisation=tenant.organisation)
    assert (account.allow_overage, account.monthly_overage_limit) == (True, None)


def test_negative_overage_limit_is_refused_with_a_message(tenant: Tenant, login: Any) -> None:
    settings_for(tenant.organisation, monthly_overage_limit=Decimal("100"))

    response = login(tenant.owner).post(
        reverse("plans_overage_settings"),
        {"overage-allow_overage": "on", "overage-monthly_overage_limit": "-5"},
    )

    assert response.status_code == 400
    assert "The limit cannot be negative. Leave it empty for no limit." in _html(response)
    assert CreditAccount.objects.get(organisation=tenant.organisation).monthly_overage_limit == Decimal("100")


def test_overage_settings_need_post(tenant: Tenant, login: Any) -> None:
    assert login(tenant.owner).get(reverse("plans_overage_settings")).status_code == 405


# --- client caps --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_owner_sets_a_client_cap(tenant: Tenant, login: Any, mode: str) -> None:
    response = login(tenant.owner).post(
        reverse("plans_client_cap", args=[tenant.client_a.pk]), _cap_data(tenant.client_a.pk, mode=mode), follow=True
    )

    allocation = ClientAllocation.objects.get(client=tenant.client_a)
    assert (allocation.yearly_cap, allocation.mode, allocation.period_start) == (50_000, mode, date(2026, 1, 1))
    assert "Cap of Alpha Bakery saved." in _html(response)


def test_changing_a_cap_rearms_the_soft_cap_warning(tenant: Tenant, login: Any) -> None:
    ClientAllocation.objects.create(
        client=tenant.client_a,
        yearly_cap=1_000,
        mode="soft",
        period_start=date(2026, 1, 1),
        warned_period_start=date(2026, 1, 1),
    )

    login(tenant.owner).post(
        reverse("plans_client_cap", args=[tenant.client_a.pk]), _cap_data(tenant.client_a.pk, cap="2000", mode="soft")
    )

    allocation = ClientAllocation.objects.get(client=tenant.client_a)
    assert (allocation.yearly_cap, allocation.warned_period_start) == (2_000, None)


@pytest.mark.parametrize(
    ("cap", "mode", "start"),
    [("0", "hard", "2026-01-01"), ("", "hard", "2026-01-01"), ("abc", "soft", "2026-01-01"), ("10", "x", "2026-01-01")],
    ids=["zero", "empty", "not-a-number", "unknown-mode"],
)
def test_invalid_client_cap_is_refused(tenant: Tenant, login: Any, cap: str, mode: str, start: str) -> None:
    response = login(tenant.owner).post(
        reverse("plans_client_cap", args=[tenant.client_a.pk]), _cap_data(tenant.client_a.pk, cap, mode, start)
    )

    assert response.status_code == 400
    html = _html(response)
    assert "The cap of Alpha Bakery was not saved" in html
    assert 'class="errorlist' in html
    assert "open>" in html  # the row's form stays open with its errors
    assert not ClientAllocation.objects.exists()


def test_owner_removes_a_client_cap(tenant: Tenant, login: Any) -> None:
    ClientAllocation.objects.create(client=tenant.client_a, yearly_cap=1_000, period_start=date(2026, 1, 1))

    response = login(tenant.owner).post(
        reverse("plans_client_cap", args=[tenant.client_a.pk]), {"remove": "1"}, follow=True
    )

    assert not ClientAllocation.objects.exists()
    assert "Alpha Bakery has no cap any more." in _html(response)


def test_client_usage_row_shows_the_cap_and_percent(tenant: Tenant, login: Any, plan: Any) -> None:
    now = timezone.now()
    grant(tenant.organisation, plan("STANDARD"), now - timedelta(days=1))
    ClientAllocation.objects.create(client=tenant.client_a, yearly_cap=10_000, mode="soft", period_start=now.date())
    _consume(tenant, 8_500, at=now)

    html = _html(login(tenant.owner).get(OVERVIEW))

    assert "10,000 · soft" in html
    assert 'aria-valuenow="85"' in html
    assert "xes-level-warning" in html


# --- who may do what ----------------------------------------------------------------------


def _owner_only_posts(tenant: Tenant) -> list[tuple[str, dict[str, Any]]]:
    order = services.order_plan(tenant.organisation, Plan.objects.get(code="PREMIUM"), tenant.owner)
    return [
        (_order_url(Plan.objects.get(code="STANDARD")), {}),
        (reverse("plans_order_addon"), _addon_data("example.com")),
        (reverse("plans_cancel_order", args=[order.pk]), {}),
        (reverse("plans_overage_settings"), {"overage-monthly_overage_limit": "10"}),
        (reverse("plans_client_cap", args=[tenant.client_a.pk]), _cap_data(tenant.client_a.pk)),
    ]


@pytest.mark.parametrize("role", ["admin", "member", "client_user"])
def test_only_owners_may_order_cancel_and_change_settings(tenant: Tenant, login: Any, role: str) -> None:
    posts = _owner_only_posts(tenant)
    http = login(getattr(tenant, role))

    statuses = [http.post(url, data).status_code for url, data in posts]

    assert statuses == [403] * len(posts)
    assert list(Order.objects.values_list("status", flat=True)) == [Order.Status.PENDING]
    assert not CreditAccount.objects.filter(monthly_overage_limit__isnull=False).exists()
    assert not ClientAllocation.objects.exists()


@pytest.mark.parametrize("role", ["owner", "admin", "member", "client_user"])
def test_every_role_may_open_the_page(tenant: Tenant, login: Any, role: str) -> None:
    assert login(getattr(tenant, role)).get(OVERVIEW).status_code == 200


def test_anonymous_is_sent_to_log_in(client: Any) -> None:
    response = client.get(OVERVIEW)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


def test_outsider_gets_404_for_another_tenants_order_and_client(tenant: Tenant, outsider: Any, login: Any) -> None:
    order = services.order_plan(tenant.organisation, Plan.objects.get(code="STANDARD"), tenant.owner)
    http = login(outsider)

    cancel = http.post(reverse("plans_cancel_order", args=[order.pk]))
    cap = http.post(reverse("plans_client_cap", args=[tenant.client_a.pk]), _cap_data(tenant.client_a.pk))

    assert (cancel.status_code, cap.status_code) == (404, 404)
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING
    assert not ClientAllocation.objects.exists()


def test_outsider_sees_nothing_of_the_tenant(tenant: Tenant, outsider: Any, login: Any, plan: Any) -> None:
    grant(tenant.organisation, plan("STANDARD"), timezone.now())
    services.order_plan(tenant.organisation, plan("PREMIUM"), tenant.owner)

    html = _html(login(outsider).get(OVERVIEW))

    assert "Alpha Bakery" not in html
    assert "Beta Cars" not in html
    assert "No active plan" in html
    assert "No orders yet." in html


def test_client_user_sees_only_its_clients_usage_and_no_money(tenant: Tenant, login: Any, plan: Any) -> None:
    now = timezone.now()
    grant(tenant.organisation, plan("STANDARD"), now - timedelta(days=1))
    ClientAllocation.objects.create(client=tenant.client_b, yearly_cap=5_000, period_start=now.date())
    _consume(tenant, 700, account=tenant.account_a, at=now)
    _consume(tenant, 4_000, account=tenant.account_b, at=now)
    services.order_plan(tenant.organisation, plan("PREMIUM"), tenant.owner)

    response = login(tenant.client_user).get(OVERVIEW)

    html = _html(response)
    assert "Alpha Bakery" in html
    assert "Beta Cars" not in html
    assert f'data-testid="client-row-{tenant.client_b.pk}"' not in html
    assert "$" not in html
    for hidden in [
        'data-testid="pool-card"',
        'data-testid="catalogue"',
        "Orders",
        "Premium",
        "Overage",
        '<form method="post" action="/plans/',
    ]:
        assert hidden not in html
    # Its chart holds only its own e-mails, without the organisation's included/overage split.
    series = response.context["chart"]["data"]["series"]
    assert [(s["key"], s["data"][-1]) for s in series] == [("total", 700)]


def test_member_sees_the_pool_but_no_money(tenant: Tenant, login: Any, plan: Any) -> None:
    grant(tenant.organisation, plan("STANDARD"), timezone.now())

    html = _html(login(tenant.member).get(OVERVIEW))

    assert 'data-testid="pool-card"' in html
    assert "1,000,000" in html
    assert "Beta Cars" in html
    assert "$" not in html
    assert 'data-testid="catalogue"' not in html


def test_admin_sees_prices_and_orders_but_no_order_buttons(tenant: Tenant, login: Any, plan: Any) -> None:
    services.order_plan(tenant.organisation, plan("PREMIUM"), tenant.owner)

    html = _html(login(tenant.admin).get(OVERVIEW))

    assert 'data-testid="catalogue"' in html
    assert "$6.00" in html
    assert "Waiting for approval" in html
    assert '<form method="post" action="/plans/' not in html
    assert "Only owners can change these settings." in html


# --- queries ------------------------------------------------------------------------------


def _grow(tenant: Tenant, n: int) -> None:
    now = timezone.now()
    for i in range(n):
        client = ClientFactory(organisation=tenant.organisation)
        account = SendingAccountFactory(organisation=tenant.organisation, client=client)
        if i % 2:
            ClientAllocation.objects.create(client=client, yearly_cap=100_000, period_start=now.date())
        _consume(tenant, 10 + i, account=account, at=now)
        product = AddOnProduct.objects.get(kind=AddOnProduct.Kind.ADVANCED_SENDER)
        Order.objects.create(organisation=tenant.organisation, addon=product, domain=f"d{client.pk}.example")
        AddOnSubscription.objects.create(
            organisation=tenant.organisation,
            product=product,
            domain=f"a{client.pk}.example",
            starts_at=now,
            ends_at=now + timedelta(days=365),
        )


@pytest.mark.parametrize("role", ["owner", "client_user"])
def test_overview_queries_do_not_grow_with_clients_orders_and_addons(
    tenant: Tenant, login: Any, plan: Any, django_assert_max_num_queries: Any, role: str
) -> None:
    grant(tenant.organisation, plan("STANDARD"), timezone.now() - timedelta(days=1))
    http = login(getattr(tenant, role))
    _grow(tenant, 2)
    with django_assert_max_num_queries(30) as small:
        assert http.get(OVERVIEW).status_code == 200
    _grow(tenant, 12)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert http.get(OVERVIEW).status_code == 200


# --- the computations behind the page -----------------------------------------------------


def test_bulk_client_usage_agrees_with_the_service(tenant: Tenant, plan: Any) -> None:
    now = timezone.now()
    grant(tenant.organisation, plan("STANDARD"), now - timedelta(days=200))
    ClientAllocation.objects.create(
        client=tenant.client_a, yearly_cap=9_000, period_start=now.date() - timedelta(days=30)
    )
    _consume(tenant, 1_000, account=tenant.account_a, at=now - timedelta(days=40))  # before its cap year
    _consume(tenant, 2_000, account=tenant.account_a, at=now - timedelta(days=5))
    _consume(tenant, 3_000, account=tenant.account_b, at=now - timedelta(days=5))
    services.reserve(tenant.organisation, 400, sending_account=tenant.account_b)
    clients = list(tenant.organisation.clients.select_related("allocation"))

    bulk = client_usages(clients, now)

    assert bulk == {c.pk: services.client_usage(c, now) for c in clients}
    assert (bulk[tenant.client_a.pk].used, bulk[tenant.client_b.pk].outstanding) == (2_000, 400)


def test_forecast_runs_out_before_the_end_of_the_term(tenant: Tenant, plan: Any) -> None:
    now = utc(2026, 3, 1)
    term = grant(tenant.organisation, plan("STANDARD"), now)

    result = forecast([term], Decimal(10_000), now)

    assert result is not None
    assert result.runs_out == utc(2026, 6, 9)  # 1,000,000 / 10,000 = 100 days
    assert result.lasts_until is None


def test_forecast_lasts_until_the_end_of_the_term(tenant: Tenant, plan: Any) -> None:
    now = utc(2026, 3, 1)
    term = grant(tenant.organisation, plan("STANDARD"), now)

    slow = forecast([term], Decimal(100), now)
    idle = forecast([term], Decimal(0), now)

    assert slow is not None
    assert idle is not None
    assert (slow.runs_out, slow.lasts_until) == (None, utc(2027, 3, 1))
    assert (idle.runs_out, idle.lasts_until) == (None, utc(2027, 3, 1))
    assert forecast([], Decimal(5), now) is None


def test_forecast_lets_the_unused_rest_of_the_first_term_expire(tenant: Tenant, plan: Any) -> None:
    """Credits are drawn from the term that ends first; what it still holds at its end is lost."""
    standard = grant(tenant.organisation, plan("STANDARD"), utc(2025, 3, 11))  # ends 2026-03-11
    professional = grant(tenant.organisation, plan("PROFESSIONAL"), utc(2026, 3, 1))
    now = utc(2026, 3, 1)

    result = forecast([standard, professional], Decimal(50_000), now)

    # STANDARD would last 20 days but ends after 10; PROFESSIONAL's 5,000,000 then last 100 days.
    assert result is not None
    assert result.runs_out == utc(2026, 3, 11) + timedelta(days=100)


def test_membership_roles_match_the_permission_table(tenant: Tenant) -> None:
    roles = {m.role: m for m in Membership.objects.filter(organisation=tenant.organisation)}

    assert [r for r, m in roles.items() if m.can("manage_plans")] == ["owner"]
    assert sorted(r for r, m in roles.items() if m.can("view_billing")) == ["admin", "owner"]
