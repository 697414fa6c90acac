"""Contact import in a real browser: upload a CSV, map a column to a new field, check the preview,
import through the RQ queue, watch the progress bar reach 100% and see the contacts.
Screenshots: test-artifacts/browser/import-*.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import django_rq
import pytest
from playwright.sync_api import Page, expect
from rq import SimpleWorker

from campaigns import imports
from campaigns.models import Contact
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def _csv(tmp_path: Path) -> Path:
    rows = ["E-Mail;Vorname;Stadt"] + [f"person{i}@example.com;Person {i};Köln" for i in range(300)]
    rows += ["PERSON1@example.com;Again;Bonn", "not-an-address;Broken;"]
    path = tmp_path / "kunden.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8-sig")
    return path


def test_owner_imports_a_csv_and_watches_the_progress_bar(
    page: Page, live_server: Any, tenant: Tenant, shot: Any, tmp_path: Path, settings: Any, monkeypatch: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    monkeypatch.setattr(imports, "BATCH_SIZE", 50)  # several batches, so the bar moves
    base = live_server.url
    log_in(page, base, tenant.owner.email, PASSWORD)

    page.goto(base + "/campaigns/contacts/imports/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Contacts")
    page.get_by_label("CSV or XLSX file").set_input_files(str(_csv(tmp_path)))
    shot(page, "import-01-upload")
    page.get_by_role("button", name="Upload and read columns").click()

    # Mapping: e-mail and first name are guessed from the German headers; "Stadt" becomes a new field.
    expect(page.get_by_label("E-Mail")).to_have_value("email")
    expect(page.get_by_label("Vorname")).to_have_value("first_name")
    page.get_by_label("Stadt").select_option("new")
    expect(page.locator("#col-2-key")).to_be_visible()
    page.locator("#col-2-key").fill("city")
    page.locator("#col-2-label").fill("City")
    shot(page, "import-02-mapping")
    page.get_by_role("button", name="Check the file (dry run)").click()

    # Preview: counts and the first error, nothing saved yet.
    expect(page.get_by_test_id("preview-new")).to_have_text("300")
    expect(page.get_by_test_id("preview-errors")).to_have_text("1")
    expect(page.get_by_test_id("preview-first-errors")).to_contain_text("Row 303")
    assert Contact.objects.count() == 0
    shot(page, "import-03-preview")

    page.get_by_test_id("import-run").click()
    expect(page.get_by_test_id("import-status")).to_have_text("Queued")
    shot(page, "import-04-queued")

    # A worker runs the job in this process (RQ's signal handling needs the main thread) while the
    # page keeps polling the live server for the progress with htmx.
    queue = django_rq.get_queue(imports.QUEUE)
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    expect(page.get_by_test_id("import-status")).to_have_text("Done")
    bar = page.get_by_test_id("import-bar")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    width = page.locator("[data-progress]").evaluate("el => el.style.width")
    assert width == "100%"
    expect(page.get_by_test_id("result-new")).to_have_text("300")
    expect(page.get_by_test_id("result-errors")).to_have_text("1")
    shot(page, "import-05-done")

    page.get_by_test_id("see-contacts").click()
    expect(page.get_by_test_id("contact-count")).to_have_text("300 contacts")
    expect(page.get_by_test_id("contacts-table")).to_contain_text("person0@example.com")
    shot(page, "import-06-contacts")
    assert Contact.objects.get(email="person1@example.com").fields == {"city": "Bonn"}
