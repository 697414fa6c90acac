"""The XES team's back office for plans and credits: orders, custom plans, grants, adjustments,
expiry, the read-only ledger, and that only staff get in."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openpyxl
import pytest
from dateutil.relativedelta import relativedelta
from django.contrib import admin
from django.core.management import call_command
from django.db import models
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import Organisation, User
from plans import services
from plans.models import (
    AddOnProduct,
    ClientAllocation,
    CreditAccount,
    CreditEntry,
    Order,
    Plan,
    Reservation,
    Subscription,
)
from tests.conftest import Tenant
from tests.factories import ClientFactory, MembershipFactory, SendingAccountFactory

PLANS_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "plans"),
    key=lambda model: model._meta.model_name or "",
)
PAST = datetime(2024, 1, 15, 9, 0, tzinfo=UTC)


def _url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


@pytest.fixture
def standard(db: None) -> Plan:
    return Plan.objects.get(code="STANDARD")


@pytest.fixture
def order(tenant: Tenant, standard: Plan) -> Order:
    return services.order_plan(tenant.organisation, standard, tenant.owner, note="Please")


@pytest.fixture
def term(tenant: Tenant, standard: Plan) -> Subscription:
    return services.grant_plan(tenant.organisation, standard, origin=Subscription.Origin.XES_TEAM)


@pytest.fixture
def ended_term(tenant: Tenant, standard: Plan) -> Subscription:
    """A term granted two years ago: it has ended and waits for expiry."""
    return services.grant_plan(tenant.organisation, standard, origin=Subscription.Origin.XES_TEAM, at=PAST)


def _rows(n: int, plan: Plan) -> None:
    """``n`` organisations with one of everything: an N+1 in a changelist shows as ``n`` extra queries."""
    product = AddOnProduct.objects.get(kind=AddOnProduct.Kind.DEDICATED_IP)
    for i in range(n):
        membership = MembershipFactory(organisation__name=f"Org {i}", user__email=f"u{i}@x.example")
        organisation, user = membership.organisation, membership.user
        client = ClientFactory(organisation=organisation)
        account = SendingAccountFactory(organisation=organisation, client=client)
        ClientAllocation.objects.create(client=client, yearly_cap=1_000, period_start=PAST.date())
        services.grant_plan(organisation, plan, origin=Subscription.Origin.XES_TEAM, by=user)
        reservation = services.reserve(organisation, 10, sending_account=account)
        services.consume(reservation, 5)
        services.order_plan(organisation, plan, user)
        services.approve_order(services.order_addon(organisation, product, f"d{i}.example", user), by=user)
        Plan.objects.create(
            code=f"custom-{i}",
            name=f"Custom {i}",
            emails_per_year=40_000_000,
            price_per_1000=Decimal("2.00"),
            eligibility=Plan.Eligibility.CUSTOM,
            organisation_id=organisation.pk,
        )


# --- access -------------------------------------------------------------------------------


def test_every_plans_model_is_registered() -> None:
    names = {model._meta.model_name for model in PLANS_MODELS}

    assert names == {
        "plan",
        "creditaccount",
        "order",
        "subscription",
        "addonproduct",
        "addonsubscription",
        "clientallocation",
        "reservation",
        "creditentry",
    }


@pytest.mark.parametrize("model", PLANS_MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_opens_with_a_bounded_number_of_queries(
    back_office: HttpClient, standard: Plan, django_assert_max_num_queries: Any, model: type[models.Model]
) -> None:
    _rows(6, standard)

    with django_assert_max_num_queries(12):
        response = back_office.get(_url(model, "changelist"))

    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


@pytest.mark.parametrize("model", PLANS_MODELS, ids=lambda m: m._meta.model_name)
def test_change_page_and_search_open(back_office: HttpClient, standard: Plan, model: type[models.Model]) -> None:
    _rows(1, standard)
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None

    assert back_office.get(_url(model, "change", obj.pk)).status_code == 200
    assert back_office.get(_url(model, "changelist"), {"q": "Org"}).status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        reverse("admin:plans_order_changelist"),
        reverse("admin:plans_creditentry_changelist"),
        reverse("admin:plans_subscription_grant"),
        reverse("admin:plans_subscription_run_expiry"),
        reverse("admin:plans_subscription_adjust", args=[1]),
    ],
)
def test_a_customer_has_no_access(tenant: Tenant, login: Any, url: str) -> None:
    response = login(tenant.owner).get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_a_customer_cannot_post_an_adjustment(tenant: Tenant, term: Subscription, login: Any) -> None:
    response = login(tenant.owner).post(
        reverse("admin:plans_subscription_adjust", args=[term.pk]), {"emails": 1_000, "reason": "free"}
    )

    assert response.status_code == 302
    assert not CreditEntry.objects.filter(kind=CreditEntry.Kind.ADJUST).exists()


# --- orders -------------------------------------------------------------------------------


def test_approving_an_order_starts_a_12_month_term_with_a_grant(
    back_office: HttpClient, order: Order, staff_user: User
) -> None:
    response = back_office.post(
        _url(Order, "changelist"), {"action": "approve", "_selected_action": [order.pk]}, follow=True
    )

    assert "1 order approved." in _messages(response)
    order.refresh_from_db()
    assert (order.status, order.decided_by) == (Order.Status.APPROVED, staff_user)
    term = Subscription.objects.get(order=order)
    assert term.ends_at == term.starts_at + relativedelta(months=12)
    assert (term.included_emails, term.available) == (1_000_000, 1_000_000)
    grant = CreditEntry.objects.get(subscription=term)
    assert (grant.kind, grant.emails, grant.created_by) == (CreditEntry.Kind.GRANT, 1_000_000, staff_user)


def test_an_order_can_be_approved_from_its_own_page(back_office: HttpClient, order: Order) -> None:
    response = back_office.post(
        _url(Order, "change", order.pk),
        {"CHANGE_FORM-action": "approve", "_selected_action": [order.pk]},
        follow=True,
    )

    assert response.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.APPROVED


def test_approving_a_decided_order_shows_the_refusal(back_office: HttpClient, order: Order, tenant: Tenant) -> None:
    services.cancel_order(order, tenant.owner)

    response = back_office.post(
        _url(Order, "changelist"), {"action": "approve", "_selected_action": [order.pk]}, follow=True
    )

    assert any("already decided" in m for m in _messages(response))
    assert not Subscription.objects.filter(order=order).exists()


def test_rejecting_asks_for_a_reason_first(back_office: HttpClient, order: Order) -> None:
    response = back_office.post(_url(Order, "changelist"), {"action": "reject", "_selected_action": [order.pk]})

    assert response.status_code == 200
    assert "admin/plans/order/reject.html" in [t.name for t in response.templates]
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


def test_rejecting_without_a_reason_is_refused(back_office: HttpClient, order: Order) -> None:
    response = back_office.post(
        _url(Order, "changelist"),
        {"action": "reject", "_selected_action": [order.pk], "confirm": "yes", "reason": "   "},
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


def test_rejecting_with_a_reason_tells_the_customer_why(back_office: HttpClient, order: Order) -> None:
    response = back_office.post(
        _url(Order, "changelist"),
        {"action": "reject", "_selected_action": [order.pk], "confirm": "yes", "reason": "Volume too high for BASIC"},
        follow=True,
    )

    assert "1 order rejected." in _messages(response)
    order.refresh_from_db()
    assert (order.status, order.decision_note) == (Order.Status.REJECTED, "Volume too high for BASIC")


def test_orders_cannot_be_added_or_edited_in_the_back_office(back_office: HttpClient, order: Order) -> None:
    assert back_office.get(_url(Order, "add")).status_code == 403
    response = back_office.post(_url(Order, "change", order.pk), {"status": "approved"})
    assert response.status_code == 403
    order.refresh_from_db()
    assert order.status == Order.Status.PENDING


# --- custom plans -------------------------------------------------------------------------


def _plan_form(**values: Any) -> dict[str, Any]:
    data = {
        "code": "acme-custom",
        "name": "Acme custom",
        "emails_per_year": 40_000_000,
        "price_per_1000": "1.90",
        "annual_fee": "",
        "eligibility": "custom",
        "organisation": "",
        "renewable": "on",
        "sort_order": 10,
    }
    return {**data, **values}


def test_custom_plan_needs_an_organisation_and_more_than_30_million(back_office: HttpClient) -> None:
    response = back_office.post(_url(Plan, "add"), _plan_form(emails_per_year=20_000_000))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert errors["organisation"] == ["A custom plan is made for one organisation: choose it."]
    assert errors["emails_per_year"] == [
        "Custom plans are for more than 30,000,000 e-mails a year; below that, use a catalogue plan."
    ]
    assert "__all__" not in errors
    assert not Plan.objects.filter(code="acme-custom").exists()


def test_only_custom_plans_belong_to_an_organisation(back_office: HttpClient, tenant: Tenant) -> None:
    response = back_office.post(_url(Plan, "add"), _plan_form(eligibility="any", organisation=tenant.organisation.pk))

    assert response.status_code == 200
    assert "organisation" in response.context["adminform"].form.errors
    assert not Plan.objects.filter(code="acme-custom").exists()


def test_custom_plan_is_created_and_can_be_granted(back_office: HttpClient, tenant: Tenant, staff_user: User) -> None:
    response = back_office.post(_url(Plan, "add"), _plan_form(organisation=tenant.organisation.pk))
    assert response.status_code == 302
    plan = Plan.objects.get(code="acme-custom")
    assert (plan.is_custom, plan.organisation) == (True, tenant.organisation)

    response = back_office.post(
        reverse("admin:plans_subscription_grant"), {"organisation": tenant.organisation.pk, "plan": plan.pk}
    )

    term = Subscription.objects.get(plan=plan)
    assert response["Location"] == _url(Subscription, "change", term.pk)
    assert (term.origin, term.available) == (Subscription.Origin.XES_TEAM, 40_000_000)
    assert CreditEntry.objects.get(subscription=term).created_by == staff_user


def test_a_custom_plan_cannot_be_granted_to_another_organisation(
    back_office: HttpClient, tenant: Tenant, outsider: User
) -> None:
    plan = Plan.objects.create(
        code="acme-custom",
        name="Acme custom",
        emails_per_year=40_000_000,
        price_per_1000=Decimal("1.90"),
        eligibility=Plan.Eligibility.CUSTOM,
        organisation=tenant.organisation,
    )
    other = Organisation.objects.get(memberships__user=outsider)

    response = back_office.post(reverse("admin:plans_subscription_grant"), {"organisation": other.pk, "plan": plan.pk})

    assert response.status_code == 200
    assert response.context["form"].errors == {"plan": ["This custom plan belongs to another organisation."]}
    assert not Subscription.objects.exists()


def test_grant_page_opens(back_office: HttpClient) -> None:
    assert back_office.get(reverse("admin:plans_subscription_grant")).status_code == 200


# --- adjustments --------------------------------------------------------------------------


def test_adjusting_credits_writes_an_adjust_entry_with_the_reason(
    back_office: HttpClient, term: Subscription, staff_user: User
) -> None:
    url = reverse("admin:plans_subscription_adjust", args=[term.pk])
    assert back_office.get(url).status_code == 200

    response = back_office.post(url, {"emails": "-2500", "reason": "Duplicate send on 3 March"}, follow=True)

    assert response.redirect_chain[-1][0] == _url(Subscription, "change", term.pk)
    assert "Adjusted" in _messages(response)[0]
    entry = CreditEntry.objects.get(kind=CreditEntry.Kind.ADJUST)
    assert (entry.emails, entry.reason, entry.created_by, entry.subscription) == (
        -2_500,
        "Duplicate send on 3 March",
        staff_user,
        term,
    )
    term.refresh_from_db()
    assert term.available == 997_500


def test_removing_more_than_is_available_is_refused(back_office: HttpClient, term: Subscription) -> None:
    response = back_office.post(
        reverse("admin:plans_subscription_adjust", args=[term.pk]), {"emails": "-1000001", "reason": "Too much"}
    )

    assert response.status_code == 200
    assert response.context["form"].non_field_errors() == [
        "Cannot remove 1,000,001 e-mails: only 1,000,000 are available in this term."
    ]
    term.refresh_from_db()
    assert term.available == 1_000_000
    assert not CreditEntry.objects.filter(kind=CreditEntry.Kind.ADJUST).exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [({"emails": "500", "reason": ""}, "reason"), ({"emails": "0", "reason": "x"}, "emails")],
)
def test_an_adjustment_needs_a_reason_and_e_mails(
    back_office: HttpClient, term: Subscription, data: dict[str, str], field: str
) -> None:
    response = back_office.post(reverse("admin:plans_subscription_adjust", args=[term.pk]), data)

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not CreditEntry.objects.filter(kind=CreditEntry.Kind.ADJUST).exists()


def test_balances_cannot_be_edited(back_office: HttpClient, term: Subscription) -> None:
    response = back_office.post(_url(Subscription, "change", term.pk), {"available": 5})

    assert response.status_code == 403
    term.refresh_from_db()
    assert term.available == 1_000_000


def _concurrently(monkeypatch: pytest.MonkeyPatch, model: type[models.Model], **changes: Any) -> None:
    """Change the row in the database right after the admin has loaded it (a worker moving credits)."""
    model_admin = admin.site._registry[model]
    load = model_admin.get_object

    def get_object(*args: Any, **kwargs: Any) -> Any:
        obj = load(*args, **kwargs)
        model._default_manager.filter(pk=obj.pk).update(**changes)
        return obj

    monkeypatch.setattr(model_admin, "get_object", get_object)


def test_saving_overage_settings_keeps_the_balances(
    back_office: HttpClient, tenant: Tenant, term: Subscription, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = CreditAccount.objects.get(organisation=tenant.organisation)
    _concurrently(monkeypatch, CreditAccount, overage_used=42)

    response = back_office.post(
        _url(CreditAccount, "change", account.pk), {"allow_overage": "", "monthly_overage_limit": "50.00"}
    )

    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.allow_overage, account.monthly_overage_limit, account.overage_used) == (
        False,
        Decimal("50.00"),
        42,
    )


# --- expiry -------------------------------------------------------------------------------


def test_run_expiry_action_expires_ended_terms(
    back_office: HttpClient, ended_term: Subscription, term: Subscription
) -> None:
    response = back_office.post(
        _url(Subscription, "changelist"), {"action": "run_expiry", "_selected_action": [term.pk]}, follow=True
    )

    assert "1 ended term expired." in _messages(response)
    ended_term.refresh_from_db()
    assert ended_term.expired_at is not None
    assert ended_term.available == 0
    assert CreditEntry.objects.get(kind=CreditEntry.Kind.EXPIRE).emails == 1_000_000
    term.refresh_from_db()
    assert term.expired_at is None


def test_run_expiry_page_counts_and_runs(back_office: HttpClient, ended_term: Subscription) -> None:
    url = reverse("admin:plans_subscription_run_expiry")
    assert back_office.get(url).context["due"] == 1

    response = back_office.post(url, follow=True)

    assert "1 ended term expired." in _messages(response)
    assert back_office.get(url).context["due"] == 0


def test_expire_credits_command(ended_term: Subscription) -> None:
    out = io.StringIO()

    call_command("expire_credits", stdout=out)
    call_command("expire_credits", stdout=out)

    assert out.getvalue().splitlines() == ["1 term expired.", "0 terms expired."]
    ended_term.refresh_from_db()
    assert ended_term.expired_at is not None


# --- the ledger ---------------------------------------------------------------------------


def test_ledger_is_read_only(back_office: HttpClient, term: Subscription) -> None:
    entry = CreditEntry.objects.get(subscription=term)

    assert back_office.get(_url(CreditEntry, "add")).status_code == 403
    assert back_office.post(_url(CreditEntry, "change", entry.pk), {"emails": 1}).status_code == 403
    assert back_office.post(_url(CreditEntry, "delete", entry.pk), {"post": "yes"}).status_code == 403
    page = back_office.get(_url(CreditEntry, "change", entry.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert "delete_selected" not in back_office.get(_url(CreditEntry, "changelist")).content.decode()


def test_ledger_of_one_organisation(
    back_office: HttpClient, tenant: Tenant, term: Subscription, standard: Plan
) -> None:
    _rows(2, standard)

    response = back_office.get(
        _url(CreditEntry, "changelist"), {"organisation__id__exact": tenant.organisation.pk, "kind__exact": "grant"}
    )

    assert [e.organisation_id for e in response.context["cl"].result_list] == [tenant.organisation.pk]
    by_name = back_office.get(_url(CreditEntry, "changelist"), {"q": "Acme"})
    assert {e.organisation_id for e in by_name.context["cl"].result_list} == {tenant.organisation.pk}


def test_ledger_export_escapes_formulae(back_office: HttpClient, term: Subscription, staff_user: User) -> None:
    services.adjust_credits(term, 10, '=HYPERLINK("http://evil.example")', by=staff_user)
    entries = list(CreditEntry.objects.order_by("pk").values_list("pk", flat=True))

    response = back_office.post(_url(CreditEntry, "changelist"), {"action": "export_csv", "_selected_action": entries})

    assert response["Content-Disposition"].startswith('attachment; filename="xes-ledger-')
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:5] == ["ID", "When (UTC)", "Organisation", "Kind", "E-mails"]
    assert [(r[3], r[4], r[9]) for r in rows[1:]] == [
        ("grant", "1000000", "Standard"),
        ("adjust", "10", '\'=HYPERLINK("http://evil.example")'),
    ]


def test_ledger_xlsx_export_opens(back_office: HttpClient, term: Subscription) -> None:
    entry = CreditEntry.objects.get(subscription=term)

    response = back_office.post(
        _url(CreditEntry, "changelist"), {"action": "export_xlsx", "_selected_action": [entry.pk]}
    )

    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    row = [cell.value for cell in next(sheet.iter_rows(min_row=2))]
    assert row[0] == entry.pk
    assert isinstance(row[1], datetime)
    assert row[1].tzinfo is None  # XLSX has no time zones: the column is UTC, as its header says
    assert abs(row[1] - entry.created_at.astimezone(UTC).replace(tzinfo=None)).total_seconds() < 1
    assert row[3:5] == ["grant", 1_000_000]


def test_reservations_are_read_only(back_office: HttpClient, tenant: Tenant, term: Subscription) -> None:
    reservation = services.reserve(tenant.organisation, 10, sending_account=tenant.account_a)

    assert back_office.get(_url(Reservation, "add")).status_code == 403
    assert back_office.get(_url(Reservation, "change", reservation.pk)).status_code == 200
    assert back_office.post(_url(Reservation, "delete", reservation.pk), {"post": "yes"}).status_code == 403


def test_saving_a_client_cap_keeps_its_warning_state(
    back_office: HttpClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    allocation = ClientAllocation.objects.create(client=tenant.client_a, yearly_cap=1_000, period_start=PAST.date())
    _concurrently(monkeypatch, ClientAllocation, warned_period_start=PAST.date())

    response = back_office.post(
        _url(ClientAllocation, "change", allocation.pk),
        {"client": tenant.client_a.pk, "yearly_cap": 2_000, "mode": "soft", "period_start": "2024-01-15"},
    )

    assert response.status_code == 302
    allocation.refresh_from_db()
    assert (allocation.yearly_cap, allocation.mode, allocation.warned_period_start) == (2_000, "soft", PAST.date())
