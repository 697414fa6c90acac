"""Provider events (SES event-publishing format, through ``provider_event``) stored as
MessageEvent rows and moving Message.status forward only, whatever the order; unknown messages
ignored; messages whose worker died reconciled with their credits settled once."""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from campaigns.events import EventRecord, deferred_count, settle_deferred
from campaigns.models import Message, MessageEvent, TrackedLink
from campaigns.sending import queue_campaign, reconcile_expired_leases
from campaigns.sending.control import UNKNOWN_GRACE
from campaigns.sending.worker import Outcomes, claim, lease_duration, record
from campaigns.signals import message_events
from deliverability.providers import ensure_setup
from tests.campaigns.fixtures_sending import (
    Setup,
    consumed_for,
    make_campaign,
    make_setup,
    outstanding_for,
    setup_fixture,  # noqa: F401 - fixture "setup"
    statuses,
)
from tests.campaigns.fixtures_tracking import (
    _fresh_tracking_caches,  # noqa: F401 - autouse
    announce,
    make_message,
    ses_event,
)

pytestmark = pytest.mark.django_db

Status = Message.Status


def status_of(message: Message) -> str:
    message.refresh_from_db()
    return message.status


# --- storing --------------------------------------------------------------------------------------


def test_a_delivery_is_stored_with_the_message_copied_onto_it(setup: Setup) -> None:
    message = make_message(setup)

    announce(ses_event(message, "Delivery", smtpResponse="250 ok"), setup.account.pk)

    event = MessageEvent.objects.get(message=message)
    assert event.type == MessageEvent.Type.DELIVERY
    assert (event.organisation_id, event.sending_account_id, event.campaign_id) == (
        setup.organisation.pk,
        setup.account.pk,
        None,
    )
    assert event.recipient_domain == "example.org"
    assert event.data["smtpResponse"] == "250 ok"
    assert event.data["provider_message_id"] == message.provider_message_id
    assert status_of(message) == Status.DELIVERED


def test_bounce_and_complaint_subtypes(setup: Setup) -> None:
    bounced, complained = make_message(setup), make_message(setup, Status.DELIVERED)

    announce(ses_event(bounced, "Bounce", bounceType="Permanent", bounceSubType="NoEmail"))
    announce(ses_event(complained, "Complaint", complaintFeedbackType="abuse"))

    assert MessageEvent.objects.get(message=bounced).subtype == "permanent"
    assert MessageEvent.objects.get(message=complained).subtype == "abuse"
    assert (status_of(bounced), status_of(complained)) == (Status.BOUNCED, Status.COMPLAINED)


# --- forward only ---------------------------------------------------------------------------------


def test_a_delivery_after_a_bounce_does_not_unbounce(setup: Setup) -> None:
    message = make_message(setup)

    announce(ses_event(message, "Bounce"))
    announce(ses_event(message, "Delivery"))

    assert status_of(message) == Status.BOUNCED
    assert MessageEvent.objects.filter(message=message).count() == 2  # both kept for the timeline


def test_a_transient_bounce_changes_no_status(setup: Setup) -> None:
    message = make_message(setup)

    announce(ses_event(message, "Bounce", bounceType="Transient", bounceSubType="MailboxFull"))

    assert status_of(message) == Status.SENT
    assert MessageEvent.objects.get(message=message).subtype == "transient"


@pytest.mark.parametrize(
    ("events", "final"),
    [
        *[(list(order), Status.BOUNCED) for order in itertools.permutations(["Send", "Delivery", "Bounce"])],
        *[(list(order), Status.COMPLAINED) for order in itertools.permutations(["Send", "Delivery", "Complaint"])],
        (["Delivery", "Send", "DeliveryDelay", "Open", "Click"], Status.DELIVERED),
    ],
)
def test_any_arrival_order_ends_in_the_furthest_state(setup: Setup, events: list[str], final: str) -> None:
    message = make_message(setup)
    extra: dict[str, dict[str, Any]] = {"Click": {"link": "https://shop.example/a"}}

    for event_type in events:
        announce(ses_event(message, event_type, **extra.get(event_type, {})))

    assert status_of(message) == final


def test_a_reject_after_sent_fails_the_message_with_the_reason(setup: Setup) -> None:
    message = make_message(setup)

    announce(ses_event(message, "Reject", reason="Bad content"))

    message.refresh_from_db()
    assert (message.status, message.error) == (Status.FAILED, "Bad content")


def test_a_reject_after_delivery_changes_nothing(setup: Setup) -> None:
    message = make_message(setup, Status.DELIVERED)

    announce(ses_event(message, "Reject", reason="Bad content"))

    assert status_of(message) == Status.DELIVERED


