"""What an organisation is entitled to right now. Later features ask here, never the models.

Example: the domain wizard asks ``has_addon(org, AddOnProduct.Kind.ADVANCED_SENDER, "example.com")``
before it offers SPF, DMARC and branded links.
"""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.models import Organisation
from plans.models import AddOnProduct, AddOnSubscription
from xes_portal.lib.domains import normalise_domain

Kind = AddOnProduct.Kind


def _active(organisation: Organisation, kind: str, at: datetime | None):  # type: ignore[no-untyped-def]
    at = at or timezone.now()
    return AddOnSubscription.objects.filter(
        organisation=organisation, product__kind=kind, starts_at__lte=at, ends_at__gt=at
    )


def has_addon(organisation: Organisation, kind: str, domain: str, at: datetime | None = None) -> bool:
    """Whether ``domain`` has the add-on ``kind`` at ``at`` (now by default).

    The domain is compared in its normalised form (lower case, IDN as punycode); a string that is
    not a domain name has no add-on.
    """
    try:
        name = normalise_domain(domain)
    except ValidationError:
        return False
    return _active(organisation, kind, at).filter(domain=name).exists()


def addon_domains(organisation: Organisation, kind: str, at: datetime | None = None) -> list[str]:
    """The domains that have the add-on ``kind`` now."""
    return sorted(set(_active(organisation, kind, at).values_list("domain", flat=True)))


def sending_accounts_allowed(organisation: Organisation, at: datetime | None = None) -> int:
    """The first sending account is included; each Additional-account add-on allows one more."""
    return 1 + _active(organisation, Kind.ADDITIONAL_ACCOUNT, at).count()
