"""RQ jobs of the sending pipeline (queue ``sending``). Each takes ids and is safe to run twice.

- :func:`send_batch_job` — claims and sends batches of one sending account until nothing is due
  (or :data:`JOB_SECONDS` have passed), then hands over to a fresh job if work remains;
- :func:`queue_campaign_job` — writes a campaign's outbox rows (after :func:`start_campaign`);
- :func:`sending_tick_job` — cron, every minute: reconcile dead workers' rows, start scheduled
  campaigns, retry interrupted queueing, and make sure every account with due rows has a job.

At most :data:`PARALLEL_JOBS` batch jobs per account wait or run at once (a Redis counter), so a
campaign of a million recipients is a handful of jobs, never one job per recipient.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from campaigns.models import Campaign, Message
from campaigns.sending.render import Builder

logger = logging.getLogger(__name__)

QUEUE = "sending"
JOB_SECONDS = 50
IDLE_WAIT = 2.0  # a job waits this long for rows that become due soon, then ends
QUEUEING_RETRY_AFTER = timedelta(minutes=2)
# Running jobs refresh the account's job counter; a counter nobody refreshes (its jobs were killed)
# disappears after this long, so a crash never blocks an account for longer.
COUNTER_SECONDS = 30


def parallel_jobs() -> int:
    return int(getattr(settings, "SENDING_PARALLEL_JOBS", 4))


def _counter(sending_account_id: int) -> str:
    return f"xes:sending:jobs:{sending_account_id}"


def reset_job_counter(sending_account_id: int) -> None:
    """Forget the account's counted jobs (the reconciler found rows of a dead worker)."""
    django_rq.get_connection(QUEUE).delete(_counter(sending_account_id))


def enqueue_batches(sending_account_id: int, wanted: int | None = None) -> int:
    """Make sure up to ``wanted`` (default :func:`parallel_jobs`) batch jobs for the account are
    queued or running; returns how many were added. The counter expires, so a job killed before it
    could count itself out stops counting after a few minutes."""
    queue = django_rq.get_queue(QUEUE)
    redis = queue.connection
    wanted = parallel_jobs() if wanted is None else wanted
    key = _counter(sending_account_id)
    running = int(redis.get(key) or 0)
    missing = max(0, wanted - running)
    if missing:
        redis.incrby(key, missing)
        redis.expire(key, COUNTER_SECONDS)
        for _n in range(missing):
            queue.enqueue(send_batch_job, sending_account_id, job_timeout=JOB_SECONDS * 4)
    return missing


def send_batch_job(sending_account_id: int) -> int:
    """Send the account's due rows for up to :data:`JOB_SECONDS`; returns the rows claimed."""
    from campaigns.sending.worker import finish_campaigns, next_due, run_batch

    builder = Builder()
    deadline = time.monotonic() + JOB_SECONDS
    claimed = 0
    more = False
    busy = False  # the time budget ran out with work left: hand over at full parallelism
    redis = django_rq.get_connection(QUEUE)
    try:
        while time.monotonic() < deadline:
            redis.expire(_counter(sending_account_id), COUNTER_SECONDS)
            n = run_batch(sending_account_id, builder)
            claimed += n
            if n:
                continue
            finish_campaigns(sending_account_id)
            wait = next_due(sending_account_id)
            if wait is None:
                break
            if wait > IDLE_WAIT:
                more = True
                break
            time.sleep(max(wait, 0.05))
        else:
            more = busy = True
    finally:
        if int(redis.decr(_counter(sending_account_id))) < 0:
            redis.set(_counter(sending_account_id), 0)
    if more:
        # Rows remain. When this job ran out of time while rows were due, every job that ends at
        # the same moment tops the account up to its full number of jobs again (the counter keeps
        # it from overshooting); when only rows due later remain, one job waits for them and the
        # minute tick covers rows due later than its patience.
        enqueue_batches(sending_account_id, wanted=None if busy else 1)
    return claimed


def queue_campaign_job(campaign_id: int) -> int:
    """Write the outbox rows of a campaign that :func:`start_campaign` moved to "preparing"."""
    from campaigns.sending.queueing import materialise
    from plans.services import CreditRefused

    try:
        return materialise(campaign_id)
    except CreditRefused:
        return 0  # the campaign is a draft again, with the reason for the UI


def start_campaign_async(campaign_id: int) -> bool:
    """What the "Send" button calls: move the campaign to "preparing" (once, however often it is
    clicked) and queue the job that writes its rows. False when it was not a draft/scheduled."""
    from campaigns.sending.queueing import start_campaign

    if not start_campaign(campaign_id):
        return False
    django_rq.get_queue(QUEUE).enqueue(queue_campaign_job, campaign_id, job_timeout=1800)
    return True


def sending_tick_job() -> dict[str, int]:
    """Every minute (cron): reconcile, start due scheduled campaigns, keep every account busy."""
    from campaigns.sending.control import reconcile_expired_leases
    from campaigns.sending.worker import finish_campaigns

    now = timezone.now()
    result = reconcile_expired_leases(now)
    due = Campaign.objects.filter(status=Campaign.Status.SCHEDULED, scheduled_at__lte=now)
    result["scheduled"] = sum(start_campaign_async(pk) for pk in due.values_list("pk", flat=True))
    stuck = Campaign.objects.filter(status=Campaign.Status.QUEUEING, started_at__lt=now - QUEUEING_RETRY_AFTER)
    for pk in stuck.values_list("pk", flat=True):
        django_rq.get_queue(QUEUE).enqueue(queue_campaign_job, pk, job_timeout=1800)
    accounts = (
        Message.objects.filter(status=Message.Status.QUEUED)
        .filter(Q(campaign__isnull=True) | Q(campaign__status=Campaign.Status.SENDING))
        .filter(Q(not_before__isnull=True) | Q(not_before__lte=now))
        .order_by()
        .values_list("sending_account_id", flat=True)
        .distinct()
    )
    result["accounts"] = 0
    for account_id in accounts:
        result["accounts"] += 1
        enqueue_batches(account_id)
    for account_id in (
        Campaign.objects.filter(status=Campaign.Status.SENDING)
        .order_by()
        .values_list("sending_account_id", flat=True)
        .distinct()
    ):
        finish_campaigns(account_id)
    return result
