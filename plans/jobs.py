"""Background jobs of the plans app; each is idempotent and calls :mod:`plans.services`."""

from __future__ import annotations

from accounts.models import Organisation
from plans import services


def expire_terms_job() -> int:
    """Expire what is left of every ended term (scheduled hourly; can be run by hand)."""
    return services.expire_due_terms()


def sync_starters_job() -> int:
    """Renew or end STARTER terms according to the cloud e-media flag (scheduled daily)."""
    return services.sync_all_starters()


def sync_starter_job(organisation_id: int) -> None:
    """Apply a change of one organisation's cloud e-media flag at once."""
    organisation = Organisation.objects.filter(pk=organisation_id).first()
    if organisation is not None:
        services.sync_starter(organisation)
