"""A sending account's deliverability in a real browser: the account page with its panels, the limit
on further accounts, the suppression list, the dedicated-IP advisor and order, warm-up progress after
the XES team assigned an IP, and the sandbox outbox. Screenshots: test-artifacts/browser/account-*.png."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from deliverability import warmup
from deliverability.models import Suppression
from deliverability.providers import ensure_setup, provider_for
from plans.models import AddOnProduct, Order
from tests.browser.conftest import open_setup_page
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def send_through_sandbox(tenant: Tenant, to: str) -> None:
    setup = ensure_setup(tenant.account_org)
    message = EmailMessage()
    message["From"] = "news@acme.example"
    message["To"] = to
    message["Subject"] = "Autumn offers"
    message.set_content("Hello from Acme.")
    provider_for(setup).send_raw(
        setup, message.as_bytes(), from_address="news@acme.example", recipients=[to], tags={"campaign": "autumn"}
    )


def test_owner_looks_after_a_sending_account(page: Page, live_server: Any, tenant: Tenant, shot: Any) -> None:
    base = live_server.url
    send_through_sandbox(tenant, "bounce@simulator.amazonses.com")
    log_in(page, base, tenant.owner.email, PASSWORD)

    # The list says how many accounts the plan allows (the first is included; the tenant has three).
    open_setup_page(page, "Sending accounts")
    expect(page.get_by_test_id("account-limit")).to_be_visible()
    shot(page, "account-01-list-at-limit")

    # The account page loads its deliverability panels.
    page.get_by_role("link", name=tenant.account_org.name).first.click()
    expect(page.get_by_test_id("domains-panel")).to_be_visible()
    expect(page.get_by_test_id("standing-panel")).to_be_visible()
    expect(page.get_by_test_id("suppressions-panel")).to_be_visible()
    shot(page, "account-02-detail")

    # The suppression list: add an address by hand, then find it.
    page.goto(f"{base}/deliverability/accounts/{tenant.account_org.pk}/suppressions/")
    page.get_by_test_id("suppression-add").get_by_label("E-mail address").fill("Blocked@Example.com")
    page.get_by_role("button", name="Suppress address").click()
    expect(page.get_by_test_id("suppression-results")).to_contain_text("Blocked@example.com")
    page.get_by_label("Search addresses").fill("nobody-here")
    expect(page.get_by_test_id("suppression-results")).to_contain_text("No suppressed address matches")
    page.get_by_label("Search addresses").fill("blocked")
    expect(page.get_by_test_id("suppression-results")).to_contain_text("Blocked@example.com")
    shot(page, "account-03-suppressions")
    assert Suppression.objects.filter(sending_account=tenant.account_org, reason="manual").count() == 1

    # The dedicated-IP advisor, then an order for one domain.
    page.goto(f"{base}/deliverability/accounts/{tenant.account_org.pk}/dedicated-ip/")
    expect(page.get_by_test_id("advisor-average")).to_have_text("0")
    page.get_by_test_id("order-form").get_by_label("Domain").last.fill("acme.example")
    shot(page, "account-04-dedicated-ip-advisor")
    page.get_by_test_id("order-form").get_by_role("button", name="Order a dedicated IP").click()
    order = Order.objects.get()
    assert (order.addon.kind, order.domain) == (AddOnProduct.Kind.DEDICATED_IP, "acme.example")

    # The XES team assigned an IP: the warm-up shows day 1 of 45 with today's cap.
    warmup.assign_ip(tenant.account_org, "192.0.2.10", by=None)
    page.reload()
    expect(page.get_by_test_id("warmup-day")).to_have_text("Day 1 of 45")
    expect(page.get_by_test_id("warmup-cap")).to_have_text("500")
    shot(page, "account-05-warmup")

    # The sandbox outbox shows the message and the bounce the mailbox simulator produced.
    page.goto(f"{base}/deliverability/outbox/")
    expect(page.get_by_test_id("outbox-table")).to_contain_text("Autumn offers")
    expect(page.get_by_test_id("outbox-table")).to_contain_text("Bounce")
    shot(page, "account-06-outbox")
    page.get_by_role("link", name="Autumn offers").click()
    expect(page.get_by_test_id("raw-message")).to_contain_text("Subject: Autumn offers")
    shot(page, "account-07-outbox-message")
