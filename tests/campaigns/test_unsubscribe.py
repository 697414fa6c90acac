"""Unsubscribe at /u/<token>: GET changes nothing, the RFC 8058 one-click POST works without cookies
or CSRF token, is idempotent, and the next send skips the address."""

from __future__ import annotations

from typing import Any

from django.test import Client as HttpClient

from campaigns.models import Message, MessageEvent
from campaigns.sending.queueing import materialise, start_campaign
from deliverability.models import Suppression
from tests.campaigns.fixtures_api import give_credits
from tests.campaigns.fixtures_segments import campaign, contact, contact_list, message
from tests.conftest import Tenant
from tests.plans.conftest import ensure_catalogue


def sent_message(tenant: Tenant) -> Message:
    person = contact(tenant.organisation, "Reader@Example.com")
    return message(campaign(tenant.account_a), person, status=Message.Status.SENT)


def test_opening_the_link_only_asks(tenant: Tenant, client: HttpClient) -> None:
    sent = sent_message(tenant)

    response = client.get(f"/u/{sent.token}")

    assert response.status_code == 200
    assert 'data-testid="unsubscribe-confirm"' in response.content.decode()
    assert not Suppression.objects.exists()


def test_one_click_post_without_cookies_unsubscribes_once(tenant: Tenant) -> None:
    sent = sent_message(tenant)
    mail_client = HttpClient(enforce_csrf_checks=True)  # no session, no CSRF cookie: like a mail client

    first = mail_client.post(f"/u/{sent.token}", {"List-Unsubscribe": "One-Click"})
    again = mail_client.post(f"/u/{sent.token}", {"List-Unsubscribe": "One-Click"})

    assert (first.status_code, again.status_code) == (200, 200)
    suppression = Suppression.objects.get()
    assert (suppression.sending_account, suppression.reason) == (tenant.account_a, Suppression.Reason.UNSUBSCRIBE)
    assert suppression.email.lower() == "reader@example.com"
    event = MessageEvent.objects.get()
    assert (event.type, event.data) == ("unsubscribe", {"one_click": True})
    assert 'data-testid="unsubscribe-done"' in again.content.decode()


def test_an_unknown_token_is_a_neutral_404(client: HttpClient, db: None) -> None:
    response = client.post("/u/not-a-token")

    assert response.status_code == 404
    assert not Suppression.objects.exists()


def test_the_next_send_skips_the_unsubscribed_address(
    tenant: Tenant, client: HttpClient, django_capture_on_commit_callbacks: Any
) -> None:
    ensure_catalogue()
    give_credits(tenant.account_a)
    sent = sent_message(tenant)
    client.post(f"/u/{sent.token}", {"List-Unsubscribe": "One-Click"})
    other = contact(tenant.organisation, "other@example.com")
    assert sent.contact is not None
    again = campaign(tenant.account_a, name="Next", sender=sent.sender)
    again.contact_list = contact_list(tenant.organisation, "All", sent.contact, other)
    again.save()

    assert start_campaign(again.pk)
    materialise(again.pk)

    statuses = dict(Message.objects.filter(campaign=again).values_list("to_email", "status"))
    assert statuses == {"Reader@Example.com": "suppressed", "other@example.com": "queued"}
