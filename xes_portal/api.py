"""``GET /api/v1/account``: the sending account of the caller's API key (lets integrations test a key).

The key authentication, error bodies and the other endpoints live in :mod:`campaigns.api`.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import SendingAccount
from campaigns.api.authentication import api_key
from campaigns.api.views import UNAUTHORISED, ApiView


class NamedObject(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    name = serializers.CharField()


class AccountSendingAccount(NamedObject):
    standing = serializers.ChoiceField(choices=SendingAccount.Standing.choices)


class AccountKey(serializers.Serializer[Any]):
    prefix = serializers.CharField(help_text=_("The key's public start, as listed in the portal."))
    name = serializers.CharField()


class AccountSerializer(serializers.Serializer[Any]):
    """Documents the answer (the view builds it directly: it is four small objects)."""

    sending_account = AccountSendingAccount()
    organisation = NamedObject()
    client = NamedObject(allow_null=True, help_text=_("The client the sending account belongs to, if any."))
    key = AccountKey()


class AccountView(ApiView):
    @extend_schema(
        operation_id="get_account",
        summary=_("The key's sending account"),
        description=_("Which sending account, organisation and client the API key belongs to."),
        responses={200: OpenApiResponse(AccountSerializer), 401: UNAUTHORISED},
    )
    def get(self, request: Request) -> Response:
        key = api_key(request)
        acct = key.sending_account
        body: dict[str, Any] = {
            "sending_account": {"id": acct.pk, "name": acct.name, "standing": acct.standing},
            "organisation": {"id": acct.organisation_id, "name": acct.organisation.name},
            "client": {"id": acct.client_id, "name": acct.client.name} if acct.client else None,
            "key": {"prefix": key.prefix, "name": key.name},
        }
        return Response(body)


account = AccountView.as_view()
