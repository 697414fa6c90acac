"""The XES team's admin for domains, their DNS check history and provider set-ups."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client as HttpClient
from django.urls import reverse

from accounts.models import User
from deliverability import services
from deliverability.models import DnsCheck, DnsRecord, Domain, ProviderSetup
from tests.conftest import Tenant
from tests.deliverability.dns_server import TestDnsServer, correct_zone
from tests.deliverability.helpers import give_package


@pytest.fixture
def back_office(staff_user: User, client: HttpClient) -> HttpClient:
    client.force_login(staff_user)
    return client


@pytest.fixture
def domain(tenant: Tenant) -> Domain:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")
    return domain


def test_the_pages_load(back_office: HttpClient, domain: Domain, local_dns: TestDnsServer) -> None:
    services.check_domain(domain)
    setup = ProviderSetup.objects.get()
    check = DnsCheck.objects.first()
    assert check is not None

    for url in (
        reverse("admin:deliverability_domain_changelist"),
        reverse("admin:deliverability_domain_change", args=[domain.pk]),
        reverse("admin:deliverability_dnscheck_changelist"),
        reverse("admin:deliverability_dnscheck_change", args=[check.pk]),
        reverse("admin:deliverability_providersetup_changelist"),
        reverse("admin:deliverability_providersetup_change", args=[setup.pk]),
    ):
        response = back_office.get(url)
        assert response.status_code == 200, url
    history = back_office.get(reverse("admin:deliverability_dnscheck_changelist")).content.decode()
    assert "_xes-verification.acme.example" in history
    assert "There is no TXT record at _xes-verification.acme.example yet." in history


def test_customers_are_kept_out(tenant: Tenant, client: HttpClient) -> None:
    client.force_login(tenant.owner)

    response = client.get(reverse("admin:deliverability_domain_changelist"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_check_now_runs_the_checks(back_office: HttpClient, domain: Domain, local_dns: TestDnsServer) -> None:
    local_dns.set_zones(correct_zone(domain.records.all()))

    response = back_office.post(
        reverse("admin:deliverability_domain_changelist"),
        {"action": "check_now", "_selected_action": [domain.pk]},
        follow=True,
    )

    assert "1 domain checked." in response.content.decode()
    domain.refresh_from_db()
    assert domain.is_verified


def _form(domain: Domain, **changes: Any) -> dict[str, Any]:
    data = {
        "mail_from_subdomain": domain.mail_from_subdomain,
        "dmarc_policy": domain.dmarc_policy,
        "dmarc_rua": domain.dmarc_rua,
        "dmarc_stage_started_at_0": "",
        "dmarc_stage_started_at_1": "",
        "tracking_subdomain": domain.tracking_subdomain,
        "records-TOTAL_FORMS": "0",
        "records-INITIAL_FORMS": "0",
        "records-MIN_NUM_FORMS": "0",
        "records-MAX_NUM_FORMS": "0",
    }
    return {**data, **changes}


def test_the_team_sets_a_tracking_subdomain_and_the_records_follow(back_office: HttpClient, domain: Domain) -> None:
    response = back_office.post(
        reverse("admin:deliverability_domain_change", args=[domain.pk]), _form(domain, tracking_subdomain="Links")
    )

    assert response.status_code == 302
    record = DnsRecord.objects.get(domain=domain, kind=DnsRecord.Kind.TRACKING)
    assert record.name == "links.acme.example"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tracking_subdomain": "a.b"}, "single label"),
        ({"mail_from_subdomain": "mail", "tracking_subdomain": "mail"}, "must differ"),
        ({"dmarc_rua": "not an address"}, ""),
    ],
)
def test_bad_input_in_the_admin_is_refused_with_a_message(
    back_office: HttpClient, domain: Domain, changes: dict[str, str], message: str
) -> None:
    response = back_office.post(
        reverse("admin:deliverability_domain_change", args=[domain.pk]), _form(domain, **changes)
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert "errornote" in response.content.decode()
    domain.refresh_from_db()
    assert domain.tracking_subdomain == ""
    assert not DnsRecord.objects.filter(domain=domain, kind=DnsRecord.Kind.TRACKING).exists()
