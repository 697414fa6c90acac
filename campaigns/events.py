"""Message events: what providers report (send, delivery, bounce, complaint, ...), unsubscribes, and
the opens and clicks that :mod:`campaigns.tracking` buffers. Stored as
:class:`~campaigns.models.MessageEvent` rows, announced with :data:`campaigns.signals.message_events`.

Provider events move ``Message.status`` forward only, whatever order they arrive in::

    queued / sending / unknown  <  sent  <  delivered  <  bounced / complained

1. Every update is a conditional ``UPDATE ... WHERE status IN (<lower ranks>)``, so two events
   racing for one message cannot move it back (a Delivery after a Bounce leaves it bounced). A
   transient or undetermined bounce, a delay, an open or a click changes no status.
2. A message still ``sending`` (or ``queued``) belongs to the sending worker, which records its
   outcome and settles its credit; the sandbox reports its events before the worker records. Such
   events are stored at once and their status effect is *deferred*: the message id waits in a
   Redis sorted set until :func:`settle_deferred` (run by the flush job every few seconds) finds
   it recorded, and then applies its stored events in order.
3. A message ``unknown`` (its worker died after handing it to the provider) that the provider
   reports on was accepted: it becomes ``sent`` with the provider's id, and its credit is consumed,
   by :func:`campaigns.sending.control._resolve`, the reconciler's own code. A Reject or
   RenderingFailure makes it ``failed`` instead and gives its credit back, as the worker does for
   failures. A Reject after ``sent`` makes it ``failed``; its credit stays consumed (the provider
   accepted the call).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from campaigns.models import Message, MessageEvent, TrackedLink, recipient_domain, url_hash
from campaigns.signals import message_events
from campaigns.tracking import machine

logger = logging.getLogger(__name__)

Type = MessageEvent.Type
Status = Message.Status

__all__ = [
    "EventRecord",
    "apply_provider_event",
    "record_event",
    "settle_deferred",
]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One stored :class:`~campaigns.models.MessageEvent`, as :data:`message_events` carries it."""

    id: int
    message_id: int
    organisation_id: int
    sending_account_id: int
    campaign_id: int | None
    contact_id: int | None
    type: str
    subtype: str
    at: datetime
    machine: bool
    link_id: int | None


# SES eventType (or notificationType) -> our type.
PROVIDER_TYPES: dict[str, str] = {
    "Send": Type.SEND,
    "Delivery": Type.DELIVERY,
    "Bounce": Type.BOUNCE,
    "Complaint": Type.COMPLAINT,
    "Reject": Type.REJECT,
    "DeliveryDelay": Type.DELIVERY_DELAY,
    "RenderingFailure": Type.RENDERING_FAILURE,
    "Open": Type.OPEN,
    "Click": Type.CLICK,
    "Subscription": Type.SUBSCRIPTION,
}
# The part of the SES event holding the details of each type.
_DETAIL_KEYS: dict[str, str] = {
    Type.SEND: "send",
    Type.DELIVERY: "delivery",
    Type.BOUNCE: "bounce",
    Type.COMPLAINT: "complaint",
    Type.REJECT: "reject",
    Type.DELIVERY_DELAY: "deliveryDelay",
    Type.RENDERING_FAILURE: "renderingFailure",
    Type.OPEN: "open",
    Type.CLICK: "click",
    Type.SUBSCRIPTION: "subscription",
}
# Types whose stored rows can change a message's status (read again by settle_deferred).
STATUS_TYPES = (
    Type.SEND,
    Type.DELIVERY,
    Type.BOUNCE,
    Type.COMPLAINT,
    Type.REJECT,
    Type.RENDERING_FAILURE,
    Type.DELIVERY_DELAY,
    Type.OPEN,
    Type.CLICK,
)
RANK: dict[str, int] = {
    Status.SENT: 1,
    Status.DELIVERED: 2,
    Status.BOUNCED: 3,
    Status.COMPLAINED: 3,
}
WAITING = frozenset({Status.QUEUED, Status.SENDING})  # the worker records first
DEFERRED_KEY = "xes:events:deferred"
DEFERRED_MAX_AGE = 24 * 3600  # seconds; a message still sending after this is left alone
DETAIL_MAX_CHARS = 4000


