"""The REST API's first resource and its key authentication (``Authorization: Bearer <key>``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from accounts.models import ApiKey
from accounts.services import authenticate_api_key


def api_key_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Authenticate with a per-sending-account key; answer 401 with a clear reason otherwise."""

    @wraps(view)
    @csrf_exempt
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        header = request.headers.get("Authorization", "")
        scheme, _sep, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            return _unauthorised("Send your API key as 'Authorization: Bearer <key>'.")
        key = authenticate_api_key(raw.strip())
        if key is None:
            return _unauthorised("The API key is unknown or was revoked.")
        request.api_key = key  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped


def _unauthorised(detail: str) -> JsonResponse:
    response = JsonResponse({"detail": detail}, status=401)
    response["WWW-Authenticate"] = 'Bearer realm="xes"'
    return response


@require_GET
@api_key_required
def account(request: HttpRequest) -> JsonResponse:
    """The sending account the key belongs to: lets integrations test their key."""
    key: ApiKey = request.api_key  # type: ignore[attr-defined]
    acct = key.sending_account
    return JsonResponse(
        {
            "sending_account": {"id": acct.pk, "name": acct.name, "standing": acct.standing},
            "organisation": {"id": acct.organisation_id, "name": acct.organisation.name},
            "client": {"id": acct.client_id, "name": acct.client.name} if acct.client else None,
            "key": {"prefix": key.prefix, "name": key.name},
        }
    )
