"""Adding sender addresses in the portal: normalisation, header-safe display names, clear refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db.models import QuerySet
from django.http import HttpResponse
from django.test import Client as HttpClient
from django.urls import reverse
from pytest_django import DjangoCaptureOnCommitCallbacks

from accounts import services
from accounts.models import SenderAddress, SendingAccount, User
from tests.conftest import Tenant
from tests.factories import SenderAddressFactory

Login = Callable[[User], HttpClient]


@pytest.fixture
def owner_client(tenant: Tenant, login: Login) -> HttpClient:
    return login(tenant.owner)


@pytest.fixture
def add(
    owner_client: HttpClient, tenant: Tenant, django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> Callable[..., HttpResponse]:
    """Post the portal's "Add sender address" form for the organisation's own account."""

    def _add(email: str, display_name: str = "", account: SendingAccount | None = None) -> HttpResponse:
        data = {"sending_account": (account or tenant.account_org).pk, "email": email, "display_name": display_name}
        with django_capture_on_commit_callbacks(execute=True):
            return owner_client.post(reverse("sender_create"), data)

    return _add


def senders_of(account: SendingAccount) -> list[str]:
    return list(SenderAddress.objects.filter(sending_account=account).values_list("email", flat=True))


# --- normalisation ------------------------------------------------------------------------


def test_an_idn_domain_is_stored_as_punycode(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    response = add("info@müller.example")

    assert response.status_code == 302
    assert senders_of(tenant.account_org) == ["info@xn--mller-kva.example"]


def test_an_idn_address_is_shown_readable_on_the_senders_page(
    add: Callable[..., HttpResponse], owner_client: HttpClient
) -> None:
    add("info@müller.example")

    response = owner_client.get(reverse("sender_list"))

    assert "info@müller.example" in response.content.decode()


def test_the_confirmation_message_shows_an_idn_address_readable(
    add: Callable[..., HttpResponse], owner_client: HttpClient
) -> None:
    add("info@müller.example")

    response = owner_client.get(reverse("sender_list"))

    assert "We sent a confirmation link to info@müller.example." in response.content.decode()


def test_the_domain_is_lower_cased_and_the_local_part_kept(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    add("News.Desk@Alpha.EXAMPLE")

    assert senders_of(tenant.account_org) == ["News.Desk@alpha.example"]


def test_surrounding_spaces_and_a_trailing_dot_of_the_domain_are_dropped(
    add: Callable[..., HttpResponse], tenant: Tenant
) -> None:
    add("  news@alpha.example.  ")

    assert senders_of(tenant.account_org) == ["news@alpha.example"]


def test_adding_an_address_sends_its_confirmation_link(
    add: Callable[..., HttpResponse], mailoutbox: list[EmailMessage]
) -> None:
    add("info@müller.example")

    assert [m.to for m in mailoutbox] == [["info@xn--mller-kva.example"]]


# --- display names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "display_name",
    [
        "Acme\r\nBcc: victim@example.com",
        "Acme\nNews",
        "Acme\rNews",
        "Acme\u2028News",
        "Acme\u2029News",
        "Acme\u0085News",
        "Acme\u202eswen",
        "Acme\tNews",
    ],
    ids=["crlf", "lf", "cr", "line-separator", "paragraph-separator", "nel", "rtl-override", "tab"],
)
def test_a_display_name_with_a_header_breaking_character_is_refused(
    add: Callable[..., HttpResponse], tenant: Tenant, mailoutbox: list[EmailMessage], display_name: str
) -> None:
    response = add("news@alpha.example", display_name)

    assert response.status_code == 400
    assert "The display name contains a line break or another invisible control character" in (
        response.content.decode()
    )
    assert senders_of(tenant.account_org) == []
    assert mailoutbox == []


def test_a_display_name_with_a_null_character_is_refused(
    add: Callable[..., HttpResponse], tenant: Tenant, mailoutbox: list[EmailMessage]
) -> None:
    response = add("news@alpha.example", "Acme\x00News")

    assert response.status_code == 400
    assert "Null characters are not allowed." in response.content.decode()
    assert senders_of(tenant.account_org) == []
    assert mailoutbox == []


@pytest.mark.parametrize("display_name", ["News\r\n", "News\n", "\u2028News"])
def test_the_service_refuses_a_line_break_at_either_end_of_a_display_name(display_name: str) -> None:
    with pytest.raises(ValidationError, match="line break"):
        services.clean_display_name(display_name)


def test_a_display_name_of_101_characters_is_refused(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    response = add("news@alpha.example", "x" * 101)

    assert response.status_code == 400
    assert "The display name is too long (at most 100 characters)." in response.content.decode()
    assert senders_of(tenant.account_org) == []


def test_a_display_name_of_100_characters_is_accepted(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    response = add("news@alpha.example", "é" * 100)

    assert response.status_code == 302
    assert SenderAddress.objects.get(sending_account=tenant.account_org).display_name == "é" * 100


def test_a_display_name_with_quotes_and_umlauts_is_kept(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    add("news@alpha.example", '  Müller & Söhne "Backstube", Köln  ')

    assert SenderAddress.objects.get(sending_account=tenant.account_org).display_name == (
        'Müller & Söhne "Backstube", Köln'
    )


# --- duplicates ---------------------------------------------------------------------------


def test_a_duplicate_address_on_the_same_account_is_refused(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    add("news@alpha.example")

    response = add("NEWS@Alpha.example")

    assert response.status_code == 400
    assert "NEWS@alpha.example is already a sender address of this account." in response.content.decode()
    assert senders_of(tenant.account_org) == ["news@alpha.example"]


def test_a_duplicate_idn_address_is_named_readable(add: Callable[..., HttpResponse]) -> None:
    add("info@müller.example")

    response = add("info@xn--mller-kva.example")

    assert response.status_code == 400
    assert "info@müller.example is already a sender address of this account." in response.content.decode()


def test_the_same_address_on_another_account_is_accepted(add: Callable[..., HttpResponse], tenant: Tenant) -> None:
    response = add(tenant.sender_a.email)

    assert response.status_code == 302
    assert senders_of(tenant.account_org) == [tenant.sender_a.email]


def test_a_duplicate_that_races_past_the_check_is_refused_cleanly(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a second submission whose duplicate check ran before the first one committed
    SenderAddressFactory(sending_account=tenant.account_org, email="news@alpha.example")
    monkeypatch.setattr(QuerySet, "exists", lambda self: False)

    # then the unique constraint's refusal reads like the check's
    with pytest.raises(ValidationError, match="is already a sender address of this account"):
        services.add_sender_address(tenant.account_org, "news@alpha.example", "", tenant.owner)


# --- invalid addresses --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("news.alpha.example", "Enter a valid e-mail address, like name@example.com."),
        ("@alpha.example", "Enter a valid e-mail address, like name@example.com."),
        ("news@", "Enter a valid e-mail address, like name@example.com."),
        ("news @alpha.example", "Enter a valid e-mail address, like name@example.com."),
        ("news@alpha example", "The domain “alpha example” is not a valid domain name."),
        ("news@@alpha.example", "Enter a valid e-mail address, like name@example.com."),
        ("news@-alpha-.example", "The domain “-alpha-.example” is not a valid domain name."),
        ("news@alpha_x.example", "The domain “alpha_x.example” is not a valid domain name."),
        ("news@alpha.example\r\nBcc: x@y.example", "Enter a valid e-mail address, like name@example.com."),
        ("news@alpha..example", "The domain “alpha..example” is not a valid domain name."),
        ("news@" + "a" * 64 + ".example", "is not a valid domain name."),
    ],
    ids=[
        "no-at",
        "no-local-part",
        "no-domain",
        "space-in-local-part",
        "space-in-domain",
        "two-ats",
        "hyphen-label",
        "underscore",
        "header-injection",
        "empty-label",
        "label-too-long",
    ],
)
def test_an_invalid_address_is_refused_with_a_clear_error(
    add: Callable[..., HttpResponse], tenant: Tenant, mailoutbox: list[EmailMessage], email: str, message: str
) -> None:
    response = add(email)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert SenderAddress.objects.count() == 2  # the tenant's own two, nothing new
    assert mailoutbox == []


def test_an_address_too_long_once_its_idn_domain_is_encoded_is_refused(
    add: Callable[..., HttpResponse], tenant: Tenant
) -> None:
    # given 216 characters typed, which grow to 264 in punycode
    email = "a" * 40 + "@" + ".".join(["ü" * 20] * 8) + ".example"

    response = add(email)

    assert response.status_code == 400
    assert "The address is too long (at most 254 characters" in response.content.decode()
    assert senders_of(tenant.account_org) == []


# --- tenancy ------------------------------------------------------------------------------


def test_a_client_user_cannot_add_an_address_to_another_clients_account(tenant: Tenant, login: Login) -> None:
    response = login(tenant.client_user).post(
        reverse("sender_create"), {"sending_account": tenant.account_b.pk, "email": "x@beta.example"}
    )

    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert senders_of(tenant.account_b) == [tenant.sender_b.email]


def test_an_outsider_cannot_add_an_address_to_the_tenants_account(tenant: Tenant, outsider: User, login: Login) -> None:
    response = login(outsider).post(
        reverse("sender_create"), {"sending_account": tenant.account_org.pk, "email": "x@acme.example"}
    )

    assert response.status_code == 400
    assert senders_of(tenant.account_org) == []


def test_idna_2008_keeps_sharp_s_instead_of_mapping_it_to_ss() -> None:
    # IDNA 2003 (Python's codec) would turn straße into strasse: another domain, possibly someone else's.
    assert services.normalise_email("info@Straße.example") == "info@xn--strae-oqa.example"


def test_a_trailing_line_break_in_the_display_name_is_refused_not_dropped(add, tenant) -> None:
    response = add("trailing@alpha.example", "News\r\n")

    assert response.status_code == 400
    assert "line break" in response.content.decode()
    assert not SenderAddress.objects.filter(email="trailing@alpha.example").exists()


def test_one_message_for_every_too_long_display_name(add, tenant) -> None:
    for length in (101, 250):
        response = add(f"long{length}@alpha.example", "x" * length)
        assert response.status_code == 400
        assert "The display name is too long (at most 100 characters)." in response.content.decode()
