"""Background jobs of deliverability; each is idempotent and calls :mod:`deliverability.services`."""

from __future__ import annotations

from datetime import timedelta

import django_rq
from django.conf import settings

from deliverability import services
from deliverability.webhooks import processing

QUEUE = "low"


def recheck_domains_job() -> int:
    """Daily: queue a re-check of every domain (one job each, so one slow zone delays nothing)."""
    queue = django_rq.get_queue(QUEUE)
    ids = services.domains_due_for_recheck()
    for domain_id in ids:
        queue.enqueue(recheck_domain_job, domain_id)
    return len(ids)


def retry_unknown_job() -> int:
    """Hourly: re-check domains whose last lookup timed out or failed ("unknown, will retry")."""
    ids = services.domains_with_unknown_records()
    for domain_id in ids:
        services.recheck_domain(domain_id)
    return len(ids)


def recheck_domain_job(domain_id: int) -> None:
    """Check one domain's records and e-mail the owners if a correct record broke."""
    services.recheck_domain(domain_id)


# --- SES events through SNS (deliverability.webhooks) ----------------------------------------

# Raw SNS notifications are kept this long for the team's investigations (setting
# ``SNS_NOTIFICATION_RETENTION_DAYS``), never less than twice the accepted message age.
SNS_RETENTION_DAYS = 30


def process_sns_notification_job(notification_id: int) -> str:
    """Process one stored SNS notification (queue "default"); a second run is a no-op."""
    return processing.process(notification_id)


def requeue_sns_notifications_job() -> int:
    """Every few minutes: queue notifications whose job was lost or whose worker died."""
    return processing.requeue_stalled()


def prune_sns_notifications_job() -> int:
    """Daily: delete raw notifications older than the retention period."""
    days = int(getattr(settings, "SNS_NOTIFICATION_RETENTION_DAYS", SNS_RETENTION_DAYS))
    return processing.prune(timedelta(days=days))
