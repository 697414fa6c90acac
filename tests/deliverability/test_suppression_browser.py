"""The suppression list in a real browser: sandbox bounces and complaints (mailbox simulator) appear on
their own, a CSV file is checked then imported, and the list downloads as CSV.
Screenshots: test-artifacts/browser/suppression-*.png."""

from __future__ import annotations

import csv
import io
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from deliverability.models import Suppression
from deliverability.providers import ensure_setup, provider_for
from tests.browser.conftest import browser, page, playwright_instance, shot  # noqa: F401 - browser fixtures
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FILE = b"email,note\nold-unsubscribe@example.net,from our old tool\nnot an address,\nBOUNCE@simulator.amazonses.com,\n"


def _send(tenant: Tenant, *recipients: str) -> None:
    setup = ensure_setup(tenant.account_org)
    message = EmailMessage()
    message["From"] = "news@acme.example"
    message["To"] = ", ".join(recipients)
    message["Subject"] = "Winter offers"
    message.set_content("Hello from Acme.")
    provider_for(setup).send_raw(
        setup, message.as_bytes(), from_address="news@acme.example", recipients=list(recipients), tags={}
    )


def _choose_file(tab: Page) -> None:
    tab.get_by_label("CSV file").set_input_files({"name": "old-tool.csv", "mimeType": "text/csv", "buffer": FILE})


def test_owner_imports_and_exports_the_suppression_list(
    page: Page,  # noqa: F811
    live_server: Any,
    tenant: Tenant,
    shot: Any,  # noqa: F811
    settings: Any,
) -> None:
    settings.DELIVERY_PROVIDER = "sandbox"
    base = live_server.url
    _send(tenant, "bounce@simulator.amazonses.com", "complaint@simulator.amazonses.com", "reader@example.net")
    log_in(page, base, tenant.owner.email, PASSWORD)

    # The simulator's bounce and complaint are on the list without anybody adding them.
    page.goto(f"{base}/deliverability/accounts/{tenant.account_org.pk}/suppressions/")
    results = page.get_by_test_id("suppression-results")
    expect(results).to_contain_text("bounce@simulator.amazonses.com")
    expect(results).to_contain_text("Hard bounce")
    expect(results).to_contain_text("complaint@simulator.amazonses.com")
    expect(results).to_contain_text("Complaint")
    expect(results).not_to_contain_text("reader@example.net")
    shot(page, "suppression-01-list")

    # Check a file first: counts and the bad row by number, nothing added yet.
    page.get_by_test_id("suppression-import-link").click()
    _choose_file(page)
    page.get_by_role("button", name="Check the file").click()
    result = page.get_by_test_id("import-result")
    expect(result).to_contain_text("nothing was added yet")
    expect(page.get_by_test_id("count-new")).to_have_text("1")
    expect(page.get_by_test_id("count-already")).to_have_text("1")
    expect(page.get_by_test_id("count-errors")).to_have_text("1")
    expect(page.get_by_test_id("import-errors")).to_contain_text("not an address")
    shot(page, "suppression-02-import-check")
    assert Suppression.objects.filter(sending_account=tenant.account_org).count() == 2

    # Then import it.
    _choose_file(page)
    page.get_by_role("button", name="Import", exact=True).click()
    expect(result).to_contain_text("Import done")
    expect(page.get_by_test_id("count-new")).to_have_text("1")
    shot(page, "suppression-03-imported")
    page.get_by_role("link", name="Back to the suppression list").click()
    expect(page.get_by_test_id("suppression-results")).to_contain_text("old-unsubscribe@example.net")
    expect(page.get_by_test_id("suppression-results")).to_contain_text("from our old tool")

    # The whole list downloads as CSV.
    with page.expect_download() as download_info:
        page.get_by_test_id("suppression-export").click()
    path = download_info.value.path()
    rows = list(csv.reader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert rows[0] == ["email", "reason", "note", "added_at", "added_by"]
    assert {row[0]: row[1] for row in rows[1:]} == {
        "bounce@simulator.amazonses.com": "hard_bounce",
        "complaint@simulator.amazonses.com": "complaint",
        "old-unsubscribe@example.net": "manual",
    }
