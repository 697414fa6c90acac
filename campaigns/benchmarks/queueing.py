"""Queueing a campaign of a million recipients: outbox rows + credit reservation + suppression filter.

:func:`measure` times :func:`campaigns.sending.queue_campaign` (what the "Send" button's job runs:
the conditional move to "preparing", then ``materialise``: one ``INSERT ... SELECT`` of the rows,
the anti-join against the account's suppression list, the credit reservation in the same
transaction, and the RQ batch jobs), counts the RQ jobs it enqueued (never one per recipient) and
reads this process's peak RSS. The contacts, their list and the suppression list are written
beforehand with SQL and not timed. The enqueued jobs are removed afterwards: no worker runs here.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import django_rq
from django.db import connection

from campaigns.benchmarks.world import make_world
from campaigns.models import Message
from campaigns.sending import queue_campaign
from campaigns.sending.jobs import QUEUE, reset_job_counter

GOAL_SECONDS = 15.0


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (MiB); ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure(recipients: int = 1_000_000, suppressed: int = 10_000) -> dict[str, Any]:
    """Queue a campaign of ``recipients`` contacts with ``suppressed`` addresses on the account's
    suppression list; returns one row for :func:`campaigns.benchmarks.pipeline.format_table`."""
    world = make_world(recipients, suppressed=suppressed)
    campaign = world.campaign("Queueing bench")
    queue = django_rq.get_queue(QUEUE)
    jobs_before = set(queue.job_ids)
    peak_before = peak_rss_mib()
    started = time.perf_counter()
    total = queue_campaign(campaign.pk)
    elapsed = time.perf_counter() - started
    peak = peak_rss_mib()
    new_jobs = [job_id for job_id in queue.job_ids if job_id not in jobs_before]
    for job_id in new_jobs:  # nobody will send this campaign: take its jobs back
        queue.remove(job_id)
    reset_job_counter(world.account.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT status, count(*) FROM {Message._meta.db_table} WHERE campaign_id = %s GROUP BY status",
            [campaign.pk],
        )
        counts = dict(cursor.fetchall())
    queued, dropped = int(counts.get("queued", 0)), int(counts.get("suppressed", 0))
    campaign.refresh_from_db()
    reserved = campaign.reservation.outstanding if campaign.reservation is not None else 0
    checks_ok = (
        total == recipients and queued + dropped == recipients and reserved == queued and 0 < len(new_jobs) < recipients
    )
    return {
        "measurement": f"queue 1 campaign: rows + credits + suppression filter ({suppressed:,} suppressed)",
        "messages": recipients,
        "seconds": round(elapsed, 2),
        "rate": round(recipients / elapsed),
        "detail": (
            f"{queued:,} queued, {dropped:,} suppressed, {reserved:,} credits reserved, "
            f"{len(new_jobs)} RQ jobs; peak RSS of the process {peak:.0f} MiB ({peak_before:.0f} MiB before)"
        ),
        "goal": f"< {GOAL_SECONDS:.0f} s, jobs << recipients",
        "ok": elapsed < GOAL_SECONDS and checks_ok,
    }
