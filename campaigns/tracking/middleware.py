"""Serves ``/t/o/<token>`` and ``/t/c/<token>`` before any other middleware.

Put it first in ``MIDDLEWARE``. Two reasons:

1. speed: opens and clicks need no session, CSRF, locale, authentication or CSP work, and these
   endpoints take most of the portal's requests;
2. hosts: branded tracking domains (``links.customer.example``, a CNAME to the portal) cannot all
   be listed in ``ALLOWED_HOSTS``. For these two paths only, a request is answered when its host
   is allowed by ``ALLOWED_HOSTS`` or is a verified branded tracking host (read from the domains,
   cached for a minute); other hosts get a 400 like Django's. Every other path goes through the
   normal stack and Django's host validation, so a branded host never serves the portal.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.http.request import split_domain_port, validate_host

from campaigns.tracking import views
from campaigns.tracking.links import verified_tracking_hosts

PATH = re.compile(r"^/t/([oc])/([A-Za-z0-9_-]{1,80})/?$")
HOSTS_CACHE_SECONDS = 60.0
_branded: tuple[frozenset[str], float] = (frozenset(), -HOSTS_CACHE_SECONDS)


def _host_allowed(request: HttpRequest) -> bool:
    return host_allowed(request._get_raw_host())  # type: ignore[attr-defined]  # noqa: SLF001 - before validation


def host_allowed(raw: str) -> bool:
    """Whether the tracking endpoints answer on the host ``raw`` (``Host`` header, port allowed)."""
    domain, _port = split_domain_port(raw)
    if not domain:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return validate_host(domain, allowed) or is_branded_host(domain)


def is_branded_host(domain: str) -> bool:
    """Whether ``domain`` is a verified branded tracking host (the list is cached for a minute)."""
    global _branded
    hosts, loaded = _branded
    now = time.monotonic()
    if now - loaded >= HOSTS_CACHE_SECONDS:
        hosts = frozenset(verified_tracking_hosts())
        _branded = (hosts, now)
    return domain.lower().rstrip(".") in hosts


def forget_hosts() -> None:
    """Reload the verified tracking hosts on the next request (tests, domain changes)."""
    global _branded
    _branded = (frozenset(), -HOSTS_CACHE_SECONDS)


class TrackingMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        if not path.startswith("/t/"):
            return self.get_response(request)
        match = PATH.match(path)
        if match is None:
            return self.get_response(request)
        if not _host_allowed(request):
            return HttpResponseBadRequest()
        kind, token = match.groups()
        if kind == "o":
            return views.open_pixel(request, token)
        return views.click(request, token)
