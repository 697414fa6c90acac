"""Template and rule pages: errors caught at save time with line and column, the preview in a sealed
frame, test sends only to verified addresses, and tenancy."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone

from accounts.models import SenderAddress, User
from campaigns.models import Message, Rule, Template
from tests.campaigns.fixtures_api import give_credits
from tests.campaigns.fixtures_segments import contact
from tests.conftest import Tenant
from tests.plans.conftest import ensure_catalogue


def template_data(**changes: str) -> dict[str, str]:
    data = {
        "name": "Welcome",
        "slug": "welcome",
        "subject": "Hello {{ contact.first_name }}",
        "preheader": "",
        "source_format": "html",
        "body": "<p>{{ rules.greeting }} {{ contact.first_name }}</p>",
        "text": "",
    }
    return {**data, **changes}


@pytest.fixture
def greeting(tenant: Tenant) -> Rule:
    return Rule.objects.create(
        organisation=tenant.organisation,
        name="greeting",
        kind=Rule.Kind.VALUE,
        expression="{% if country == 'DE' %}Hallo{% else %}Hello{% endif %}",
    )


def test_a_template_using_a_rule_is_saved(tenant: Tenant, login: Any, greeting: Rule) -> None:
    response = login(tenant.member).post(reverse("campaigns:template_create"), template_data())

    template = Template.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:template_edit", args=[template.pk])


def test_a_liquid_error_is_shown_with_line_and_column_and_nothing_is_saved(
    tenant: Tenant, login: Any, greeting: Rule
) -> None:
    body = "<p>Hello</p>\n<p>{% if contact.first_name %}Hi</p>"

    response = login(tenant.member).post(reverse("campaigns:template_create"), template_data(body=body))

    page = response.content.decode()
    assert response.status_code == 400
    assert "line 2" in page
    assert not Template.objects.exists()


def test_an_unknown_rule_is_refused(tenant: Tenant, login: Any) -> None:
    response = login(tenant.member).post(
        reverse("campaigns:template_create"), template_data(body="<p>{% if rules.nope %}x{% endif %}</p>")
    )

    assert response.status_code == 400
    assert "nope" in response.content.decode()


def test_a_slug_is_unique_per_organisation(tenant: Tenant, login: Any, greeting: Rule) -> None:
    client = login(tenant.owner)
    client.post(reverse("campaigns:template_create"), template_data())

    response = client.post(reverse("campaigns:template_create"), template_data(name="Other"))

    assert response.status_code == 400
    assert "already uses this slug" in response.content.decode()


def test_the_preview_renders_for_a_chosen_contact_in_a_sealed_frame(tenant: Tenant, login: Any, greeting: Rule) -> None:
    client = login(tenant.owner)
    client.post(reverse("campaigns:template_create"), template_data())
    template = Template.objects.get()
    jurgen = contact(tenant.organisation, "j@example.de", first_name="Jürgen", country="DE")

    page = client.get(reverse("campaigns:template_preview", args=[template.pk]), {"contact": jurgen.pk})
    frame = client.get(reverse("campaigns:template_preview_frame", args=[template.pk]), {"contact": jurgen.pk})

    assert "Hello Jürgen" in page.content.decode()  # the subject
    assert 'sandbox=""' in page.content.decode()
    assert "Hallo Jürgen" in frame.content.decode()
    assert frame["Content-Security-Policy"].startswith("sandbox;")
    assert "script-src" not in frame["Content-Security-Policy"]
    assert frame["X-Frame-Options"] == "SAMEORIGIN"


def test_merge_data_with_script_is_escaped_in_the_preview(tenant: Tenant, login: Any, greeting: Rule) -> None:
    client = login(tenant.owner)
    client.post(reverse("campaigns:template_create"), template_data())
    template = Template.objects.get()
    evil = contact(tenant.organisation, "e@example.com", first_name="<script>alert(1)</script>")

    frame = client.get(reverse("campaigns:template_preview_frame", args=[template.pk]), {"contact": evil.pk})

    assert "<script>" not in frame.content.decode()
    assert "&lt;script&gt;" in frame.content.decode()


def test_a_test_send_goes_only_to_a_verified_address(
    tenant: Tenant, login: Any, greeting: Rule, django_capture_on_commit_callbacks: Any
) -> None:
    ensure_catalogue()
    give_credits(tenant.account_a)
    SenderAddress.objects.filter(pk=tenant.sender_a.pk).update(verified_at=timezone.now())
    client = login(tenant.owner)
    client.post(reverse("campaigns:template_create"), template_data())
    template = Template.objects.get()
    url = reverse("campaigns:template_test_send", args=[template.pk])

    client.post(url, {"sender": tenant.sender_a.pk, "to": tenant.sender_b.pk})  # not verified
    assert not Message.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url, {"sender": tenant.sender_a.pk, "to": tenant.sender_a.pk})

    message = Message.objects.get()
    assert (message.to_email, message.promotional) == (tenant.sender_a.email, False)


def test_a_rule_with_a_syntax_error_is_explained(tenant: Tenant, login: Any) -> None:
    response = login(tenant.member).post(
        reverse("campaigns:rule_create"),
        {"name": "vip", "kind": "condition", "expression": "points >> 100", "description": ""},
    )

    assert response.status_code == 400
    assert "column" in response.content.decode()
    assert not Rule.objects.exists()


def test_a_rule_cycle_is_refused(tenant: Tenant, login: Any) -> None:
    Rule.objects.create(organisation=tenant.organisation, name="a", kind=Rule.Kind.CONDITION, expression="b")
    response = login(tenant.member).post(
        reverse("campaigns:rule_create"), {"name": "b", "kind": "condition", "expression": "a", "description": ""}
    )

    assert response.status_code == 400
    assert Rule.objects.count() == 1


def test_a_rule_used_by_another_cannot_be_deleted(tenant: Tenant, login: Any) -> None:
    base = Rule.objects.create(
        organisation=tenant.organisation, name="big", kind=Rule.Kind.CONDITION, expression="points > 100"
    )
    Rule.objects.create(organisation=tenant.organisation, name="vip", kind=Rule.Kind.CONDITION, expression="big")

    response = login(tenant.owner).post(reverse("campaigns:rule_delete", args=[base.pk]), follow=True)

    assert "vip" in response.content.decode()
    assert Rule.objects.filter(pk=base.pk).exists()


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("campaigns:template_edit", "get"),
        ("campaigns:template_preview", "get"),
        ("campaigns:template_preview_frame", "get"),
        ("campaigns:template_test_send", "post"),
        ("campaigns:template_delete", "post"),
    ],
)
def test_an_outsider_gets_404_for_templates(
    tenant: Tenant, outsider: User, login: Any, greeting: Rule, name: str, method: str
) -> None:
    login(tenant.owner).post(reverse("campaigns:template_create"), template_data())
    template = Template.objects.get()

    response = getattr(login(outsider), method)(reverse(name, args=[template.pk]))

    assert response.status_code == 404
    assert Template.objects.filter(pk=template.pk).exists()


@pytest.mark.parametrize(("name", "method"), [("campaigns:rule_edit", "get"), ("campaigns:rule_delete", "post")])
def test_an_outsider_gets_404_for_rules(
    tenant: Tenant, outsider: User, login: Any, greeting: Rule, name: str, method: str
) -> None:
    response = getattr(login(outsider), method)(reverse(name, args=[greeting.pk]))

    assert response.status_code == 404
    assert Rule.objects.filter(pk=greeting.pk).exists()


def test_the_lists_say_what_to_do_when_empty(tenant: Tenant, login: Any) -> None:
    client = login(tenant.member)

    for name in ("campaigns:template_list", "campaigns:rule_list"):
        assert 'data-testid="empty-state"' in client.get(reverse(name)).content.decode()


@pytest.mark.parametrize(("posted", "stored"), [("unknown", None), ("true", True), ("false", False)])
def test_tracking_is_chosen_on_the_template_form(
    tenant: Tenant, login: Any, greeting: Rule, posted: str, stored: bool | None
) -> None:
    client = login(tenant.member)
    page = client.get(reverse("campaigns:template_create")).content.decode()
    assert "Promotional e-mail only (default)" in page

    client.post(reverse("campaigns:template_create"), template_data(tracking=posted))

    assert Template.objects.get().tracking is stored
