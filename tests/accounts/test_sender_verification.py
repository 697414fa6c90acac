"""Sender-address verification: the e-mailed link, its 24 hours, single use, binding and rate limit.

Time is frozen at a fixed instant (time-machine) so "23h59" and "24h01" are exact.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import signing
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.test import Client as HttpClient
from django.urls import reverse
from pytest_django import DjangoCaptureOnCommitCallbacks

from accounts import services
from accounts.models import SenderAddress, SendingAccount, User
from tests.conftest import Tenant
from tests.factories import SenderAddressFactory, VerifiedSenderFactory

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ADDRESS = "hello@alpha.example"

Login = Callable[[User], HttpClient]


@pytest.fixture
def traveller() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def add_sender(
    tenant: Tenant,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> Callable[..., SenderAddress]:
    """Add an address the way the portal does, sending its e-mail (after commit)."""

    def _add(email: str = ADDRESS, account: SendingAccount | None = None) -> SenderAddress:
        with django_capture_on_commit_callbacks(execute=True):
            return services.add_sender_address(account or tenant.account_a, email, "Alpha Bakery", tenant.owner)

    return _add


@pytest.fixture
def pending(add_sender: Callable[..., SenderAddress]) -> SenderAddress:
    return add_sender()


def link_path(message: EmailMessage) -> str:
    """The /verify/<token> path of the link in the e-mail's text part."""
    match = re.search(r"https?://[^/\s]+(/verify/[\w:-]+)", message.body)
    assert match, message.body
    return match.group(1)


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def resend_path(path: str) -> str:
    return reverse("verify_sender_resend", args=[token_of(path)])


def refreshed(sender: SenderAddress) -> SenderAddress:
    sender.refresh_from_db()
    return sender


def request_new_link(sender: SenderAddress, capture: DjangoCaptureOnCommitCallbacks) -> None:
    with capture(execute=True):
        services.send_sender_verification(sender)


# --- the e-mail ---------------------------------------------------------------------------


def test_the_email_goes_to_the_sender_address(pending: SenderAddress, mailoutbox: list[EmailMessage]) -> None:
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == [ADDRESS]


def test_the_email_has_the_link_in_its_text_and_html_parts(
    pending: SenderAddress, mailoutbox: list[EmailMessage]
) -> None:
    message = mailoutbox[0]
    assert isinstance(message, EmailMultiAlternatives)
    path = link_path(message)
    html_parts = [content for content, mimetype in message.alternatives if mimetype == "text/html"]

    assert path in message.body
    assert len(html_parts) == 1
    assert f'href="http://127.0.0.1:8000{path}"' in str(html_parts[0])


def test_the_subject_names_the_address(pending: SenderAddress, mailoutbox: list[EmailMessage]) -> None:
    assert ADDRESS in mailoutbox[0].subject


def test_the_subject_and_text_part_are_not_html_escaped(
    add_sender: Callable[..., SenderAddress], mailoutbox: list[EmailMessage]
) -> None:
    add_sender("o'brien@alpha.example")

    assert "o'brien@alpha.example" in mailoutbox[0].subject
    assert "o'brien@alpha.example" in mailoutbox[0].body


def test_the_email_shows_an_idn_domain_readable_and_goes_to_its_punycode(
    add_sender: Callable[..., SenderAddress], mailoutbox: list[EmailMessage]
) -> None:
    add_sender("info@müller.example")

    assert mailoutbox[0].to == ["info@xn--mller-kva.example"]
    assert "info@müller.example" in mailoutbox[0].subject


# --- opening the link: GET shows, only POST verifies --------------------------------------


def test_opening_the_link_shows_a_confirm_button(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient
) -> None:
    response = client.get(link_path(mailoutbox[0]))

    assert response.status_code == 200
    content = response.content.decode()
    assert 'data-testid="verify-valid"' in content
    assert '<form method="post">' in content
    assert "Yes, confirm this address" in content
    assert ADDRESS in content


def test_opening_the_link_repeatedly_verifies_nothing(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient
) -> None:
    path = link_path(mailoutbox[0])
    nonce = pending.verification_nonce

    for _ in range(3):
        assert client.get(path).status_code == 200
    assert client.head(path).status_code == 200

    sender = refreshed(pending)
    assert sender.verified_at is None
    assert sender.verification_nonce == nonce


