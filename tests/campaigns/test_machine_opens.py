"""Machine opens and clicks are stored but flagged: privacy proxies, link scanners and bots (by user
agent and network), opens within two seconds of sending, and bursts of clicks on many links."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client as HttpClient
from django.test import override_settings

from campaigns.models import MessageEvent, TrackedLink, url_hash
from campaigns.tracking import buffer, machine, tokens
from tests.campaigns.fixtures_sending import Setup, setup_fixture  # noqa: F401 - fixture "setup"
from tests.campaigns.fixtures_tracking import _fresh_tracking_caches, make_message  # noqa: F401 - autouse

pytestmark = pytest.mark.django_db

READER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        ("Mozilla/5.0", machine.APPLE_MPP),
        (
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
            machine.GOOGLE_PROXY,
        ),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", machine.YAHOO_PROXY),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", machine.SCANNER),
        ("Mimecast URL Protect", machine.SCANNER),
        ("Microsoft Office Existence Discovery", machine.SCANNER),
        ("python-requests/2.31", machine.BOT),
        ("curl/8.4.0", machine.BOT),
        ("Mozilla/5.0 (X11) HeadlessChrome/120", machine.BOT),
        ("facebookexternalhit/1.1", machine.BOT),
        ("", machine.NO_AGENT),
        (READER, ""),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Thunderbird/115", ""),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", ""),
    ],
)
def test_user_agents(agent: str, reason: str) -> None:
    assert machine.agent_reason(agent) == reason


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("17.58.0.1", machine.APPLE_MPP),
        ("66.249.84.12", machine.GOOGLE_PROXY),
        ("40.107.22.5", machine.SCANNER),
        ("52.101.0.9", machine.SCANNER),
        ("203.0.113.7", ""),
        ("2001:db8::1", ""),
        ("not an address", ""),
        ("", ""),
    ],
)
def test_networks(ip: str, reason: str) -> None:
    assert machine.address_reason(ip) == reason


@override_settings(TRACKING_MACHINE_NETWORKS=["198.51.100.0/24"])
def test_more_networks_can_be_configured() -> None:
    machine._networks.cache_clear()
    try:
        assert machine.address_reason("198.51.100.9") == machine.SCANNER
    finally:
        machine._networks.cache_clear()


def test_timing_and_bursts() -> None:
    sent = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    assert machine.too_soon(sent + timedelta(seconds=1.5), sent)
    assert not machine.too_soon(sent + timedelta(seconds=2), sent)
    assert not machine.too_soon(sent + timedelta(seconds=1), None)

    t = sent + timedelta(minutes=5)
    scanner = [(0, 1, t), (1, 2, t + timedelta(milliseconds=300)), (2, 3, t + timedelta(milliseconds=900))]
    person = [(0, 1, t), (1, 2, t + timedelta(seconds=4)), (2, 3, t + timedelta(seconds=9))]
    double_click = [(0, 1, t), (1, 1, t + timedelta(milliseconds=200)), (2, 2, t + timedelta(milliseconds=400))]
    assert machine.bursts(scanner) == {0, 1, 2}
    assert machine.bursts(person) == set()
    assert machine.bursts(double_click) == set()


# --- through the endpoints ------------------------------------------------------------------------


def stored(message_id: int) -> list[MessageEvent]:
    buffer.flush()
    return list(MessageEvent.objects.filter(message_id=message_id).order_by("pk"))


def test_apple_privacy_opens_are_flagged_not_dropped(setup: Setup) -> None:
    message = make_message(setup)
    pixel = f"/t/o/{tokens.open_token(message.pk)}"

    HttpClient(HTTP_USER_AGENT="Mozilla/5.0").get(pixel)
    HttpClient(HTTP_USER_AGENT=READER, REMOTE_ADDR="17.100.2.3").get(pixel)
    HttpClient(HTTP_USER_AGENT=READER, REMOTE_ADDR="203.0.113.7").get(pixel)

    flags = [(e.machine, e.data.get("machine")) for e in stored(message.pk)]
    assert flags == [(True, "apple_mpp"), (True, "apple_mpp"), (False, None)]


@override_settings(TRACKING_PROXY_COUNT=1)
def test_behind_a_proxy_the_forwarded_address_counts(setup: Setup) -> None:
    message = make_message(setup)

    HttpClient(HTTP_USER_AGENT=READER, HTTP_X_FORWARDED_FOR="203.0.113.7, 17.1.1.1", REMOTE_ADDR="10.0.0.2").get(
        f"/t/o/{tokens.open_token(message.pk)}"
    )

    assert stored(message.pk)[0].data["machine"] == "apple_mpp"


def test_an_open_within_two_seconds_of_sending_is_a_machine(setup: Setup) -> None:
    from django.utils import timezone

    fresh = make_message(setup, sent_at=timezone.now())
    older = make_message(setup, sent_at=timezone.now() - timedelta(minutes=3))

    for message in (fresh, older):
        HttpClient(HTTP_USER_AGENT=READER).get(f"/t/o/{tokens.open_token(message.pk)}")

    assert stored(fresh.pk)[0].data["machine"] == "prefetch"
    assert stored(older.pk)[0].machine is False


def test_clicks_on_many_links_in_one_second_are_a_scanner(setup: Setup) -> None:
    scanned, read = make_message(setup), make_message(setup)
    links = [
        TrackedLink.objects.create(organisation=setup.organisation, url=url, url_hash=url_hash(url))
        for url in ("https://a.example/", "https://b.example/", "https://c.example/")
    ]
    now = time.time()
    for index, tracked in enumerate(links):
        buffer.push(
            buffer.encode(buffer.CLICK, scanned.pk, tracked.pk, setup.organisation.pk, now + index * 0.2, READER, "")
        )
    for index, tracked in enumerate(links[:2]):
        buffer.push(
            buffer.encode(buffer.CLICK, read.pk, tracked.pk, setup.organisation.pk, now + index * 0.2, READER, "")
        )

    assert [(e.machine, e.data.get("machine")) for e in stored(scanned.pk)] == [(True, "burst")] * 3
    assert [e.machine for e in stored(read.pk)] == [False, False]
