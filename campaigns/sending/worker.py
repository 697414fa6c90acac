"""Steps 2-4 of the sending pipeline: claim outbox rows, send them once, record the outcome.

Life of a row (``Message.status``):

1. **claim** (one short transaction): up to N due ``queued`` rows of one sending account, oldest
   first, ``SELECT ... FOR UPDATE SKIP LOCKED`` so concurrent workers get disjoint rows; they become
   ``sending`` with ``claimed_by`` and ``lease_until``. A campaign row gets the campaign's current
   reservation stamped on it (its credit lives there from now on). Campaign rows are claimed only
   while the campaign is ``sending``; the campaign row is share-locked first, so pause, resume and
   cancel (which lock it for update) never interleave with a claim.
2. **send**, outside any transaction: suppression re-checked for the batch, a slot from the shared
   rate limiter, render + MIME, ``provider.send_raw``.
3. **record** (one transaction per flush of up to :data:`FLUSH_EVERY` outcomes): ``sent`` + provider
   id and ``consume`` of the credits; ``failed``/``suppressed`` and ``release``; or back to
   ``queued`` (throttling, daily cap, pause). Every update is guarded by ``status = 'sending' AND
   claimed_by = <me>``, so a row the reconciler took away is never recorded twice.

A worker that dies between 2 and 3 leaves ``sending`` rows whose lease expires; they are never sent
again blindly: :func:`campaigns.sending.control.reconcile_expired_leases` asks the provider.

Credit invariant (per campaign): ``campaign.reservation`` holds one credit per queued unstamped row
while the campaign is sending; every ``queued``/``sending``/``unknown`` row with a stamped
reservation holds one credit there. Pausing releases the credits of queued rows, resuming reserves
them again; so at the end, credits consumed = messages sent.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import SenderAddress, SendingAccount
from campaigns.models import Campaign, Contact, Message, Template
from campaigns.rules import contact_fields
from campaigns.sending.providers import message_tags
from campaigns.sending.ratelimit import DailyCapReached, Limiter
from campaigns.sending.render import Builder, Outgoing
from deliverability.models import ProviderSetup
from deliverability.providers import (
    DeliveryProvider,
    MessageRejected,
    OutcomeUnknown,
    ProviderError,
    SendingPaused,
    Throttled,
    ensure_setup,
)
from deliverability.reputation.services import rate_factor
from deliverability.suppressions import blocks, suppression_reasons
from plans.models import Reservation
from plans.services import consume, release

logger = logging.getLogger(__name__)

BATCH_SIZE = 200  # rows per claim
FLUSH_EVERY = 100  # outcomes per recording transaction
FLUSH_SECONDS = 0.5  # ... or this often, whichever comes first
BACKOFF_BASE = 0.5  # seconds; doubled per attempt, jittered, capped
BACKOFF_MAX = 60.0
THROTTLE_PAUSE = 0.25  # seconds every worker of the account waits after a throttling answer
PAUSED_RETRY = timedelta(minutes=5)  # triggered mail while the provider pauses the account
INTERRUPT_WAIT = 5.0  # seconds an interrupted batch waits for its provider calls in flight
SWITCH_INTERVAL = 0.0005  # seconds; see Batch.run


def lease_duration() -> timedelta:
    return timedelta(seconds=int(getattr(settings, "SENDING_LEASE_SECONDS", 120)))


def worker_name() -> str:
    """Who holds a lease: host and process (RQ forks a process per job, so read it each time)."""
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def backoff(attempts: int) -> float:
    """Seconds before a throttled row is tried again: exponential in its attempts, with jitter."""
    base = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, min(attempts - 1, 10)))
    return base * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not security


@dataclass
class Row:
    id: int
    campaign_id: int | None
    contact_id: int | None
    template_id: int
    sender_id: int
    to_email: str
    data: dict[str, Any]
    promotional: bool
    token: str
    reservation_id: int | None
    attempts: int


_RETURNING = (
    "m.id, m.campaign_id, m.contact_id, m.template_id, m.sender_id, m.to_email, m.data, m.promotional, "
    "m.token, m.reservation_id, m.attempts"
)


def _rows(cursor: Any) -> list[Row]:
    import json

    rows = []
    for values in cursor.fetchall():
        row = Row(*values)
        if isinstance(row.data, str):
            row.data = json.loads(row.data)
        rows.append(row)
    return rows


def claim(sending_account_id: int, limit: int, worker: str, now: datetime | None = None) -> list[Row]:
    """Claim up to ``limit`` due queued rows of the account (triggered first, then campaigns).

    One transaction: the share locks on the account's sending campaigns come first (the lock order
    everywhere is campaign, then messages, then credits).

    Oldest first by ``created_at`` alone, which the partial index ``message_queued_claim`` serves in
    order: a campaign's rows all share one ``created_at``, so a tie-break on ``id`` made PostgreSQL
    sort every queued row of the account on each claim (36 ms per claim at 100,000 rows, growing
    with the campaign). Within one instant the index returns rows in insertion order anyway.
    """
    now = now or timezone.now()
    lease_until = now + lease_duration()
    rows: list[Row] = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"""
            UPDATE campaigns_message m
            SET status = 'sending', claimed_by = %s, lease_until = %s, attempts = m.attempts + 1, updated_at = %s
            WHERE m.id IN (
                SELECT id FROM campaigns_message
                WHERE sending_account_id = %s AND status = 'queued' AND campaign_id IS NULL
                  AND (not_before IS NULL OR not_before <= %s)
                ORDER BY created_at LIMIT %s
                FOR UPDATE SKIP LOCKED
            ) AND m.status = 'queued'
            RETURNING {_RETURNING}
            """,
            [worker, lease_until, now, sending_account_id, now, limit],
        )
        rows = _rows(cursor)
        if len(rows) >= limit:
            return rows
        cursor.execute(
            "SELECT id, reservation_id FROM campaigns_campaign WHERE sending_account_id = %s AND status = 'sending' "
            "ORDER BY id FOR SHARE",
            [sending_account_id],
        )
        campaigns = cursor.fetchall()
        if not campaigns:
            return rows
        ids = [pk for pk, _reservation in campaigns]
        cursor.execute(
            f"""
            WITH c(id, reservation_id) AS (SELECT * FROM unnest(%s::bigint[], %s::bigint[])),
            picked AS (
                SELECT id FROM campaigns_message
                WHERE sending_account_id = %s AND status = 'queued' AND campaign_id = ANY(%s)
                  AND (not_before IS NULL OR not_before <= %s)
                ORDER BY created_at LIMIT %s
                FOR UPDATE SKIP LOCKED
            )
            UPDATE campaigns_message m
            SET status = 'sending', claimed_by = %s, lease_until = %s, attempts = m.attempts + 1, updated_at = %s,
                reservation_id = COALESCE(m.reservation_id, c.reservation_id)
            FROM picked, c
            WHERE m.id = picked.id AND c.id = m.campaign_id AND m.status = 'queued'
            RETURNING {_RETURNING}
            """,
            [
                ids,
                [reservation for _pk, reservation in campaigns],
                sending_account_id,
                ids,
                now,
                limit - len(rows),
                worker,
                lease_until,
                now,
            ],
        )
        rows += _rows(cursor)
    return rows


# --- outcomes -------------------------------------------------------------------------------


@dataclass
class Outcomes:
    """What happened to claimed rows since the last flush."""

    sent: list[tuple[int, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)  # (id, status, reason)
    requeued: list[tuple[int, datetime | None]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sent) + len(self.failed) + len(self.requeued)


def _settle(counts: Counter[int], *, consumed: bool) -> None:
    """Consume or release credits: ``counts`` maps reservation id -> number of rows."""
    for reservation_id, n in sorted(counts.items()):
        if not n:
            continue
        reservation = Reservation.objects.select_related("organisation").get(pk=reservation_id)
        if consumed:
            consume(reservation, n)
        else:
            release(reservation, n)


def record(outcomes: Outcomes, worker: str, now: datetime | None = None) -> None:
    """Write the outcomes of one flush and settle their credits, in one transaction."""
    if not len(outcomes):
        return
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        to_consume: Counter[int] = Counter()
        to_release: Counter[int] = Counter()
        if outcomes.requeued:
            _requeue(cursor, outcomes.requeued, worker, now, to_release)
        if outcomes.sent:
            ids, provider_ids = zip(*outcomes.sent, strict=True)
            cursor.execute(
                """
                UPDATE campaigns_message m
                SET status = 'sent', provider_message_id = v.pid, sent_at = %s, lease_until = NULL,
                    error = '', updated_at = %s
                FROM unnest(%s::bigint[], %s::text[]) AS v(id, pid)
                WHERE m.id = v.id AND m.status = 'sending' AND m.claimed_by = %s
                RETURNING m.reservation_id
                """,
                [now, now, list(ids), list(provider_ids), worker],
            )
            to_consume.update(r for (r,) in cursor.fetchall() if r is not None)
        if outcomes.failed:
            ids, statuses, reasons = zip(*outcomes.failed, strict=True)
            cursor.execute(
                """
                UPDATE campaigns_message m
                SET status = v.status, error = v.reason, lease_until = NULL, updated_at = %s
                FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, status, reason)
                WHERE m.id = v.id AND m.status = 'sending' AND m.claimed_by = %s
                RETURNING m.reservation_id
                """,
                [now, list(ids), list(statuses), list(reasons), worker],
            )
            to_release.update(r for (r,) in cursor.fetchall() if r is not None)
        _settle(to_consume, consumed=True)
        _settle(to_release, consumed=False)
    outcomes.sent.clear()
    outcomes.failed.clear()
    outcomes.requeued.clear()


def _requeue(
    cursor: Any, requeued: list[tuple[int, datetime | None]], worker: str, now: datetime, to_release: Counter[int]
) -> None:
    """Put claimed rows back: campaign rows of a campaign that is no longer sending give their credit
    back (paused) or are cancelled (cancelled); the others keep their credit and wait ``not_before``.

    The campaigns are share-locked first, so a concurrent pause sees each row either before (still
    ``sending``: not its business) or after (``queued`` with a stamp: it releases that credit)."""
    ids = [pk for pk, _at in requeued]
    cursor.execute(
        "SELECT c.id, c.status FROM campaigns_campaign c WHERE c.id IN "
        "(SELECT campaign_id FROM campaigns_message WHERE id = ANY(%s)) ORDER BY c.id FOR SHARE",
        [ids],
    )
    stopped = {pk: status for pk, status in cursor.fetchall() if status != Campaign.Status.SENDING}
    cursor.execute(
        """
        UPDATE campaigns_message m
        SET status = CASE WHEN c.status = 'cancelled' THEN 'cancelled' ELSE 'queued' END,
            not_before = v.not_before, claimed_by = '', lease_until = NULL, updated_at = %s,
            reservation_id = CASE WHEN m.campaign_id IS NOT NULL AND c.status <> 'sending' THEN NULL
                                  ELSE m.reservation_id END
        FROM unnest(%s::bigint[], %s::timestamptz[]) AS v(id, not_before),
             campaigns_message old LEFT JOIN campaigns_campaign c ON c.id = old.campaign_id
        WHERE m.id = v.id AND old.id = m.id AND m.status = 'sending' AND m.claimed_by = %s
        RETURNING m.campaign_id, old.reservation_id
        """,
        [now, ids, [at for _pk, at in requeued], worker],
    )
    for campaign_id, reservation_id in cursor.fetchall():
        if campaign_id in stopped and reservation_id is not None:
            to_release[reservation_id] += 1


# --- the batch ------------------------------------------------------------------------------


def send_threads(provider: DeliveryProvider) -> int:
    """How many provider calls one batch makes at once.

    SES is network-bound (each call waits for Amazon's answer), so a batch keeps
    ``SENDING_THREADS`` (default 32) calls in flight; a provider may declare its own
    ``send_concurrency``. Every other provider sends inline, one call at a time, in the batch's own
    thread: the sandbox writes to the database inside ``send_raw``, and database connections are
    per thread."""
    declared = getattr(provider, "send_concurrency", None)
    if declared is None:
        declared = getattr(settings, "SENDING_THREADS", 32) if provider.name == ProviderSetup.Provider.SES else 1
    return max(1, int(declared))


# What a send attempt ended with: ("sent", provider id), ("error", ProviderError) or ("skipped", None)
# when the batch stopped (paused, cap reached, interrupted) before the provider was called.
Attempt = tuple[str, Any]


class Batch:
    """Sends the claimed rows of one sending account.

    The batch's own thread does everything that touches the database (look-ups, rendering, recording
    outcomes); with :func:`send_threads` > 1 a pool of threads does only the slot wait and the
    provider call, so a slow provider (100 ms per call) no longer limits a worker to ten messages a
    second. The shared Redis limiter stays the only gate: a thread books its slot when it is free to
    use it, and calls the provider at that slot.
    """

    def __init__(self, account: SendingAccount, setup: ProviderSetup, worker: str, builder: Builder) -> None:
        from campaigns.sending.ratelimit import sending_provider, warmup_cap

        self.account = account
        self.setup = setup
        self.worker = worker
        self.builder = builder
        self.provider = sending_provider(setup)
        # An account on probation is throttled to a share of its rate (deliverability.reputation).
        self.limiter = Limiter(
            setup, self.provider, cap=warmup_cap(account.pk), read_cap=False, factor=rate_factor(account)
        )
        self.outcomes = Outcomes()
        self.last_flush = time.monotonic()
        self.templates: dict[int, Template] = {}
        self.senders: dict[int, SenderAddress] = {}
        self.paused_reason = ""
        self.pause: tuple[str, bool] | None = None  # (reason, promotional campaigns only)
        self.stopping = threading.Event()  # no further provider calls in this batch
        self.resume_at: datetime | None = None  # daily cap reached: skipped rows wait until then

    def flush(self, force: bool = False) -> None:
        due = len(self.outcomes) >= FLUSH_EVERY or time.monotonic() - self.last_flush >= FLUSH_SECONDS
        if force or due:
            record(self.outcomes, self.worker)
            self.last_flush = time.monotonic()

    def _lookups(self, rows: list[Row]) -> dict[int, Contact]:
        for pk in {r.template_id for r in rows} - self.templates.keys():
            self.templates[pk] = Template.objects.get(pk=pk)
        for pk in {r.sender_id for r in rows} - self.senders.keys():
            self.senders[pk] = SenderAddress.objects.get(pk=pk)
        contact_ids = [r.contact_id for r in rows if r.contact_id is not None]
        return Contact.objects.in_bulk(contact_ids)

    def standing_problem(self, row: Row) -> str:
        """Why the account may not send this row now ('' if it may)."""
        standing = SendingAccount.Standing
        if self.account.standing == standing.SUSPENDED:
            return _("The sending account is suspended.")
        if self.account.standing == standing.PROBATION and row.promotional:
            return _("The sending account is on probation: promotional e-mail is paused.")
        return ""

    def run(self, rows: list[Row]) -> None:
        """Send ``rows``; every row ends recorded, requeued, or (if this process dies) leased."""
        threads = send_threads(self.provider)
        pending = deque(rows)  # not handed to a sender yet
        in_flight: dict[Future[Attempt], Row] = {}
        current: Row | None = None  # inline mode: the row in the provider call
        pool = ThreadPoolExecutor(threads, thread_name_prefix="xes-send") if threads > 1 else None
        switch_interval = sys.getswitchinterval()
        if pool is not None:
            # A sending thread whose slot is due waits for the interpreter at most this long (the
            # default, 5 ms, is two and a half send slots at 500/s).
            sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            contacts = self._lookups(rows)
            # One query for the batch, which may mix promotional and transactional messages:
            # transactional mail ignores unsubscribes, never bounces, complaints or manual entries.
            reasons = suppression_reasons(self.account, [r.to_email for r in rows])
            suppressed = {r.id for r in rows if blocks(reasons.get(r.to_email, ""), transactional=not r.promotional)}
            while pending:
                row = pending.popleft()
                if self.stopping.is_set():
                    self.requeue_skipped(row)
                    continue
                prepared = self.prepare(row, contacts, suppressed)
                if prepared is None:
                    continue
                raw, from_address = prepared
                if pool is None:
                    current = row
                    attempt = self.attempt(row, raw, from_address, 1 + len(pending))
                    current = None
                    self.handle(row, attempt)
                    self.flush()
                else:
                    in_flight[pool.submit(self.attempt, row, raw, from_address, 1 + len(pending))] = row
                    self.collect(in_flight, timeout=0)
            while in_flight:
                self.collect(in_flight, timeout=FLUSH_SECONDS)
        except BaseException:
            # Rows never handed to the provider go back; rows in a provider call stay leased for the
            # reconciler, because the provider may have accepted them.
            self.stopping.set()
            for future in list(in_flight):
                if future.cancel():
                    pending.append(in_flight.pop(future))
            if in_flight:
                wait(in_flight, timeout=INTERRUPT_WAIT)
                try:
                    self.collect(in_flight, timeout=0, raising=False)
                except Exception:  # noqa: BLE001 - the original error matters more
                    logger.exception("could not collect the sends in flight")
            self.outcomes.requeued.extend((r.id, None) for r in pending)
            try:
                self.flush(force=True)
            except Exception:  # noqa: BLE001 - the original error matters more; leases cover the rest
                logger.exception(
                    "could not record outcomes after an error (in flight: %s)",
                    [r.id for r in in_flight.values()] or (current and current.id),
                )
            raise
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            sys.setswitchinterval(switch_interval)
        self.flush(force=True)
        from campaigns.sending.control import pause_account_campaigns

        if self.paused_reason:
            pause_account_campaigns(self.account.pk, self.paused_reason, only_promotional=False)
        if self.pause is not None:
            pause_account_campaigns(self.account.pk, self.pause[0], only_promotional=self.pause[1])

    def collect(self, in_flight: dict[Future[Attempt], Row], timeout: float, raising: bool = True) -> None:
        """Record the finished sends (waiting up to ``timeout`` for one), then flush when due.

        A send that failed with something other than a provider error (a bug) stops the batch and
        is re-raised once the other sends are collected; its row stays leased."""
        if timeout:
            wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        crashed: BaseException | None = None
        for future in [f for f in in_flight if f.done()]:
            row = in_flight.pop(future)
            try:
                attempt = future.result()
            except BaseException as exc:  # noqa: BLE001 - decided below: stop, keep the lease, re-raise
                self.stopping.set()
                logger.error("sending message %s failed unexpectedly; its lease stays", row.id, exc_info=exc)
                crashed = crashed or exc
                continue
            self.handle(row, attempt)
        self.flush()
        if crashed is not None and raising:
            raise crashed

    def prepare(self, row: Row, contacts: dict[int, Contact], suppressed: set[int]) -> tuple[bytes, str] | None:
        """The raw message and envelope sender of ``row``, or None when it is not sent (its outcome
        is recorded here: standing problem, suppressed, or a rendering error)."""
        problem = self.standing_problem(row)
        if problem:
            if row.campaign_id is None:
                # A triggered message cannot wait for a person to resume it: it fails with the reason.
                self.outcomes.failed.append((row.id, Message.Status.FAILED, problem))
            else:
                # The campaign pauses (after the flush, see run); its rows go back with their credits.
                self.outcomes.requeued.append((row.id, None))
                self.pause = (problem, self.account.standing != SendingAccount.Standing.SUSPENDED)
            return None
        if row.id in suppressed:
            self.outcomes.failed.append((row.id, Message.Status.SUPPRESSED, _("The address is suppressed.")))
            return None
        template, sender = self.templates[row.template_id], self.senders[row.sender_id]
        contact = contacts.get(row.contact_id) if row.contact_id is not None else None
        outgoing = Outgoing(
            message_id=row.id,
            token=row.token,
            to=row.to_email,
            template=template,
            sender=sender,
            promotional=row.promotional,
            contact=contact_fields(contact) if contact is not None else {"email": row.to_email},
            data=row.data or {},
            extra={"campaign_id": row.campaign_id},
        )
        try:
            raw = self.builder.build(outgoing)
        except Exception as exc:  # noqa: BLE001 - any content error fails this message, not the batch
            self.outcomes.failed.append((row.id, Message.Status.FAILED, _("Could not render: %s") % exc))
            return None
        return raw, sender.email

    def attempt(self, row: Row, raw: bytes, from_address: str, want: int) -> Attempt:
        """Wait for a send slot, then call the provider once (runs in a sending thread; no database)."""
        if self.stopping.is_set():
            return ("skipped", None)
        try:
            # Encoded and signed before the slot, so that the call leaves at the slot's time.
            send = self.provider.prepare_send(
                self.setup,
                raw,
                from_address=from_address,
                recipients=[row.to_email],
                tags=message_tags(self.account.pk, row.campaign_id, row.id),
            )
        except ProviderError as exc:
            return ("error", exc)
        try:
            self.limiter.wait_for_slot(want=want)
        except DailyCapReached as exc:
            self.resume_at = exc.resume_at
            self.stopping.set()
            return ("skipped", None)
        if self.stopping.is_set():
            return ("skipped", None)
        try:
            provider_id = send()
        except ProviderError as exc:
            if isinstance(exc, SendingPaused):
                # Before the flag, so that rows skipped because of it see the reason.
                self.paused_reason = exc.user_message
                self.stopping.set()  # the other threads stop before their provider call
            return ("error", exc)
        return ("sent", provider_id)

    def requeue_skipped(self, row: Row) -> None:
        """A row this batch stopped before sending: back to the queue, waiting as the reason says."""
        if self.resume_at is not None:
            self.outcomes.requeued.append((row.id, self.resume_at))
        elif self.paused_reason:
            # Triggered mail waits a few minutes; campaign rows go back and the campaign pauses.
            later = timezone.now() + PAUSED_RETRY
            self.outcomes.requeued.append((row.id, later if row.campaign_id is None else None))
        else:
            self.outcomes.requeued.append((row.id, None))

    def handle(self, row: Row, attempt: Attempt) -> None:
        """Turn one attempt into its outcome (batch thread)."""
        kind, value = attempt
        if kind == "sent":
            self.outcomes.sent.append((row.id, value))
            return
        if kind == "skipped":
            self.requeue_skipped(row)
            return
        exc: ProviderError = value
        if isinstance(exc, Throttled):
            delay = backoff(row.attempts)
            # The row itself backs off exponentially; the whole account only pauses briefly, since a
            # throttle is mostly a burst that arrived bunched, not a rate that was wrong.
            self.limiter.penalise(min(delay, THROTTLE_PAUSE))
            self.outcomes.requeued.append((row.id, timezone.now() + timedelta(seconds=delay)))
        elif isinstance(exc, MessageRejected):
            self.outcomes.failed.append((row.id, Message.Status.FAILED, exc.reason[:1000]))
        elif isinstance(exc, OutcomeUnknown):
            # The provider may have taken it: the row keeps its lease and, once that expires, is
            # reconciled like a send whose worker died (never sent a second time blindly).
            logger.warning("message %s: the provider's answer is unknown (%s); left for reconciling", row.id, exc)
        elif isinstance(exc, SendingPaused):
            self.paused_reason = exc.user_message
            self.stopping.set()
            self.requeue_skipped(row)
        elif exc.retryable:
            self.outcomes.requeued.append((row.id, timezone.now() + timedelta(seconds=backoff(row.attempts))))
        else:
            self.outcomes.failed.append((row.id, Message.Status.FAILED, exc.describe()[:1000]))


def claim_size(setup: ProviderSetup) -> int:
    """Rows per claim: at most a few seconds of sending at the account's rate (short leases)."""
    from campaigns.sending.ratelimit import provider_rate

    rate = provider_rate(setup)
    return BATCH_SIZE if rate <= 0 else max(1, min(BATCH_SIZE, int(rate * 5)))


