"""Thin API views: parse, call a service, answer. Errors are shaped by :mod:`campaigns.api.errors`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.template.backends.django import DjangoTemplates
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerSplitView, _get_sidecar_url
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import SendingAccount
from accounts.services import ServiceError
from campaigns.api.authentication import ApiKeyAuthentication, HasApiKey, api_key
from campaigns.api.errors import (
    ErrorSerializer,
    RefusalSerializer,
    Refused,
    ValidationErrorSerializer,
    handle_exception,
)
from campaigns.api.serializers import (
    MessageCreateSerializer,
    MessageQueuedSerializer,
    MessageSerializer,
    Touchpoint,
    attributed_campaign_id,
    merge_data,
)
from campaigns.models import Message
from campaigns.sending import queue_triggered
from plans.services import CreditRefused

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 200  # Message.idempotency_key's column


class ApiView(APIView):
    """Base of every key-authenticated endpoint. The policies are set here, not taken from the
    REST_FRAMEWORK defaults, so that no setting can open an endpoint to session or basic auth."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    schema = AutoSchema()

    def get_exception_handler(self) -> Any:
        return handle_exception


UNAUTHORISED = OpenApiResponse(ErrorSerializer, description=_("No key, or an unknown or revoked key."))
NOT_FOUND = OpenApiResponse(ErrorSerializer, description=_("No such message in this sending account."))
INVALID = OpenApiResponse(ValidationErrorSerializer, description=_("Invalid input: the messages per field."))


