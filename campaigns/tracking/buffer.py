"""The event buffer: opens and clicks go to a Redis list, a flusher moves them into PostgreSQL in
batches with ``COPY``.

An endpoint does one ``RPUSH`` of a compact record (no database write per request). The flusher
(:func:`flush`, run by ``flush_events_job`` every few seconds and when the buffer passes
:data:`FLUSH_AT` records) is crash-safe, without losing or duplicating events:

1. **take** (one Lua script, atomic): if a batch from a flusher that died is still in the
   processing list, take that again with its batch id; else move up to :data:`BATCH_SIZE` records
   from the incoming list to the processing list and store a new batch id (a UUID made by the
   caller) beside it;
2. **store** (one PostgreSQL transaction): insert the batch id into
   :class:`~campaigns.models.EventBatch` (``ON CONFLICT DO NOTHING``): when it is already there, an
   earlier flusher stored the batch and died before step 3, so nothing is written again;
   otherwise ``COPY`` the events into ``campaigns_messageevent`` (ids taken from its sequence
   first, so each stored event is known by id);
3. **finish**: delete the processing list and the batch id (only if it is still that batch);
4. announce the stored events with :data:`campaigns.signals.message_events`.

A flusher killed before 2 commits leaves the batch in the processing list (redone); killed after
2 and before 3, the ledger row makes the redo a no-op. A lock (``SET NX`` with expiry) keeps
flushers from doing the same work twice at once; correctness does not depend on it.

Records are validated when stored: the message must exist and belong to the organisation the
click token named, and a click's link must belong to it too; anything else is dropped. Machine
flags from who asked are set by the endpoint; the flusher adds the timing ones (within two seconds
of sending, or a burst of clicks on many links, see :mod:`campaigns.tracking.machine`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from campaigns.events import EventRecord, announce
from campaigns.models import EventBatch, Message, MessageEvent, TrackedLink, recipient_domain
from campaigns.tracking import machine

logger = logging.getLogger(__name__)

IN_KEY = "xes:trk:in"
PROCESSING_KEY = "xes:trk:processing"
BATCH_ID_KEY = "xes:trk:batch"
LOCK_KEY = "xes:trk:lock"
TRIGGER_KEY = "xes:trk:triggered"
BATCH_SIZE = 20_000  # records per transaction
FLUSH_AT = 5_000  # buffer length that enqueues a flush at once
LOCK_SECONDS = 30  # a killed flusher delays the next one at most this long (refreshed per batch)
FLUSH_SECONDS = 20.0  # one flush job stops taking new batches after this long
KEEP_BATCHES = timedelta(days=7)  # ledger rows older than this are pruned
USER_AGENT_CHARS = 200

OPEN = "o"
CLICK = "c"
_TYPES = {OPEN: MessageEvent.Type.OPEN, CLICK: MessageEvent.Type.CLICK}

_TAKE = """
local batch = redis.call('GET', KEYS[3])
if batch then
    return {batch, redis.call('LRANGE', KEYS[2], 0, -1)}
end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
if #items == 0 then
    return {false, {}}
