"""The open pixel and the click redirect: signed tokens, no open redirect (edited tokens, foreign
links, ``//evil``, ``\\evil``, ``javascript:``, ``data:`` answer a neutral 404), the event buffered
and stored once, branded tracking hosts."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from django.conf import settings
from django.test import Client as HttpClient
from django.test import override_settings

from campaigns.models import Message, MessageEvent, TrackedLink, url_hash
from campaigns.tracking import buffer, tokens
from deliverability.models import DnsRecord, Domain
from tests.campaigns.fixtures_sending import Setup, make_setup, setup_fixture  # noqa: F401 - fixture "setup"
from tests.campaigns.fixtures_tracking import _fresh_tracking_caches, make_message  # noqa: F401 - autouse
from tests.factories import OrganisationFactory

pytestmark = pytest.mark.django_db

MAIL_AGENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Thunderbird/115"
FAST = ["campaigns.tracking.middleware.TrackingMiddleware", *settings.MIDDLEWARE]


@pytest.fixture(params=["urls", "middleware"])
def web(request: pytest.FixtureRequest) -> Any:
    """Every behaviour holds through the URL patterns and through the middleware's fast path."""
    if request.param == "middleware":
        with override_settings(MIDDLEWARE=FAST):
            yield HttpClient(HTTP_USER_AGENT=MAIL_AGENT)
    else:
        yield HttpClient(HTTP_USER_AGENT=MAIL_AGENT)


def link(setup: Setup, url: str) -> TrackedLink:
    return TrackedLink.objects.create(organisation=setup.organisation, url=url, url_hash=url_hash(url))


def click_path(message: Message, tracked: TrackedLink, organisation_id: int | None = None) -> str:
    org = organisation_id if organisation_id is not None else tracked.organisation_id
    return f"/t/c/{tokens.click_token(message.pk, tracked.pk, org)}"


def buffered() -> int:
    return buffer.pending()


# --- tokens ---------------------------------------------------------------------------------------


def test_tokens_are_compact_and_read_back() -> None:
    opened = tokens.open_token(123_456_789)
    clicked = tokens.click_token(123_456_789, 45_678, 12)

    assert len(opened) <= 24
    assert len(clicked) <= 32
    assert tokens.read(opened) == tokens.Token(tokens.OPEN, 123_456_789)
    assert tokens.read(clicked) == tokens.Token(tokens.CLICK, 123_456_789, 45_678, 12)


