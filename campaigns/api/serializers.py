"""Request and response bodies of the messages API, with the validation rules that the docs list."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import SenderAddress, SendingAccount
from accounts.services import normalise_email
from campaigns.models import Campaign, Message, MessageEvent, Template, TrackedLink
from campaigns.sending.queueing import ATTRIBUTION_KEY, RESERVED_DATA_PREFIX, default_sender

# Merge data is stored with every message and rendered into it: a bound keeps rows and renders small.
DATA_MAX_BYTES = 64 * 1024

NO_VERIFIED_SENDER = _("This sending account has no verified sender address yet: add and confirm one in the portal.")


class Touchpoint:
    """How the API names the two kinds of mail (PRODUCT.md: every touchpoint is one of them)."""

    PROMOTIONAL = "promotional"
    TRANSACTIONAL = "transactional"
    CHOICES = ((TRANSACTIONAL, _("Transactional")), (PROMOTIONAL, _("Promotional")))


# The statuses the API promises (DESIGN/issue 5). "unknown" is an internal state (handed to the
# provider, answer not yet recorded): from the outside the message is still being sent.
PUBLIC_STATUS = {Message.Status.UNKNOWN: Message.Status.SENDING}
PUBLIC_STATUSES = [s for s in Message.Status.values if s not in PUBLIC_STATUS]


def public_status(message: Message) -> str:
    return str(PUBLIC_STATUS.get(Message.Status(message.status), message.status))


def templates_for(account: SendingAccount) -> Any:
    """Templates that ``account`` may send: its organisation's shared ones and its own client's."""
    return Template.objects.for_organisation(account.organisation).filter(
        Q(client__isnull=True) | Q(client_id=account.client_id)
    )


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "description": "The template's id (a number) or its slug (a string).",
        "example": "welcome",
    }
)
class TemplateRefField(serializers.Field[Template, Template, Any, Any]):
    """A template by id (a JSON number) or slug (a JSON string), inside the caller's tenant.

    A string of digits that matches no slug is taken as an id, for callers that quote numbers.
    Another tenant's template answers exactly like a missing one (no oracle)."""

    default_error_messages = {
        "invalid": _("Give the template's id (a number) or its slug (a string)."),
        "not_found": _("No template with this id or slug is available to this sending account."),
    }

    def to_internal_value(self, data: Any) -> Template:
        account: SendingAccount = self.context["account"]
        templates = templates_for(account)
        if isinstance(data, int) and not isinstance(data, bool):
            found = templates.filter(pk=data).first()
        elif isinstance(data, str) and data.strip():
            ref = data.strip()
            found = templates.filter(slug=ref).first()
            if found is None and ref.isdigit() and len(ref) < 19:
                found = templates.filter(pk=int(ref)).first()
        else:
            self.fail("invalid")
        if found is None:
            self.fail("not_found")
        return found

    def to_representation(self, value: Template) -> Any:
        return value.slug


@extend_schema_field({"type": "object", "additionalProperties": {}, "example": {"first_name": "Ada"}})
class JsonObjectField(serializers.JSONField):
    """A JSON object (documented as one; the serializer checks that it is)."""


class MessageCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """``POST /api/v1/messages``. Unknown fields are refused so that a typo never goes unnoticed."""

    template = TemplateRefField()
    to = serializers.CharField(
        max_length=320,
        trim_whitespace=True,
        help_text=_("The recipient: one bare e-mail address (no display name). International domains are fine."),
    )
    data = JsonObjectField(
        required=False,
        default=dict,
        help_text=_(
            'Merge data for the template, a JSON object (at most 64 KB): `{"first_name": "Ada"}` is '
            "`{{ data.first_name }}` in the template."
        ),
    )
    sender = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=320,
        help_text=_("A verified sender address of this sending account; its first verified one when left out."),
    )
    touchpoint = serializers.ChoiceField(
        choices=Touchpoint.CHOICES,
        default=Touchpoint.TRANSACTIONAL,
        help_text=_(
            "Promotional mail gets an unsubscribe link and header and is refused while the account is "
            "on probation; transactional mail (receipts, password resets) does not."
        ),
    )

    campaign = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text=_(
            "The id of a campaign of this sending account to attribute the message to in its analytics. "
            "The message is still a triggered one: it is not part of the campaign's bulk run and its "
            "progress, and it uses its own credit."
        ),
    )

    def validate_to(self, value: str) -> str:
        return _normalised(value)

    def validate_campaign(self, value: int | None) -> Campaign | None:
        if value is None:
            return None
        account: SendingAccount = self.context["account"]
        # Another account's or organisation's campaign answers exactly like a missing one (no oracle).
        found = Campaign.objects.filter(pk=value, sending_account=account).first()
        if found is None:
            raise serializers.ValidationError(_("Campaign not found in this sending account."))
        return found

    def validate_data(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError(_('Send the merge data as a JSON object, like {"first_name": "Ada"}.'))
        reserved = sorted(k for k in value if k.startswith(RESERVED_DATA_PREFIX))
        if reserved:
            raise serializers.ValidationError(
                _("Keys starting with “_” are reserved for XES; rename %(keys)s.")
                % {"keys": ", ".join(f"“{k}”" for k in reserved)}
            )
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > DATA_MAX_BYTES:
            raise serializers.ValidationError(
                _("The merge data is too large: %(size)d bytes, at most %(max)d.")
                % {"size": size, "max": DATA_MAX_BYTES}
            )
        return value

    def validate_sender(self, value: str | None) -> SenderAddress | None:
        if value is None:
            return None
        account: SendingAccount = self.context["account"]
        address = _normalised(value)
        sender = SenderAddress.objects.filter(sending_account=account, email__iexact=address).first()
        if sender is None:
            raise serializers.ValidationError(_("This is not a sender address of this sending account."))
        if not sender.is_verified:
            raise serializers.ValidationError(
                _("This sender address is not verified yet: click the link in the e-mail we sent to it.")
            )
        return sender

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(self.initial_data) - set(self.fields)) if isinstance(self.initial_data, dict) else []
        if unknown:
            raise serializers.ValidationError({name: [_("Unknown field.")] for name in unknown})
        if attrs.get("sender") is None:
            attrs["sender"] = default_sender(self.context["account"])
            if attrs["sender"] is None:
                raise serializers.ValidationError({"sender": [NO_VERIFIED_SENDER]})
        return attrs


