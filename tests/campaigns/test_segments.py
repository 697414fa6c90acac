"""Segment definitions against real PostgreSQL rows: every operator, AND/OR, behaviour, tenancy,
validation messages; and the query plan on 200,000 contacts."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import time_machine
from django.db import connection

from accounts.models import Client, Organisation
from campaigns import segments
from campaigns.models import Contact, CustomField, Message, Rule, Segment
from deliverability.models import Suppression
from tests.campaigns.fixtures_segments import campaign, contact, contact_list, custom_field, event, message
from tests.conftest import Tenant
from tests.factories import OrganisationFactory, SendingAccountFactory

T = CustomField.Type


def cond(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    c: dict[str, Any] = {"type": "field", "field": field, "operator": operator}
    if value is not None:
        c["value"] = value
    return c


def all_of(*items: dict[str, Any]) -> dict[str, Any]:
    return {"op": "and", "items": list(items)}


def any_of(*items: dict[str, Any]) -> dict[str, Any]:
    return {"op": "or", "items": list(items)}


def emails(definition: dict[str, Any], organisation: Organisation, client: Client | None = None) -> set[str]:
    q = segments.segment_q(definition, organisation, client)
    return set(segments.scope(organisation, client).filter(q).values_list("email", flat=True))


@pytest.fixture
def org(tenant: Tenant) -> Organisation:
    return tenant.organisation


@pytest.fixture
def people(org: Organisation) -> dict[str, Contact]:
    custom_field(org, "points", T.NUMBER)
    custom_field(org, "city", T.TEXT)
    custom_field(org, "born", T.DATE)
    custom_field(org, "vip", T.BOOLEAN)
    custom_field(org, "tier", T.CHOICE, ["gold", "silver", "bronze"])
    return {
        "ann": contact(
            org,
            "ann@x.example",
            first_name="Ann",
            last_name="Lee",
            points=10,
            city="Berlin",
            born="1990-05-01",
            vip=True,
            tier="gold",
        ),
        "bob": contact(
            org, "Bob@Y.example", first_name="Bob", points=5.5, city="bern", born="2001-12-31", vip=False, tier="silver"
        ),
        # Wrong types and gaps: a string where a number belongs, no city, a datetime, no tier.
        "cy": contact(org, "cy@x.example", points="12", city="", born="1990-05-01T23:00:00"),
        "dee": contact(org, "dee@z.example", last_name="Berg"),
    }


# --- contact and custom fields --------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("email", "equals", "BOB@y.example"), {"Bob@Y.example"}),
        (cond("email", "not_equals", "bob@y.example"), {"ann@x.example", "cy@x.example", "dee@z.example"}),
        (cond("email", "contains", "@x."), {"ann@x.example", "cy@x.example"}),
        (cond("email", "not_contains", "@x."), {"Bob@Y.example", "dee@z.example"}),
        (cond("email", "starts_with", "b"), {"Bob@Y.example"}),
        (cond("first_name", "is_empty"), {"cy@x.example", "dee@z.example"}),
        (cond("first_name", "is_not_empty"), {"ann@x.example", "Bob@Y.example"}),
        (cond("last_name", "equals", "berg"), {"dee@z.example"}),
        # LIKE wildcards in the value are taken literally.
        (cond("email", "contains", "%"), set()),
    ],
)
def test_contact_field_operators(
    org: Organisation, people: dict[str, Contact], condition: dict[str, Any], expected: set[str]
) -> None:
    assert emails(all_of(condition), org) == expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (cond("city", "equals", "BERLIN"), {"ann"}),
        (cond("city", "not_equals", "berlin"), {"bob", "cy", "dee"}),
        (cond("city", "contains", "er"), {"ann", "bob"}),
        (cond("city", "not_contains", "erl"), {"bob", "cy", "dee"}),
        (cond("city", "starts_with", "Be"), {"ann", "bob"}),
        (cond("city", "is_empty"), {"cy", "dee"}),
        (cond("city", "is_not_empty"), {"ann", "bob"}),
        (cond("points", "eq", 10), {"ann"}),
        (cond("points", "eq", "5.5"), {"bob"}),
        (cond("points", "ne", 10), {"bob"}),
        (cond("points", "lt", 10), {"bob"}),
        (cond("points", "lte", 10), {"ann", "bob"}),
        (cond("points", "gt", 5.5), {"ann"}),
        (cond("points", "gte", "5,5"), {"ann", "bob"}),
        (cond("points", "is_empty"), {"dee"}),
        (cond("points", "is_not_empty"), {"ann", "bob", "cy"}),
        (cond("born", "before", "1990-05-02"), {"ann", "cy"}),
        (cond("born", "before", "1990-05-01"), set()),
        (cond("born", "after", "1990-05-01"), {"bob"}),
        (cond("born", "on", "1990-05-01"), {"ann", "cy"}),
        (cond("born", "is_empty"), {"dee"}),
        (cond("vip", "is_true"), {"ann"}),
        (cond("vip", "is_false"), {"bob", "cy", "dee"}),
        (cond("tier", "in", ["gold", "bronze"]), {"ann"}),
        (cond("tier", "in", ["gold", "silver"]), {"ann", "bob"}),
        (cond("tier", "not_in", ["gold"]), {"bob", "cy", "dee"}),
        (cond("tier", "is_empty"), {"cy", "dee"}),
    ],
)
def test_custom_field_operators(
    org: Organisation, people: dict[str, Contact], condition: dict[str, Any], expected: set[str]
) -> None:
    assert emails(all_of(condition), org) == {people[name].email for name in expected}


@time_machine.travel(dt.datetime(2024, 6, 10, 22, 30, tzinfo=dt.UTC), tick=False)
def test_within_last_days_counts_in_the_organisations_time_zone(org: Organisation) -> None:
    # given: 22:30 UTC is already 11 June in Berlin
    custom_field(org, "seen", T.DATE)
    contact(org, "today@x.example", seen="2024-06-11")
    contact(org, "edge@x.example", seen="2024-06-04T08:00:00")
    contact(org, "old@x.example", seen="2024-06-03")
    contact(org, "future@x.example", seen="2024-06-12")
    contact(org, "junk@x.example", seen="next tuesday")
    # then
    assert emails(all_of(cond("seen", "within_last_days", 7)), org) == {"today@x.example", "edge@x.example"}
    assert emails(all_of(cond("seen", "within_last_days", "0")), org) == {"today@x.example"}


def test_and_or_and_groups(org: Organisation, people: dict[str, Contact]) -> None:
    points_over_5 = cond("points", "gt", 5)
    in_x = cond("email", "contains", "@x.")
    assert emails(all_of(points_over_5, in_x), org) == {"ann@x.example"}
    assert emails(any_of(points_over_5, in_x), org) == {"ann@x.example", "Bob@Y.example", "cy@x.example"}
    # (vip) or (tier is silver and city starts with "be")
    nested = any_of(cond("vip", "is_true"), all_of(cond("tier", "in", ["silver"]), cond("city", "starts_with", "be")))
    assert emails(nested, org) == {"ann@x.example", "Bob@Y.example"}
    # An empty group inside an OR does not widen it to everyone.
    assert emails(any_of(cond("vip", "is_true"), all_of()), org) == {"ann@x.example"}


def test_empty_definition_is_everyone_in_scope(org: Organisation, people: dict[str, Contact]) -> None:
    assert len(emails(segments.empty_definition(), org)) == 4


def test_list_membership_and_base_list(org: Organisation, people: dict[str, Contact]) -> None:
    vips = contact_list(org, "VIPs", people["ann"], people["bob"])
    assert emails(all_of({"type": "list", "list": vips.pk, "operator": "in"}), org) == {
        "ann@x.example",
        "Bob@Y.example",
    }
    assert emails(all_of({"type": "list", "list": str(vips.pk), "operator": "not_in"}), org) == {
        "cy@x.example",
        "dee@z.example",
    }
    segment = Segment.objects.create(
        organisation=org, name="s", contact_list=vips, definition=all_of(cond("points", "gt", 6))
    )
    assert list(segments.recipients(segment).values_list("email", flat=True)) == ["ann@x.example"]


def test_rule_conditions(org: Organisation, people: dict[str, Contact]) -> None:
    Rule.objects.create(organisation=org, name="big", kind=Rule.Kind.CONDITION, expression="points >= 10")
    Rule.objects.create(organisation=org, name="broken", kind=Rule.Kind.CONDITION, expression="points >>> 1")
    assert emails(all_of({"type": "rule", "rule": "big", "operator": "is_true"}), org) == {"ann@x.example"}
    assert emails(all_of({"type": "rule", "rule": "big", "operator": "is_false"}), org) == {
        "Bob@Y.example",
        "cy@x.example",
        "dee@z.example",
    }
    [error] = segments.validate_definition(all_of({"type": "rule", "rule": "broken", "operator": "is_true"}), org)
    assert error.startswith("Condition 1: The rule “broken” has an error:")


# --- behaviour ------------------------------------------------------------------------------


@pytest.fixture
def sent(tenant: Tenant, org: Organisation) -> dict[str, Any]:
    """Campaign C reached ann, bob and cy (dee not); ann opened and clicked link L, bob only opened;
    campaign D reached dee, who clicked another link."""
    people = {n: contact(org, f"{n}@x.example") for n in ("ann", "bob", "cy", "dee", "eve")}
    c = campaign(tenant.account_org, "C")
    d = campaign(tenant.account_org, "D")
    m = {n: message(c, people[n]) for n in ("ann", "bob", "cy")}
    message(c, people["eve"], status=Message.Status.FAILED)  # never reached eve
    event(m["ann"], "open")
    event(m["ann"], "click", link="https://shop.example/l")
    event(m["bob"], "open")
    event(message(d, people["dee"]), "click", link="https://shop.example/other")
    return {"c": c, "d": d, "people": people}


def behaviour(c: Any, operator: str, link: str = "") -> dict[str, Any]:
    out = {"type": "campaign", "campaign": c.pk, "operator": operator}
    if link:
        out["link"] = link
    return all_of(out)


@pytest.mark.parametrize(
    ("operator", "link", "expected"),
    [
        ("received", "", {"ann", "bob", "cy"}),
        ("opened", "", {"ann", "bob"}),
        ("clicked", "", {"ann"}),
        ("clicked", "https://shop.example/l", {"ann"}),
        ("clicked", "https://shop.example/other", set()),
        ("not_opened", "", {"cy"}),
        ("not_clicked", "", {"bob", "cy"}),
        ("not_clicked", "https://shop.example/l", {"bob", "cy"}),
    ],
)
def test_campaign_behaviour(
    org: Organisation, sent: dict[str, Any], operator: str, link: str, expected: set[str]
) -> None:
    assert emails(behaviour(sent["c"], operator, link), org) == {f"{n}@x.example" for n in expected}


def test_did_not_open_and_clicked_link_combined(org: Organisation, sent: dict[str, Any]) -> None:
    either = any_of(
        {"type": "campaign", "campaign": sent["c"].pk, "operator": "not_opened"},
        {"type": "campaign", "campaign": sent["d"].pk, "operator": "clicked", "link": "https://shop.example/other"},
    )
    assert emails(either, org) == {"cy@x.example", "dee@x.example"}


def test_unsubscribed_per_campaign_account_or_any_account(tenant: Tenant, org: Organisation) -> None:
    c = campaign(tenant.account_org, "C")
    contact(org, "ann@x.example")
    contact(org, "bob@x.example")
    contact(org, "cy@x.example")
    Suppression.objects.create(sending_account=tenant.account_org, email="ANN@x.example", reason="unsubscribe")
    Suppression.objects.create(sending_account=tenant.account_b, email="bob@x.example", reason="unsubscribe")
    Suppression.objects.create(sending_account=tenant.account_org, email="cy@x.example", reason="hard_bounce")
    anywhere = all_of({"type": "unsubscribed", "operator": "is_true"})
    assert emails(anywhere, org) == {"ann@x.example", "bob@x.example"}
    of_c = all_of({"type": "unsubscribed", "operator": "is_true", "campaign": c.pk})
    assert emails(of_c, org) == {"ann@x.example"}
    assert emails(all_of({"type": "unsubscribed", "operator": "is_false"}), org) == {"cy@x.example"}


def test_bounced_by_suppression_or_message(tenant: Tenant, org: Organisation) -> None:
    c = campaign(tenant.account_org, "C")
    d = campaign(tenant.account_org, "D")
    ann, bob, cy = (contact(org, f"{n}@x.example") for n in ("ann", "bob", "cy"))
    Suppression.objects.create(sending_account=tenant.account_a, email="ann@x.example", reason="hard_bounce")
    message(d, bob, status=Message.Status.BOUNCED)
    message(c, cy)
    assert emails(all_of({"type": "bounced", "operator": "is_true"}), org) == {"ann@x.example", "bob@x.example"}
    assert emails(all_of({"type": "bounced", "operator": "is_true", "campaign": d.pk}), org) == {"bob@x.example"}
    assert emails(all_of({"type": "bounced", "operator": "is_false"}), org) == {"cy@x.example"}


# --- tenancy --------------------------------------------------------------------------------


def test_other_organisations_contacts_and_events_never_count(tenant: Tenant, org: Organisation) -> None:
    # given: another organisation with a contact of the same address, which opened its own campaign
    other = OrganisationFactory()
    other_account = SendingAccountFactory(organisation=other)
    theirs = contact(other, "ann@x.example")
    event(message(campaign(other_account, "Theirs"), theirs), "open")
    Suppression.objects.create(sending_account=other_account, email="ann@x.example", reason="unsubscribe")
    ours = contact(org, "ann@x.example")
    c = campaign(tenant.account_org, "Ours")
    message(c, ours)
    # then: our campaign was not opened; their unsubscribe is not ours
    assert emails(behaviour(c, "opened"), org) == set()
    assert emails(behaviour(c, "not_opened"), org) == {"ann@x.example"}
    assert emails(all_of({"type": "unsubscribed", "operator": "is_true"}), org) == set()
    assert segments.count(segments.empty_definition(), org) == 1
    # and their campaign cannot be named in our definition
    their_campaign = campaign(other_account, "Theirs too")
    assert segments.validate_definition(behaviour(their_campaign, "opened"), org) == [
        "Condition 1: That campaign does not exist (any more)."
    ]


def test_client_scope(tenant: Tenant, org: Organisation) -> None:
    contact(org, "org@x.example")
    contact(org, "a@x.example", client=tenant.client_a)
    contact(org, "b@x.example", client=tenant.client_b)
    assert emails(segments.empty_definition(), org) == {"org@x.example"}
    assert emails(segments.empty_definition(), org, tenant.client_a) == {"a@x.example"}
    # A client's segment may not use another client's list or campaign.
    list_b = contact_list(org, "B", client=tenant.client_b)
    c_b = campaign(tenant.account_b, "B news")
    errors = segments.validate_definition(
        all_of({"type": "list", "list": list_b.pk, "operator": "in"}, *behaviour(c_b, "opened")["items"]),
        org,
        tenant.client_a,
    )
    assert errors == [
        "Condition 1: That list does not exist (any more).",
        "Condition 2: That campaign does not exist (any more).",
    ]


# --- validation -----------------------------------------------------------------------------


def test_validation_messages_name_the_condition(org: Organisation, people: dict[str, Contact]) -> None:
    definition = {
        "op": "and",
        "items": [
            cond("points", "gt", "many"),
            {
                "op": "or",
                "items": [
                    cond("born", "on", "31.12.2001"),
                    cond("tier", "in", ["gold", "platinum"]),
                    cond("shoe_size", "eq", 4),
                    cond("city", "equals", "  "),
                    cond("vip", "gt", 1),
                ],
            },
            {"type": "campaign", "campaign": 999999, "operator": "opened"},
            {"type": "list", "operator": "in"},
            {"type": "rule", "rule": "nope", "operator": "is_true"},
            {"type": "magic"},
            cond("born", "within_last_days", -1),
        ],
    }
    assert segments.validate_definition(definition, org) == [
        "Condition 1: Enter a number for Points.",
        "Condition 1 in group 2: Enter a date for Born as YYYY-MM-DD.",
        "Condition 2 in group 2: platinum is not a choice of Tier.",
        "Condition 3 in group 2: There is no field “shoe_size”.",
        "Condition 4 in group 2: Enter the text to compare City with.",
        "Condition 5 in group 2: Choose how to compare Vip.",
        "Condition 3: That campaign does not exist (any more).",
        "Condition 4: Choose a list.",
        "Condition 5: There is no condition rule named “nope”.",
        "Condition 6: Choose what to test.",
        "Condition 7: Enter a whole number of days (0 to 36500).",
    ]


def test_invalid_definitions_are_refused_when_compiled(org: Organisation) -> None:
    with pytest.raises(segments.SegmentError, match="Choose a field"):
        segments.segment_q(all_of({"type": "field", "operator": "equals"}), org)
    assert segments.validate_definition(["not", "a", "group"], org) == [
        "The criteria must be a group with an operator and items."
    ]
    assert segments.validate_definition({"op": "xor", "items": []}, org) == ["Combine conditions with “and” or “or”."]
    too_deep = all_of(all_of(all_of(all_of(cond("email", "is_empty")))))
    assert segments.validate_definition(too_deep, org) == ["Condition 1.1.1: Groups may be nested at most 3 deep."]


def test_clean_brings_values_to_their_types(org: Organisation, people: dict[str, Contact]) -> None:
    cleaned = segments.clean_definition(all_of(cond("points", "gte", "7"), cond("tier", "in", "gold")), org)
    assert cleaned.errors == {}
    assert cleaned.definition["items"] == [cond("points", "gte", 7), cond("tier", "in", ["gold"])]


def test_count_and_summary(org: Organisation, people: dict[str, Contact]) -> None:
    definition = any_of(cond("points", "gt", 6), cond("vip", "is_true"))
    assert segments.count(definition, org) == 1
    assert segments.summary(definition, org) == "Points > 6 or Vip is true"
    assert segments.summary(segments.empty_definition(), org) == "All contacts"


def test_cached_count_follows_edits(org: Organisation, people: dict[str, Contact]) -> None:
    segment = Segment.objects.create(organisation=org, name="s", definition=all_of(cond("points", "gt", 6)))
    assert segments.cached_count(segment) == 1
    segment.definition = all_of(cond("points", "gt", 1))
    assert segments.cached_count(segment) == 2


# --- scale ----------------------------------------------------------------------------------

BIG = 200_000


@pytest.mark.django_db
def test_counts_on_200000_contacts_use_one_pass_and_semi_joins(tenant: Tenant, org: Organisation) -> None:
    """Measured note: the plan and the time of a mixed segment over 200,000 contacts of one
    organisation (plus 50,000 of another), with 20,000 messages and opens. Prints the EXPLAIN."""
    custom_field(org, "points", T.NUMBER)
    custom_field(org, "tier", T.CHOICE, ["gold", "silver"])
    other = OrganisationFactory()
    c = campaign(tenant.account_org, "Big")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO campaigns_contact (organisation_id, client_id, email, first_name, last_name, fields,
                                           created_at, updated_at)
            SELECT CASE WHEN i <= %(big)s THEN %(org)s ELSE %(other)s END, NULL, 'c' || i || '@x.example', '', '',
                   jsonb_build_object('points', i %% 100, 'tier', CASE WHEN i %% 3 = 0 THEN 'gold' ELSE 'silver' END),
                   now(), now()
            FROM generate_series(1, %(total)s) AS i
            """,
            {"big": BIG, "org": org.pk, "other": other.pk, "total": BIG + 50_000},
        )
        cursor.execute(
            """
            INSERT INTO campaigns_message (organisation_id, sending_account_id, campaign_id, contact_id, template_id,
                sender_id, to_email, data, promotional, status, token, attempts, claimed_by, provider_message_id,
                error, created_at, updated_at)
            SELECT %(org)s, %(account)s, %(campaign)s, id, %(template)s, %(sender)s, email, '{}', true, 'delivered',
                   'tok' || id, 0, '', '', '', now(), now()
            FROM campaigns_contact WHERE organisation_id = %(org)s ORDER BY id LIMIT 20000
            """,
            {
                "org": org.pk,
                "account": c.sending_account_id,
                "campaign": c.pk,
                "template": c.template_id,
                "sender": c.sender_id,
            },
        )
        cursor.execute(
            """INSERT INTO campaigns_messageevent (message_id, organisation_id, sending_account_id, campaign_id,
                   type, subtype, at, machine, recipient_domain, data)
               SELECT id, organisation_id, sending_account_id, campaign_id, 'open', '', now(), false, '', '{}'
               FROM campaigns_message
               WHERE campaign_id = %s AND substring(to_email FROM '^c([0-9]+)@')::int %% 2 = 0""",
            [c.pk],
        )
        cursor.execute("ANALYZE campaigns_contact; ANALYZE campaigns_message; ANALYZE campaigns_messageevent")
    definition = all_of(
        cond("points", "gte", 50),
        any_of(cond("tier", "in", ["gold"]), cond("email", "starts_with", "c1")),
        {"type": "campaign", "campaign": c.pk, "operator": "not_opened"},
        {"type": "unsubscribed", "operator": "is_false"},
    )
    qs = segments.scope(org, None).filter(segments.segment_q(definition, org))
    started = time.perf_counter()
    n = qs.count()
    elapsed = time.perf_counter() - started
    plan = qs.explain(analyze=True)
    print(f"\n{n} of {BIG} contacts in {elapsed * 1000:.0f} ms\n{plan}")  # noqa: T201 (the measured note)
    # contacts 1..20000 got the campaign, even ids opened; of the odd ids, points >= 50 and (gold or c1…)
    expected = sum(1 for i in range(1, 20_001, 2) if i % 100 >= 50 and (i % 3 == 0 or str(i).startswith("1")))
    assert n == expected
    # One pass over the contacts; the behaviour tests are semi/anti joins, not a subplan per row.
    assert "SubPlan" not in plan
    assert elapsed < 3.0

    # Field-only criteria scan the organisation's contacts; equality tests (numbers, choices,
    # yes/no) are JSON containment, which a GIN index answers. Measured without and with it.
    fields_only = all_of(cond("points", "eq", 42), cond("tier", "in", ["gold"]))
    timings = {}
    for label in ("without index", "with GIN index"):
        if label == "with GIN index":
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred FK checks block CREATE INDEX
                cursor.execute("CREATE INDEX contact_fields_gin ON campaigns_contact USING gin (fields jsonb_path_ops)")
                cursor.execute("ANALYZE campaigns_contact")
        qs = segments.scope(org, None).filter(segments.segment_q(fields_only, org))
        started = time.perf_counter()
        assert qs.count() == sum(1 for i in range(1, BIG + 1) if i % 100 == 42 and i % 3 == 0)
        timings[label] = (time.perf_counter() - started) * 1000
        print(f"fields only, {label}: {timings[label]:.0f} ms\n{qs.explain()}")  # noqa: T201
    whole_scan = all_of(cond("points", "gte", 50), cond("email", "contains", "7"))
    started = time.perf_counter()
    segments.count(whole_scan, org)
    print(f"range + substring (full scan of the organisation): {(time.perf_counter() - started) * 1000:.0f} ms")  # noqa: T201