end
redis.call('LTRIM', KEYS[1], #items, -1)
redis.call('DEL', KEYS[2])
for i = 1, #items, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
end
redis.call('SET', KEYS[3], ARGV[1])
return {ARGV[1], items}
"""
_FINISH = """
if redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('DEL', KEYS[1], KEYS[2])
    return 1
end
return 0
"""
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_connection: tuple[str, Any] | None = None


def redis_connection() -> Any:
    """A Redis client for ``REDIS_URL`` (one pool per process), or ``None`` without Redis."""
    global _connection
    url = getattr(settings, "REDIS_URL", "")
    if not url:
        return None
    if _connection is None or _connection[0] != url:
        import redis

        _connection = (url, redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2))
    return _connection[1]


# --- the endpoints' side ------------------------------------------------------------------------


def encode(
    kind: str, message_id: int, link_id: int | None, organisation_id: int | None, at: float, agent: str, reason: str
) -> bytes:
    """One buffered record (compact JSON array)."""
    return json.dumps(
        [kind, message_id, link_id, organisation_id, round(at, 3), agent[:USER_AGENT_CHARS], reason],
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def push(record: bytes) -> None:
    """Buffer one record; stored directly when there is no Redis (or it cannot be reached), so
    nothing is lost. Enqueues a flush when the buffer reaches a multiple of :data:`FLUSH_AT`.

    Uses one plain Redis connection per thread rather than the client and its pool: half the CPU
    of a request is the RPUSH, and the client's bookkeeping was most of that."""
    import redis

    url = getattr(settings, "REDIS_URL", "")
    if not url:
        store([record])
        return
    connection = _push_connection(url)
    try:
        try:
            connection.send_command("RPUSH", IN_KEY, record)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            connection.disconnect()  # a stale connection (Redis restarted): one fresh attempt
            connection.send_command("RPUSH", IN_KEY, record)
    except (redis.RedisError, OSError):
        connection.disconnect()
        logger.exception("tracking buffer unavailable: storing the event directly")
        store([record])
        return
    try:
        length = int(connection.read_response())
    except (redis.RedisError, OSError, ValueError):
        # Sent but unanswered: Redis may have it. Storing it here too could count it twice.
        connection.disconnect()
        logger.exception("tracking buffer did not answer; the event may be lost")
        return
    if length % FLUSH_AT == 0:
        _trigger(redis_connection())


_local = threading.local()


def _push_connection(url: str) -> Any:
    state = getattr(_local, "push", None)
    if state is None or state[0] != url or state[1] != os.getpid():
        import redis

        pool = redis.ConnectionPool.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        state = (url, os.getpid(), pool.make_connection())
        _local.push = state
    return state[2]


def _trigger(conn: Any) -> None:
    """Enqueue one flush job (at most one every few seconds)."""
    if not conn.set(TRIGGER_KEY, 1, nx=True, ex=5):
        return
    try:
        import django_rq

        from campaigns.tracking.jobs import flush_events_job

        django_rq.get_queue("default").enqueue(flush_events_job)
    except Exception:  # noqa: BLE001 - the scheduled flush comes anyway
        logger.exception("could not enqueue a tracking flush")


# --- storing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Row:
    message_id: int
    organisation_id: int
    sending_account_id: int
    campaign_id: int | None
    contact_id: int | None
    type: str
    at: datetime
    machine: bool
    link_id: int | None
    recipient_domain: str
    data: dict[str, Any]


def _decode(items: Iterable[bytes]) -> list[list[Any]]:
    records = []
    for item in items:
        try:
            record = json.loads(item)
        except ValueError:
            logger.warning("tracking buffer: unreadable record dropped")
            continue
        if isinstance(record, list) and len(record) == 7 and record[0] in _TYPES:
            records.append(record)
    return records


def _rows(records: list[list[Any]]) -> list[_Row]:
    """Validated rows with what they repeat from their message, machine flags completed.

    One query for the batch's messages (ids as one array parameter; the send time as epoch
    seconds and the recipient's domain computed by PostgreSQL, which is cheaper than in Python)."""
    message_ids = list({r[1] for r in records if isinstance(r[1], int) and 0 < r[1] < 2**63})
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, organisation_id, sending_account_id, campaign_id, contact_id, "
                "lower(split_part(to_email, '@', 2)), extract(epoch FROM sent_at)::float8 "
                f"FROM {Message._meta.db_table} WHERE id = ANY(%s)",
                [message_ids],
            )
            messages = {m[0]: m for m in cursor.fetchall()}
    else:
        messages = {
            pk: (pk, org, account, campaign, contact, recipient_domain(to), sent.timestamp() if sent else None)
            for pk, org, account, campaign, contact, to, sent in Message.objects.filter(pk__in=message_ids).values_list(
                "pk", "organisation_id", "sending_account_id", "campaign_id", "contact_id", "to_email", "sent_at"
            )
        }
    link_ids = {r[2] for r in records if r[0] == CLICK and isinstance(r[2], int)}
    links = dict(TrackedLink.objects.filter(pk__in=link_ids).values_list("pk", "organisation_id")) if link_ids else {}
    window = machine.PREFETCH_WINDOW.total_seconds()
    rows: list[_Row] = []
    for kind, message_id, link_id, organisation_id, ts, agent, reason in records:
        message = messages.get(message_id)
        if message is None:
            continue
        _pk, org_id, account_id, campaign_id, contact_id, domain, sent = message
        if kind == CLICK and (organisation_id != org_id or links.get(link_id) != org_id):
            continue
        ts = float(ts)
        if not reason and sent is not None and 0 <= ts - sent < window:
            reason = machine.PREFETCH
        data: dict[str, Any] = {"ua": agent} if agent else {}
        if reason:
            data["machine"] = reason
        rows.append(
            _Row(
                message_id=message_id,
                organisation_id=org_id,
                sending_account_id=account_id,
                campaign_id=campaign_id,
                contact_id=contact_id,
                type=_TYPES[kind],
                at=datetime.fromtimestamp(ts, tz=UTC),
                machine=bool(reason),
                link_id=link_id if kind == CLICK else None,
                recipient_domain=(domain or "")[:253],
                data=data,
            )
        )
    _flag_bursts(rows)
    return rows


