"""Analytics at scale: 10,000,000 message events (one campaign holding 1,000,000 messages), the full
rebuild of the counters, incremental runs, and every dashboard query of the reports.

``run()`` does, in one run:

1. **generate** the events with ``INSERT ... SELECT generate_series`` (not measured as a goal):
   one organisation (``bench-analytics-*``) with two clients and four sending accounts, the big
   campaign (1,000,000 messages sent over 12 hours two days ago) and 199 others plus triggered
   mail over the last 30 days; per message a send, then a delivery or a bounce (2% hard, 1% soft),
   opens (30% of recipients, some twice), machine opens (15%), clicks on five links (8%, some
   twice), machine clicks, complaints (0.1%) and unsubscribes (0.3%); recipient domains: 25
   mailbox providers (85%) and 400 company domains. Message ids are far above real ones;
2. **rebuild** every counter from the raw events, timed (goal < 60 s);
3. **incremental**: more events arrive in batches (new messages, and late opens of old ones that
   are *earlier* than opens already counted), the aggregator runs after each batch; the slowest
   run bounds the staleness together with the 30-second schedule (goal <= 60 s);
4. **same numbers**: the counters after the incremental runs are kept, everything is rebuilt
   again, and the two sets must be equal row for row;
5. **queries**: every report query of the dashboard, campaign, account, client and organisation
   pages, ``--repeat`` times each after one warm-up, p95 (goal < 50 ms).

Everything made here is removed at the end (the events table is truncated when it holds nothing
else, else the organisation's rows are deleted).
"""

from __future__ import annotations

import statistics
import time
import zoneinfo
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from accounts.models import Client, Membership, Organisation, SenderAddress, SendingAccount, User
from campaigns.analytics import aggregation, reports
from campaigns.analytics.jobs import aggregate_events_job
from campaigns.analytics.reports import Period, Scope
from campaigns.models import Campaign, MessageEvent, Template, TrackedLink

__all__ = ["format_table", "run"]

PREFIX = "bench-analytics-"
EVENTS = MessageEvent._meta.db_table
MESSAGE_BASE = 9_000_000_000_000  # message ids of the generated events, far above real ones
EVENTS_PER_MESSAGE = 2.70  # what the distribution below gives on average
BIG_CAMPAIGN_MESSAGES = 1_000_000
OTHER_CAMPAIGNS = 199
CHUNK_MESSAGES = 250_000
CAMPAIGN_GAP = "(interval '28 days' / 199)"  # between the starts of two other campaigns
GOAL_REBUILD_SECONDS = 60.0
GOAL_P95_MS = 50.0
GOAL_STALENESS_SECONDS = 60.0
SCHEDULE_SECONDS = 30  # xes_portal/cron.py
CONSUMER_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "gmx.de",
    "web.de",
    "t-online.de",
    "icloud.com",
    "aol.com",
    "live.com",
    "gmx.net",
    "yahoo.de",
    "freenet.de",
    "mail.de",
    "posteo.de",
    "protonmail.com",
    "me.com",
    "msn.com",
    "arcor.de",
    "online.de",
    "googlemail.com",
    "hotmail.de",
    "outlook.de",
    "ymail.com",
    "mailbox.org",
)
COMPANY_DOMAINS = 400


@dataclass
class World:
    organisation: Organisation
    accounts: list[SendingAccount]
    clients: list[Client]
    big: Campaign
    campaigns: list[Campaign]
    links: list[TrackedLink]
    membership: Membership


