"""Campaign pages: create, pre-send checks that block or warn, send (once, however often clicked),
schedule in the organisation's time zone, live progress, pause/resume/cancel, and "send again"."""

from __future__ import annotations

from typing import Any

import django_rq
import pytest
from django.urls import reverse
from django.utils import timezone
from rq import SimpleWorker

from accounts.models import SenderAddress, User
from campaigns.models import Campaign, Message, MessageEvent
from campaigns.sending.queueing import materialise
from tests.campaigns.fixtures_api import give_credits, make_template
from tests.campaigns.fixtures_segments import contact, contact_list, event, message
from tests.conftest import Tenant
from tests.plans.conftest import ensure_catalogue

UNSUBSCRIBE = '<p>Hi {{ contact.first_name }}</p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a>'


@pytest.fixture
def ready(tenant: Tenant) -> dict[str, Any]:
    """Credits, a list of three contacts and a promotional template with an unsubscribe link."""
    ensure_catalogue()
    give_credits(tenant.account_a)
    SenderAddress.objects.filter(pk__in=[tenant.sender_a.pk, tenant.sender_b.pk]).update(verified_at=timezone.now())
    org = tenant.organisation
    people = [contact(org, f"p{i}@example.com", first_name=f"P{i}") for i in range(3)]
    audience = contact_list(org, "Newsletter", *people)
    template = make_template(tenant.account_a, slug="news", body=UNSUBSCRIBE)
    return {"list": audience, "template": template, "people": people}


def create(client: Any, tenant: Tenant, ready: dict[str, Any], **extra: str) -> Any:
    data = {
        "name": "Autumn news",
        "sending_account": tenant.account_a.pk,
        "sender": tenant.sender_a.pk,
        "template": ready["template"].pk,
        "audience": f"list:{ready['list'].pk}",
        "touchpoint": "promotional",
        "send_at": "",
        **extra,
    }
    return client.post(reverse("campaigns:campaign_create"), data)


def run_workers() -> None:
    for name in ("sending", "default"):
        queue = django_rq.get_queue(name)
        SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_a_campaign_is_created_as_a_draft_and_shows_its_checks(tenant: Tenant, login: Any, ready: dict) -> None:
    client = login(tenant.member)

    response = create(client, tenant, ready)

    campaign = Campaign.objects.get()
    assert response.status_code == 302
    assert (campaign.status, campaign.promotional, campaign.contact_list) == ("draft", True, ready["list"])
    page = client.get(response["Location"]).content.decode()
    assert 'data-check="recipients"' in page
    assert 'data-level="block"' not in page
    assert 'data-testid="send-campaign"' in page


def test_a_sender_of_another_account_is_refused(tenant: Tenant, login: Any, ready: dict) -> None:
    response = create(login(tenant.owner), tenant, ready, sender=str(tenant.sender_b.pk))

    assert response.status_code == 400
    assert "another sending account" in response.content.decode()
    assert not Campaign.objects.exists()


def test_a_time_in_the_past_is_refused(tenant: Tenant, login: Any, ready: dict) -> None:
    response = create(login(tenant.owner), tenant, ready, send_at="2020-01-01T10:00")

    assert response.status_code == 400
    assert "in the future" in response.content.decode()


def test_promotional_content_without_unsubscribe_link_blocks_sending(
    tenant: Tenant, login: Any, ready: dict, django_capture_on_commit_callbacks: Any
) -> None:
    ready["template"].body = "<p>No way out</p>"
    ready["template"].save()
    client = login(tenant.owner)
    create(client, tenant, ready)
    campaign = Campaign.objects.get()

    page = client.get(reverse("campaigns:campaign_detail", args=[campaign.pk])).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("campaigns:campaign_send", args=[campaign.pk]), follow=True)

    assert 'data-check="unsubscribe" data-level="block"' in page
    assert "unsubscribe link" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert not Message.objects.exists()


def test_send_twice_starts_one_run_that_completes(
    tenant: Tenant, login: Any, ready: dict, django_capture_on_commit_callbacks: Any
) -> None:
    client = login(tenant.owner)
    create(client, tenant, ready)
    campaign = Campaign.objects.get()
    url = reverse("campaigns:campaign_send", args=[campaign.pk])

    with django_capture_on_commit_callbacks(execute=True):
        client.post(url)
        client.post(url)
    with django_capture_on_commit_callbacks(execute=True):
        run_workers()
    run_workers()

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DONE
    assert Message.objects.filter(campaign=campaign).count() == 3
    assert Message.objects.filter(campaign=campaign, status=Message.Status.SENT).count() == 3
    panel = client.get(reverse("campaigns:campaign_progress", args=[campaign.pk])).content.decode()
    assert 'data-testid="progress-percent">100%' in panel
    assert "hx-trigger" not in panel  # a finished campaign stops polling


def test_a_schedule_is_read_in_the_organisations_time_zone(tenant: Tenant, login: Any, ready: dict) -> None:
    tenant.organisation.time_zone = "America/New_York"
    tenant.organisation.save()
    client = login(tenant.owner)

    create(client, tenant, ready, send_at="2031-06-01T09:30")
    campaign = Campaign.objects.get()
    client.post(reverse("campaigns:campaign_send", args=[campaign.pk]))

    campaign.refresh_from_db()
    assert campaign.scheduled_at is not None
    assert campaign.scheduled_at.isoformat() == "2031-06-01T13:30:00+00:00"
    assert campaign.status == Campaign.Status.SCHEDULED
    page = client.get(reverse("campaigns:campaign_detail", args=[campaign.pk])).content.decode()
    assert "9:30" in page
    assert "America/New_York" in page


