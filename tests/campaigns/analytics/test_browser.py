"""The campaign report in a real browser: the results panel on the campaign page, the full report
with its chart, links and domains, the machine toggle, live figures while the campaign sends, and
the contact's activity. Screenshots: test-artifacts/browser/analytics-*.png."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from campaigns.analytics import views
from campaigns.models import Campaign
from tests.browser.conftest import browser, page, playwright_instance, shot  # noqa: F401
from tests.browser.test_newcomer import log_in
from tests.campaigns.analytics.fixtures_analytics import count, crafted_stream, emit
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_campaign_report_updates_while_the_campaign_sends(
    page: Page,  # noqa: F811
    live_server: Any,
    tenant: Tenant,
    shot: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(views, "LIVE_SECONDS", 1)
    yesterday = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(days=1)
    data = crafted_stream(tenant, yesterday)
    Campaign.objects.filter(pk=data.campaign.pk).update(status=Campaign.Status.SENDING, started_at=timezone.now())
    count()
    base = live_server.url
    log_in(page, base, tenant.owner.email, PASSWORD)

    # The campaign page shows the results panel; it links to the full report.
    page.goto(f"{base}/campaigns/{data.campaign.pk}/")
    panel = page.get_by_test_id("analytics-panel")
    expect(panel.get_by_test_id("fig-delivered")).to_have_text("4")
    expect(panel.get_by_test_id("fig-unique-opens")).to_have_text("2")
    shot(page, "analytics-01-campaign-page")
    panel.get_by_test_id("analytics-report-link").click()

    # The full report: figures, a drawn chart, links and domains.
    live = page.get_by_test_id("analytics-live")
    expect(live.get_by_test_id("fig-sent")).to_have_text("7")
    expect(live.get_by_test_id("fig-hard")).to_have_text("1")
    expect(live.get_by_test_id("fig-soft")).to_have_text("2")
    expect(live.get_by_test_id("fig-click-rate")).to_have_text("25.0% click rate")
    expect(page.locator("canvas[data-analytics-chart][data-drawn]")).to_have_count(1)
    links = page.get_by_test_id("breakdown-links")
    expect(links.get_by_role("row")).to_have_count(3)
    expect(links.get_by_role("row").nth(1)).to_contain_text("https://shop.example/spring")
    expect(page.get_by_test_id("breakdown-domains")).to_contain_text("b.example")
    shot(page, "analytics-02-report")

    # Machine opens included on demand.
    page.get_by_test_id("machines-toggle").click()
    expect(page.get_by_test_id("fig-unique-opens")).to_have_text("3")
    expect(page.get_by_test_id("machines-toggle")).to_have_attribute("aria-pressed", "true")
    page.get_by_test_id("machines-toggle").click()
    expect(page.get_by_test_id("fig-unique-opens")).to_have_text("2")

    # New deliveries and opens arrive while the campaign sends: the figures follow by themselves.
    emit(data.messages["m3"], "delivery", data.messages["m3"].created_at)
    emit(data.messages["m4"], "open", data.messages["m4"].created_at + timedelta(minutes=5))
    count()
    expect(page.get_by_test_id("fig-delivered")).to_have_text("5")
    expect(page.get_by_test_id("fig-unique-opens")).to_have_text("3")
    expect(page.locator("canvas[data-analytics-chart][data-drawn]")).to_have_count(1)
    b_example = page.get_by_test_id("breakdown-domains").get_by_role("row").nth(1)
    expect(b_example.locator("td").nth(0)).to_have_text("b.example")
    expect(b_example.locator("td").nth(2)).to_have_text("3")  # delivered: 2, then m3
    shot(page, "analytics-03-report-live")

    # One recipient's timeline, then the contact page's activity.
    page.get_by_label("E-mail address (or part of it)").fill("m1@")
    page.get_by_role("button", name="Find").click()
    page.get_by_test_id("recipient-results").get_by_role("link", name="m1@a.example").click()
    expect(page.get_by_test_id("timeline").locator("li")).to_have_count(7)
    shot(page, "analytics-04-message")
    page.goto(f"{base}/campaigns/contacts/{data.contacts['m1'].pk}/")
    expect(page.get_by_test_id("contact-activity").locator("li[data-type='click']")).to_have_count(3)
    shot(page, "analytics-05-contact")

    # The organisation's overview, and the dashboard card.
    page.goto(f"{base}/campaigns/analytics/")
    expect(page.get_by_test_id("fig-sent")).to_have_text("8")
    expect(page.get_by_test_id("breakdown-clients")).to_contain_text("Alpha Bakery")
    shot(page, "analytics-06-overview")
    page.goto(f"{base}/")
    expect(page.get_by_test_id("dash-sent")).to_have_text("8")
    shot(page, "analytics-07-dashboard")