def make_world(now: datetime) -> World:
    """The organisation, its clients, accounts, campaigns, links and an owner (normal ORM rows).
    Campaigns start as the generated events say: the big one two days before ``now``, the others
    one after the other over the last 30 days, each sending for two hours."""
    stamp = time.monotonic_ns()
    org = Organisation.objects.create(name=f"{PREFIX}{stamp}")
    clients = [Client.objects.create(organisation=org, name=f"Client {c}") for c in "AB"]
    accounts = [
        SendingAccount.objects.create(organisation=org, client=client, name=f"Account {n}")
        for n, client in enumerate([clients[0], clients[0], clients[1], None], start=1)
    ]
    senders = [
        SenderAddress.objects.create(sending_account=a, email=f"news{a.pk}@bench.example", verified_at=timezone.now())
        for a in accounts
    ]
    template = Template.objects.create(organisation=org, name="Bench", slug="bench", subject="Hi", body="<p>Hi</p>")
    big = Campaign.objects.create(
        organisation=org,
        sending_account=accounts[0],
        sender=senders[0],
        template=template,
        name="The million",
        status=Campaign.Status.DONE,
        started_at=now - timedelta(days=2),
    )
    others = Campaign.objects.bulk_create(
        Campaign(
            organisation=org,
            sending_account=accounts[n % 4],
            sender=senders[n % 4],
            template=template,
            name=f"Campaign {n}",
            status=Campaign.Status.DONE,
            started_at=now - timedelta(days=30) + n * timedelta(days=28) / OTHER_CAMPAIGNS,
        )
        for n in range(OTHER_CAMPAIGNS)
    )
    links = [TrackedLink.objects.create(organisation=org, url=f"https://bench.example/offer/{n}") for n in range(5)]
    user = User.objects.create_user(email=f"{PREFIX}{stamp}@bench.example", password=None)
    membership = Membership.objects.create(user=user, organisation=org, role=Membership.Role.OWNER)
    return World(org, accounts, clients, big, others, links, membership)


def _array(values: list[Any]) -> str:
    return "ARRAY[" + ", ".join(str(int(v)) for v in values) + "]::bigint[]"


def _generate_sql(world: World) -> str:
    """``INSERT ... SELECT`` of the events of messages ``%(first)s`` to ``%(last)s`` (1-based)."""
    accounts = _array([a.pk for a in world.accounts])
    campaigns = _array([c.pk for c in world.campaigns])
    account_of = _array([c.sending_account_id for c in world.campaigns])
    links = _array([link.pk for link in world.links])
    consumers = "ARRAY[" + ", ".join(f"'{d}'" for d in CONSUMER_DOMAINS) + "]"
    big = world.big
    # Per message n: uniform numbers u1..u7 from hashes of n (repeatable, no random()).
    return f"""
    INSERT INTO {EVENTS} (message_id, organisation_id, sending_account_id, campaign_id, type, subtype, at,
                          machine, link_id, recipient_domain, data)
    SELECT {MESSAGE_BASE} + m.n, {world.organisation.pk}, m.account, m.campaign, e.type, e.subtype,
           m.sent + e.after, e.machine, e.link, m.domain, '{{}}'::jsonb
    FROM (
        SELECT n, u1, u2, u3, u4, u5,
               CASE WHEN n <= %(big)s THEN {big.sending_account_id}
                    WHEN mod(n, 10) = 0 THEN ({accounts})[1 + mod(n / 10, 4)]
                    ELSE ({account_of})[1 + mod(n, {OTHER_CAMPAIGNS})] END AS account,
               CASE WHEN n <= %(big)s THEN {big.pk}
                    WHEN mod(n, 10) = 0 THEN NULL
                    ELSE ({campaigns})[1 + mod(n, {OTHER_CAMPAIGNS})] END AS campaign,
               CASE WHEN n <= %(big)s THEN %(big_start)s::timestamptz + (n * interval '43 milliseconds')
                    WHEN mod(n, 10) = 0 THEN %(start)s::timestamptz + u6 * interval '29 days'
                    ELSE %(start)s::timestamptz + mod(n, {OTHER_CAMPAIGNS}) * {CAMPAIGN_GAP}
                         + (n - %(big)s)::float8 / %(others)s * interval '2 hours' END AS sent,
               CASE WHEN u7 < 0.85 THEN ({consumers})[1 + floor(u6 * u6 * {len(CONSUMER_DOMAINS)})::int]
                    ELSE 'company' || mod(floor(u7 * 10000)::int, {COMPANY_DOMAINS}) || '.example' END AS domain,
               ({links})[1 + mod(n, 5)] AS link1, ({links})[1 + mod(n / 5, 5)] AS link2
        FROM (
            SELECT n,
                   (hashint8(n) & 1048575) / 1048576.0::float8 AS u1,
                   (hashint8(n + 1000000000000) & 1048575) / 1048576.0::float8 AS u2,
                   (hashint8(n + 2000000000000) & 1048575) / 1048576.0::float8 AS u3,
                   (hashint8(n + 3000000000000) & 1048575) / 1048576.0::float8 AS u4,
                   (hashint8(n + 4000000000000) & 1048575) / 1048576.0::float8 AS u5,
                   (hashint8(n + 5000000000000) & 1048575) / 1048576.0::float8 AS u6,
                   (hashint8(n + 6000000000000) & 1048575) / 1048576.0::float8 AS u7
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
        ) AS r
        OFFSET 0  -- computed once per message, not once per use in the VALUES below
    ) AS m
    CROSS JOIN LATERAL (VALUES
        ('send', '', interval '0', false, NULL::bigint, true),
        ('delivery', '', interval '3 seconds', false, NULL, m.u1 >= 0.03),
        ('bounce', CASE WHEN m.u1 < 0.02 THEN 'permanent' ELSE 'transient' END, interval '2 seconds', false, NULL,
         m.u1 < 0.03),
        ('complaint', 'abuse', interval '1 hour', false, NULL, m.u1 >= 0.03 AND m.u2 < 0.001),
        ('unsubscribe', '', interval '2 hours', false, NULL, m.u1 >= 0.03 AND m.u2 >= 0.001 AND m.u2 < 0.004),
        ('open', '', m.u4 * interval '48 hours', false, NULL, m.u1 >= 0.03 AND m.u3 < 0.30),
        ('open', '', m.u4 * interval '48 hours' + interval '3 hours', false, NULL, m.u1 >= 0.03 AND m.u3 < 0.12),
        ('open', '', interval '1 second', true, NULL, m.u1 >= 0.03 AND m.u5 < 0.15),
        ('click', '', m.u4 * interval '48 hours' + interval '30 seconds', false, m.link1,
         m.u1 >= 0.03 AND m.u3 < 0.08),
        ('click', '', m.u4 * interval '48 hours' + interval '90 seconds', false, m.link2,
         m.u1 >= 0.03 AND m.u3 < 0.03),
        ('click', '', interval '2 seconds', true, m.link1, m.u1 >= 0.03 AND m.u5 < 0.02)
    ) AS e(type, subtype, after, machine, link, keep)
    WHERE e.keep
    """


