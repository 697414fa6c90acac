"""Business rules: the condition language (parse errors with position, evaluation), value rules,
dependency order and cycles, validation against the organisation's fields, and SQL that selects
exactly the contacts the Python evaluation selects."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Contact, CustomField, Rule
from campaigns.rules import (
    RuleError,
    compile_rules,
    condition_to_q,
    contact_fields,
    evaluate,
    parse_condition,
    validate_rule,
)
from tests.factories import OrganisationFactory


def rule(name: str, expression: str, kind: str = Rule.Kind.CONDITION) -> Rule:
    return Rule(name=name, kind=kind, expression=expression)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("points >", 1, 9),
        ("points > 100 and\n  country ==", 2, 13),
        ("points > 100\n  country == 'DE'", 2, 3),
        ("(points > 1", 1, 12),
        ("country == 'DE' & x", 1, 17),
        ("100 < points", 1, 1),
        ("renewal_date < date('2027-02-30')", 1, 21),
        ("email ends_with 5", 1, 7),
    ],
)
def test_parse_errors_carry_line_and_column(text: str, line: int, column: int) -> None:
    with pytest.raises(RuleError) as info:
        parse_condition(text)
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert f"line {line}, column {column}" in str(info.value)


def test_an_empty_condition_is_an_error() -> None:
    with pytest.raises(RuleError, match="empty"):
        parse_condition("   ")


CONTACT: dict[str, Any] = {
    "email": "Jo@Example.DE",
    "first_name": "Jo",
    "last_name": "",
    "points": 150,
    "country": "DE",
    "newsletter": True,
    "renewal_date": "2027-03-01",
    "phone": "  ",
    "score_text": "150",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("points > 100", True),
        ("points > 150", False),
        ("points >= 150 and points <= 150", True),
        ("points == 150.0", True),
        ("score_text > 100", False),  # a number in a text is not a number
        ("score_text == 150", False),
        ('country == "DE"', True),
        ("country != 'DE'", False),
        ('country in ["AT", "DE"]', True),
        ('country not in ["AT", "DE"]', False),
        ('email ends_with "@example.de"', True),  # case-insensitive, like e-mail addresses
        ('email starts_with "jo@"', True),
        ('email contains "xample"', True),
        ("is_blank(phone)", True),
        ("is_blank(last_name)", True),
        ("is_blank(missing)", True),
        ("is_present(first_name)", True),
        ("newsletter", True),
        ("newsletter == true", True),
        ("points == true", False),
        ("missing > 1", False),
        ("not missing > 1", True),
        ("missing != 'x'", True),
        ('renewal_date < date("2027-04-01")', True),
        ('renewal_date == date("2027-03-01")', True),
        ('renewal_date > "2027-03-01"', False),
        ("true and not false", True),
        ("(points > 1000 or country == 'DE') and not (newsletter == false)", True),
        ("points > 1000 or country == 'AT' or is_blank(first_name)", False),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert evaluate(parse_condition(text), CONTACT, {}) is expected


def test_a_bare_name_is_a_rule_before_a_field() -> None:
    rules = {"vip": parse_condition("points > 100"), "gold": parse_condition("vip and country == 'DE'")}
    assert evaluate(parse_condition("gold and not unsubscribed"), CONTACT, rules) is True
    assert evaluate(parse_condition("vip"), {"points": 5}, rules) is False


def test_compile_rules_evaluates_conditions_and_values_in_dependency_order() -> None:
    compiled = compile_rules(
        [
            rule("salutation", "{% if rules.vip %}Dear VIP{% else %}{{ greeting }}{% endif %}", Rule.Kind.VALUE),
            rule("greeting", "{% if country == 'DE' %}Hallo{% else %}Hello{% endif %}", Rule.Kind.VALUE),
            rule("vip", "points > 100"),
            rule("vip_de", "vip and country == 'DE'"),
        ]
    )
    assert compiled.order.index("greeting") < compiled.order.index("salutation")
    assert compiled.order.index("vip") < compiled.order.index("vip_de")
    assert compiled.evaluate(CONTACT) == {"vip": True, "vip_de": True, "greeting": "Hallo", "salutation": "Dear VIP"}
    assert compiled.evaluate({"points": 1, "country": "US"}) == {
        "vip": False,
        "vip_de": False,
        "greeting": "Hello",
        "salutation": "Hello",
    }


def test_cycles_between_rules_are_refused_and_named() -> None:
    with pytest.raises(RuleError) as info:
        compile_rules([rule("a", "b or points > 1"), rule("b", "c"), rule("c", "a")])
    assert "a → b → c → a" in str(info.value)


def test_a_cycle_through_a_value_rule_is_refused() -> None:
    with pytest.raises(RuleError, match="circle"):
        compile_rules([rule("x", "{{ rules.y }}", Rule.Kind.VALUE), rule("y", "{{ x }}", Rule.Kind.VALUE)])


def test_a_value_rule_cannot_be_used_as_a_condition() -> None:
    with pytest.raises(RuleError, match="computed value"):
        compile_rules([rule("greeting", "Hi", Rule.Kind.VALUE), rule("vip", "greeting")])


def test_value_rules_run_under_the_content_limits() -> None:
    compiled = compile_rules([rule("spin", "{% for i in (1..100000000) %}x{% endfor %}", Rule.Kind.VALUE)])
    with pytest.raises(RuleError, match="loop iteration limit"):
        compiled.evaluate({})


def test_value_rule_syntax_errors_carry_line_and_column() -> None:
    with pytest.raises(RuleError) as info:
        compile_rules([rule("greeting", "Hallo\n{% if country == 'DE' %}x", Rule.Kind.VALUE)])
    assert info.value.line == 2
    assert info.value.rule == "greeting"


# --- validation against the organisation --------------------------------------------------------------


@pytest.fixture
def organisation(db: None) -> Any:
    organisation = OrganisationFactory()
    CustomField.objects.create(organisation=organisation, key="points", label="Points", type="number")
    CustomField.objects.create(organisation=organisation, key="country", label="Country", type="text")
    CustomField.objects.create(organisation=organisation, key="renewal", label="Renewal", type="date")
    CustomField.objects.create(organisation=organisation, key="newsletter", label="Newsletter", type="boolean")
    CustomField.objects.create(
        organisation=organisation, key="tier", label="Tier", type="choice", choices=["gold", "silver"]
    )
    Rule.objects.create(organisation=organisation, name="vip", kind=Rule.Kind.CONDITION, expression="points > 100")
    Rule.objects.create(organisation=organisation, name="greeting", kind=Rule.Kind.VALUE, expression="Hi")
    return organisation


def test_validate_accepts_known_fields_and_rules(organisation: Any) -> None:
    validate_rule(
        "vip and country in ['DE', 'AT'] and tier == 'gold' and is_blank(first_name)", "condition", organisation
    )
    validate_rule("{% if rules.vip %}{{ contact.first_name }}{% endif %}{{ country }}", "value", organisation)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("vip and colour == 'red'", "no field or rule called “colour”", 9),
        ("unknown", "no field or rule called “unknown”", 1),
        ("points > 'many'", "does not fit the field", 1),
        ("tier == 'bronze'", "does not fit the field", 1),
        ("newsletter == 1", "does not fit the field", 1),
        ("greeting", "computed value", 1),
    ],
)
def test_validate_refuses_unknown_or_mistyped_names(organisation: Any, text: str, message: str, column: int) -> None:
    with pytest.raises(RuleError, match=message) as info:
        validate_rule(text, "condition", organisation)
    assert info.value.column == column


def test_validate_refuses_unknown_names_in_value_rules(organisation: Any) -> None:
    with pytest.raises(RuleError, match="no rule called “nope”") as info:
        validate_rule("Hi\n{{ rules.nope }}", "value", organisation)
    assert (info.value.line, info.value.column) == (2, 4)
    with pytest.raises(RuleError, match="no field called “shoe_size”"):
        validate_rule("{{ contact.shoe_size }}", "value", organisation)


def test_validate_detects_a_cycle_with_saved_rules(organisation: Any) -> None:
    Rule.objects.create(organisation=organisation, name="loyal", kind=Rule.Kind.CONDITION, expression="gold_club")
    candidate = Rule(organisation=organisation, name="gold_club", kind=Rule.Kind.CONDITION, expression="loyal")
    with pytest.raises(RuleError, match="circle"):
        validate_rule(candidate, "condition", organisation)


def test_validate_refuses_a_rule_named_like_a_field(organisation: Any) -> None:
    with pytest.raises(RuleError, match="field is already called"):
        validate_rule(
            Rule(organisation=organisation, name="points", kind="condition", expression="true"),
            "condition",
            organisation,
        )


def test_validate_accepts_editing_a_rule_in_place(organisation: Any) -> None:
    vip = Rule.objects.get(organisation=organisation, name="vip")
    vip.expression = "points > 500 or tier == 'gold'"
    validate_rule(vip, "condition", organisation)


# --- the same selection in SQL ---------------------------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"email": "a@x.de", "first_name": "Anna", "fields": {"points": 150, "country": "DE", "renewal": "2027-03-01",
                                                         "newsletter": True, "tier": "gold"}},
    {"email": "B@Y.AT", "first_name": "", "fields": {"points": 100, "country": "AT", "renewal": "2026-12-31",
                                                     "newsletter": False, "tier": "silver"}},
    {"email": "c@x.de", "first_name": "Carl", "fields": {"points": 99.5, "country": "de", "newsletter": True}},
    {"email": "d@z.com", "first_name": "  ", "fields": {"points": "150", "country": 5, "newsletter": "true",
                                                        "renewal": 20270301, "tier": None}},
    {"email": "e@z.com", "first_name": "Eve", "fields": {}},
    {"email": "f@x.de", "first_name": "Fay", "fields": {"points": True, "country": "", "tier": "gold"}},
]  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "points > 100",
        "points >= 100",
        "points < 100",
        "points == 150",
        "points != 150",
        "not points > 100",
        "points == 99.5",
        "country == 'DE'",
        "country in ['DE', 'AT']",
        "country not in ['DE', 'AT']",
        "country > 'B'",
        "is_blank(country)",
        "is_present(country)",
        "is_blank(first_name)",
        "is_blank(tier)",
        "newsletter",
        "not newsletter",
        "newsletter == false",
        "tier == 'gold'",
        "renewal < date('2027-01-01')",
        "renewal >= '2027-01-01'",
        "email ends_with '@x.de'",
        "email ends_with '@y.at'",
        "email == 'a@x.de'",
        "email starts_with 'A'",
        "first_name contains 'ar'",
        "email > 'c'",
        "email == 5",
        "vip",
        "vip and not newsletter",
        "not (vip or country == 'AT')",
        "true",
        "false or is_blank(points)",
    ],
)
def test_condition_to_q_selects_what_evaluate_selects(organisation: Any, text: str) -> None:
    # given contacts with typed, mistyped and missing values
    contacts = [Contact.objects.create(organisation=organisation, **row) for row in ROWS]
    rules = {"vip": parse_condition("points > 100 and tier == 'gold'")}
    condition = parse_condition(text)
    # when the condition runs in SQL and in Python
    in_sql = set(Contact.objects.filter(organisation=organisation).filter(condition_to_q(condition, rules)))
    in_python = {c for c in contacts if evaluate(condition, contact_fields(c), rules)}
    # then both select the same contacts
    assert {c.email for c in in_sql} == {c.email for c in in_python}


def test_condition_to_q_selects_the_expected_rows(organisation: Any) -> None:
    for row in ROWS:
        Contact.objects.create(organisation=organisation, **row)
    q = condition_to_q(parse_condition("points > 99 and not country == 'AT'"), {})
    emails = set(Contact.objects.filter(organisation=organisation).filter(q).values_list("email", flat=True))
    assert emails == {"a@x.de", "c@x.de"}


def test_condition_to_q_refuses_self_reference() -> None:
    with pytest.raises(RuleError, match="depends on itself"):
        condition_to_q(parse_condition("loop"), {"loop": parse_condition("loop or points > 1")})
