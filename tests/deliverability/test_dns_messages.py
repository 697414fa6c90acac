"""describe(): every problem code the checks can store has a plain-words message with its details."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.utils import translation

from deliverability.dns import messages
from deliverability.dns.messages import MESSAGES, STATUS_HELP, describe, status_help
from deliverability.models import DnsRecord

# code -> (params as the checks store them, texts the sentence must contain)
SAMPLES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "dns_unknown": ({"name": "example.com", "reason": "error"}, ["example.com"]),
    "record_missing": ({"name": "_dmarc.example.com", "rtype": "TXT"}, ["_dmarc.example.com", "TXT"]),
    "ownership_wrong": (
        {"name": "_xes.example.com", "expected": "xes-verification=a", "found": ["xes-verification=b"]},
        ["_xes.example.com", "xes-verification=a", "xes-verification=b"],
    ),
    "cname_wrong_target": (
        {"name": "s._domainkey.example.com", "expected": "s.dkim.amazonses.com", "found": ["x.example.net"]},
        ["s._domainkey.example.com", "s.dkim.amazonses.com", "x.example.net"],
    ),
    "cname_other_record": (
        {"name": "links.example.com", "expected": "track.test", "found_type": "A", "found": ["192.0.2.1"]},
        ["links.example.com", "track.test", "192.0.2.1", "A record"],
    ),
    "dkim_multiple": ({"name": "s._domainkey.example.com", "count": 2}, ["s._domainkey.example.com", "2"]),
    "dkim_unparsable": ({"name": "s._domainkey.example.com", "term": "p"}, ["s._domainkey.example.com", "“p”"]),
    "dkim_wrong_key_type": (
        {"name": "s._domainkey.example.com", "expected": "rsa", "found": "ed25519"},
        ["rsa", "ed25519"],
    ),
    "dkim_revoked": ({"name": "s._domainkey.example.com"}, ["s._domainkey.example.com"]),
    "dkim_key_mismatch": ({"name": "s._domainkey.example.com"}, ["s._domainkey.example.com"]),
    "mx_wrong_host": (
        {"name": "mail.example.com", "expected": "feedback-smtp.test", "found": ["mx1.test", "mx2.test"]},
        ["mail.example.com", "feedback-smtp.test", "mx1.test, mx2.test"],
    ),
    "mx_extra_hosts": (
        {"name": "mail.example.com", "expected": "feedback-smtp.test", "extra": ["backup.test"]},
        ["feedback-smtp.test", "backup.test"],
    ),
    "spf_multiple": ({"name": "example.com", "count": 2, "records": ["v=spf1 -all", "v=spf1 ~all"]}, ["2", "Merge"]),
    "spf_too_many_lookups": ({"name": "example.com", "count": 11, "limit": 10}, ["11 of 10"]),
    "spf_too_many_void_lookups": ({"name": "example.com", "count": 3, "limit": 2}, ["3", "2"]),
    "spf_syntax": ({"name": "example.com", "term": "ip4:300.1.1.1"}, ["ip4:300.1.1.1"]),
    "spf_terms_after_all": ({"name": "example.com", "terms": ["a", "mx"]}, ["a, mx"]),
    "spf_no_all": ({"name": "example.com"}, ["example.com", "~all"]),
    "spf_plus_all": ({"name": "example.com"}, ["+all", "~all"]),
    "spf_neutral_all": ({"name": "example.com"}, ["?all"]),
    "spf_ptr": ({"name": "example.com"}, ["ptr"]),
    "spf_loop": ({"name": "example.com", "target": "loop.test"}, ["loop.test"]),
    "spf_include_without_spf": ({"name": "example.com", "target": "gone.test"}, ["gone.test"]),
    "spf_redirect_without_spf": ({"name": "example.com", "target": "gone.test"}, ["gone.test"]),
    "spf_target_multiple": ({"name": "example.com", "target": "two.test", "count": 2}, ["two.test", "2"]),
    "spf_missing_include": ({"name": "example.com", "include": "amazonses.com"}, ["include:amazonses.com"]),
    "dmarc_multiple": ({"name": "_dmarc.example.com", "count": 2, "records": []}, ["_dmarc.example.com", "2"]),
    "dmarc_syntax": ({"term": "rua"}, ["“rua”"]),
    "dmarc_duplicate_tag": ({"tag": "p"}, ["the tag p appears twice"]),
    "dmarc_version_not_first": ({}, ["v=DMARC1"]),
    "dmarc_bad_version": ({"found": "DMARC2"}, ["v=DMARC2"]),
    "dmarc_unknown_tag": ({"tag": "foo"}, ["“foo”"]),
    "dmarc_missing_p": ({"has_rua": True}, ["p=none"]),
    "dmarc_invalid_value": ({"tag": "adkim", "value": "x"}, ["adkim=x"]),
    "dmarc_pct": ({"pct": 50}, ["50%", "pct=50"]),
    "dmarc_testing": ({}, ["t=y"]),
    "dmarc_invalid_report_uri": ({"tag": "rua", "uri": "dmarc@example.com"}, ["dmarc@example.com", "rua="]),
    "dmarc_report_not_authorised": (
        {"address": "r@svc.test", "report_domain": "svc.test", "record": "example.com._report._dmarc.svc.test"},
        ["r@svc.test", "example.com._report._dmarc.svc.test", "v=DMARC1"],
    ),
    "dmarc_policy_mismatch": ({"expected": "quarantine", "found": "none"}, ["p=none", "p=quarantine"]),
    "dmarc_policy_ahead": ({"expected": "none", "found": "reject"}, ["p=reject", "p=none"]),
    "dmarc_rua_missing": ({"address": "reports@example.com"}, ["reports@example.com"]),
}


def test_every_message_has_a_sample() -> None:
    assert set(SAMPLES) == set(MESSAGES)


def codes_in_source() -> set[str]:
    """The problem codes written in the checks' source (string literals that look like codes)."""
    package = Path(messages.__file__).parent
    source = "".join(path.read_text() for path in package.glob("*.py") if path.name != "messages.py")
    found = set(re.findall(r'"((?:dns|record|ownership|cname|dkim|mx|spf|dmarc)_[a-z_]+)"', source))
    found |= {f"spf_{via}_without_spf" for via in ("include", "redirect")}  # built with an f-string
    return found