class MessageCreateView(ApiView):
    """``POST /api/v1/messages``: queue one triggered e-mail."""

    @extend_schema(
        operation_id="send_message",
        summary=_("Send a triggered e-mail"),
        description=_(
            "Queues one personalised e-mail from a template to one recipient and answers at once with the "
            "message's id; follow it with `GET /api/v1/messages/{id}`.\n\n"
            "* The template is given by id (a number) or slug (a string); templates of another organisation "
            "or client are *not found*, like missing ones.\n"
            "* A recipient on the sending account's suppression list (bounced, complained, unsubscribed) is "
            "not mailed: the message is recorded with status `suppressed` and no credit is used.\n"
            "* With an `Idempotency-Key` header, repeating the request (a retry after a timeout) returns the "
            "same message with 200 and sends nothing again; the same key with a different body is refused "
            "with 422. Keys are remembered per sending account, forever.\n"
            "* `campaign` (optional, the id of a campaign of this sending account) attributes the message "
            "to that campaign for its analytics; it stays a triggered message (not counted in the "
            "campaign's bulk progress, its own credit). Merge data keys starting with `_` are reserved.\n"
            "* Refusals of a valid request carry a `code`: 402 `no_plan`, `insufficient_credits`, "
            "`overage_limit`, `client_cap`; 403 `account_suspended`, `account_standing` (promotional mail "
            "while on probation)."
        ),
        parameters=[
            OpenApiParameter(
                IDEMPOTENCY_HEADER,
                str,
                OpenApiParameter.HEADER,
                description=_("Any unique string up to 200 printable ASCII characters, e.g. a UUID."),
            )
        ],
        request=MessageCreateSerializer,
        responses={
            202: OpenApiResponse(MessageQueuedSerializer, description=_("Queued (or suppressed).")),
            200: OpenApiResponse(MessageQueuedSerializer, description=_("A repeat with the same Idempotency-Key.")),
            400: INVALID,
            401: UNAUTHORISED,
            402: OpenApiResponse(RefusalSerializer, description=_("Not enough credits, with the reason.")),
            403: OpenApiResponse(RefusalSerializer, description=_("The sending account may not send this now.")),
            415: OpenApiResponse(ErrorSerializer, description=_("The body is not JSON.")),
            422: OpenApiResponse(RefusalSerializer, description=_("The Idempotency-Key was used for another request.")),
        },
        examples=[
            OpenApiExample(
                "Welcome e-mail",
                value={"template": "welcome", "to": "ada@example.com", "data": {"first_name": "Ada"}},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        account = api_key(request).sending_account
        idempotency_key = _idempotency_key(request)
        serializer = MessageCreateSerializer(data=request.data, context={"account": account})
        serializer.is_valid(raise_exception=True)
        fields: dict[str, Any] = serializer.validated_data
        # Without an explicit sender a retry matches whatever default the first request used.
        fields["sender_given"] = request.data.get("sender") is not None
        if idempotency_key is not None:
            earlier = Message.objects.filter(sending_account=account, idempotency_key=idempotency_key).first()
            if earlier is not None:
                # A retry: answer as before, whatever changed since (credits, standing).
                return _repeat(earlier, fields)
        message, created = _queue(account, fields, idempotency_key)
        if not created:
            return _repeat(message, fields)  # a concurrent request with the same key won the race
        return _queued(message, status.HTTP_202_ACCEPTED)


class MessageDetailView(ApiView):
    """``GET /api/v1/messages/{id}``: a message of the key's sending account and its events."""

    @extend_schema(
        operation_id="get_message",
        summary=_("A message's status and events"),
        description=_(
            "Statuses: `queued`, `sending`, `sent` (accepted by the provider), `delivered`, `bounced`, "
            "`complained`, `failed` (see `error`), `suppressed`, `cancelled`. Events (delivery, bounce, "
            "complaint, open, click, unsubscribe) come oldest first."
        ),
        responses={200: MessageSerializer, 401: UNAUTHORISED, 404: NOT_FOUND},
    )
    def get(self, request: Request, pk: int) -> Response:
        account = api_key(request).sending_account
        message = (
            Message.objects.filter(sending_account=account, pk=pk)
            .select_related("template", "sender")
            .prefetch_related("events")
            .first()
        )
        if message is None:
            raise exceptions.NotFound(_("No message with this id in this sending account."))
        return Response(MessageSerializer(message).data)


# --- helpers --------------------------------------------------------------------------------------


def _idempotency_key(request: Request) -> str | None:
    raw = request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    value = raw.strip()
    if not value or len(value) > IDEMPOTENCY_KEY_MAX_LENGTH or not all("!" <= ch <= "~" for ch in value):
        raise serializers.ValidationError(
            {
                IDEMPOTENCY_HEADER: [
                    _("Use 1 to %(max)d printable ASCII characters without spaces, e.g. a UUID.")
                    % {"max": IDEMPOTENCY_KEY_MAX_LENGTH}
                ]
            }
        )
    return value


def _queue(account: SendingAccount, fields: dict[str, Any], idempotency_key: str | None) -> tuple[Message, bool]:
    """Hand the validated request to the sending pipeline; turn its refusals into API answers."""
    if not account.may_send:
        raise Refused(
            str(_("This sending account is suspended: sending is stopped until the XES team lifts it.")),
            "account_suspended",
            status.HTTP_403_FORBIDDEN,
        )
    try:
        return queue_triggered(
            account,
            fields["template"],
            fields["to"],
            fields["data"],
            sender=fields.get("sender"),
            promotional=fields["touchpoint"] == Touchpoint.PROMOTIONAL,
            idempotency_key=idempotency_key,
            campaign=fields.get("campaign"),
        )
    except CreditRefused as exc:
        code = str(exc.code)
        http = (
            status.HTTP_403_FORBIDDEN if exc.code == CreditRefused.Code.STANDING else status.HTTP_402_PAYMENT_REQUIRED
        )
        raise Refused(str(exc), code, http) from exc
    except ServiceError as exc:
        raise Refused(str(exc), "refused", status.HTTP_409_CONFLICT) from exc


def _repeat(message: Message, fields: dict[str, Any]) -> Response:
    """The earlier message for a repeated Idempotency-Key, if the request is the same one."""
    same = (
        message.template_id == fields["template"].pk
        and message.to_email.lower() == fields["to"].lower()
        and merge_data(message.data) == fields["data"]
        and attributed_campaign_id(message.data) == (fields["campaign"].pk if fields.get("campaign") else None)
        and message.promotional == (fields["touchpoint"] == Touchpoint.PROMOTIONAL)
        and (not fields["sender_given"] or message.sender_id == fields["sender"].pk)
    )
    if not same:
        raise Refused(
            str(_("This Idempotency-Key was already used for a different request; use a new key for a new message.")),
            "idempotency_key_reused",
            status.HTTP_422_UNPROCESSABLE_ENTITY,
        )
    return _queued(message, status.HTTP_200_OK)


def _queued(message: Message, http_status: int) -> Response:
    return Response(
        MessageQueuedSerializer(message).data,
        status=http_status,
        headers={"Location": reverse("api_message_detail", args=[message.pk])},
    )


# --- schema and docs ------------------------------------------------------------------------------

# What the schema says about itself; kept here so that the served schema never depends on settings.
SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": "XES Portal API",
    "VERSION": "1",
    "DESCRIPTION": (
        "Triggered e-mails for external systems. Authenticate with an API key of one sending account "
        "(`Authorization: Bearer <key>`, created in the portal under API keys); a key sees only its "
        "own sending account's data.\n\n"
        "Errors are JSON with a human `detail`; 400 adds `errors` (messages per field), refusals of a "
        "valid request add a stable `code`."
    ),
    "COMPONENT_SPLIT_REQUEST": True,
}


class SchemaView(SpectacularJSONAPIView):
    """``/api/v1/openapi.json``, public (it documents the API, it holds no data)."""

    authentication_classes = []
    permission_classes = [AllowAny]
    custom_settings = SCHEMA_SETTINGS

    @extend_schema(exclude=True)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class _LocalTemplates(TemplateHTMLRenderer):
    """Finds the docs page in this package's ``templates/`` (and drf-spectacular's in the apps)."""

    engine = DjangoTemplates(
        {"NAME": "campaigns-api", "DIRS": [Path(__file__).parent / "templates"], "APP_DIRS": True, "OPTIONS": {}}
    )

    def resolve_template(self, template_names: list[str]) -> Any:
        return self.engine.get_template(template_names[0])


class DocsView(SpectacularSwaggerSplitView):
    """``/api/v1/docs``: Swagger UI from the sidecar (works offline), with its start-up script as a
    separate file: the portal's Content-Security-Policy forbids inline scripts and styles."""

    authentication_classes = []
    permission_classes = [AllowAny]
    renderer_classes = [_LocalTemplates]
    template_name = "api_docs.html"
    title = SCHEMA_SETTINGS["TITLE"]
    url_name = "api_schema"

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return str(_get_sidecar_url(f"swagger-ui-dist/{filename}"))

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return str(_get_sidecar_url("swagger-ui-dist/favicon-32x32.png"))
