"""Rendering: rules in content, escaping of merge data in HTML only, generated text versions, MJML,
CSS inlined before personalisation, save-time checks with line and column."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.benchmarks.render import canonical
from campaigns.models import Rule, Template
from campaigns.rendering import RenderError, TemplateError, check_template, prepare
from campaigns.rendering.environment import parse_liquid
from campaigns.rendering.fast import FastTemplate

MESSAGE = {"unsubscribe_url": "https://t.example.com/u/tok", "view_url": "https://t.example.com/v/tok"}


def template(body: str, *, subject: str = "Hi {{ contact.first_name }}", text: str = "", **extra: Any) -> Template:
    return Template(name="T", slug="t", subject=subject, body=body, text=text, **extra)


def test_the_canonical_message_renders_rules_and_fields() -> None:
    data = canonical()
    prepared = prepare(data.template, data.rules)
    rendered = prepared.render(data.contact, {}, data.message)
    assert "Hallo Jürgen Müller" in rendered.html
    assert "<b>VIP</b>" in rendered.html
    assert "Hallo Jürgen Müller, (VIP)" in rendered.text
    assert "https://t.example.com/c/tok_3f9a1c/7" in rendered.html
    assert "Unsubscribe: https://t.example.com/u/tok_3f9a1c" in rendered.text
    assert rendered.subject == "Hallo Jürgen, your monthly update"


def test_the_canonical_rules_follow_the_contact() -> None:
    data = canonical()
    prepared = prepare(data.template, data.rules)
    contact = {**data.contact, "country": "AT", "points": 100}
    rendered = prepared.render(contact, {}, data.message)
    assert "Hello Jürgen Müller" in rendered.html
    assert "VIP" not in rendered.html


def test_the_fast_path_renders_exactly_like_python_liquid() -> None:
    data = canonical()
    prepared = prepare(data.template, data.rules)
    contact = {**data.contact, "first_name": '<Jo & "Al">', "points": None, "tags": ["a", "b"]}
    namespace = {"contact": contact, "rules": {"vip": True, "greeting": "Hi"}, "data": {}, "message": {}}
    assert prepared.html.steps  # the template was split
    assert prepared.html.render(namespace) == prepared.html.template.render(namespace)
    odd = parse_liquid(
        "{{ contact.tags }}|{{ contact.points }}|{{ contact.missing.x }}|{{ rules.vip }}", autoescape=True
    )
    assert FastTemplate(odd, ("contact",)).render(namespace) == odd.render(namespace) == "ab|||true"


def test_the_fast_path_steps_aside_when_a_template_assigns_a_context_name() -> None:
    shadow = parse_liquid("{% assign contact = data %}{{ contact.first_name }}", autoescape=True)
    fast = FastTemplate(shadow, ("contact", "data"))
    namespace = {"contact": {"first_name": "Real"}, "data": {"first_name": "Data"}}
    assert not fast.enabled
    assert fast.render(namespace) == "Data"


def test_merge_data_is_escaped_in_html_but_not_in_text_or_subject() -> None:
    prepared = prepare(
        template(
            "<p>{{ contact.first_name }} {{ data.note }} {{ rules.label }}</p>",
            subject="{{ contact.first_name }}",
            text="{{ contact.first_name }} {{ data.note }}",
        ),
        [Rule(name="label", kind=Rule.Kind.VALUE, expression="{{ first_name }}")],
    )
    evil = "<script>alert('x')</script>"
    rendered = prepared.render({"first_name": evil}, {"note": "a & b"}, MESSAGE)
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; a &amp; b &lt;script&gt;" in rendered.html
    assert rendered.text == f"{evil} a & b"
    assert rendered.subject == evil


def test_the_text_version_is_generated_from_the_html_when_empty() -> None:
    body = (
        "<html><body><h1>Hello {{ contact.first_name }}</h1><p>Your <b>offer</b> &amp; more.</p>"
        '<a href="{{ message.unsubscribe_url }}">Unsubscribe</a></body></html>'
    )
    prepared = prepare(template(body))
    assert "{{ contact.first_name }}" in prepared.text_source  # generated once, as Liquid
    rendered = prepared.render({"first_name": "Jo <3"}, {}, MESSAGE)
    assert "Hello Jo <3" in rendered.text
    assert "Your offer & more." in rendered.text
    assert "[Unsubscribe](https://t.example.com/u/tok)" in rendered.text
    assert "<" not in rendered.text.replace("Jo <3", "")


def test_the_text_version_falls_back_to_per_message_conversion_when_liquid_would_move() -> None:
    body = (
        "<table><tr><td>a</td></tr>{% if rules.vip %}<tr><td>VIP {{ contact.first_name }}</td></tr>{% endif %}</table>"
    )
    prepared = prepare(template(body), [Rule(name="vip", kind=Rule.Kind.CONDITION, expression="points > 1")])
    rendered = prepared.render({"first_name": "Jo", "points": 5}, {}, MESSAGE)
    assert "VIP Jo" in rendered.text
    assert "VIP" not in prepared.render({"first_name": "Jo", "points": 0}, {}, MESSAGE).text


def test_mjml_is_compiled_at_prepare_time_with_liquid_kept() -> None:
    body = (
        "<mjml><mj-body><mj-section><mj-column>"
        "<mj-text>Hallo {{ contact.first_name }}</mj-text>"
        '<mj-button href="https://t.example.com/c/{{ contact.token }}">Go</mj-button>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    prepared = prepare(template(body, source_format=Template.Format.MJML))
    assert "<mj-" not in prepared.html_source
    rendered = prepared.render({"first_name": "Jürgen", "token": "t1"}, {}, MESSAGE)
    assert "Hallo Jürgen" in rendered.html
    assert 'href="https://t.example.com/c/t1"' in rendered.html
    assert "Hallo Jürgen" in rendered.text


def test_invalid_mjml_is_a_template_error() -> None:
    with pytest.raises(TemplateError, match="MJML"):
        prepare(template("<mjml><mj-body><mj-nope", source_format=Template.Format.MJML))


def test_css_is_inlined_before_personalisation() -> None:
    body = (
        "<html><head><style>.btn { color: #ff0000; } @media (max-width: 600px) { .btn { color: blue; } }</style>"
        '</head><body><a class="btn" href="https://x.example/{{ contact.token }}">{{ contact.first_name }}</a>'
        "</body></html>"
    )
    prepared = prepare(template(body))
    assert prepared.css_inlined
    assert 'style="color: #ff0000;"' in prepared.html_source
    assert "{{ contact.first_name }}" in prepared.html_source
    assert "@media" in prepared.html_source  # kept for clients that support it
    rendered = prepared.render({"first_name": "Jo", "token": "t9"}, {}, MESSAGE)
    assert '<a class="btn" href="https://x.example/t9" style="color: #ff0000;">Jo</a>' in rendered.html


def test_css_inlining_never_moves_liquid_out_of_a_table() -> None:
    data = canonical()  # {% if %} between table rows
    prepared = prepare(data.template, data.rules)
    assert prepared.css_inlined
    assert 'style="background: #1a73e8;color: #ffffff;padding: 12px 20px;display: inline-block' in prepared.html_source
    assert '{% if contact.plan_name == "Pro" %}<tr><td style="padding:8px 24px;">' in prepared.html_source
    rendered = prepared.render({**data.contact, "plan_name": "Free"}, {}, data.message)
    assert "Thanks for being on the Pro plan" not in rendered.html


def test_remote_stylesheets_are_never_fetched() -> None:
    body = '<html><head><link rel="stylesheet" href="http://169.254.169.254/x.css"><style>p{color:red}</style></head><body><p>x</p></body></html>'
    prepared = prepare(template(body))
    assert '<p style="color: red;">x</p>' in prepared.html_source


def test_the_preheader_is_a_hidden_first_element() -> None:
    prepared = prepare(template("<html><body><p>Body</p></body></html>", preheader="For {{ contact.first_name }}"))
    rendered = prepared.render({"first_name": "Jo"}, {}, MESSAGE)
    assert rendered.preheader == "For Jo"
    assert rendered.html.index("For Jo") < rendered.html.index("Body")
    assert "display:none" in rendered.html


def test_render_errors_are_render_errors() -> None:
    prepared = prepare(template("{{ data.n | divided_by: 0 }}"))
    with pytest.raises(RenderError, match="divide by 0"):
        prepared.render({}, {"n": 1}, MESSAGE)


# --- save-time checks --------------------------------------------------------------------------------


def test_check_template_reports_syntax_errors_with_line_and_column() -> None:
    problems = check_template(template("<p>\n  {% if contact.x %}\n  x {{ contact.y | upcase </p>"), [], [])
    assert [(p.part, p.line) for p in problems] == [("body", 3)]


def test_check_template_reports_unknown_rules_and_names() -> None:
    body = "<p>{{ rules.vip }}</p>\n<p>{{ rules.nope }} {{ first_name }}</p>"
    problems = check_template(
        template(body, subject="{{ rules.gone }}"),
        [Rule(name="vip", kind=Rule.Kind.CONDITION, expression="points > 1")],
        [],
    )
    found = {(p.part, p.line, p.column, p.message.split(":")[0]) for p in problems}
    assert ("subject", 1, 4, "There is no rule called “gone”.") in found
    assert ("body", 2, 7, "There is no rule called “nope”.") in found
    assert ("body", 2, 24, "Unknown name “first_name”") in found


def test_check_template_reports_filters_that_do_not_exist() -> None:
    problems = check_template(template("x\n{{ contact.a | shell }}"), [], [])
    assert [(p.line, p.column) for p in problems] == [(2, 16)]


def test_check_template_renders_each_sample(db: None) -> None:
    body = "{% for i in (1..data.n) %}{% endfor %}{{ contact.points | divided_by: contact.div }}"
    problems = check_template(
        template(body), [], [{"email": "ok@x.de", "points": 4, "div": 2}, {"email": "bad@x.de", "div": 0}]
    )
    assert [p.sample for p in problems] == ["bad@x.de"]
    assert "divide by 0" in problems[0].message


def test_check_template_reports_rule_errors() -> None:
    problems = check_template(template("x"), [Rule(name="a", kind=Rule.Kind.CONDITION, expression="a")], [])
    assert problems
    assert problems[0].part == "rules"
    assert "circle" in problems[0].message


def test_a_clean_template_has_no_problems() -> None:
    data = canonical()
    assert check_template(data.template, data.rules, [data.contact]) == []
