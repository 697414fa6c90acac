"""Trigger rules: event-triggered e-mails, once per rule and recipient.

Clicks and opens: :func:`events_stored` (the receiver of :data:`campaigns.signals.message_events`)
only looks whether an enabled rule watches a campaign of the batch's human opens and clicks, and
queues :func:`fire_for_events` with those event ids. Machine opens and clicks (privacy proxies,
scanners) never fire a rule.

"Did not open within N days": :func:`fire_not_opened`, queued by the minute tick at most every
:data:`NOT_OPENED_INTERVAL`, looks at the campaign's messages sent (or delivered) at least N days
ago that have no human open or click, and fires for each. A recipient who opened after the N days
but before the scan is not mailed; one who opens later than that does not undo the e-mail.

Once per recipient: :func:`fire` inserts the :class:`~campaigns.automation.models.Firing` row
(unique per rule and lower-case address) and queues the message through
:func:`campaigns.sending.queueing.queue_triggered` in one transaction. Of two concurrent events for
the same recipient, the second insert waits for the first transaction and then fails on the unique
constraint, so it sends nothing; the message's idempotency key repeats the guarantee in the outbox.
Suppressed addresses are the pipeline's business (a ``suppressed`` message, no credit used); a
refusal (no credits, a suspended account, an unverified sender) is recorded on the firing and not
retried.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import django_rq
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.services import ServiceError
from campaigns.automation.models import Firing, TriggerRule
from campaigns.models import Message, MessageEvent, TrackedLink

logger = logging.getLogger(__name__)

QUEUE = "default"
EVENT_BATCH = 1000  # event ids per job
NOT_OPENED_BATCH = 500  # messages per scan job; a full batch queues the next one
NOT_OPENED_INTERVAL = timedelta(minutes=10)
# The scan looks back this far before its mark, so a message recorded late is not missed.
NOT_OPENED_OVERLAP = timedelta(hours=1)
HUMAN_EVENTS = (MessageEvent.Type.OPEN, MessageEvent.Type.CLICK)
LIVE_TRIGGERS = (TriggerRule.Event.CLICK, TriggerRule.Event.OPEN)
# Message data key naming the rule that sent a triggered message ("_" keys are the portal's own).
RULE_DATA_KEY = "_rule"


def _enqueue(job: str, *args: Any) -> None:
    try:
        django_rq.get_queue(QUEUE).enqueue(job, *args)
    except Exception:  # noqa: BLE001 - a lost click cannot be recovered here; log it
        logger.exception("could not queue %s%r", job, args)


# --- clicks and opens ----------------------------------------------------------------------------


def events_stored(events: Sequence[Any]) -> int:
    """Receiver side (cheap): queue the human opens and clicks of campaigns that an enabled rule
    watches. Returns how many event ids were queued."""
    candidates = [e for e in events if e.type in HUMAN_EVENTS and not e.machine and e.campaign_id is not None]
    if not candidates:
        return 0
    watched = set(
        TriggerRule.objects.filter(
            enabled=True, event__in=LIVE_TRIGGERS, campaign_id__in={e.campaign_id for e in candidates}
        ).values_list("campaign_id", flat=True)
    )
    ids = [e.id for e in candidates if e.campaign_id in watched]
    for start in range(0, len(ids), EVENT_BATCH):
        chunk = ids[start : start + EVENT_BATCH]
        transaction.on_commit(partial(_enqueue, "campaigns.automation.jobs.fire_for_events_job", chunk))
    return len(ids)


def _matches(rule: TriggerRule, event: dict[str, Any], link_hashes: dict[int, str]) -> bool:
    if event["campaign_id"] != rule.campaign_id or event["machine"]:
        return False
    if rule.event == TriggerRule.Event.OPEN:
        # A click implies an open (the images may have been blocked).
        return event["type"] in HUMAN_EVENTS
    if rule.event == TriggerRule.Event.CLICK and event["type"] == MessageEvent.Type.CLICK:
        return not rule.link_url_hash or link_hashes.get(event["link_id"] or 0) == rule.link_url_hash
    return False


def fire_for_events(event_ids: Iterable[int]) -> int:
    """Fire the rules that these stored events match; returns how many rules fired."""
    events = list(
        MessageEvent.objects.filter(pk__in=list(event_ids), type__in=HUMAN_EVENTS, machine=False)
        .order_by("at", "pk")
        .values("id", "message_id", "campaign_id", "type", "machine", "link_id")
    )
    if not events:
        return 0
    rules = list(
        TriggerRule.objects.filter(
            enabled=True, event__in=LIVE_TRIGGERS, campaign_id__in={e["campaign_id"] for e in events}
        ).select_related("template", "sender__sending_account", "campaign")
    )
    if not rules:
        return 0
    messages = {
        m["id"]: m
        for m in Message.objects.filter(pk__in={e["message_id"] for e in events}).values(
            "id", "to_email", "contact_id", "campaign_id"
        )
    }
    link_hashes = dict(
        TrackedLink.objects.filter(pk__in={e["link_id"] for e in events if e["link_id"]}).values_list("pk", "url_hash")
    )
    emails = {m["to_email"].lower() for m in messages.values()}
    done = set(Firing.objects.filter(rule__in=rules, email__in=emails).values_list("rule_id", "email"))
    fired = 0
    for event in events:
        message = messages.get(event["message_id"])
        if message is None or message["campaign_id"] != event["campaign_id"]:
            continue
        email = message["to_email"].lower()
        for rule in rules:
            if (rule.pk, email) in done or not _matches(rule, event, link_hashes):
                continue
            done.add((rule.pk, email))
            if fire(
                rule,
                email,
                contact_id=message["contact_id"],
                source_message_id=message["id"],
                source_event_id=event["id"],
            ):
                fired += 1
    return fired


# --- firing ---------------------------------------------------------------------------------------


def idempotency_key(rule: TriggerRule, email: str) -> str:
    """The triggered message's idempotency key: one message per rule and address, in the outbox too."""
    return f"_rule:{rule.pk}:{hashlib.sha256(email.encode()).hexdigest()[:40]}"