def redis_connection() -> Any:
    """The Redis holding the deferred set and the tracking buffer (``None`` without ``REDIS_URL``)."""
    from campaigns.tracking.buffer import redis_connection as connect

    return connect()


# --- recording ----------------------------------------------------------------------------------


def announce(records: list[EventRecord]) -> None:
    """Send :data:`message_events` once the current transaction commits (at once outside one)."""
    if not records:
        return

    def send() -> None:
        for receiver, result in message_events.send_robust(sender=MessageEvent, events=records):
            if isinstance(result, Exception):
                logger.error("message_events receiver %r failed", receiver, exc_info=result)

    transaction.on_commit(send)


def record_event(
    message: Message,
    type: str,
    *,
    subtype: str = "",
    at: datetime | None = None,
    data: Mapping[str, Any] | None = None,
    machine: bool = False,
    link_id: int | None = None,
) -> EventRecord:
    """Store one event of ``message`` now (one INSERT) and announce it after commit.

    For events that come one at a time (unsubscribes, provider events); opens and clicks go
    through the buffer of :mod:`campaigns.tracking.buffer` instead."""
    event = MessageEvent.objects.create(
        message_id=message.pk,
        organisation_id=message.organisation_id,
        sending_account_id=message.sending_account_id,
        campaign_id=message.campaign_id,
        type=type,
        subtype=subtype[:40],
        at=at or timezone.now(),
        machine=machine,
        link_id=link_id,
        recipient_domain=recipient_domain(message.to_email),
        data=dict(data or {}),
    )
    record = EventRecord(
        id=event.pk,
        message_id=message.pk,
        organisation_id=message.organisation_id,
        sending_account_id=message.sending_account_id,
        campaign_id=message.campaign_id,
        contact_id=message.contact_id,
        type=type,
        subtype=event.subtype,
        at=event.at,
        machine=machine,
        link_id=link_id,
    )
    announce([record])
    return record


# --- provider events ------------------------------------------------------------------------------


def _first_tag(tags: Any, name: str) -> str:
    value = tags.get(name) if isinstance(tags, Mapping) else None
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) else ""


