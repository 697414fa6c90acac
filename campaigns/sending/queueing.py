"""Step 1 of the sending pipeline: a campaign or a triggered message becomes outbox rows with credits.

A campaign's recipients are written with one ``INSERT ... SELECT`` (list or segment, one row per
address, suppressed addresses written as ``suppressed`` rows for the report), and the credits for
the queued ones are reserved in the same transaction. The rows of a campaign do not carry a
reservation while queued: they hold a credit of ``campaign.reservation``; a worker stamps that
reservation on a row when it claims it (see :mod:`campaigns.sending.worker`).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import SenderAddress, SendingAccount
from accounts.services import ServiceError, normalise_email
from campaigns.models import Campaign, Message, Template
from deliverability.models import Suppression
from deliverability.suppressions import blocking_reasons
from plans.services import CreditRefused, reserve

logger = logging.getLogger(__name__)

Status = Campaign.Status


def start_campaign(campaign_id: int) -> bool:
    """Move a draft or scheduled campaign to "preparing"; False when it was not (a second click)."""
    changed = Campaign.objects.filter(pk=campaign_id, status__in=[Status.DRAFT, Status.SCHEDULED]).update(
        status=Status.QUEUEING, paused_reason="", started_at=timezone.now()
    )
    return changed == 1


def queue_campaign(campaign_id: int) -> int:
    """Queue a campaign now; returns its number of recipients (queued and suppressed).

    Idempotent: only the call whose conditional UPDATE moved the campaign to "preparing" writes
    anything; every other call (a double click, a retried job) returns the campaign's count.
    Raises :class:`~plans.services.CreditRefused` when the credits are refused: the campaign is a
    draft again with the reason in ``paused_reason`` and nothing written.
    """
    if not start_campaign(campaign_id):
        return int(Campaign.objects.values_list("recipients", flat=True).get(pk=campaign_id))
    return materialise(campaign_id)


def materialise(campaign_id: int) -> int:
    """Write the outbox rows of a campaign in "preparing", reserve their credits, start sending.

    Safe to call again (a job retried after its worker died): it does nothing unless the campaign is
    still "preparing", and the rows and the reservation are written in one transaction.
    """
    from campaigns.sending.jobs import enqueue_batches

    now = timezone.now()
    try:
        with transaction.atomic():
            campaign = Campaign.objects.select_for_update().select_related("sending_account").get(pk=campaign_id)
            if campaign.status != Status.QUEUEING:
                return campaign.recipients
            queued, suppressed = _insert_messages(campaign, now)
            if queued:
                campaign.reservation = reserve(
                    campaign.organisation,
                    queued,
                    sending_account=campaign.sending_account,
                    promotional=campaign.promotional,
                    purpose=_("Campaign “%(name)s”") % {"name": campaign.name},
                )
                campaign.status = Status.SENDING
            else:
                campaign.status, campaign.finished_at = Status.DONE, now
            campaign.recipients = queued + suppressed
            campaign.started_at = campaign.started_at or now
            campaign.save(update_fields=["reservation", "status", "recipients", "started_at", "finished_at"])
    except CreditRefused as exc:
        Campaign.objects.filter(pk=campaign_id, status=Status.QUEUEING).update(
            status=Status.DRAFT, paused_reason=str(exc)[:300]
        )
        raise
    if queued >= ANALYZE_AFTER:
        _analyze_outbox()
    if queued:
        enqueue_batches(campaign.sending_account_id)
    return campaign.recipients


# After writing this many rows at once, refresh the outbox's planner statistics before the workers
# start: with the statistics of the table before the insert (autovacuum's ANALYZE comes later),
# PostgreSQL plans each claim as "every row of the account, then sort" instead of reading the
# partial claim index in order: 20 ms per claim at 40,000 queued rows, growing with the campaign,
# against 0.2 ms. ANALYZE samples a fixed number of rows: about 0.1-0.5 s, once per large campaign.
ANALYZE_AFTER = 10_000


def _analyze_outbox() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}")


def _recipients_sql(campaign: Campaign) -> tuple[str, list[Any]]:
    """SQL selecting the ids of the campaign's contacts (list, or segment through its queryset; for
    "send again", those who received the original and did not open, or did not click)."""
    if campaign.resend_of_id is not None:
        # A click implies the message was opened (images may have been blocked). Opens and clicks by
        # machines (privacy proxies, link scanners) are no response from the person.
        kinds = ["click"] if campaign.resend_filter == Campaign.Resend.NOT_CLICKED else ["open", "click"]
        return (
            "SELECT m.contact_id FROM campaigns_message m WHERE m.campaign_id = %s AND m.contact_id IS NOT NULL"
            " AND m.status IN ('sent', 'delivered') AND NOT EXISTS (SELECT 1 FROM campaigns_messageevent e"
            " WHERE e.message_id = m.id AND e.type = ANY(%s) AND NOT e.machine)",
            [campaign.resend_of_id, kinds],
        )
    if campaign.segment_id is not None:
        from campaigns import segments

        assert campaign.segment is not None
        sql, params = segments.recipients(campaign.segment).values("pk").query.sql_with_params()
        return sql, list(params)
    if campaign.contact_list_id is not None:
        return "SELECT contact_id FROM campaigns_listmembership WHERE contact_list_id = %s", [campaign.contact_list_id]
    raise ServiceError(_("Choose a list or a segment for this campaign."))


def _insert_messages(campaign: Campaign, now: Any) -> tuple[int, int]:
    """One row per distinct address (ignoring case): ``queued``, or ``suppressed`` with the reason.

    Returns (queued, suppressed). Two statements, each a single pass in SQL: the anti-join against
    the account's suppression list is a hash join, never a Python set.
    """
    recipients_sql, recipients_params = _recipients_sql(campaign)
    base = f"""
        WITH r AS (
            SELECT DISTINCT ON (lower(c.email)) c.id, c.email
            FROM campaigns_contact c
            WHERE c.organisation_id = %s AND c.id IN ({recipients_sql})
            ORDER BY lower(c.email), c.id
        ), s AS (
            SELECT DISTINCT ON (lower(email)) lower(email) AS email, reason
            FROM {Suppression._meta.db_table}
            WHERE sending_account_id = %s AND reason = ANY(%s)
            ORDER BY lower(email), created_at
        )
        INSERT INTO campaigns_message (
            organisation_id, sending_account_id, campaign_id, contact_id, template_id, sender_id, to_email,
            data, promotional, status, token, idempotency_key, reservation_id, attempts, claimed_by,
            lease_until, not_before, provider_message_id, error, created_at, sent_at, updated_at
        )
        SELECT %s, %s, %s, r.id, %s, %s, r.email, '{{}}'::jsonb, %s,
               CASE WHEN s.email IS NULL THEN 'queued' ELSE 'suppressed' END,
               replace(gen_random_uuid()::text, '-', ''), NULL, NULL, 0, '', NULL, NULL, '',
               COALESCE(s.reason, ''), %s, NULL, %s
        FROM r LEFT JOIN s ON s.email = lower(r.email)
        ORDER BY r.id
    """
    params = [
        campaign.organisation_id,
        *recipients_params,
        campaign.sending_account_id,
        # Transactional campaigns still go to those who unsubscribed from promotions.
        sorted(blocking_reasons(transactional=not campaign.promotional)),
        campaign.organisation_id,
        campaign.sending_account_id,
        campaign.pk,
        campaign.template_id,
        campaign.sender_id,
        campaign.promotional,
        now,
        now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(base, params)
        cursor.execute(
            "SELECT status, count(*) FROM campaigns_message WHERE campaign_id = %s GROUP BY status", [campaign.pk]
        )
        counts = dict(cursor.fetchall())
    return int(counts.get("queued", 0)), int(counts.get("suppressed", 0))


def default_sender(account: SendingAccount) -> SenderAddress | None:
    """The account's first verified sender address (triggered sends without an explicit sender)."""
    return account.sender_addresses.filter(verified_at__isnull=False).order_by("pk").first()


