"""``Authorization: Bearer <key>`` for DRF: the key of one sending account is the caller."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts.models import ApiKey, SendingAccount
from accounts.services import authenticate_api_key

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema
    from rest_framework.views import APIView

# Part of the public contract (tests and integrations match on them).
MISSING_KEY = _("Send your API key as 'Authorization: Bearer <key>'.")
UNKNOWN_KEY = _("The API key is unknown or was revoked.")
WWW_AUTHENTICATE = 'Bearer realm="xes"'


class ApiKeyUser:
    """``request.user`` of an API call: no portal user, but the key and its sending account.

    It is authenticated (so DRF's throttles and generic permissions work) yet has no portal rights:
    it is deliberately not a :class:`accounts.models.User`.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, key: ApiKey) -> None:
        self.key = key
        self.pk = f"api-key:{key.pk}"
        self.sending_account: SendingAccount = key.sending_account

    def __str__(self) -> str:
        return f"API key {self.key.prefix}"


class ApiKeyAuthentication(BaseAuthentication):
    """Authenticate with a per-sending-account key; anything else is refused with a clear reason.

    A request without a bearer key is refused here too (not left anonymous): every API endpoint
    needs a key, and the caller deserves the hint on how to send one.
    """

    def authenticate(self, request: Request) -> tuple[ApiKeyUser, ApiKey]:
        header = request.headers.get("Authorization", "")
        scheme, _sep, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise exceptions.NotAuthenticated(MISSING_KEY)
        key = authenticate_api_key(raw.strip())
        if key is None:
            raise exceptions.AuthenticationFailed(UNKNOWN_KEY)
        return ApiKeyUser(key), key

    def authenticate_header(self, request: Request) -> str:
        return WWW_AUTHENTICATE


class HasApiKey(BasePermission):
    """Only key-authenticated callers (a session login is not an API key)."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, ApiKey)


def api_key(request: Request) -> ApiKey:
    """The caller's key (views behind :class:`HasApiKey` always have one)."""
    key = request.auth
    assert isinstance(key, ApiKey)  # noqa: S101 - guaranteed by HasApiKey; narrows the type
    return key


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Documents the key authentication in the OpenAPI schema (an HTTP bearer scheme)."""

    target_class = "campaigns.api.authentication.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": str(
                _(
                    "An API key of one sending account, created in the portal under API keys: "
                    "`Authorization: Bearer xes_…`. The key sees only its own sending account's data."
                )
            ),
        }
