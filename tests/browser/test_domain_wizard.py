"""The domain wizard in a real browser: an owner with the Advanced Sender Package adds a domain, sets
up MAIL FROM, DMARC and branded links, and checks every step against the local DNS server, which
serves the records correctly: every record ends green. Screenshots: test-artifacts/browser/domains-*.png."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from deliverability.models import DnsRecord, Domain
from tests.browser.test_newcomer import log_in
from tests.conftest import Tenant
from tests.deliverability.dns_server import TestDnsServer, correct_zone
from tests.deliverability.helpers import give_package
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def publish(dns: TestDnsServer) -> None:
    """What the customer does at their DNS provider: publish exactly the records the wizard shows."""
    dns.set_zones(correct_zone(DnsRecord.objects.all()))


def check_step(page: Page, dns: TestDnsServer, expected_records: int) -> None:
    publish(dns)
    page.get_by_test_id("check-now").click()
    records = page.locator("[data-testid^='record-']")
    expect(records).to_have_count(expected_records)
    expect(page.locator("[data-record-status='ok']")).to_have_count(expected_records)


def test_owner_walks_the_wizard_until_every_record_is_green(
    page: Page, live_server: Any, tenant: Tenant, local_dns: TestDnsServer, shot: Any
) -> None:
    base = live_server.url
    give_package(tenant.organisation, "druckhaus-müller.example")
    log_in(page, base, tenant.owner.email, PASSWORD)

    # The empty list says what to do next.
    page.get_by_role("link", name="Domains", exact=True).click()
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    shot(page, "domains-01-empty")
    page.get_by_role("link", name="Add a domain").click()

    # Step 1: the domain (an IDN, typed as people write it).
    page.get_by_label("Sending account").select_option(label=tenant.account_org.name)
    page.get_by_label("Domain").fill("Druckhaus-Müller.example")
    page.get_by_label("Easy DKIM (CNAME records, keys managed by the provider)").check()
    shot(page, "domains-02-add")
    page.get_by_role("button", name="Add domain").click()

    # Step 2: ownership + three DKIM CNAMEs, not checked yet; then published and checked.
    expect(page.get_by_role("heading", level=1)).to_contain_text("druckhaus-müller.example")
    expect(page.locator("[data-record-status='pending']")).to_have_count(4)
    shot(page, "domains-03-verify-pending")
    check_step(page, local_dns, 4)
    page.reload()
    expect(page.get_by_test_id("domain-verified")).to_be_visible()
    shot(page, "domains-04-verify-green")

    # Step 3: custom MAIL FROM (MX + SPF).
    page.get_by_test_id("next-step").click()
    page.get_by_label("MAIL FROM subdomain").fill("bounce")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("bounce.xn--druckhaus-mller-9vb.example").first).to_be_visible()
    check_step(page, local_dns, 2)
    shot(page, "domains-05-mail-from")

    # Step 4: SPF of the root domain.
    page.get_by_test_id("next-step").click()
    check_step(page, local_dns, 1)

    # Step 5: DMARC, starting at monitoring with a report address.
    page.get_by_test_id("next-step").click()
    page.get_by_label("Address for aggregate reports").fill("dmarc@druckhaus-müller.example")
    page.get_by_role("button", name="Save").click()
    check_step(page, local_dns, 1)
    shot(page, "domains-06-dmarc")

    # Step 6: branded links.
    page.get_by_test_id("next-step").click()
    page.get_by_label("Tracking subdomain").fill("klick")
    page.get_by_role("button", name="Save").click()
    check_step(page, local_dns, 1)
    shot(page, "domains-07-tracking")

    # Every step of the wizard is green, and so is the list.
    for step in ("verify", "mail-from", "spf", "dmarc", "tracking"):
        expect(page.get_by_test_id(f"step-{step}")).to_have_attribute("data-state", "ok")
    page.get_by_role("navigation", name="Main navigation").get_by_role("link", name="Domains").click()
    expect(page.get_by_test_id("domains-table").locator("[data-status='ok']")).to_have_count(5)
    shot(page, "domains-08-list-green")

    domain = Domain.objects.get()
    assert domain.is_verified
    assert set(domain.records.values_list("status", flat=True)) == {DnsRecord.Status.OK}
    assert domain.records.count() == 9
