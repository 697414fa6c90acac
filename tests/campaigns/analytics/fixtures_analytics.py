"""Helpers of the analytics tests: events written like the pipeline writes them, a crafted stream
with known numbers, and a dump of every counter table for comparisons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.analytics import aggregation
from campaigns.analytics.aggregation import RunResult
from campaigns.models import Campaign, Contact, Message, MessageEvent, TrackedLink
from tests.campaigns.fixtures_segments import campaign as make_campaign
from tests.campaigns.fixtures_segments import contact, message
from tests.conftest import Tenant

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def emit(
    msg: Message,
    type: str,
    at: datetime,
    *,
    subtype: str = "",
    machine: bool = False,
    link: TrackedLink | None = None,
) -> MessageEvent:
    """One stored event of ``msg`` (organisation, account, campaign and domain copied from it)."""
    return MessageEvent.objects.create(message=msg, type=type, at=at, subtype=subtype, machine=machine, link=link)


def count() -> RunResult:
    """One aggregator run, as the job does it."""
    result = aggregation.run_incremental(wait_seconds=1.0)
    assert not result.busy, result
    assert not result.waiting, result
    return result


def dump() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every counter table (without surrogate ids), sorted."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for model in aggregation.ALL_TABLES:
        names = [f.attname for f in model._meta.concrete_fields if f.attname != "id"]
        out[model.__name__] = sorted(
            (tuple(row) for row in model.objects.values_list(*names)), key=lambda r: tuple(str(v) for v in r)
        )
    return out


@dataclass
class Crafted:
    """A campaign with a known event stream (see :func:`crafted`)."""

    campaign: Campaign
    other: Campaign  # of the other client's account
    link1: TrackedLink
    link2: TrackedLink
    messages: dict[str, Message]
    contacts: dict[str, Contact]


def crafted_stream(tenant: Tenant, t0: datetime = T0) -> Crafted:
    """Campaign "Spring" of client A's account, seven recipients:

    - m1 (a.example): delivered, opened at 09:10 and 10:05, clicked link 1 twice and link 2 once;
    - m2 (a.example): delivered, opened by a machine at 09:01 and by the recipient at 11:00, link 1
      clicked by a machine;
    - m3 (b.example): hard bounce; m5: soft (transient) bounce; m7: soft (undetermined) bounce;
    - m4 (b.example): delivered, complaint, unsubscribed;
    - m6 (b.example): delivered, opened by a machine only.

    Plus one delivered message of client B's campaign "Beta news". Times are hours after ``t0``."""
    org = tenant.organisation
    spring = make_campaign(tenant.account_a, "Spring", sender=tenant.sender_a)
    other = make_campaign(tenant.account_b, "Beta news", sender=tenant.sender_b)
    Campaign.objects.filter(pk__in=[spring.pk, other.pk]).update(status=Campaign.Status.DONE, started_at=t0)
    spring.refresh_from_db()
    other.refresh_from_db()
    link1 = TrackedLink.objects.create(organisation=org, url="https://shop.example/spring")
    link2 = TrackedLink.objects.create(organisation=org, url="https://shop.example/terms")
    domains = {"m1": "a.example", "m2": "a.example"}
    contacts = {
        key: contact(org, f"{key}@{domains.get(key, 'b.example')}", client=tenant.client_a)
        for key in ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
    }
    msgs = {key: message(spring, person) for key, person in contacts.items()}
    minutes = timedelta(minutes=1)
    for m in msgs.values():
        emit(m, "send", t0)
    for key in ("m1", "m2", "m4", "m6"):
        emit(msgs[key], "delivery", t0 + minutes)
    emit(msgs["m1"], "open", t0 + 10 * minutes)
    emit(msgs["m1"], "open", t0 + 65 * minutes)
    emit(msgs["m1"], "click", t0 + 66 * minutes, link=link1)
    emit(msgs["m1"], "click", t0 + 67 * minutes, link=link1)
    emit(msgs["m1"], "click", t0 + 68 * minutes, link=link2)
    emit(msgs["m2"], "open", t0 + minutes, machine=True)
    emit(msgs["m2"], "click", t0 + minutes, machine=True, link=link1)
    emit(msgs["m2"], "open", t0 + 120 * minutes)
    emit(msgs["m3"], "bounce", t0 + minutes, subtype="permanent")
    emit(msgs["m5"], "bounce", t0 + minutes, subtype="transient")
    emit(msgs["m7"], "bounce", t0 + minutes, subtype="undetermined")
    emit(msgs["m4"], "complaint", t0 + 30 * minutes, subtype="abuse")
    emit(msgs["m4"], "unsubscribe", t0 + 31 * minutes)
    emit(msgs["m6"], "open", t0 + 30 * minutes, machine=True)
    beta = message(other, contact(org, "b1@c.example", client=tenant.client_b))
    emit(beta, "send", t0)
    emit(beta, "delivery", t0 + minutes)
    return Crafted(spring, other, link1, link2, msgs, contacts)
