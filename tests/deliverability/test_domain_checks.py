"""Live checks of a domain against the local DNS server: verification, verdicts stored per record
with history, "unknown" never un-verifying, drift e-mails from the daily re-check, and the jobs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import django_rq
import pytest
import time_machine
from django.urls import reverse
from rq import SimpleWorker

from deliverability import jobs, services
from deliverability.models import DnsCheck, DnsRecord, Domain
from tests.conftest import Tenant
from tests.deliverability.dns_server import TestDnsServer, correct_zone, txt
from tests.deliverability.helpers import give_package

Kind = DnsRecord.Kind
Status = DnsRecord.Status
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def full_domain(tenant: Tenant) -> Domain:
    """acme.example with every step set up (the package is active)."""
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example", starts_at=T0 - timedelta(days=30))
    services.set_mail_from(domain, "mail")
    services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "dmarc@acme.example")
    services.set_tracking(domain, "links")
    return domain


def publish_all(dns: TestDnsServer, domain: Domain) -> None:
    dns.set_zones(correct_zone(domain.records.all()))


def statuses(domain: Domain) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for kind, status in domain.records.values_list("kind", "status"):
        result.setdefault(kind, set()).add(status)
    return result


def test_a_fully_correct_domain_is_verified_with_every_record_green(
    local_dns: TestDnsServer, full_domain: Domain
) -> None:
    publish_all(local_dns, full_domain)

    outcome = services.check_domain(full_domain, at=T0)

    assert outcome.verified_now
    assert statuses(full_domain) == {kind: {Status.OK} for kind in Kind.values}
    full_domain.refresh_from_db()
    assert full_domain.verified_at == T0
    assert DnsCheck.objects.filter(record__domain=full_domain).count() == full_domain.records.count()


def test_a_wrong_dkim_target_is_reported_with_what_was_found(local_dns: TestDnsServer, full_domain: Domain) -> None:
    zones = correct_zone(full_domain.records.all())
    first_dkim = full_domain.records.filter(kind=Kind.DKIM).first()
    assert first_dkim is not None
    zones[first_dkim.name] = [zones[first_dkim.name][0].__class__("CNAME", "someone-else.example.net", 10)]
    local_dns.set_zones(zones)

    services.check_domain(full_domain, at=T0)

    first_dkim.refresh_from_db()
    assert first_dkim.status == Status.WRONG
    assert any("someone-else.example.net" in value for value in first_dkim.found)
    full_domain.refresh_from_db()
    assert full_domain.verified_at is None


def test_missing_records_are_missing(local_dns: TestDnsServer, full_domain: Domain) -> None:
    local_dns.set_zones({})

    services.check_domain(full_domain, at=T0)

    assert statuses(full_domain) == {kind: {Status.MISSING} for kind in Kind.values}


def test_checking_one_step_looks_up_only_its_records(local_dns: TestDnsServer, full_domain: Domain) -> None:
    publish_all(local_dns, full_domain)

    services.check_domain(full_domain, kinds=[Kind.DMARC], at=T0)

    assert statuses(full_domain)[Kind.DMARC] == {Status.OK}
    assert statuses(full_domain)[Kind.SPF] == {Status.PENDING}


def test_a_timeout_is_unknown_and_never_un_verifies(local_dns: TestDnsServer, full_domain: Domain) -> None:
    publish_all(local_dns, full_domain)
    services.check_domain(full_domain, at=T0)
    local_dns.drop("acme.example")

    outcome = services.check_domain(full_domain, at=T0 + timedelta(days=5))

    assert not outcome.broke
    assert not outcome.unverified_now
    full_domain.refresh_from_db()
    assert full_domain.verified_at == T0
    assert statuses(full_domain) == {kind: {Status.OK} for kind in Kind.values}
    assert all(r.unknown_since == T0 + timedelta(days=5) for r in full_domain.records.all())
    assert set(DnsCheck.objects.filter(checked_at=T0 + timedelta(days=5)).values_list("status", flat=True)) == {
        Status.UNKNOWN
    }
    assert services.domains_with_unknown_records() == [full_domain.pk]


def test_a_record_never_checked_shows_unknown_on_a_timeout(local_dns: TestDnsServer, tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    local_dns.drop("acme.example")

    services.check_domain(domain, at=T0)

    assert statuses(domain) == {Kind.OWNERSHIP: {Status.UNKNOWN}, Kind.DKIM: {Status.UNKNOWN}}


def test_drift_emails_the_owners_once_with_the_broken_record(
    local_dns: TestDnsServer,
    full_domain: Domain,
    mailoutbox: list[Any],
    tenant: Tenant,
    django_capture_on_commit_callbacks: Any,
) -> None:
    publish_all(local_dns, full_domain)
    services.check_domain(full_domain, at=T0)
    local_dns.remove("_dmarc.acme.example")

    with django_capture_on_commit_callbacks(execute=True):
        services.recheck_domain(full_domain.pk, at=T0 + timedelta(days=1))
        services.recheck_domain(full_domain.pk, at=T0 + timedelta(days=2))

    assert len(mailoutbox) == 1
    message = mailoutbox[0]
    assert message.to == [tenant.owner.email]
    assert "acme.example" in message.subject
    assert "_dmarc.acme.example TXT" in message.body
    html = message.alternatives[0][0]
    assert "_dmarc.acme.example TXT" in html
    assert "/deliverability/domains/" in message.body
    assert statuses(full_domain)[Kind.DMARC] == {Status.MISSING}


def test_a_broken_dkim_unverifies_only_after_three_days(
    local_dns: TestDnsServer, full_domain: Domain, mailoutbox: list[Any], django_capture_on_commit_callbacks: Any
) -> None:
    publish_all(local_dns, full_domain)
    services.check_domain(full_domain, at=T0)
    for record in full_domain.records.filter(kind=Kind.DKIM):
        local_dns.remove(record.name)

    with django_capture_on_commit_callbacks(execute=True):
        first = services.recheck_domain(full_domain.pk, at=T0 + timedelta(days=1))
        second = services.recheck_domain(full_domain.pk, at=T0 + timedelta(days=3))
        third = services.recheck_domain(full_domain.pk, at=T0 + timedelta(days=4, hours=1))

    assert first is not None
    assert second is not None
    assert third is not None
    assert len(first.broke) == 3
    assert not first.unverified_now
    assert not second.unverified_now
    assert third.unverified_now
    full_domain.refresh_from_db()
    assert full_domain.verified_at is None
    assert "no longer verified" in mailoutbox[-1].body


def test_a_fixed_record_is_green_again(local_dns: TestDnsServer, full_domain: Domain) -> None:
    local_dns.set_zones({"_dmarc.acme.example": [txt("v=DMARC1; p=none; p=reject")]})
    services.check_domain(full_domain, kinds=[Kind.DMARC], at=T0)
    assert statuses(full_domain)[Kind.DMARC] == {Status.WRONG}

    publish_all(local_dns, full_domain)
    services.check_domain(full_domain, kinds=[Kind.DMARC], at=T0 + timedelta(hours=1))

    record = full_domain.records.get(kind=Kind.DMARC)
    assert record.status == Status.OK
    assert record.ok_since == T0 + timedelta(hours=1)
    assert record.problems == []


def test_the_daily_job_rechecks_every_domain_through_the_queue(
    local_dns: TestDnsServer, full_domain: Domain, tenant: Tenant, django_capture_on_commit_callbacks: Any
) -> None:
    other = services.add_domain(tenant.account_a, "alpha.example", Domain.DkimMode.BYO)
    publish_all(local_dns, full_domain)

    with time_machine.travel(T0, tick=False):
        with django_capture_on_commit_callbacks(execute=True):  # RQ enqueues when the transaction commits
            assert jobs.recheck_domains_job() == 2
        queue = django_rq.get_queue(jobs.QUEUE)
        SimpleWorker([queue], connection=queue.connection).work(burst=True)

    full_domain.refresh_from_db()
    other.refresh_from_db()
    assert full_domain.last_checked_at == T0
    assert other.last_checked_at == T0
    assert full_domain.is_verified
    assert statuses(other) == {Kind.OWNERSHIP: {Status.MISSING}, Kind.DKIM: {Status.MISSING}}


def test_the_hourly_retry_checks_domains_whose_lookups_failed(local_dns: TestDnsServer, full_domain: Domain) -> None:
    local_dns.drop("acme.example")
    services.check_domain(full_domain, at=T0)
    local_dns.reset()
    publish_all(local_dns, full_domain)

    assert jobs.retry_unknown_job() == 1

    assert statuses(full_domain) == {kind: {Status.OK} for kind in Kind.values}
    assert services.domains_with_unknown_records() == []


def test_check_now_in_the_portal_shows_the_verdicts(
    local_dns: TestDnsServer, full_domain: Domain, tenant: Tenant, login: Any
) -> None:
    publish_all(local_dns, full_domain)
    local_dns.remove("links.acme.example")
    client = login(tenant.member)

    response = client.post(
        reverse("deliverability:domain_check", args=[full_domain.pk]),
        {"step": "tracking"},
        headers={"HX-Request": "true"},
    )

    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-record-status="missing"' in body
    assert 'data-testid="record-tracking"' in body
    assert "<html" not in body  # a partial for htmx
    page = client.post(reverse("deliverability:domain_check", args=[full_domain.pk]), {"step": "verify"}, follow=True)
    assert 'data-testid="domain-verified"' in page.content.decode()


def test_the_spf_step_offers_one_merged_record_when_the_domain_has_spf(
    local_dns: TestDnsServer, full_domain: Domain, tenant: Tenant, login: Any
) -> None:
    local_dns.set_zones(
        {
            "acme.example": [txt("v=spf1 include:_spf.google.com -all")],
            "_spf.google.com": [txt("v=spf1 ip4:192.0.2.0/24 -all")],
        }
    )
    services.check_domain(full_domain, kinds=[Kind.SPF], at=T0)

    body = login(tenant.owner).get(reverse("deliverability:domain_step", args=[full_domain.pk, "spf"])).content.decode()

    assert 'data-testid="spf-merge"' in body
    assert "v=spf1 include:_spf.google.com include:amazonses.com -all" in body
