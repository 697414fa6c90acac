"""Pause, resume and cancel a campaign; reconcile rows whose worker died; the campaign's progress.

Every function here locks the campaign row first (``SELECT ... FOR UPDATE``): workers share-lock it
when they claim or put back rows, so the set of a campaign's queued rows cannot change while one of
these functions counts and settles their credits. See :mod:`campaigns.sending.worker` for the credit
invariant these functions keep.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from campaigns.models import Campaign, Message
from campaigns.sending.providers import accepted_message_ids
from deliverability.models import ProviderSetup
from plans.services import reserve

logger = logging.getLogger(__name__)

Status = Campaign.Status
# An unknown row is resolved only this long after its lease expired: a worker that is slow rather
# than dead has then certainly finished its provider call.
UNKNOWN_GRACE = timedelta(seconds=60)
RECONCILE_CHUNK = 1000


def _settle(counts: Counter[int], *, consumed: bool) -> None:
    from campaigns.sending.worker import _settle as settle

    settle(counts, consumed=consumed)


def _release_queued(campaign: Campaign, *, cancel: bool, now: datetime) -> int:
    """Give back the credits of the campaign's queued rows (the campaign row is locked by the caller).

    Unstamped queued rows hold a credit of ``campaign.reservation`` only while the campaign is
    sending; stamped ones hold one of their stamp. Stamps are cleared; with ``cancel`` the rows
    become ``cancelled``. Returns the number of credits released.
    """
    to_release: Counter[int] = Counter()
    with connection.cursor() as cursor:
        if cancel:
            cursor.execute(
                """
                WITH q AS (
                    SELECT id, reservation_id FROM campaigns_message
                    WHERE campaign_id = %s AND status = 'queued' FOR UPDATE
                )
                UPDATE campaigns_message m SET status = 'cancelled', reservation_id = NULL, updated_at = %s
                FROM q WHERE m.id = q.id RETURNING q.reservation_id
                """,
                [campaign.pk, now],
            )
            stamped = [r for (r,) in cursor.fetchall()]
            unstamped = stamped.count(None)
            to_release.update(r for r in stamped if r is not None)
        else:
            cursor.execute(
                """
                WITH q AS (
                    SELECT id, reservation_id FROM campaigns_message
                    WHERE campaign_id = %s AND status = 'queued' AND reservation_id IS NOT NULL FOR UPDATE
                )
                UPDATE campaigns_message m SET reservation_id = NULL, updated_at = %s
                FROM q WHERE m.id = q.id RETURNING q.reservation_id
                """,
                [campaign.pk, now],
            )
            to_release.update(r for (r,) in cursor.fetchall())
            cursor.execute(
                "SELECT count(*) FROM campaigns_message WHERE campaign_id = %s AND status = 'queued'",
                [campaign.pk],
            )
            unstamped = int(cursor.fetchone()[0]) - sum(to_release.values())
    if campaign.status == Status.SENDING and campaign.reservation_id and unstamped:
        to_release[campaign.reservation_id] += unstamped
    _settle(to_release, consumed=False)
    return sum(to_release.values())


def pause_campaign(campaign_id: int, reason: str = "") -> bool:
    """Stop sending a campaign: nothing more is claimed, rows in flight finish, queued rows give
    their credits back (reserved again on resume). False if it was not sending."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status != Status.SENDING:
            return False
        _release_queued(campaign, cancel=False, now=now)
        campaign.status = Status.PAUSED
        campaign.paused_reason = (reason or _("Paused by a user."))[:300]
        campaign.save(update_fields=["status", "paused_reason"])
    return True


def pause_account_campaigns(sending_account_id: int, reason: str, *, only_promotional: bool) -> int:
    """Pause the account's sending campaigns (the provider paused the account, or its standing)."""
    campaigns = Campaign.objects.filter(sending_account_id=sending_account_id, status=Status.SENDING)
    if only_promotional:
        campaigns = campaigns.filter(promotional=True)
    return sum(pause_campaign(pk, reason) for pk in campaigns.values_list("pk", flat=True))


