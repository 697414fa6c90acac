"""SPF: analyse_spf and the SPF kinds of check_record against the local DNS server."""

from __future__ import annotations

import dns.resolver
import pytest

from deliverability.dns.checks import Verdict, check_record
from deliverability.dns.messages import describe
from deliverability.dns.spf import SpfSyntaxError, analyse_spf, parse_spf, required_includes
from deliverability.models import DnsRecord
from tests.deliverability.dns_server import STUB_SPF, TestDnsServer, a, correct_zone, mx, txt

Kind = DnsRecord.Kind
Status = DnsRecord.Status

SUGGESTED = "v=spf1 include:amazonses.com ~all"


def check_spf(name: str = "example.com", kind: str = Kind.SPF) -> Verdict:
    return check_record(kind, name, "TXT", SUGGESTED, domain="example.com")


def publish(server: TestDnsServer, record: str | list[str], **more: list) -> None:
    """``example.com`` publishing ``record`` (several when a list), ``amazonses.com`` its SPF, and
    the names given in ``more`` (pass dotted names as ``**{"name": [...]}``)."""
    records = [record] if isinstance(record, str) else record
    zones = {"example.com": [txt(text) for text in records], "amazonses.com": [txt(STUB_SPF)]}
    zones.update({name: recs for name, recs in more.items()})
    server.set_zones(zones)


def codes(verdict: Verdict) -> list[str]:
    return [problem.code for problem in verdict.problems]


def test_the_suggested_record_is_ok(local_dns: TestDnsServer) -> None:
    publish(local_dns, SUGGESTED)

    verdict = check_spf()

    assert verdict.status == Status.OK
    assert verdict.found == [SUGGESTED]


def test_an_existing_record_with_our_include_added_is_ok(local_dns: TestDnsServer) -> None:
    record = "v=spf1 ip4:198.51.100.0/24 include:_spf.google.com include:amazonses.com mx -all"
    local_dns.set_zones(correct_zone([("example.com", "TXT", record, None)], {"example.com": [mx("mx.example.com")]}))

    verdict = check_spf()

    assert verdict.status == Status.OK, verdict.problems


def test_two_spf_records_conflict(local_dns: TestDnsServer) -> None:
    publish(local_dns, [SUGGESTED, "v=spf1 include:_spf.google.com ~all"])

    verdict = check_spf()

    assert verdict.status == Status.CONFLICT
    assert codes(verdict) == ["spf_multiple"]
    assert verdict.problems[0].params["count"] == 2
    assert sorted(verdict.found) == sorted([SUGGESTED, "v=spf1 include:_spf.google.com ~all"])
    assert "two" in describe(verdict.problems[0].as_json()) or "2" in describe(verdict.problems[0].as_json())


def test_other_txt_records_next_to_the_spf_record_do_not_count(local_dns: TestDnsServer) -> None:
    publish(local_dns, [SUGGESTED, "google-site-verification=abc", "v=spf10 nonsense"])

    assert check_spf().status == Status.OK


def eleven_lookups_zone(extra_include: bool) -> dict:
    """example.com needing 10 lookups (or 11 with ``extra_include``), spread over nested includes.

    top: include _spf1, include _spf2, mx, a                          -> 4
    _spf1: include x1, include x2, include amazonses.com, ip4         -> 3 (7)
    _spf2: include x3, a:host.example.net, exists:%{i}._spf.example.net -> 3 (10)
    x3: include x4 when ``extra_include``                            -> 1 (11)
    """
    return {
        "example.com": [
            txt("v=spf1 include:_spf1.example.net include:_spf2.example.net mx a ~all"),
            mx("mx.example.com"),
            a("192.0.2.1"),
        ],
        "_spf1.example.net": [
            txt("v=spf1 include:x1.example.net include:x2.example.net include:amazonses.com ip4:192.0.2.0/24 -all")
        ],
        "_spf2.example.net": [
            txt("v=spf1 include:x3.example.net a:host.example.net exists:%{i}._spf.example.net -all")
        ],
        "host.example.net": [a("192.0.2.2")],
        "x1.example.net": [txt(STUB_SPF)],
        "x2.example.net": [txt(STUB_SPF)],
        "x3.example.net": [txt("v=spf1 include:x4.example.net -all" if extra_include else STUB_SPF)],
        "x4.example.net": [txt(STUB_SPF)],
        "amazonses.com": [txt(STUB_SPF)],
    }


