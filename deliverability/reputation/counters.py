"""Counting provider events into :class:`~deliverability.reputation.models.DailyCounter`.

1. Only what the rules need is counted: ``Send`` (sent), ``Delivery``, ``Bounce`` (``Permanent`` is
   hard, anything else transient) and ``Complaint``, once per recipient of the event.
2. Recipients at the SES mailbox simulator (``...@simulator.amazonses.com``) are not real mail and
   do not count (unless the thresholds say so, for demos).
3. The event is counted on the UTC day of its own timestamp (the time it happened, not the time it
   reached us), and at most once: its identity goes into :class:`CountedEvent` in the same
   statement as the increment, so a second delivery of the same event changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parseaddr
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from deliverability.reputation.models import Thresholds

logger = logging.getLogger(__name__)

SIMULATOR_DOMAIN = "simulator.amazonses.com"
COUNTED_TYPES = frozenset({"Send", "Delivery", "Bounce", "Complaint"})
COLUMNS = ("sent", "delivered", "hard_bounces", "soft_bounces", "complaints")


@dataclass(frozen=True)
class Increment:
    """What one event adds to one account's day."""

    sending_account_id: int
    day: date
    key: uuid.UUID
    sent: int = 0
    delivered: int = 0
    hard_bounces: int = 0
    soft_bounces: int = 0
    complaints: int = 0

    @property
    def is_empty(self) -> bool:
        return not any(getattr(self, column) for column in COLUMNS)


def is_simulator(address: str) -> bool:
    return parseaddr(address)[1].lower().rpartition("@")[2] == SIMULATOR_DOMAIN


def _recipients(items: Any, field: str | None = None) -> list[str]:
    """Addresses from a list of strings or of ``{"emailAddress": ...}`` objects."""
    if not isinstance(items, list):
        return []
    found = []
    for item in items:
        value = item.get(field) if field and isinstance(item, dict) else item
        if isinstance(value, str) and value:
            found.append(value)
    return found


def _mail(event: dict[str, Any]) -> dict[str, Any]:
    mail = event.get("mail")
    return mail if isinstance(mail, dict) else {}


def _when(event: dict[str, Any], detail: dict[str, Any]) -> datetime:
    """The event's own time (falling back to the message's, then to now), never in the future."""
    now = timezone.now()
    mail = _mail(event)
    for raw in (detail.get("timestamp"), mail.get("timestamp")):
        if isinstance(raw, str):
            try:
                parsed = parse_datetime(raw)
            except ValueError:
                parsed = None
            if parsed is not None and parsed.tzinfo is not None:
                return min(parsed, now)
    return now


def _key(event: dict[str, Any], event_type: str, detail: dict[str, Any], recipients: list[str]) -> uuid.UUID:
    """The identity of the event: type, message and (for feedback) SES's feedback id, recipients."""
    mail = _mail(event)
    parts = [
        event_type,
        str(mail.get("messageId", "")),
        str(detail.get("feedbackId", "")),
        ",".join(sorted(r.lower() for r in recipients)),
    ]
    return uuid.UUID(bytes=hashlib.sha256("\x1f".join(parts).encode()).digest()[:16])


def increment_for(
    event: dict[str, Any], sending_account_id: int | None, *, count_simulator: bool = False
) -> Increment | None:
    """What ``event`` (SES event-publishing JSON) adds to the counters, or None when nothing."""
    if not isinstance(event, dict):
        return None
    event_type = event.get("eventType")
    mail = _mail(event)
    if sending_account_id is None:
        tag = (mail.get("tags") or {}).get("xes_account") if isinstance(mail.get("tags"), dict) else None
        value = tag[0] if isinstance(tag, list) and tag else tag
        sending_account_id = int(value) if isinstance(value, str) and value.isdigit() else None
    if sending_account_id is None:
        return None
    column: str
    if event_type == "Send":
        detail: dict[str, Any] = {}
        recipients = _recipients(mail.get("destination"))
        column = "sent"
    elif event_type == "Delivery":
        detail = event.get("delivery") or {}
        recipients = _recipients(detail.get("recipients"))
        column = "delivered"
    elif event_type == "Bounce":
        detail = event.get("bounce") or {}
        recipients = _recipients(detail.get("bouncedRecipients"), "emailAddress")
        column = "hard_bounces" if detail.get("bounceType") == "Permanent" else "soft_bounces"
    elif event_type == "Complaint":
        detail = event.get("complaint") or {}
        recipients = _recipients(detail.get("complainedRecipients"), "emailAddress")
        column = "complaints"
    else:
        return None
    if not isinstance(detail, dict) or (event_type != "Send" and not detail):
        return None  # a Delivery, Bounce or Complaint without its object is not one
    counted = recipients if count_simulator else [r for r in recipients if not is_simulator(r)]
    # An event without a recipient list still stands for one message (only when nothing was dropped
    # as simulator traffic).
    n = len(counted) if recipients else 1
    if n == 0:
        return None
    day = _when(event, detail).astimezone(UTC).date()
    return Increment(sending_account_id, day, _key(event, event_type, detail, recipients), **{column: n})


UPSERT = f"""
WITH seen AS (
    INSERT INTO reputation_countedevent (key, counted_at) VALUES (%(key)s, %(now)s)
    ON CONFLICT (key) DO NOTHING RETURNING key
)
INSERT INTO reputation_dailycounter (sending_account_id, day, {", ".join(COLUMNS)})
SELECT a.id, %(day)s, {", ".join(f"%({c})s" for c in COLUMNS)}
FROM accounts_sendingaccount a
WHERE a.id = %(account)s AND EXISTS (SELECT 1 FROM seen)
ON CONFLICT (sending_account_id, day) DO UPDATE SET
    {", ".join(f"{c} = reputation_dailycounter.{c} + EXCLUDED.{c}" for c in COLUMNS)}
"""


def apply(increment: Increment) -> bool:
    """Add the increment in one statement; False when the event had been counted already (or the
    account no longer exists)."""
    params = {
        "key": increment.key,
        "now": timezone.now(),
        "day": increment.day,
        "account": increment.sending_account_id,
        **{column: getattr(increment, column) for column in COLUMNS},
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(UPSERT, params)
        return cursor.rowcount == 1


def count_event(event: dict[str, Any], sending_account_id: int | None) -> bool:
    """Count one provider event; True when it changed a counter."""
    if not isinstance(event, dict) or event.get("eventType") not in COUNTED_TYPES:
        return False  # opens, clicks and the rest: no query at all
    try:
        increment = increment_for(
            event, sending_account_id, count_simulator=Thresholds.cached().count_simulator_traffic
        )
    except (TypeError, ValueError, AttributeError):
        logger.warning("reputation: could not read a provider event", exc_info=True)
        return False
    if increment is None or increment.is_empty:
        return False
    return apply(increment)