def fire(
    rule: TriggerRule,
    email: str,
    *,
    contact_id: int | None = None,
    source_message_id: int | None = None,
    source_event_id: int | None = None,
) -> Firing | None:
    """Send the rule's e-mail to ``email`` unless the rule already fired for it; returns the new
    firing (``None`` if it had fired). See the module docstring for the guarantees."""
    from campaigns.sending.queueing import queue_triggered

    email = email.strip().lower()
    account = rule.sender.sending_account
    with transaction.atomic():
        try:
            with transaction.atomic():
                firing = Firing.objects.create(
                    rule=rule,
                    organisation_id=rule.organisation_id,
                    email=email,
                    contact_id=contact_id,
                    source_message_id=source_message_id,
                    source_event_id=source_event_id,
                )
        except IntegrityError:
            return None
        try:
            with transaction.atomic():
                message, created = queue_triggered(
                    account,
                    rule.template,
                    email,
                    {RULE_DATA_KEY: rule.pk},
                    sender=rule.sender,
                    promotional=rule.promotional,
                    idempotency_key=idempotency_key(rule, email),
                )
                if created and contact_id is not None:
                    # Merge fields ({{ contact.first_name }}) come from the campaign's contact.
                    Message.objects.filter(pk=message.pk).update(contact_id=contact_id)
        except (ServiceError, ValidationError) as exc:
            firing.status = Firing.Status.REFUSED
            firing.error = _message_of(exc)[:300]
            logger.info("trigger rule %s refused for %s: %s", rule.pk, email, firing.error)
        else:
            firing.message = message
            firing.status = (
                Firing.Status.SUPPRESSED if message.status == Message.Status.SUPPRESSED else Firing.Status.QUEUED
            )
        firing.save(update_fields=["status", "error", "message"])
    return firing


def _message_of(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(str(m) for m in exc.messages)
    return str(exc)


# --- not opened within N days ---------------------------------------------------------------------


def queue_not_opened_scans() -> int:
    """Queue one scan job per enabled "did not open" rule; returns how many."""
    rules = list(
        TriggerRule.objects.filter(enabled=True, event=TriggerRule.Event.NOT_OPENED).values_list("pk", flat=True)
    )
    for rule_id in rules:
        _enqueue("campaigns.automation.jobs.fire_not_opened_job", rule_id)
    return len(rules)


def not_opened_candidates(rule: TriggerRule, cutoff: datetime) -> Any:
    """The campaign's messages sent up to ``cutoff`` without a human open or click and without a
    firing of this rule (oldest first)."""
    messages = Message.objects.filter(
        campaign_id=rule.campaign_id,
        status__in=[Message.Status.SENT, Message.Status.DELIVERED],
        sent_at__lte=cutoff,
    )
    if rule.scanned_until is not None:
        messages = messages.filter(sent_at__gt=rule.scanned_until - NOT_OPENED_OVERLAP)
    human = MessageEvent.objects.filter(message_id=OuterRef("pk"), type__in=HUMAN_EVENTS, machine=False)
    fired = Firing.objects.filter(rule_id=rule.pk, email=Lower(OuterRef("to_email")))
    return messages.exclude(Exists(human)).exclude(Exists(fired)).order_by("sent_at", "pk")


def fire_not_opened(rule_id: int, now: datetime | None = None, limit: int = NOT_OPENED_BATCH) -> int:
    """Fire a "not opened within N days" rule for up to ``limit`` due recipients; returns how many
    fired. When fewer were due, the scan mark moves to the cutoff; otherwise another job follows."""
    now = now or timezone.now()
    rule = (
        TriggerRule.objects.filter(pk=rule_id, enabled=True, event=TriggerRule.Event.NOT_OPENED)
        .select_related("template", "sender__sending_account", "campaign")
        .first()
    )
    if rule is None or not rule.delay_days:
        return 0
    cutoff = now - rule.delay
    batch = list(not_opened_candidates(rule, cutoff).values("id", "to_email", "contact_id")[:limit])
    fired = 0
    for message in batch:
        if fire(rule, message["to_email"], contact_id=message["contact_id"], source_message_id=message["id"]):
            fired += 1
    if len(batch) < limit:
        TriggerRule.objects.filter(pk=rule.pk, updated_at=rule.updated_at).update(scanned_until=cutoff)
    else:
        _enqueue("campaigns.automation.jobs.fire_not_opened_job", rule.pk)
    return fired