def test_every_edited_character_invalidates_a_token() -> None:
    token = tokens.click_token(42, 7, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    for position in range(len(token)):
        for replacement in alphabet[:8]:
            edited = token[:position] + replacement + token[position + 1 :]
            if edited != token:
                assert tokens.read(edited) is None, edited


def test_forged_and_malformed_tokens_are_refused() -> None:
    token = tokens.open_token(42)
    payload = base64.urlsafe_b64decode(token + "==")[: -tokens.MAC_BYTES]
    other_message = bytes([tokens.OPEN, 43])

    for candidate in [
        "",
        token + "A",
        token[:-1],
        token + "=",
        " " + token,
        token.replace("-", "+"),
        base64.urlsafe_b64encode(other_message + b"\x00" * tokens.MAC_BYTES).decode().rstrip("="),
        base64.urlsafe_b64encode(payload).decode().rstrip("="),
        "é" * 10,
        "A" * 500,
    ]:
        if candidate != token:
            assert tokens.read(candidate) is None, candidate


def test_tokens_of_the_previous_secret_still_verify() -> None:
    with override_settings(SECRET_KEY="old-secret-" + "x" * 50):
        old = tokens.open_token(7)
    with override_settings(SECRET_KEY="new-secret-" + "y" * 50, SECRET_KEY_FALLBACKS=["old-secret-" + "x" * 50]):
        assert tokens.read(old) == tokens.Token(tokens.OPEN, 7)
    with override_settings(SECRET_KEY="new-secret-" + "y" * 50, SECRET_KEY_FALLBACKS=[]):
        assert tokens.read(old) is None


# --- the open pixel ----------------------------------------------------------------------------------


def test_the_pixel_records_an_open(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)

    response = web.get(f"/t/o/{tokens.open_token(message.pk)}")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/gif"
    assert response.content.startswith(b"GIF89a")
    assert "no-store" in response["Cache-Control"]
    assert not MessageEvent.objects.exists()  # buffered, not written per request
    assert buffered() == 1
    buffer.flush()
    event = MessageEvent.objects.get()
    assert (event.message_id, event.type, event.machine) == (message.pk, "open", False)
    assert event.organisation_id == setup.organisation.pk
    assert event.data == {"ua": MAIL_AGENT}


@pytest.mark.parametrize("token", ["nonsense", "AAAAAAAAAAAAAAAAAAAAAAAA", "x" * 80])
def test_a_bad_pixel_token_still_gets_the_gif_but_records_nothing(setup: Setup, web: HttpClient, token: str) -> None:
    response = web.get(f"/t/o/{token}")

    assert response.status_code == 200
    assert response.content.startswith(b"GIF89a")
    assert buffered() == 0


def test_a_click_token_is_no_open_token(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/")

    response = web.get(f"/t/o/{tokens.click_token(message.pk, tracked.pk, setup.organisation.pk)}")

    assert response.status_code == 200
    assert buffered() == 0


def test_head_requests_record_nothing(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/")

    assert web.head(f"/t/o/{tokens.open_token(message.pk)}").status_code == 200
    assert web.head(click_path(message, tracked)).status_code == 302
    assert buffered() == 0


def test_posts_are_refused(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)

    assert web.post(f"/t/o/{tokens.open_token(message.pk)}").status_code == 405
    assert buffered() == 0


# --- the click redirect --------------------------------------------------------------------------------


def test_a_click_redirects_to_the_stored_url_and_is_recorded(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/spring?utm_source=xes&x=1")

    response = web.get(click_path(message, tracked))

    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/spring?utm_source=xes&x=1"
    assert "no-store" in response["Cache-Control"]
    buffer.flush()
    event = MessageEvent.objects.get()
    assert (event.type, event.link_id, event.message_id) == ("click", tracked.pk, message.pk)


@pytest.mark.parametrize(
    "url",
    [
        "//evil.example/",
        "\\\\evil.example\\",
        "\\evil.example",
        "https:\\\\evil.example",
        "https://shop.example\\@evil.example/",
        "https://user@evil.example/",
        "javascript:alert(document.cookie)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "vbscript:msgbox(1)",
        "ftp://files.example/a",
        "https:///no-host",
        "https://shop.example/\nLocation: https://evil.example/",
        "https://shop.example/\x01",
        "https://shop.example/a b",
        "/relative/path",
        "mailto:a@example.org",
    ],
)
def test_unsafe_stored_urls_answer_a_neutral_404(setup: Setup, web: HttpClient, url: str) -> None:
    message = make_message(setup)
    tracked = link(setup, url)

    response = web.get(click_path(message, tracked))

    assert response.status_code == 404
    assert "Location" not in response
    assert b"This link is not available" in response.content
    assert buffered() == 0


def test_an_edited_token_answers_404(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/")
    token = tokens.click_token(message.pk, tracked.pk, setup.organisation.pk)
    edited = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")

    response = web.get(f"/t/c/{edited}")

    assert response.status_code == 404
    assert "Location" not in response


def test_an_open_token_is_no_click_token(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)

    assert web.get(f"/t/c/{tokens.open_token(message.pk)}").status_code == 404


def test_a_link_of_another_organisation_answers_404(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    other = OrganisationFactory()
    theirs = TrackedLink.objects.create(
        organisation=other, url="https://theirs.example/", url_hash=url_hash("https://theirs.example/")
    )

    # a token naming our message, their link and our organisation (as a leaked signing bug would)
    response = web.get(click_path(message, theirs, organisation_id=setup.organisation.pk))

    assert response.status_code == 404
    assert buffered() == 0


def test_a_click_naming_another_organisation_than_the_message_is_dropped_when_stored(
    setup: Setup, web: HttpClient
) -> None:
    """The redirect goes to the link's own URL, but the click is not stored for a message of another
    organisation."""
    other = make_setup()
    theirs = link(other, "https://theirs.example/")
    message = make_message(setup)

    response = web.get(click_path(message, theirs))

    assert response["Location"] == "https://theirs.example/"
    buffer.flush()
    assert not MessageEvent.objects.exists()


def test_an_edited_stored_url_answers_404(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/")
    TrackedLink.objects.filter(pk=tracked.pk).update(url="https://evil.example/")

    response = web.get(click_path(message, tracked))

    assert response.status_code == 404
    assert "Location" not in response


def test_a_deleted_link_answers_404(setup: Setup, web: HttpClient) -> None:
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/")
    path = click_path(message, tracked)
    tracked.delete()

    assert web.get(path).status_code == 404


def test_clicks_for_unknown_messages_redirect_but_store_nothing(setup: Setup, web: HttpClient) -> None:
    tracked = link(setup, "https://shop.example/")

    response = web.get(f"/t/c/{tokens.click_token(999_999_999, tracked.pk, setup.organisation.pk)}")

    assert response.status_code == 302
    buffer.flush()
    assert not MessageEvent.objects.exists()


def test_the_404_page_speaks_the_readers_language(setup: Setup) -> None:
    response = HttpClient(HTTP_ACCEPT_LANGUAGE="de").get("/t/c/nonsense")

    assert response.status_code == 404
    assert b'lang="de"' in response.content


# --- hosts ----------------------------------------------------------------------------------------


def verified_tracking_domain(setup: Setup, name: str = "acme.example", sub: str = "links") -> Domain:
    from django.utils import timezone

    domain = Domain.objects.create(
        sending_account=setup.account,
        name=name,
        verification_token=f"tok-{name}",
        tracking_subdomain=sub,
        verified_at=timezone.now(),
    )
    DnsRecord.objects.create(
        domain=domain,
        kind=DnsRecord.Kind.TRACKING,
        name=f"{sub}.{name}",
        rtype="CNAME",
        value="127.0.0.1",
        status=DnsRecord.Status.OK,
    )
    return domain


@override_settings(MIDDLEWARE=FAST, ALLOWED_HOSTS=["portal.example"])
def test_tracking_answers_on_verified_branded_hosts_only(setup: Setup) -> None:
    verified_tracking_domain(setup)
    message = make_message(setup)
    tracked = link(setup, "https://shop.example/")
    web = HttpClient()

    assert web.get(click_path(message, tracked), HTTP_HOST="links.acme.example").status_code == 302
    assert web.get(f"/t/o/{tokens.open_token(message.pk)}", HTTP_HOST="LINKS.acme.example:443").status_code == 200
    assert web.get(click_path(message, tracked), HTTP_HOST="portal.example").status_code == 302
    assert web.get(click_path(message, tracked), HTTP_HOST="evil.example").status_code == 400
    # the branded host serves tracking only, never the portal
    assert web.get("/accounts/login/", HTTP_HOST="links.acme.example").status_code == 400


@override_settings(MIDDLEWARE=FAST, ALLOWED_HOSTS=["portal.example"])
def test_an_unverified_tracking_record_does_not_open_the_host(setup: Setup) -> None:
    domain = verified_tracking_domain(setup)
    DnsRecord.objects.filter(domain=domain).update(status=DnsRecord.Status.MISSING)
    message = make_message(setup)

    response = HttpClient().get(f"/t/o/{tokens.open_token(message.pk)}", HTTP_HOST="links.acme.example")

    assert response.status_code == 400
