"""All periodic work, declared in one place. Run by ``manage.py rqcron xes_portal.cron``
(`make run` starts it); the jobs land on the RQ queues like any other job."""

from __future__ import annotations

from rq import cron

from campaigns.sending.jobs import sending_tick_job
from deliverability.jobs import recheck_domains_job, retry_unknown_job
from plans.jobs import expire_terms_job, sync_starters_job

cron.register(expire_terms_job, queue_name="low", cron="5 * * * *")  # hourly: ended terms expire promptly
cron.register(sync_starters_job, queue_name="low", cron="15 3 * * *")  # daily: STARTER follows the flag
cron.register(recheck_domains_job, queue_name="low", cron="40 4 * * *")  # daily: DNS drift of every domain
cron.register(retry_unknown_job, queue_name="low", cron="25 * * * *")  # hourly: lookups that failed
cron.register(sending_tick_job, queue_name="sending", cron="* * * * *")  # reconcile, start scheduled, keep sending
