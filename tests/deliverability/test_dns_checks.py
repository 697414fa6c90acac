"""check_record against the local authoritative DNS server: every kind correct, missing and wrong,
and lookups that fail (timeout, SERVFAIL, no nameserver) giving "unknown"."""

from __future__ import annotations

import json
import socket
from typing import Any, NamedTuple

import dns.resolver
import pytest
from django.core.exceptions import ImproperlyConfigured

from deliverability.dns.checks import Verdict, check_record, parse_dkim_tags
from deliverability.dns.messages import describe
from deliverability.dns.resolver import make_resolver, parse_nameserver
from deliverability.models import DnsRecord
from deliverability.records import dkim_record_value, generate_dkim_keypair, txt_chunks
from tests.deliverability.dns_server import Rec, TestDnsServer, a, cname, correct_zone, mx, txt

Kind = DnsRecord.Kind
Status = DnsRecord.Status

DOMAIN = "example.com"
_PRIVATE_KEY, PUBLIC_KEY = generate_dkim_keypair()
_OTHER_PRIVATE_KEY, OTHER_PUBLIC_KEY = generate_dkim_keypair()


class Expected(NamedTuple):
    """One record the wizard asks for, as stored in DnsRecord."""

    kind: str
    name: str
    rtype: str
    value: str
    priority: int | None = None


