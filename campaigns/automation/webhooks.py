"""Outgoing webhooks: the organisation's message events, POSTed as signed JSON to its endpoints.

Batching: the events of one stored batch (one :data:`campaigns.signals.message_events` signal) that
an endpoint subscribes to go in one POST, at most :data:`MAX_EVENTS_PER_DELIVERY` per POST. A
provider event or an unsubscribe arrives alone; a flush of buffered opens and clicks brings many.

Body (UTF-8 JSON)::

    {"delivery": "<uuid>", "created_at": "2026-05-04T10:00:00Z", "test": false,
     "events": [{"id": 123, "type": "click", "subtype": "", "at": "2026-05-04T09:59:58Z",
                 "machine": false, "link": "https://example.com/offer",
                 "message": {"id": 45, "to": "ann@example.org", "sending_account_id": 3,
                             "campaign_id": 7, "contact_id": 9, "provider_message_id": "..."}}]}

Signature: header ``XES-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is the HMAC-SHA256,
keyed with the endpoint's secret, of ``"<t>.<body>"`` (the body's exact bytes). Receivers recompute
it, compare in constant time and refuse a ``t`` older than a few minutes (replays).

Delivery is at least once: a delivery is retried after a failure (no 2xx answer within the timeout,
a refused address, a redirect) after 1 minute, 5 minutes, 30 minutes, 2 hours and 12 hours, then
given up; the same delivery id (header ``XES-Delivery``) and event ids come again on a retry, so
receivers can ignore what they already have. After :data:`FAILING_AFTER` failed attempts in a row
the endpoint is marked failing until one succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import django_rq
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from campaigns.automation import netguard
from campaigns.automation.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from campaigns.models import Message, MessageEvent, TrackedLink

logger = logging.getLogger(__name__)

QUEUE = "default"
MAX_EVENTS_PER_DELIVERY = 100
# Waits before each retry; a delivery is given up after the last one fails.
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=12),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
FAILING_AFTER = 5  # failed attempts in a row
CLAIM_DURATION = timedelta(minutes=2)  # an attempt's timeout is far shorter
LOST_JOB_AFTER = timedelta(minutes=2)
REQUEUE_BATCH = 500
DISPATCH_BATCH = 1000  # event ids per dispatch job
KEEP_DELIVERIES = timedelta(days=30)
PRUNE_BATCH = 2000
SIGNATURE_HEADER = "XES-Signature"
DELIVERY_HEADER = "XES-Delivery"
SIGNATURE_TOLERANCE = 300  # seconds, for verify_signature

Status = WebhookDelivery.Status


# --- signing ------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``XES-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: int = SIGNATURE_TOLERANCE
) -> bool:
    """What a receiver does: the reference for the snippet on the endpoint page (and the tests)."""
    fields: dict[str, list[str]] = {}
    for item in header.split(","):
        key, _sep, value = item.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = now if now is not None else timezone.now().timestamp()
    if abs(current - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


# --- from events to deliveries ------------------------------------------------------------------


def events_stored(events: Sequence[Any]) -> int:
    """Receiver side (cheap): if an organisation of these events has an enabled endpoint, queue
    :func:`dispatch` for its events. Returns how many event ids were queued."""
    organisations = {e.organisation_id for e in events}
    if not organisations:
        return 0
    wanted = set(
        WebhookEndpoint.objects.filter(enabled=True, organisation_id__in=organisations).values_list(
            "organisation_id", flat=True
        )
    )
    ids = [e.id for e in events if e.organisation_id in wanted]
    for start in range(0, len(ids), DISPATCH_BATCH):
        chunk = ids[start : start + DISPATCH_BATCH]
        transaction.on_commit(partial(_enqueue, "campaigns.automation.jobs.dispatch_events_job", chunk))
    return len(ids)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)


def dispatch(event_ids: Iterable[int]) -> int:
    """Turn stored events into deliveries for every enabled endpoint that subscribes to them;
    returns how many deliveries were created (their jobs are queued after commit)."""
    rows = list(
        MessageEvent.objects.filter(pk__in=list(event_ids))
        .order_by("at", "pk")
        .values("id", "message_id", "organisation_id", "type", "subtype", "at", "machine", "link_id")
    )
    if not rows:
        return 0
    endpoints = list(
        WebhookEndpoint.objects.filter(enabled=True, organisation_id__in={r["organisation_id"] for r in rows})
    )
    if not endpoints:
        return 0
    messages = {
        m["id"]: m
        for m in Message.objects.filter(pk__in={r["message_id"] for r in rows}).values(
            "id",
            "to_email",
            "sending_account_id",
            "sending_account__client_id",
            "campaign_id",
            "contact_id",
            "provider_message_id",
            "data",
        )
    }
    links = dict(
        TrackedLink.objects.filter(pk__in={r["link_id"] for r in rows if r["link_id"]}).values_list("pk", "url")
    )
    now = timezone.now()
    deliveries: list[WebhookDelivery] = []
    for endpoint in endpoints:
        matching = [
            row
            for row in rows
            if row["organisation_id"] == endpoint.organisation_id
            and row["type"] in endpoint.event_types
            and (endpoint.include_machine or not row["machine"])
            and row["message_id"] in messages
            and (
                endpoint.client_id is None
                or messages[row["message_id"]]["sending_account__client_id"] == endpoint.client_id
            )
        ]
        for start in range(0, len(matching), MAX_EVENTS_PER_DELIVERY):
            chunk = matching[start : start + MAX_EVENTS_PER_DELIVERY]
            deliveries.append(_new_delivery(endpoint, [_event_json(r, messages, links) for r in chunk], now))
    if not deliveries:
        return 0
    with transaction.atomic():
        created = WebhookDelivery.objects.bulk_create(deliveries)
        ids = [d.pk for d in created]
        transaction.on_commit(lambda: _enqueue_deliveries(ids))
    return len(created)


def _event_json(row: dict[str, Any], messages: dict[int, dict[str, Any]], links: dict[int, str]) -> dict[str, Any]:
    message = messages[row["message_id"]]
    data = message["data"] if isinstance(message["data"], dict) else {}
    attributed = data.get("_campaign") if isinstance(data.get("_campaign"), int) else None
    event: dict[str, Any] = {
        "id": row["id"],
        "type": row["type"],
        "subtype": row["subtype"],
        "at": _iso(row["at"]),
        "machine": row["machine"],
        "message": {
            "id": message["id"],
            "to": message["to_email"],
            "sending_account_id": message["sending_account_id"],
            "campaign_id": message["campaign_id"] or attributed,
            "contact_id": message["contact_id"],
            "provider_message_id": message["provider_message_id"] or None,
        },
    }
    if row["link_id"]:
        event["link"] = links.get(row["link_id"])
    return event


def _new_delivery(
    endpoint: WebhookEndpoint, events: list[dict[str, Any]], now: datetime, *, test: bool = False
) -> WebhookDelivery:
    delivery = WebhookDelivery(
        endpoint=endpoint,
        kind=WebhookDelivery.Kind.TEST if test else WebhookDelivery.Kind.EVENTS,
        event_count=len(events),
        event_types=", ".join(sorted({e["type"] for e in events}))[:200],
        status=Status.PENDING,
        created_at=now,
        next_attempt_at=now + LOST_JOB_AFTER,
    )
    delivery.payload = _dumps({"delivery": str(delivery.uid), "created_at": _iso(now), "test": test, "events": events})
    return delivery


def send_test_event(endpoint: WebhookEndpoint) -> WebhookDelivery:
    """Queue a delivery with one event of type ``test`` (whatever the endpoint subscribes to)."""
    now = timezone.now()
    event = {
        "id": None,
        "type": "test",
        "subtype": "",
        "at": _iso(now),
        "machine": False,
        "message": None,
    }
    delivery = _new_delivery(endpoint, [event], now, test=True)
    delivery.save()
    transaction.on_commit(lambda: _enqueue_deliveries([delivery.pk]))
    return delivery


# --- delivering ----------------------------------------------------------------------------------


def _enqueue(job: str, *args: Any) -> None:
    try:
        django_rq.get_queue(QUEUE).enqueue(job, *args)
    except Exception:  # noqa: BLE001 - the rows wait for the minute tick
        logger.exception("could not queue %s; the tick will", job)


def _enqueue_deliveries(ids: Iterable[int]) -> None:
    for pk in ids:
        _enqueue("campaigns.automation.jobs.deliver_webhook_job", pk)


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    """Take the delivery for one attempt (a conditional UPDATE: one job at a time)."""
    due = Q(status=Status.PENDING) | Q(status__in=[Status.RETRYING, Status.SENDING], next_attempt_at__lte=now)
    claimed = WebhookDelivery.objects.filter(due, pk=delivery_id).update(
        status=Status.SENDING, next_attempt_at=now + CLAIM_DURATION, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("endpoint").get(pk=delivery_id)


def deliver(delivery_id: int) -> str:
    """One attempt of a delivery that is due; returns its status afterwards ("" if it was not due).

    1. claim it (pending, a due retry, or a claim whose worker died);
    2. sign the stored body with the current time and POST it (netguard checks the address again);
    3. log the attempt; succeed on 2xx, else schedule the next retry or give up;
    4. update the endpoint's health.
    """
    now = timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        return ""
    endpoint = delivery.endpoint
    if not endpoint.enabled:
        _finish(delivery, Status.FAILED, now, error=_("The endpoint is disabled."))
        return Status.FAILED
    body = delivery.payload.encode()
    timestamp = int(now.timestamp())
    headers = {
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
        DELIVERY_HEADER: str(delivery.uid),
    }
    status_code: int | None = None
    response_body = ""
    error = ""
    duration = 0
    try:
        response = netguard.post(endpoint.url, body, headers)
    except netguard.UnsafeDestination as exc:
        error = str(exc)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = describe_error(exc)
    else:
        status_code, response_body, duration = response.status, response.body, response.duration_ms
        if not 200 <= status_code < 300:
            error = (
                _("Redirects are not followed: answer %(status)d.") % {"status": status_code}
                if 300 <= status_code < 400
                else _("The endpoint answered %(status)d.") % {"status": status_code}
            )
    finished = timezone.now()
    if not duration:
        duration = max(0, int((finished - now).total_seconds() * 1000))
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        started_at=now,
        status_code=status_code,
        duration_ms=duration,
        succeeded=not error,
        error=error[:500],
        response_body=response_body,
    )
    if not error:
        status = Status.SUCCEEDED
    elif delivery.attempts >= MAX_ATTEMPTS:
        status = Status.FAILED
    else:
        status = Status.RETRYING
    _finish(delivery, status, finished, error=error, status_code=status_code, duration=duration)
    _update_health(endpoint.pk, succeeded=not error, at=finished)
    return status


def describe_backoff() -> str:
    """The retry schedule in words: "1 minute, 5 minutes, ..., 12 hours"."""
    parts = []
    for step in BACKOFF:
        minutes = int(step.total_seconds() // 60)
        if minutes % 60 == 0:
            parts.append(ngettext("%(n)d hour", "%(n)d hours", minutes // 60) % {"n": minutes // 60})
        else:
            parts.append(ngettext("%(n)d minute", "%(n)d minutes", minutes) % {"n": minutes})
    return ", ".join(parts)


def describe_error(exc: BaseException) -> str:
    """A short, plain description of a failed request for the delivery log."""
    if isinstance(exc, TimeoutError):
        return _("No answer within the time limit.")
    if isinstance(exc, ConnectionRefusedError):
        return _("The connection was refused.")
    if isinstance(exc, OSError) and exc.__class__.__name__.startswith("SSL"):
        return _("TLS error: %(error)s") % {"error": exc}
    return f"{exc.__class__.__name__}: {exc}"[:500]


def _finish(
    delivery: WebhookDelivery,
    status: str,
    at: datetime,
    *,
    error: str = "",
    status_code: int | None = None,
    duration: int | None = None,
) -> None:
    next_at = at + BACKOFF[delivery.attempts - 1] if status == Status.RETRYING else None
    WebhookDelivery.objects.filter(pk=delivery.pk, status=Status.SENDING, attempts=delivery.attempts).update(
        status=status,
        next_attempt_at=next_at,
        last_status_code=status_code,
        last_duration_ms=duration,
        last_error=error[:500],
        finished_at=at if status in (Status.SUCCEEDED, Status.FAILED) else None,
    )


def _update_health(endpoint_id: int, *, succeeded: bool, at: datetime) -> None:
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint_id)
    if succeeded:
        endpoints.update(consecutive_failures=0, failing_since=None, last_success_at=at)
        return
    endpoints.update(consecutive_failures=F("consecutive_failures") + 1, last_failure_at=at)
    endpoints.filter(failing_since__isnull=True, consecutive_failures__gte=FAILING_AFTER).update(failing_since=at)


def retry_now(delivery: WebhookDelivery) -> bool:
    """Make a failed or waiting delivery due now (one more attempt, also after giving up)."""
    changed = WebhookDelivery.objects.filter(pk=delivery.pk, status__in=[Status.FAILED, Status.RETRYING]).update(
        status=Status.RETRYING, next_attempt_at=timezone.now(), finished_at=None
    )
    if changed:
        # After giving up, this is one more attempt: it fails for good if it fails (attempts >= MAX).
        transaction.on_commit(lambda: _enqueue_deliveries([delivery.pk]))
    return bool(changed)


def requeue_due(now: datetime | None = None) -> int:
    """The minute tick: queue deliveries whose retry is due, whose job was lost, or whose worker
    died during an attempt. Returns how many were queued."""
    now = now or timezone.now()
    ids = list(
        WebhookDelivery.objects.filter(
            status__in=[Status.PENDING, Status.SENDING, Status.RETRYING], next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:REQUEUE_BATCH]
    )
    _enqueue_deliveries(ids)
    return len(ids)


def prune(now: datetime | None = None) -> int:
    """Delete finished deliveries older than :data:`KEEP_DELIVERIES` (one batch per call)."""
    cutoff = (now or timezone.now()) - KEEP_DELIVERIES
    ids = list(
        WebhookDelivery.objects.filter(status__in=[Status.SUCCEEDED, Status.FAILED], created_at__lt=cutoff)
        .order_by()
        .values_list("pk", flat=True)[:PRUNE_BATCH]
    )
    if not ids:
        return 0
    WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
    WebhookDelivery.objects.filter(pk__in=ids).delete()
    return len(ids)
