"""Fixtures of the automation tests: a campaign whose e-mails were delivered to a few contacts,
stored events (through the real event recorder, which sends ``message_events`` after commit), the
RQ jobs run in-process against the real Redis, and a real HTTP server on 127.0.0.1 that receives
webhook requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import django_rq
import pytest
from django.test import TestCase
from django.utils import timezone
from rq import SimpleWorker

from campaigns.automation.models import TriggerRule, WebhookEndpoint
from campaigns.events import EventRecord, record_event, tracked_link_id
from campaigns.models import Campaign, Message, MessageEvent, Template
from tests.campaigns.fixtures_sending import Setup, make_campaign, make_setup

OFFER = "https://shop.example/offer"
OTHER = "https://shop.example/about"
CAMPAIGN_BODY = (
    f'<p>Hi {{{{ contact.first_name }}}}</p><p><a href="{OFFER}">Our offer</a> · <a href="{OTHER}">About us</a>'
    ' · <a href="https://shop.example/p?id={{ contact.email }}">Yours</a></p>'
    '<p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a></p>'
)
FOLLOW_UP_BODY = (
    '<p>Here is the brochure, {{ contact.first_name }}.</p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a>'
)


@dataclass
class World:
    setup: Setup
    campaign: Campaign
    follow_up: Template
    messages: list[Message]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def organisation(self) -> Any:
        return self.setup.organisation

    @property
    def account(self) -> Any:
        return self.setup.account

    @property
    def sender(self) -> Any:
        return self.setup.sender


def deliver_campaign(campaign: Campaign, sent_at: datetime) -> list[Message]:
    """Outbox rows as the pipeline leaves them: one delivered message per contact of the list."""
    assert campaign.contact_list is not None
    rows = [
        Message(
            organisation_id=campaign.organisation_id,
            sending_account_id=campaign.sending_account_id,
            campaign=campaign,
            contact=membership.contact,
            template_id=campaign.template_id,
            sender_id=campaign.sender_id,
            to_email=membership.contact.email,
            promotional=campaign.promotional,
            status=Message.Status.DELIVERED,
            sent_at=sent_at,
            provider_message_id=f"provider-{membership.contact_id}",
        )
        for membership in campaign.contact_list.memberships.select_related("contact").order_by("contact_id")
    ]
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.DONE, recipients=len(rows))
    return Message.objects.bulk_create(rows)


def make_world(recipients: int = 3, sent_at: datetime | None = None) -> World:
    setup = make_setup()
    Template.objects.filter(pk=setup.template.pk).update(body=CAMPAIGN_BODY)
    setup.template.refresh_from_db()
    campaign = make_campaign(setup, recipients)
    follow_up = Template.objects.create(
        organisation=setup.organisation,
        name="Brochure",
        slug="brochure",
        subject="Your brochure, {{ contact.first_name }}",
        body=FOLLOW_UP_BODY,
    )
    messages = deliver_campaign(campaign, sent_at or timezone.now() - timedelta(hours=1))
    return World(setup, campaign, follow_up, messages)


@pytest.fixture
def world(db: None) -> World:
    return make_world()


def make_rule(world: World, event: str = TriggerRule.Event.CLICK, **fields: Any) -> TriggerRule:
    return TriggerRule.objects.create(
        organisation=world.organisation,
        name=fields.pop("name", f"On {event}"),
        campaign=fields.pop("campaign", world.campaign),
        event=event,
        template=fields.pop("template", world.follow_up),
        sender=fields.pop("sender", world.sender),
        **fields,
    )


def store_event(
    message: Message, type: str, *, url: str = "", machine: bool = False, at: datetime | None = None
) -> EventRecord:
    """One event stored by the real recorder (announced after commit)."""
    link_id = tracked_link_id(message.organisation_id, url) if url else None
    return record_event(message, type, machine=machine, link_id=link_id, at=at)


def run_jobs(*queues: str, rounds: int = 10) -> None:
    """Run the queued jobs of these queues in this process (real Redis) until none is left.

    Inside a test's transaction nothing commits, so the jobs that jobs queue after commit (django-rq
    queues on commit too) are released by running the commit callbacks after each round."""
    queue_objects = [django_rq.get_queue(name) for name in (queues or ("default",))]
    for _round in range(rounds):
        with TestCase.captureOnCommitCallbacks(execute=True):
            SimpleWorker(queue_objects, connection=queue_objects[0].connection).work(burst=True)
        if not any(queue.count for queue in queue_objects):
            return
    raise AssertionError("jobs keep queueing jobs")


def queued_jobs(queue: str = "default") -> list[str]:
    """The automation jobs waiting in ``queue`` (other apps queue their own jobs there too)."""
    names = [str(job.func_name) for job in django_rq.get_queue(queue).get_jobs()]
    return [name for name in names if name.startswith("campaigns.automation.")]


def triggered(world: World) -> list[Message]:
    """Messages sent by trigger rules (not the campaign's own)."""
    return list(
        Message.objects.filter(
            organisation=world.organisation, campaign__isnull=True, template=world.follow_up
        ).order_by("pk")
    )


def events_of(message: Message) -> list[MessageEvent]:
    return list(MessageEvent.objects.filter(message=message))


# --- a real HTTP server receiving webhooks ---------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on 127.0.0.1 (a free port) that records each request and answers with
    ``status`` (and ``body``, ``location``), optionally after ``delay`` seconds."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.body = b"ok"
        self.delay = 0.0
        self.location = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", str(len(receiver.body)))
                self.end_headers()
                self.wfile.write(receiver.body)

            do_GET = do_POST  # noqa: N815 - a followed redirect would show up as a GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hooks/xes") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def local_webhooks(settings: Any) -> Any:
    """The test and development setting: http and local addresses allowed."""
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    settings.WEBHOOKS_TIMEOUT = 3
    return settings


@pytest.fixture
def production_webhooks(settings: Any) -> Any:
    """The production setting: https only, public addresses only."""
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = False
    settings.WEBHOOKS_ALLOW_HTTP = False
    return settings


def make_endpoint(organisation: Any, url: str, **fields: Any) -> WebhookEndpoint:
    fields.setdefault("event_types", ["delivery", "bounce", "complaint", "open", "click", "unsubscribe"])
    return WebhookEndpoint.objects.create(organisation=organisation, url=url, **fields)