def _insert(sql: str, params: dict[str, Any]) -> int:
    """One chunk, in its own connection (a worker thread)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)
    finally:
        connection.close()


def generate(world: World, now: datetime, events: int, big_messages: int, jobs: int) -> tuple[int, int, float]:
    """Insert about ``events`` events, ``jobs`` chunks at a time; returns (messages, events, seconds)."""
    messages = max(big_messages + 1, int(events / EVENTS_PER_MESSAGE))
    params = {
        "big": big_messages,
        "others": messages - big_messages,
        "big_start": now - timedelta(days=2),
        "start": now - timedelta(days=30),
    }
    sql = _generate_sql(world)
    chunks = [
        {**params, "first": first, "last": min(messages, first + CHUNK_MESSAGES - 1)}
        for first in range(1, messages + 1, CHUNK_MESSAGES)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        inserted = sum(pool.map(lambda chunk: _insert(sql, chunk), chunks))
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {EVENTS}")
    return messages, inserted, time.monotonic() - started


def _more_events(world: World, first: int, count: int, old_messages: int) -> str:
    """SQL of one incremental batch: ``count`` new messages' events, plus opens of old messages
    one hour *before* their first generated open (they move unique opens to an earlier hour)."""
    return f"""
    INSERT INTO {EVENTS} (message_id, organisation_id, sending_account_id, campaign_id, type, subtype, at,
                          machine, link_id, recipient_domain, data)
    SELECT e.message_id, e.organisation_id, e.sending_account_id, e.campaign_id, 'open', '', e.at - interval '1 hour',
           false, NULL, e.recipient_domain, '{{}}'::jsonb
    FROM {EVENTS} AS e
    WHERE e.message_id BETWEEN {MESSAGE_BASE + first} AND {MESSAGE_BASE + first + count}
      AND e.message_id <= {MESSAGE_BASE + old_messages} AND e.type = 'open' AND NOT e.machine
    """


def _except_count(table: str, columns: str, snapshot: str, org: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT count(*) FROM ((SELECT {columns} FROM {table} WHERE organisation_id = {org} "
            f"EXCEPT ALL SELECT {columns} FROM {snapshot}) UNION ALL (SELECT {columns} FROM {snapshot} "
            f"EXCEPT ALL SELECT {columns} FROM {table} WHERE organisation_id = {org})) AS d"
        )
        return int(cursor.fetchone()[0])


def _columns(model: Any) -> str:
    return ", ".join(f.column for f in model._meta.concrete_fields if f.column != "id")


def snapshot(org: int) -> dict[str, str]:
    """Copy the organisation's counters aside (unlogged tables); returns table -> copy."""
    copies = {}
    with connection.cursor() as cursor:
        for model in aggregation.ALL_TABLES:
            table = model._meta.db_table
            copy = f"bench_snap_{table}"
            cursor.execute(f"DROP TABLE IF EXISTS {copy}")
            cursor.execute(
                f"CREATE UNLOGGED TABLE {copy} AS SELECT {_columns(model)} FROM {table} WHERE organisation_id = {org}"
            )
            copies[table] = copy
    return copies