def test_eleven_lookups_are_too_many(local_dns: TestDnsServer, resolver: dns.resolver.Resolver) -> None:
    # given
    local_dns.set_zones(eleven_lookups_zone(extra_include=True))

    # when
    report = analyse_spf("example.com", resolver)
    verdict = check_spf()

    # then
    assert report.lookups == 11
    assert verdict.status == Status.WRONG
    assert codes(verdict) == ["spf_too_many_lookups"]
    assert verdict.problems[0].params == {"name": "example.com", "count": 11, "limit": 10}
    assert "11 of 10" in describe(verdict.problems[0].as_json())


def test_ten_lookups_are_allowed(local_dns: TestDnsServer, resolver: dns.resolver.Resolver) -> None:
    local_dns.set_zones(eleven_lookups_zone(extra_include=False))

    report = analyse_spf("example.com", resolver)

    assert report.lookups == 10
    assert check_spf().status == Status.OK


def test_includes_are_authorised_through_nesting(local_dns: TestDnsServer, resolver: dns.resolver.Resolver) -> None:
    local_dns.set_zones(eleven_lookups_zone(extra_include=False))

    report = analyse_spf("example.com", resolver)

    assert {"_spf1.example.net", "amazonses.com", "x3.example.net"} <= report.authorised


@pytest.mark.parametrize("record", ["v=spf1 include:amazonses.com +all", "v=spf1 include:amazonses.com all"])
def test_plus_all_is_wrong(local_dns: TestDnsServer, record: str) -> None:
    publish(local_dns, record)

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert codes(verdict) == ["spf_plus_all"]
    assert "+all" in describe(verdict.problems[0].as_json())


def test_plus_all_in_an_included_record_is_wrong_too(local_dns: TestDnsServer) -> None:
    publish(
        local_dns,
        "v=spf1 include:amazonses.com include:lax.example.net -all",
        **{"lax.example.net": [txt("v=spf1 +all")]},
    )

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].as_json() == {"code": "spf_plus_all", "params": {"name": "lax.example.net"}}


@pytest.mark.parametrize(
    ("record", "code"),
    [("v=spf1 include:amazonses.com ?all", "spf_neutral_all"), ("v=spf1 include:amazonses.com", "spf_no_all")],
)
def test_neutral_or_no_all_is_a_warning(local_dns: TestDnsServer, record: str, code: str) -> None:
    publish(local_dns, record)

    verdict = check_spf()

    assert verdict.status == Status.WARNING
    assert codes(verdict) == [code]


def test_a_redirect_counts_and_authorises_its_target(local_dns: TestDnsServer, resolver: dns.resolver.Resolver) -> None:
    publish(local_dns, "v=spf1 redirect=_spf.example.com", **{"_spf.example.com": [txt(SUGGESTED)]})

    report = analyse_spf("example.com", resolver)

    assert report.lookups == 2
    assert check_spf().status == Status.OK


def test_a_redirect_is_ignored_when_the_record_has_all(
    local_dns: TestDnsServer, resolver: dns.resolver.Resolver
) -> None:
    publish(local_dns, "v=spf1 -all redirect=_spf.example.com", **{"_spf.example.com": [txt(SUGGESTED)]})

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert codes(verdict) == ["spf_missing_include"]
    assert analyse_spf("example.com", resolver).lookups == 0


def test_a_missing_include_is_wrong_and_named(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 include:_spf.google.com ~all", **{"_spf.google.com": [txt(STUB_SPF)]})

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].params == {"name": "example.com", "include": "amazonses.com"}
    assert "include:amazonses.com" in describe(verdict.problems[0].as_json())


@pytest.mark.parametrize(
    "term",
    [
        "ip4:300.1.1.1",
        "inclde:amazonses.com",
        "include:",
        "ip6:zz::1",
        "a:example.com/33",
        "ip4:2001:db8::1",
        "all:foo",
        "include:bad..name",
        "redirect=%{z}.example.com",
    ],
)
def test_a_syntax_error_is_wrong_and_names_the_bad_term(local_dns: TestDnsServer, term: str) -> None:
    publish(local_dns, f"v=spf1 include:amazonses.com {term} ~all")

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].as_json() == {"code": "spf_syntax", "params": {"name": "example.com", "term": term}}
    assert term in describe(verdict.problems[0].as_json())


def test_two_redirects_are_a_syntax_error() -> None:
    with pytest.raises(SpfSyntaxError) as excinfo:
        parse_spf("v=spf1 redirect=a.example.com redirect=b.example.com")

    assert excinfo.value.term == "redirect=b.example.com"


