"""The shared scoping mechanism: one organisation's data, one client's for client-users."""

from __future__ import annotations

import pytest
from django.http import Http404

from accounts.models import ApiKey, Client, Membership, SenderAddress, SendingAccount
from tests.factories import ApiKeyFactory
from xes_portal.lib.tenancy import get_for_membership


def _membership(user) -> Membership:
    return Membership.objects.get(user=user)


def test_owner_sees_the_whole_organisation_and_nothing_else(tenant, outsider) -> None:
    m = _membership(tenant.owner)
    assert set(Client.objects.for_membership(m)) == {tenant.client_a, tenant.client_b}
    assert set(SendingAccount.objects.for_membership(m)) == {tenant.account_org, tenant.account_a, tenant.account_b}
    assert set(SenderAddress.objects.for_membership(m)) == {tenant.sender_a, tenant.sender_b}


def test_client_user_sees_only_its_client(tenant) -> None:
    m = _membership(tenant.client_user)
    ApiKeyFactory(sending_account=tenant.account_a)
    ApiKeyFactory(sending_account=tenant.account_b)

    assert list(Client.objects.for_membership(m)) == [tenant.client_a]
    assert list(SendingAccount.objects.for_membership(m)) == [tenant.account_a]
    assert list(SenderAddress.objects.for_membership(m)) == [tenant.sender_a]
    assert [k.sending_account for k in ApiKey.objects.for_membership(m)] == [tenant.account_a]
    # organisation-wide rows without a client (members, invitations) are invisible to client-users
    assert not Membership.objects.for_membership(m).exists()


def test_get_for_membership_answers_404_outside_the_tenant(tenant, outsider) -> None:
    other = _membership(outsider)
    with pytest.raises(Http404):
        get_for_membership(SendingAccount.objects, other, pk=tenant.account_a.pk)
    with pytest.raises(Http404):
        get_for_membership(SendingAccount.objects, _membership(tenant.client_user), pk=tenant.account_b.pk)
    assert get_for_membership(SendingAccount.objects, _membership(tenant.owner), pk=tenant.account_b.pk)


def test_no_membership_sees_nothing(tenant) -> None:
    assert not SendingAccount.objects.for_membership(None).exists()