def test_the_link_still_works_after_a_scanner_opened_it(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient
) -> None:
    path = link_path(mailoutbox[0])
    client.get(path)

    response = client.post(path)

    assert response.status_code == 200
    assert refreshed(pending).is_verified


def test_posting_the_link_verifies_the_address(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient
) -> None:
    response = client.post(link_path(mailoutbox[0]))

    assert response.status_code == 200
    assert 'data-testid="verify-done"' in response.content.decode()
    sender = refreshed(pending)
    assert sender.verified_at == START
    assert sender.verification_nonce == ""


# --- 24 hours -----------------------------------------------------------------------------


def test_the_link_works_after_23_hours_59(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient, traveller: time_machine.Traveller
) -> None:
    traveller.shift(timedelta(hours=23, minutes=59))

    response = client.post(link_path(mailoutbox[0]))

    assert response.status_code == 200
    assert refreshed(pending).verified_at == START + timedelta(hours=23, minutes=59)


def test_the_link_shows_the_expiry_page_after_24_hours_01(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient, traveller: time_machine.Traveller
) -> None:
    traveller.shift(timedelta(hours=24, minutes=1))

    response = client.get(link_path(mailoutbox[0]))

    assert response.status_code == 410
    content = response.content.decode()
    assert 'data-testid="verify-expired"' in content
    assert "This link has expired" in content
    assert f'action="{resend_path(link_path(mailoutbox[0]))}"' in content
    assert "Send me a new link" in content


def test_posting_an_expired_link_verifies_nothing(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient, traveller: time_machine.Traveller
) -> None:
    traveller.shift(timedelta(hours=24, minutes=1))

    response = client.post(link_path(mailoutbox[0]))

    assert response.status_code == 410
    assert 'data-testid="verify-expired"' in response.content.decode()
    assert refreshed(pending).verified_at is None