def _flag_bursts(rows: list[_Row]) -> None:
    clicks: dict[int, list[tuple[int, int | None, datetime]]] = {}
    for index, row in enumerate(rows):
        if row.type == MessageEvent.Type.CLICK:
            clicks.setdefault(row.message_id, []).append((index, row.link_id, row.at))
    for items in clicks.values():
        if len(items) < machine.BURST_LINKS:
            continue
        for index in machine.bursts(items):
            row = rows[index]
            if not row.machine:
                row.machine = True
                row.data["machine"] = machine.BURST


_COLUMNS = (
    "id",
    "message_id",
    "organisation_id",
    "sending_account_id",
    "campaign_id",
    "type",
    "subtype",
    "at",
    "machine",
    "link_id",
    "recipient_domain",
    "data",
)


def _as_is(text: str) -> str:
    return text


_TYPES_SQL = [
    "int8",
    "int8",
    "int8",
    "int8",
    "int8",
    "varchar",
    "varchar",
    "timestamptz",
    "bool",
    "int8",
    "varchar",
    "jsonb",
]


def _write(rows: Sequence[_Row]) -> list[int]:
    """Write ``rows`` (inside the caller's transaction); their ids in order."""
    if connection.vendor != "postgresql":
        created = MessageEvent.objects.bulk_create(
            MessageEvent(
                message_id=r.message_id,
                organisation_id=r.organisation_id,
                sending_account_id=r.sending_account_id,
                campaign_id=r.campaign_id,
                type=r.type,
                at=r.at,
                machine=r.machine,
                link_id=r.link_id,
                recipient_domain=r.recipient_domain,
                data=r.data,
            )
            for r in rows
        )
        return [event.pk for event in created]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('campaigns_messageevent', 'id')) FROM generate_series(1, %s)",
            [len(rows)],
        )
        ids = [pk for (pk,) in cursor.fetchall()]
        # Binary COPY: PostgreSQL parses nothing, psycopg encodes in C (15% faster than text).
        from psycopg.types.json import Jsonb

        texts: dict[Any, Jsonb] = {}  # the same data repeats through a batch: serialise each once
        sql = f"COPY campaigns_messageevent ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
        with cursor.cursor.copy(sql) as copy:
            copy.set_types(_TYPES_SQL)
            write_row = copy.write_row
            for pk, r in zip(ids, rows, strict=True):
                key = tuple(r.data.items())
                data = texts.get(key)
                if data is None:
                    serialised = json.dumps(r.data, ensure_ascii=False, separators=(",", ":"))
                    data = texts[key] = Jsonb(serialised, dumps=_as_is)
                write_row(
                    (
                        pk,
                        r.message_id,
                        r.organisation_id,
                        r.sending_account_id,
                        r.campaign_id,
                        r.type,
                        "",
                        r.at,
                        r.machine,
                        r.link_id,
                        r.recipient_domain,
                        data,
                    )
                )
    return ids


