"""The sandbox provider, the default of ``make run``: nothing leaves the machine.

Identities and account set-up are accepted as they are (the portal's own DNS checks still decide
whether a domain is right). Every message is kept as a :class:`~deliverability.models.SandboxMessage`
for the outbox, and the events SES would publish for it are stored as
:class:`~deliverability.models.SandboxEvent` rows in the SES event-publishing JSON format, including
the behaviour of the SES mailbox simulator, and announced with
:data:`deliverability.signals.provider_event` once the transaction has committed.

Settings (all optional): ``SANDBOX_MAX_24_HOUR_SEND`` (50,000), ``SANDBOX_MAX_SEND_RATE`` (14 per
second) and ``SANDBOX_SENDING_ENABLED`` (true), to try the sending engine's quota handling.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Func, IntegerField, Sum
from django.utils import timezone
from django.utils.translation import gettext

from deliverability.models import SandboxEvent, SandboxMessage
from deliverability.providers.base import (
    DeliveryProvider,
    DkimSetup,
    IdentityState,
    MessageRejected,
    Quota,
    SendingPaused,
    sanitise_tags,
)
from deliverability.signals import provider_event

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler, _AsSqlType

    from deliverability.models import ProviderSetup

SIMULATOR_DOMAIN = "simulator.amazonses.com"
# A made-up AWS account id and MTA for the payloads: clearly not SES, same shape.
SANDBOX_AWS_ACCOUNT = "000000000000"
SANDBOX_MTA = "sandbox.xes.invalid"
SUBJECT_MAX_LENGTH = 998  # RFC 5322 line limit, the model's max_length

Event = dict[str, Any]


class JsonArrayLength(Func):
    """The number of elements of a JSON array column (PostgreSQL ``jsonb``, SQLite ``json``)."""

    function = "JSONB_ARRAY_LENGTH"
    output_field = IntegerField()

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> _AsSqlType:
        return super().as_sql(compiler, connection, function="JSON_ARRAY_LENGTH", **extra_context)


def easy_dkim_tokens(domain: str) -> list[str]:
    """Three Easy DKIM tokens for ``domain``: random-looking like SES's, but derived from SECRET_KEY so
    that adding the same domain again gives the same records."""
    key = settings.SECRET_KEY.encode()
    return [
        hmac.new(key, f"sandbox-easy-dkim:{domain.lower()}:{n}".encode(), hashlib.sha256).hexdigest()[:32]
        for n in range(3)
    ]


def _iso(moment: datetime) -> str:
    """SES's timestamp format: UTC with milliseconds and ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _simulator_mailbox(recipient: str) -> str | None:
    """``bounce`` for ``bounce@simulator.amazonses.com`` and ``bounce+label@...`` (SES accepts labels),
    ``None`` for any other domain."""
    address = parseaddr(recipient)[1].lower()
    local, _at, domain = address.rpartition("@")
    if domain != SIMULATOR_DOMAIN:
        return None
    return local.split("+", 1)[0]


