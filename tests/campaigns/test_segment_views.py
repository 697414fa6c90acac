"""Segment pages: list, builder (create/edit, htmx actions, validation), live count, delete;
tenancy (outsider 404, client-users see their client's only) and permissions (403)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.constants import ROLE_PERMS, Perm
from campaigns.models import Campaign, CustomField, Segment
from tests.campaigns.fixtures_segments import campaign, contact, contact_list, custom_field
from tests.conftest import Tenant

HTMX = {"HTTP_HX_REQUEST": "true"}


def builder_post(name: str = "Big spenders", **rows: str) -> dict[str, str]:
    """Form data as the builder posts it."""
    return {"name": name, "op": "and", **rows}


@pytest.fixture
def data(tenant: Tenant) -> dict[str, Any]:
    org = tenant.organisation
    custom_field(org, "points", CustomField.Type.NUMBER)
    for i in range(5):
        contact(org, f"p{i}@x.example", points=i * 10)
    contact(org, "alpha@x.example", client=tenant.client_a, points=99)
    seg_org = Segment.objects.create(
        organisation=org,
        name="Org high",
        definition={"op": "and", "items": [{"type": "field", "field": "points", "operator": "gte", "value": 20}]},
    )
    seg_a = Segment.objects.create(organisation=org, client=tenant.client_a, name="Alpha all", definition={})
    return {"org": seg_org, "a": seg_a}


# --- list -----------------------------------------------------------------------------------


def test_list_shows_the_tenants_segments(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    response = login(tenant.member).get(reverse("campaigns:segment_list"))
    assert response.status_code == 200
    assert "Org high" in response.content.decode()
    assert "Alpha all" in response.content.decode()
    assert "Points ≥ 20" in response.content.decode()


def test_list_is_fast_with_many_segments(
    login: Any, tenant: Tenant, data: dict[str, Any], django_assert_max_num_queries: Any
) -> None:
    lst = contact_list(tenant.organisation, "VIP")
    c = campaign(tenant.account_org)
    for i in range(20):
        Segment.objects.create(
            organisation=tenant.organisation,
            name=f"S{i}",
            definition={
                "op": "or",
                "items": [
                    {"type": "list", "list": lst.pk, "operator": "in"},
                    {"type": "campaign", "campaign": c.pk, "operator": "opened"},
                ],
            },
        )
    http = login(tenant.owner)
    with django_assert_max_num_queries(12):
        response = http.get(reverse("campaigns:segment_list"))
    assert response.content.decode().count('data-testid="segment-row"') == 22


def test_client_user_sees_only_their_clients_segments(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    http = login(tenant.client_user)
    body = http.get(reverse("campaigns:segment_list")).content.decode()
    assert "Alpha all" in body
    assert "Org high" not in body
    assert http.get(reverse("campaigns:segment_edit", args=[data["org"].pk])).status_code == 404
    assert http.get(reverse("campaigns:segment_saved_count", args=[data["org"].pk])).status_code == 404


def test_saved_count_is_lazy_and_scoped(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    http = login(tenant.member)
    response = http.get(reverse("campaigns:segment_saved_count", args=[data["org"].pk]))
    assert 'data-count="3"' in response.content.decode()
    response = http.get(reverse("campaigns:segment_saved_count", args=[data["a"].pk]))
    assert 'data-count="1"' in response.content.decode()


# --- outsider and permissions ---------------------------------------------------------------


def test_outsider_gets_404(login: Any, outsider: Any, data: dict[str, Any]) -> None:
    http = login(outsider)
    pk = data["org"].pk
    assert http.get(reverse("campaigns:segment_edit", args=[pk])).status_code == 404
    assert http.post(reverse("campaigns:segment_edit", args=[pk]), builder_post()).status_code == 404
    assert http.get(reverse("campaigns:segment_saved_count", args=[pk])).status_code == 404
    assert http.post(reverse("campaigns:segment_delete", args=[pk])).status_code == 404
    assert "Org high" not in http.get(reverse("campaigns:segment_list")).content.decode()
    assert Segment.objects.filter(pk=pk).exists()


def test_outsider_cannot_count_with_our_campaign(login: Any, outsider: Any, tenant: Tenant) -> None:
    c = campaign(tenant.account_org)
    response = login(outsider).post(
        reverse("campaigns:segment_count"),
        builder_post(
            **{
                "item-0-kind": "condition",
                "item-0-subject": "campaign",
                "item-0-operator": "received",
                "item-0-campaign": str(c.pk),
            }
        ),
    )
    assert 'data-testid="segment-count-invalid"' in response.content.decode()


def test_roles_without_the_permission_get_403(
    login: Any, tenant: Tenant, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ROLE_PERMS, "member", frozenset({Perm.VIEW}))
    http = login(tenant.member)
    assert http.get(reverse("campaigns:segment_list")).status_code == 200
    assert http.get(reverse("campaigns:segment_create")).status_code == 403
    assert http.get(reverse("campaigns:segment_edit", args=[data["org"].pk])).status_code == 403
    assert http.post(reverse("campaigns:segment_count"), builder_post()).status_code == 403
    assert http.post(reverse("campaigns:segment_delete", args=[data["org"].pk])).status_code == 403
    assert Segment.objects.filter(pk=data["org"].pk).exists()


def test_anonymous_is_sent_to_login(client: HttpClient, data: dict[str, Any]) -> None:
    response = client.get(reverse("campaigns:segment_list"))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# --- builder --------------------------------------------------------------------------------


def test_create_page_starts_with_one_condition(login: Any, tenant: Tenant) -> None:
    body = login(tenant.member).get(reverse("campaigns:segment_create")).content.decode()
    assert body.count('data-testid="segment-condition"') == 1
    assert 'hx-post="/campaigns/segments/count/"' in body


def test_create_saves_a_typed_definition(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    rows = {
        "op": "or",
        "item-0-kind": "condition",
        "item-0-subject": "field:points",
        "item-0-operator": "gt",
        "item-0-value": "25",
        "item-3-kind": "group",  # numbers may have gaps after removals
        "item-3-op": "and",
        "item-3-0-kind": "condition",
        "item-3-0-subject": "field:email",
        "item-3-0-operator": "starts_with",
        "item-3-0-value": "p1",
        "item-3-1-kind": "condition",
        "item-3-1-subject": "unsubscribed",
        "item-3-1-operator": "is_false",
        "item-3-1-campaign": "",
    }
    response = login(tenant.member).post(reverse("campaigns:segment_create"), {**builder_post(), **rows})
    assert response.status_code == 302
    segment = Segment.objects.get(name="Big spenders")
    assert segment.client is None
    assert segment.definition == {
        "op": "or",
        "items": [
            {"type": "field", "field": "points", "operator": "gt", "value": 25},
            {
                "op": "and",
                "items": [
                    {"type": "field", "field": "email", "operator": "starts_with", "value": "p1"},
                    {"type": "unsubscribed", "operator": "is_false", "campaign": None},
                ],
            },
        ],
    }


def test_invalid_criteria_come_back_with_errors_next_to_the_condition(login: Any, tenant: Tenant) -> None:
    custom_field(tenant.organisation, "points", CustomField.Type.NUMBER)
    rows = {
        "item-0-kind": "condition",
        "item-0-subject": "field:email",
        "item-0-operator": "contains",
        "item-0-value": "@x",
        "item-1-kind": "condition",
        "item-1-subject": "field:points",
        "item-1-operator": "gt",
        "item-1-value": "lots",
    }
    response = login(tenant.member).post(reverse("campaigns:segment_create"), {**builder_post(), **rows})
    assert response.status_code == 400
    body = response.content.decode()
    assert "Enter a number for Points." in body
    assert 'value="lots"' in body  # the input is kept
    assert body.count('data-testid="condition-error"') == 1
    assert not Segment.objects.exists()


def test_name_is_required(login: Any, tenant: Tenant) -> None:
    response = login(tenant.member).post(reverse("campaigns:segment_create"), builder_post(name=""))
    assert response.status_code == 400
    assert not Segment.objects.exists()


def test_htmx_actions_reshape_the_builder_without_saving(login: Any, tenant: Tenant) -> None:
    http = login(tenant.member)
    url = reverse("campaigns:segment_create")
    base = {
        **builder_post(),
        "item-0-kind": "condition",
        "item-0-subject": "field:email",
        "item-0-operator": "contains",
        "item-0-value": "@x",
    }
    response = http.post(url, {**base, "action": "add-group"}, **HTMX)
    body = response.content.decode()
    assert response["HX-Trigger-After-Settle"] == "segment-changed"
    assert body.startswith('\n<div id="segment-builder"') or body.lstrip().startswith('<div id="segment-builder"')
    assert body.count('data-testid="segment-condition"') == 3
    assert 'data-testid="segment-group"' in body
    response = http.post(url, {**base, "action": "remove:item-0"}, **HTMX)
    assert 'data-testid="segment-empty"' in response.content.decode()
    assert not Segment.objects.exists()


def test_changing_the_field_changes_operators_and_value_input(login: Any, tenant: Tenant) -> None:
    custom_field(tenant.organisation, "tier", CustomField.Type.CHOICE, ["gold", "silver"])
    response = login(tenant.member).post(
        reverse("campaigns:segment_create"),
        {
            **builder_post(),
            "action": "refresh",
            "item-0-kind": "condition",
            "item-0-subject": "field:tier",
            "item-0-operator": "contains",
            "item-0-value": "x",
        },
        **HTMX,
    )
    body = response.content.decode()
    assert '<option value="in" selected>is one of</option>' in body
    assert "multiple" in body
    assert '<option value="gold">gold</option>' in body


def test_without_javascript_the_actions_render_the_whole_page(login: Any, tenant: Tenant) -> None:
    response = login(tenant.member).post(
        reverse("campaigns:segment_create"), {**builder_post(), "action": "add-condition"}
    )
    assert response.status_code == 200
    assert "<html" in response.content.decode()


def test_client_user_creates_for_their_client_only(login: Any, tenant: Tenant) -> None:
    http = login(tenant.client_user)
    other_list = contact_list(tenant.organisation, "Beta list", client=tenant.client_b)
    response = http.post(
        reverse("campaigns:segment_create"),
        {**builder_post(name="Mine"), "client": str(tenant.client_b.pk), "contact_list": str(other_list.pk)},
    )
    assert response.status_code == 400  # another client's list is not a choice
    response = http.post(
        reverse("campaigns:segment_create"), {**builder_post(name="Mine"), "client": str(tenant.client_b.pk)}
    )
    assert response.status_code == 302
    assert Segment.objects.get(name="Mine").client == tenant.client_a


def test_edit_keeps_and_updates(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    http = login(tenant.admin)
    url = reverse("campaigns:segment_edit", args=[data["org"].pk])
    body = http.get(url).content.decode()
    assert 'value="Org high"' in body
    assert '<option value="gte" selected>≥</option>' in body
    response = http.post(
        url,
        {
            **builder_post(name="Renamed"),
            "item-0-kind": "condition",
            "item-0-subject": "field:points",
            "item-0-operator": "lt",
            "item-0-value": "10",
        },
    )
    assert response.status_code == 302
    data["org"].refresh_from_db()
    assert data["org"].name == "Renamed"
    assert data["org"].definition["items"][0] == {"type": "field", "field": "points", "operator": "lt", "value": 10}


# --- live count -----------------------------------------------------------------------------


def test_live_count_returns_the_number(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    http = login(tenant.member)
    rows = {
        "item-0-kind": "condition",
        "item-0-subject": "field:points",
        "item-0-operator": "gte",
        "item-0-value": "10",
    }
    response = http.post(reverse("campaigns:segment_count"), {**builder_post(), **rows}, **HTMX)
    assert response.status_code == 200
    assert 'data-count="4"' in response.content.decode()
    assert "4 contacts" in response.content.decode()
    # Scoped to the chosen client, and to the base list.
    response = http.post(
        reverse("campaigns:segment_count"), {**builder_post(), **rows, "client": str(tenant.client_a.pk)}
    )
    assert 'data-count="1"' in response.content.decode()
    lst = contact_list(
        tenant.organisation, "Two", *tenant.organisation.contacts.filter(email__in=["p0@x.example", "p1@x.example"])
    )
    response = http.post(reverse("campaigns:segment_count"), {**builder_post(), **rows, "contact_list": str(lst.pk)})
    assert 'data-count="1"' in response.content.decode()


def test_live_count_of_incomplete_criteria_says_so(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    rows = {"item-0-kind": "condition", "item-0-subject": "field:points", "item-0-operator": "gte", "item-0-value": ""}
    response = login(tenant.member).post(reverse("campaigns:segment_count"), {**builder_post(), **rows})
    assert response.status_code == 200
    assert "Complete the conditions to see the count." in response.content.decode()


def test_client_user_counts_only_their_clients_contacts(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    response = login(tenant.client_user).post(reverse("campaigns:segment_count"), {**builder_post(), "client": ""})
    assert 'data-count="1"' in response.content.decode()


# --- delete ---------------------------------------------------------------------------------


def test_delete(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    response = login(tenant.member).post(reverse("campaigns:segment_delete", args=[data["org"].pk]))
    assert response.status_code == 302
    assert not Segment.objects.filter(pk=data["org"].pk).exists()


def test_delete_is_refused_while_a_campaign_uses_it(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    c = campaign(tenant.account_org, "Uses it")
    Campaign.objects.filter(pk=c.pk).update(segment=data["org"])
    http = login(tenant.member)
    response = http.post(reverse("campaigns:segment_delete", args=[data["org"].pk]), follow=True)
    assert "cannot be deleted: campaigns use it (Uses it)" in response.content.decode()
    assert Segment.objects.filter(pk=data["org"].pk).exists()


def test_delete_needs_post(login: Any, tenant: Tenant, data: dict[str, Any]) -> None:
    assert login(tenant.member).get(reverse("campaigns:segment_delete", args=[data["org"].pk])).status_code == 405
