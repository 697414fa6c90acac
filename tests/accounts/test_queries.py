"""List pages run a bounded number of queries however many rows they show (no N+1)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import ApiKeyFactory, ClientFactory, SenderAddressFactory, SendingAccountFactory

PAGES = ["dashboard", "client_list", "account_list", "sender_list", "api_key_list", "member_list"]


def _grow(tenant, n: int) -> None:
    for i in range(n):
        client = ClientFactory(organisation=tenant.organisation)
        account = SendingAccountFactory(organisation=tenant.organisation, client=client)
        SenderAddressFactory(sending_account=account, email=f"s{i}-{account.pk}@example.com")
        ApiKeyFactory(sending_account=account)


@pytest.mark.parametrize("name", PAGES)
def test_list_pages_do_not_grow_queries_with_rows(tenant, login, name, django_assert_max_num_queries) -> None:
    http = login(tenant.owner)
    _grow(tenant, 2)
    with django_assert_max_num_queries(12) as small:
        assert http.get(reverse(name)).status_code == 200
    _grow(tenant, 15)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert http.get(reverse(name)).status_code == 200


def test_the_organisation_switcher_costs_the_same_for_many_memberships(tenant, login, django_assert_max_num_queries):
    from accounts.models import Membership
    from tests.factories import OrganisationFactory

    http = login(tenant.owner)
    Membership.objects.create(user=tenant.owner, organisation=OrganisationFactory(), role="owner")
    with django_assert_max_num_queries(12) as few:
        page = http.get(reverse("client_list"))
    for _ in range(8):
        Membership.objects.create(user=tenant.owner, organisation=OrganisationFactory(), role="owner")
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = http.get(reverse("client_list"))
    assert "Switch organisation" in page.content.decode()
