"""The whole campaign path in a real browser: import a CSV, build a segment, define a business rule,
write a template that uses it, preview it, send a campaign on the sandbox provider, watch the
progress bar reach 100%, and find the messages in the sandbox outbox.
Screenshots: test-artifacts/browser/campaign-*.png."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import django_rq
import pytest
from django.utils import timezone
from playwright.sync_api import Dialog, Page, expect
from rq import SimpleWorker

from accounts.models import SenderAddress
from campaigns.models import Campaign, CustomField, Message
from deliverability.models import SandboxMessage
from tests.browser.test_newcomer import log_in
from tests.campaigns.fixtures_api import give_credits
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BODY = (
    "<h1>{{ rules.greeting }} {{ contact.first_name }}</h1>\n"
    "{% if rules.vip %}<p>VIP: 20% off everything.</p>{% else %}<p>10% off this week.</p>{% endif %}\n"
    '<p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a></p>'
)


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def _csv(tmp_path: Path) -> Path:
    rows = ["email;first_name;country;points"]
    rows += [f"kunde{i}@example.de;Kunde {i};{'DE' if i % 2 else 'AT'};{i * 15}" for i in range(12)]
    path = tmp_path / "kunden.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _work() -> None:
    for name in ("low", "sending"):
        queue = django_rq.get_queue(name)
        SimpleWorker([queue], connection=queue.connection).work(burst=True)


def test_import_segment_template_and_campaign_end_to_end(
    page: Page, live_server: Any, tenant: Tenant, shot: Any, tmp_path: Path, settings: Any
) -> None:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    base = live_server.url
    org = tenant.organisation
    give_credits(tenant.account_org)
    sender = SenderAddress.objects.create(
        sending_account=tenant.account_org, email="news@acme.example", verified_at=timezone.now()
    )
    for key, kind in (("country", CustomField.Type.TEXT), ("points", CustomField.Type.NUMBER)):
        CustomField.objects.create(organisation=org, key=key, label=key.title(), type=kind)
    page.on("dialog", _accept)
    log_in(page, base, tenant.owner.email, PASSWORD)

    # 1. Import the CSV through the wizard; the queue runs the job.
    page.goto(base + "/campaigns/contacts/imports/")
    page.get_by_label("CSV or XLSX file").set_input_files(str(_csv(tmp_path)))
    page.get_by_role("button", name="Upload and read columns").click()
    page.get_by_role("button", name="Check the file (dry run)").click()
    expect(page.get_by_test_id("preview-new")).to_have_text("12")
    page.get_by_test_id("import-run").click()
    _work()
    expect(page.get_by_test_id("import-status")).to_have_text("Done")
    shot(page, "campaign-01-imported")

    # 2. A segment: Points ≥ 50.
    page.goto(base + "/campaigns/segments/new/")
    page.get_by_label("Name").fill("Good customers")
    first = page.get_by_test_id("segment-condition").nth(0)
    first.get_by_test_id("condition-subject").select_option(label="Points")
    expect(page.get_by_test_id("segment-condition").nth(0).get_by_test_id("condition-operator")).to_have_value("eq")
    page.get_by_test_id("segment-condition").nth(0).get_by_test_id("condition-operator").select_option(label="≥")
    page.get_by_test_id("segment-condition").nth(0).get_by_test_id("condition-value").fill("50")
    expect(page.get_by_test_id("segment-count")).to_contain_text("8 contacts")
    page.get_by_test_id("segment-save").click()
    shot(page, "campaign-02-segment")

    # 3. Two business rules: vip (a condition) and greeting (a computed value).
    for name, rule_kind, expression in (
        ("vip", "condition", "points > 100"),
        ("greeting", "value", "{% if country == 'DE' %}Hallo{% else %}Servus{% endif %}"),
    ):
        page.goto(base + "/campaigns/rules/new/")
        page.get_by_label("Name").fill(name)
        page.get_by_label("Kind").select_option(rule_kind)
        page.get_by_label("Definition").fill(expression)
        page.get_by_role("button", name="Save rule").click()
        expect(page.get_by_test_id("rules-table")).to_contain_text(f"rules.{name}")
    shot(page, "campaign-03-rules")

    # 4. A template using them; then its preview for a VIP.
    page.goto(base + "/campaigns/templates/new/")
    page.get_by_label("Name").fill("Autumn offer")
    page.get_by_label("Slug").fill("autumn")
    page.get_by_label("Subject").fill("{{ rules.greeting }} {{ contact.first_name }}, our autumn offer")
    page.get_by_label("HTML or MJML").fill(BODY)
    page.get_by_role("button", name="Save template").click()
    expect(page.get_by_text("Template “Autumn offer” saved.")).to_be_visible()
    page.get_by_test_id("preview-link").click()
    page.get_by_role("link", name="kunde11@example.de").click()
    expect(page.get_by_test_id("preview-subject")).to_have_text("Hallo Kunde 11, our autumn offer")
    frame = page.frame_locator("[data-testid='preview-frame']")
    expect(frame.locator("body")).to_contain_text("VIP: 20% off everything.")
    shot(page, "campaign-04-preview")

    # 5. The campaign to the segment: checks, send, progress to 100%.
    page.goto(base + "/campaigns/new/")
    page.get_by_label("Name").fill("Autumn 2026")
    page.get_by_label("Sending account").select_option(label=tenant.account_org.name)
    page.get_by_label("From (a verified sender address of the account)").select_option(label=str(sender))
    page.get_by_label("Template").select_option(label="Autumn offer")
    page.get_by_label("Recipients").select_option(label="Good customers")
    page.get_by_label("Promotional (newsletters, offers): needs an unsubscribe link").check()
    page.get_by_role("button", name="Save and check").click()
    expect(page.get_by_test_id("pre-send-checks")).to_contain_text("8 recipients")
    shot(page, "campaign-05-checks")
    page.get_by_test_id("send-campaign").click()
    expect(page.get_by_test_id("campaign-progress")).to_be_visible()
    _work()  # the queueing job, then the batch jobs (they enqueue each other)
    _work()
    expect(page.get_by_test_id("progress-percent")).to_have_text("100%")
    expect(page.get_by_test_id("count-sent")).to_have_text("8")
    assert page.locator("#campaign-progress [data-progress]").evaluate("el => el.style.width") == "100%"
    shot(page, "campaign-06-sent")

    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.DONE
    assert Message.objects.filter(campaign=campaign, status=Message.Status.SENT).count() == 8

    # 6. The sandbox outbox has them, personalised.
    page.goto(base + "/deliverability/outbox/")
    expect(page.get_by_test_id("outbox-table")).to_contain_text("Hallo Kunde 11, our autumn offer")
    shot(page, "campaign-07-outbox")
    assert SandboxMessage.objects.count() == 8
