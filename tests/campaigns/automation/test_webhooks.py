"""Outgoing webhooks against a real HTTP server on 127.0.0.1 (allowed by the test setting): events
become signed POSTs, verified here as a receiver would; failures are retried with backoff."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.urls import reverse

from campaigns.automation import webhooks
from campaigns.automation.models import WebhookDelivery, WebhookEndpoint
from campaigns.models import MessageEvent
from tests.campaigns.automation.conftest import (
    OFFER,
    Receiver,
    World,
    make_endpoint,
    make_world,
    queued_jobs,
    run_jobs,
    store_event,
)
from tests.factories import ClientFactory, SendingAccountFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("local_webhooks")]
Type = MessageEvent.Type
Status = WebhookDelivery.Status
T0 = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def body_of(request: Any) -> dict[str, Any]:
    return json.loads(request.body)


def test_events_arrive_signed_in_one_post_per_batch(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    # given
    endpoint = make_endpoint(world.organisation, receiver.url())
    ann, bob, _cy = world.messages
    # when: one stored batch with three events (the tracking buffer's flush sends one signal)
    from campaigns.events import announce, tracked_link_id

    link = tracked_link_id(world.organisation.pk, OFFER)
    with django_capture_on_commit_callbacks(execute=True):
        records = [
            store_event(ann, Type.DELIVERY),
            store_event(ann, Type.CLICK, url=OFFER),
            store_event(bob, Type.OPEN),
        ]
    run_jobs()
    # then: three POSTs (one per stored batch: record_event announces each row alone) ...
    assert len(receiver.requests) == 3
    receiver.requests.clear()
    # ... and a batch of several events is one POST
    with django_capture_on_commit_callbacks(execute=True):
        announce(records)
    run_jobs()
    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/xes"
    assert request.headers["Content-Type"] == "application/json"
    assert webhooks.verify_signature(endpoint.secret, request.headers["XES-Signature"], request.body)
    assert not webhooks.verify_signature("whsec_wrong", request.headers["XES-Signature"], request.body)
    assert not webhooks.verify_signature(endpoint.secret, request.headers["XES-Signature"], request.body + b" ")
    document = body_of(request)
    assert document["delivery"] == request.headers["XES-Delivery"]
    assert document["test"] is False
    assert [(e["id"], e["type"]) for e in document["events"]] == [(r.id, r.type) for r in records]
    click = document["events"][1]
    assert click["link"] == OFFER
    assert click["machine"] is False
    assert click["message"] == {
        "id": ann.pk,
        "to": ann.to_email,
        "sending_account_id": world.account.pk,
        "campaign_id": world.campaign.pk,
        "contact_id": ann.contact_id,
        "provider_message_id": ann.provider_message_id,
    }
    assert link  # the click's TrackedLink exists
    delivery = WebhookDelivery.objects.get(uid=document["delivery"])
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.event_count) == (
        Status.SUCCEEDED,
        1,
        200,
        3,
    )
    endpoint.refresh_from_db()
    assert endpoint.health == WebhookEndpoint.Health.HEALTHY


def test_the_signature_snippet_on_the_page_verifies_a_real_request(
    world: World, receiver: Receiver, client: Any, django_capture_on_commit_callbacks
) -> None:
    from accounts.models import Membership
    from tests.factories import MembershipFactory

    owner = MembershipFactory(organisation=world.organisation, role=Membership.Role.OWNER).user
    endpoint = make_endpoint(world.organisation, receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.send_test_event(endpoint)
    run_jobs()
    request = receiver.requests[0]
    client.force_login(owner)
    page = client.get(reverse("automation:endpoint_detail", args=[endpoint.pk])).content.decode()
    snippet = html.unescape(re.search(r'data-testid="verify-snippet"><code>(.*?)</code>', page, re.S).group(1))
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # noqa: S102 - our own documentation, run as a receiver would
    verify = namespace["verify"]
    assert verify(endpoint.secret, request.headers["XES-Signature"], request.body)
    assert not verify(endpoint.secret, request.headers["XES-Signature"], request.body.replace(b"test", b"tesT"))
    assert body_of(request)["test"] is True
    assert body_of(request)["events"][0]["type"] == "test"


def test_an_old_signature_is_refused_by_the_reference_check() -> None:
    body = b'{"events":[]}'
    header = webhooks.sign("whsec_x", int(T0.timestamp()), body)
    assert webhooks.verify_signature("whsec_x", header, body, now=T0.timestamp() + 299)
    assert not webhooks.verify_signature("whsec_x", header, body, now=T0.timestamp() + 301)
    assert not webhooks.verify_signature("whsec_x", "v1=abc", body)


def test_only_subscribed_types_and_no_machine_events_unless_asked(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    make_endpoint(world.organisation, receiver.url("/bounces"), event_types=["bounce"])
    make_endpoint(world.organisation, receiver.url("/opens"), event_types=["open"])
    make_endpoint(world.organisation, receiver.url("/all-opens"), event_types=["open"], include_machine=True)
    ann = world.messages[0]
    with django_capture_on_commit_callbacks(execute=True):
        store_event(ann, Type.DELIVERY)
        store_event(ann, Type.OPEN, machine=True)
    run_jobs()
    received = sorted((r.path, [e["machine"] for e in body_of(r)["events"]]) for r in receiver.requests)
    assert received == [("/all-opens", [True])]


def test_a_client_endpoint_gets_only_that_clients_events_and_other_organisations_none(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    # given: the world's account belongs to no client; an endpoint for one client, one for the whole
    # organisation, and one of another organisation
    client = ClientFactory(organisation=world.organisation)
    make_endpoint(world.organisation, receiver.url("/client"), client=client)
    make_endpoint(world.organisation, receiver.url("/org"))
    other = make_world()
    make_endpoint(other.organisation, receiver.url("/other-org"))
    # when
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.DELIVERY)
    run_jobs()
    # then
    assert [r.path for r in receiver.requests] == ["/org"]
    # and the client's endpoint gets its own account's events
    receiver.requests.clear()
    account = SendingAccountFactory(organisation=world.organisation, client=client)
    message = world.messages[1]
    type(message).objects.filter(pk=message.pk).update(sending_account=account)
    message.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        store_event(message, Type.DELIVERY)
    run_jobs()
    assert sorted(r.path for r in receiver.requests) == ["/client", "/org"]


def test_no_endpoint_means_no_job(world: World, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.DELIVERY)
    assert queued_jobs() == []


def test_large_batches_are_split(world: World, receiver: Receiver, django_capture_on_commit_callbacks) -> None:
    make_endpoint(world.organisation, receiver.url())
    events = [store_event(world.messages[n % 3], Type.OPEN) for n in range(webhooks.MAX_EVENTS_PER_DELIVERY + 5)]
    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.dispatch([e.id for e in events]) == 2
    run_jobs()
    assert sorted(len(body_of(r)["events"]) for r in receiver.requests) == [5, webhooks.MAX_EVENTS_PER_DELIVERY]


# --- retries -----------------------------------------------------------------------------------------


def _attempt(delivery: WebhookDelivery, django_capture_on_commit_callbacks: Any) -> WebhookDelivery:
    with django_capture_on_commit_callbacks(execute=True):
        webhooks.requeue_due()
    run_jobs()
    delivery.refresh_from_db()
    return delivery


def test_failures_are_retried_with_backoff_then_given_up(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    # given: an endpoint that answers 500
    receiver.status, receiver.body = 500, b"database down"
    endpoint = make_endpoint(world.organisation, receiver.url())
    with time_machine.travel(T0, tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            delivery = webhooks.send_test_event(endpoint)
        run_jobs()
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts, delivery.last_status_code) == (Status.RETRYING, 1, 500)
        assert delivery.next_attempt_at == T0 + timedelta(minutes=1)
        assert delivery.last_error == "The endpoint answered 500."
    # not before it is due
    with time_machine.travel(T0 + timedelta(seconds=59), tick=False):
        assert _attempt(delivery, django_capture_on_commit_callbacks).attempts == 1
    # then each retry after its wait: 1 min, 5 min, 30 min, 2 h, 12 h
    now = T0
    for number, wait in enumerate(webhooks.BACKOFF, start=2):
        now += wait
        with time_machine.travel(now, tick=False):
            delivery = _attempt(delivery, django_capture_on_commit_callbacks)
        assert delivery.attempts == number
        if number < webhooks.MAX_ATTEMPTS:
            assert delivery.status == Status.RETRYING
            assert delivery.next_attempt_at == now + webhooks.BACKOFF[number - 1]
    assert delivery.status == Status.FAILED
    assert delivery.next_attempt_at is None
    assert len(receiver.requests) == webhooks.MAX_ATTEMPTS
    attempts = list(delivery.attempt_log.values_list("number", "status_code", "response_body", "succeeded"))
    assert attempts == [(n, 500, "database down", False) for n in range(1, webhooks.MAX_ATTEMPTS + 1)]
    # the endpoint is failing after repeated failures
    endpoint.refresh_from_db()
    assert endpoint.health == WebhookEndpoint.Health.FAILING
    assert endpoint.consecutive_failures == webhooks.MAX_ATTEMPTS
    # and nothing more happens by itself
    with time_machine.travel(now + timedelta(days=2), tick=False):
        assert _attempt(delivery, django_capture_on_commit_callbacks).attempts == webhooks.MAX_ATTEMPTS
    # a manual retry once the receiver works again succeeds and heals the endpoint
    receiver.status = 204
    with django_capture_on_commit_callbacks(execute=True):
        assert webhooks.retry_now(delivery)
    run_jobs()
    delivery.refresh_from_db()
    assert delivery.status == Status.SUCCEEDED
    endpoint.refresh_from_db()
    assert endpoint.health == WebhookEndpoint.Health.HEALTHY
    assert endpoint.consecutive_failures == 0


def test_a_redirect_is_not_followed(world: World, receiver: Receiver, django_capture_on_commit_callbacks) -> None:
    receiver.status, receiver.location = 302, receiver.url("/elsewhere")
    endpoint = make_endpoint(world.organisation, receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.send_test_event(endpoint)
    run_jobs()
    delivery.refresh_from_db()
    assert [r.path for r in receiver.requests] == ["/hooks/xes"]
    assert delivery.status == Status.RETRYING
    assert "Redirects are not followed" in delivery.last_error


def test_a_slow_endpoint_times_out_and_a_long_answer_is_truncated(
    world: World, receiver: Receiver, settings: Any, django_capture_on_commit_callbacks
) -> None:
    settings.WEBHOOKS_TIMEOUT = 0.5
    endpoint = make_endpoint(world.organisation, receiver.url())
    receiver.delay = 1.5
    with django_capture_on_commit_callbacks(execute=True):
        slow = webhooks.send_test_event(endpoint)
    run_jobs()
    slow.refresh_from_db()
    assert slow.status == Status.RETRYING
    assert slow.last_error == "No answer within the time limit."
    receiver.delay, receiver.body = 0, b"x" * 50_000
    with django_capture_on_commit_callbacks(execute=True):
        long = webhooks.send_test_event(endpoint)
    run_jobs()
    long.refresh_from_db()
    assert long.status == Status.SUCCEEDED
    assert len(long.attempt_log.get().response_body) == 2048


def test_a_refused_connection_is_logged_and_retried(world: World, django_capture_on_commit_callbacks) -> None:
    closed = Receiver()
    url = closed.url()
    closed.close()
    endpoint = make_endpoint(world.organisation, url)
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.send_test_event(endpoint)
    run_jobs()
    delivery.refresh_from_db()
    assert delivery.status == Status.RETRYING
    assert delivery.last_error == "The connection was refused."
    assert delivery.last_status_code is None


def test_a_delivery_is_attempted_once_by_two_jobs(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    endpoint = make_endpoint(world.organisation, receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        delivery = webhooks.send_test_event(endpoint)
        webhooks._enqueue_deliveries([delivery.pk])  # a duplicate job (the tick found it too)
    run_jobs()
    assert len(receiver.requests) == 1
    assert webhooks.deliver(delivery.pk) == ""


def test_a_lost_job_is_picked_up_by_the_tick(
    world: World, receiver: Receiver, django_capture_on_commit_callbacks
) -> None:
    endpoint = make_endpoint(world.organisation, receiver.url())
    with time_machine.travel(T0, tick=False):
        delivery = webhooks.send_test_event(endpoint)  # its job is never queued (no commit here)
    with time_machine.travel(T0 + webhooks.LOST_JOB_AFTER, tick=False):
        delivery = _attempt(delivery, django_capture_on_commit_callbacks)
    assert delivery.status == Status.SUCCEEDED


def test_a_disabled_endpoint_gets_nothing(world: World, receiver: Receiver, django_capture_on_commit_callbacks) -> None:
    endpoint = make_endpoint(world.organisation, receiver.url())
    delivery = webhooks.send_test_event(endpoint)
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(enabled=False)
    assert webhooks.deliver(delivery.pk) == Status.FAILED
    assert receiver.requests == []


def test_old_finished_deliveries_are_pruned(world: World, receiver: Receiver) -> None:
    endpoint = make_endpoint(world.organisation, receiver.url())
    with time_machine.travel(T0, tick=False):
        old = webhooks.send_test_event(endpoint)
        webhooks.deliver(old.pk)
        waiting = webhooks.send_test_event(endpoint)
    with time_machine.travel(T0 + webhooks.KEEP_DELIVERIES + timedelta(minutes=1), tick=False):
        assert webhooks.prune() == 1
    assert list(WebhookDelivery.objects.values_list("pk", flat=True)) == [waiting.pk]