def differences(org: int, copies: dict[str, str]) -> dict[str, int]:
    out = {}
    for model in aggregation.ALL_TABLES:
        table = model._meta.db_table
        out[table] = _except_count(table, _columns(model), copies[table], org)
    with connection.cursor() as cursor:
        for copy in copies.values():
            cursor.execute(f"DROP TABLE IF EXISTS {copy}")
    return out


def _queries(world: World) -> dict[str, Callable[[], Any]]:
    """Every query of the report pages (and the dashboard card and campaign panel)."""
    m = world.membership
    zone = zoneinfo.ZoneInfo(world.organisation.time_zone)
    month = Period.last(30, zone)
    quarter = Period.last(90, zone)
    campaign = Scope(m, campaign=world.big)
    campaign_machines = Scope(m, campaign=world.big, machines=True)
    account = Scope(m, sending_account=world.accounts[0], period=month)
    client = Scope(m, client=world.clients[0], period=month)
    org = Scope(m, period=month)
    org90 = Scope(m, period=quarter)
    return {
        "campaign totals (panel, live)": lambda: reports.totals(campaign),
        "campaign totals, machines": lambda: reports.totals(campaign_machines),
        "campaign per hour/day": lambda: reports.series(campaign),
        "campaign links": lambda: reports.links(campaign),
        "campaign domains": lambda: reports.domains(campaign),
        "account totals 30d": lambda: reports.totals(account),
        "account per day 30d": lambda: reports.series(account),
        "account domains 30d": lambda: reports.domains(account),
        "account campaigns 30d": lambda: reports.by_campaign(account),
        "client totals 30d": lambda: reports.totals(client),
        "client per day 30d": lambda: reports.series(client),
        "client accounts 30d": lambda: reports.by_account(client),
        "client domains 30d": lambda: reports.domains(client),
        "client campaigns 30d": lambda: reports.by_campaign(client),
        "org totals 30d (dashboard)": lambda: reports.totals(org),
        "org per day 30d": lambda: reports.series(org),
        "org clients 30d": lambda: reports.by_client(org),
        "org accounts 30d": lambda: reports.by_account(org),
        "org campaigns 30d": lambda: reports.by_campaign(org),
        "org domains 30d": lambda: reports.domains(org),
        "org totals 90d": lambda: reports.totals(org90),
        "org per day 90d": lambda: reports.series(org90),
        "org domains 90d": lambda: reports.domains(org90),
    }


def measure_queries(world: World, repeat: int) -> list[dict[str, Any]]:
    rows = []
    for name, query in _queries(world).items():
        query()  # warm-up
        times = []
        for _n in range(repeat):
            started = time.perf_counter()
            query()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
        rows.append(
            {
                "measure": f"query: {name}",
                "value": f"p95 {p95:.1f} ms (median {statistics.median(times):.1f})",
                "goal": f"< {GOAL_P95_MS:.0f} ms",
                "ok": p95 < GOAL_P95_MS,
            }
        )
    return rows


def cleanup(world: World | None = None) -> None:
    """Remove every ``bench-analytics-*`` organisation, its events and its counters."""
    orgs = list(Organisation.objects.filter(name__startswith=PREFIX).values_list("pk", flat=True))
    if not orgs:
        return
    ids = ", ".join(str(pk) for pk in orgs)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {EVENTS} WHERE organisation_id NOT IN ({ids}))")
        others = cursor.fetchone()[0]
        if others:
            cursor.execute(f"DELETE FROM {EVENTS} WHERE organisation_id IN ({ids})")
        else:
            cursor.execute(f"TRUNCATE {EVENTS}")
        for model in aggregation.ALL_TABLES:
            cursor.execute(f"DELETE FROM {model._meta.db_table} WHERE organisation_id IN ({ids})")
        for model in aggregation.ALL_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS bench_snap_{model._meta.db_table}")
    users = Membership.objects.filter(organisation_id__in=orgs).values_list("user_id", flat=True)
    User.objects.filter(pk__in=list(users)).delete()
    Campaign.objects.filter(organisation_id__in=orgs).delete()
    Template.objects.filter(organisation_id__in=orgs).delete()
    SenderAddress.objects.filter(sending_account__organisation_id__in=orgs).delete()
    SendingAccount.objects.filter(organisation_id__in=orgs).delete()
    Organisation.objects.filter(pk__in=orgs).delete()


