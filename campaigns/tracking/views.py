"""``GET /t/o/<token>`` (open pixel) and ``GET /t/c/<token>`` (click redirect).

Both answer without a database write: the event goes to the Redis buffer
(:mod:`campaigns.tracking.buffer`). The pixel always answers 200 with the GIF, also for a bad
token (then nothing is recorded), so a broken token never shows a broken image. A click redirects
(302) only to the stored URL of the token's link, only if that link belongs to the organisation the
token names, its stored hash still matches its URL, and the URL is a safe http(s) URL; anything
else gets a neutral 404 page. ``HEAD`` requests answer the same but record nothing.

:class:`campaigns.tracking.middleware.TrackingMiddleware` serves these paths before the rest of
the middleware (faster, and on branded tracking hosts); the URL patterns here serve them when the
middleware is not installed.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import path
from django.utils import translation

from campaigns.models import TrackedLink, url_hash
from campaigns.tracking import buffer, machine, tokens
from campaigns.tracking.links import is_safe_url

# A transparent 1x1 GIF (GIF89a, 43 bytes).
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = "no-store, no-cache, must-revalidate, max-age=0, private"
LINK_CACHE_SECONDS = 60.0
LINK_CACHE_MAX = 100_000

_links: dict[int, tuple[int, str, str, float]] = {}


def client_ip(request: HttpRequest) -> str:
    """The client's address: ``REMOTE_ADDR``, or with ``TRACKING_PROXY_COUNT`` = n trusted proxies
    in front, the n-th address from the right of ``X-Forwarded-For``."""
    proxies = int(getattr(settings, "TRACKING_PROXY_COUNT", 0))
    if proxies > 0:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(request.META.get("REMOTE_ADDR", ""))


def _record(request: HttpRequest, kind: str, token: tokens.Token) -> None:
    if request.method != "GET":
        return
    agent = str(request.META.get("HTTP_USER_AGENT", ""))
    reason = machine.machine_reason(agent, client_ip(request))
    buffer.push(buffer.encode(kind, token.message_id, token.link_id, token.organisation_id, time.time(), agent, reason))


def _no_store(response: HttpResponse) -> HttpResponse:
    # Set here because these responses skip CommonMiddleware; without it HTTP/1.1 keep-alive
    # servers fall back to chunked encoding.
    response["Content-Length"] = str(len(response.content))
    response["Cache-Control"] = NO_STORE
    response["Pragma"] = "no-cache"
    response["Expires"] = "0"
    response["X-Content-Type-Options"] = "nosniff"
    response["Referrer-Policy"] = "no-referrer"
    return response


def open_pixel(request: HttpRequest, token: str) -> HttpResponse:
    """The 1x1 GIF; records an open when the token is a valid open token."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    parsed = tokens.read(token)
    if parsed is not None and parsed.kind == tokens.OPEN:
        _record(request, buffer.OPEN, parsed)
    return _no_store(HttpResponse(PIXEL, content_type="image/gif"))


def _link(link_id: int) -> tuple[int, str, str] | None:
    """(organisation id, url, url hash) of a tracked link, cached for a minute per process."""
    now = time.monotonic()
    cached = _links.get(link_id)
    if cached is not None and now - cached[3] < LINK_CACHE_SECONDS:
        return cached[0], cached[1], cached[2]
    row = TrackedLink.objects.filter(pk=link_id).values_list("organisation_id", "url", "url_hash").first()
    if row is None:
        return None
    if len(_links) >= LINK_CACHE_MAX:
        _links.clear()
    _links[link_id] = (row[0], row[1], row[2], now)
    return row


def destination(token: str) -> tuple[tokens.Token, str] | None:
    """The verified token and the URL a click on it may go to, or ``None``."""
    parsed = tokens.read(token)
    if parsed is None or parsed.kind != tokens.CLICK or parsed.link_id is None:
        return None
    link = _link(parsed.link_id)
    if link is None:
        return None
    organisation_id, url, digest = link
    if organisation_id != parsed.organisation_id or not hmac.compare_digest(url_hash(url), digest):
        return None
    if not is_safe_url(url):
        return None
    return parsed, url


def not_found(request: HttpRequest) -> HttpResponse:
    """The neutral page of a link that is not valid (no branding, nothing about why)."""
    language = translation.get_language_from_request(request)
    with translation.override(language):
        body = render_to_string("campaigns/tracking/not_found.html", {"language": language})
    response = HttpResponse(body, status=404, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'"
    response["X-Frame-Options"] = "DENY"
    return _no_store(response)


def click(request: HttpRequest, token: str) -> HttpResponse:
    """Redirect to the link's stored URL and record the click; 404 for anything else."""
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    found = destination(token)
    if found is None:
        return not_found(request)
    parsed, url = found
    _record(request, buffer.CLICK, parsed)
    return _no_store(HttpResponseRedirect(url))


def clear_cache() -> None:
    _links.clear()


urlpatterns: list[Any] = [
    path("t/o/<str:token>", open_pixel, name="tracking_open"),
    path("t/c/<str:token>", click, name="tracking_click"),
]