def test_pause_resume_and_cancel(tenant: Tenant, login: Any, ready: dict) -> None:
    client = login(tenant.owner)
    create(client, tenant, ready)
    campaign = Campaign.objects.get()
    client.post(reverse("campaigns:campaign_send", args=[campaign.pk]))
    materialise(campaign.pk)  # the job "Send" queued, run here; no batch job runs in this test

    client.post(reverse("campaigns:campaign_pause", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    client.post(reverse("campaigns:campaign_resume", args=[campaign.pk]))
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SENDING
    client.post(reverse("campaigns:campaign_cancel", args=[campaign.pk]))

    assert Message.objects.filter(campaign=campaign, status=Message.Status.CANCELLED).count() == 3
    assert not Message.objects.filter(campaign=campaign, status=Message.Status.SENT).exists()


def test_send_again_goes_only_to_those_who_did_not_open(
    tenant: Tenant, login: Any, ready: dict, django_capture_on_commit_callbacks: Any
) -> None:
    client = login(tenant.owner)
    create(client, tenant, ready)
    campaign = Campaign.objects.get()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("campaigns:campaign_send", args=[campaign.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        run_workers()
    run_workers()
    opener = Message.objects.get(campaign=campaign, contact=ready["people"][0])
    event(opener, "open")
    # A privacy proxy fetched the pixel of p1's message: no sign that p1 read it.
    proxied = Message.objects.get(campaign=campaign, contact=ready["people"][1])
    MessageEvent.objects.create(message=proxied, type="open", machine=True)

    response = client.post(reverse("campaigns:campaign_resend", args=[campaign.pk]), {"filter": "not_opened"})

    again = Campaign.objects.exclude(pk=campaign.pk).get()
    assert response["Location"] == reverse("campaigns:campaign_detail", args=[again.pk])
    assert again.resend_of == campaign
    page = client.get(response["Location"]).content.decode()
    assert "2 recipients" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("campaigns:campaign_send", args=[again.pk]))
    with django_capture_on_commit_callbacks(execute=True):
        run_workers()
    assert set(Message.objects.filter(campaign=again).values_list("to_email", flat=True)) == {
        "p1@example.com",
        "p2@example.com",
    }
    assert MessageEvent.objects.filter(type="open").count() == 2


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("campaigns:campaign_detail", "get"),
        ("campaigns:campaign_edit", "get"),
        ("campaigns:campaign_progress", "get"),
        ("campaigns:campaign_messages", "get"),
        ("campaigns:campaign_send", "post"),
        ("campaigns:campaign_pause", "post"),
        ("campaigns:campaign_resume", "post"),
        ("campaigns:campaign_cancel", "post"),
        ("campaigns:campaign_resend", "post"),
    ],
)
def test_an_outsider_gets_404(tenant: Tenant, outsider: User, login: Any, ready: dict, name: str, method: str) -> None:
    create(login(tenant.owner), tenant, ready)
    campaign = Campaign.objects.get()

    response = getattr(login(outsider), method)(reverse(name, args=[campaign.pk]), {"filter": "not_opened"})

    assert response.status_code == 404
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT


def test_a_client_user_sees_only_campaigns_of_their_clients_accounts(tenant: Tenant, login: Any, ready: dict) -> None:
    create(login(tenant.owner), tenant, ready)
    campaign = Campaign.objects.get()
    other = Campaign.objects.create(
        organisation=tenant.organisation,
        sending_account=tenant.account_b,
        sender=tenant.sender_b,
        template=ready["template"],
        name="Beta only",
    )
    client = login(tenant.client_user)

    body = client.get(reverse("campaigns:campaign_list")).content.decode()

    assert campaign.name in body
    assert "Beta only" not in body
    assert client.get(reverse("campaigns:campaign_detail", args=[other.pk])).status_code == 404


def test_the_list_says_what_to_do_without_campaigns(tenant: Tenant, login: Any) -> None:
    body = login(tenant.member).get(reverse("campaigns:campaign_list")).content.decode()

    assert 'data-testid="empty-state"' in body
    assert reverse("campaigns:campaign_create") in body


def test_the_list_costs_the_same_queries_for_many_started_campaigns(
    tenant: Tenant, login: Any, ready: dict, django_assert_max_num_queries: Any
) -> None:
    for n in range(12):
        started = Campaign.objects.create(
            organisation=tenant.organisation,
            sending_account=tenant.account_a,
            sender=tenant.sender_a,
            template=ready["template"],
            name=f"Run {n}",
            status=Campaign.Status.DONE,
        )
        message(started, ready["people"][n % 3], status=Message.Status.SENT)
    client = login(tenant.owner)

    with django_assert_max_num_queries(12):
        body = client.get(reverse("campaigns:campaign_list")).content.decode()

    assert body.count('data-progress="100"') == 12


def test_a_campaign_can_turn_tracking_off(tenant: Tenant, login: Any, ready: dict) -> None:
    client = login(tenant.member)
    assert "As the template says" in client.get(reverse("campaigns:campaign_create")).content.decode()

    create(client, tenant, ready, tracking="false")

    assert Campaign.objects.get().tracking is False
