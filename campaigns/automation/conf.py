"""Settings of :mod:`campaigns.automation`, with their defaults.

The lead adds the environment-backed lines to ``xes_portal/settings.py``; until then (and for any
setting left out) the defaults below apply, and they are the safe ones:

- ``WEBHOOKS_ALLOW_PRIVATE_ADDRESSES`` (default ``False``): let webhook endpoints resolve to
  private, loopback, link-local and other non-public addresses. Only for tests and local
  development; a system check warns about it in production.
- ``WEBHOOKS_ALLOW_HTTP`` (default: ``DEBUG``): accept ``http://`` endpoints. Production needs https.
- ``WEBHOOKS_TIMEOUT`` (default 10 seconds): connect and read timeout of one delivery attempt.
"""

from __future__ import annotations

from django.conf import settings


def allow_private_addresses() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_PRIVATE_ADDRESSES", False))


def allow_http() -> bool:
    return bool(getattr(settings, "WEBHOOKS_ALLOW_HTTP", settings.DEBUG))


def timeout() -> float:
    return float(getattr(settings, "WEBHOOKS_TIMEOUT", 10))
