"""Storing and processing checked SNS messages (:class:`~deliverability.models.SnsNotification`).

1. :func:`store` (in the request): one ``INSERT ... ON CONFLICT (sns_message_id) DO NOTHING``; the
   unique MessageId makes SNS's retries and any replay, sequential or concurrent, a no-op. Only a
   new row queues a job (after commit). If the queue is unreachable the row waits for the sweep.
2. :func:`process` (the job): claims the row with a conditional ``UPDATE`` (pending -> processing),
   so one job at most works on it, then
   - ``SubscriptionConfirmation``: confirms through the SNS API's ``ConfirmSubscription`` (never by
     requesting ``SubscribeURL``), for an allowed topic only;
   - ``UnsubscribeConfirmation``: kept and marked ignored (logged: someone unsubscribed us);
   - ``Notification``: parses the SES event in ``Message``; non-JSON, unknown event types, events
     without a ``mail`` object or without a sending account of ours are marked ignored; the rest is
     marked processed and then announced with :data:`deliverability.signals.provider_event`, exactly
     as the sandbox provider announces its events.
   Marking comes before announcing, in a conditional ``UPDATE`` that only the claiming job can make:
   a crash can lose an announcement but never repeat it (receivers count, so twice is worse).
3. :func:`requeue_stalled` (a cron job): re-queues rows whose job was lost, releases claims older
   than ``CLAIM_TIMEOUT`` (a worker died before announcing), and gives up after ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from functools import partial
from typing import Any

import boto3
import django_rq
from botocore.exceptions import BotoCoreError, ClientError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import SendingAccount
from deliverability.models import ProviderSetup, SnsNotification
from deliverability.providers.ses import SesProvider
from deliverability.signals import provider_event
from deliverability.webhooks import sns

logger = logging.getLogger(__name__)

QUEUE = "default"
JOB = "deliverability.jobs.process_sns_notification_job"
Outcome = SnsNotification.Outcome

EVENT_TYPES = frozenset(
    {
        "Send",
        "Delivery",
        "Bounce",
        "Complaint",
        "Reject",
        "DeliveryDelay",
        "RenderingFailure",
        "Open",
        "Click",
        "Subscription",
    }
)
# SES identity notifications (feedback forwarding) say "notificationType"; their payload otherwise
# has the event-publishing shape.
NOTIFICATION_TYPES = frozenset({"Bounce", "Complaint", "Delivery"})
# Set by the sending pipeline (campaigns.sending.providers.message_tags); deliverability must not
# import campaigns, so the name is repeated here.
TAG_ACCOUNT = "xes_account"
TAG_CONFIGURATION_SET = "ses:configuration-set"
ACCOUNT_ID_RE = re.compile(r"[0-9]{1,18}")

CLAIM_TIMEOUT = timedelta(minutes=10)
LOST_JOB_AFTER = timedelta(minutes=2)
MAX_ATTEMPTS = 5
REQUEUE_BATCH = 1000
ERROR_MAX_LENGTH = 2000


# --- 1. storing ---------------------------------------------------------------------------


def store(message: sns.SnsMessage, body: str) -> int | None:
    """Store ``message`` raw; the new row's id, or ``None`` if its MessageId is already stored."""
    table = connection.ops.quote_name(SnsNotification._meta.db_table)
    sql = (
        f"INSERT INTO {table} (sns_message_id, topic_arn, type, body, received_at, event_type, "
        "provider_message_id, outcome, error, attempts) VALUES (%s, %s, %s, %s, %s, '', '', %s, '', 0) "
        "ON CONFLICT (sns_message_id) DO NOTHING RETURNING id"
    )
    params: list[Any] = [message.message_id, message.topic_arn, message.type, body, timezone.now(), Outcome.PENDING]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        logger.info("SNS message %s already stored", message.message_id)
        return None
    notification_id = int(row[0])
    transaction.on_commit(partial(enqueue, notification_id))
    return notification_id


def enqueue(notification_id: int) -> bool:
    """Queue the processing job; a failure is logged and left to :func:`requeue_stalled`."""
    try:
        django_rq.get_queue(QUEUE).enqueue(JOB, notification_id)
    except Exception:  # the row is stored; the sweep queues it later
        logger.exception("could not queue SNS notification %s; the sweep will", notification_id)
        return False
    return True


# --- 2. processing ------------------------------------------------------------------------


class Ignore(Exception):
    """The notification is fine but there is nothing to do with it (the message says why)."""


