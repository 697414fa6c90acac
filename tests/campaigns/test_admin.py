"""The XES team's admin of campaigns and messages: staff only, the searchable message log, the
"needs reconciling" shortcut and the two repair actions (reconcile stuck messages, requeue)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import django_rq
import pytest
from django.db import connection
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from campaigns.models import Campaign, Message
from campaigns.sending import jobs
from tests.campaigns.fixtures_segments import campaign
from tests.conftest import Tenant

MESSAGES = reverse("admin:campaigns_message_changelist")
CAMPAIGNS = reverse("admin:campaigns_campaign_changelist")


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


def _message(spring: Campaign, to: str, **fields: Any) -> Message:
    return Message.objects.create(
        organisation=spring.organisation,
        sending_account=spring.sending_account,
        campaign=spring,
        template=spring.template,
        sender=spring.sender,
        to_email=to,
        **fields,
    )


def _rows(response: Any) -> list[str]:
    return sorted(m.to_email for m in response.context["cl"].result_list)


def _notes(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- who gets in ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [MESSAGES, CAMPAIGNS])
def test_customers_are_sent_to_the_admin_login(tenant: Tenant, login: Any, url: str) -> None:
    response = login(tenant.owner).get(url)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_customers_cannot_run_the_actions(tenant: Tenant, login: Any) -> None:
    spring = campaign(tenant.account_a)
    stuck = _message(spring, "a@example.com", status="sending", lease_until=timezone.now() - timedelta(minutes=5))
    Campaign.objects.filter(pk=spring.pk).update(status=Campaign.Status.SENDING)
    browser = login(tenant.owner)

    first = browser.post(MESSAGES, {"action": "reconcile_stuck", "_selected_action": [stuck.pk]})
    second = browser.post(CAMPAIGNS, {"action": "requeue", "_selected_action": [spring.pk]})

    assert (first.status_code, second.status_code) == (302, 302)
    stuck.refresh_from_db()
    assert stuck.status == Message.Status.SENDING
    assert django_rq.get_queue(jobs.QUEUE).count == 0


@pytest.mark.parametrize("url", [MESSAGES, CAMPAIGNS])
def test_staff_see_the_lists(tenant: Tenant, back_office: HttpClient, url: str) -> None:
    spring = campaign(tenant.account_a)
    _message(spring, "a@example.com")

    response = back_office.get(url)

    assert response.status_code == 200
    assert "Spring sale" in response.content.decode()


# --- the message log --------------------------------------------------------------------------


def test_the_message_log_is_searched_by_recipient_and_provider_id(tenant: Tenant, back_office: HttpClient) -> None:
    spring = campaign(tenant.account_a)
    _message(spring, "ada@example.com", provider_message_id="0100018f-aaaa")
    _message(spring, "bob@example.com", provider_message_id="0100018f-bbbb")
    _message(spring, "ada.lovelace@example.com")

    assert _rows(back_office.get(MESSAGES, {"q": "ADA@example.com"})) == ["ada@example.com"]
    assert _rows(back_office.get(MESSAGES, {"q": "0100018f-bbbb"})) == ["bob@example.com"]
    assert _rows(back_office.get(MESSAGES, {"q": "nobody@example.com"})) == []


def test_the_needs_reconciling_shortcut_lists_unknown_and_expired_rows(tenant: Tenant, back_office: HttpClient) -> None:
    spring = campaign(tenant.account_a)
    now = timezone.now()
    _message(spring, "unknown@example.com", status="unknown")
    _message(spring, "expired@example.com", status="sending", lease_until=now - timedelta(minutes=1))
    _message(spring, "leased@example.com", status="sending", lease_until=now + timedelta(minutes=1))
    _message(spring, "sent@example.com", status="sent")

    page = back_office.get(MESSAGES)
    assert "needs reconciling" in page.content.decode()
    assert _rows(back_office.get(MESSAGES, {"reconcile": "unknown"})) == ["unknown@example.com"]
    assert _rows(back_office.get(MESSAGES, {"reconcile": "expired"})) == ["expired@example.com"]


def test_the_message_log_takes_the_same_queries_for_3_or_30_rows(tenant: Tenant, back_office: HttpClient) -> None:
    spring = campaign(tenant.account_a)
    other = campaign(tenant.account_b, "Autumn")

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert back_office.get(MESSAGES).status_code == 200
        return len(queries)

    for i in range(3):
        _message(spring, f"s{i}@example.com")
    few = count()
    for i in range(27):
        _message(other if i % 2 else spring, f"m{i}@example.com", sent_at=timezone.now())
    assert count() == few
    assert few <= 12


# --- the actions ------------------------------------------------------------------------------


def test_reconcile_stuck_messages_marks_dead_workers_rows_unknown_and_says_so(
    tenant: Tenant, back_office: HttpClient
) -> None:
    spring = campaign(tenant.account_a)
    dead = _message(spring, "dead@example.com", status="sending", lease_until=timezone.now() - timedelta(minutes=5))
    alive = _message(spring, "alive@example.com", status="sending", lease_until=timezone.now() + timedelta(minutes=5))

    response = back_office.post(MESSAGES, {"action": "reconcile_stuck", "_selected_action": [alive.pk]}, follow=True)

    assert response.status_code == 200
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert (dead.status, alive.status) == (Message.Status.UNKNOWN, Message.Status.SENDING)
    assert _notes(response) == [
        "Reconciled: 1 messages of dead workers marked unknown, 0 confirmed sent by the provider, 0 queued again."
    ]


def test_requeue_enqueues_batch_jobs_for_the_accounts_of_sending_campaigns_only(
    tenant: Tenant, back_office: HttpClient, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.SENDING_PARALLEL_JOBS = 2
    sending = campaign(tenant.account_a)
    also_sending = campaign(tenant.account_a, "Second")
    paused = campaign(tenant.account_b, "Paused")
    Campaign.objects.filter(pk__in=[sending.pk, also_sending.pk]).update(status=Campaign.Status.SENDING)
    Campaign.objects.filter(pk=paused.pk).update(status=Campaign.Status.PAUSED)
    queue = django_rq.get_queue(jobs.QUEUE)
    selected = [sending.pk, also_sending.pk, paused.pk]

    # django-rq enqueues when the transaction commits (pytest-django's never does on its own).
    with django_capture_on_commit_callbacks(execute=True):
        response = back_office.post(CAMPAIGNS, {"action": "requeue", "_selected_action": selected}, follow=True)

    assert response.status_code == 200, _notes(response)
    assert [job.args for job in queue.get_jobs()] == [(tenant.account_a.pk,), (tenant.account_a.pk,)]
    assert _notes(response) == [
        "Sending accounts requeued: 1; batch jobs enqueued: 2.",
        "1 campaign skipped: only sending campaigns are requeued.",
    ]
    # Again at once: the account's jobs are counted, nothing more is queued.
    with django_capture_on_commit_callbacks(execute=True):
        again = back_office.post(CAMPAIGNS, {"action": "requeue", "_selected_action": [sending.pk]}, follow=True)
    assert queue.count == 2
    assert _notes(again) == [
        "Sending accounts requeued: 1; batch jobs enqueued: 0. Their jobs were already queued or running."
    ]
