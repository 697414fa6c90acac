"""The tracking buffer: opens and clicks wait in Redis and are written to PostgreSQL in batches
with COPY; a flusher killed between any two steps loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import django_rq
import pytest
from django.db import connection
from django.test import override_settings

from campaigns.events import EventRecord
from campaigns.models import EventBatch, MessageEvent, TrackedLink, url_hash
from campaigns.signals import message_events
from campaigns.tracking import buffer
from campaigns.tracking.jobs import flush_events_job
from tests.campaigns.fixtures_sending import ROOT, Setup, make_setup, setup_fixture, worker_env  # noqa: F401
from tests.campaigns.fixtures_tracking import _fresh_tracking_caches, make_message  # noqa: F401 - autouse

pytestmark = pytest.mark.django_db

AGENT = "Mozilla/5.0 (Windows NT 10.0) Thunderbird/115"


def push_opens(message_id: int, n: int, start: float | None = None) -> None:
    start = start or time.time()
    for i in range(n):
        buffer.push(buffer.encode(buffer.OPEN, message_id, None, None, start + i * 10, AGENT, ""))


def redis() -> Any:
    return buffer.redis_connection()


def test_flush_stores_buffered_events_in_batches_and_announces_each_batch(
    setup: Setup, django_capture_on_commit_callbacks: Any
) -> None:
    message = make_message(setup)
    push_opens(message.pk, 7)
    announced: list[list[EventRecord]] = []

    def receiver(sender: Any, events: list[EventRecord], **kwargs: Any) -> None:
        announced.append(events)

    message_events.connect(receiver, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            result = buffer.flush(batch_size=3)
    finally:
        message_events.disconnect(receiver)

    assert (result.batches, result.stored) == (3, 7)
    assert MessageEvent.objects.filter(message=message, type="open").count() == 7
    assert buffer.pending() == 0
    assert [len(batch) for batch in announced] == [3, 3, 1]
    stored_ids = set(MessageEvent.objects.values_list("pk", flat=True))
    assert {record.id for batch in announced for record in batch} == stored_ids
    assert EventBatch.objects.count() == 3


def test_events_keep_their_time_agent_and_recipient_domain(setup: Setup) -> None:
    message = make_message(setup, to_email="Ann@Mail.Example")
    at = time.time() - 60  # the message was sent an hour ago: not a prefetch

    buffer.push(buffer.encode(buffer.OPEN, message.pk, None, None, at, AGENT, ""))
    buffer.flush()

    event = MessageEvent.objects.get()
    assert abs(event.at.timestamp() - at) < 0.002
    assert event.recipient_domain == "mail.example"
    assert event.data == {"ua": AGENT}
    assert event.subtype == ""


def test_invalid_records_are_dropped(setup: Setup) -> None:
    message = make_message(setup)
    other = make_setup()
    theirs = TrackedLink.objects.create(
        organisation=other.organisation, url="https://x.example/", url_hash=url_hash("https://x.example/")
    )
    conn = redis()
    conn.rpush(buffer.IN_KEY, b"not json", b"[1,2]", b'["x",1,null,null,0,"",""]')
    buffer.push(buffer.encode(buffer.OPEN, 987_654_321, None, None, time.time(), AGENT, ""))  # no such message
    # a click naming our organisation but a link of another one
    buffer.push(buffer.encode(buffer.CLICK, message.pk, theirs.pk, setup.organisation.pk, time.time(), AGENT, ""))
    push_opens(message.pk, 1)

    result = buffer.flush()

    assert result.stored == 1
    assert MessageEvent.objects.get().type == "open"
    assert buffer.pending() == 0


# --- crash safety ---------------------------------------------------------------------------------


def test_a_flusher_that_died_after_taking_a_batch_loses_nothing(setup: Setup) -> None:
    message = make_message(setup)
    push_opens(message.pk, 5)
    batch_id, items = buffer.take(redis(), 100)  # ... and then the process died
    assert batch_id is not None
    assert len(items) == 5
    push_opens(message.pk, 2)  # the buffer keeps filling meanwhile

    result = buffer.flush()

    assert result.stored == 7
    assert MessageEvent.objects.count() == 7
    assert buffer.pending() == 0


def test_a_flusher_that_died_after_storing_duplicates_nothing(setup: Setup) -> None:
    message = make_message(setup)
    push_opens(message.pk, 5)
    batch_id, items = buffer.take(redis(), 100)
    assert batch_id is not None
    assert len(buffer.store(items, batch_id)) == 5  # committed; the process died before finishing

    result = buffer.flush()

    assert (result.stored, result.skipped_batches) == (0, 1)
    assert MessageEvent.objects.count() == 5
    assert buffer.pending() == 0


def test_two_flushers_on_one_batch_store_it_once(transactional_db: None) -> None:
    setup = make_setup()
    message = make_message(setup)
    push_opens(message.pk, 50)
    batch_id, items = buffer.take(redis(), 100)
    barrier = threading.Barrier(2)
    stored: list[int] = []

    def run() -> None:
        try:
            barrier.wait(5)
            stored.append(len(buffer.store(items, batch_id)))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert sorted(stored) == [0, 50]
    assert MessageEvent.objects.count() == 50


FLUSHER = """
import os, signal
from campaigns.tracking import buffer
conn = buffer.redis_connection()
batch_id, items = buffer.take(conn, 1000)
if os.environ["XES_DIE_AT"] == "stored":
    buffer.store(items, batch_id)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("die_at", ["taken", "stored"])
