"""Issue 6 end to end in a real browser: a campaign on the sandbox provider to SES mailbox-simulator
addresses; the provider's events flow through the same path as SES's SNS notifications, and the
portal shows delivered, bounced and complained counts on the campaign, the bounced and complaining
addresses on the account's suppression list, and the account's standing after the reputation job.
Screenshots: test-artifacts/browser/events-*.png."""

from __future__ import annotations

from typing import Any

import django_rq
import pytest
from django.db.models import Count
from django.utils import timezone
from playwright.sync_api import Dialog, Page, expect
from rq import SimpleWorker

from accounts.models import SenderAddress, SendingAccount
from campaigns.analytics.jobs import aggregate_events_job
from campaigns.models import Campaign, Contact, ContactList, ListMembership, Message, Template
from campaigns.tracking.jobs import flush_events_job
from deliverability.models import Suppression
from deliverability.reputation.models import Thresholds, forget_thresholds
from deliverability.reputation.services import evaluate_standings
from tests.browser.test_newcomer import log_in
from tests.campaigns.fixtures_api import give_credits
from tests.conftest import Tenant
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIMULATOR = "simulator.amazonses.com"
DELIVERED, BOUNCED, COMPLAINED = 560, 25, 15  # 600 recipients: enough deliveries for rates to apply


def _accept(dialog: Dialog) -> None:
    dialog.accept()


def _work() -> None:
    for name in ("default", "low", "sending"):
        queue = django_rq.get_queue(name)
        SimpleWorker([queue], connection=queue.connection).work(burst=True)


def _recipients(tenant: Tenant) -> ContactList:
    org = tenant.organisation
    addresses = (
        [f"success+{n}@{SIMULATOR}" for n in range(DELIVERED)]
        + [f"bounce+{n}@{SIMULATOR}" for n in range(BOUNCED)]
        + [f"complaint+{n}@{SIMULATOR}" for n in range(COMPLAINED)]
    )
    now = timezone.now()
    contacts = Contact.objects.bulk_create(
        Contact(organisation=org, email=email, created_at=now, updated_at=now) for email in addresses
    )
    recipients = ContactList.objects.create(organisation=org, name="Simulator")
    ListMembership.objects.bulk_create(ListMembership(contact_list=recipients, contact=c) for c in contacts)
    return recipients


def test_simulator_campaign_events_suppressions_and_standing(
    page: Page, live_server: Any, tenant: Tenant, shot: Any, settings: Any
) -> None:
    settings.SANDBOX_MAX_SEND_RATE = 0  # no simulated send rate: 600 messages at once
    base = live_server.url
    account = tenant.account_org
    give_credits(account)
    sender = SenderAddress.objects.create(
        sending_account=account, email="news@acme.example", verified_at=timezone.now()
    )
    Template.objects.create(
        organisation=tenant.organisation,
        name="Simulator test",
        slug="simulator",
        subject="Hello",
        body='<p>Hello</p><p><a href="{{ message.unsubscribe_url }}">Unsubscribe</a></p>',
    )
    _recipients(tenant)
    # PRODUCT.md: simulator traffic does not count for reputation; the XES team turns it on for demos.
    Thresholds.objects.filter(pk=1).update(count_simulator_traffic=True)
    forget_thresholds()
    page.on("dialog", _accept)
    log_in(page, base, tenant.owner.email, PASSWORD)

    # 1. The campaign, through the portal; the queue sends it on the sandbox provider.
    page.goto(base + "/campaigns/new/")
    page.get_by_label("Name").fill("Simulator run")
    page.get_by_label("Sending account").select_option(label=account.name)
    page.get_by_label("From (a verified sender address of the account)").select_option(label=str(sender))
    page.get_by_label("Template").select_option(label="Simulator test")
    page.get_by_label("Recipients").select_option(label="Simulator")
    page.get_by_role("button", name="Save and check").click()
    expect(page.get_by_test_id("pre-send-checks")).to_contain_text("600 recipients")
    page.get_by_test_id("send-campaign").click()
    _work()
    _work()
    expect(page.get_by_test_id("progress-percent")).to_have_text("100%")
    campaign = Campaign.objects.get()
    assert campaign.status == Campaign.Status.DONE

    # 2. The events reached the messages; the counters are aggregated; the campaign page shows them.
    _work()  # event processing jobs, if any were queued
    flush_events_job()  # the status changes deferred while the sends were being recorded
    aggregate_events_job()
    page.reload()
    panel = page.get_by_test_id("analytics-panel")
    expect(panel.get_by_test_id("fig-sent")).to_have_text("600")
    expect(panel.get_by_test_id("fig-delivered")).to_have_text(f"{DELIVERED + COMPLAINED}")
    expect(panel.get_by_test_id("fig-bounces")).to_have_text(f"{BOUNCED}")
    expect(panel.get_by_test_id("fig-hard")).to_have_text(f"{BOUNCED}")
    expect(panel.get_by_test_id("fig-complaints")).to_have_text(f"{COMPLAINED}")
    statuses = dict(Message.objects.filter(campaign=campaign).values_list("status").annotate(n=Count("id")))
    assert statuses == {"delivered": DELIVERED, "bounced": BOUNCED, "complained": COMPLAINED}
    shot(page, "events-01-campaign-counts")

    # 3. Hard bounces and complaints are on the account's suppression list.
    page.goto(base + f"/deliverability/accounts/{account.pk}/suppressions/")
    results = page.get_by_test_id("suppression-results")
    expect(results).to_contain_text(f"bounce+0@{SIMULATOR}")
    expect(results).to_contain_text(f"complaint+0@{SIMULATOR}")
    assert Suppression.objects.filter(sending_account=account, reason="hard_bounce").count() == BOUNCED
    assert Suppression.objects.filter(sending_account=account, reason="complaint").count() == COMPLAINED
    shot(page, "events-02-suppressions")

    # 4. The reputation job: 15 complaints in 575 deliveries (2.6 %) is past the suspension level (0.3 %).
    evaluate_standings()
    account.refresh_from_db()
    assert account.standing == SendingAccount.Standing.SUSPENDED
    page.goto(base + f"/deliverability/accounts/{account.pk}/reputation/")
    expect(page.get_by_test_id("standing-card")).to_contain_text("Suspended")
    expect(page.get_by_test_id("history-row").first).to_be_visible()
    shot(page, "events-03-reputation")
