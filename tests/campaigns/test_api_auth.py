"""Key authentication of the messages API: no key, a wrong key, a revoked key, a session login."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from accounts import services as account_services
from accounts.models import User
from tests.campaigns.fixtures_api import Api, api_fixture, make_message  # noqa: F401
from tests.conftest import Tenant

MISSING = "Send your API key as 'Authorization: Bearer <key>'."
UNKNOWN = "The API key is unknown or was revoked."


def call(http: HttpClient, endpoint: str, authorization: str | None, pk: int = 1) -> Any:
    headers = {} if authorization is None else {"Authorization": authorization}
    if endpoint == "send":
        body = json.dumps({"template": "welcome", "to": "ada@example.com"})
        return http.post(reverse("api_messages"), body, content_type="application/json", headers=headers)
    return http.get(reverse("api_message_detail", args=[pk]), headers=headers)


def assert_refused(response: Any, detail: str) -> None:
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response["WWW-Authenticate"] == 'Bearer realm="xes"'
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize("endpoint", ["send", "get"])
@pytest.mark.parametrize(
    ("authorization", "detail"),
    [
        (None, MISSING),
        ("Basic dXNlcjpwYXNz", MISSING),
        ("Bearer ", MISSING),
        ("Bearer xes_00000000_unknown", UNKNOWN),
    ],
    ids=["missing", "basic", "blank", "unknown"],
)
def test_a_request_without_a_valid_key_is_refused(
    api: Api, endpoint: str, authorization: str | None, detail: str
) -> None:
    message = make_message(api)

    response = call(api.http, endpoint, authorization, message.pk)

    assert_refused(response, detail)
    assert api.account.messages.count() == 1


@pytest.mark.parametrize("endpoint", ["send", "get"])
def test_a_revoked_key_is_refused(api: Api, endpoint: str) -> None:
    message = make_message(api)
    account_services.revoke_api_key(api.key)

    response = call(api.http, endpoint, f"Bearer {api.raw}", message.pk)

    assert_refused(response, UNKNOWN)
    assert api.account.messages.count() == 1


@pytest.mark.parametrize("endpoint", ["send", "get"])
def test_a_portal_login_is_not_an_api_key(api: Api, tenant: Tenant, endpoint: str) -> None:
    http = HttpClient(enforce_csrf_checks=True)
    http.force_login(tenant.owner)
    message = make_message(api)

    response = call(http, endpoint, None, message.pk)

    assert_refused(response, MISSING)
    assert api.account.messages.count() == 1


def test_a_valid_key_of_another_organisation_sees_nothing(api: Api, outsider: User) -> None:
    message = make_message(api)
    other = outsider.memberships.get().organisation.sending_accounts.get()
    _key, raw = account_services.create_api_key(other, "theirs", outsider)

    response = call(api.http, "get", f"Bearer {raw}", message.pk)

    assert response.status_code == 404
    assert "ada@example.com" not in response.content.decode()
