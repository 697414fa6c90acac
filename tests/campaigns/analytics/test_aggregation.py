"""The counters: exact numbers for a crafted stream, uniques that machines and repeats do not
inflate, incremental runs equal to a rebuild in any arrival order, and the barrier that keeps
events committed late (with lower ids) from being skipped."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

import django_rq
import psycopg
import pytest
from django.db import connection
from rq import SimpleWorker

from campaigns.analytics import aggregation
from campaigns.analytics.models import (
    AccountDomainDay,
    AccountHour,
    AggregationState,
    CampaignDomain,
    CampaignHour,
    CampaignLink,
    MessageActivity,
    OrgDomainDay,
)
from campaigns.analytics.reports import Scope, totals
from campaigns.events import EventRecord
from campaigns.models import Message, MessageEvent, TrackedLink
from campaigns.signals import message_events
from tests.campaigns.analytics.fixtures_analytics import T0, Crafted, count, crafted_stream, dump, emit
from tests.campaigns.fixtures_segments import campaign as make_campaign
from tests.campaigns.fixtures_segments import contact, message
from tests.conftest import Tenant

Membership = Any


def _owner_membership(tenant: Tenant) -> Membership:
    return tenant.owner.memberships.get()


def _hours(campaign: Any, column: str) -> dict[int, int]:
    rows = CampaignHour.objects.filter(campaign=campaign).values_list("hour", column)
    return {hour.hour: value for hour, value in rows if value}


def test_the_campaign_totals_of_a_crafted_stream_are_exact(tenant: Tenant, crafted: Crafted) -> None:
    figures = totals(Scope(_owner_membership(tenant), campaign=crafted.campaign))

    assert figures.raw == {
        "sent": 7,
        "delivered": 4,
        "hard_bounces": 1,
        "soft_bounces": 2,
        "complaints": 1,
        "rejects": 0,
        "delays": 0,
        "rendering_failures": 0,
        "opens": 3,
        "machine_opens": 2,
        "unique_opens": 2,
        "unique_opens_all": 3,
        "clicks": 3,
        "machine_clicks": 1,
        "unique_clicks": 1,
        "unique_clicks_all": 2,
        "unsubscribes": 1,
    }
    assert (figures.open_rate, figures.click_rate, figures.bounce_rate) == (
        Decimal("50.0"),
        Decimal("25.0"),
        Decimal("14.3"),
    )


def test_machine_opens_stay_out_of_unique_opens_unless_asked_for(tenant: Tenant, crafted: Crafted) -> None:
    membership = _owner_membership(tenant)

    people = totals(Scope(membership, campaign=crafted.campaign))
    with_machines = totals(Scope(membership, campaign=crafted.campaign, machines=True))

    assert (people.unique_opens_shown, people.opens_shown) == (2, 3)
    assert (with_machines.unique_opens_shown, with_machines.opens_shown) == (3, 5)
    assert (people.unique_clicks_shown, with_machines.unique_clicks_shown) == (1, 2)


def test_unique_clicks_are_counted_per_link(tenant: Tenant, crafted: Crafted) -> None:
    rows = {
        row.link_id: (row.clicks, row.machine_clicks, row.unique_clicks, row.unique_clicks_all)
        for row in CampaignLink.objects.filter(campaign=crafted.campaign)
    }

    assert rows == {crafted.link1.pk: (2, 1, 1, 2), crafted.link2.pk: (1, 0, 1, 1)}


def test_uniques_count_in_the_hour_of_the_first_activity(tenant: Tenant, crafted: Crafted) -> None:
    assert _hours(crafted.campaign, "unique_opens") == {9: 1, 11: 1}  # m1 at 09:10, m2 at 11:00
    assert _hours(crafted.campaign, "unique_opens_all") == {9: 3}  # m2's machine open came first
    assert _hours(crafted.campaign, "opens") == {9: 1, 10: 1, 11: 1}


def test_hard_and_soft_bounces_and_domains(tenant: Tenant, crafted: Crafted) -> None:
    rows = {
        r.recipient_domain: (r.sent, r.delivered, r.hard_bounces, r.soft_bounces, r.unique_opens)
        for r in CampaignDomain.objects.filter(campaign=crafted.campaign)
    }

    assert rows == {"a.example": (2, 2, 0, 0, 2), "b.example": (5, 2, 1, 2, 0)}
    day = AccountDomainDay.objects.get(sending_account=tenant.account_a, recipient_domain="b.example")
    assert (day.day.isoformat(), day.sent, day.complaints, day.unsubscribes) == ("2026-03-02", 5, 1, 1)


def test_organisation_domain_days_add_up_every_account(tenant: Tenant, crafted: Crafted) -> None:
    rows = dict(OrgDomainDay.objects.filter(organisation=tenant.organisation).values_list("recipient_domain", "sent"))

    assert rows == {"a.example": 2, "b.example": 5, "c.example": 1}


def test_account_hours_hold_every_campaign_of_the_account(tenant: Tenant, crafted: Crafted) -> None:
    assert AccountHour.objects.filter(sending_account=tenant.account_a).count() == 3
    assert sum(AccountHour.objects.filter(sending_account=tenant.account_b).values_list("sent", flat=True)) == 1


def test_an_earlier_open_that_arrives_late_moves_the_unique_open(tenant: Tenant, crafted: Crafted) -> None:
    # given m2's first human open counted at 11:00
    # when an open of 09:20 arrives afterwards
    emit(crafted.messages["m2"], "open", T0 + timedelta(minutes=20))
    count()

    # then the unique open moves to 09:00, and nothing counts twice
    assert _hours(crafted.campaign, "unique_opens") == {9: 2}
    assert MessageActivity.objects.get(message=crafted.messages["m2"]).first_open == T0 + timedelta(minutes=20)
    assert totals(Scope(_owner_membership(tenant), campaign=crafted.campaign)).unique_opens == 2


def test_a_second_run_without_new_events_changes_nothing(tenant: Tenant, crafted: Crafted) -> None:
    before = dump()

    result = count()

    assert result.events == 0
    assert dump() == before


def test_a_rebuild_gives_the_same_numbers(tenant: Tenant, crafted: Crafted) -> None:
    before = dump()

    result = aggregation.rebuild()

    assert result.counted_upto == AggregationState.objects.get().done_upto
    assert dump() == before


def test_a_rebuild_forgets_deleted_events(tenant: Tenant, crafted: Crafted) -> None:
    MessageEvent.objects.filter(message=crafted.messages["m4"], type="complaint").delete()

    aggregation.rebuild()

    assert totals(Scope(_owner_membership(tenant), campaign=crafted.campaign)).complaints == 0


def _random_stream(tenant: Tenant, rng: random.Random) -> list[dict[str, Any]]:
    """About 600 events of 40 messages in two campaigns and triggered mail, in random order."""
    org = tenant.organisation
    spring = make_campaign(tenant.account_a, "Spring", sender=tenant.sender_a)
    beta = make_campaign(tenant.account_b, "Beta", sender=tenant.sender_b)
    links = [TrackedLink.objects.create(organisation=org, url=f"https://x.example/{n}") for n in range(3)]
    messages = []
    for n in range(40):
        person = contact(org, f"r{n}@{rng.choice(['a.example', 'b.example', 'c.example'])}")
        if n % 5 == 4:
            messages.append(
                Message.objects.create(
                    organisation=org,
                    sending_account=tenant.account_a,
                    contact=person,
                    template=spring.template,
                    sender=spring.sender,
                    to_email=person.email,
                )
            )
        else:
            messages.append(message(spring if n % 2 else beta, person))
    events = []
    for m in messages:
        sent = T0 + timedelta(minutes=rng.randrange(0, 3 * 24 * 60))
        events.append({"msg": m, "type": "send", "at": sent})
        kind = rng.random()
        if kind < 0.1:
            events.append({"msg": m, "type": "bounce", "at": sent, "subtype": rng.choice(["permanent", "transient"])})
            continue
        events.append({"msg": m, "type": "delivery", "at": sent + timedelta(seconds=5)})
        for _n in range(rng.randrange(0, 6)):
            at = sent + timedelta(minutes=rng.randrange(1, 3000))
            events.append({"msg": m, "type": "open", "at": at, "machine": rng.random() < 0.3})
        for _n in range(rng.randrange(0, 5)):
            at = sent + timedelta(minutes=rng.randrange(1, 3000))
            link = rng.choice(links)
            events.append({"msg": m, "type": "click", "at": at, "machine": rng.random() < 0.2, "link": link})
        if rng.random() < 0.1:
            events.append({"msg": m, "type": "complaint", "at": sent + timedelta(hours=2)})
        if rng.random() < 0.1:
            events.append({"msg": m, "type": "unsubscribe", "at": sent + timedelta(hours=3)})
    rng.shuffle(events)
    return events


ORACLE_COLUMNS = (
    "sent",
    "delivered",
    "hard_bounces",
    "soft_bounces",
    "complaints",
    "unsubscribes",
    "opens",
    "machine_opens",
    "clicks",
    "machine_clicks",
    "unique_opens",
    "unique_clicks",
)
PLAIN_NAMES = {"send": "sent", "delivery": "delivered", "complaint": "complaints", "unsubscribe": "unsubscribes"}


def _expected(events: list[dict[str, Any]]) -> dict[Any, dict[str, int]]:
    """The campaign totals computed in Python from the stream (the oracle)."""
    out: dict[Any, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    openers: dict[Any, set[int]] = defaultdict(set)
    clickers: dict[Any, set[int]] = defaultdict(set)
    link_clickers: dict[Any, set[tuple[int, int]]] = defaultdict(set)
    for e in events:
        key = e["msg"].campaign_id
        figures = out[key]
        machine = e.get("machine", False)
        if e["type"] == "open":
            figures["machine_opens" if machine else "opens"] += 1
            if not machine:
                openers[key].add(e["msg"].pk)
        elif e["type"] == "click":
            figures["machine_clicks" if machine else "clicks"] += 1
            if not machine:
                clickers[key].add(e["msg"].pk)
                link_clickers[key].add((e["msg"].pk, e["link"].pk))
        elif e["type"] == "bounce":
            figures["hard_bounces" if e["subtype"] == "permanent" else "soft_bounces"] += 1
        else:
            figures[PLAIN_NAMES[e["type"]]] += 1
    for key, figures in out.items():
        figures["unique_opens"] = len(openers[key])
        figures["unique_clicks"] = len(clickers[key])
        figures["link_uniques"] = len(link_clickers[key])
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_runs_in_any_order_equal_a_rebuild_and_the_oracle(tenant: Tenant, seed: int) -> None:
    # given a random stream stored in ten batches, the aggregator running after each
    rng = random.Random(seed)
    events = _random_stream(tenant, rng)
    for start in range(0, len(events), len(events) // 10 + 1):
        for e in events[start : start + len(events) // 10 + 1]:
            options = {k: e[k] for k in ("subtype", "machine", "link") if k in e}
            emit(e["msg"], e["type"], e["at"], **options)
        count()
    incremental = dump()

    # when everything is rebuilt from the raw events
    aggregation.rebuild()

    # then the numbers are the same, and match what the stream says
    assert dump() == incremental
    for campaign_id, want in _expected(events).items():
        rows = CampaignHour.objects.filter(campaign_id=campaign_id)
        got = {c: sum(rows.values_list(c, flat=True)) for c in ORACLE_COLUMNS}
        links = CampaignLink.objects.filter(campaign_id=campaign_id)
        got["link_uniques"] = sum(links.values_list("unique_clicks", flat=True))
        assert got == {c: want.get(c, 0) for c in got}, campaign_id


@pytest.mark.django_db(transaction=True)
def test_a_rebuild_outside_a_transaction_gives_the_same_numbers(tenant: Tenant) -> None:
    # given committed events, counted incrementally
    crafted_stream(tenant)
    count()
    before = dump()

    # when the rebuild runs with its second connection (nothing uncommitted to hide from it)
    result = aggregation.rebuild()

    # then the numbers are the same and the staging table is gone
    assert not result.waiting
    assert dump() == before
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", [aggregation.PLAIN_STAGING])
        assert cursor.fetchone() == (None,)


# --- the barrier --------------------------------------------------------------------------------


def _conninfo() -> str:
    settings = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        dbname=settings["NAME"],
        user=settings["USER"],
        password=settings["PASSWORD"] or None,
        host=settings["HOST"] or "127.0.0.1",
        port=settings["PORT"] or 5432,
    )


def _insert_sql() -> str:
    return (
        "INSERT INTO campaigns_messageevent (id, message_id, organisation_id, sending_account_id, campaign_id, "
        "type, subtype, at, machine, recipient_domain, data) VALUES (%s, %s, %s, %s, %s, 'open', '', %s, false, "
        "'a.example', '{}')"
    )


@pytest.mark.django_db(transaction=True)
def test_an_event_committed_late_with_a_lower_id_is_not_lost(tenant: Tenant) -> None:
    spring = make_campaign(tenant.account_a, "Spring", sender=tenant.sender_a)
    early, late = (message(spring, contact(tenant.organisation, f"{n}@a.example")) for n in ("early", "late"))
    with psycopg.connect(_conninfo()) as other:
        # given a writer that took an id the way the tracking flusher does (nextval, then COPY)
        # and has not committed yet
        row = other.execute("SELECT nextval(pg_get_serial_sequence('campaigns_messageevent', 'id'))").fetchone()
        assert row is not None
        low_id = row[0]
        other.execute(_insert_sql(), [low_id, early.pk, tenant.organisation.pk, tenant.account_a.pk, spring.pk, T0])
        # and an event with a higher id committed meanwhile
        high = emit(late, "open", T0)
        assert high.pk > low_id

        # when the aggregator runs while the writer is still open
        waiting = aggregation.run_incremental(wait_seconds=0.3)

        # then it counts nothing yet (a watermark would have passed the lower id for good)
        assert waiting.waiting
        assert AggregationState.objects.get().done_upto < low_id
        assert not CampaignHour.objects.exists()

        # and once the writer commits, both are counted
        other.commit()
    result = aggregation.run_incremental(wait_seconds=1.0)
    assert not result.waiting
    assert result.counted_upto >= high.pk
    assert totals(Scope(tenant.owner.memberships.get(), campaign=spring)).raw["unique_opens"] == 2


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_writer_does_not_hold_the_counters(tenant: Tenant) -> None:
    spring = make_campaign(tenant.account_a, "Spring", sender=tenant.sender_a)
    person = message(spring, contact(tenant.organisation, "p@a.example"))
    with psycopg.connect(_conninfo()) as other:
        other.execute("SELECT nextval(pg_get_serial_sequence('campaigns_messageevent', 'id'))")
        emit(person, "send", T0)
        assert aggregation.run_incremental(wait_seconds=0.2).waiting
        other.rollback()
    assert not aggregation.run_incremental(wait_seconds=1.0).waiting
    assert CampaignHour.objects.get(campaign=spring).sent == 1


@pytest.mark.django_db(transaction=True)
def test_readers_of_the_events_do_not_hold_up_the_counters(tenant: Tenant) -> None:
    spring = make_campaign(tenant.account_a, "Spring", sender=tenant.sender_a)
    emit(message(spring, contact(tenant.organisation, "p@a.example")), "send", T0)
    with psycopg.connect(_conninfo()) as other:
        other.execute("SELECT count(*) FROM campaigns_messageevent").fetchone()  # an open read transaction

        result = aggregation.run_incremental(wait_seconds=0.2)

    assert not result.waiting
    assert CampaignHour.objects.get(campaign=spring).sent == 1


@pytest.mark.django_db(transaction=True)
def test_only_one_aggregator_runs_at_a_time(tenant: Tenant) -> None:
    with psycopg.connect(_conninfo(), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [aggregation.LOCK_KEY])

        result = aggregation.run_incremental()

    assert result.busy


def test_stored_events_schedule_one_aggregation_job(tenant: Tenant, django_capture_on_commit_callbacks: Any) -> None:
    spring = make_campaign(tenant.account_a, "Spring", sender=tenant.sender_a)
    stored = emit(message(spring, contact(tenant.organisation, "p@a.example")), "delivery", T0)
    record = EventRecord(
        id=stored.pk,
        message_id=stored.message_id,
        organisation_id=stored.organisation_id,
        sending_account_id=stored.sending_account_id,
        campaign_id=spring.pk,
        contact_id=None,
        type="delivery",
        subtype="",
        at=T0,
        machine=False,
        link_id=None,
    )

    for _batch in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            message_events.send_robust(sender=MessageEvent, events=[record])

    queue = django_rq.get_queue("default")
    jobs = [job for job in queue.jobs if job.func_name.endswith("aggregate_events_job")]
    assert len(jobs) == 1
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    assert CampaignHour.objects.get(campaign=spring).delivered == 1
