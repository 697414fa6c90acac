"""Background jobs of deliverability; each is idempotent and calls :mod:`deliverability.services`."""

from __future__ import annotations

import django_rq

from deliverability import services

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
