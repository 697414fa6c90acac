"""Folding message events into the counters of :mod:`campaigns.analytics.models`.

Events are written by many transactions at once (the tracking flusher's ``COPY``, the provider
event receiver, unsubscribes), and a transaction may commit rows with *lower* ids after another one
committed higher ids. An id watermark alone would then skip the late rows for good. The aggregator
therefore only advances its watermark past a **barrier**:

1. Read the last id handed out by the events' id sequence (``W``), then list the transactions
   that hold the sequence's ``RowExclusiveLock``. ``nextval()`` takes that lock and keeps it until
   its transaction ends, so every transaction that may still commit an event with an id up to
   ``W`` is on the list (ids are only handed out after the lock is taken, so reading ``W`` first
   and the lockers second misses none).
2. Wait until every listed transaction has ended (as ``CREATE INDEX CONCURRENTLY`` waits for
   lockers: each transaction holds a lock on its own virtual transaction id while it runs). No
   reader is waited for, and nothing is blocked: writers carry on.
3. Every event with an id up to ``W`` is now committed (or gone with a rollback): count the ids
   after the previous watermark up to ``W``, and store ``W`` as the new watermark in the same
   transaction. A barrier that does not pass within the wait is kept and tried again next run.

Counting is set-based SQL (``INSERT ... SELECT ... GROUP BY ... ON CONFLICT DO UPDATE``): plain
counters add up; unique opens and clicks come from :class:`~campaigns.analytics.models.MessageActivity`
(and :class:`~campaigns.analytics.models.LinkActivity` per link), whose first-activity times only
move earlier. When an earlier open arrives late, its message's unique open moves from the later
hour to the earlier one (-1 there, +1 here), so the incremental numbers equal a rebuild from the
raw events whatever the arrival order. :func:`rebuild` is the same SQL over all events at once.

One aggregator runs at a time (a PostgreSQL advisory lock); the job that calls it is safe to run
twice. Events deleted with their message are only taken out of the counters by a rebuild.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from campaigns.analytics.models import (
    AccountDomainDay,
    AccountHour,
    AggregationState,
    CampaignDomain,
    CampaignHour,
    CampaignLink,
    LinkActivity,
    MessageActivity,
    OrgDomainDay,
)
from campaigns.models import MessageEvent

logger = logging.getLogger(__name__)

__all__ = ["RunResult", "aggregation_state", "rebuild", "run_incremental", "take_barrier"]

EVENTS = MessageEvent._meta.db_table
# Ids per transaction when catching up on a backlog (a rebuild does all in one).
CHUNK = 250_000
# pg_advisory_lock key of the aggregator ("analytics" in a 63-bit number).
LOCK_KEY = 0x616E616C79746963
# How long a run waits for the writers of a barrier before leaving it to the next run.
WAIT_SECONDS = 5.0
REBUILD_WAIT_SECONDS = 60.0
REBUILD_WORK_MEM = "1GB"

# The condition of each plain counter (every event type but "subscription" counts).
PLAIN = {
    "sent": "type = 'send'",
    "delivered": "type = 'delivery'",
    "hard_bounces": "type = 'bounce' AND subtype = 'permanent'",
    "soft_bounces": "type = 'bounce' AND subtype <> 'permanent'",
    "complaints": "type = 'complaint'",
    "rejects": "type = 'reject'",
    "delays": "type = 'delivery_delay'",
    "rendering_failures": "type = 'rendering_failure'",
    "opens": "type = 'open' AND NOT machine",
    "machine_opens": "type = 'open' AND machine",
    "clicks": "type = 'click' AND NOT machine",
    "machine_clicks": "type = 'click' AND machine",
    "unsubscribes": "type = 'unsubscribe'",
}
# unique counter -> MessageActivity column (delta columns of the temporary table share the names).
UNIQUE = {
    "unique_opens": "first_open",
    "unique_opens_all": "first_open_any",
    "unique_clicks": "first_click",
    "unique_clicks_all": "first_click_any",
}
FIRST = {
    "first_open": "type = 'open' AND NOT machine",
    "first_open_any": "type = 'open'",
    "first_click": "type = 'click' AND NOT machine",
    "first_click_any": "type = 'click'",
}
LINK_FIRST = ("first_click", "first_click_any")


@dataclass(frozen=True)
class Target:
    """A counter table: its name, key columns, and the SQL of its time column (if any)."""

    table: str
    key: tuple[str, ...]  # the unique constraint's columns, as ON CONFLICT names them
    time: tuple[str, str] | None  # (column, SQL over the timestamp ``{t}``)
    domain: bool = False


HOUR = "date_trunc('hour', {t}, 'UTC')"
DAY = "({t} AT TIME ZONE 'UTC')::date"
TARGETS = (
    Target(CampaignHour._meta.db_table, ("campaign_id", "sending_account_id", "hour"), ("hour", HOUR)),
    Target(AccountHour._meta.db_table, ("sending_account_id", "hour"), ("hour", HOUR)),
    Target(CampaignDomain._meta.db_table, ("campaign_id", "sending_account_id", "recipient_domain"), None, True),
    Target(AccountDomainDay._meta.db_table, ("sending_account_id", "day", "recipient_domain"), ("day", DAY), True),
    Target(OrgDomainDay._meta.db_table, ("organisation_id", "day", "recipient_domain"), ("day", DAY), True),
)
ALL_TABLES = (
    CampaignHour,
    AccountHour,
    CampaignDomain,
    AccountDomainDay,
    OrgDomainDay,
    CampaignLink,
    MessageActivity,
    LinkActivity,
)


@dataclass(frozen=True)
class RunResult:
    """What a run did: the ids it counted, and whether a barrier is still waiting."""

    counted_from: int
    counted_upto: int
    waiting: bool
    busy: bool = False
    seconds: float = 0.0

    @property
    def events(self) -> int:
        return self.counted_upto - self.counted_from


# --- the barrier ---------------------------------------------------------------------------------


def take_barrier(cursor: Any) -> tuple[int, list[str]]:
    """The last event id handed out, and the transactions that may still commit ids up to it."""
    cursor.execute("SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')), 0)", [EVENTS])
    upto = int(cursor.fetchone()[0])
    cursor.execute(
        """
        SELECT coalesce(array_agg(DISTINCT virtualtransaction), '{}')
        FROM pg_locks
        WHERE locktype = 'relation'
          AND relation = pg_get_serial_sequence(%s, 'id')::regclass
          AND mode = 'RowExclusiveLock'
          AND pid IS DISTINCT FROM pg_backend_pid()
        """,
        [EVENTS],
    )
    return upto, list(cursor.fetchone()[0])


def _lockers_running(cursor: Any, lockers: list[str]) -> int:
    if not lockers:
        return 0
    cursor.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid::text = ANY(%s)", [lockers]
    )
    return int(cursor.fetchone()[0])


def _wait_for(cursor: Any, lockers: list[str], seconds: float) -> bool:
    """Whether all ``lockers`` ended within ``seconds`` (polled, never blocking anyone)."""
    deadline = time.monotonic() + seconds
    pause = 0.005
    while _lockers_running(cursor, lockers):
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    return True


# --- counting ------------------------------------------------------------------------------------


def _source(lo: int, hi: int) -> str:
    """The events with ids in ``(lo, hi]`` that count (integers: safe to inline)."""
    # Every type but "subscription" counts (one comparison per row, not a list).
    return f"(SELECT * FROM {EVENTS} WHERE id > {int(lo)} AND id <= {int(hi)} AND type <> 'subscription') AS ev"


def _upsert(cursor: Any, target: str, key: tuple[str, ...], columns: list[str], select: str) -> None:
    """``INSERT ... SELECT`` into a counter table, adding ``columns`` to rows that exist."""
    updates = ", ".join(f"{c} = t.{c} + EXCLUDED.{c}" for c in columns)
    cursor.execute(
        f"INSERT INTO {target} AS t ({', '.join(key_columns(key))}, {', '.join(columns)}) {select} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def key_columns(key: tuple[str, ...]) -> tuple[str, ...]:
    """The inserted key columns: the organisation first (it follows from the sending account)."""
    return key if "organisation_id" in key else ("organisation_id", *key)


def _count_plain(cursor: Any, lo: int, hi: int) -> None:
    """Add the plain counters (numbers of events) of ids ``(lo, hi]``."""
    counts = [f"count(*) FILTER (WHERE {cond})" for cond in PLAIN.values()]
    columns = list(PLAIN)
    source = _source(lo, hi)
    for target in TARGETS:
        exprs = {}
        if target.time:
            exprs[target.time[0]] = target.time[1].format(t="at")
        group = ", ".join(exprs.get(k, k) for k in key_columns(target.key))
        select = f"SELECT {group}, {', '.join(counts)} FROM {source} GROUP BY {group}"
        _upsert(cursor, target.table, target.key, columns, select)
    link_key = ("campaign_id", "sending_account_id", "link_id")
    _upsert(
        cursor,
        CampaignLink._meta.db_table,
        link_key,
        ["clicks", "machine_clicks"],
        f"SELECT organisation_id, campaign_id, sending_account_id, link_id, "
        f"count(*) FILTER (WHERE NOT machine), count(*) FILTER (WHERE machine) "
        f"FROM {source} WHERE type = 'click' AND link_id IS NOT NULL "
        f"GROUP BY organisation_id, campaign_id, sending_account_id, link_id",
    )


def _count_unique(cursor: Any, lo: int, hi: int) -> None:
    """Move first-activity times earlier with the events of ids ``(lo, hi]`` and turn each change
    into unique-counter deltas: +1 where a first activity now is, -1 where it was before."""
    source = _source(lo, hi)
    activity = MessageActivity._meta.db_table
    firsts = ", ".join(f"min(at) FILTER (WHERE {cond}) AS {col}" for col, cond in FIRST.items())
    olds = ", ".join(f"a.{col} AS {col}_0, LEAST(a.{col}, b.{col}) AS {col}_1" for col in FIRST)
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE _analytics_act ON COMMIT DROP AS
        SELECT b.message_id,
               coalesce(a.organisation_id, b.organisation_id) AS organisation_id,
               coalesce(a.sending_account_id, b.sending_account_id) AS sending_account_id,
               CASE WHEN a.message_id IS NULL THEN b.campaign_id ELSE a.campaign_id END AS campaign_id,
               coalesce(a.recipient_domain, b.recipient_domain) AS recipient_domain,
               {olds}
        FROM (
            SELECT message_id, max(organisation_id) AS organisation_id,
                   max(sending_account_id) AS sending_account_id, max(campaign_id) AS campaign_id,
                   max(recipient_domain) AS recipient_domain, {firsts}
            FROM {source} WHERE type IN ('open', 'click') GROUP BY message_id
        ) AS b
        LEFT JOIN {activity} AS a ON a.message_id = b.message_id
        """
    )
    changed = " OR ".join(f"{c}_1 IS DISTINCT FROM {c}_0" for c in FIRST)
    parts = []
    for index, column in enumerate(UNIQUE.values()):
        flags = ["0"] * len(UNIQUE)
        base = "organisation_id, sending_account_id, campaign_id, recipient_domain"
        flags[index] = "1"
        parts.append(
            f"SELECT {base}, {column}_1 AS t, {', '.join(flags)} FROM _analytics_act "
            f"WHERE {column}_1 IS DISTINCT FROM {column}_0"
        )
        flags[index] = "-1"
        parts.append(
            f"SELECT {base}, {column}_0 AS t, {', '.join(flags)} FROM _analytics_act "
            f"WHERE {column}_1 IS DISTINCT FROM {column}_0 AND {column}_0 IS NOT NULL"
        )
    names = ", ".join(UNIQUE)
    cursor.execute(
        f"CREATE TEMPORARY TABLE _analytics_delta "
        f"(organisation_id, sending_account_id, campaign_id, recipient_domain, t, {names}) ON COMMIT DROP AS "
        + " UNION ALL ".join(parts)
    )
    sums = ", ".join(f"sum({c})::int" for c in UNIQUE)
    for target in TARGETS:
        exprs = {}
        if target.time:
            exprs[target.time[0]] = target.time[1].format(t="t")
        group = ", ".join(exprs.get(k, k) for k in key_columns(target.key))
        _upsert(
            cursor,
            target.table,
            target.key,
            list(UNIQUE),
            f"SELECT {group}, {sums} FROM _analytics_delta GROUP BY {group}",
        )
    columns = ", ".join(FIRST)
    cursor.execute(
        f"""
        INSERT INTO {activity} (message_id, organisation_id, sending_account_id, campaign_id, recipient_domain,
                                {columns})
        SELECT message_id, organisation_id, sending_account_id, campaign_id, recipient_domain,
               {", ".join(f"{c}_1" for c in FIRST)}
        FROM _analytics_act WHERE {changed}
        ON CONFLICT (message_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in FIRST)}
        """
    )
    _count_link_unique(cursor, source)


