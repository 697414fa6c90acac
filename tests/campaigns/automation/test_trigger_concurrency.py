"""Once per recipient under concurrency: real PostgreSQL transactions in several threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection

from campaigns.automation import triggers
from campaigns.automation.models import Firing
from campaigns.models import Message, MessageEvent
from plans.models import Reservation
from tests.campaigns.automation.conftest import OFFER, make_rule, make_world, store_event, triggered

THREADS = 8


def run_together(work: Callable[[int], Any], count: int = THREADS) -> list[Any]:
    """Run ``work(i)`` in ``count`` threads released at the same moment; returns the results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def target(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_concurrent_clicks_of_one_recipient_send_one_email() -> None:
    # given: a rule and eight stored clicks of the same recipient
    world = make_world()
    rule = make_rule(world, link_url=OFFER)
    ann = world.messages[0]
    event_ids = [store_event(ann, MessageEvent.Type.CLICK, url=OFFER).id for _n in range(THREADS)]
    reservations_before = Reservation.objects.count()
    # when: eight jobs, one per click, fire at the same moment
    fired = run_together(lambda i: triggers.fire_for_events([event_ids[i]]))
    # then
    assert sum(fired) == 1
    assert Firing.objects.filter(rule=rule).count() == 1
    sent = triggered(world)
    assert [m.to_email for m in sent] == [ann.to_email.lower()]
    assert Reservation.objects.count() == reservations_before + 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_fire_calls_send_once_per_recipient() -> None:
    world = make_world()
    rule = make_rule(world)
    addresses = ["ann@example.net", "ANN@example.net", "bob@example.net", "Bob@Example.net"] * 2
    results = run_together(lambda i: triggers.fire(rule, addresses[i]))
    assert sum(1 for r in results if r is not None) == 2
    assert sorted(Firing.objects.filter(rule=rule).values_list("email", flat=True)) == [
        "ann@example.net",
        "bob@example.net",
    ]
    assert Message.objects.filter(template=world.follow_up).count() == 2
