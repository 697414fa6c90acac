"""The records the wizard generates: DKIM keys (2048-bit, readable by dkimpy, signatures verify),
SPF and DMARC records (accepted by the independent parser checkdmarc, and by our own checks)."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import checkdmarc.utils
import dkim
import dkim.crypto
import dkim.util
import dns.resolver
import pytest
from checkdmarc.dmarc import parse_dmarc_record
from checkdmarc.spf import parse_spf_record
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from deliverability.dns.checks import check_record
from deliverability.dns.core import txt_texts
from deliverability.models import DnsRecord
from deliverability.records import (
    dkim_record_value,
    dmarc_record,
    generate_dkim_keypair,
    merged_spf,
    spf_record,
    txt_chunks,
)
from tests.deliverability.dns_server import STUB_SPF, TestDnsServer, mx, txt

Kind = DnsRecord.Kind
Status = DnsRecord.Status

MESSAGE = (
    b"From: Agency <news@example.com>\r\n"
    b"To: reader@example.net\r\n"
    b"Subject: Spring offers\r\n"
    b"Date: Tue, 03 Mar 2026 10:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello!\r\n"
)


@pytest.fixture(autouse=True)
def _no_checkdmarc_cache() -> Iterator[None]:
    """checkdmarc caches answers process-wide; tests publish different zones under the same names."""
    checkdmarc.utils.DNS_CACHE.clear()
    yield
    checkdmarc.utils.DNS_CACHE.clear()


@pytest.fixture(scope="module")
def keypair() -> tuple[str, str]:
    return generate_dkim_keypair()


# DKIM


def test_generated_dkim_keys_are_rsa_2048(keypair: tuple[str, str]) -> None:
    private_pem, public_b64 = keypair

    private_key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    public_key = serialization.load_der_public_key(base64.b64decode(public_b64))

    assert isinstance(private_key, rsa.RSAPrivateKey)
    assert private_key.key_size == 2048
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.public_numbers() == private_key.public_key().public_numbers()


def test_each_generated_key_is_new() -> None:
    assert generate_dkim_keypair()[1] != generate_dkim_keypair()[1]


def test_the_published_dkim_value_parses_with_dkimpy(keypair: tuple[str, str]) -> None:
    _private_pem, public_b64 = keypair

    tags = dkim.util.parse_tag_value(dkim_record_value(public_b64).encode())
    public_key = dkim.crypto.parse_public_key(base64.b64decode(tags[b"p"]))

    assert tags[b"v"] == b"DKIM1"
    assert tags[b"k"] == b"rsa"
    assert public_key["modulus"].bit_length() == 2048


def test_a_message_signed_with_the_private_key_verifies_against_the_published_record(
    local_dns: TestDnsServer, resolver: dns.resolver.Resolver, keypair: tuple[str, str]
) -> None:
    # given the record published in 255-byte chunks on the local DNS server
    private_pem, public_b64 = keypair
    value = dkim_record_value(public_b64)
    local_dns.set_zones({"xes1._domainkey.example.com": [txt(txt_chunks(value))]})

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return "".join(txt_texts(resolver, name.decode())).encode()

    # when
    signature = dkim.sign(MESSAGE, b"xes1", b"example.com", private_pem.encode())

    # then dkimpy verifies it with the key it fetched from DNS, and our check agrees
    assert dkim.verify(signature + MESSAGE, dnsfunc=dnsfunc)
    assert not dkim.verify(signature + MESSAGE.replace(b"Hello", b"Hallo"), dnsfunc=dnsfunc)
    verdict = check_record(Kind.DKIM, "xes1._domainkey.example.com", "TXT", value, domain="example.com")
    assert verdict.status == Status.OK


def test_txt_chunks_fit_dns_and_join_to_the_value(keypair: tuple[str, str]) -> None:
    value = dkim_record_value(keypair[1])

    chunks = txt_chunks(value)

    assert len(chunks) == 2
    assert all(len(chunk.encode()) <= 255 for chunk in chunks)
    assert "".join(chunks) == value


def test_txt_chunks_of_short_and_empty_values() -> None:
    assert txt_chunks("v=spf1 -all") == ["v=spf1 -all"]
    assert txt_chunks("") == [""]
    assert txt_chunks("x" * 510) == ["x" * 255, "x" * 255]


def test_txt_chunks_never_cut_a_character() -> None:
    value = "ä" * 200  # two bytes each

    chunks = txt_chunks(value)

    assert [len(chunk.encode()) for chunk in chunks] == [254, 146]
    assert "".join(chunks) == value


# SPF


@pytest.fixture
def spf_zones(local_dns: TestDnsServer) -> TestDnsServer:
    local_dns.set_zones(
        {
            "amazonses.com": [txt(STUB_SPF)],
            "_spf.google.com": [txt("v=spf1 ip4:198.51.100.0/24 ~all")],
            "mailgun.org": [txt("v=spf1 ip4:203.0.113.0/24 ~all")],
            "example.com": [mx("mx.example.com")],
            "mx.example.com": [],
        }
    )
    return local_dns


def accepted_by_checkdmarc(record: str, resolver: dns.resolver.Resolver) -> dict:
    """checkdmarc's parse of an SPF record (it raises for anything it does not accept)."""
    result = parse_spf_record(record, "example.com", resolver=resolver)
    assert result["warnings"] == []
    return dict(result)