def _normalised(value: str) -> str:
    try:
        return normalise_email(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(list(exc.messages)) from exc


class MessageQueuedSerializer(serializers.Serializer[Message]):
    """The answer to a send: the message's id and where it stands."""

    id = serializers.IntegerField(read_only=True)
    status = serializers.SerializerMethodField(help_text=_("`queued`, or `suppressed` for a suppressed recipient."))

    @extend_schema_field(serializers.ChoiceField(choices=PUBLIC_STATUSES))
    def get_status(self, message: Message) -> str:
        return public_status(message)


class MessageEventSerializer(serializers.ModelSerializer[MessageEvent]):
    type = serializers.ChoiceField(
        choices=MessageEvent.Type.choices,
        help_text=_("`send`, `delivery`, `bounce`, `complaint`, `reject`, `open`, `click`, `unsubscribe`, …"),
    )
    subtype = serializers.CharField(
        help_text=_("Bounces: `permanent`, `transient` or `undetermined`; complaints: the feedback type.")
    )
    machine = serializers.BooleanField(
        help_text=_("Opens and clicks: made by a machine (privacy proxy, link scanner), not by the recipient.")
    )
    link = serializers.SerializerMethodField(help_text=_("Clicks: the URL that was clicked."))
    data = JsonObjectField(help_text=_("Details of the event, as the provider or the tracking reported them."))

    class Meta:
        model = MessageEvent
        fields = ("type", "subtype", "at", "machine", "link", "data")
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_link(self, event: MessageEvent) -> str | None:
        if event.link_id is None:
            return None
        urls: dict[int, str] = self.context.get("link_urls", {})
        return urls.get(event.link_id)


class MessageSerializer(serializers.ModelSerializer[Message]):
    """``GET /api/v1/messages/{id}``: a message of the caller's sending account with its events."""

    status = serializers.SerializerMethodField(help_text=_("Where the message stands."))
    to = serializers.CharField(source="to_email")
    template = serializers.SerializerMethodField()
    sender = serializers.CharField(source="sender.email")
    touchpoint = serializers.SerializerMethodField()
    campaign = serializers.SerializerMethodField(
        help_text=_("The campaign the message belongs or is attributed to, or null.")
    )
    error = serializers.CharField(help_text=_("Why the message failed or was suppressed; empty otherwise."))
    events = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = (
            "id",
            "status",
            "to",
            "template",
            "sender",
            "touchpoint",
            "campaign",
            "created_at",
            "sent_at",
            "error",
            "events",
        )
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=PUBLIC_STATUSES))
    def get_status(self, message: Message) -> str:
        return public_status(message)

    @extend_schema_field(MessageEventSerializer(many=True))
    def get_events(self, message: Message) -> list[dict[str, Any]]:
        """The events oldest first; the URLs of clicked links in one query."""
        events = list(message.events.all())
        link_ids = {e.link_id for e in events if e.link_id is not None}
        links = TrackedLink.objects.filter(pk__in=link_ids, organisation_id=message.organisation_id)
        urls = dict(links.values_list("pk", "url")) if link_ids else {}
        return list(MessageEventSerializer(events, many=True, context={"link_urls": urls}).data)

    @extend_schema_field(
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "slug": {"type": "string"}},
            "required": ["id", "slug"],
        }
    )
    def get_template(self, message: Message) -> dict[str, Any]:
        return {"id": message.template_id, "slug": message.template.slug}

    @extend_schema_field(serializers.ChoiceField(choices=Touchpoint.CHOICES))
    def get_touchpoint(self, message: Message) -> str:
        return Touchpoint.PROMOTIONAL if message.promotional else Touchpoint.TRANSACTIONAL

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_campaign(self, message: Message) -> int | None:
        return message.campaign_id or attributed_campaign_id(message.data)


def attributed_campaign_id(data: Any) -> int | None:
    """The campaign a triggered message was attributed to (``"campaign"`` of the request), if any."""
    value = data.get(ATTRIBUTION_KEY) if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


def merge_data(data: Any) -> dict[str, Any]:
    """A message's data as the caller sent it, without the keys XES keeps there."""
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if not k.startswith(RESERVED_DATA_PREFIX)}


__all__ = [
    "DATA_MAX_BYTES",
    "MessageCreateSerializer",
    "MessageQueuedSerializer",
    "MessageSerializer",
    "Touchpoint",
    "attributed_campaign_id",
    "merge_data",
    "public_status",
    "templates_for",
]
