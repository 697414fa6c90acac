"""API keys: shown once, stored hashed, revocable; and the key-authenticated GET /api/v1/account."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.http import HttpResponse
from django.test import Client as HttpClient
from django.urls import reverse
from pytest_django import DjangoAssertNumQueries

from accounts import services
from accounts.models import ApiKey, SendingAccount, User
from tests.conftest import Tenant

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RAW_KEY = re.compile(r"xes_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")

Login = Callable[[User], HttpClient]


@pytest.fixture
def traveller() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def call_api(client: HttpClient, authorization: str | None) -> HttpResponse:
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.get(reverse("api_account"), headers=headers)


def create_in_portal(client: HttpClient, account: SendingAccount, name: str = "uProduce production") -> HttpResponse:
    return client.post(reverse("api_key_create"), {"sending_account": account.pk, "name": name})


def raw_key_in(response: HttpResponse) -> str:
    found = RAW_KEY.findall(response.content.decode())
    assert len(set(found)) == 1, found
    return str(found[0])


# --- creating a key in the portal ---------------------------------------------------------


def test_creating_a_key_shows_the_raw_key(tenant: Tenant, login: Login) -> None:
    response = create_in_portal(login(tenant.owner), tenant.account_a)

    assert response.status_code == 200
    raw = raw_key_in(response)
    key = ApiKey.objects.get()
    assert raw.startswith(f"xes_{key.prefix}_")
    assert key.sending_account == tenant.account_a
    assert key.created_by == tenant.owner


def test_the_key_is_stored_only_as_its_sha256_hash_and_prefix(tenant: Tenant, login: Login) -> None:
    raw = raw_key_in(create_in_portal(login(tenant.owner), tenant.account_a))
    secret = raw.split("_", 2)[2]

    key = ApiKey.objects.get()

    assert key.hashed_key == hashlib.sha256(raw.encode()).hexdigest()
    stored = [str(getattr(key, field.attname)) for field in ApiKey._meta.concrete_fields]
    assert not any(secret in value for value in stored)


def test_the_key_list_afterwards_shows_the_prefix_but_not_the_key(tenant: Tenant, login: Login) -> None:
    client = login(tenant.owner)
    raw = raw_key_in(create_in_portal(client, tenant.account_a))
    key = ApiKey.objects.get()

    content = client.get(reverse("api_key_list")).content.decode()

    assert f"xes_{key.prefix}_…" in content
    assert raw not in content
    assert RAW_KEY.search(content) is None


def test_the_sending_account_page_does_not_show_the_key(tenant: Tenant, login: Login) -> None:
    client = login(tenant.owner)
    raw = raw_key_in(create_in_portal(client, tenant.account_a))

    content = client.get(reverse("account_detail", args=[tenant.account_a.pk])).content.decode()

    assert raw not in content


def test_each_key_is_different(tenant: Tenant, login: Login) -> None:
    client = login(tenant.owner)

    first = raw_key_in(create_in_portal(client, tenant.account_a, "one"))
    second = raw_key_in(create_in_portal(client, tenant.account_a, "two"))

    assert first != second
    assert ApiKey.objects.values("prefix").distinct().count() == 2


def test_a_member_may_not_create_keys(tenant: Tenant, login: Login) -> None:
    response = create_in_portal(login(tenant.member), tenant.account_a)

    assert response.status_code == 403
    assert not ApiKey.objects.exists()


def test_an_outsider_cannot_create_a_key_for_the_tenants_account(tenant: Tenant, outsider: User, login: Login) -> None:
    response = create_in_portal(login(outsider), tenant.account_a)

    assert response.status_code == 400
    assert not ApiKey.objects.exists()


def test_an_outsider_cannot_revoke_the_tenants_key(tenant: Tenant, outsider: User, login: Login) -> None:
    key, _raw = services.create_api_key(tenant.account_a, "server", tenant.owner)

    response = login(outsider).post(reverse("api_key_revoke", args=[key.pk]))

    assert response.status_code == 404
    key.refresh_from_db()
    assert key.is_active


def test_a_member_may_not_revoke_a_key(tenant: Tenant, login: Login) -> None:
    key, _raw = services.create_api_key(tenant.account_a, "server", tenant.owner)

    response = login(tenant.member).post(reverse("api_key_revoke", args=[key.pk]))

    assert response.status_code == 403
    key.refresh_from_db()
    assert key.is_active


def test_a_client_user_sees_only_the_keys_of_their_client(tenant: Tenant, login: Login) -> None:
    services.create_api_key(tenant.account_a, "alpha server", tenant.owner)
    services.create_api_key(tenant.account_b, "beta server", tenant.owner)

    content = login(tenant.client_user).get(reverse("api_key_list")).content.decode()

    assert "alpha server" in content
    assert "beta server" not in content


# --- GET /api/v1/account ------------------------------------------------------------------


def test_the_api_answers_with_the_keys_sending_account(tenant: Tenant, client: HttpClient) -> None:
    key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)

    response = call_api(client, f"Bearer {raw}")

    assert response.status_code == 200
    assert response.json() == {
        "sending_account": {"id": tenant.account_a.pk, "name": "Alpha account", "standing": "good"},
        "organisation": {"id": tenant.organisation.pk, "name": "Acme Agency"},
        "client": {"id": tenant.client_a.pk, "name": "Alpha Bakery"},
        "key": {"prefix": key.prefix, "name": "server"},
    }


def test_the_api_answers_without_a_client_for_the_organisations_own_account(tenant: Tenant, client: HttpClient) -> None:
    _key, raw = services.create_api_key(tenant.account_org, "server", tenant.owner)

    response = call_api(client, f"Bearer {raw}")

    assert response.json()["client"] is None
    assert response.json()["sending_account"]["id"] == tenant.account_org.pk


def test_a_key_created_in_the_portal_works_with_the_api(tenant: Tenant, login: Login) -> None:
    client = login(tenant.owner)
    raw = raw_key_in(create_in_portal(client, tenant.account_b))
    client.logout()

    response = call_api(client, f"Bearer {raw}")

    assert response.status_code == 200
    assert response.json()["sending_account"]["id"] == tenant.account_b.pk


def test_the_scheme_is_case_insensitive(tenant: Tenant, client: HttpClient) -> None:
    _key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)

    response = call_api(client, f"bearer {raw}")

    assert response.status_code == 200


def test_a_key_only_ever_shows_its_own_account(tenant: Tenant, outsider: User, client: HttpClient) -> None:
    other_account = SendingAccount.objects.get(organisation__memberships__user=outsider)
    _key, tenant_raw = services.create_api_key(tenant.account_a, "ours", tenant.owner)
    _other, outsider_raw = services.create_api_key(other_account, "theirs", outsider)

    ours = call_api(client, f"Bearer {tenant_raw}")
    theirs = call_api(client, f"Bearer {outsider_raw}")

    assert ours.json()["sending_account"]["id"] == tenant.account_a.pk
    assert theirs.json()["sending_account"]["id"] == other_account.pk
    assert theirs.json()["organisation"]["id"] == other_account.organisation_id
    assert "Acme" not in theirs.content.decode()
    assert "Alpha" not in theirs.content.decode()


def test_using_a_key_records_when_it_was_last_used(
    tenant: Tenant, client: HttpClient, traveller: time_machine.Traveller
) -> None:
    key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)
    traveller.shift(timedelta(hours=2))

    call_api(client, f"Bearer {raw}")

    key.refresh_from_db()
    assert key.last_used_at == START + timedelta(hours=2)


def test_last_used_is_written_at_most_once_a_minute(
    tenant: Tenant, client: HttpClient, traveller: time_machine.Traveller
) -> None:
    key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)
    call_api(client, f"Bearer {raw}")
    traveller.shift(timedelta(seconds=30))

    call_api(client, f"Bearer {raw}")

    key.refresh_from_db()
    assert key.last_used_at == START


def test_last_used_moves_on_after_a_minute(
    tenant: Tenant, client: HttpClient, traveller: time_machine.Traveller
) -> None:
    key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)
    call_api(client, f"Bearer {raw}")
    traveller.shift(timedelta(seconds=61))

    call_api(client, f"Bearer {raw}")

    key.refresh_from_db()
    assert key.last_used_at == START + timedelta(seconds=61)


def test_the_last_used_time_is_shown_in_the_key_list(
    tenant: Tenant, client: HttpClient, login: Login, traveller: time_machine.Traveller
) -> None:
    _key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)
    call_api(client, f"Bearer {raw}")
    traveller.shift(timedelta(hours=3))

    content = login(tenant.owner).get(reverse("api_key_list")).content.decode()

    assert "3\xa0hours ago" in content


def test_an_authenticated_request_takes_two_queries(
    tenant: Tenant, client: HttpClient, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    _key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)

    # the key with its account, organisation and client; and the last-used time
    with django_assert_num_queries(2):
        call_api(client, f"Bearer {raw}")


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, "Send your API key as 'Authorization: Bearer <key>'."),
        ("", "Send your API key as 'Authorization: Bearer <key>'."),
        ("Bearer", "Send your API key as 'Authorization: Bearer <key>'."),
        ("Bearer    ", "Send your API key as 'Authorization: Bearer <key>'."),
        ("Basic dXNlcjpwYXNz", "Send your API key as 'Authorization: Bearer <key>'."),
        ("Token {raw}", "Send your API key as 'Authorization: Bearer <key>'."),
        ("{raw}", "Send your API key as 'Authorization: Bearer <key>'."),
        ("Bearer xes_00000000_unknown", "The API key is unknown or was revoked."),
        ("Bearer {raw}x", "The API key is unknown or was revoked."),
    ],
    ids=[
        "missing",
        "empty",
        "no-key",
        "blank-key",
        "basic",
        "token-scheme",
        "no-scheme",
        "unknown",
        "altered",
    ],
)
def test_a_request_without_a_valid_key_is_refused(
    tenant: Tenant, client: HttpClient, authorization: str | None, detail: str
) -> None:
    key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)
    header = None if authorization is None else authorization.format(raw=raw)

    response = call_api(client, header)

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": detail}
    assert response["WWW-Authenticate"] == 'Bearer realm="xes"'
    key.refresh_from_db()
    assert key.last_used_at is None


def test_a_key_revoked_in_the_portal_is_refused(tenant: Tenant, client: HttpClient, login: Login) -> None:
    key, raw = services.create_api_key(tenant.account_a, "server", tenant.owner)
    assert call_api(client, f"Bearer {raw}").status_code == 200

    login(tenant.owner).post(reverse("api_key_revoke", args=[key.pk]))
    response = call_api(client, f"Bearer {raw}")

    assert response.status_code == 401
    assert response.json() == {"detail": "The API key is unknown or was revoked."}
    assert response["WWW-Authenticate"] == 'Bearer realm="xes"'


def test_revoking_records_when(tenant: Tenant, login: Login, traveller: time_machine.Traveller) -> None:
    key, _raw = services.create_api_key(tenant.account_a, "server", tenant.owner)

    login(tenant.owner).post(reverse("api_key_revoke", args=[key.pk]))

    key.refresh_from_db()
    assert key.revoked_at == START


def test_revoking_one_key_leaves_the_others_working(tenant: Tenant, client: HttpClient) -> None:
    first, _first_raw = services.create_api_key(tenant.account_a, "one", tenant.owner)
    _second, second_raw = services.create_api_key(tenant.account_a, "two", tenant.owner)

    services.revoke_api_key(first)

    assert call_api(client, f"Bearer {second_raw}").status_code == 200


def test_a_session_login_is_not_an_api_key(tenant: Tenant, login: Login) -> None:
    response = call_api(login(tenant.owner), None)

    assert response.status_code == 401


def test_the_page_showing_the_raw_key_is_never_cached(tenant, login) -> None:
    response = login(tenant.owner).post(
        "/api-keys/new/", {"sending_account": tenant.account_org.pk, "name": "uProduce"}
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