def test_a_flusher_process_killed_between_steps_loses_and_duplicates_nothing(
    transactional_db: None, die_at: str
) -> None:
    setup = make_setup()
    message = make_message(setup)
    push_opens(message.pk, 300)

    process = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "shell", "-c", FLUSHER],
        cwd=ROOT,
        env={**worker_env(), "XES_DIE_AT": die_at},
        capture_output=True,
        timeout=120,
        check=False,
    )

    assert process.returncode == -signal.SIGKILL, process.stderr.decode()[-2000:]
    assert MessageEvent.objects.count() == (300 if die_at == "stored" else 0)
    buffer.flush()
    assert MessageEvent.objects.count() == 300
    assert buffer.pending() == 0


def test_a_flusher_process_killed_inside_its_transaction_loses_and_duplicates_nothing(transactional_db: None) -> None:
    """The flusher is killed while its COPY waits (a lock held here keeps it there); its
    transaction, with the batch's ledger row, is rolled back; the next flush stores the batch."""
    import psycopg

    setup = make_setup()
    message = make_message(setup)
    push_opens(message.pk, 300)
    dsn = worker_env()["DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=False) as locker:
        locker.execute("LOCK TABLE campaigns_messageevent IN ACCESS EXCLUSIVE MODE")
        process = subprocess.Popen(  # noqa: S603 - our own manage.py
            [sys.executable, "manage.py", "shell", "-c", "from campaigns.tracking import buffer; buffer.flush()"],
            cwd=ROOT,
            env=worker_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 60
            with psycopg.connect(dsn, autocommit=True) as watcher:
                while time.monotonic() < deadline:
                    row = watcher.execute(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE c.relname = 'campaigns_messageevent' AND NOT l.granted"
                    ).fetchone()
                    if row and row[0]:
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError("the flusher never reached its COPY")
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        locker.rollback()

    assert MessageEvent.objects.count() == 0
    assert buffer.pending() == 300  # still in the processing list
    redis().delete(buffer.LOCK_KEY)  # the dead flusher's lock expires (LOCK_SECONDS)
    assert buffer.flush().stored == 300
    assert MessageEvent.objects.count() == 300
    assert buffer.pending() == 0


# --- triggers and fallbacks -----------------------------------------------------------------------


def test_a_full_buffer_enqueues_a_flush(
    setup: Setup, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    monkeypatch.setattr(buffer, "FLUSH_AT", 3)
    message = make_message(setup)
    queue = django_rq.get_queue("default")

    with django_capture_on_commit_callbacks(execute=True):  # django-rq enqueues on commit
        push_opens(message.pk, 2)
    assert queue.count == 0
    with django_capture_on_commit_callbacks(execute=True):
        push_opens(message.pk, 4)

    assert queue.count == 1  # one, however often the threshold is passed within seconds


def test_the_flush_job_stores_events_and_settles_deferred_statuses(setup: Setup) -> None:
    message = make_message(setup)
    push_opens(message.pk, 2)

    result = flush_events_job()

    assert result["stored"] == 2
    assert MessageEvent.objects.count() == 2


def test_without_redis_events_are_stored_directly(setup: Setup) -> None:
    message = make_message(setup)

    with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
        push_opens(message.pk, 1)

    assert MessageEvent.objects.count() == 1


def test_old_batch_ledger_rows_are_pruned(setup: Setup) -> None:
    from datetime import timedelta

    from django.utils import timezone

    message = make_message(setup)
    push_opens(message.pk, 1)
    buffer.flush()
    assert EventBatch.objects.count() == 1

    assert buffer.prune_batches(timezone.now() + timedelta(days=6)) == 0
    assert buffer.prune_batches(timezone.now() + timedelta(days=8)) == 1


def test_copy_writes_what_the_orm_reads_back(setup: Setup) -> None:
    """Values that COPY's text format must escape arrive intact."""
    message = make_message(setup)
    agent = 'Tab\there, newline\nthere, backslash \\ and "quotes" and ünïcödé \u2028'

    buffer.push(buffer.encode(buffer.OPEN, message.pk, None, None, time.time(), agent, ""))
    buffer.flush()

    assert MessageEvent.objects.get().data["ua"] == agent
