"""A WSGI wrapper that answers the open pixel and successful click redirects without Django's
request/response machinery (about a third of the cost of these requests); everything else,
including every 404 page and every request it is unsure about, goes to the Django application.

Use it as the server's application: ``gunicorn campaigns.tracking.wsgi:application`` (it wraps
``xes_portal.wsgi.application``). Behaviour is the same as :mod:`campaigns.tracking.views` behind
:class:`campaigns.tracking.middleware.TrackingMiddleware`: the same token checks, host rules,
machine flags, buffer and headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.utils.encoding import iri_to_uri

# Sets Django up (settings, apps) before the tracking modules import models.
from xes_portal.wsgi import application as django_application

# isort: split
from campaigns.tracking import buffer, machine, middleware, tokens, views

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_COMMON = [
    ("Cache-Control", views.NO_STORE),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]
_PIXEL_HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(views.PIXEL))), *_COMMON]


def _client_ip(environ: dict[str, Any]) -> str:
    proxies = int(getattr(settings, "TRACKING_PROXY_COUNT", 0))
    if proxies > 0:
        forwarded = [a.strip() for a in environ.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return str(environ.get("REMOTE_ADDR", ""))


def _host_allowed(environ: dict[str, Any]) -> bool:
    raw = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    return middleware.host_allowed(str(raw))


class TrackingApp:
    """Serves ``GET``/``HEAD`` ``/t/o/<token>`` and successful ``/t/c/<token>``; defers the rest."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if not path.startswith("/t/") or method not in ("GET", "HEAD"):
            return self.app(environ, start_response)
        match = middleware.PATH.match(path)
        if match is None or not _host_allowed(environ):
            return self.app(environ, start_response)
        kind, token = match.groups()
        try:
            if kind == "o":
                return self._open(environ, start_response, token, method)
            return self._click(environ, start_response, token, method)
        except Exception:  # noqa: BLE001 - Django answers (and reports) whatever went wrong here
            logger.exception("tracking fast path failed; answering through Django")
            return self.app(environ, start_response)

    def _record(self, environ: dict[str, Any], kind: str, parsed: tokens.Token) -> None:
        agent = str(environ.get("HTTP_USER_AGENT", ""))
        reason = machine.machine_reason(agent, _client_ip(environ))
        buffer.push(
            buffer.encode(kind, parsed.message_id, parsed.link_id, parsed.organisation_id, time.time(), agent, reason)
        )

    def _open(self, environ: dict[str, Any], start_response: StartResponse, token: str, method: str) -> Iterable[bytes]:
        parsed = tokens.read(token)
        if parsed is not None and parsed.kind == tokens.OPEN and method == "GET":
            self._record(environ, buffer.OPEN, parsed)
        start_response("200 OK", _PIXEL_HEADERS)
        return [views.PIXEL] if method == "GET" else []

    def _click(
        self, environ: dict[str, Any], start_response: StartResponse, token: str, method: str
    ) -> Iterable[bytes]:
        found = views.destination(token)
        if found is None:
            return self.app(environ, start_response)  # the neutral 404 page, rendered by Django
        parsed, url = found
        if method == "GET":
            self._record(environ, buffer.CLICK, parsed)
        start_response(
            "302 Found",
            [
                ("Location", iri_to_uri(url)),
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", "0"),
                *_COMMON,
            ],
        )
        return []


application = TrackingApp(django_application)
