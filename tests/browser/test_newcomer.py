"""The newcomer path in a real browser: sign up, confirm the e-mail, set up an account, a client and a
verified sender address, then see the same page in German. Screenshots: test-artifacts/browser/."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import open_setup_page
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NEWCOMER = "maria@druckhaus.example"
NEWCOMER_PASSWORD = "Blue-Printing-Press-42"
# "Password *" but not "Password (again) *": the asterisk marks a required field.
FIRST_PASSWORD = re.compile(r"^Password\W*$")


def log_in(page: Page, base_url: str, email: str, password: str) -> None:
    page.goto(base_url + "/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign In").click()


def test_newcomer_signs_up_and_verifies_a_sender_address(
    page: Page, live_server: Any, mailoutbox: list[Any], shot: Any, link_from_outbox: Any
) -> None:
    base = live_server.url

    # Sign up: e-mail, company name, password twice.
    page.goto(base + "/accounts/signup/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Sign Up")
    page.get_by_label("Email").fill(NEWCOMER)
    page.get_by_label("Company name").fill("Druckhaus Müller")
    page.get_by_label(FIRST_PASSWORD).fill(NEWCOMER_PASSWORD)
    page.get_by_label("Password (again)").fill(NEWCOMER_PASSWORD)
    shot(page, "01-signup")
    page.get_by_role("button", name="Sign Up").click()

    # allauth asks to confirm the e-mail address.
    expect(page.get_by_role("heading", level=1)).to_contain_text("Verify Your Email Address")
    shot(page, "02-verify-your-email")
    assert mailoutbox[-1].to == [NEWCOMER]

    # The link from the e-mail shows a confirm button; confirming logs the newcomer in.
    page.goto(link_from_outbox("/accounts/confirm-email/"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Confirm Email Address")
    shot(page, "03-confirm-email")
    page.get_by_role("button", name="Confirm").click()

    # The dashboard greets the new organisation with a checklist.
    expect(page.get_by_role("heading", level=1)).to_have_text("Druckhaus Müller")
    expect(page.get_by_test_id("getting-started")).to_be_visible()
    shot(page, "04-dashboard-new")

    # A sending account comes first: sender addresses belong to one.
    open_setup_page(page, "Sending accounts")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No sending accounts yet")
    shot(page, "05-sending-accounts-empty")
    page.get_by_test_id("empty-state").get_by_role("link", name="Create a sending account").click()
    page.get_by_label("Name").fill("Druckhaus main")
    shot(page, "06-sending-account-form")
    page.get_by_role("button", name="Save sending account").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Druckhaus main")
    shot(page, "07-sending-account-detail")

    # A client.
    open_setup_page(page, "Clients")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No clients yet")
    shot(page, "08-clients-empty")
    page.get_by_test_id("empty-state").get_by_role("link", name="Add your first client").click()
    page.get_by_label("Name").fill("Bäckerei Schmidt")
    page.get_by_label("Contact e-mail").fill("info@baeckerei-schmidt.example")
    shot(page, "09-client-form")
    page.get_by_role("button", name="Save client").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Bäckerei Schmidt")
    shot(page, "10-client-detail")

    # A sender address: the portal e-mails it a confirmation link.
    open_setup_page(page, "Sender addresses")
    expect(page.get_by_test_id("empty-state")).to_contain_text("No sender addresses yet")
    shot(page, "11-senders-empty")
    page.get_by_test_id("empty-state").get_by_role("link", name="Add a sender address").click()
    page.get_by_label("Sending account").select_option(label="Druckhaus main")
    page.get_by_label("E-mail address").fill("news@druckhaus.example")
    page.get_by_label("Display name").fill("Druckhaus News")
    shot(page, "12-sender-form")
    page.get_by_role("button", name="Add and send link").click()
    expect(page.get_by_test_id("sender-status")).to_have_text("Waiting for confirmation")
    shot(page, "13-senders-waiting")
    assert mailoutbox[-1].to == ["news@druckhaus.example"]

    # The owner of the address opens the link and confirms.
    page.goto(link_from_outbox("/verify/"))
    expect(page.get_by_test_id("verify-valid")).to_be_visible()
    shot(page, "14-verify-sender")
    page.get_by_role("button", name="Yes, confirm this address").click()
    expect(page.get_by_test_id("verify-done")).to_be_visible()
    shot(page, "15-verify-sender-done")

    # Back in the portal the address is verified.
    page.get_by_role("link", name="Back to Sender addresses").click()
    expect(page.get_by_test_id("sender-status")).to_contain_text("Verified")
    shot(page, "16-senders-verified")

    # The same page in German, through the DE button in the navbar.
    page.get_by_test_id("lang-de").click()
    expect(page.locator("html")).to_have_attribute("lang", "de")
    shot(page, "17-senders-verified-de")
    expect(page.get_by_role("heading", level=1)).to_have_text("Absenderadressen")
    page.get_by_test_id("setup-menu").click()
    expect(page.locator("nav.xes-navbar").get_by_role("link", name="Absenderadressen")).to_be_visible()
    expect(page.get_by_test_id("sender-status")).to_contain_text("Bestätigt")


def test_client_user_sees_only_its_client(page: Page, live_server: Any, tenant: Tenant, shot: Any) -> None:
    base = live_server.url

    log_in(page, base, tenant.client_user.email, PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Agency")
    expect(page.locator("main")).to_contain_text("Alpha Bakery")
    shot(page, "20-client-user-dashboard")

    open_setup_page(page, "Clients")
    table = page.get_by_test_id("clients-table")
    expect(table).to_contain_text("Alpha Bakery")
    expect(table).not_to_contain_text("Beta Cars")
    expect(page.get_by_role("link", name="Add client")).to_have_count(0)
    shot(page, "21-client-user-clients")

    open_setup_page(page, "Sender addresses")
    senders = page.get_by_test_id("senders-table")
    expect(senders).to_contain_text("news@alpha.example")
    expect(senders).not_to_contain_text("news@beta.example")
    shot(page, "22-client-user-senders")