OWNERSHIP = Expected(Kind.OWNERSHIP, "_xes.example.com", "TXT", "xes-verification=tok-123")
EASY_DKIM = Expected(Kind.DKIM, "abc._domainkey.example.com", "CNAME", "abc.dkim.amazonses.com")
OWN_DKIM = Expected(Kind.DKIM, "xes1._domainkey.example.com", "TXT", dkim_record_value(PUBLIC_KEY))
MAIL_FROM_MX = Expected(Kind.MAIL_FROM_MX, "mail.example.com", "MX", "feedback-smtp.eu-west-1.amazonses.com", 10)
MAIL_FROM_SPF = Expected(Kind.MAIL_FROM_SPF, "mail.example.com", "TXT", "v=spf1 include:amazonses.com ~all")
SPF = Expected(Kind.SPF, "example.com", "TXT", "v=spf1 include:amazonses.com ~all")
DMARC = Expected(Kind.DMARC, "_dmarc.example.com", "TXT", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com")
TRACKING = Expected(Kind.TRACKING, "links.example.com", "CNAME", "track.xes-portal.test")

ALL = [OWNERSHIP, EASY_DKIM, OWN_DKIM, MAIL_FROM_MX, MAIL_FROM_SPF, SPF, DMARC, TRACKING]
IDS = ["ownership", "easy-dkim", "own-dkim", "mail-from-mx", "mail-from-spf", "spf", "dmarc", "tracking"]


def check(expected: Expected) -> Verdict:
    """check_record for an expected record, with the settings' resolver (the local server)."""
    return check_record(
        expected.kind, expected.name, expected.rtype, expected.value, domain=DOMAIN, priority=expected.priority
    )


def codes(verdict: Verdict) -> list[str]:
    return [problem.code for problem in verdict.problems]


def publish_all_except(server: TestDnsServer, *left_out: Expected, extra: dict[str, list[Rec]] | None = None) -> None:
    server.set_zones(correct_zone([record[1:] for record in ALL if record not in left_out], extra))


@pytest.mark.parametrize("expected", ALL, ids=IDS)
def test_a_fully_correct_domain_is_ok_for_every_record(local_dns: TestDnsServer, expected: Expected) -> None:
    # given
    publish_all_except(local_dns)

    # when
    verdict = check(expected)

    # then
    assert verdict.status == Status.OK, verdict.problems
    assert verdict.problems == []
    assert verdict.found


def test_correct_zone_publishes_long_txt_values_in_chunks_and_the_check_joins_them(local_dns: TestDnsServer) -> None:
    publish_all_except(local_dns)

    verdict = check(OWN_DKIM)

    assert len(OWN_DKIM.value) > 255
    assert verdict.found == [OWN_DKIM.value]


@pytest.mark.parametrize("expected", ALL, ids=IDS)
def test_each_record_missing_is_reported_missing(local_dns: TestDnsServer, expected: Expected) -> None:
    publish_all_except(local_dns, expected)

    verdict = check(expected)

    assert verdict.status == Status.MISSING
    assert verdict.problems[0].as_json() == {
        "code": "record_missing",
        "params": {"name": expected.name, "rtype": expected.rtype},
    }


WRONG_CASES = [
    pytest.param(
        OWNERSHIP,
        txt("xes-verification=somebody-else"),
        "ownership_wrong",
        ["xes-verification=somebody-else"],
        id="ownership",
    ),
    pytest.param(
        EASY_DKIM,
        cname("abc.dkim.elsewhere.example"),
        "cname_wrong_target",
        ["abc.dkim.elsewhere.example"],
        id="easy-dkim",
    ),
    pytest.param(
        EASY_DKIM,
        txt("v=DKIM1; k=rsa; p=AAAA"),
        "cname_other_record",
        ["v=DKIM1; k=rsa; p=AAAA"],
        id="easy-dkim-txt-instead",
    ),
    pytest.param(EASY_DKIM, a("192.0.2.7"), "cname_other_record", ["192.0.2.7"], id="easy-dkim-a-instead"),
    pytest.param(
        OWN_DKIM,
        txt(dkim_record_value(OTHER_PUBLIC_KEY)),
        "dkim_key_mismatch",
        [dkim_record_value(OTHER_PUBLIC_KEY)],
        id="own-dkim",
    ),
    pytest.param(MAIL_FROM_MX, mx("mx.other.example", 10), "mx_wrong_host", ["10 mx.other.example"], id="mail-from-mx"),
    pytest.param(
        MAIL_FROM_SPF,
        txt("v=spf1 ip4:192.0.2.0/24 -all"),
        "spf_missing_include",
        ["v=spf1 ip4:192.0.2.0/24 -all"],
        id="mail-from-spf",
    ),
    pytest.param(
        SPF,
        txt("v=spf1 include:_spf.google.com ~all"),
        "spf_missing_include",
        ["v=spf1 include:_spf.google.com ~all"],
        id="spf",
    ),
    pytest.param(
        DMARC,
        txt("v=DMARC1; p=none; rua=mailto:dmarc@example.com"),
        "dmarc_policy_mismatch",
        ["v=DMARC1; p=none; rua=mailto:dmarc@example.com"],
        id="dmarc",
    ),
    pytest.param(
        TRACKING,
        cname("tracking.competitor.example"),
        "cname_wrong_target",
        ["tracking.competitor.example"],
        id="tracking",
    ),
]


@pytest.mark.parametrize(("expected", "published", "code", "found"), WRONG_CASES)
def test_each_record_wrong_is_reported_with_what_was_found(
    local_dns: TestDnsServer, expected: Expected, published: Rec, code: str, found: list[str]
) -> None:
    # given the right records everywhere else, and a wrong one here
    publish_all_except(local_dns, expected, extra={expected.name: [published]})

    # when
    verdict = check(expected)

    # then
    assert verdict.status == Status.WRONG
    assert codes(verdict) == [code]
    assert verdict.found == found


def test_a_wrong_dmarc_policy_names_the_published_and_the_expected_one(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({"_dmarc.example.com": [txt("v=DMARC1; p=none; rua=mailto:dmarc@example.com")]})

    verdict = check(DMARC)

    assert verdict.problems[0].params == {"expected": "quarantine", "found": "none"}
    assert "p=none" in describe(verdict.problems[0].as_json())


def test_ownership_token_of_another_organisation_next_to_ours_is_fine(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({OWNERSHIP.name: [txt("xes-verification=other-org"), txt(OWNERSHIP.value)]})

    assert check(OWNERSHIP).status == Status.OK


def test_ownership_with_only_unrelated_txt_records_is_missing(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({OWNERSHIP.name: [txt("google-site-verification=abc")]})

    assert check(OWNERSHIP).status == Status.MISSING


def test_cname_targets_compare_without_case_and_trailing_dot(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({EASY_DKIM.name: [cname("ABC.DKIM.AmazonSES.com.")]})

    verdict = check_record(Kind.DKIM, EASY_DKIM.name.upper() + ".", "cname", EASY_DKIM.value + ".", domain=DOMAIN)

    assert verdict.status == Status.OK


def test_own_dkim_key_split_by_hand_into_strings_with_spaces_is_ok(local_dns: TestDnsServer) -> None:
    # given the key cut at arbitrary places, as DNS providers' forms do
    value = f"v=DKIM1; k=rsa; p={PUBLIC_KEY[:100]} {PUBLIC_KEY[100:]}"
    local_dns.set_zones({OWN_DKIM.name: [txt([value[:150], value[150:300], value[300:]])]})

    assert check(OWN_DKIM).status == Status.OK


def test_two_dkim_key_records_at_one_name_conflict(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({OWN_DKIM.name: [txt(OWN_DKIM.value), txt(dkim_record_value(OTHER_PUBLIC_KEY))]})

    verdict = check(OWN_DKIM)

    assert verdict.status == Status.CONFLICT
    assert codes(verdict) == ["dkim_multiple"]
    assert len(verdict.found) == 2


@pytest.mark.parametrize(
    ("published", "code"),
    [
        ("v=DKIM1; k=rsa; p", "dkim_unparsable"),
        ("v=DKIM1; k=rsa; p=abc; p=def", "dkim_unparsable"),
        ("k=rsa; v=DKIM1; p=" + PUBLIC_KEY, "dkim_unparsable"),
        ("v=DKIM1; k=rsa", "dkim_unparsable"),
        ("v=DKIM1; k=rsa; p=", "dkim_revoked"),
        ("v=DKIM1; k=ed25519; p=" + PUBLIC_KEY, "dkim_wrong_key_type"),
    ],
)
def test_unusable_dkim_key_records_are_wrong(local_dns: TestDnsServer, published: str, code: str) -> None:
    local_dns.set_zones({OWN_DKIM.name: [txt(published)]})

    verdict = check(OWN_DKIM)

    assert verdict.status == Status.WRONG
    assert code in codes(verdict)


def test_extra_mx_hosts_next_to_the_providers_are_a_warning(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({MAIL_FROM_MX.name: [mx(MAIL_FROM_MX.value, 10), mx("backup.example.com", 20)]})

    verdict = check(MAIL_FROM_MX)

    assert verdict.status == Status.WARNING
    assert verdict.problems[0].params["extra"] == ["backup.example.com"]
    assert verdict.found == ["10 feedback-smtp.eu-west-1.amazonses.com", "20 backup.example.com"]


def test_a_name_that_is_a_cname_to_the_right_txt_is_followed(local_dns: TestDnsServer) -> None:
    # given a DMARC record delegated to a DMARC service by CNAME
    local_dns.set_zones(
        {DMARC.name: [cname("example.com.dmarc.service.test")], "example.com.dmarc.service.test": [txt(DMARC.value)]}
    )

    assert check(DMARC).status == Status.OK


@pytest.mark.parametrize("expected", ALL, ids=IDS)
def test_a_timeout_gives_unknown_not_a_failure(local_dns: TestDnsServer, expected: Expected) -> None:
    # given everything published, but the domain's name servers not answering
    publish_all_except(local_dns)
    local_dns.drop(DOMAIN)

    # when
    verdict = check(expected)

    # then
    assert verdict.status == Status.UNKNOWN
    assert verdict.problems[0].code == "dns_unknown"
    assert verdict.problems[0].params["reason"] == "timeout"
    assert verdict.found == []


@pytest.mark.parametrize("expected", ALL, ids=IDS)
def test_servfail_gives_unknown(local_dns: TestDnsServer, expected: Expected) -> None:
    publish_all_except(local_dns)
    local_dns.servfail(DOMAIN)

    verdict = check(expected)

    assert verdict.status == Status.UNKNOWN
    assert verdict.problems[0].params == {"name": expected.name, "reason": "servfail"}


def test_the_built_in_timeout_and_servfail_zones_misbehave(local_dns: TestDnsServer) -> None:
    timeout = check_record(Kind.TRACKING, "links.timeout.test", "CNAME", "x.test", domain="timeout.test")
    servfail = check_record(Kind.TRACKING, "links.servfail.test", "CNAME", "x.test", domain="servfail.test")

    assert (timeout.status, timeout.problems[0].params["reason"]) == (Status.UNKNOWN, "timeout")
    assert (servfail.status, servfail.problems[0].params["reason"]) == (Status.UNKNOWN, "servfail")


def test_a_nameserver_nobody_listens_on_gives_unknown(settings: Any) -> None:
    # given a port that was free a moment ago
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.DNS_NAMESERVERS = [f"127.0.0.1:{port}"]
    settings.DNS_TIMEOUT = 0.3

    verdict = check(SPF)

    assert verdict.status == Status.UNKNOWN
    assert verdict.problems[0].params["reason"] in ("no_nameservers", "timeout")


def test_problems_and_found_are_json_serialisable(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({SPF.name: [txt("v=spf1 ~all"), txt("v=spf1 include:amazonses.com -all")]})

    verdict = check(SPF)

    assert json.loads(json.dumps([problem.as_json() for problem in verdict.problems]))[0]["code"] == "spf_multiple"
    assert json.dumps(verdict.found)


def test_an_unknown_kind_is_a_programming_error(local_dns: TestDnsServer) -> None:
    with pytest.raises(ValueError, match="cannot check"):
        check_record("bogus", "example.com", "TXT", "x", domain=DOMAIN)


def test_the_check_asks_the_configured_nameserver(local_dns: TestDnsServer) -> None:
    publish_all_except(local_dns)

    check(MAIL_FROM_MX)

    assert ("mail.example.com", "MX") in local_dns.queries


def test_parse_dkim_tags_removes_folding_whitespace() -> None:
    assert parse_dkim_tags("v=DKIM1;\tk=rsa ; p=AB CD\n EF;") == {"v": "DKIM1", "k": "rsa", "p": "ABCDEF"}


def test_a_txt_value_in_chunks_is_one_record_to_the_checks(local_dns: TestDnsServer) -> None:
    local_dns.set_zones({OWN_DKIM.name: [txt(txt_chunks(OWN_DKIM.value))]})

    assert check(OWN_DKIM).status == Status.OK


# The resolver


@pytest.mark.parametrize(
    ("entry", "address", "port"),
    [
        ("192.0.2.1", "192.0.2.1", 53),
        ("127.0.0.1:5353", "127.0.0.1", 5353),
        ("[::1]:5300", "::1", 5300),
        ("::1", "::1", 53),
    ],
)
def test_nameserver_entries_are_read(entry: str, address: str, port: int) -> None:
    nameserver = parse_nameserver(entry)

    assert (nameserver.address, nameserver.port) == (address, port)


@pytest.mark.parametrize("entry", ["dns.example.com", "127.0.0.1:0", "127.0.0.1:abc", "[::1]x"])
def test_bad_nameserver_entries_are_a_configuration_error(entry: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        parse_nameserver(entry)


def test_the_resolver_uses_the_settings_and_no_cache(settings: Any) -> None:
    settings.DNS_NAMESERVERS = ["127.0.0.1:5399", "192.0.2.53"]
    settings.DNS_TIMEOUT = 1.5

    resolver = make_resolver()

    assert [(ns.address, ns.port) for ns in resolver.nameservers] == [("127.0.0.1", 5399), ("192.0.2.53", 53)]  # type: ignore[union-attr]
    assert resolver.lifetime == 1.5
    assert resolver.cache is None


def test_without_nameservers_the_system_resolver_is_used(settings: Any) -> None:
    settings.DNS_NAMESERVERS = []
    settings.DNS_TIMEOUT = 2.0

    resolver = make_resolver()

    assert isinstance(resolver, dns.resolver.Resolver)
    assert resolver.lifetime == 2.0
    assert resolver.cache is None