def test_concurrent_events_never_move_a_message_back(transactional_db: None) -> None:
    """A Bounce and a Delivery applied at the same time by two processes end bounced, every time."""
    setup = make_setup()
    messages = [make_message(setup) for _ in range(6)]
    errors: list[BaseException] = []

    def apply(event: dict[str, Any], barrier: threading.Barrier) -> None:
        try:
            barrier.wait(5)
            announce(event)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    for message in messages:
        barrier = threading.Barrier(2)
        threads = [
            threading.Thread(target=apply, args=(ses_event(message, kind), barrier)) for kind in ("Delivery", "Bounce")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    assert not errors
    assert [status_of(m) for m in messages] == [Status.BOUNCED] * len(messages)


# --- ignored --------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["", "abc", "99999999", "1e3", "-1", "12345678901234567890123"])
def test_events_for_unknown_messages_are_ignored(setup: Setup, tag: str, caplog: pytest.LogCaptureFixture) -> None:
    message = make_message(setup)

    with caplog.at_level(logging.INFO, logger="campaigns.events"):
        announce(ses_event(None, "Delivery", message_tag=tag, account=setup.account))

    assert not MessageEvent.objects.exists()
    assert status_of(message) == Status.SENT
    assert "ignored" in caplog.text


def test_events_without_our_tags_or_of_unknown_types_are_ignored(setup: Setup) -> None:
    message = make_message(setup)
    untagged = ses_event(message, "Delivery")
    del untagged["mail"]["tags"]

    announce(untagged)
    announce({**ses_event(message, "Delivery"), "eventType": "Teleported"})
    announce({"eventType": "Delivery", "mail": "not an object"})

    assert not MessageEvent.objects.exists()
    assert status_of(message) == Status.SENT


def test_events_from_another_sending_account_are_ignored(setup: Setup, tenant: Any) -> None:
    message = make_message(setup)

    announce(ses_event(message, "Bounce"), sending_account_id=tenant.account_a.pk)  # the caller's account
    announce(ses_event(message, "Bounce", account=tenant.account_a))  # the tag

    assert not MessageEvent.objects.exists()
    assert status_of(message) == Status.SENT


def test_events_for_another_provider_message_are_ignored(setup: Setup) -> None:
    message = make_message(setup)

    announce(ses_event(message, "Bounce", provider_id="ses-someone-else"))

    assert not MessageEvent.objects.exists()
    assert status_of(message) == Status.SENT


# --- the message_events signal --------------------------------------------------------------------


def test_stored_events_are_announced_after_commit(setup: Setup, django_capture_on_commit_callbacks: Any) -> None:
    message = make_message(setup)
    received: list[list[EventRecord]] = []

    def receiver(sender: Any, events: list[EventRecord], **kwargs: Any) -> None:
        received.append(events)

    message_events.connect(receiver, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            announce(ses_event(message, "Delivery"))
        assert received == []  # nothing before the commit
        for callback in callbacks:
            callback()
    finally:
        message_events.disconnect(receiver)

    stored = MessageEvent.objects.get(message=message)
    assert received == [
        [
            EventRecord(
                id=stored.pk,
                message_id=message.pk,
                organisation_id=setup.organisation.pk,
                sending_account_id=setup.account.pk,
                campaign_id=None,
                contact_id=None,
                type="delivery",
                subtype="",
                at=stored.at,
                machine=False,
                link_id=None,
            )
        ]
    ]


# --- provider opens and clicks ---------------------------------------------------------------------


def test_provider_opens_and_clicks_are_stored_with_machine_flags(setup: Setup) -> None:
    message = make_message(setup, Status.DELIVERED, sent_at=timezone.now() - timedelta(hours=1))
    sent = timezone.now() - timedelta(hours=1)

    announce(ses_event(message, "Open", sent=sent, userAgent="Mozilla/5.0 (via ggpht.com GoogleImageProxy)"))
    announce(ses_event(message, "Open", sent=sent, userAgent="Mozilla/5.0 (Macintosh) AppleWebKit Mail/16"))
    announce(
        ses_event(message, "Click", sent=sent, link="https://shop.example/a", userAgent="Mozilla/5.0 (X11) Firefox/120")
    )

    proxy, reader = MessageEvent.objects.filter(type="open").order_by("pk")
    assert (proxy.machine, proxy.data["machine"]) == (True, "google_proxy")
    assert reader.machine is False
    click = MessageEvent.objects.get(type="click")
    assert TrackedLink.objects.get(pk=click.link_id).url == "https://shop.example/a"
    assert click.machine is False


def test_a_provider_open_right_after_sending_is_a_machine(setup: Setup) -> None:
    message = make_message(setup, Status.DELIVERED)
    now = timezone.now()

    announce(ses_event(message, "Open", sent=now - timedelta(seconds=1), at=now, userAgent="Mozilla/5.0 (X11) Mail"))

    assert MessageEvent.objects.get().data["machine"] == "prefetch"


# --- messages the worker has not recorded yet ---------------------------------------------------------


def test_an_unknown_message_reported_by_the_provider_becomes_sent_and_consumes_once(setup: Setup) -> None:
    """The worker died after handing the messages over; the provider cannot tell (SES) but its
    events can: each message is settled once, however many events name it."""
    campaign = make_campaign(setup, 3)
    queue_campaign(campaign.pk)
    provider_setup = ensure_setup(setup.account)
    provider_setup.provider = "ses"
    provider_setup.save()
    rows = claim(setup.account.pk, 3, "dead")
    reconcile_expired_leases(timezone.now() + lease_duration() + UNKNOWN_GRACE + timedelta(seconds=1))
    assert statuses(campaign) == {"unknown": 3}
    first, second, third = (Message.objects.get(pk=row.id) for row in rows)

    announce(ses_event(first, "Delivery", provider_id="ses-first"))
    announce(ses_event(first, "Send", provider_id="ses-first"))
    announce(ses_event(second, "Send", provider_id="ses-second"))

    first.refresh_from_db()
    assert (first.status, first.provider_message_id) == (Status.DELIVERED, "ses-first")
    assert first.sent_at is not None
    assert status_of(second) == Status.SENT
    assert status_of(third) == Status.UNKNOWN
    assert consumed_for(setup) == 2
    assert outstanding_for(setup) == 1  # the third's credit waits for its answer


def test_an_unknown_message_rejected_by_the_provider_fails_and_releases_its_credit(setup: Setup) -> None:
    campaign = make_campaign(setup, 1)
    queue_campaign(campaign.pk)
    provider_setup = ensure_setup(setup.account)
    provider_setup.provider = "ses"
    provider_setup.save()
    (row,) = claim(setup.account.pk, 1, "dead")
    reconcile_expired_leases(timezone.now() + lease_duration() + UNKNOWN_GRACE + timedelta(seconds=1))
    message = Message.objects.get(pk=row.id)

    announce(ses_event(message, "Reject", provider_id="ses-r", reason="Virus detected"))

    message.refresh_from_db()
    assert (message.status, message.error) == (Status.FAILED, "Virus detected")
    assert consumed_for(setup) == 0
    assert outstanding_for(setup) == 0


def test_events_for_a_message_still_sending_wait_for_its_worker(
    setup: Setup, django_capture_on_commit_callbacks: Any
) -> None:
    """The sandbox (and a fast SES) report before the worker records the send: the status effect
    waits, the worker's record consumes the credit once, then the delivery is applied."""
    campaign = make_campaign(setup, 1)
    queue_campaign(campaign.pk)
    (row,) = claim(setup.account.pk, 1, "worker-1")
    message = Message.objects.get(pk=row.id)

    with django_capture_on_commit_callbacks(execute=True):
        announce(ses_event(message, "Send", provider_id="ses-live"))
        announce(ses_event(message, "Delivery", provider_id="ses-live"))

    assert status_of(message) == Status.SENDING
    assert MessageEvent.objects.filter(message=message).count() == 2
    assert deferred_count() == 1
    assert settle_deferred() == 0  # still the worker's

    record(Outcomes(sent=[(row.id, "ses-live")]), "worker-1")
    assert settle_deferred() == 1

    assert status_of(message) == Status.DELIVERED
    assert deferred_count() == 0
    assert consumed_for(setup) == 1
    assert outstanding_for(setup) == 0


def test_a_sandbox_campaign_to_simulator_addresses_ends_delivered_bounced_and_complained(
    setup: Setup, django_capture_on_commit_callbacks: Any
) -> None:
    from campaigns.models import Contact, ContactList, ListMembership
    from campaigns.sending.worker import finish_campaigns, run_batch

    campaign = make_campaign(setup, 0)
    contact_list = ContactList.objects.get(pk=campaign.contact_list_id)
    for address in ("success", "bounce", "complaint"):
        contact = Contact.objects.create(organisation=setup.organisation, email=f"{address}@simulator.amazonses.com")
        ListMembership.objects.create(contact_list=contact_list, contact=contact)
    queue_campaign(campaign.pk)

    with django_capture_on_commit_callbacks(execute=True):
        while run_batch(setup.account.pk):
            pass
    settle_deferred()
    finish_campaigns(setup.account.pk)

    by_address = dict(Message.objects.filter(campaign=campaign).values_list("to_email", "status"))
    assert by_address == {
        "success@simulator.amazonses.com": Status.DELIVERED,
        "bounce@simulator.amazonses.com": Status.BOUNCED,
        "complaint@simulator.amazonses.com": Status.COMPLAINED,
    }
    assert consumed_for(setup) == 3
    kinds = sorted(MessageEvent.objects.filter(campaign=campaign).values_list("type", flat=True))
    assert kinds == ["bounce", "complaint", "delivery", "delivery", "send", "send", "send"]