def resume_campaign(campaign_id: int) -> int:
    """Send a paused campaign again: reserves credits for its queued rows and enqueues the work.

    Returns the number of queued rows. Raises :class:`~plans.services.CreditRefused` (the campaign
    stays paused, with the reason). Rows already sent are never sent again: only queued rows are."""
    from campaigns.sending.jobs import enqueue_batches

    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().select_related("sending_account").get(pk=campaign_id)
        if campaign.status != Status.PAUSED:
            return 0
        queued = Message.objects.filter(campaign=campaign, status=Message.Status.QUEUED).count()
        if queued:
            campaign.reservation = reserve(
                campaign.organisation,
                queued,
                sending_account=campaign.sending_account,
                promotional=campaign.promotional,
                purpose=_("Campaign “%(name)s” (resumed)") % {"name": campaign.name},
            )
        campaign.status = Status.SENDING
        campaign.paused_reason = ""
        campaign.save(update_fields=["reservation", "status", "paused_reason"])
        account_id = campaign.sending_account_id
        transaction.on_commit(lambda: enqueue_batches(account_id))
    return queued


def cancel_campaign(campaign_id: int) -> int:
    """Cancel a campaign: queued rows become cancelled and their credits are released; rows in
    flight finish. Returns the number of rows cancelled."""
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
        if campaign.status in (Status.DONE, Status.CANCELLED):
            return 0
        queued = Message.objects.filter(campaign=campaign, status=Message.Status.QUEUED).count()
        _release_queued(campaign, cancel=True, now=now)
        campaign.status = Status.CANCELLED
        campaign.finished_at = now
        campaign.save(update_fields=["status", "finished_at"])
    return queued


# --- reconciliation -----------------------------------------------------------------------------


def reconcile_expired_leases(now: datetime | None = None) -> dict[str, int]:
    """Rows whose worker died (``sending`` with an expired lease) become ``unknown`` — never sent
    again blindly — and unknown rows are resolved from what the provider says it accepted."""
    from campaigns.sending.jobs import reset_job_counter

    now = now or timezone.now()
    stale = Message.objects.filter(status=Message.Status.SENDING, lease_until__lt=now)
    dead_accounts = set(stale.order_by().values_list("sending_account_id", flat=True).distinct())
    expired = stale.update(status=Message.Status.UNKNOWN, updated_at=now)
    for account_id in dead_accounts:
        # Their jobs are gone too: let the account get fresh ones at once.
        reset_job_counter(account_id)
    sent, requeued = resolve_unknown(now)
    return {"expired": expired, "sent": sent, "requeued": requeued}


def resolve_unknown(now: datetime | None = None) -> tuple[int, int]:
    """Ask each account's provider about its unknown rows: accepted ones become ``sent`` (credit
    consumed), the others go back to the queue. Providers that cannot tell leave them unknown."""
    from campaigns.sending.jobs import enqueue_batches

    now = now or timezone.now()
    sent = requeued = 0
    candidates = (
        Message.objects.filter(status=Message.Status.UNKNOWN, lease_until__lt=now - UNKNOWN_GRACE)
        .order_by("sending_account_id", "pk")
        .values_list("sending_account_id", "pk")
    )
    by_account: dict[int, list[int]] = {}
    for account_id, pk in candidates.iterator(chunk_size=RECONCILE_CHUNK):
        by_account.setdefault(account_id, []).append(pk)
    for account_id, ids in by_account.items():
        setup = ProviderSetup.objects.filter(sending_account_id=account_id).first()
        if setup is None:
            continue
        for start in range(0, len(ids), RECONCILE_CHUNK):
            chunk = ids[start : start + RECONCILE_CHUNK]
            accepted = accepted_message_ids(setup, chunk)
            if accepted is None:
                logger.info("provider of account %s cannot tell about %s unknown messages", account_id, len(chunk))
                break
            s, r = _resolve(chunk, accepted, now)
            sent, requeued = sent + s, requeued + r
        enqueue_batches(account_id)
    return sent, requeued