def test_valid_terms_parse() -> None:
    terms = parse_spf(
        "v=spf1 +a -mx:mail.example.com/24//64 ~ptr ?exists:%{ir}.%{l1r+-}._spf.%{d} ip4:192.0.2.1 "
        "ip6:2001:db8::/32 a/24 include:example.net exp=explain.%{d} custom=anything -all"
    )

    assert [(term.qualifier, term.name) for term in terms if not term.modifier] == [
        ("+", "a"),
        ("-", "mx"),
        ("~", "ptr"),
        ("?", "exists"),
        ("+", "ip4"),
        ("+", "ip6"),
        ("+", "a"),
        ("+", "include"),
        ("-", "all"),
    ]
    assert [term.name for term in terms if term.modifier] == ["exp", "custom"]


def test_a_nested_include_without_spf_is_wrong(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 include:amazonses.com include:gone.example.net ~all")

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert verdict.problems[0].as_json() == {
        "code": "spf_include_without_spf",
        "params": {"name": "example.com", "target": "gone.example.net"},
    }


def test_a_redirect_without_spf_is_wrong(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 redirect=gone.example.net")

    assert "spf_redirect_without_spf" in codes(check_spf())


def test_an_include_target_with_two_spf_records_is_wrong(local_dns: TestDnsServer) -> None:
    publish(
        local_dns,
        SUGGESTED.replace("~all", "include:two.example.net ~all"),
        **{"two.example.net": [txt(STUB_SPF), txt("v=spf1 -all")]},
    )

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert codes(verdict) == ["spf_target_multiple"]


def test_an_include_loop_is_wrong(local_dns: TestDnsServer) -> None:
    publish(
        local_dns,
        "v=spf1 include:amazonses.com include:loop1.example.net ~all",
        **{
            "loop1.example.net": [txt("v=spf1 include:loop2.example.net -all")],
            "loop2.example.net": [txt("v=spf1 include:loop1.example.net -all")],
        },
    )

    verdict = check_spf()

    assert verdict.status == Status.WRONG
    assert "spf_loop" in codes(verdict)


def test_more_than_two_void_lookups_are_a_warning(local_dns: TestDnsServer, resolver: dns.resolver.Resolver) -> None:
    publish(local_dns, "v=spf1 a:gone1.example.com a:gone2.example.com mx:gone3.example.com include:amazonses.com ~all")

    report = analyse_spf("example.com", resolver)
    verdict = check_spf()

    assert report.void_lookups == 3
    assert verdict.status == Status.WARNING
    assert verdict.problems[0].params == {"name": "example.com", "count": 3, "limit": 2}


def test_two_void_lookups_are_tolerated(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 a:gone1.example.com mx:gone2.example.com include:amazonses.com ~all")

    assert check_spf().status == Status.OK


def test_ptr_is_a_warning(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 ptr include:amazonses.com ~all")

    assert codes(check_spf()) == ["spf_ptr"]


def test_terms_after_all_are_a_warning_and_not_counted(
    local_dns: TestDnsServer, resolver: dns.resolver.Resolver
) -> None:
    publish(local_dns, "v=spf1 include:amazonses.com ~all include:other.example.net")

    verdict = check_spf()

    assert verdict.status == Status.WARNING
    assert verdict.problems[0].params["terms"] == ["include:other.example.net"]
    assert analyse_spf("example.com", resolver).lookups == 1


def test_no_spf_record_is_missing(local_dns: TestDnsServer) -> None:
    publish(local_dns, "google-site-verification=abc")

    assert check_spf().status == Status.MISSING


def test_mail_from_spf_is_checked_at_its_own_name(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 -all", **{"mail.example.com": [txt(SUGGESTED)]})

    assert check_spf("mail.example.com", Kind.MAIL_FROM_SPF).status == Status.OK
    assert check_spf("example.com", Kind.SPF).status == Status.WRONG


def test_a_nested_include_that_times_out_makes_the_verdict_unknown(local_dns: TestDnsServer) -> None:
    publish(local_dns, "v=spf1 include:amazonses.com include:spf.timeout.test ~all")

    verdict = check_spf()

    assert verdict.status == Status.UNKNOWN
    assert verdict.problems[0].params == {"name": "spf.timeout.test", "reason": "timeout"}


def test_required_includes_come_from_the_suggested_record() -> None:
    assert required_includes("v=spf1 include:amazonses.com include:_spf.Example.net. ~all") == [
        "amazonses.com",
        "_spf.example.net",
    ]
