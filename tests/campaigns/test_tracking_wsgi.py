"""The WSGI fast path (``campaigns.tracking.wsgi``) answers like the Django views: pixel always a
GIF, valid opens and clicks buffered, clicks only to the stored URL, and anything else (bad click
tokens, unknown hosts, other methods and paths) handed to Django."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signals
from django.db import close_old_connections
from django.test import override_settings

from campaigns.models import MessageEvent, TrackedLink, url_hash
from campaigns.tracking import buffer, tokens
from tests.campaigns.fixtures_sending import Setup, setup_fixture  # noqa: F401 - fixture "setup"
from tests.campaigns.fixtures_tracking import _fresh_tracking_caches, make_message  # noqa: F401 - autouse

pytestmark = pytest.mark.django_db

AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/115"


@pytest.fixture(autouse=True)
def _keep_the_test_connection() -> Iterator[None]:
    """As Django's test client does: the handler must not close the test's database connection."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def call(path: str, method: str = "GET", host: str = "127.0.0.1", **extra: str) -> tuple[str, dict[str, str], bytes]:
    from campaigns.tracking.wsgi import application

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "HTTP_HOST": host,
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_USER_AGENT": AGENT,
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        **extra,
    }
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


def test_the_pixel(setup: Setup) -> None:
    message = make_message(setup)

    status, headers, body = call(f"/t/o/{tokens.open_token(message.pk)}")

    assert status == "200 OK"
    assert (headers["Content-Type"], headers["Content-Length"]) == ("image/gif", str(len(body)))
    assert "no-store" in headers["Cache-Control"]
    assert body.startswith(b"GIF89a")
    buffer.flush()
    assert MessageEvent.objects.get().data == {"ua": AGENT}


def test_a_bad_pixel_token_and_head_record_nothing(setup: Setup) -> None:
    message = make_message(setup)

    assert call("/t/o/garbage")[0] == "200 OK"
    assert call(f"/t/o/{tokens.open_token(message.pk)}", method="HEAD")[2] == b""
    assert buffer.pending() == 0


def test_a_click_goes_to_the_stored_url_only(setup: Setup) -> None:
    message = make_message(setup)
    url = "https://shop.example/ä?x=1"
    tracked = TrackedLink.objects.create(organisation=setup.organisation, url=url, url_hash=url_hash(url))
    token = tokens.click_token(message.pk, tracked.pk, setup.organisation.pk)

    status, headers, _body = call(f"/t/c/{token}")

    assert (status, headers["Location"]) == ("302 Found", "https://shop.example/%C3%A4?x=1")
    buffer.flush()
    assert MessageEvent.objects.get().link_id == tracked.pk


@pytest.mark.parametrize("url", ["//evil.example/", "javascript:alert(1)", "https://a.example\\@evil.example/"])
def test_unsafe_or_edited_clicks_get_djangos_neutral_404(setup: Setup, url: str) -> None:
    message = make_message(setup)
    tracked = TrackedLink.objects.create(organisation=setup.organisation, url=url, url_hash=url_hash(url))

    status, headers, body = call(f"/t/c/{tokens.click_token(message.pk, tracked.pk, setup.organisation.pk)}")
    edited = call(f"/t/c/{tokens.click_token(message.pk, tracked.pk, setup.organisation.pk)[:-1]}A")

    assert status.startswith("404")
    assert "Location" not in headers
    assert b"This link is not available" in body
    assert edited[0].startswith("404")
    assert buffer.pending() == 0


@override_settings(ALLOWED_HOSTS=["portal.example"])
def test_unknown_hosts_are_left_to_django(setup: Setup) -> None:
    message = make_message(setup)

    status, _headers, _body = call(f"/t/o/{tokens.open_token(message.pk)}", host="evil.example")

    assert status.startswith("400")
    assert buffer.pending() == 0


def test_other_paths_and_methods_are_djangos(setup: Setup) -> None:
    message = make_message(setup)

    assert call(f"/t/o/{tokens.open_token(message.pk)}", method="POST")[0][:3] in ("403", "405")
    assert buffer.pending() == 0
    assert call("/healthz")[0].startswith("200")
