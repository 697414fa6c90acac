"""The sending pipeline in one process against the real PostgreSQL and Redis: queueing with credits,
claiming, sending through the recording provider (or the sandbox), the error paths, pause / resume /
cancel, and reconciliation of rows whose worker died."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from email import policy
from email.parser import BytesParser
from typing import Any

import django_rq
import pytest
from django.db import connection
from django.utils import timezone

from campaigns.models import Campaign, Message
from campaigns.sending import (
    cancel_campaign,
    pause_campaign,
    queue_campaign,
    queue_triggered,
    reconcile_expired_leases,
    resume_campaign,
)
from campaigns.sending.control import UNKNOWN_GRACE, campaign_progress
from campaigns.sending.jobs import send_batch_job
from campaigns.sending.providers import RecordingProvider, message_tags
from campaigns.sending.ratelimit import Limiter
from campaigns.sending.worker import claim, finish_campaigns, lease_duration, run_batch
from deliverability.models import SandboxMessage, Suppression
from deliverability.providers import ensure_setup
from plans.models import Reservation
from plans.services import CreditRefused
from tests.campaigns.fixtures_sending import (
    Setup,
    consumed_for,
    make_campaign,
    make_setup,
    outstanding_for,
    recording_fixture,  # noqa: F401 - fixture "recording"
    setup_fixture,  # noqa: F401 - fixture "setup"
    statuses,
)

pytestmark = pytest.mark.django_db


def drain(account_id: int, rounds: int = 200) -> None:
    """Run batches until nothing is due (throttled rows wait a little)."""
    for _n in range(rounds):
        if run_batch(account_id) == 0:
            due = Message.objects.filter(sending_account_id=account_id, status="queued").exclude(
                campaign__status__in=["paused", "cancelled"]
            )
            if not due.exists():
                finish_campaigns(account_id)
                return
            time.sleep(0.05)
    raise AssertionError("the queue did not drain")


# --- queueing -----------------------------------------------------------------------------------


def test_queue_campaign_writes_rows_reserves_credits_and_skips_suppressed(
    setup: Setup, django_capture_on_commit_callbacks: Any
) -> None:
    campaign = make_campaign(setup, 50)
    Suppression.objects.create(sending_account=setup.account, email="SPRING3@example.net", reason="complaint")

    # django-rq enqueues when the transaction commits
    with django_capture_on_commit_callbacks(execute=True):
        total = queue_campaign(campaign.pk)

    campaign.refresh_from_db()
    assert total == 50
    assert campaign.status == Campaign.Status.SENDING
    assert statuses(campaign) == {"queued": 49, "suppressed": 1}
    assert Message.objects.get(campaign=campaign, status="suppressed").error == "complaint"
    assert campaign.reservation is not None
    assert campaign.reservation.quantity == 49
    # a bounded number of batch jobs, never one per recipient
    assert 1 <= django_rq.get_queue("sending").count <= 4


def test_double_click_starts_one_run(setup: Setup) -> None:
    campaign = make_campaign(setup, 20)

    first, second = queue_campaign(campaign.pk), queue_campaign(campaign.pk)

    assert first == second == 20
    assert Message.objects.filter(campaign=campaign).count() == 20
    assert Reservation.objects.filter(organisation=setup.organisation).count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_double_click_starts_one_run() -> None:
    setup = make_setup()
    campaign = make_campaign(setup, 300)
    barrier = threading.Barrier(2)
    results: list[int] = []

    def click() -> None:
        barrier.wait()
        try:
            results.append(queue_campaign(campaign.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Message.objects.filter(campaign=campaign).count() == 300
    assert Reservation.objects.filter(organisation=setup.organisation).count() == 1
    assert outstanding_for(setup) == 300


def test_refused_credits_leave_a_draft_with_the_reason_and_nothing_written(db: None) -> None:
    setup = make_setup(emails=10)
    campaign = make_campaign(setup, 11)

    with pytest.raises(CreditRefused):
        queue_campaign(campaign.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DRAFT
    assert "Not enough credits" in campaign.paused_reason
    assert not Message.objects.filter(campaign=campaign).exists()
    assert not Reservation.objects.filter(organisation=setup.organisation).exists()


def test_triggered_idempotency_and_suppression(setup: Setup, recording: RecordingProvider) -> None:
    first, created = queue_triggered(setup.account, setup.template, "ann@example.org", {"x": 1}, idempotency_key="k1")
    again, created_again = queue_triggered(setup.account, setup.template, "ann@example.org", {}, idempotency_key="k1")
    assert created
    assert not created_again
    assert again.pk == first.pk

    Suppression.objects.create(sending_account=setup.account, email="bob@example.org", reason="hard_bounce")
    suppressed, _created = queue_triggered(setup.account, setup.template, "Bob@example.org", {})
    assert suppressed.status == Message.Status.SUPPRESSED
    assert suppressed.reservation is None

    drain(setup.account.pk)
    assert recording.calls() == [first.pk]
    first.refresh_from_db()
    assert first.status == Message.Status.SENT
    assert consumed_for(setup) == 1
    assert outstanding_for(setup) == 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_with_one_idempotency_key_make_one_message() -> None:
    setup = make_setup()
    barrier = threading.Barrier(4)
    ids: list[int] = []

    def request() -> None:
        barrier.wait()
        try:
            message, _created = queue_triggered(
                setup.account, setup.template, "ann@example.org", {}, idempotency_key="same"
            )
            ids.append(message.pk)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 1
    assert len(ids) == 4
    assert Message.objects.count() == 1
    assert outstanding_for(setup) == 1


# --- sending --------------------------------------------------------------------------------------


def test_campaign_sends_each_recipient_once_and_charges_exactly(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 120)
    queue_campaign(campaign.pk)

    drain(setup.account.pk)

    calls = recording.calls()
    assert len(calls) == len(set(calls)) == 120
    campaign.refresh_from_db()
    assert statuses(campaign) == {"sent": 120}
    assert campaign.status == Campaign.Status.DONE
    assert consumed_for(setup) == 120
    assert outstanding_for(setup) == 0
    assert campaign_progress(campaign.pk)["done_percent"] == 100


def test_sandbox_message_carries_unsubscribe_headers_and_tags(setup: Setup) -> None:
    campaign = make_campaign(setup, 1)
    queue_campaign(campaign.pk)

    drain(setup.account.pk)

    message = Message.objects.get(campaign=campaign)
    stored = SandboxMessage.objects.get(message_id=message.provider_message_id)
    parsed = BytesParser(policy=policy.default).parsebytes(bytes(stored.raw))
    assert parsed["List-Unsubscribe"] == f"<http://127.0.0.1:8000/u/{message.token}>" or parsed[
        "List-Unsubscribe"
    ].endswith(f"/u/{message.token}>")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert stored.tags == message_tags(setup.account.pk, campaign.pk, message.pk)
    assert parsed["Subject"] == "Hello P0"


def test_transactional_mail_has_no_unsubscribe_header(setup: Setup) -> None:
    message, _created = queue_triggered(setup.account, setup.template, "ann@example.org", {})
    drain(setup.account.pk)
    message.refresh_from_db()
    stored = SandboxMessage.objects.get(message_id=message.provider_message_id)
    parsed = BytesParser(policy=policy.default).parsebytes(bytes(stored.raw))
    assert parsed["List-Unsubscribe"] is None


def test_rejected_message_fails_with_its_reason_and_releases_its_credit(
    setup: Setup, recording: RecordingProvider
) -> None:
    campaign = make_campaign(setup, 10)
    recording.configure(reject=["spring4@example.net"])
    queue_campaign(campaign.pk)

    drain(setup.account.pk)

    failed = Message.objects.get(campaign=campaign, status="failed")
    assert failed.to_email == "spring4@example.net"
    assert "Injected rejection" in failed.error
    assert statuses(campaign) == {"sent": 9, "failed": 1}
    assert consumed_for(setup) == 9
    assert outstanding_for(setup) == 0


def test_suppression_is_rechecked_at_send_time(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 5)
    queue_campaign(campaign.pk)
    Suppression.objects.create(sending_account=setup.account, email="spring2@example.net", reason="unsubscribe")

    drain(setup.account.pk)

    assert statuses(campaign) == {"sent": 4, "suppressed": 1}
    assert consumed_for(setup) == 4
    assert outstanding_for(setup) == 0


def test_throttling_slows_but_loses_and_duplicates_nothing(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 60)
    recording.configure(throttle_fraction=0.3)
    queue_campaign(campaign.pk)

    with _fast_backoff():
        drain(setup.account.pk, rounds=2000)

    assert recording.throttled_count() > 0
    calls = recording.calls()
    assert len(calls) == len(set(calls)) == 60
    assert statuses(campaign) == {"sent": 60}
    assert consumed_for(setup) == 60


def test_sending_paused_pauses_the_campaign_and_releases_credits(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 30)
    queue_campaign(campaign.pk)
    recording.configure(paused=True)

    run_batch(setup.account.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert "paused" in campaign.paused_reason.lower()
    assert statuses(campaign) == {"queued": 30}
    assert outstanding_for(setup) == 0  # credits released, re-reserved on resume

    recording.configure(paused=False)
    assert resume_campaign(campaign.pk) == 30
    drain(setup.account.pk)
    assert sorted(recording.calls()) == sorted(Message.objects.filter(campaign=campaign).values_list("pk", flat=True))
    assert consumed_for(setup) == 30
    assert outstanding_for(setup) == 0


def test_pause_and_resume_never_resend(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 40)
    queue_campaign(campaign.pk)
    rows = claim(setup.account.pk, 15, "worker-1")
    from campaigns.sending.render import Builder
    from campaigns.sending.worker import Batch

    assert pause_campaign(campaign.pk, "Checking the content")
    # rows in flight finish after the pause; nothing else is claimed
    account, provider_setup = setup.account, ensure_setup(setup.account)
    Batch(account, provider_setup, "worker-1", Builder()).run(rows)
    assert run_batch(setup.account.pk) == 0
    assert len(recording.calls()) == 15
    assert outstanding_for(setup) == 0

    resume_campaign(campaign.pk)
    drain(setup.account.pk)

    calls = recording.calls()
    assert len(calls) == len(set(calls)) == 40
    assert consumed_for(setup) == 40
    assert outstanding_for(setup) == 0


def test_cancel_releases_queued_credits(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 25)
    queue_campaign(campaign.pk)
    rows = claim(setup.account.pk, 5, "w")
    from campaigns.sending.render import Builder
    from campaigns.sending.worker import Batch

    assert cancel_campaign(campaign.pk) == 20
    Batch(setup.account, ensure_setup(setup.account), "w", Builder()).run(rows)

    assert statuses(campaign) == {"sent": 5, "cancelled": 20}
    assert consumed_for(setup) == 5
    assert outstanding_for(setup) == 0


def test_standing_suspended_pauses_campaign(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 5)
    queue_campaign(campaign.pk)
    setup.account.standing = "suspended"
    setup.account.save()

    run_batch(setup.account.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert recording.calls() == []
    assert outstanding_for(setup) == 0


# --- workers and exactly once ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_workers_claim_disjoint_rows() -> None:
    setup = make_setup()
    campaign = make_campaign(setup, 400)
    queue_campaign(campaign.pk)
    barrier = threading.Barrier(2)
    claimed: dict[str, list[int]] = {}

    def work(name: str) -> None:
        barrier.wait()
        try:
            got: list[int] = []
            while rows := claim(setup.account.pk, 50, name):
                got += [r.id for r in rows]
            claimed[name] = got
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    a, b = claimed["w0"], claimed["w1"]
    assert a
    assert b
    assert not set(a) & set(b)
    assert len(a) + len(b) == 400


def test_dead_worker_rows_are_reconciled_never_resent(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 20)
    queue_campaign(campaign.pk)
    provider_setup = ensure_setup(setup.account)
    rows = claim(setup.account.pk, 10, "dead-worker")
    # the dead worker handed 6 of its 10 rows to the provider, then died before recording anything
    for row in rows[:6]:
        recording.send_raw(
            provider_setup,
            b"Subject: x\n\nx",
            from_address="news@sendco.example",
            recipients=[row.to_email],
            tags=message_tags(setup.account.pk, campaign.pk, row.id),
        )

    # while the lease runs, nothing happens to those rows
    assert reconcile_expired_leases()["expired"] == 0
    later = timezone.now() + lease_duration() + UNKNOWN_GRACE + timedelta(seconds=1)
    result = reconcile_expired_leases(later)

    assert result == {"expired": 10, "sent": 6, "requeued": 4}
    drain(setup.account.pk)
    calls = recording.calls()
    assert len(calls) == len(set(calls)) == 20
    assert statuses(campaign) == {"sent": 20}
    assert consumed_for(setup) == 20
    assert outstanding_for(setup) == 0


def test_unknown_rows_stay_unknown_when_the_provider_cannot_tell(setup: Setup) -> None:
    campaign = make_campaign(setup, 3)
    queue_campaign(campaign.pk)
    provider_setup = ensure_setup(setup.account)
    provider_setup.provider = "ses"
    provider_setup.save()
    claim(setup.account.pk, 3, "dead")

    later = timezone.now() + lease_duration() + UNKNOWN_GRACE + timedelta(seconds=1)
    result = reconcile_expired_leases(later)

    assert result == {"expired": 3, "sent": 0, "requeued": 0}
    assert statuses(campaign) == {"unknown": 3}


def test_batch_job_runs_the_campaign_to_done(setup: Setup, recording: RecordingProvider) -> None:
    campaign = make_campaign(setup, 30)
    queue_campaign(campaign.pk)

    send_batch_job(setup.account.pk)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.DONE
    assert len(recording.calls()) == 30


# --- rate limit -----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_rate_limiter_is_shared_and_never_exceeds_the_rate() -> None:
    setup = make_setup()
    provider = RecordingProvider()
    provider.reset()
    provider.configure(max_send_rate=20)
    provider_setup = ensure_setup(setup.account)
    stamps: list[float] = []
    lock = threading.Lock()

    from campaigns.sending.providers import override

    def send(n: int) -> None:
        limiter = Limiter(provider_setup)
        for _i in range(n):
            limiter.wait_for_slot(want=5)
            with lock:
                stamps.append(time.monotonic())

    with override(provider):
        threads = [threading.Thread(target=send, args=(20,)) for _n in range(3)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start

    # 60 sends at 20/s: about 3 s, and no one-second window holds more than 20 (+1 for clock jitter)
    assert elapsed >= 2.5
    stamps.sort()
    for i, t in enumerate(stamps):
        in_window = sum(1 for u in stamps[i:] if u - t < 1.0)
        assert in_window <= 21


class _fast_backoff:  # noqa: N801 - used like a function
    """Shorter backoff so that throttled rows come back within the test."""

    def __enter__(self) -> None:
        from campaigns.sending import worker

        self.saved = worker.BACKOFF_BASE, worker.BACKOFF_MAX
        worker.BACKOFF_BASE, worker.BACKOFF_MAX = 0.01, 0.05

    def __exit__(self, *exc: object) -> None:
        from campaigns.sending import worker

        worker.BACKOFF_BASE, worker.BACKOFF_MAX = self.saved
