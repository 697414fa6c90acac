"""Untrusted templates: nothing outside the four context names is reachable, other templates cannot
be loaded, loops, output and nesting are capped with clear errors, and merge data can never add
or break a header."""

from __future__ import annotations

import pytest
from django.conf import settings

from campaigns.models import Template
from campaigns.rendering import RenderError, TemplateError, check_template, prepare
from tests.campaigns.test_mime import parse, parts

MESSAGE = {"unsubscribe_url": "https://t.example.com/u/tok"}


def template(body: str, subject: str = "s", text: str = "t") -> Template:
    return Template(name="T", slug="t", subject=subject, body=body, text=text)


@pytest.mark.parametrize(
    "expression",
    [
        "settings.SECRET_KEY",
        "contact.settings.SECRET_KEY",
        "contact.__class__",
        "data.__init__.__globals__",
        "message.items",
        "rules.__dict__",
        "template",
    ],
)
def test_nothing_outside_the_context_is_reachable(expression: str) -> None:
    prepared = prepare(
        template(f"[{{{{ {expression} }}}}]", subject=f"{{{{ {expression} }}}}", text=f"{{{{ {expression} }}}}")
    )
    rendered = prepared.render({"first_name": "Jo"}, {"a": 1}, MESSAGE)
    assert rendered.html == "[]"
    assert rendered.text == ""
    assert settings.SECRET_KEY not in rendered.html + rendered.text + rendered.subject


def test_check_template_flags_settings_as_unknown() -> None:
    problems = check_template(template("{{ settings.SECRET_KEY }}"), [], [])
    assert [(p.part, p.line, p.column) for p in problems] == [("body", 1, 4)]
    assert "Unknown name “settings”" in problems[0].message


@pytest.mark.parametrize(
    "body",
    ["{% include 'x' %}", "{% render 'base' %}", "a\n  {% include settings %}", "{% liquid\ninclude 'x' %}"],
)
def test_including_or_rendering_other_templates_is_refused(body: str) -> None:
    with pytest.raises(TemplateError) as info:
        prepare(template(body))
    problem = info.value.problems[0]
    assert "is not allowed in e-mail templates" in problem.message
    assert problem.line is not None


def test_huge_loops_are_capped() -> None:
    prepared = prepare(template("{% for i in (1..100000000) %}{{ i }}{% endfor %}"))
    with pytest.raises(RenderError, match="loop iteration limit"):
        prepared.render({}, {}, MESSAGE)


def test_nested_loops_count_together() -> None:
    prepared = prepare(template("{% for i in (1..1000) %}{% for j in (1..1000) %}{% endfor %}{% endfor %}"))
    with pytest.raises(RenderError, match="loop iteration limit"):
        prepared.render({}, {}, MESSAGE)


def test_huge_output_is_capped() -> None:
    prepared = prepare(template("{% for i in (1..5000) %}{{ data.big }}{% endfor %}"))
    with pytest.raises(RenderError, match="output stream limit"):
        prepared.render({}, {"big": "x" * 1000}, MESSAGE)


def test_huge_output_from_slots_alone_is_capped() -> None:
    prepared = prepare(template("{{ data.big }}" * 30))
    with pytest.raises(RenderError, match="output stream limit"):
        prepared.render({}, {"big": "€" * 100_000}, MESSAGE)


def test_deep_nesting_is_refused_at_prepare_time() -> None:
    body = "{% if true %}" * 40 + "x" + "{% endif %}" * 40
    with pytest.raises(TemplateError) as info:
        prepare(template(body))
    assert "nesting" in info.value.problems[0].message


def test_huge_strings_from_filters_are_capped() -> None:
    prepared = prepare(
        template("{% assign s = 'xxxxxxxxxx' %}{% for i in (1..30) %}{% assign s = s | append: s %}{% endfor %}{{ s }}")
    )
    with pytest.raises(RenderError, match="limit"):
        prepared.render({}, {}, MESSAGE)


def test_crlf_in_merge_data_never_reaches_a_header() -> None:
    # given merge data that tries to add headers through the subject and the display name
    prepared = prepare(template("<p>{{ data.x }}</p>", subject="Hi {{ contact.first_name }}", text="{{ data.x }}"))
    evil = "Jo\r\nBcc: victim@example.com\r\n\r\n<h1>injected</h1>"
    rendered = prepared.render({"first_name": evil}, {"x": evil}, MESSAGE)
    # when the MIME message is built
    raw = prepared.build_mime(
        rendered,
        from_header=("Shop\nX-Evil: 1", "news@example.com"),
        to=("Jo\rBcc: other@example.com", "jo@example.com"),
        message_id_domain="example.com",
        headers={"X-Campaign": "c1\r\nBcc: third@example.com"},
    )
    # then no header was added and the subject is one line
    message = parse(raw)
    assert message["Bcc"] is None
    assert message["X-Evil"] is None
    assert sorted(message.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "X-Campaign", "MIME-Version", "Content-Type"]
    )
    assert message["Subject"] == "Hi Jo  Bcc: victim@example.com    <h1>injected</h1>"
    assert "\n" not in message["Subject"]
    assert [a.addr_spec for a in message["To"].addresses] == ["jo@example.com"]
    assert message["X-Campaign"] == "c1  Bcc: third@example.com"
    # and the bodies still carry the data, escaped in HTML
    text, html = parts(message)
    assert text == evil.replace("\r\n", "\n")
    assert "&lt;h1&gt;injected&lt;/h1&gt;" in html


def test_unicode_line_breaks_in_merge_data_never_reach_a_header() -> None:
    prepared = prepare(template("x", subject="{{ data.s }}"))
    rendered = prepared.render({}, {"s": "a\u2028b\u0085c\x00d\x0be"}, MESSAGE)
    raw = prepared.build_mime(rendered, from_header="a@x.de", to="b@x.de", message_id_domain="x.de")
    assert parse(raw)["Subject"] == "a b c d e"