def _count_link_unique(cursor: Any, source: str) -> None:
    """Per-link unique clicks: a message counts once per link, the first time it clicks it."""
    activity = LinkActivity._meta.db_table
    olds = ", ".join(f"a.{col} AS {col}_0, LEAST(a.{col}, b.{col}) AS {col}_1" for col in LINK_FIRST)
    firsts = ", ".join(f"min(at) FILTER (WHERE {FIRST[col]}) AS {col}" for col in LINK_FIRST)
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE _analytics_link_act ON COMMIT DROP AS
        SELECT b.message_id, b.link_id,
               coalesce(a.organisation_id, b.organisation_id) AS organisation_id,
               coalesce(a.sending_account_id, b.sending_account_id) AS sending_account_id,
               CASE WHEN a.message_id IS NULL THEN b.campaign_id ELSE a.campaign_id END AS campaign_id,
               {olds}
        FROM (
            SELECT message_id, link_id, max(organisation_id) AS organisation_id,
                   max(sending_account_id) AS sending_account_id, max(campaign_id) AS campaign_id, {firsts}
            FROM {source} WHERE type = 'click' AND link_id IS NOT NULL GROUP BY message_id, link_id
        ) AS b
        LEFT JOIN {activity} AS a ON a.message_id = b.message_id AND a.link_id = b.link_id
        """
    )
    # No time column on the link counters: only a first click ever counts.
    _upsert(
        cursor,
        CampaignLink._meta.db_table,
        ("campaign_id", "sending_account_id", "link_id"),
        ["unique_clicks", "unique_clicks_all"],
        "SELECT organisation_id, campaign_id, sending_account_id, link_id, "
        "count(*) FILTER (WHERE first_click_0 IS NULL AND first_click_1 IS NOT NULL)::int, "
        "count(*) FILTER (WHERE first_click_any_0 IS NULL AND first_click_any_1 IS NOT NULL)::int "
        "FROM _analytics_link_act "
        "WHERE (first_click_0 IS NULL AND first_click_1 IS NOT NULL) "
        "   OR (first_click_any_0 IS NULL AND first_click_any_1 IS NOT NULL) "
        "GROUP BY organisation_id, campaign_id, sending_account_id, link_id",
    )
    changed = " OR ".join(f"{c}_1 IS DISTINCT FROM {c}_0" for c in LINK_FIRST)
    cursor.execute(
        f"""
        INSERT INTO {activity} (message_id, link_id, organisation_id, sending_account_id, campaign_id,
                                {", ".join(LINK_FIRST)})
        SELECT message_id, link_id, organisation_id, sending_account_id, campaign_id,
               {", ".join(f"{c}_1" for c in LINK_FIRST)}
        FROM _analytics_link_act WHERE {changed}
        ON CONFLICT (message_id, link_id) DO UPDATE SET {", ".join(f"{c} = EXCLUDED.{c}" for c in LINK_FIRST)}
        """
    )


def count_events(lo: int, hi: int) -> None:
    """Fold the events with ids ``(lo, hi]`` into every counter (inside the caller's transaction)."""
    with connection.cursor() as cursor:
        _count_plain(cursor, lo, hi)
        _count_unique(cursor, lo, hi)
        cursor.execute("DROP TABLE IF EXISTS _analytics_act, _analytics_delta, _analytics_link_act")


# --- the rebuild ---------------------------------------------------------------------------------
# The same numbers as :func:`count_events`, computed differently (so that comparing the two is a
# real check): first activities straight into their tables, then one pass over the events with
# GROUPING SETS for every plain counter, one pass over the first activities for every unique one,
# and the counter tables filled from those two (small) results.

_GROUP_HOUR, _GROUP_DAY_DOMAIN, _GROUP_LINK = 3, 5, 6  # GROUPING(hour, recipient_domain, link_id)
# The plain counters of a rebuild, computed by a second connection while the first one builds the
# first-activity tables (both cores at work); an ordinary table, so that the first one can read it.
PLAIN_STAGING = "analytics_rebuild_plain"


def _plain_select(upto: int) -> str:
    """One pass over the events for every plain counter: GROUPING SETS by hour, by day and
    recipient domain, and by link (``g`` tells the sets apart)."""
    hour, day = HOUR.format(t="at"), DAY.format(t="at")
    counts = ", ".join(f"count(*) FILTER (WHERE {cond}) AS {name}" for name, cond in PLAIN.items())
    return f"""
        SELECT organisation_id, sending_account_id, campaign_id, {hour} AS hour, {day} AS day, recipient_domain,
               link_id, GROUPING({hour}, recipient_domain, link_id) AS g, {counts}
        FROM {_source(0, upto)}
        GROUP BY organisation_id, sending_account_id, campaign_id,
                 GROUPING SETS (({hour}), ({day}, recipient_domain), (link_id))
        """


def _stage_plain(upto: int) -> str:
    """The plain counters of every event up to ``upto`` into :data:`PLAIN_STAGING`, in this
    thread's own connection and transaction (every such event is committed: see the barrier)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {PLAIN_STAGING}")
            with transaction.atomic():
                cursor.execute(f"SET LOCAL work_mem = '{REBUILD_WORK_MEM}'")
                cursor.execute("SET LOCAL jit = off")
                cursor.execute(f"CREATE UNLOGGED TABLE {PLAIN_STAGING} AS {_plain_select(upto)}")
        return PLAIN_STAGING
    finally:
        connection.close()


def recount_all(cursor: Any, upto: int, plain: Callable[[], str] | None = None) -> None:
    """Replace every counter with the count of the events with ids up to ``upto`` (inside the
    caller's transaction). The first-activity tables, which no report reads, are truncated; the
    report tables are emptied with DELETE, so readers see the old numbers until the commit.

    ``plain`` waits for the plain counters computed by another connection (see :func:`rebuild`)
    and names their table; without it they are computed here."""
    source = _source(0, upto)
    cursor.execute(f"TRUNCATE {MessageActivity._meta.db_table}, {LinkActivity._meta.db_table}")
    firsts = ", ".join(f"min(at) FILTER (WHERE {cond})" for cond in FIRST.values())
    cursor.execute(
        f"""
        INSERT INTO {MessageActivity._meta.db_table}
            (message_id, organisation_id, sending_account_id, campaign_id, recipient_domain, {", ".join(FIRST)})
        SELECT message_id, max(organisation_id), max(sending_account_id), max(campaign_id), max(recipient_domain),
               {firsts}
        FROM {source} WHERE type IN ('open', 'click') GROUP BY message_id
        """
    )
    link_firsts = ", ".join(f"min(at) FILTER (WHERE {FIRST[col]})" for col in LINK_FIRST)
    cursor.execute(
        f"""
        INSERT INTO {LinkActivity._meta.db_table}
            (message_id, link_id, organisation_id, sending_account_id, campaign_id, {", ".join(LINK_FIRST)})
        SELECT message_id, link_id, max(organisation_id), max(sending_account_id), max(campaign_id), {link_firsts}
        FROM {source} WHERE type = 'click' AND link_id IS NOT NULL GROUP BY message_id, link_id
        """
    )
    unique_hour, unique_day = HOUR.format(t="k.t"), DAY.format(t="k.t")
    uniques = ", ".join(f"count(*) FILTER (WHERE k.m = {n}) AS {name}" for n, name in enumerate(UNIQUE))
    pairs = ", ".join(f"({n}, {column})" for n, column in enumerate(UNIQUE.values()))
    cursor.execute(
        f"""
        CREATE TEMPORARY TABLE _analytics_unique ON COMMIT DROP AS
        SELECT organisation_id, sending_account_id, campaign_id, {unique_hour} AS hour, {unique_day} AS day,
               recipient_domain, GROUPING({unique_hour}, recipient_domain) AS g, {uniques}
        FROM {MessageActivity._meta.db_table} CROSS JOIN LATERAL (VALUES {pairs}) AS k(m, t)
        WHERE k.t IS NOT NULL
        GROUP BY organisation_id, sending_account_id, campaign_id,
                 GROUPING SETS (({unique_hour}), ({unique_day}, recipient_domain))
        """
    )
    if plain is None:
        cursor.execute(f"CREATE TEMPORARY TABLE _analytics_plain ON COMMIT DROP AS {_plain_select(upto)}")
        plain_table = "_analytics_plain"
    else:
        plain_table = plain()
    plain_sums = ", ".join(f"sum({c})" for c in PLAIN)
    unique_sums = ", ".join(f"sum({c})" for c in UNIQUE)
    zeros_plain = ", ".join(f"0 AS {c}" for c in PLAIN)
    zeros_unique = ", ".join(f"0 AS {c}" for c in UNIQUE)
    columns = ", ".join([*PLAIN, *UNIQUE])
    # (target, key columns, group of the plain rows, group of the unique rows)
    fills = (
        (CampaignHour, ("campaign_id", "sending_account_id", "hour"), _GROUP_HOUR, 1),
        (AccountHour, ("sending_account_id", "hour"), _GROUP_HOUR, 1),
        (CampaignDomain, ("campaign_id", "sending_account_id", "recipient_domain"), _GROUP_DAY_DOMAIN, 2),
        (AccountDomainDay, ("sending_account_id", "day", "recipient_domain"), _GROUP_DAY_DOMAIN, 2),
        (OrgDomainDay, ("organisation_id", "day", "recipient_domain"), _GROUP_DAY_DOMAIN, 2),
    )
    for model, key, plain_group, unique_group in fills:
        table = model._meta.db_table
        keys = ", ".join(key_columns(key))
        cursor.execute(f"DELETE FROM {table}")
        cursor.execute(
            f"""
            INSERT INTO {table} ({keys}, {columns})
            SELECT {keys}, {plain_sums}, {unique_sums} FROM (
                SELECT {keys}, {", ".join(PLAIN)}, {zeros_unique} FROM {plain_table} WHERE g = {plain_group}
                UNION ALL
                SELECT {keys}, {zeros_plain}, {", ".join(UNIQUE)} FROM _analytics_unique WHERE g = {unique_group}
            ) AS u
            GROUP BY {keys}
            """
        )
    link_table = CampaignLink._meta.db_table
    link_keys = "organisation_id, campaign_id, sending_account_id, link_id"
    cursor.execute(f"DELETE FROM {link_table}")
    cursor.execute(
        f"""
        INSERT INTO {link_table} ({link_keys}, clicks, machine_clicks, unique_clicks, unique_clicks_all)
        SELECT {link_keys}, sum(clicks), sum(machine_clicks), sum(unique_clicks), sum(unique_clicks_all) FROM (
            SELECT {link_keys}, clicks, machine_clicks, 0 AS unique_clicks, 0 AS unique_clicks_all
            FROM {plain_table} WHERE g = {_GROUP_LINK} AND link_id IS NOT NULL AND clicks + machine_clicks > 0
            UNION ALL
            SELECT {link_keys}, 0, 0, count(first_click), count(first_click_any)
            FROM {LinkActivity._meta.db_table} GROUP BY {link_keys}
        ) AS u
        GROUP BY {link_keys}
        """
    )
    cursor.execute("DROP TABLE IF EXISTS _analytics_plain, _analytics_unique")


# --- runs ---------------------------------------------------------------------------------------


def aggregation_state() -> AggregationState:
    state, _created = AggregationState.objects.get_or_create(pk=1)
    return state


def _try_lock(cursor: Any) -> bool:
    cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
    return bool(cursor.fetchone()[0])


def _unlock(cursor: Any) -> None:
    cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])


def run_incremental(wait_seconds: float = WAIT_SECONDS, chunk: int = CHUNK) -> RunResult:
    """Count the events committed since the last run (see the module's docstring).

    Returns at once with ``busy`` when another run or a rebuild holds the lock."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        if not _try_lock(cursor):
            return RunResult(0, 0, waiting=False, busy=True)
        try:
            state = aggregation_state()
            first = state.done_upto
            if state.pending_upto is None:
                upto, lockers = take_barrier(cursor)
                state.pending_upto, state.pending_lockers, state.pending_since = upto, lockers, timezone.now()
            if not _wait_for(cursor, list(state.pending_lockers), wait_seconds):
                state.updated_at = timezone.now()
                state.save(update_fields=["pending_upto", "pending_lockers", "pending_since", "updated_at"])
                return RunResult(first, first, waiting=True, seconds=time.monotonic() - started)
            target = max(state.pending_upto, state.done_upto)
            lo = state.done_upto
            while lo < target:
                hi = min(lo + chunk, target)
                with transaction.atomic():
                    count_events(lo, hi)
                    AggregationState.objects.filter(pk=1).update(done_upto=hi, updated_at=timezone.now())
                lo = hi
            seconds = time.monotonic() - started
            AggregationState.objects.filter(pk=1).update(
                done_upto=target,
                pending_upto=None,
                pending_lockers=[],
                pending_since=None,
                last_run_at=timezone.now(),
                last_run_events=target - first,
                last_run_seconds=seconds,
                updated_at=timezone.now(),
            )
            return RunResult(first, target, waiting=False, seconds=seconds)
        finally:
            _unlock(cursor)


def rebuild(wait_seconds: float = REBUILD_WAIT_SECONDS) -> RunResult:
    """Empty every counter and count all events again, in one transaction (reports show the old
    numbers until it commits). Waits for a running aggregation to finish first.

    1. Take the advisory lock and pass a barrier: every event up to ``upto`` is committed.
    2. A second connection computes the plain counters into :data:`PLAIN_STAGING` while this one
       rebuilds the first-activity tables and the unique counters (inside a caller's transaction,
       as in tests, the events may be uncommitted, so all of it runs here instead).
    3. Fill the counter tables and the watermark in this connection's transaction; commit."""
    started = time.monotonic()
    with connection.cursor() as cursor:
        deadline = time.monotonic() + wait_seconds
        while not _try_lock(cursor):
            if time.monotonic() >= deadline:
                return RunResult(0, 0, waiting=False, busy=True)
            time.sleep(0.2)
        try:
            upto, lockers = take_barrier(cursor)
            if not _wait_for(cursor, lockers, max(0.0, deadline - time.monotonic())):
                return RunResult(0, upto, waiting=True, seconds=time.monotonic() - started)
            _recount_in_transaction(cursor, upto, parallel=not connection.in_atomic_block)
            seconds = time.monotonic() - started
            AggregationState.objects.filter(pk=1).update(rebuild_seconds=seconds)
            if not connection.in_atomic_block:
                # The report tables were emptied with DELETE: vacuum them now (they are small), so
                # that the first reports do not read the dead rows; the others only need statistics.
                for model in ALL_TABLES:
                    small = model not in (MessageActivity, LinkActivity)
                    cursor.execute(f"{'VACUUM (ANALYZE)' if small else 'ANALYZE'} {model._meta.db_table}")
            logger.info("analytics rebuilt from %s events in %.1f s", upto, seconds)
            return RunResult(0, upto, waiting=False, seconds=seconds)
        finally:
            _unlock(cursor)


def _recount_in_transaction(cursor: Any, upto: int, *, parallel: bool) -> None:
    staging = ThreadPoolExecutor(max_workers=1) if parallel else None
    try:
        plain = staging.submit(_stage_plain, upto).result if staging is not None else None
        with transaction.atomic():
            # Hash aggregation in memory (one rebuild at a time); no JIT compile on every run.
            cursor.execute(f"SET LOCAL work_mem = '{REBUILD_WORK_MEM}'")
            cursor.execute("SET LOCAL jit = off")
            recount_all(cursor, upto, plain)
            now = timezone.now()
            AggregationState.objects.update_or_create(
                pk=1,
                defaults={
                    "done_upto": upto,
                    "pending_upto": None,
                    "pending_lockers": [],
                    "pending_since": None,
                    "rebuilt_at": now,
                    "last_run_at": now,
                    "updated_at": now,
                },
            )
    finally:
        if staging is not None:
            staging.shutdown(wait=True)
            cursor.execute(f"DROP TABLE IF EXISTS {PLAIN_STAGING}")
