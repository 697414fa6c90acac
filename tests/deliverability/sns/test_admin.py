"""The XES team's back office: raw SNS notifications (read-only, filtered, reprocessed) and the
suppression lists' CSV export and import."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import django_rq
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import User
from deliverability import suppressions
from deliverability.models import SnsNotification, Suppression
from tests.conftest import Tenant
from tests.deliverability.sns.signing import TOPIC, SigningIdentity, notification, ses_event
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
Outcome = SnsNotification.Outcome
CHANGELIST = "admin:deliverability_snsnotification_changelist"


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


def _row(identity: SigningIdentity, event: Any, outcome: str, **fields: Any) -> SnsNotification:
    message = notification(event, identity)
    return SnsNotification.objects.create(
        sns_message_id=message["MessageId"],
        topic_arn=TOPIC,
        type="Notification",
        body=json.dumps(message),
        outcome=outcome,
        **fields,
    )


@pytest.fixture
def rows(identity: SigningIdentity, tenant: Tenant) -> dict[str, SnsNotification]:
    return {
        "processed": _row(
            identity,
            ses_event("Delivery", account_id=tenant.account_a.pk),
            Outcome.PROCESSED,
            event_type="Delivery",
            sending_account=tenant.account_a,
        ),
        "ignored": _row(identity, "<script>alert(1)</script>", Outcome.IGNORED, error="message is not JSON"),
        "failed": _row(identity, ses_event("Bounce"), Outcome.FAILED, event_type="Bounce", error="boom"),
    }


def test_the_team_lists_and_filters_notifications(back_office: HttpClient, rows: dict[str, SnsNotification]) -> None:
    everything = back_office.get(reverse(CHANGELIST))
    assert everything.status_code == 200
    assert len(everything.context["cl"].result_list) == 3
    failed = back_office.get(reverse(CHANGELIST), {"outcome": "failed"})
    assert [n.pk for n in failed.context["cl"].result_list] == [rows["failed"].pk]
    bounces = back_office.get(reverse(CHANGELIST), {"event_type": "Bounce"})
    assert [n.pk for n in bounces.context["cl"].result_list] == [rows["failed"].pk]
    found = back_office.get(reverse(CHANGELIST), {"q": rows["processed"].sns_message_id})
    assert [n.pk for n in found.context["cl"].result_list] == [rows["processed"].pk]


def test_a_notification_is_shown_escaped_and_read_only(
    back_office: HttpClient, rows: dict[str, SnsNotification]
) -> None:
    response = back_office.get(reverse("admin:deliverability_snsnotification_change", args=[rows["ignored"].pk]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'name="_save"' not in page
    assert back_office.get(reverse("admin:deliverability_snsnotification_add")).status_code == 403
    delete = reverse("admin:deliverability_snsnotification_delete", args=[rows["ignored"].pk])
    assert back_office.post(delete, {"post": "yes"}).status_code == 403
    assert SnsNotification.objects.count() == 3


def test_reprocess_queues_failed_and_ignored_ones_only(
    back_office: HttpClient, rows: dict[str, SnsNotification], django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = back_office.post(
            reverse(CHANGELIST),
            {"action": "reprocess", ACTION_CHECKBOX_NAME: [str(row.pk) for row in rows.values()]},
            follow=True,
        )
    texts = [str(m) for m in response.context["messages"]]
    assert "2 notifications queued again." in texts
    assert any("1 notification was left alone" in text for text in texts)
    outcomes = dict(SnsNotification.objects.values_list("pk", "outcome"))
    assert outcomes == {
        rows["processed"].pk: Outcome.PROCESSED,
        rows["ignored"].pk: Outcome.PENDING,
        rows["failed"].pk: Outcome.PENDING,
    }
    assert django_rq.get_queue("default").count == 2


def test_reprocessing_needs_the_change_permission(rows: dict[str, SnsNotification], client: HttpClient) -> None:
    viewer = UserFactory(email="viewer@xes.example", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_snsnotification"))
    client.force_login(viewer)
    response = client.get(reverse(CHANGELIST))
    assert response.status_code == 200
    assert response.context["action_form"] is None  # no action is offered at all
    client.post(reverse(CHANGELIST), {"action": "reprocess", ACTION_CHECKBOX_NAME: [str(rows["failed"].pk)]})
    assert SnsNotification.objects.get(pk=rows["failed"].pk).outcome == Outcome.FAILED


def test_customers_never_reach_the_notifications(tenant: Tenant, login: Any, rows: Any) -> None:
    response = login(tenant.owner).get(reverse(CHANGELIST))
    assert response.status_code == 302  # to the admin login


# --- suppression lists: export and import ---------------------------------------------------------


def test_the_team_exports_selected_suppressions_formula_safe(back_office: HttpClient, tenant: Tenant) -> None:
    kept = suppressions.suppress(tenant.account_a, "a@example.net", Suppression.Reason.COMPLAINT, note="=1+1")
    suppressions.suppress(tenant.account_b, "b@example.net", Suppression.Reason.MANUAL)
    response = back_office.post(
        reverse("admin:deliverability_suppression_changelist"),
        {"action": "export_csv", ACTION_CHECKBOX_NAME: [str(kept.pk)]},
    )
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert [row[:3] for row in rows] == [["email", "reason", "note"], ["a@example.net", "complaint", "'=1+1"]]


def test_the_team_checks_then_imports_a_file_into_any_account(back_office: HttpClient, tenant: Tenant) -> None:
    url = reverse("admin:deliverability_suppression_import")
    changelist = back_office.get(reverse("admin:deliverability_suppression_changelist")).content.decode()
    assert url in changelist

    def upload() -> SimpleUploadedFile:
        return SimpleUploadedFile("s.csv", b"email\nx@example.net\nbad\n", content_type="text/csv")

    data = {"sending_account": tenant.account_b.pk, "note": "migrated"}
    checked = back_office.post(url, {**data, "file": upload(), "action": "check"})
    assert checked.status_code == 200
    assert checked.context["result"].new == 1
    assert checked.context["result"].error_count == 1
    assert not Suppression.objects.exists()
    back_office.post(url, {**data, "file": upload(), "action": "import"})
    entry = Suppression.objects.get()
    assert (entry.sending_account, entry.email, entry.reason, entry.note) == (
        tenant.account_b,
        "x@example.net",
        Suppression.Reason.MANUAL,
        "migrated",
    )


def test_importing_in_the_admin_needs_the_add_permission(client: HttpClient, tenant: Tenant) -> None:
    viewer = UserFactory(email="viewer@xes.example", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_suppression"))
    client.force_login(viewer)
    assert client.get(reverse("admin:deliverability_suppression_import")).status_code == 403
