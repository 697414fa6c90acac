"""Automation in a real browser: create a trigger rule (a validation error first, then the link of the
campaign chosen from the list htmx loads), then a webhook endpoint pointing at a local HTTP server,
copy its secret, send a test event and see it delivered in the log.
Screenshots: test-artifacts/browser/automation-*.png."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Dialog, Page, expect

from accounts.models import SenderAddress
from campaigns.automation import webhooks
from campaigns.automation.models import TriggerRule, WebhookEndpoint
from campaigns.models import Campaign, ContactList, Template
from tests.browser.test_newcomer import log_in
from tests.campaigns.automation.conftest import CAMPAIGN_BODY, FOLLOW_UP_BODY, OFFER, Receiver, run_jobs
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def test_create_a_trigger_rule_and_a_webhook_endpoint(
    page: Page, live_server: Any, tenant: Tenant, shot: Any, settings: Any
) -> None:
    settings.WEBHOOKS_ALLOW_PRIVATE_ADDRESSES = True
    settings.WEBHOOKS_ALLOW_HTTP = True
    base = live_server.url
    org = tenant.organisation
    sender = SenderAddress.objects.create(
        sending_account=tenant.account_org, email="news@acme.example", verified_at=timezone.now()
    )
    newsletter = Template.objects.create(organisation=org, name="Spring newsletter", slug="spring", body=CAMPAIGN_BODY)
    Template.objects.create(organisation=org, name="Brochure", slug="brochure", subject="Hi", body=FOLLOW_UP_BODY)
    Campaign.objects.create(
        organisation=org,
        sending_account=tenant.account_org,
        sender=sender,
        template=newsletter,
        name="Spring offer",
        contact_list=ContactList.objects.create(organisation=org, name="Customers"),
        status=Campaign.Status.DONE,
    )
    page.on("dialog", _accept)
    log_in(page, base, tenant.owner.email, PASSWORD)

    # 1. The empty list explains what a trigger rule is.
    page.goto(base + "/automation/triggers/")
    expect(page.get_by_test_id("empty-state")).to_contain_text("Spring offer")
    shot(page, "automation-01-rules-empty")

    # 2. A rule without a name and without days is refused with clear messages.
    page.get_by_role("link", name="New trigger rule").click()
    page.get_by_label("In the campaign").select_option(label="Spring offer")
    page.get_by_label("does not open it within some days").check()
    expect(page.get_by_label("Days without opening")).to_be_visible()
    expect(page.get_by_label("Which link")).to_be_hidden()
    page.get_by_role("button", name="Save rule").click()
    expect(page.locator("#id_delay_days_error")).to_contain_text("Enter after how many days")
    expect(page.locator("#id_name_error")).to_contain_text("This field is required")
    shot(page, "automation-02-rule-errors")

    # 3. "Clicks a link": the campaign's links are offered (loaded by htmx when the campaign changes).
    page.locator("#id_name").fill("Offer clicked: send the brochure")
    page.get_by_label("In the campaign").select_option(label="Spring offer")
    page.get_by_label("clicks a link").check()
    expect(page.get_by_label("Which link")).to_be_visible()
    expect(page.get_by_label("Days without opening")).to_be_hidden()
    page.get_by_label("Which link").select_option(OFFER)
    page.get_by_label("Send the template").select_option(label="Brochure")
    page.get_by_label("From").select_option(label="news@acme.example")
    page.get_by_label("Promotional (offers, reminders)").check()
    shot(page, "automation-03-rule-form")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_test_id("rules-table")).to_contain_text("Offer clicked: send the brochure")
    expect(page.get_by_test_id("rules-table")).to_contain_text(f"clicks {OFFER}")
    shot(page, "automation-04-rules-list")
    rule = TriggerRule.objects.get()
    assert (rule.link_url, rule.template.name, rule.sender_id, rule.enabled) == (OFFER, "Brochure", sender.pk, True)

    # 4. A webhook endpoint at a local server; the secret is shown once.
    receiver = Receiver()
    try:
        page.goto(base + "/automation/webhooks/")
        expect(page.get_by_test_id("empty-state")).to_be_visible()
        page.get_by_role("link", name="New endpoint").click()
        page.get_by_label("URL").fill(receiver.url())
        page.get_by_label("Description").fill("CRM sync")
        page.get_by_label("Clicked").check()
        shot(page, "automation-05-endpoint-form")
        page.get_by_role("button", name="Add endpoint").click()
        secret = page.get_by_test_id("webhook-secret").inner_text().strip()
        endpoint = WebhookEndpoint.objects.get()
        assert secret == endpoint.secret
        assert set(endpoint.event_types) == {"delivery", "bounce", "complaint", "unsubscribe", "click"}
        shot(page, "automation-06-endpoint-secret")
        page.get_by_test_id("secret-done").click()
        expect(page.get_by_test_id("no-deliveries")).to_be_visible()

        # 5. Send a test event; the worker delivers it, signed.
        page.get_by_test_id("send-test-event").click()
        run_jobs()
        page.reload()
        expect(page.get_by_test_id("deliveries-table")).to_contain_text("Delivered")
        expect(page.get_by_test_id("endpoint-health")).to_have_text("Healthy")
        shot(page, "automation-07-endpoint-log")
        request = receiver.requests[0]
        assert webhooks.verify_signature(secret, request.headers["XES-Signature"], request.body)
        page.get_by_role("link", name="Details").first.click()
        expect(page.get_by_test_id("payload")).to_contain_text('"type": "test"')
        expect(page.get_by_test_id("attempts-table")).to_contain_text("200")
        shot(page, "automation-08-delivery")
    finally:
        receiver.close()
