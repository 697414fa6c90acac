"""Helpers for the domain-wizard tests: add-ons, and publishing a domain's expected records."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from accounts.models import Organisation
from deliverability.models import DnsRecord, Domain
from plans.models import AddOnProduct, AddOnSubscription
from tests.conftest import rerun_data_migrations
from xes_portal.lib.domains import normalise_domain


def give_package(
    organisation: Organisation,
    domain: str,
    kind: str = AddOnProduct.Kind.ADVANCED_SENDER,
    starts_at: datetime | None = None,
) -> AddOnSubscription:
    """An active add-on term for ``domain`` (as the XES team's approval would create it)."""
    rerun_data_migrations()
    start = starts_at or timezone.now() - timedelta(days=1)
    return AddOnSubscription.objects.create(
        organisation=organisation,
        product=AddOnProduct.objects.get(kind=kind),
        domain=normalise_domain(domain),
        starts_at=start,
        ends_at=start + timedelta(days=365),
    )


def published(domain: Domain) -> list[tuple[str, str, str, int | None]]:
    """The domain's expected records as (name, type, value, priority), ready for the test DNS server."""
    return [(r.name, r.rtype, r.value, r.priority) for r in DnsRecord.objects.filter(domain=domain)]
