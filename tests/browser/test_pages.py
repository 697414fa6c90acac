"""The other pages a person meets: allauth's log-in, sign-up, e-mail, password and 2FA pages inside the
portal layout, and the portal's pages with data. Each is screenshotted to test-artifacts/browser/ and
must load without Content-Security-Policy violations (checked by the ``page`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_newcomer import FIRST_PASSWORD, log_in
from tests.conftest import Tenant
from tests.factories import PASSWORD, ApiKeyFactory, VerifiedSenderFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_login_and_signup_pages_show_errors_in_the_portal_layout(page: Page, live_server: Any, shot: Any) -> None:
    base = live_server.url

    page.goto(base + "/accounts/login/")
    shot(page, "30-login")
    log_in(page, base, "nobody@example.com", "wrong-password-123")
    expect(page.get_by_role("alert")).to_be_visible()
    shot(page, "31-login-error")

    page.goto(base + "/accounts/signup/")
    page.get_by_label("Email").fill("not-an-address")
    page.get_by_label(FIRST_PASSWORD).fill("short")
    page.get_by_label("Password (again)").fill("different")
    page.get_by_role("button", name="Sign Up").click()
    expect(page.locator(".errorlist").first).to_be_visible()
    shot(page, "32-signup-errors")

    page.goto(base + "/accounts/password/reset/")
    shot(page, "33-password-reset")


def test_owner_pages_with_data(page: Page, live_server: Any, tenant: Tenant, shot: Any) -> None:
    base = live_server.url
    VerifiedSenderFactory(sending_account=tenant.account_org, email="hello@acme.example", display_name="Acme")
    ApiKeyFactory(sending_account=tenant.account_org, name="uProduce production", created_by=tenant.owner)

    log_in(page, base, tenant.owner.email, PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_have_text("Acme Agency")
    shot(page, "40-dashboard")
    page.get_by_test_id("user-menu").click()
    expect(page.get_by_role("link", name="Members")).to_be_visible()
    shot(page, "40-dashboard-user-menu")

    for path, name in [
        ("/clients/", "41-clients"),
        ("/sending-accounts/", "42-sending-accounts"),
        (f"/sending-accounts/{tenant.account_a.pk}/", "43-sending-account-detail"),
        ("/senders/", "44-senders"),
        ("/settings/", "46-settings"),
    ]:
        page.goto(base + path)
        shot(page, name)

    # Members: the invite form shows the client only for client users; each row opens a role form.
    page.goto(base + "/members/")
    invite = page.locator("form[action='/members/invite/']")
    expect(invite.get_by_label("Client")).to_be_hidden()
    invite.get_by_label("Role").select_option(label="Client user")
    expect(invite.get_by_label("Client")).to_be_visible()
    page.get_by_test_id("members-table").get_by_text("Change").first.click()
    shot(page, "45-members")

    page.goto(base + "/api-keys/new/")
    page.get_by_label("Sending account").select_option(label="Acme main")
    page.get_by_label("Name").fill("Workflow server")
    shot(page, "47-api-key-form")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("raw-key")).to_contain_text("xes_")
    shot(page, "48-api-key-created")
    page.get_by_role("link", name="Done").click()
    shot(page, "49-api-keys")

    # allauth's pages for the login itself, in the portal's "manage" layout.
    page.goto(base + "/accounts/email/")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    shot(page, "50-email-addresses")
    page.goto(base + "/accounts/password/change/")
    shot(page, "51-password-change")
    page.goto(base + "/accounts/2fa/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Two-Factor Authentication")
    shot(page, "52-2fa")
    page.get_by_role("link", name="Activate").click()
    if page.get_by_label("Password").count():  # allauth asks for the password again before changing 2FA
        shot(page, "53-2fa-reauthenticate")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Activate Authenticator App")
    shot(page, "54-2fa-activate")

    # A wide screen has room for the organisation's name beside its initial.
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(base + "/")
    expect(page.get_by_test_id("user-menu")).to_contain_text("Acme Agency")
    shot(page, "55-dashboard-wide")

    # A phone-sized window: the navigation collapses behind the toggler.
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/")
    shot(page, "56-dashboard-phone")
    page.get_by_role("button", name="Toggle navigation").click()
    expect(page.get_by_role("link", name="Campaigns")).to_be_visible()
    page.get_by_test_id("setup-menu").click()
    expect(page.get_by_role("link", name="Sender addresses")).to_be_visible()
    shot(page, "57-dashboard-phone-menu")