def test_the_expiry_page_sends_a_new_link_that_works(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    # given an expired link
    traveller.shift(timedelta(hours=24, minutes=1))
    old_path = link_path(mailoutbox[0])

    # when its page asks for a new one
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(resend_path(old_path))

    # then a new e-mail with a new, working link goes to the address
    assert response.status_code == 200
    assert 'data-testid="verify-resent"' in response.content.decode()
    assert len(mailoutbox) == 2
    assert mailoutbox[1].to == [ADDRESS]
    new_path = link_path(mailoutbox[1])
    assert new_path != old_path
    assert client.post(new_path).status_code == 200
    assert refreshed(pending).is_verified


# --- single use ---------------------------------------------------------------------------


def test_a_used_link_shows_already_confirmed_and_changes_nothing(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient, traveller: time_machine.Traveller
) -> None:
    path = link_path(mailoutbox[0])
    client.post(path)
    traveller.shift(timedelta(minutes=5))

    response = client.post(path)

    assert response.status_code == 410
    content = response.content.decode()
    assert 'data-testid="verify-used"' in content
    assert "Already confirmed" in content
    assert refreshed(pending).verified_at == START


def test_a_newer_link_replaces_the_older(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    # given a second link sent after the first
    traveller.shift(timedelta(minutes=2))
    request_new_link(pending, django_capture_on_commit_callbacks)

    # when the older one is posted
    response = client.post(link_path(mailoutbox[0]))

    # then it is refused as replaced, and verifies nothing
    assert response.status_code == 410
    assert "This link was already used or replaced" in response.content.decode()
    assert refreshed(pending).verified_at is None


def test_the_newest_link_verifies_after_older_ones_were_replaced(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    traveller.shift(timedelta(minutes=2))
    request_new_link(pending, django_capture_on_commit_callbacks)

    response = client.post(link_path(mailoutbox[1]))

    assert response.status_code == 200
    assert refreshed(pending).is_verified


# --- tampering and binding ----------------------------------------------------------------


def _change_one_character(token: str, part: int) -> str:
    pieces = token.split(":")
    piece = pieces[part]
    i = len(piece) // 2
    pieces[part] = piece[:i] + ("A" if piece[i] != "A" else "B") + piece[i + 1 :]
    return ":".join(pieces)


@pytest.mark.parametrize("part", [0, 1, 2], ids=["payload", "timestamp", "signature"])
def test_a_tampered_link_is_invalid(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient, part: int
) -> None:
    tampered = _change_one_character(token_of(link_path(mailoutbox[0])), part)

    response = client.post(reverse("verify_sender", args=[tampered]))

    assert response.status_code == 404
    assert "This link is not valid" in response.content.decode()
    assert refreshed(pending).verified_at is None


def test_a_token_signed_with_another_salt_is_invalid(
    pending: SenderAddress, mailoutbox: list[EmailMessage], client: HttpClient
) -> None:
    payload = signing.loads(token_of(link_path(mailoutbox[0])), salt=services.SENDER_TOKEN_SALT)
    token = signing.dumps(payload, salt=services.INVITATION_TOKEN_SALT)

    response = client.post(reverse("verify_sender", args=[token]))

    assert response.status_code == 404
    assert refreshed(pending).verified_at is None


def test_a_tampered_link_cannot_ask_for_a_new_link(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    tampered = _change_one_character(token_of(link_path(mailoutbox[0])), 2)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("verify_sender_resend", args=[tampered]))

    assert response.status_code == 404
    assert len(mailoutbox) == 1


def test_a_link_verifies_only_its_own_address(
    tenant: Tenant,
    add_sender: Callable[..., SenderAddress],
    mailoutbox: list[EmailMessage],
    client: HttpClient,
) -> None:
    first = add_sender("first@alpha.example")
    second = add_sender("second@alpha.example")

    client.post(link_path(mailoutbox[0]))

    assert refreshed(first).is_verified
    assert refreshed(second).verified_at is None


def test_another_address_payload_under_a_valid_signature_is_invalid(
    add_sender: Callable[..., SenderAddress], mailoutbox: list[EmailMessage], client: HttpClient
) -> None:
    # given the genuine payload of B's link and the signature of A's link
    first = add_sender("first@alpha.example")
    second = add_sender("second@beta.example")
    _payload, timestamp, signature = token_of(link_path(mailoutbox[0])).split(":")
    payload_b = signing.loads(token_of(link_path(mailoutbox[1])), salt=services.SENDER_TOKEN_SALT)
    forged_payload = signing.b64_encode(json.dumps(payload_b, separators=(",", ":")).encode()).decode()
    forged = f"{forged_payload}:{timestamp}:{signature}"

    # when the forged token is posted
    response = client.post(reverse("verify_sender", args=[forged]))

    # then nothing is verified
    assert response.status_code == 404
    assert refreshed(first).verified_at is None
    assert refreshed(second).verified_at is None


def test_the_link_of_a_removed_address_does_not_verify_it_once_re_added(
    add_sender: Callable[..., SenderAddress],
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
) -> None:
    old_path = link_path(mailoutbox[0])
    pending.delete()
    again = add_sender(ADDRESS)

    response = client.post(old_path)

    assert response.status_code == 404
    assert refreshed(again).verified_at is None


# --- rate limit on new links --------------------------------------------------------------


def test_a_new_link_within_60_seconds_is_refused_on_the_public_page(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    traveller.shift(timedelta(seconds=10))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(resend_path(link_path(mailoutbox[0])))

    assert response.status_code == 429
    assert "Please wait 50 seconds before asking for another." in response.content.decode()
    assert len(mailoutbox) == 1


def test_a_new_link_within_60_seconds_is_refused_in_the_portal(
    tenant: Tenant,
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    login: Login,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    client = login(tenant.owner)
    traveller.shift(timedelta(seconds=59))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("sender_resend", args=[pending.pk]), follow=True)

    assert response.redirect_chain == [(reverse("sender_list"), 302)]
    assert "A link was sent moments ago. Please wait 1 second before" in response.content.decode()
    assert len(mailoutbox) == 1


def test_a_new_link_after_60_seconds_is_sent_from_the_portal(
    tenant: Tenant,
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    login: Login,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    client = login(tenant.owner)
    traveller.shift(timedelta(seconds=60))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("sender_resend", args=[pending.pk]), follow=True)

    assert f"A new link was sent to {ADDRESS}." in response.content.decode()
    assert len(mailoutbox) == 2
    assert link_path(mailoutbox[1]) != link_path(mailoutbox[0])


def _send_five_links_a_minute_apart(
    sender: SenderAddress, traveller: time_machine.Traveller, capture: DjangoCaptureOnCommitCallbacks
) -> None:
    """The first was sent when the address was added; four more follow, 61 s apart."""
    for _ in range(4):
        traveller.shift(timedelta(seconds=61))
        request_new_link(sender, capture)


def test_a_sixth_link_within_an_hour_is_refused(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    _send_five_links_a_minute_apart(pending, traveller, django_capture_on_commit_callbacks)
    traveller.shift(timedelta(seconds=61))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(resend_path(link_path(mailoutbox[-1])))

    assert response.status_code == 429
    assert "Too many links were sent for this address in the last hour." in response.content.decode()
    assert len(mailoutbox) == 5


def test_links_can_be_sent_again_an_hour_after_the_first(
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    _send_five_links_a_minute_apart(pending, traveller, django_capture_on_commit_callbacks)
    traveller.move_to(START + timedelta(hours=1, seconds=1))

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(resend_path(link_path(mailoutbox[-1])))

    assert response.status_code == 200
    assert len(mailoutbox) == 6


def test_a_verified_address_gets_no_new_link(
    tenant: Tenant,
    pending: SenderAddress,
    mailoutbox: list[EmailMessage],
    client: HttpClient,
    login: Login,
    traveller: time_machine.Traveller,
    django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks,
) -> None:
    client.post(link_path(mailoutbox[0]))
    traveller.shift(timedelta(minutes=5))
    portal = login(tenant.owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = portal.post(reverse("sender_resend", args=[pending.pk]), follow=True)

    assert f"{ADDRESS} is already verified." in response.content.decode()
    assert len(mailoutbox) == 1


def test_an_outsider_cannot_ask_for_a_new_link(
    tenant: Tenant, outsider: User, login: Login, mailoutbox: list[EmailMessage]
) -> None:
    sender = SenderAddressFactory(sending_account=tenant.account_a)

    response = login(outsider).post(reverse("sender_resend", args=[sender.pk]))

    assert response.status_code == 404
    assert mailoutbox == []


def test_a_client_user_cannot_ask_for_a_new_link_for_another_client(
    tenant: Tenant, login: Login, mailoutbox: list[EmailMessage]
) -> None:
    response = login(tenant.client_user).post(reverse("sender_resend", args=[tenant.sender_b.pk]))

    assert response.status_code == 404
    assert mailoutbox == []


# --- the gate every send passes -----------------------------------------------------------


def test_an_unverified_address_cannot_send(tenant: Tenant) -> None:
    with pytest.raises(services.UnverifiedSender, match="is not verified yet"):
        services.assert_sender_can_send(tenant.sender_a)


def test_a_verified_address_can_send(tenant: Tenant) -> None:
    sender = VerifiedSenderFactory(sending_account=tenant.account_a)

    services.assert_sender_can_send(sender)


def test_a_verified_address_of_a_suspended_account_cannot_send(tenant: Tenant) -> None:
    tenant.account_a.standing = SendingAccount.Standing.SUSPENDED
    tenant.account_a.save()
    sender = VerifiedSenderFactory(sending_account=tenant.account_a)

    with pytest.raises(services.ServiceError, match="is suspended"):
        services.assert_sender_can_send(sender)


def test_the_rate_limited_public_page_says_when_to_retry(tenant, client, django_capture_on_commit_callbacks) -> None:
    from accounts import services as account_services

    sender = tenant.sender_a
    with django_capture_on_commit_callbacks(execute=True):
        account_services.send_sender_verification(sender)
    sender.refresh_from_db()
    token = account_services.make_sender_token(sender)

    response = client.post(f"/verify/{token}/resend")

    assert response.status_code == 429
    assert 0 < int(response["Retry-After"]) <= 60