# ``Message.data`` keys starting with "_" belong to XES, not to API callers' merge data. A triggered
# message attributed to a campaign (for its analytics) carries the campaign's id under
# ``ATTRIBUTION_KEY``: ``Message.campaign`` stays empty because that foreign key means "a recipient of
# this bulk run" (claims, progress, the run's credit reservation), which a triggered message is not.
RESERVED_DATA_PREFIX = "_"
ATTRIBUTION_KEY = "_campaign"


def queue_triggered(
    account: SendingAccount,
    template: Template,
    to: str,
    data: dict[str, Any],
    *,
    sender: SenderAddress | None = None,
    promotional: bool = False,
    idempotency_key: str | None = None,
    campaign: Campaign | None = None,
) -> tuple[Message, bool]:
    """Queue one triggered message; returns (message, created).

    The same ``idempotency_key`` on the same account gives back the first message and sends nothing
    again; the unique constraint decides between concurrent requests. A suppressed address gives a
    ``suppressed`` message and uses no credit. ``campaign`` (of the same sending account) attributes
    the message to that campaign under ``data[ATTRIBUTION_KEY]``; it uses its own credit, never the
    campaign's reservation, and does not count in the campaign's progress. Raises ``ServiceError``
    (including :class:`~plans.services.CreditRefused`) or ``ValidationError`` (bad address) otherwise.
    """
    from campaigns.sending.jobs import enqueue_batches

    key = idempotency_key or None
    if key is not None:
        existing = Message.objects.filter(sending_account=account, idempotency_key=key).first()
        if existing is not None:
            return existing, False
    if template.organisation_id != account.organisation_id:
        raise ServiceError(_("This template belongs to another organisation."))
    # Other "_" keys are the portal's own (the template test send's ``_test_contact``); the API
    # refuses them from callers. The attribution comes from ``campaign`` only, never from the data.
    if ATTRIBUTION_KEY in data:
        raise ServiceError(_("“%(key)s” is reserved in the merge data.") % {"key": ATTRIBUTION_KEY})
    if campaign is not None:
        if campaign.sending_account_id != account.pk:
            raise ServiceError(_("This campaign belongs to another sending account."))
        data = {**data, ATTRIBUTION_KEY: campaign.pk}
    sender = sender or default_sender(account)
    if sender is None or sender.sending_account_id != account.pk or sender.verified_at is None:
        raise ServiceError(_("The sending account has no verified sender address to send from."))
    address = normalise_email(to)
    suppression = (
        Suppression.objects.filter(
            sending_account=account, email__iexact=address, reason__in=blocking_reasons(transactional=not promotional)
        )
        .values_list("reason", flat=True)
        .first()
    )
    fields: dict[str, Any] = {
        "organisation_id": account.organisation_id,
        "sending_account": account,
        "template": template,
        "sender": sender,
        "to_email": address,
        "data": data,
        "promotional": promotional,
        "idempotency_key": key,
    }
    try:
        with transaction.atomic():
            if suppression is not None:
                message = Message.objects.create(**fields, status=Message.Status.SUPPRESSED, error=suppression)
            else:
                reservation = reserve(
                    account.organisation,
                    1,
                    sending_account=account,
                    promotional=promotional,
                    purpose=_("Triggered e-mail"),
                )
                message = Message.objects.create(**fields, reservation=reservation)
    except IntegrityError:
        # A concurrent request with the same key won the insert (its reservation is its own; ours
        # was rolled back with the failed insert).
        if key is None:
            raise
        return Message.objects.get(sending_account=account, idempotency_key=key), False
    if message.status == Message.Status.QUEUED:
        transaction.on_commit(lambda: enqueue_batches(account.pk))
    return message, True
