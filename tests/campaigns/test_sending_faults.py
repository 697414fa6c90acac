"""Fault tests with real RQ worker processes (``manage.py rqworker sending --burst``) against the real
PostgreSQL and Redis, sending through the recording provider, which logs every provider call:

- a worker SIGKILLed half-way through a 1,000-recipient campaign (from outside, or by itself right
  after the provider accepted a message), then reconciliation and a restart: every recipient got
  exactly one provider call and the credits consumed equal the messages sent;
- two workers at once, with injected throttling: disjoint work, nothing lost or sent twice.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta

import psutil
import pytest
from django.utils import timezone

from campaigns.models import Campaign, Message
from campaigns.sending import queue_campaign, reconcile_expired_leases
from campaigns.sending.control import UNKNOWN_GRACE
from campaigns.sending.providers import RecordingProvider, override
from campaigns.sending.worker import lease_duration
from tests.campaigns.fixtures_sending import (
    consumed_for,
    make_campaign,
    make_setup,
    outstanding_for,
    start_worker,
    statuses,
)

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENTS = 1000


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def kill_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker and its work-horse (RQ's horse starts its own session, so killing the
    process group is not enough)."""
    parent = psutil.Process(proc.pid)
    for process in [*parent.children(recursive=True), parent]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)


def _finish(proc: subprocess.Popen[bytes], timeout: float = 180) -> str:
    try:
        output, _err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_worker(proc)
        output, _err = proc.communicate()
        raise AssertionError(f"worker did not finish:\n{output.decode(errors='replace')[-3000:]}") from None
    return output.decode(errors="replace")


@pytest.mark.parametrize("how", ["sigkill-from-outside", "dies-after-provider-accepted"])
def test_killed_worker_then_restart_sends_every_recipient_exactly_once(how: str) -> None:
    setup = make_setup()
    campaign = make_campaign(setup, RECIPIENTS)
    provider = RecordingProvider()
    provider.reset()
    if how == "sigkill-from-outside":
        provider.configure(delay_ms=2)
    else:
        provider.configure(die_after=RECIPIENTS // 2)
    queue_campaign(campaign.pk)

    # given: a real worker that is killed half-way
    worker = start_worker()
    if how == "sigkill-from-outside":
        _wait_for(lambda: len(provider.calls()) >= RECIPIENTS // 2, 120, "half of the campaign")
        kill_worker(worker)
    output = _finish(worker)
    in_flight = Message.objects.filter(campaign=campaign, status=Message.Status.SENDING).count()
    assert in_flight > 0, output[-2000:]
    accepted_unrecorded = len(
        provider.accepted_message_ids(
            None,  # type: ignore[arg-type]
            list(Message.objects.filter(campaign=campaign, status="sending").values_list("pk", flat=True)),
        )
    )
    if how == "dies-after-provider-accepted":
        # the kill fell between the provider's acceptance and our commit
        assert accepted_unrecorded >= 1

    # when: the minute tick reconciles after the lease expired, and a worker starts again
    provider.configure(die_after=0, delay_ms=0)
    later = timezone.now() + lease_duration() + UNKNOWN_GRACE + timedelta(seconds=1)
    leases = list(Message.objects.filter(campaign=campaign, status="sending").values_list("lease_until", flat=True)[:3])
    with override(provider):  # this process asks the same provider as the workers
        result = reconcile_expired_leases(later)
    assert result["expired"] == in_flight, (leases, later, result)
    assert result["sent"] == accepted_unrecorded
    output = _finish(start_worker())

    # then: one provider call per recipient, all sent, exactly the sent messages charged
    calls = provider.calls()
    assert len(calls) == RECIPIENTS, output[-2000:]
    assert len(set(calls)) == RECIPIENTS
    assert set(calls) == set(Message.objects.filter(campaign=campaign).values_list("pk", flat=True))
    assert statuses(campaign) == {"sent": RECIPIENTS}
    assert consumed_for(setup) == RECIPIENTS
    assert outstanding_for(setup) == 0
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DONE


def test_two_workers_with_throttling_share_the_work_and_send_each_once() -> None:
    setup = make_setup()
    campaign = make_campaign(setup, RECIPIENTS)
    provider = RecordingProvider()
    provider.reset()
    provider.configure(delay_ms=1, throttle_fraction=0.1)
    queue_campaign(campaign.pk)

    workers = [start_worker(), start_worker()]
    outputs = [_finish(worker) for worker in workers]

    calls = provider.calls()
    assert provider.throttled_count() > 0
    assert len(calls) == len(set(calls)) == RECIPIENTS, outputs[0][-2000:]
    assert statuses(campaign) == {"sent": RECIPIENTS}
    # both processes sent part of the campaign (each row is claimed by exactly one of them)
    holders = set(Message.objects.filter(campaign=campaign).values_list("claimed_by", flat=True))
    assert len(holders) >= 2
    assert consumed_for(setup) == RECIPIENTS
    assert outstanding_for(setup) == 0