def process(notification_id: int) -> str:
    """Process one stored notification if it is still pending; returns its outcome (or ``""`` if
    another job has it or had it)."""
    claimed_at = timezone.now()
    claimed = SnsNotification.objects.filter(pk=notification_id, outcome=Outcome.PENDING).update(
        outcome=Outcome.PROCESSING, claimed_at=claimed_at, attempts=F("attempts") + 1
    )
    if not claimed:
        return ""
    notification = SnsNotification.objects.get(pk=notification_id)
    try:
        if notification.type == SnsNotification.Type.NOTIFICATION:
            return _process_event(notification)
        if notification.type == SnsNotification.Type.SUBSCRIPTION_CONFIRMATION:
            return _confirm_subscription(notification)
        logger.warning("SNS unsubscribed this endpoint from %s; subscribe it again in AWS", notification.topic_arn)
        raise Ignore("unsubscribe confirmation: subscribe the endpoint again to receive events")
    except Ignore as verdict:
        return Outcome.IGNORED if _finish(notification, Outcome.IGNORED, str(verdict)) else ""
    except Exception as exc:  # recorded on the row for the team, who can reprocess it
        logger.exception("SNS notification %s failed", notification_id)
        return Outcome.FAILED if _finish(notification, Outcome.FAILED, f"{type(exc).__name__}: {exc}") else ""


def _finish(notification: SnsNotification, outcome: str, error: str = "", **fields: Any) -> bool:
    """Record the outcome, only if this job's claim still stands (the sweep may have released it)."""
    done = SnsNotification.objects.filter(
        pk=notification.pk, outcome=Outcome.PROCESSING, claimed_at=notification.claimed_at
    ).update(
        outcome=outcome,
        error=error[:ERROR_MAX_LENGTH],
        processed_at=timezone.now(),
        event_type=notification.event_type,
        provider_message_id=notification.provider_message_id,
        **fields,
    )
    return bool(done)


def parse_event(notification: SnsNotification) -> dict[str, Any]:
    """The SES event in the notification's ``Message``, in the event-publishing shape; raises
    :class:`Ignore` for what is not one."""
    envelope = json.loads(notification.body)
    try:
        event = json.loads(envelope["Message"])
    except ValueError as exc:
        raise Ignore("message is not JSON") from exc
    if not isinstance(event, dict):
        raise Ignore("message is not a JSON object")
    if "eventType" not in event and event.get("notificationType") in NOTIFICATION_TYPES:
        event = {"eventType": event["notificationType"], **event}
    event_type = event.get("eventType") or event.get("notificationType")
    if not isinstance(event_type, str):
        raise Ignore("message is not an SES event")
    notification.event_type = event_type[:40]
    if event_type not in EVENT_TYPES:
        raise Ignore(f"unknown event type {event_type[:60]!r}")
    mail = event.get("mail")
    if not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str):
        raise Ignore("event without a mail object")
    notification.provider_message_id = mail["messageId"][:100]
    return event


def _first_tag(tags: Any, name: str) -> str:
    """SES gives each tag as a list of values; the first, or ``""``."""
    if not isinstance(tags, dict):
        return ""
    value = tags.get(name)
    if isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, str) else ""


def sending_account_for(mail: dict[str, Any]) -> int | None:
    """The sending account of ours that sent ``mail``: its ``xes_account`` tag if that account
    exists, else the account whose configuration set SES names. When both are there and disagree,
    the configuration set wins: SES sets it, while tags come from the message."""
    tags = mail.get("tags")
    by_set: int | None = None
    if configuration_set := _first_tag(tags, TAG_CONFIGURATION_SET):
        owners = list(
            ProviderSetup.objects.filter(configuration_set=configuration_set).values_list(
                "sending_account_id", flat=True
            )[:2]
        )
        by_set = owners[0] if len(owners) == 1 else None
    by_tag: int | None = None
    tagged = _first_tag(tags, TAG_ACCOUNT)
    if ACCOUNT_ID_RE.fullmatch(tagged) and SendingAccount.objects.filter(pk=int(tagged)).exists():
        by_tag = int(tagged)
    if by_set is not None and by_tag is not None and by_set != by_tag:
        logger.warning("SES event tagged for account %s but sent through account %s's set", by_tag, by_set)
        return by_set
    return by_tag if by_tag is not None else by_set