def _resolve(ids: list[int], accepted: dict[int, str], now: datetime) -> tuple[int, int]:
    to_consume: Counter[int] = Counter()
    to_release: Counter[int] = Counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, status FROM campaigns_campaign WHERE id IN "
            "(SELECT DISTINCT campaign_id FROM campaigns_message WHERE id = ANY(%s)) ORDER BY id FOR UPDATE",
            [ids],
        )
        statuses = dict(cursor.fetchall())
        sent_ids = [pk for pk in ids if pk in accepted]
        cursor.execute(
            """
            UPDATE campaigns_message m
            SET status = 'sent', provider_message_id = v.pid, sent_at = COALESCE(m.sent_at, %s),
                lease_until = NULL, updated_at = %s
            FROM unnest(%s::bigint[], %s::text[]) AS v(id, pid)
            WHERE m.id = v.id AND m.status = 'unknown'
            RETURNING m.reservation_id
            """,
            [now, now, sent_ids, [accepted[pk] for pk in sent_ids]],
        )
        sent_rows = cursor.fetchall()
        to_consume.update(r for (r,) in sent_rows if r is not None)
        sent = len(sent_rows)
        back = [pk for pk in ids if pk not in accepted]
        cursor.execute(
            """
            UPDATE campaigns_message m
            SET status = CASE WHEN c.status = 'cancelled' THEN 'cancelled' ELSE 'queued' END,
                claimed_by = '', lease_until = NULL, not_before = NULL, updated_at = %s,
                reservation_id = CASE WHEN c.status IN ('paused', 'cancelled', 'draft') THEN NULL
                                      ELSE m.reservation_id END
            FROM campaigns_message old LEFT JOIN campaigns_campaign c ON c.id = old.campaign_id
            WHERE old.id = m.id AND m.id = ANY(%s) AND m.status = 'unknown'
            RETURNING m.campaign_id, old.reservation_id
            """,
            [now, back],
        )
        returned = cursor.fetchall()
        for campaign_id, reservation_id in returned:
            if statuses.get(campaign_id) in (Status.PAUSED, Status.CANCELLED, Status.DRAFT) and reservation_id:
                to_release[reservation_id] += 1
        # A campaign marked done while these rows were unknown has work again.
        reopen = [pk for pk, status in statuses.items() if status == Status.DONE]
        if reopen and returned:
            Campaign.objects.filter(pk__in={c for c, _r in returned if c in reopen}).update(
                status=Status.SENDING, finished_at=None
            )
        from campaigns.sending.worker import _settle as settle

        settle(to_consume, consumed=True)
        settle(to_release, consumed=False)
    return sent, len(returned)


# --- progress -----------------------------------------------------------------------------------


def campaign_progress(campaign_id: int) -> dict[str, Any]:
    """Counts per message status, the share done and the sending rate of the last minute.

    ``done_percent`` counts everything no longer queued or in flight (sent, failed, suppressed...).
    """
    return campaigns_progress([campaign_id])[campaign_id]


def campaigns_progress(campaign_ids: list[int]) -> dict[int, dict[str, Any]]:
    """:func:`campaign_progress` for many campaigns in two queries (the campaign list)."""
    counts: dict[int, dict[str, int]] = {pk: {} for pk in campaign_ids}
    rows = (
        Message.objects.filter(campaign_id__in=campaign_ids)
        .values_list("campaign_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for campaign_id, status, n in rows:
        counts[campaign_id][status] = n
    minute_ago = timezone.now() - timedelta(minutes=1)
    recent = dict(
        Message.objects.filter(campaign_id__in=campaign_ids, sent_at__gte=minute_ago)
        .values_list("campaign_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    in_flight = (Message.Status.QUEUED, Message.Status.SENDING, Message.Status.UNKNOWN)
    result = {}
    for pk, by_status in counts.items():
        total = sum(by_status.values())
        waiting = sum(by_status.get(s, 0) for s in in_flight)
        result[pk] = {
            "total": total,
            "counts": {status: by_status.get(status, 0) for status in Message.Status.values},
            "done_percent": 100 if not total else (total - waiting) * 100 // total,
            "rate_per_second": round(recent.get(pk, 0) / 60, 1),
        }
    return result