def run(
    events: int = 10_000_000, big_messages: int = BIG_CAMPAIGN_MESSAGES, repeat: int = 50, jobs: int = 2
) -> list[dict[str, Any]]:
    """The whole benchmark; rows for :func:`format_table`."""
    cleanup()
    rows: list[dict[str, Any]] = []
    now = timezone.now()
    world = make_world(now)
    try:
        # 0. catch the counters up with whatever the database held before (not measured)
        aggregation.run_incremental(wait_seconds=60)
        messages, inserted, seconds = generate(world, now, events, min(big_messages, events), jobs)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {EVENTS} WHERE campaign_id = {world.big.pk}")
            big_events = cursor.fetchone()[0]
        rows.append(
            {
                "measure": "generate events (set-based SQL)",
                "value": f"{inserted:,} events of {messages:,} messages in {seconds:.1f} s",
                "goal": "",
                "ok": None,
            }
        )
        rows.append(
            {
                "measure": "the big campaign",
                "value": f"{min(big_messages, messages):,} messages, {big_events:,} events",
                "goal": "",
                "ok": None,
            }
        )

        # 1. the full rebuild
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {EVENTS}")
            total = cursor.fetchone()[0]
        result = aggregation.rebuild(wait_seconds=120)
        rows.append(
            {
                "measure": "full rebuild from raw events",
                "value": f"{total:,} events in {result.seconds:.1f} s",
                "goal": f"< {GOAL_REBUILD_SECONDS:.0f} s",
                "ok": result.seconds < GOAL_REBUILD_SECONDS,
            }
        )

        # 2. incremental runs: new messages in batches, late (earlier) opens of old ones
        batch_messages = max(1000, messages // 100)
        slowest, counted = 0.0, 0
        next_message = messages + 1
        for batch in range(5):
            with connection.cursor() as cursor, transaction.atomic():
                last = next_message + batch_messages - 1
                cursor.execute(
                    _generate_sql(world),
                    {
                        "big": 0,
                        "others": messages,
                        "big_start": now,
                        "start": now - timedelta(days=30),
                        "first": next_message,
                        "last": last,
                    },
                )
                cursor.execute(_more_events(world, batch * batch_messages + 1, batch_messages, messages))
                next_message = last + 1
            started = time.monotonic()
            outcome = aggregate_events_job()
            slowest = max(slowest, time.monotonic() - started)
            counted += outcome["upto"] - outcome["from"]
        rows.append(
            {
                "measure": "incremental run (5 batches)",
                "value": f"{counted:,} events, slowest run {slowest:.2f} s",
                "goal": "",
                "ok": None,
            }
        )
        staleness = SCHEDULE_SECONDS + slowest
        rows.append(
            {
                "measure": "staleness bound (schedule + slowest run)",
                "value": f"{SCHEDULE_SECONDS} s + {slowest:.2f} s = {staleness:.1f} s",
                "goal": f"<= {GOAL_STALENESS_SECONDS:.0f} s",
                "ok": staleness <= GOAL_STALENESS_SECONDS,
            }
        )

        # 3. the same numbers after a rebuild
        copies = snapshot(world.organisation.pk)
        again = aggregation.rebuild(wait_seconds=120)
        diff = differences(world.organisation.pk, copies)
        rows.append(
            {
                "measure": "rebuild == incremental (differing rows)",
                "value": f"{sum(diff.values())} (rebuild {again.seconds:.1f} s)",
                "goal": "0",
                "ok": sum(diff.values()) == 0,
            }
        )

        # 4. every dashboard query
        with connection.cursor() as cursor:
            for model in aggregation.ALL_TABLES:
                cursor.execute(f"ANALYZE {model._meta.db_table}")
        rows += measure_queries(world, repeat)
    finally:
        cleanup(world)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``run()`` rows."""
    columns = ["measure", "value", "goal", "ok"]
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)
