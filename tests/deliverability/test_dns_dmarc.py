"""DMARC: RFC 7489 and RFC 9989 records, broken ones, policies against the staged rollout and
external report addresses, against the local DNS server."""

from __future__ import annotations

import dns.resolver
import pytest

from deliverability.dns.checks import Verdict, check_record
from deliverability.dns.dmarc import analyse_dmarc, is_external, parse_dmarc_tags, read_dmarc
from deliverability.dns.messages import describe
from deliverability.models import DnsRecord
from tests.deliverability.dns_server import TestDnsServer, mx, txt

Kind = DnsRecord.Kind
Status = DnsRecord.Status

NAME = "_dmarc.example.com"


def check_dmarc(expected: str = "v=DMARC1; p=quarantine") -> Verdict:
    return check_record(Kind.DMARC, NAME, "TXT", expected, domain="example.com")


def publish(server: TestDnsServer, *records: str, **more: list) -> None:
    server.set_zones({NAME: [txt(record) for record in records], "example.com": [mx("mx.example.com")], **more})


def codes(verdict: Verdict) -> list[str]:
    return [problem.code for problem in verdict.problems]


RFC_7489 = (
    "v=DMARC1; p=quarantine; sp=reject; pct=100; rua=mailto:dmarc@example.com; ruf=mailto:forensic@example.com; "
    "adkim=s; aspf=r; fo=1; rf=afrf; ri=86400"
)
RFC_9989 = (
    "v=DMARC1; p=quarantine; sp=reject; np=reject; psd=n; t=n; rua=mailto:dmarc@example.com; adkim=r; aspf=r; fo=0:d"
)


@pytest.mark.parametrize("record", [RFC_7489, RFC_9989], ids=["rfc7489", "rfc9989"])
def test_records_with_either_generations_tags_are_ok(local_dns: TestDnsServer, record: str) -> None:
    publish(local_dns, record)

    verdict = check_dmarc()

    assert verdict.status == Status.OK, verdict.problems
    assert verdict.found == [record]


def test_tags_of_both_generations_are_read(local_dns: TestDnsServer, resolver: dns.resolver.Resolver) -> None:
    publish(local_dns, RFC_9989)

    report = analyse_dmarc(NAME, "example.com", resolver)

    assert report.policy == "quarantine"
    assert (report.tags["np"], report.tags["psd"], report.tags["t"], report.tags["fo"]) == ("reject", "n", "n", "0:d")


def test_a_duplicate_tag_is_wrong(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com; p=reject")

    verdict = check_dmarc()

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].as_json() == {"code": "dmarc_duplicate_tag", "params": {"tag": "p"}}
    assert "tag p appears twice" in describe(verdict.problems[0].as_json())