def store(items: Iterable[bytes], batch_id: uuid.UUID | None = None) -> list[EventRecord]:
    """Store buffered records in one transaction, once per ``batch_id``; announce them after commit.

    Returns the stored events ([] when the batch was stored before, or nothing was valid)."""
    rows = _rows(_decode(items))
    batch_id = batch_id or uuid.uuid4()
    with transaction.atomic():
        if not _claim_batch(batch_id, len(rows)) or not rows:
            return []
        ids = _write(rows)
        records = [
            EventRecord(
                id=pk,
                message_id=r.message_id,
                organisation_id=r.organisation_id,
                sending_account_id=r.sending_account_id,
                campaign_id=r.campaign_id,
                contact_id=r.contact_id,
                type=r.type,
                subtype="",
                at=r.at,
                machine=r.machine,
                link_id=r.link_id,
            )
            for pk, r in zip(ids, rows, strict=True)
        ]
        announce(records)
    return records


def _claim_batch(batch_id: uuid.UUID, events: int) -> bool:
    """Insert the batch's ledger row; ``False`` when it is there already (the batch was stored).

    A concurrent flusher with the same batch waits here until the first one commits or rolls back."""
    value = batch_id if connection.vendor == "postgresql" else batch_id.hex
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EventBatch._meta.db_table} (id, stored_at, events) VALUES (%s, %s, %s) "
            "ON CONFLICT (id) DO NOTHING RETURNING id",
            [value, timezone.now(), events],
        )
        return cursor.fetchone() is not None


# --- the flusher --------------------------------------------------------------------------------


@dataclass
class FlushResult:
    batches: int = 0
    stored: int = 0
    skipped_batches: int = 0


def take(conn: Any, limit: int = BATCH_SIZE) -> tuple[uuid.UUID | None, list[bytes]]:
    """Step 1: the unfinished batch, or a new one of up to ``limit`` records."""
    batch, items = conn.eval(_TAKE, 3, IN_KEY, PROCESSING_KEY, BATCH_ID_KEY, str(uuid.uuid4()), limit)
    if not batch:
        return None, []
    return uuid.UUID(batch.decode() if isinstance(batch, bytes) else batch), list(items)


def finish(conn: Any, batch_id: uuid.UUID) -> None:
    """Step 3: forget the processing list of ``batch_id``."""
    conn.eval(_FINISH, 2, PROCESSING_KEY, BATCH_ID_KEY, str(batch_id))


def flush(max_seconds: float = FLUSH_SECONDS, batch_size: int = BATCH_SIZE) -> FlushResult:
    """Move buffered events into PostgreSQL until the buffer is empty or ``max_seconds`` passed."""
    result = FlushResult()
    conn = redis_connection()
    if conn is None:
        return result
    token = uuid.uuid4().hex
    if not conn.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS):
        return result
    started = time.monotonic()
    try:
        while time.monotonic() - started < max_seconds:
            batch_id, items = take(conn, batch_size)
            if batch_id is None:
                break
            records = store(items, batch_id)
            finish(conn, batch_id)
            result.batches += 1
            result.stored += len(records)
            if not records and items:
                result.skipped_batches += 1
            conn.expire(LOCK_KEY, LOCK_SECONDS)
    finally:
        conn.eval(_UNLOCK, 1, LOCK_KEY, token)
    return result


def pending() -> int:
    """Records waiting in the buffer (incoming and in processing)."""
    conn = redis_connection()
    if conn is None:
        return 0
    return int(conn.llen(IN_KEY)) + int(conn.llen(PROCESSING_KEY))


def prune_batches(now: datetime | None = None) -> int:
    """Forget ledger rows of batches stored long ago (no flusher can still be redoing them)."""
    cutoff = (now or timezone.now()) - KEEP_BATCHES
    deleted, _ = EventBatch.objects.filter(stored_at__lt=cutoff).delete()
    return deleted
