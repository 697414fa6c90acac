"""Provider events in the SES event-publishing format, sent through the real signal, and a clock.

A stream of mail is a handful of events with many recipients each (SES reports one event per
message with all its recipients), so a test can send thousands of e-mails in a few queries."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from accounts.models import SendingAccount
from deliverability.reputation import receivers
from deliverability.reputation.services import evaluate_standings
from deliverability.signals import provider_event

_ids = itertools.count(1)
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday, noon UTC


def day(n: int, hour: int = 12) -> datetime:
    """Noon (or ``hour``) UTC of day ``n`` after T0."""
    return T0 + timedelta(days=n, hours=hour - 12)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def addresses(n: int, domain: str = "example.net") -> list[str]:
    start = next(_ids) * 100_000
    return [f"r{start + i}@{domain}" for i in range(n)]


def mail(recipients: list[str], at: datetime, account: SendingAccount | None = None) -> dict[str, Any]:
    tags = {"xes_account": [str(account.pk)]} if account is not None else {}
    return {"messageId": f"msg-{next(_ids)}", "timestamp": iso(at), "destination": recipients, "tags": tags}


def send_event(recipients: list[str], at: datetime) -> dict[str, Any]:
    return {"eventType": "Send", "mail": mail(recipients, at), "send": {}}


def delivery_event(recipients: list[str], at: datetime) -> dict[str, Any]:
    return {
        "eventType": "Delivery",
        "mail": mail(recipients, at),
        "delivery": {"timestamp": iso(at), "recipients": recipients, "smtpResponse": "250 OK"},
    }


def bounce_event(recipients: list[str], at: datetime, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "eventType": "Bounce",
        "mail": mail(recipients, at),
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": r} for r in recipients],
            "timestamp": iso(at),
            "feedbackId": f"fb-{next(_ids)}",
        },
    }


def complaint_event(recipients: list[str], at: datetime) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "mail": mail(recipients, at),
        "complaint": {
            "complainedRecipients": [{"emailAddress": r} for r in recipients],
            "timestamp": iso(at),
            "feedbackId": f"fb-{next(_ids)}",
            "complaintFeedbackType": "abuse",
        },
    }


def emit(event: dict[str, Any], account_id: int | None) -> None:
    """Send the event as the providers do (``send_robust``); fail if our receiver failed."""
    for receiver, result in provider_event.send_robust(sender=object, event=event, sending_account_id=account_id):
        if receiver == receivers.count_provider_event and isinstance(result, Exception):
            raise result


def traffic(
    account: SendingAccount,
    at: datetime,
    *,
    sent: int,
    hard: int = 0,
    soft: int = 0,
    complaints: int = 0,
) -> None:
    """``sent`` e-mails at ``at``: ``hard`` and ``soft`` of them bounce, the rest are delivered, and
    ``complaints`` of the delivered ones complain."""
    recipients = addresses(sent)
    bounced_hard, bounced_soft = recipients[:hard], recipients[hard : hard + soft]
    delivered = recipients[hard + soft :]
    emit(send_event(recipients, at), account.pk)
    if delivered:
        emit(delivery_event(delivered, at), account.pk)
    if bounced_hard:
        emit(bounce_event(bounced_hard, at), account.pk)
    if bounced_soft:
        emit(bounce_event(bounced_soft, at, "Transient"), account.pk)
    if complaints:
        emit(complaint_event(delivered[:complaints], at), account.pk)


def evaluate_at(moment: datetime) -> dict[str, int]:
    """Run the scheduled evaluation with the clock frozen at ``moment``."""
    with time_machine.travel(moment, tick=False):
        return evaluate_standings(moment)


def standing(account: SendingAccount) -> str:
    account.refresh_from_db()
    return account.standing