def run_batch(sending_account_id: int, builder: Builder | None = None, worker: str | None = None) -> int:
    """Claim and send one batch of the account's due rows; returns how many rows were claimed."""
    account = SendingAccount.objects.get(pk=sending_account_id)
    setup = ensure_setup(account)
    worker = worker or worker_name()
    rows = claim(sending_account_id, claim_size(setup), worker)
    if rows:
        Batch(account, setup, worker, builder or Builder()).run(rows)
    return len(rows)


def finish_campaigns(sending_account_id: int) -> int:
    """Mark the account's sending campaigns with nothing queued or in flight as done."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE campaigns_campaign c SET status = 'done', finished_at = %s
            WHERE c.sending_account_id = %s AND c.status = 'sending' AND NOT EXISTS (
                SELECT 1 FROM campaigns_message m WHERE m.campaign_id = c.id AND m.status IN ('queued', 'sending')
            )
            """,
            [now, sending_account_id],
        )
        return int(cursor.rowcount)


def next_due(sending_account_id: int) -> float | None:
    """Seconds until the account's next queued row may be claimed (0: now; None: nothing waits)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT min(COALESCE(m.not_before, %s)) FROM campaigns_message m
            LEFT JOIN campaigns_campaign c ON c.id = m.campaign_id
            WHERE m.sending_account_id = %s AND m.status = 'queued'
              AND (m.campaign_id IS NULL OR c.status = 'sending')
            """,
            [now, sending_account_id],
        )
        (earliest,) = cursor.fetchone()
    if earliest is None:
        return None
    return max(0.0, (earliest - now).total_seconds())


def summarise(rows: list[Row]) -> dict[str, int]:
    """Counts of claimed rows per campaign (logging)."""
    counts: defaultdict[str, int] = defaultdict(int)
    for row in rows:
        counts[str(row.campaign_id or "triggered")] += 1
    return dict(counts)
