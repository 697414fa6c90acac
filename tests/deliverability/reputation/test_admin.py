"""The XES team's side: accounts under watch with lift / probation / suspension / note actions that
require a note, the read-only history, alarms on the back office's home page, and thresholds that
must rise from warning to suspension."""

from __future__ import annotations

from typing import Any

import pytest
import time_machine
from django.contrib import admin
from django.db import models
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import SendingAccount, User
from deliverability.reputation import services
from deliverability.reputation.models import (
    Alarm,
    DailyCounter,
    ReputationState,
    StandingChange,
    Thresholds,
    WatchedAccount,
)
from tests.conftest import Tenant
from tests.deliverability.reputation.helpers import day, evaluate_at, standing, traffic
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db
Standing = SendingAccount.Standing
REPUTATION_MODELS = sorted(
    (model for model in admin.site._registry if model._meta.app_label == "reputation"),
    key=lambda model: model._meta.model_name or "",
)


def _url(model: type[models.Model], view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def _messages(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


@pytest.fixture
def on_probation(tenant: Tenant) -> SendingAccount:
    traffic(tenant.account_a, day(0, 10), sent=1000, hard=45)
    evaluate_at(day(0, 12))
    assert standing(tenant.account_a) == Standing.PROBATION
    return tenant.account_a


@pytest.fixture
def suspended(tenant: Tenant) -> SendingAccount:
    traffic(tenant.account_b, day(0, 10), sent=1000, hard=90)
    evaluate_at(day(0, 12))
    assert standing(tenant.account_b) == Standing.SUSPENDED
    return tenant.account_b


def _act(client: HttpClient, action: str, account: SendingAccount, note: str | None = None) -> Any:
    data: dict[str, Any] = {"action": action, "_selected_action": [account.pk]}
    if note is not None:
        data.update(confirm="yes", note=note)
    return client.post(_url(WatchedAccount, "changelist"), data, follow=note is not None)


@pytest.mark.parametrize("model", REPUTATION_MODELS, ids=lambda m: m._meta.model_name)
def test_every_list_renders(back_office: HttpClient, on_probation: SendingAccount, model: type[models.Model]) -> None:
    response = back_office.get(_url(model, "changelist"), follow=True)

    assert response.status_code == 200


def test_accounts_under_watch_lists_only_accounts_that_need_a_look(
    back_office: HttpClient, tenant: Tenant, on_probation: SendingAccount
) -> None:
    traffic(tenant.account_org, day(1), sent=100, complaints=3)  # few deliveries: a review
    evaluate_at(day(1, 13))

    response = back_office.get(_url(WatchedAccount, "changelist"))

    shown = {obj.pk for obj in response.context["cl"].result_list}
    assert shown == {on_probation.pk, tenant.account_org.pk}
    assert "4.5%" in response.content.decode()


def test_lifting_asks_for_a_note_first(back_office: HttpClient, on_probation: SendingAccount) -> None:
    response = _act(back_office, "lift_probation", on_probation)

    assert response.status_code == 200
    assert "deliverability/reputation/admin/note_action.html" in [t.name for t in response.templates]
    assert standing(on_probation) == Standing.PROBATION


def test_lifting_without_a_note_is_refused(back_office: HttpClient, on_probation: SendingAccount) -> None:
    response = _act(back_office, "lift_probation", on_probation, note="   ")

    assert response.status_code == 200
    assert response.context["form"].errors == {"note": ["This field is required."]}
    assert standing(on_probation) == Standing.PROBATION


def test_lifting_probation_with_a_note_restores_good_standing_for_good(
    back_office: HttpClient,
    staff_user: User,
    on_probation: SendingAccount,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # when
    with time_machine.travel(day(0, 14), tick=False), django_capture_on_commit_callbacks(execute=True):
        response = _act(back_office, "lift_probation", on_probation, note="Customer removed a bought list.")
    # then
    assert "Probation lifted for 1 account." in _messages(response)
    assert standing(on_probation) == Standing.GOOD
    change = StandingChange.objects.filter(sending_account=on_probation).latest("at")
    assert (change.kind, change.old, change.new, change.by) == ("team", "probation", "good", staff_user)
    assert change.notes == "Customer removed a bought list."
    assert Alarm.objects.get(kind=Alarm.Kind.PROBATION).resolution == "Customer removed a bought list."
    assert len(mailoutbox) == 1
    assert "Good" in mailoutbox[0].subject
    assert "bought list" not in mailoutbox[0].body  # the team's note stays internal
    # and: the bounces that led to the probation do not put the account straight back
    evaluate_at(day(0, 23))
    assert standing(on_probation) == Standing.GOOD
    # while new bounces after the lift count
    traffic(on_probation, day(1), sent=1000, hard=50)
    evaluate_at(day(1, 13))
    assert standing(on_probation) == Standing.PROBATION


def test_lifting_a_suspension(back_office: HttpClient, suspended: SendingAccount) -> None:
    response = _act(back_office, "lift_suspension", suspended, note="Reviewed with the customer.")

    assert "Suspension lifted for 1 account." in _messages(response)
    assert standing(suspended) == Standing.GOOD
    assert not Alarm.objects.filter(kind=Alarm.Kind.SUSPENSION, resolved_at__isnull=True).exists()


def test_lifting_what_is_not_there_is_refused_with_a_message(
    back_office: HttpClient, on_probation: SendingAccount
) -> None:
    response = _act(back_office, "lift_suspension", on_probation, note="Oops")

    assert any("is not suspended" in m for m in _messages(response))
    assert standing(on_probation) == Standing.PROBATION


def test_a_note_changes_nothing_but_the_history(back_office: HttpClient, on_probation: SendingAccount) -> None:
    response = _act(back_office, "add_note", on_probation, note="Called them; list cleaning under way.")

    assert "Note added to 1 account." in _messages(response)
    assert standing(on_probation) == Standing.PROBATION
    note = StandingChange.objects.get(kind=StandingChange.Kind.NOTE)
    assert (note.old, note.new, note.notes) == ("probation", "probation", "Called them; list cleaning under way.")


def test_the_team_can_act_on_a_review(back_office: HttpClient, tenant: Tenant) -> None:
    traffic(tenant.account_a, day(0), sent=100, complaints=3)
    evaluate_at(day(0, 13))
    assert Alarm.objects.filter(kind=Alarm.Kind.REVIEW, resolved_at__isnull=True).exists()

    _act(back_office, "put_on_probation", tenant.account_a, note="Complaints from a purchased list.")

    assert standing(tenant.account_a) == Standing.PROBATION
    assert not Alarm.objects.filter(kind=Alarm.Kind.REVIEW, resolved_at__isnull=True).exists()
    assert Alarm.objects.filter(kind=Alarm.Kind.PROBATION, resolved_at__isnull=True).exists()


def test_the_history_is_read_only(back_office: HttpClient, on_probation: SendingAccount) -> None:
    change = StandingChange.objects.get(sending_account=on_probation)

    page = back_office.get(_url(StandingChange, "change", change.pk))
    back_office.post(_url(StandingChange, "change", change.pk), {"reason": "edited"})
    back_office.post(_url(StandingChange, "delete", change.pk), {"post": "yes"})

    assert page.status_code == 200
    change.refresh_from_db()
    assert change.reason != "edited"
    assert back_office.get(_url(StandingChange, "add")).status_code == 403
    assert back_office.get(_url(DailyCounter, "add")).status_code == 403


def test_open_alarms_are_on_the_back_office_home_page(back_office: HttpClient, on_probation: SendingAccount) -> None:
    response = back_office.get(reverse("admin:index"))

    page = response.content.decode()
    assert 'data-testid="reputation-alarms"' in page
    assert "Reputation: 2 open alarms" in page  # the account and, being all the traffic, the platform
    assert on_probation.name in page


def test_closing_an_alarm_needs_a_note(back_office: HttpClient, on_probation: SendingAccount) -> None:
    alarm = Alarm.objects.get(kind=Alarm.Kind.PROBATION)

    refused = back_office.post(
        _url(Alarm, "changelist"), {"action": "resolve", "_selected_action": [alarm.pk], "confirm": "yes", "note": ""}
    )
    alarm.refresh_from_db()
    assert refused.status_code == 200
    assert alarm.is_open

    back_office.post(
        _url(Alarm, "changelist"),
        {"action": "resolve", "_selected_action": [alarm.pk], "confirm": "yes", "note": "Handled by phone."},
    )
    alarm.refresh_from_db()
    assert not alarm.is_open
    assert alarm.resolution == "Handled by phone."
    assert standing(on_probation) == Standing.PROBATION


def _thresholds_form(**changes: Any) -> dict[str, Any]:
    row = Thresholds.objects.get(pk=1)
    data = {
        field.name: getattr(row, field.name)
        for field in Thresholds._meta.fields
        if field.name not in ("id", "updated_at", "updated_by")
    }
    data["count_simulator_traffic"] = "on" if row.count_simulator_traffic else ""
    data.update(changes)
    return data


def test_thresholds_are_seeded_with_the_product_defaults(db: None) -> None:
    row = Thresholds.objects.get(pk=1)

    assert [str(row.warning_bounce_rate), str(row.probation_bounce_rate), str(row.suspended_bounce_rate)] == [
        "2.000",
        "4.000",
        "8.000",
    ]
    assert [str(row.warning_complaint_rate), str(row.probation_complaint_rate), str(row.suspended_complaint_rate)] == [
        "0.080",
        "0.100",
        "0.300",
    ]
    assert (row.window_days, row.min_deliveries, row.review_complaints, row.review_hard_bounces) == (7, 500, 3, 25)
    assert (row.clean_days, row.probations_to_suspend, row.probation_period_days) == (7, 3, 90)


def test_thresholds_must_rise_from_warning_to_suspension(back_office: HttpClient) -> None:
    response = back_office.post(
        _url(Thresholds, "change", 1), _thresholds_form(probation_bounce_rate="2", suspended_complaint_rate="0.1")
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "probation_bounce_rate" in errors
    assert "suspended_complaint_rate" in errors
    assert str(Thresholds.objects.get(pk=1).probation_bounce_rate) == "4.000"


def test_thresholds_can_be_edited(back_office: HttpClient, staff_user: User) -> None:
    response = back_office.post(_url(Thresholds, "change", 1), _thresholds_form(warning_bounce_rate="1.5"))

    assert response.status_code == 302
    row = Thresholds.objects.get(pk=1)
    assert str(row.warning_bounce_rate) == "1.500"
    assert row.updated_by == staff_user
    assert back_office.get(_url(Thresholds, "changelist")).url == _url(Thresholds, "change", 1)


def test_customers_do_not_get_into_the_back_office(client: HttpClient, tenant: Tenant) -> None:
    client.force_login(tenant.owner)

    response = client.get(_url(WatchedAccount, "changelist"))

    assert response.status_code == 302
    assert "/admin/login/" in response.url


def test_services_refuse_a_decision_without_a_note(tenant: Tenant, staff_user: User) -> None:
    from accounts.services import ServiceError

    with pytest.raises(ServiceError):
        services.suspend(tenant.account_a, by=staff_user, note=" ")
    assert standing(tenant.account_a) == Standing.GOOD


def test_a_staff_member_without_the_permission_sees_but_cannot_decide(
    client: HttpClient, on_probation: SendingAccount
) -> None:
    from django.contrib.auth.models import Permission

    viewer = MembershipFactory(user__email="viewer@xes.example").user
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_watchedaccount", "view_alarm", "view_standingchange"])
    )
    client.force_login(viewer)

    response = client.get(_url(WatchedAccount, "changelist"))
    _act(client, "lift_probation", on_probation, note="Not allowed")

    assert response.status_code == 200
    assert "lift_probation" not in response.content.decode()
    assert standing(on_probation) == Standing.PROBATION
    assert ReputationState.objects.filter(sending_account=on_probation, floor_day__isnull=True).exists()