class SandboxProvider(DeliveryProvider):
    """Stores instead of sending; simulates what SES would report."""

    name = "sandbox"
    uses_tenants = True  # names like SES's; there is nothing to create

    def ensure_account(self, setup: ProviderSetup) -> None:
        return None

    def create_domain_identity(
        self, setup: ProviderSetup, domain: str, byo_dkim: tuple[str, str] | None = None
    ) -> DkimSetup:
        if byo_dkim:
            return DkimSetup(tokens=[], status="SUCCESS")
        return DkimSetup(tokens=easy_dkim_tokens(domain), status="SUCCESS")

    def delete_domain_identity(self, setup: ProviderSetup, domain: str) -> None:
        return None

    def identity_state(self, domain: str) -> IdentityState:
        # The sandbox keeps no identities: every domain counts as set up at the "provider".
        return IdentityState(exists=True, verified_for_sending=True, dkim_status="SUCCESS", mail_from_status="SUCCESS")

    def set_mail_from(self, setup: ProviderSetup, domain: str, mail_from_domain: str | None) -> None:
        return None

    def ensure_ip_pool(self, pool_name: str) -> None:
        return None

    def assign_dedicated_ip(self, pool_name: str, ip: str) -> None:
        return None

    def use_ip_pool(self, setup: ProviderSetup, pool_name: str | None) -> None:
        return None

    def quota(self) -> Quota:
        """Generous limits; what was sent counts like at SES: recipients in the last 24 hours."""
        since = timezone.now() - timedelta(hours=24)
        sent = SandboxMessage.objects.filter(created_at__gte=since).aggregate(n=Sum(JsonArrayLength("recipients")))
        return Quota(
            max_24_hour_send=int(getattr(settings, "SANDBOX_MAX_24_HOUR_SEND", 50_000)),
            max_send_rate=float(getattr(settings, "SANDBOX_MAX_SEND_RATE", 14.0)),
            sent_last_24_hours=int(sent["n"] or 0),
            sending_enabled=bool(getattr(settings, "SANDBOX_SENDING_ENABLED", True)),
        )

    def send_raw(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> str:
        """1. refuse like SES would (no recipients, sending paused, daily quota used up), 2. store the
        message and its events in one transaction, 3. announce the events after commit."""
        if not recipients:
            raise MessageRejected(gettext("The message has no recipients."), code="BadRequestException")
        quota = self.quota()
        if not quota.sending_enabled:
            raise SendingPaused(code="SendingPausedException", detail="Sandbox sending is disabled.")
        if quota.sent_last_24_hours + len(recipients) > quota.max_24_hour_send:
            raise SendingPaused(code="LimitExceededException", detail="Daily message quota exceeded.")

        parsed = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
        subject = _header(parsed, "Subject")[:SUBJECT_MAX_LENGTH]
        clean_tags = sanitise_tags(tags)
        now = timezone.now()
        message_id = f"sandbox-{uuid.uuid4()}"
        with transaction.atomic():
            message = SandboxMessage.objects.create(
                sending_account_id=setup.sending_account_id,
                message_id=message_id,
                configuration_set=setup.configuration_set,
                from_address=from_address,
                recipients=list(recipients),
                subject=subject,
                raw=raw,
                tags=clean_tags,
                created_at=now,
            )
            mail = self._mail_object(setup, message, parsed, now)
            events = simulate_events(mail, recipients, now)
            SandboxEvent.objects.bulk_create(
                SandboxEvent(message=message, event_type=event["eventType"], payload=event, created_at=now)
                for event in events
            )
            transaction.on_commit(partial(_announce, events, setup.sending_account_id))
        return message_id

    def _mail_object(self, setup: ProviderSetup, message: SandboxMessage, parsed: EmailMessage, now: datetime) -> Event:
        """The ``mail`` part of every event, as SES builds it (tags as lists, SES's own tags included)."""
        from_domain = parseaddr(message.from_address)[1].rpartition("@")[2].lower()
        tags: dict[str, list[str]] = {
            "ses:configuration-set": [setup.configuration_set],
            "ses:from-domain": [from_domain],
            "ses:source-ip": ["127.0.0.1"],
            "ses:caller-identity": ["sandbox"],
        }
        tags.update({name: [value] for name, value in message.tags.items()})
        common: dict[str, Any] = {"messageId": message.message_id, "subject": message.subject}
        for header in ("From", "To", "Cc", "Reply-To"):
            values = [str(v) for v in parsed.get_all(header, [])]
            if values:
                common[header.lower().replace("-", "")] = values
        if parsed.get("Date"):
            common["date"] = _header(parsed, "Date")
        return {
            "timestamp": _iso(now),
            "source": message.from_address,
            "sourceArn": f"arn:aws:ses:{self.region}:{SANDBOX_AWS_ACCOUNT}:identity/{from_domain}",
            "sendingAccountId": SANDBOX_AWS_ACCOUNT,
            "messageId": message.message_id,
            "destination": list(message.recipients),
            "headersTruncated": False,
            "headers": [{"name": name, "value": str(value)} for name, value in parsed.items()],
            "commonHeaders": common,
            "tags": tags,
        }


def _header(parsed: EmailMessage, name: str) -> str:
    """A decoded header value; a header the parser cannot decode reads as empty rather than failing a send."""
    try:
        return str(parsed.get(name, "") or "")
    except (ValueError, LookupError, TypeError, AttributeError):
        return ""


def simulate_events(mail: Event, recipients: list[str], now: datetime) -> list[Event]:
    """The events SES publishes for one message: ``Send``, then per recipient what the mailbox
    simulator does (``bounce``, ``complaint``, ``suppressionlist``, ``ooto``) or a delivery."""
    events: list[Event] = [{"eventType": "Send", "mail": mail, "send": {}}]
    for recipient in recipients:
        mailbox = _simulator_mailbox(recipient)
        if mailbox == "bounce":
            events.append(_bounce(mail, recipient, now, "General", "smtp; 550 5.1.1 user unknown"))
        elif mailbox == "suppressionlist":
            events.append(
                _bounce(
                    mail,
                    recipient,
                    now,
                    "OnAccountSuppressionList",
                    "Amazon SES did not send the message to this address because it is on the suppression "
                    "list for your account.",
                )
            )
        elif mailbox == "complaint":
            events.append(_delivery(mail, recipient, now))
            events.append(_complaint(mail, recipient, now))
        else:
            # "ooto" is delivered; the out-of-office answer goes to the sender, not into events.
            events.append(_delivery(mail, recipient, now))
    return events


def _delivery(mail: Event, recipient: str, now: datetime) -> Event:
    return {
        "eventType": "Delivery",
        "mail": mail,
        "delivery": {
            "timestamp": _iso(now),
            "processingTimeMillis": 0,
            "recipients": [recipient],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": SANDBOX_MTA,
            "remoteMtaIp": "127.0.0.1",
        },
    }


def _bounce(mail: Event, recipient: str, now: datetime, sub_type: str, diagnostic: str) -> Event:
    return {
        "eventType": "Bounce",
        "mail": mail,
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": sub_type,
            "bouncedRecipients": [
                {"emailAddress": recipient, "action": "failed", "status": "5.1.1", "diagnosticCode": diagnostic}
            ],
            "timestamp": _iso(now),
            "feedbackId": f"sandbox-{uuid.uuid4()}",
            "reportingMTA": f"dns; {SANDBOX_MTA}",
        },
    }


def _complaint(mail: Event, recipient: str, now: datetime) -> Event:
    return {
        "eventType": "Complaint",
        "mail": mail,
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient}],
            "timestamp": _iso(now),
            "feedbackId": f"sandbox-{uuid.uuid4()}",
            "userAgent": "Amazon SES Mailbox Simulator",
            "complaintFeedbackType": "abuse",
            "arrivalDate": _iso(now),
        },
    }


def _announce(events: list[Event], sending_account_id: int) -> None:
    """Hand each event to the event processing; a failing receiver is logged by Django and does not
    undo the send, which has happened."""
    for event in events:
        provider_event.send_robust(sender=SandboxProvider, event=event, sending_account_id=sending_account_id)
