"""The domain wizard's services: adding a domain (IDN, own proof per organisation, own DKIM key),
the records each step expects, gating by the Advanced Sender Package and the staged DMARC rollout."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from django.utils import timezone

from accounts.models import SendingAccount
from deliverability import services
from deliverability.models import DnsRecord, Domain
from deliverability.providers import ProviderError
from deliverability.providers.sandbox import SandboxProvider
from deliverability.services import DomainError
from tests.conftest import Tenant
from tests.deliverability.helpers import give_package
from tests.factories import MembershipFactory, SendingAccountFactory

Kind = DnsRecord.Kind


def kinds(domain: Domain) -> list[str]:
    return list(domain.records.values_list("kind", flat=True))


def test_an_idn_is_stored_as_punycode_and_shown_in_unicode(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "  Bücher-Straße.Example. ", Domain.DkimMode.EASY)

    assert domain.name == "xn--bcher-strae-46a18a.example"
    assert domain.display_name == "bücher-straße.example"
    assert DnsRecord.objects.get(domain=domain, kind=Kind.OWNERSHIP).name == (
        "_xes-verification.xn--bcher-strae-46a18a.example"
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("https://example.com/page", "without http://"),
        ("localhost", "full domain name"),
        ("exa mple.com", ""),
        ("", ""),
    ],
)
def test_it_refuses_what_is_not_a_domain_with_a_clear_message(tenant: Tenant, raw: str, message: str) -> None:
    with pytest.raises(DomainError) as caught:
        services.add_domain(tenant.account_org, raw, Domain.DkimMode.EASY)

    assert message in str(caught.value)
    assert str(caught.value)
    assert not Domain.objects.exists()


def test_an_address_is_taken_for_its_domain(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "news@acme.example", Domain.DkimMode.EASY)

    assert domain.name == "acme.example"


def test_easy_dkim_expects_the_providers_three_cnames_and_an_ownership_record(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)

    records = list(domain.records.order_by("position"))
    assert [r.kind for r in records] == [Kind.OWNERSHIP, Kind.DKIM, Kind.DKIM, Kind.DKIM]
    assert records[0].value == f"xes-verification={domain.verification_token}"
    assert len(domain.dkim_tokens) == 3
    for record, token in zip(records[1:], domain.dkim_tokens, strict=True):
        assert (record.rtype, record.name, record.value) == (
            "CNAME",
            f"{token}._domainkey.acme.example",
            f"{token}.dkim.amazonses.com",
        )
    assert all(r.status == DnsRecord.Status.PENDING for r in records)


def test_own_dkim_key_is_2048_bits_and_only_the_public_half_is_kept(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.BYO)

    record = domain.records.get(kind=Kind.DKIM)
    assert record.rtype == "TXT"
    assert record.name == f"{domain.dkim_selector}._domainkey.acme.example"
    key = load_der_public_key(base64.b64decode(domain.dkim_public_key))
    assert isinstance(key, rsa.RSAPublicKey)
    assert key.key_size == 2048
    assert record.value.endswith(f"p={domain.dkim_public_key}")
    assert "PRIVATE" not in str(Domain.objects.filter(pk=domain.pk).values().get())


def test_a_domain_verified_by_another_organisation_still_needs_its_own_proof(tenant: Tenant) -> None:
    theirs = services.add_domain(tenant.account_org, "shared.example", Domain.DkimMode.EASY)
    Domain.objects.filter(pk=theirs.pk).update(verified_at=timezone.now())
    other_org = MembershipFactory().organisation
    other_account = SendingAccountFactory(organisation=other_org)

    mine = services.add_domain(other_account, "shared.example", Domain.DkimMode.EASY)

    assert mine.verified_at is None
    assert mine.verification_token != theirs.verification_token
    assert mine.records.get(kind=Kind.OWNERSHIP).value != theirs.records.get(kind=Kind.OWNERSHIP).value


def test_the_same_domain_twice_in_one_account_is_refused(tenant: Tenant) -> None:
    services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)

    with pytest.raises(DomainError, match="already has the domain"):
        services.add_domain(tenant.account_org, "ACME.example", Domain.DkimMode.EASY)
    assert Domain.objects.count() == 1


def test_a_provider_error_leaves_no_domain_behind(tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise ProviderError("We could not reach the delivery provider. Nothing was changed; try again.")

    monkeypatch.setattr(SandboxProvider, "create_domain_identity", fail)

    with pytest.raises(DomainError, match="Nothing was changed"):
        services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    assert not Domain.objects.exists()
    assert not DnsRecord.objects.exists()


def test_without_the_package_only_ownership_and_dkim_are_expected(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)

    with pytest.raises(DomainError, match="Advanced Sender Package"):
        services.set_mail_from(domain, "mail")
    with pytest.raises(DomainError, match="Advanced Sender Package"):
        services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "dmarc@acme.example")
    with pytest.raises(DomainError, match="Advanced Sender Package"):
        services.set_tracking(domain, "links")
    assert set(kinds(domain)) == {Kind.OWNERSHIP, Kind.DKIM}


def test_the_package_for_this_domain_adds_spf_dmarc_mail_from_and_branded_links(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")

    services.set_mail_from(domain, "Mail")
    services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "dmarc@ACME.Example")
    services.set_tracking(domain, "links")

    by_kind = {r.kind: r for r in domain.records.all()}
    assert (by_kind[Kind.MAIL_FROM_MX].name, by_kind[Kind.MAIL_FROM_MX].value, by_kind[Kind.MAIL_FROM_MX].priority) == (
        "mail.acme.example",
        "feedback-smtp.eu-central-1.amazonses.com",
        10,
    )
    assert by_kind[Kind.MAIL_FROM_SPF].value == "v=spf1 include:amazonses.com ~all"
    assert by_kind[Kind.SPF].name == "acme.example"
    assert by_kind[Kind.DMARC].name == "_dmarc.acme.example"
    assert "p=none" in by_kind[Kind.DMARC].value
    assert "rua=mailto:dmarc@acme.example" in by_kind[Kind.DMARC].value
    assert (by_kind[Kind.TRACKING].name, by_kind[Kind.TRACKING].rtype) == ("links.acme.example", "CNAME")


def test_a_package_for_another_domain_does_not_count(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "news.acme.example")

    assert not services.has_advanced_sender(domain)
    with pytest.raises(DomainError):
        services.set_tracking(domain, "links")


def test_records_of_the_package_go_when_it_ends(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    term = give_package(tenant.organisation, "acme.example")
    services.set_tracking(domain, "links")
    assert Kind.TRACKING in kinds(domain)

    term.ends_at = timezone.now() - timedelta(seconds=1)
    term.save()
    services.sync_records(domain)

    assert set(kinds(domain)) == {Kind.OWNERSHIP, Kind.DKIM}


@pytest.mark.parametrize("label", ["a.b", "-bad", "x" * 64, "sp ace"])
def test_a_bad_subdomain_label_is_refused(tenant: Tenant, label: str) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")

    with pytest.raises(DomainError):
        services.set_mail_from(domain, label)
    domain.refresh_from_db()
    assert domain.mail_from_subdomain == ""


def test_mail_from_and_tracking_subdomains_must_differ(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")
    services.set_mail_from(domain, "mail")

    with pytest.raises(DomainError, match="differ"):
        services.set_tracking(domain, "mail")


def test_dmarc_moves_one_stage_at_a_time(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")
    services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "dmarc@acme.example")

    with pytest.raises(DomainError, match="one stage at a time"):
        services.set_dmarc(domain, Domain.DmarcPolicy.REJECT, "dmarc@acme.example")
    services.set_dmarc(domain, Domain.DmarcPolicy.QUARANTINE, "dmarc@acme.example")
    services.set_dmarc(domain, Domain.DmarcPolicy.REJECT, "dmarc@acme.example")
    services.set_dmarc(domain, Domain.DmarcPolicy.QUARANTINE, "dmarc@acme.example")  # back is fine

    assert "p=quarantine" in domain.records.get(kind=Kind.DMARC).value


def test_dmarc_advises_the_next_stage_after_two_weeks(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")
    services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "")

    stage, when = services.dmarc_next_stage(domain)

    started = domain.dmarc_stage_started_at
    assert started is not None
    assert stage == Domain.DmarcPolicy.QUARANTINE
    assert when == started + timedelta(days=14)


def test_an_invalid_report_address_is_refused(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")

    with pytest.raises(DomainError):
        services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "not an address")


def test_changing_a_value_resets_only_that_record(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)
    give_package(tenant.organisation, "acme.example")
    services.set_dmarc(domain, Domain.DmarcPolicy.NONE, "")
    DnsRecord.objects.filter(domain=domain).update(status=DnsRecord.Status.OK)

    services.set_dmarc(domain, Domain.DmarcPolicy.QUARANTINE, "")

    statuses = dict(domain.records.values_list("kind", "status"))
    assert statuses[Kind.DMARC] == DnsRecord.Status.PENDING
    assert statuses[Kind.OWNERSHIP] == DnsRecord.Status.OK


def test_removing_a_domain_removes_its_records(tenant: Tenant) -> None:
    domain = services.add_domain(tenant.account_org, "acme.example", Domain.DkimMode.EASY)

    services.remove_domain(domain)

    assert not Domain.objects.exists()
    assert not DnsRecord.objects.exists()
    assert SendingAccount.objects.filter(pk=tenant.account_org.pk).exists()