def test_every_code_the_checks_can_store_has_a_message() -> None:
    codes = codes_in_source()

    assert len(codes) > 30  # the scan finds the codes at all
    assert codes <= set(MESSAGES)


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_each_code_is_described_with_its_details(code: str) -> None:
    params, expected = SAMPLES[code]

    text = describe({"code": code, "params": params})

    assert "%(" not in text
    for part in expected:
        assert part in text


@pytest.mark.parametrize("reason", ["timeout", "servfail", "no_nameservers", "error", "something-new"])
def test_unknown_lookups_explain_the_reason(reason: str) -> None:
    text = describe({"code": "dns_unknown", "params": {"name": "example.com", "reason": reason}})

    assert "example.com" in text
    assert "again" in text


def test_reasons_get_their_own_sentences() -> None:
    timeout = describe({"code": "dns_unknown", "params": {"name": "example.com", "reason": "timeout"}})
    servfail = describe({"code": "dns_unknown", "params": {"name": "example.com", "reason": "servfail"}})

    assert "in time" in timeout
    assert "SERVFAIL" in servfail


def test_a_missing_p_without_report_address_has_its_own_sentence() -> None:
    with_rua = describe({"code": "dmarc_missing_p", "params": {"has_rua": True}})
    without_rua = describe({"code": "dmarc_missing_p", "params": {"has_rua": False}})

    assert with_rua != without_rua


def test_an_unknown_code_gets_a_generic_message() -> None:
    text = describe({"code": "from_the_future", "params": {"x": 1}})

    assert "from_the_future" in text


def test_missing_params_do_not_break_the_message() -> None:
    assert "example.com" in describe({"code": "spf_loop", "params": {"name": "example.com"}})
    assert describe({"code": "record_missing"})


def test_messages_are_translated_when_shown() -> None:
    # given the active language switches after import, describe() follows it
    with translation.override("de"):
        german = describe({"code": "record_missing", "params": {"name": "example.com", "rtype": "TXT"}})
    english = describe({"code": "record_missing", "params": {"name": "example.com", "rtype": "TXT"}})

    assert "example.com" in german
    assert "There is no TXT record" in english


def test_every_status_has_help() -> None:
    assert set(STATUS_HELP) == set(DnsRecord.Status.values)
    assert status_help(DnsRecord.Status.UNKNOWN)
    assert status_help("nonsense") == ""