def _process_event(notification: SnsNotification) -> str:
    event = parse_event(notification)
    account_id = sending_account_for(event["mail"])
    if account_id is None:
        raise Ignore("no sending account of ours sent this message")
    if not _finish(notification, Outcome.PROCESSED, "", sending_account_id=account_id):
        return ""  # the claim was released meanwhile; the job that holds it now announces
    results = provider_event.send_robust(sender=SesProvider, event=event, sending_account_id=account_id)
    failures = [f"{getattr(receiver, '__qualname__', receiver)}: {error!r}" for receiver, error in results if error]
    if failures:
        logger.error("receivers of SNS notification %s failed: %s", notification.pk, failures)
        SnsNotification.objects.filter(pk=notification.pk).update(error="\n".join(failures)[:ERROR_MAX_LENGTH])
    return Outcome.PROCESSED


def sns_client(region: str) -> Any:
    """The boto3 SNS client for ``region`` (credentials as for SES: environment or instance role)."""
    return boto3.client("sns", region_name=region)


def _confirm_subscription(notification: SnsNotification) -> str:
    """Confirm through the SNS API with the message's token; ``SubscribeURL`` is never requested."""
    if notification.topic_arn not in sns.allowed_topics():
        raise Ignore("topic no longer allowed")
    fields = json.loads(notification.body)
    region = sns.topic_region(notification.topic_arn)
    if not region:
        raise Ignore("topic is not an SNS ARN")
    try:
        answer = sns_client(region).confirm_subscription(
            TopicArn=notification.topic_arn, Token=fields["Token"], AuthenticateOnUnsubscribe="true"
        )
    except (BotoCoreError, ClientError) as exc:
        done = _finish(notification, Outcome.FAILED, f"ConfirmSubscription failed: {exc}")
        return Outcome.FAILED if done else ""
    subscription = str(answer.get("SubscriptionArn", ""))
    logger.info("SNS subscription to %s confirmed: %s", notification.topic_arn, subscription)
    done = _finish(notification, Outcome.PROCESSED, f"subscription confirmed: {subscription}")
    return Outcome.PROCESSED if done else ""


# --- 3. the sweep and the team's reprocessing ---------------------------------------------------


def requeue_stalled() -> int:
    """Queue again what waits without a job; returns how many were queued.

    1. claims older than ``CLAIM_TIMEOUT`` are released (or failed after ``MAX_ATTEMPTS``);
    2. rows pending for longer than ``LOST_JOB_AFTER`` are queued again (the claim makes a second
       job for a row that still has one harmless).
    """
    now = timezone.now()
    stale = Q(outcome=Outcome.PROCESSING, claimed_at__lt=now - CLAIM_TIMEOUT)
    SnsNotification.objects.filter(stale, attempts__gte=MAX_ATTEMPTS).update(
        outcome=Outcome.FAILED, processed_at=now, error="gave up: the job never finished"
    )
    SnsNotification.objects.filter(stale).update(outcome=Outcome.PENDING, claimed_at=None)
    ids = list(
        SnsNotification.objects.filter(outcome=Outcome.PENDING, received_at__lt=now - LOST_JOB_AFTER)
        .order_by("received_at")
        .values_list("pk", flat=True)[:REQUEUE_BATCH]
    )
    return sum(enqueue(pk) for pk in ids)


REPROCESSABLE = frozenset({Outcome.FAILED, Outcome.IGNORED})


def reprocess(ids: list[int]) -> int:
    """Put failed or ignored notifications back in the queue (the XES team's admin action).

    Processed ones are left alone: their event was announced and announcing twice counts twice.
    """
    with transaction.atomic():
        chosen = list(
            SnsNotification.objects.select_for_update()
            .filter(pk__in=ids, outcome__in=REPROCESSABLE)
            .values_list("pk", flat=True)
        )
        SnsNotification.objects.filter(pk__in=chosen).update(
            outcome=Outcome.PENDING, claimed_at=None, processed_at=None, attempts=0, error=""
        )
        for pk in chosen:
            transaction.on_commit(partial(enqueue, pk))
    return len(chosen)


def prune(older_than: timedelta, batch: int = 10_000) -> int:
    """Delete finished notifications received before ``older_than`` ago, in batches; returns how many.

    ``older_than`` must stay above :data:`sns.MAX_AGE`, or a replay could pass the dedupe.
    """
    cutoff = timezone.now() - max(older_than, sns.MAX_AGE * 2)
    total = 0
    while True:
        ids = list(
            SnsNotification.objects.filter(received_at__lt=cutoff)
            .exclude(outcome__in=(Outcome.PENDING, Outcome.PROCESSING))
            .values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return total
        total += SnsNotification.objects.filter(pk__in=ids).delete()[0]
