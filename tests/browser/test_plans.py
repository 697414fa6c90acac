"""Plan & usage in a real browser: the owner orders STANDARD, the XES team approves it in the admin,
the owner sees the pool and its bar, and the bar follows the credits used. Screenshots:
test-artifacts/browser/plans-*.png."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, Dialog, Page, expect

from plans import services
from plans.models import ClientAllocation, Order
from tests.browser.conftest import TIMEOUT_MS
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def _approve_in_admin(browser: Browser, base: str, staff_email: str, shot: Any) -> None:
    """The XES team's side, in a browser session of its own: the admin action "approve" on the order."""
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 800}, reduced_motion="reduce")
    context.set_default_timeout(TIMEOUT_MS)
    admin = context.new_page()
    try:
        admin.goto(base + "/admin/login/?next=/admin/plans/order/")
        admin.get_by_label("E-mail address").fill(staff_email)
        admin.get_by_label("Password").fill(PASSWORD)
        admin.get_by_role("button", name="Log in").click()
        expect(admin.get_by_role("heading", level=1)).to_contain_text("order")
        admin.locator("input[name='_selected_action']").first.check()
        admin.locator("select[name='action']").select_option("approve")
        shot(admin, "plans-03-admin-orders")
        admin.get_by_role("button", name="Run").click()
        expect(admin.locator(".messagelist")).to_contain_text("1 order approved.")
        shot(admin, "plans-04-admin-approved")
    finally:
        context.close()


def test_owner_orders_a_plan_the_team_approves_it_and_the_pool_follows_usage(
    page: Page, browser: Browser, live_server: Any, tenant: Tenant, staff_user: Any, shot: Any
) -> None:
    base = live_server.url
    page.on("dialog", _accept)  # the "Order Standard?" confirmation

    # The owner has no plan yet: an empty pool and the catalogue.
    log_in(page, base, tenant.owner.email, PASSWORD)
    page.get_by_role("link", name="Plan & usage").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Plan & usage")
    expect(page.get_by_test_id("pool-card")).to_contain_text("No active plan")
    expect(page.get_by_test_id("plan-BASIC")).to_contain_text("cross-media configuration")
    shot(page, "plans-01-no-plan")

    # Ordering STANDARD leaves an order waiting for the XES team.
    page.get_by_role("button", name="Order Standard").click()
    expect(page.get_by_role("alert")).to_contain_text("waits for the XES team's approval")
    expect(page.get_by_test_id("orders-table")).to_contain_text("Waiting for approval")
    expect(page.get_by_test_id("plan-STANDARD")).to_contain_text("You already ordered this plan")
    shot(page, "plans-02-ordered")
    order = Order.objects.get(organisation=tenant.organisation)

    _approve_in_admin(browser, base, staff_user.email, shot)
    order.refresh_from_db()
    assert order.status == Order.Status.APPROVED

    # The pool holds STANDARD's 1,000,000 e-mails, nothing used yet.
    page.reload()
    expect(page.get_by_test_id("pool-included")).to_have_text("1,000,000")
    used = page.get_by_test_id("pool-used")
    expect(used).to_have_attribute("aria-valuenow", "0")
    expect(used).to_have_attribute("aria-valuemax", "1000000")
    expect(page.get_by_test_id("orders-table")).to_contain_text("Approved")
    expect(page.get_by_test_id("terms-table")).to_contain_text("Standard")
    shot(page, "plans-05-pool")

    # Credits are reserved and partly used: the bar grows (used + reserved, stacked).
    ClientAllocation.objects.create(
        client=tenant.client_a, yearly_cap=400_000, mode="soft", period_start=timezone.now().date()
    )
    reservation = services.reserve(tenant.organisation, 350_000, sending_account=tenant.account_a)
    services.consume(reservation, 300_000)
    page.reload()
    expect(used).to_have_attribute("aria-valuenow", "300000")
    expect(page.get_by_test_id("pool-reserved")).to_have_attribute("aria-valuenow", "50000")
    expect(page.get_by_test_id("pool-available")).to_have_text("650,000")
    width = used.evaluate("el => el.getBoundingClientRect().width / el.parentElement.getBoundingClientRect().width")
    assert 0.29 < width < 0.31
    expect(page.get_by_test_id("forecast")).to_contain_text("At your pace of the last 30 days")
    expect(page.locator("#usage-chart")).to_be_visible()
    expect(page.get_by_test_id(f"client-row-{tenant.client_a.pk}")).to_contain_text("87%")
    shot(page, "plans-06-usage")

    # The owner opens a client's cap form.
    page.get_by_test_id(f"client-row-{tenant.client_b.pk}").get_by_text("Set cap").click()
    shot(page, "plans-07-cap-form")

    # The same page on a phone.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    shot(page, "plans-08-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # A client-user sees its own client only, without money.
    page.context.clear_cookies()
    log_in(page, base, tenant.client_user.email, PASSWORD)
    page.goto(base + "/plans/")
    expect(page.get_by_test_id("client-usage")).to_contain_text("Alpha Bakery")
    expect(page.get_by_test_id("client-usage")).not_to_contain_text("Beta Cars")
    expect(page.get_by_test_id("pool-card")).to_have_count(0)
    shot(page, "plans-09-client-user")
