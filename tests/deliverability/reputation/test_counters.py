"""Counting provider events into per-account, per-UTC-day counters: what counts, on which day,
once only, and without losing increments under concurrency."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

import pytest
import time_machine
from django.db import connection

from deliverability.models import ProviderSetup
from deliverability.providers import ensure_setup, get_provider
from deliverability.reputation import counters
from deliverability.reputation.models import DailyCounter, Thresholds
from tests.conftest import Tenant
from tests.deliverability.reputation.helpers import (
    T0,
    addresses,
    bounce_event,
    complaint_event,
    day,
    delivery_event,
    emit,
    send_event,
    traffic,
)
from tests.factories import SendingAccountFactory

pytestmark = pytest.mark.django_db


def row(account: Any, on: date | None = None) -> dict[str, int]:
    counter = DailyCounter.objects.filter(sending_account=account, day=on or T0.date()).first()
    if counter is None:
        return {}
    return {
        "sent": counter.sent,
        "delivered": counter.delivered,
        "hard": counter.hard_bounces,
        "soft": counter.soft_bounces,
        "complaints": counter.complaints,
    }


def test_each_event_type_counts_in_its_column(tenant: Tenant) -> None:
    with time_machine.travel(day(0, 15), tick=False):
        traffic(tenant.account_a, T0, sent=10, hard=2, soft=1, complaints=3)

    assert row(tenant.account_a) == {"sent": 10, "delivered": 7, "hard": 2, "soft": 1, "complaints": 3}
    assert row(tenant.account_b) == {}


def test_undetermined_bounces_are_not_hard(tenant: Tenant) -> None:
    emit(bounce_event(addresses(2), T0, "Undetermined"), tenant.account_a.pk)

    assert row(tenant.account_a)["hard"] == 0
    assert row(tenant.account_a)["soft"] == 2


def test_events_count_on_the_utc_day_they_happened(tenant: Tenant) -> None:
    # given: a delivery at 23:59 UTC reported after midnight
    late = T0.replace(hour=23, minute=59)
    with time_machine.travel(day(1, 0), tick=False):
        # when
        emit(delivery_event(addresses(1), late), tenant.account_a.pk)

    # then
    assert row(tenant.account_a, T0.date())["delivered"] == 1
    assert row(tenant.account_a, day(1).date()) == {}


def test_mailbox_simulator_recipients_do_not_count(tenant: Tenant) -> None:
    simulator = ["bounce@simulator.amazonses.com", "complaint+x@Simulator.AmazonSES.com"]
    emit(send_event([*simulator, "real@example.net"], T0), tenant.account_a.pk)
    emit(bounce_event(simulator[:1], T0), tenant.account_a.pk)
    emit(complaint_event(simulator[1:], T0), tenant.account_a.pk)

    assert row(tenant.account_a) == {"sent": 1, "delivered": 0, "hard": 0, "soft": 0, "complaints": 0}


def test_simulator_traffic_counts_when_the_team_turns_it_on_for_demos(tenant: Tenant) -> None:
    Thresholds.objects.filter(pk=1).update(count_simulator_traffic=True)

    emit(bounce_event(["bounce@simulator.amazonses.com"], T0), tenant.account_a.pk)

    assert row(tenant.account_a)["hard"] == 1


def test_the_same_event_delivered_twice_counts_once(tenant: Tenant) -> None:
    event = complaint_event(addresses(1), T0)

    emit(event, tenant.account_a.pk)
    emit(event, tenant.account_a.pk)
    emit(complaint_event(addresses(1), T0), tenant.account_a.pk)  # another complaint

    assert row(tenant.account_a)["complaints"] == 2


def test_opens_clicks_and_unknown_accounts_change_nothing(tenant: Tenant, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        emit({"eventType": "Open", "mail": {"messageId": "m"}, "open": {}}, tenant.account_a.pk)
        emit({"eventType": "Click", "mail": {"messageId": "m"}, "click": {}}, tenant.account_a.pk)
    emit(delivery_event(addresses(1), T0), 999_999_999)
    emit(delivery_event(addresses(1), T0), None)  # no account, no tag

    assert not DailyCounter.objects.exists()


def test_malformed_events_are_ignored(tenant: Tenant) -> None:
    emit({"eventType": "Bounce", "mail": "nonsense", "bounce": []}, tenant.account_a.pk)
    emit({"eventType": "Delivery", "mail": {"timestamp": "not a date"}, "delivery": {"recipients": "x"}}, None)

    assert not DailyCounter.objects.exists()


def test_the_account_comes_from_the_message_tag_when_the_sender_has_none(tenant: Tenant) -> None:
    event = delivery_event(addresses(3), T0)
    event["mail"]["tags"] = {"xes_account": [str(tenant.account_b.pk)]}

    emit(event, None)

    assert row(tenant.account_b)["delivered"] == 3


def test_sandbox_sends_feed_the_counters(
    tenant: Tenant, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # given
    settings.DELIVERY_PROVIDER = "sandbox"
    setup: ProviderSetup = ensure_setup(tenant.account_a)
    provider = get_provider("sandbox")
    raw = b"From: news@alpha.example\r\nTo: a@example.net\r\nSubject: Hi\r\n\r\nHello\r\n"
    # when
    with time_machine.travel(T0, tick=False), django_capture_on_commit_callbacks(execute=True):
        provider.send_raw(setup, raw, from_address="news@alpha.example", recipients=["a@example.net"], tags={})
        provider.send_raw(
            setup, raw, from_address="news@alpha.example", recipients=["bounce@simulator.amazonses.com"], tags={}
        )
    # then: the real recipient counts; the simulator's bounce does not
    assert row(tenant.account_a) == {"sent": 1, "delivered": 1, "hard": 0, "soft": 0, "complaints": 0}


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_lose_no_increment() -> None:
    account = SendingAccountFactory()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for _i in range(25):
                counters.count_event(delivery_event(addresses(2), T0), account.pk)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert DailyCounter.objects.get(sending_account=account).delivered == 6 * 25 * 2
