"""The reputation page and the XES team's review in a real browser (no CSP violations, charts drawn).
Screenshots: test-artifacts/browser/reputation-*.png."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounts.models import User
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.deliverability.reputation.helpers import evaluate_at, traffic
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_owner_sees_the_probation_and_the_team_lifts_it(
    page: Page, live_server: Any, tenant: Tenant, staff_user: User, shot: Any
) -> None:
    base = live_server.url
    now = timezone.now()
    # given: three weeks of clean mail, a bad day three days ago, clean mail since
    for n in range(21, 0, -1):
        bad = n == 3
        traffic(tenant.account_a, now - timedelta(days=n), sent=600, hard=200 if bad else 3, soft=4, complaints=0)
        evaluate_at(now - timedelta(days=n, hours=-1))
    log_in(page, base, tenant.owner.email, PASSWORD)

    # The account page links to the reputation page, with the score.
    page.goto(f"{base}/sending-accounts/{tenant.account_a.pk}/")
    expect(page.get_by_test_id("reputation-link")).to_contain_text("score")
    page.get_by_test_id("reputation-link").get_by_role("link").click()

    # The reputation page: standing, meters, score, advice, trend charts, history.
    expect(page.get_by_role("heading", name="Reputation")).to_be_visible()
    expect(page.get_by_test_id("standing-card")).to_contain_text("Probation")
    expect(page.get_by_test_id("clean-days")).to_be_visible()
    expect(page.get_by_test_id("history-row")).to_have_count(1)
    expect(page.locator("#reputation-bounce-chart")).to_be_visible()
    page.wait_for_function("() => window.Chart && Object.keys(window.Chart.instances).length === 2")
    shot(page, "reputation-01-probation")

    # The XES team sees the alarm on the back office's home page and lifts the probation with a note.
    page.context.clear_cookies()
    log_in_admin(page, base, staff_user)
    expect(page.get_by_test_id("reputation-alarms")).to_contain_text(tenant.account_a.name)
    shot(page, "reputation-02-admin-alarms")
    page.get_by_role("link", name=f"Probation: {tenant.account_a.name}").click()
    shot(page, "reputation-03-admin-account")
    page.locator("select[name='CHANGE_FORM-action']").select_option("lift_probation")
    page.get_by_role("button", name="Run").click()
    page.get_by_label("Note").fill("Customer removed the bought list; checked with them by phone.")
    shot(page, "reputation-04-admin-lift-note")
    page.get_by_role("button", name="Lift the probation").click()
    expect(page.locator(".messagelist")).to_contain_text("Probation lifted for 1 account.")
    tenant.account_a.refresh_from_db()
    assert tenant.account_a.standing == "good"


def log_in_admin(page: Page, base: str, user: User) -> None:
    user.set_password(PASSWORD)
    user.save()
    page.goto(base + "/admin/login/")
    page.locator("#id_username").fill(user.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
