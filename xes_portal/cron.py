"""All periodic work, declared in one place. Run by ``manage.py rqcron xes_portal.cron``
(`make run` starts it); the jobs land on the RQ queues like any other job."""

from __future__ import annotations

from rq import cron

from campaigns.analytics.jobs import aggregate_events_job
from campaigns.automation.jobs import automation_tick_job
from campaigns.sending.jobs import sending_tick_job
from campaigns.tracking.jobs import flush_events_job
from deliverability.jobs import (
    prune_sns_notifications_job,
    recheck_domains_job,
    requeue_sns_notifications_job,
    retry_unknown_job,
)
from deliverability.reputation.jobs import evaluate_standings_job
from plans.jobs import expire_terms_job, sync_starters_job

cron.register(expire_terms_job, queue_name="low", cron="5 * * * *")  # hourly: ended terms expire promptly
cron.register(sync_starters_job, queue_name="low", cron="15 3 * * *")  # daily: STARTER follows the flag
cron.register(recheck_domains_job, queue_name="low", cron="40 4 * * *")  # daily: DNS drift of every domain
cron.register(retry_unknown_job, queue_name="low", cron="25 * * * *")  # hourly: lookups that failed
cron.register(sending_tick_job, queue_name="sending", cron="* * * * *")  # reconcile, start scheduled, keep sending
cron.register(automation_tick_job, queue_name="default", cron="* * * * *")  # webhook retries, "not opened" rules
cron.register(flush_events_job, queue_name="default", interval=5)  # opens/clicks into the database, deferred statuses
cron.register(evaluate_standings_job, queue_name="low", cron="*/15 * * * *")  # reputation: rates, standing, alarms
cron.register(requeue_sns_notifications_job, queue_name="default", cron="*/5 * * * *")  # SNS rows whose job was lost
cron.register(prune_sns_notifications_job, queue_name="low", cron="50 2 * * *")  # daily: raw SNS retention
cron.register(aggregate_events_job, queue_name="default", interval=30)  # analytics counters, <= 60 s stale
