"""Trigger rules fire from stored events (the real recorder and ``message_events``), through the
normal sending pipeline, once per rule and recipient; machine events never fire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from campaigns.automation import triggers
from campaigns.automation.models import Firing, TriggerRule
from campaigns.models import Message, MessageEvent
from deliverability.models import Suppression
from plans import services as credits
from plans.models import Reservation
from tests.campaigns.automation.conftest import (
    OFFER,
    OTHER,
    World,
    deliver_campaign,
    make_rule,
    make_world,
    queued_jobs,
    run_jobs,
    store_event,
    triggered,
)
from tests.campaigns.fixtures_sending import make_campaign

pytestmark = pytest.mark.django_db
Type = MessageEvent.Type


def test_a_click_on_the_rules_link_sends_the_template_once(world: World, django_capture_on_commit_callbacks) -> None:
    # given
    rule = make_rule(world, link_url=OFFER)
    ann = world.messages[0]
    # when: the recipient clicks the offer twice, in two batches, and another link once
    with django_capture_on_commit_callbacks(execute=True):
        store_event(ann, Type.CLICK, url=OFFER)
    run_jobs()
    with django_capture_on_commit_callbacks(execute=True):
        store_event(ann, Type.CLICK, url=OFFER)
        store_event(ann, Type.CLICK, url=OTHER)
    run_jobs()
    # then
    sent = triggered(world)
    assert len(sent) == 1
    message = sent[0]
    assert message.to_email == ann.to_email.lower()
    assert message.contact_id == ann.contact_id  # merge fields come from the campaign's contact
    assert message.sender_id == world.sender.pk
    assert message.promotional is True
    assert message.status == Message.Status.QUEUED
    assert message.reservation is not None
    assert message.reservation.quantity == 1
    assert message.idempotency_key == triggers.idempotency_key(rule, ann.to_email.lower())
    firing = Firing.objects.get(rule=rule)
    assert (firing.email, firing.message_id, firing.status) == (ann.to_email.lower(), message.pk, "queued")
    assert firing.source_message_id == ann.pk


def test_a_click_on_another_link_does_not_fire_a_rule_for_one_link(
    world: World, django_capture_on_commit_callbacks
) -> None:
    make_rule(world, link_url=OFFER)
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.CLICK, url=OTHER)
    run_jobs()
    assert triggered(world) == []
    assert not Firing.objects.exists()


def test_an_any_link_rule_fires_for_each_recipient_who_clicks(world: World, django_capture_on_commit_callbacks) -> None:
    make_rule(world)
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.CLICK, url=OTHER)
        store_event(world.messages[1], Type.CLICK, url="https://shop.example/p?id=b")
    run_jobs()
    assert sorted(m.to_email for m in triggered(world)) == sorted(m.to_email for m in world.messages[:2])


def test_machine_opens_and_clicks_never_fire(world: World, django_capture_on_commit_callbacks) -> None:
    make_rule(world, name="clicks")
    make_rule(world, TriggerRule.Event.OPEN, name="opens")
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.OPEN, machine=True)
        store_event(world.messages[0], Type.CLICK, url=OFFER, machine=True)
    # the receiver queues nothing for machine events
    assert queued_jobs() == []
    # and even when asked directly, the job ignores them
    ids = list(MessageEvent.objects.filter(message=world.messages[0]).values_list("pk", flat=True))
    assert triggers.fire_for_events(ids) == 0
    assert triggered(world) == []


def test_an_open_rule_fires_on_a_human_open_and_a_click_counts_as_an_open(
    world: World, django_capture_on_commit_callbacks
) -> None:
    rule = make_rule(world, TriggerRule.Event.OPEN)
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.OPEN)
        store_event(world.messages[0], Type.OPEN)
        store_event(world.messages[1], Type.CLICK, url=OFFER)
        store_event(world.messages[2], Type.DELIVERY)
    run_jobs()
    assert sorted(Firing.objects.filter(rule=rule).values_list("email", flat=True)) == sorted(
        m.to_email.lower() for m in world.messages[:2]
    )


def test_events_of_another_campaign_or_a_disabled_rule_do_not_fire(
    world: World, django_capture_on_commit_callbacks
) -> None:
    other = make_campaign(world.setup, 1, name="Autumn")
    other_message = deliver_campaign(other, timezone.now())[0]
    make_rule(world, name="spring")
    make_rule(world, name="disabled", campaign=other, enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        store_event(other_message, Type.CLICK, url=OFFER)
    assert queued_jobs() == []
    run_jobs()
    assert triggered(world) == []


def test_a_suppressed_recipient_gets_no_mail_and_uses_no_credit(
    world: World, django_capture_on_commit_callbacks
) -> None:
    rule = make_rule(world)
    ann = world.messages[0]
    Suppression.objects.create(sending_account=world.account, email=ann.to_email, reason="complaint")
    before = Reservation.objects.count()
    with django_capture_on_commit_callbacks(execute=True):
        store_event(ann, Type.CLICK, url=OFFER)
    run_jobs()
    firing = Firing.objects.get(rule=rule)
    assert firing.status == Firing.Status.SUPPRESSED
    assert firing.message is not None
    assert firing.message.status == Message.Status.SUPPRESSED
    assert Reservation.objects.count() == before


def test_a_refusal_is_recorded_once_and_not_retried(world: World, django_capture_on_commit_callbacks) -> None:
    # given: no credits left
    rule = make_rule(world)
    credits.reserve(world.organisation, 100_000, sending_account=world.account)
    ann = world.messages[0]
    # when
    with django_capture_on_commit_callbacks(execute=True):
        store_event(ann, Type.CLICK, url=OFFER)
    run_jobs()
    with django_capture_on_commit_callbacks(execute=True):
        store_event(ann, Type.CLICK, url=OFFER)
    run_jobs()
    # then
    firing = Firing.objects.get(rule=rule)
    assert firing.status == Firing.Status.REFUSED
    assert firing.error
    assert firing.message_id is None
    assert triggered(world) == []


def test_a_transactional_rule_sends_transactional_mail(world: World) -> None:
    rule = make_rule(world, promotional=False)
    firing = triggers.fire(rule, world.messages[0].to_email)
    assert firing is not None
    assert firing.message is not None
    assert firing.message.promotional is False


def test_fire_twice_for_the_same_address_in_another_case_sends_once(world: World) -> None:
    rule = make_rule(world)
    assert triggers.fire(rule, "Ann@Example.net") is not None
    assert triggers.fire(rule, "ann@example.NET") is None
    assert Firing.objects.filter(rule=rule).count() == 1
    assert Message.objects.filter(to_email="ann@example.net", template=world.follow_up).count() == 1


def test_the_outbox_idempotency_key_backs_up_the_firing_log(world: World) -> None:
    """The idempotency key repeats the once-only guarantee in the outbox."""
    rule = make_rule(world)
    first = triggers.fire(rule, "ann@example.net")
    assert first is not None
    Firing.objects.filter(pk=first.pk).delete()
    again = triggers.fire(rule, "ann@example.net")
    assert again is not None
    assert again.message_id == first.message_id
    assert Message.objects.filter(to_email="ann@example.net", template=world.follow_up).count() == 1


def test_the_receiver_queues_only_watched_campaigns_human_events(
    world: World, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.CLICK, url=OFFER)
    assert queued_jobs() == []  # no rule yet
    make_rule(world)
    with django_capture_on_commit_callbacks(execute=True):
        store_event(world.messages[0], Type.CLICK, url=OFFER)
    assert queued_jobs() == ["campaigns.automation.jobs.fire_for_events_job"]


# --- did not open within N days ---------------------------------------------------------------------


def test_not_opened_within_n_days_fires_for_those_without_a_human_open(db: None) -> None:
    sent_at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with time_machine.travel(sent_at, tick=False):
        world = make_world(recipients=5, sent_at=sent_at)
        rule = make_rule(world, TriggerRule.Event.NOT_OPENED, delay_days=3)
        opened, machine_only, clicked, bounced, silent = world.messages
        store_event(opened, Type.OPEN, at=sent_at + timedelta(hours=2))
        store_event(machine_only, Type.OPEN, machine=True, at=sent_at + timedelta(seconds=5))
        store_event(clicked, Type.CLICK, url=OFFER, at=sent_at + timedelta(days=1))
        Message.objects.filter(pk=bounced.pk).update(status=Message.Status.BOUNCED)

    # two days later: nobody is due yet
    with time_machine.travel(sent_at + timedelta(days=2), tick=False):
        assert triggers.fire_not_opened(rule.pk) == 0
    assert not Firing.objects.exists()

    # three days and a minute later: the silent one and the one only a machine opened
    with time_machine.travel(sent_at + timedelta(days=3, minutes=1), tick=False):
        assert triggers.fire_not_opened(rule.pk) == 2
    assert sorted(Firing.objects.filter(rule=rule).values_list("email", flat=True)) == sorted(
        [machine_only.to_email, silent.to_email]
    )
    rule.refresh_from_db()
    assert rule.scanned_until == sent_at + timedelta(minutes=1)

    # a later scan sends nothing again
    with time_machine.travel(sent_at + timedelta(days=4), tick=False):
        assert triggers.fire_not_opened(rule.pk) == 0
    assert len(triggered(world)) == 2


def test_the_not_opened_scan_works_in_batches(db: None, django_capture_on_commit_callbacks) -> None:
    world = make_world(recipients=5, sent_at=timezone.now() - timedelta(days=10))
    rule = make_rule(world, TriggerRule.Event.NOT_OPENED, delay_days=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert triggers.fire_not_opened(rule.pk, limit=2) == 2
    assert queued_jobs() == ["campaigns.automation.jobs.fire_not_opened_job"]
    run_jobs()  # the follow-up job fires the other three
    assert Firing.objects.filter(rule=rule).count() == 5


def test_the_tick_queues_not_opened_scans_once_per_interval(world: World, django_capture_on_commit_callbacks) -> None:
    from campaigns.automation.jobs import automation_tick_job

    make_rule(world, TriggerRule.Event.NOT_OPENED, delay_days=1)
    make_rule(world, TriggerRule.Event.NOT_OPENED, delay_days=2, enabled=False, name="off")
    with django_capture_on_commit_callbacks(execute=True):
        assert automation_tick_job()["not_opened"] == 1
        assert automation_tick_job()["not_opened"] == 0  # within the interval
    assert queued_jobs().count("campaigns.automation.jobs.fire_not_opened_job") == 1
