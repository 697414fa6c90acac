"""The segment builder in a real browser: an owner builds a two-condition segment, watches the live
count follow the edits (htmx, debounced), saves it and finds it with its count on the list.
Screenshots: test-artifacts/browser/segments-*.png."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from campaigns.models import CustomField, Segment
from tests.browser.test_newcomer import log_in
from tests.campaigns.fixtures_segments import contact, custom_field
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_builds_a_segment_and_sees_the_live_count(
    page: Page, live_server: Any, tenant: Tenant, shot: Any
) -> None:
    org = tenant.organisation
    custom_field(org, "points", CustomField.Type.NUMBER)
    for i in range(10):
        contact(org, f"p{i}@{'shop' if i % 2 else 'home'}.example", points=i * 10)
    log_in(page, live_server.url, tenant.owner.email, PASSWORD)

    page.goto(live_server.url + "/campaigns/segments/new/")
    count = page.get_by_test_id("segment-count")
    # The blank first condition ("E-mail address contains …" without text) is not complete yet.
    expect(count).to_contain_text("Complete the conditions")
    page.get_by_label("Name").fill("Shop regulars")

    # Condition 1: Points ≥ 50 — the field decides the operators.
    first = page.get_by_test_id("segment-condition").nth(0)
    first.get_by_test_id("condition-subject").select_option(label="Points")
    expect(first.get_by_test_id("condition-operator")).to_have_value("eq")
    first = page.get_by_test_id("segment-condition").nth(0)
    first.get_by_test_id("condition-operator").select_option(label="≥")
    page.get_by_test_id("segment-condition").nth(0).get_by_test_id("condition-value").fill("50")
    expect(count).to_contain_text("5 contacts")

    # Condition 2: e-mail contains "@shop."
    page.get_by_test_id("add-condition").click()
    expect(page.get_by_test_id("segment-condition")).to_have_count(2)
    second = page.get_by_test_id("segment-condition").nth(1)
    expect(second.get_by_test_id("condition-subject")).to_be_focused()
    second.get_by_test_id("condition-value").fill("@shop.")
    expect(count).to_contain_text("3 contacts")  # 50, 70, 90 on shop
    shot(page, "segments-01-builder")

    # "any of" widens it.
    page.get_by_test_id("segment-op").select_option("or")
    expect(count).to_contain_text("7 contacts")
    page.get_by_test_id("segment-op").select_option("and")
    expect(count).to_contain_text("3 contacts")

    page.get_by_test_id("segment-save").click()
    expect(page.get_by_text("Segment “Shop regulars” saved.")).to_be_visible()
    expect(page.get_by_test_id("segment-row-count")).to_contain_text("3 contacts")
    shot(page, "segments-02-list")
    segment = Segment.objects.get(name="Shop regulars")
    assert segment.definition == {
        "op": "and",
        "items": [
            {"type": "field", "field": "points", "operator": "gte", "value": 50},
            {"type": "field", "field": "email", "operator": "contains", "value": "@shop."},
        ],
    }