@pytest.mark.parametrize(
    ("includes", "qualifier", "expected"),
    [
        (["amazonses.com"], "~", "v=spf1 include:amazonses.com ~all"),
        (
            ["amazonses.com", "_spf.google.com", "AmazonSES.com."],
            "-",
            "v=spf1 include:amazonses.com include:_spf.google.com -all",
        ),
        ([], "~", "v=spf1 ~all"),
    ],
)
def test_generated_spf_records_are_accepted_by_checkdmarc(
    spf_zones: TestDnsServer, resolver: dns.resolver.Resolver, includes: list[str], qualifier: str, expected: str
) -> None:
    record = spf_record(includes, qualifier)

    result = accepted_by_checkdmarc(record, resolver)

    assert record == expected
    assert result["dns_lookups"] == expected.count("include:")


def test_spf_record_refuses_plus_all() -> None:
    with pytest.raises(ValueError, match="qualifier"):
        spf_record(["amazonses.com"], "+")


@pytest.mark.parametrize(
    ("existing", "merged"),
    [
        (None, "v=spf1 include:amazonses.com ~all"),
        ("", "v=spf1 include:amazonses.com ~all"),
        ("google-site-verification=abc", "v=spf1 include:amazonses.com ~all"),
        ("v=spf1 include:_spf.google.com ~all", "v=spf1 include:_spf.google.com include:amazonses.com ~all"),
        ("v=spf1  mx ip4:192.0.2.1 -all", "v=spf1 mx ip4:192.0.2.1 include:amazonses.com -all"),
        ("v=spf1 include:amazonses.com -all", "v=spf1 include:amazonses.com -all"),
        ("v=spf1 include:_spf.google.com", "v=spf1 include:_spf.google.com include:amazonses.com"),
        ("v=spf1 mx redirect=_spf.google.com", "v=spf1 mx include:amazonses.com redirect=_spf.google.com"),
        ("v=spf1 include:mailgun.org +all", "v=spf1 include:mailgun.org include:amazonses.com ~all"),
        ("v=spf1 include:mailgun.org all", "v=spf1 include:mailgun.org include:amazonses.com ~all"),
    ],
)
def test_merged_spf_keeps_what_is_there_and_adds_the_include_before_all(
    spf_zones: TestDnsServer, resolver: dns.resolver.Resolver, existing: str | None, merged: str
) -> None:
    record = merged_spf(existing, "amazonses.com")

    assert record == merged
    parse_spf_record(record, "example.com", resolver=resolver)  # raises when checkdmarc rejects it


def test_merged_spf_passes_our_own_check(spf_zones: TestDnsServer) -> None:
    record = merged_spf("v=spf1 include:_spf.google.com include:mailgun.org mx -all", "amazonses.com")
    spf_zones.add("example.com", txt(record))

    verdict = check_record(Kind.SPF, "example.com", "TXT", spf_record(["amazonses.com"]), domain="example.com")

    assert verdict.status == Status.OK, verdict.problems


# DMARC


@pytest.fixture
def dmarc_zones(local_dns: TestDnsServer) -> TestDnsServer:
    local_dns.set_zones(
        {
            "example.com": [mx("mx.example.com")],
            "dmarc-service.test": [mx("in.dmarc-service.test")],
            "example.com._report._dmarc.dmarc-service.test": [txt("v=DMARC1")],
        }
    )
    return local_dns


DMARC_CASES = [
    pytest.param(
        {"policy": "none", "rua": ["dmarc@example.com"]}, "v=DMARC1; p=none; rua=mailto:dmarc@example.com", id="none"
    ),
    pytest.param(
        {"policy": "quarantine", "rua": ["mailto:dmarc@example.com"], "subdomain_policy": "reject"},
        "v=DMARC1; p=quarantine; sp=reject; rua=mailto:dmarc@example.com",
        id="quarantine",
    ),
    pytest.param(
        {
            "policy": "reject",
            "rua": ["dmarc@example.com", "reports@dmarc-service.test"],
            "adkim": "s",
            "aspf": "s",
            "fo": "1",
            "ruf": ["forensic@example.com"],
        },
        "v=DMARC1; p=reject; rua=mailto:dmarc@example.com,mailto:reports@dmarc-service.test; "
        "ruf=mailto:forensic@example.com; adkim=s; aspf=s; fo=1",
        id="reject-everything",
    ),
]


@pytest.mark.parametrize(("arguments", "expected"), DMARC_CASES)
def test_generated_dmarc_records_are_accepted_by_checkdmarc(
    dmarc_zones: TestDnsServer, resolver: dns.resolver.Resolver, arguments: dict, expected: str
) -> None:
    record = dmarc_record(**arguments)

    result = parse_dmarc_record(record, "example.com", resolver=resolver)

    assert record == expected
    assert result["tags"]["p"]["value"] == arguments["policy"]
    # checkdmarc's remaining notes are advice about p=none, never about the record's form
    assert all("p tag value of none" in warning for warning in result["warnings"]), result["warnings"]


@pytest.mark.parametrize(("arguments", "expected"), DMARC_CASES)
def test_generated_dmarc_records_pass_our_own_check(dmarc_zones: TestDnsServer, arguments: dict, expected: str) -> None:
    record = dmarc_record(**arguments)
    dmarc_zones.add("_dmarc.example.com", txt(record))

    verdict = check_record(Kind.DMARC, "_dmarc.example.com", "TXT", record, domain="example.com")

    assert verdict.status == Status.OK, verdict.problems


@pytest.mark.parametrize(
    "arguments",
    [{"policy": "block"}, {"policy": "none", "subdomain_policy": "maybe"}, {"policy": "none", "adkim": "x"}],
)
def test_dmarc_record_refuses_invalid_values(arguments: dict) -> None:
    with pytest.raises(ValueError, match="invalid DMARC"):
        dmarc_record(**arguments)
