from __future__ import annotations

import pytest
from django.urls import reverse


@pytest.mark.parametrize(
    "name",
    [
        "dashboard",
        "client_list",
        "account_list",
        "sender_list",
        "api_key_list",
        "member_list",
        "organisation_settings",
        "client_create",
        "account_create",
        "sender_create",
        "api_key_create",
    ],
)
def test_owner_pages_render(tenant, login, name):
    response = login(tenant.owner).get(reverse(name))
    assert response.status_code == 200