def _int(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


def _when(*candidates: Any) -> datetime:
    """The first parsable ISO timestamp of ``candidates`` (UTC), else now."""
    for candidate in candidates:
        if isinstance(candidate, str):
            try:
                parsed = parse_datetime(candidate)
            except ValueError:
                parsed = None
            if parsed is not None:
                return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return timezone.now()


def _subtype(type: str, detail: Mapping[str, Any]) -> str:
    if type == Type.BOUNCE:
        return str(detail.get("bounceType") or "undetermined").lower()
    if type == Type.COMPLAINT:
        return str(detail.get("complaintFeedbackType") or detail.get("complaintSubType") or "")
    if type == Type.DELIVERY_DELAY:
        return str(detail.get("delayType") or "")
    return ""


def _reason(type: str, detail: Mapping[str, Any]) -> str:
    if type == Type.REJECT:
        return str(detail.get("reason") or "Rejected by the provider.")
    if type == Type.RENDERING_FAILURE:
        return str(detail.get("errorMessage") or "The provider could not render the message.")
    return ""


def _detail(event: Mapping[str, Any], type: str) -> dict[str, Any]:
    detail = event.get(_DETAIL_KEYS[type])
    if not isinstance(detail, Mapping):
        return {}
    import json

    # Bounded: the raw notification is kept in full by the webhook's store.
    if len(json.dumps(detail, default=str)) > DETAIL_MAX_CHARS:
        return {k: v for k, v in detail.items() if isinstance(v, str | int | float | bool)}
    return dict(detail)


def apply_provider_event(event: Mapping[str, Any], sending_account_id: int | None) -> EventRecord | None:
    """Store one provider event (SES event-publishing JSON) and move its message's status forward.

    1. find the message by its ``xes_message`` tag; an event for an unknown message, another
       sending account or another provider message id is ignored (logged), nothing changes;
    2. in one transaction: store the event row, then apply its status effect (deferred while the
       worker still holds the message, see the module docstring);
    3. announce it with :data:`message_events` after commit.

    Returns the stored event, or ``None`` when it was ignored.
    """
    kind = event.get("eventType") or event.get("notificationType")
    type = PROVIDER_TYPES.get(kind) if isinstance(kind, str) else None
    mail = event.get("mail")
    if type is None or not isinstance(mail, Mapping):
        logger.info("provider event ignored: unknown type %r", kind)
        return None
    tags = mail.get("tags") or {}
    message_id = _int(_first_tag(tags, "xes_message"))
    provider_id = str(mail.get("messageId") or "")[:100]
    message = (
        Message.objects.filter(pk=message_id)
        .only(
            "organisation_id",
            "sending_account_id",
            "campaign_id",
            "contact_id",
            "to_email",
            "provider_message_id",
            "sent_at",
        )
        .first()
        if message_id is not None
        else None
    )
    if message is None:
        logger.info("provider event %s ignored: no message %r (provider id %s)", kind, message_id, provider_id)
        return None
    tagged_account = _int(_first_tag(tags, "xes_account"))
    if (sending_account_id is not None and sending_account_id != message.sending_account_id) or (
        tagged_account is not None and tagged_account != message.sending_account_id
    ):
        logger.warning("provider event %s for message %s ignored: sending account differs", kind, message.pk)
        return None
    if message.provider_message_id and provider_id and provider_id != message.provider_message_id:
        logger.warning("provider event %s for message %s ignored: provider message id differs", kind, message.pk)
        return None

    detail = _detail(event, type)
    at = _when(detail.get("timestamp"), mail.get("timestamp"))
    subtype = _subtype(type, detail)
    data: dict[str, Any] = {"source": "provider", **detail}
    if provider_id:
        data["provider_message_id"] = provider_id
    flagged = False
    link_id = None
    if type in (Type.OPEN, Type.CLICK):
        reason = machine.machine_reason(str(detail.get("userAgent") or ""), str(detail.get("ipAddress") or ""))
        if not reason and machine.too_soon(at, _when(mail.get("timestamp"))):
            reason = machine.PREFETCH
        if reason:
            flagged = True
            data["machine"] = reason
        url = detail.get("link")
        if type == Type.CLICK and isinstance(url, str) and url:
            link_id = tracked_link_id(message.organisation_id, url)

    with transaction.atomic():
        record = record_event(message, type, subtype=subtype, at=at, data=data, machine=flagged, link_id=link_id)
        applied = _advance(message.pk, type, subtype, provider_id, _reason(type, detail))
        if not applied:
            transaction.on_commit(lambda: _defer([message.pk]))
    return record


def tracked_link_id(organisation_id: int, url: str) -> int:
    """The id of the organisation's :class:`~campaigns.models.TrackedLink` for ``url`` (created once)."""
    link, _created = TrackedLink.objects.get_or_create(
        organisation_id=organisation_id, url_hash=url_hash(url), defaults={"url": url}
    )
    return link.pk


# --- status -------------------------------------------------------------------------------------


def target_status(type: str, subtype: str) -> str | None:
    """The status an event of this type moves a message to (``None``: it changes no status)."""
    if type == Type.SEND:
        return Status.SENT
    if type == Type.DELIVERY:
        return Status.DELIVERED
    if type == Type.BOUNCE:
        return Status.BOUNCED if subtype == "permanent" else None
    if type == Type.COMPLAINT:
        return Status.COMPLAINED
    if type in (Type.REJECT, Type.RENDERING_FAILURE):
        return Status.FAILED
    return None


def _advance(message_id: int, type: str, subtype: str, provider_id: str, reason: str) -> bool:
    """Apply one provider event's status effect to the message. ``False`` when the message still
    belongs to the sending worker (``queued``/``sending``): the caller defers the event.

    Every change is a conditional ``UPDATE ... WHERE status IN (...)`` (through the ORM, so it
    also runs on the SQLite of ``make run``), which is what makes it safe against concurrent events.
    """
    from campaigns.sending.control import _resolve, _settle

    now = timezone.now()
    status = Message.objects.filter(pk=message_id).values_list("status", flat=True).first()
    if status is None:
        return True
    if status in WAITING:
        return False
    target = target_status(type, subtype)
    rows = Message.objects.filter(pk=message_id)
    if status == Status.UNKNOWN:
        if target == Status.FAILED:
            with transaction.atomic():
                locked = rows.select_for_update().filter(status=Status.UNKNOWN).values_list("reservation_id").first()
                if locked is not None:
                    rows.update(status=Status.FAILED, error=reason[:1000], lease_until=None, updated_at=now)
                    if locked[0] is not None:
                        _settle(Counter({locked[0]: 1}), consumed=False)
            return True
        if connection.vendor != "postgresql":
            logger.info("message %s stays unknown: the reconciler needs PostgreSQL", message_id)
            return True
        # The provider reports on it: it was accepted. The reconciler's own code records that.
        _resolve([message_id], {message_id: provider_id}, now)
    if target is None or target == Status.SENT:
        return True
    if target == Status.FAILED:
        rows.filter(status=Status.SENT).update(status=Status.FAILED, error=reason[:1000], updated_at=now)
        return True
    lower = [s for s, rank in RANK.items() if rank < RANK[target]]
    rows.filter(status__in=lower).update(status=target, updated_at=now)
    return True


def _defer(message_ids: Iterable[int]) -> None:
    conn = redis_connection()
    if conn is None:
        logger.warning("no Redis: status effects of events for messages %s not deferred", list(message_ids))
        return
    conn.zadd(DEFERRED_KEY, {str(pk): time.time() for pk in message_ids})


# Remove a deferred message id only if nobody deferred it again since it was read.
_REMOVE_IF_UNCHANGED = """
local removed = 0
for i = 1, #ARGV, 2 do
    local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
        removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
    end
end
return removed
"""


def settle_deferred(limit: int = 2000) -> int:
    """Apply the deferred status effects of messages their worker has recorded since; returns how
    many messages were settled. Run by the tracking flush job."""
    conn = redis_connection()
    if conn is None:
        return 0
    entries = conn.zrange(DEFERRED_KEY, 0, limit - 1, withscores=True)
    if not entries:
        return 0
    scores = {int(member): score for member, score in entries}
    statuses = dict(Message.objects.filter(pk__in=list(scores)).values_list("pk", "status"))
    oldest = time.time() - DEFERRED_MAX_AGE
    ready = [pk for pk in scores if statuses.get(pk) not in WAITING]
    done = ready + [pk for pk in scores if pk not in ready and scores[pk] < oldest]
    events: dict[int, list[tuple[str, str, dict[str, Any]]]] = {}
    rows = (
        MessageEvent.objects.filter(message_id__in=[pk for pk in ready if pk in statuses], type__in=STATUS_TYPES)
        .order_by("message_id", "at", "pk")
        .values_list("message_id", "type", "subtype", "data")
    )
    for message_id, type, subtype, data in rows:
        events.setdefault(message_id, []).append((type, subtype, data or {}))
    settled = 0
    for message_id, items in events.items():
        with transaction.atomic():
            for type, subtype, data in items:
                provider_id = str(data.get("provider_message_id") or "")
                _advance(message_id, type, subtype, provider_id, _reason(type, data))
        settled += 1
    if done:
        args: list[Any] = []
        for pk in done:
            args += [str(pk), scores[pk]]
        conn.eval(_REMOVE_IF_UNCHANGED, 1, DEFERRED_KEY, *args)
    return settled


def deferred_count() -> int:
    conn = redis_connection()
    return int(conn.zcard(DEFERRED_KEY)) if conn is not None else 0


def on_provider_event(
    sender: Any, event: Mapping[str, Any], sending_account_id: int | None = None, **kwargs: Any
) -> None:
    """Receiver of :data:`deliverability.signals.provider_event` (connected in ``CampaignsConfig.ready``)."""
    if isinstance(event, Mapping):
        apply_provider_event(event, sending_account_id)