def test_a_missing_p_is_a_warning(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; rua=mailto:dmarc@example.com")

    verdict = check_dmarc("v=DMARC1; p=none; rua=mailto:dmarc@example.com")

    assert verdict.status == Status.WARNING
    assert verdict.problems[0].as_json() == {"code": "dmarc_missing_p", "params": {"has_rua": True}}


def test_a_missing_p_reads_as_none_against_a_stricter_expectation(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; rua=mailto:dmarc@example.com")

    verdict = check_dmarc("v=DMARC1; p=reject")

    assert verdict.status == Status.WRONG
    assert codes(verdict) == ["dmarc_missing_p", "dmarc_policy_mismatch"]


def test_a_missing_p_without_rua_is_described_as_ignored(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; adkim=s")

    verdict = check_dmarc("v=DMARC1; p=none")

    assert verdict.problems[0].params == {"has_rua": False}
    assert "ignore" in describe(verdict.problems[0].as_json())


@pytest.mark.parametrize(
    ("record", "code", "params"),
    [
        ("p=quarantine; v=DMARC1", "dmarc_version_not_first", {}),
        ("v=DMARC2; p=quarantine", "dmarc_bad_version", {"found": "DMARC2"}),
        ("v=DMARC1; p=block", "dmarc_invalid_value", {"tag": "p", "value": "block"}),
        ("v=DMARC1; p=quarantine; sp=maybe", "dmarc_invalid_value", {"tag": "sp", "value": "maybe"}),
        ("v=DMARC1; p=quarantine; rua", "dmarc_syntax", {"term": "rua"}),
    ],
)
def test_broken_records_are_wrong(local_dns: TestDnsServer, record: str, code: str, params: dict) -> None:
    publish(local_dns, record)

    verdict = check_dmarc()

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].as_json() == {"code": code, "params": params}
    assert verdict.found == [record]


@pytest.mark.parametrize(
    ("record", "code", "params"),
    [
        ("v=DMARC1; p=quarantine; foo=bar", "dmarc_unknown_tag", {"tag": "foo"}),
        ("v=DMARC1; p=quarantine; adkim=x", "dmarc_invalid_value", {"tag": "adkim", "value": "x"}),
        ("v=DMARC1; p=quarantine; pct=50", "dmarc_pct", {"pct": 50}),
        ("v=DMARC1; p=quarantine; t=y", "dmarc_testing", {}),
        (
            "v=DMARC1; p=quarantine; rua=dmarc@example.com",
            "dmarc_invalid_report_uri",
            {"tag": "rua", "uri": "dmarc@example.com"},
        ),
        ("v=DMARC1; p=reject", "dmarc_policy_ahead", {"expected": "quarantine", "found": "reject"}),
    ],
)
def test_questionable_records_are_a_warning(local_dns: TestDnsServer, record: str, code: str, params: dict) -> None:
    publish(local_dns, record)

    verdict = check_dmarc()

    assert verdict.status == Status.WARNING
    assert verdict.problems[0].as_json() == {"code": code, "params": params}


def test_two_dmarc_records_conflict(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; p=quarantine", "v=DMARC1; p=none")

    verdict = check_dmarc()

    assert verdict.status == Status.CONFLICT
    assert codes(verdict) == ["dmarc_multiple"]
    assert len(verdict.found) == 2


def test_unrelated_txt_at_the_dmarc_name_is_missing_dmarc(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 -all")

    assert check_dmarc().status == Status.MISSING


def test_tag_names_and_policy_values_are_case_insensitive(local_dns: TestDnsServer) -> None:
    publish(local_dns, "V=DMARC1; P=Quarantine")

    assert check_dmarc().status == Status.OK


def test_a_weaker_policy_than_the_rollout_step_is_wrong(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; p=none")

    verdict = check_dmarc("v=DMARC1; p=reject")

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].params == {"expected": "reject", "found": "none"}


def test_the_expected_report_address_missing_is_a_warning(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; p=quarantine; rua=mailto:someone@example.com")

    verdict = check_dmarc("v=DMARC1; p=quarantine; rua=mailto:reports@example.com")

    assert verdict.status == Status.WARNING
    assert verdict.problems[0].as_json() == {"code": "dmarc_rua_missing", "params": {"address": "reports@example.com"}}


EXTERNAL = "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com,mailto:reports@dmarc-service.test!10m"


def test_an_external_report_address_without_authorisation_is_a_warning(local_dns: TestDnsServer) -> None:
    publish(local_dns, EXTERNAL)

    verdict = check_dmarc()

    assert verdict.status == Status.WARNING
    assert verdict.problems[0].as_json() == {
        "code": "dmarc_report_not_authorised",
        "params": {
            "address": "reports@dmarc-service.test",
            "report_domain": "dmarc-service.test",
            "record": "example.com._report._dmarc.dmarc-service.test",
        },
    }
    assert "example.com._report._dmarc.dmarc-service.test" in describe(verdict.problems[0].as_json())


def test_an_external_report_address_with_authorisation_is_ok(local_dns: TestDnsServer) -> None:
    publish(local_dns, EXTERNAL, **{"example.com._report._dmarc.dmarc-service.test": [txt("v=DMARC1")]})

    verdict = check_dmarc()

    assert verdict.status == Status.OK
    assert ("example.com._report._dmarc.dmarc-service.test", "TXT") in local_dns.queries


def test_report_addresses_of_the_domain_its_subdomains_and_parents_need_no_authorisation(
    local_dns: TestDnsServer,
) -> None:
    publish(
        local_dns,
        "v=DMARC1; p=quarantine; rua=mailto:a@example.com,mailto:b@reports.example.com; ruf=mailto:c@example.com",
    )

    assert check_dmarc().status == Status.OK
    assert not [query for query in local_dns.queries if "._report._dmarc." in query[0]]
    assert not is_external("example.com", "mail.example.com")


def test_the_authorisation_lookup_timing_out_makes_the_verdict_unknown(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=DMARC1; p=quarantine; rua=mailto:reports@reports.timeout.test")

    verdict = check_dmarc()

    assert verdict.status == Status.UNKNOWN
    assert verdict.problems[0].params["reason"] == "timeout"


def test_parse_keeps_duplicates_and_order() -> None:
    assert parse_dmarc_tags(" v=DMARC1 ;P=none; p=reject;") == [("v", "DMARC1"), ("p", "none"), ("p", "reject")]


def test_read_dmarc_keeps_the_first_of_duplicate_tags() -> None:
    tags, findings = read_dmarc("v=DMARC1; p=none; p=reject; p=quarantine")

    assert tags["p"] == "none"
    assert [finding.problem.code for finding in findings] == ["dmarc_duplicate_tag"]
