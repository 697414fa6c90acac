"""Check one expected DNS record (a :class:`~deliverability.models.DnsRecord`) against live DNS.

:func:`check_record` never raises for DNS trouble: a lookup that ends in a timeout, SERVFAIL or no
reachable nameserver gives an ``unknown`` verdict, which callers must not treat as a failure (they
keep the previous status and retry later).
"""

from __future__ import annotations

import re

import dns.resolver

from deliverability.dns.core import (
    DnsUnknown,
    Finding,
    Problem,
    Status,
    Verdict,
    addresses,
    cname_targets,
    mx_hosts,
    plain_name,
    txt_texts,
)
from deliverability.dns.dmarc import POLICY_RANK, analyse_dmarc, read_dmarc, report_address
from deliverability.dns.resolver import make_resolver
from deliverability.dns.spf import analyse_spf, required_includes
from deliverability.models import DnsRecord

__all__ = ["Problem", "Verdict", "check_record", "parse_dkim_tags"]

Kind = DnsRecord.Kind
OWNERSHIP_PREFIX = "xes-verification="

_DKIM_TAG = re.compile(r"^[a-z][a-z0-9_]*$", re.IGNORECASE)


def check_record(
    kind: str,
    name: str,
    rtype: str,
    value: str,
    *,
    domain: str,
    priority: int | None = None,
    resolver: dns.resolver.Resolver | None = None,
) -> Verdict:
    """Look up what DNS publishes at ``name`` and judge it against the expected record.

    ``kind`` is a ``DnsRecord.Kind`` value; ``name``, ``rtype``, ``value`` and ``priority`` are the
    expected record as stored; ``domain`` is the domain's ASCII name (for DMARC report addresses).
    """
    resolver = resolver or make_resolver()
    name = plain_name(name)
    rtype = rtype.upper()
    try:
        if kind == Kind.OWNERSHIP:
            return _check_ownership(resolver, name, value)
        if kind in (Kind.DKIM, Kind.TRACKING) and rtype == "CNAME":
            return _check_cname(resolver, name, value)
        if kind == Kind.DKIM and rtype == "TXT":
            return _check_dkim_key(resolver, name, value)
        if kind == Kind.MAIL_FROM_MX:
            return _check_mx(resolver, name, value, priority)
        if kind in (Kind.SPF, Kind.MAIL_FROM_SPF):
            return _check_spf(resolver, name, value)
        if kind == Kind.DMARC:
            return _check_dmarc(resolver, name, value, domain)
    except DnsUnknown as exc:
        return Verdict.unknown(exc)
    raise ValueError(f"cannot check a {kind} record of type {rtype}")


def _missing(name: str, rtype: str, found: list[str] | None = None) -> Verdict:
    problem = Problem("record_missing", {"name": name, "rtype": rtype})
    return Verdict(Status.MISSING, [problem], found or [])


def _check_ownership(resolver: dns.resolver.Resolver, name: str, value: str) -> Verdict:
    """Our token among the TXT records. Other tokens may sit next to it legitimately (the same
    domain added in another organisation); they only matter when ours is absent."""
    texts = [text.strip() for text in txt_texts(resolver, name)]
    if value.strip() in texts:
        return Verdict(Status.OK, [], [value.strip()])
    tokens = [text for text in texts if text.lower().startswith(OWNERSHIP_PREFIX)]
    if tokens:
        problem = Problem("ownership_wrong", {"name": name, "expected": value, "found": tokens})
        return Verdict(Status.WRONG, [problem], tokens)
    return _missing(name, "TXT")


def _check_cname(resolver: dns.resolver.Resolver, name: str, value: str) -> Verdict:
    """Easy DKIM and branded links: a CNAME to exactly our target."""
    expected = plain_name(value)
    targets = cname_targets(resolver, name)
    if targets:
        if expected in targets:
            return Verdict(Status.OK, [], targets)
        problem = Problem("cname_wrong_target", {"name": name, "expected": expected, "found": targets})
        return Verdict(Status.WRONG, [problem], targets)
    # No CNAME: someone may have published the key or an address instead.
    for rtype, found in (("TXT", txt_texts(resolver, name)), ("A", addresses(resolver, name))):
        if found:
            problem = Problem(
                "cname_other_record", {"name": name, "expected": expected, "found_type": rtype, "found": found}
            )
            return Verdict(Status.WRONG, [problem], found)
    return _missing(name, "CNAME")


def parse_dkim_tags(record: str) -> dict[str, str]:
    """The tags of a DKIM key record (RFC 6376 3.2); whitespace inside values is removed, as it is
    folding. Raises ``ValueError`` for a part that is not ``tag=value`` or a tag given twice."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if not part.strip():
            continue
        tag, equals, tag_value = part.partition("=")
        tag = tag.strip()
        if not equals or not _DKIM_TAG.match(tag):
            raise ValueError(part.strip())
        if tag in tags:
            raise ValueError(tag)
        tags[tag] = "".join(tag_value.split())
    return tags


def _check_dkim_key(resolver: dns.resolver.Resolver, name: str, value: str) -> Verdict:
    """Own key: the published ``p=`` must be our public key, and only one key record may exist."""
    expected = parse_dkim_tags(value)
    texts = [text.strip() for text in txt_texts(resolver, name)]
    if not texts:
        return _missing(name, "TXT")
    if len(texts) > 1:
        problem = Problem("dkim_multiple", {"name": name, "count": len(texts)})
        return Verdict(Status.CONFLICT, [problem], texts)
    try:
        published = parse_dkim_tags(texts[0])
    except ValueError as exc:
        problem = Problem("dkim_unparsable", {"name": name, "term": str(exc)})
        return Verdict(Status.WRONG, [problem], texts)
    findings: list[Finding] = []
    if "v" in published and (published["v"] != "DKIM1" or next(iter(published)) != "v"):
        findings.append(
            Finding(Status.WRONG, Problem("dkim_unparsable", {"name": name, "term": "v=" + published["v"]}))
        )
    key_type, expected_type = published.get("k", "rsa").lower(), expected.get("k", "rsa").lower()
    if key_type != expected_type:
        problem = Problem("dkim_wrong_key_type", {"name": name, "expected": expected_type, "found": key_type})
        findings.append(Finding(Status.WRONG, problem))
    if "p" not in published:
        findings.append(Finding(Status.WRONG, Problem("dkim_unparsable", {"name": name, "term": "p="})))
    elif not published["p"]:
        findings.append(Finding(Status.WRONG, Problem("dkim_revoked", {"name": name})))
    elif published["p"] != expected.get("p"):
        findings.append(Finding(Status.WRONG, Problem("dkim_key_mismatch", {"name": name})))
    return Verdict.from_findings(findings, texts)


def _check_mx(resolver: dns.resolver.Resolver, name: str, value: str, priority: int | None) -> Verdict:
    """Custom MAIL FROM: the provider's MX host, and (as SES needs) nothing else."""
    expected = plain_name(value)
    hosts = mx_hosts(resolver, name)
    found = [f"{preference} {host}" for preference, host in hosts]
    if not hosts:
        return _missing(name, "MX")
    names = [host for _preference, host in hosts]
    if expected not in names:
        problem = Problem("mx_wrong_host", {"name": name, "expected": expected, "found": names})
        return Verdict(Status.WRONG, [problem], found)
    extra = [host for host in names if host != expected]
    if extra:
        problem = Problem("mx_extra_hosts", {"name": name, "expected": expected, "extra": extra})
        return Verdict(Status.WARNING, [problem], found)
    return Verdict(Status.OK, [], found)


def _check_spf(resolver: dns.resolver.Resolver, name: str, value: str) -> Verdict:
    report = analyse_spf(name, resolver)
    if not report.records:
        return _missing(name, "TXT")
    findings = list(report.findings)
    if len(report.records) == 1:
        for include in required_includes(value):
            if include not in report.authorised:
                findings.append(
                    Finding(Status.WRONG, Problem("spf_missing_include", {"name": name, "include": include}))
                )
    return Verdict.from_findings(findings, report.records)


def _check_dmarc(resolver: dns.resolver.Resolver, name: str, value: str, domain: str) -> Verdict:
    report = analyse_dmarc(name, domain, resolver)
    if not report.records:
        return _missing(name, "TXT")
    findings = list(report.findings)
    if len(report.records) == 1 and report.tags:
        findings += _compare_dmarc(report.tags, value)
    return Verdict.from_findings(findings, report.records)


def _compare_dmarc(published: dict[str, str], value: str) -> list[Finding]:
    """The wizard's staged rollout expects a policy: weaker than expected is wrong, stricter is
    only a note (the customer is ahead of the plan, which we should not talk them out of)."""
    expected, _findings = read_dmarc(value)
    findings = []
    want = expected.get("p", "none").lower()
    have = published.get("p", "none").lower()
    if want in POLICY_RANK and have in POLICY_RANK and want != have:
        code, status = (
            ("dmarc_policy_ahead", Status.WARNING)
            if POLICY_RANK[have] > POLICY_RANK[want]
            else ("dmarc_policy_mismatch", Status.WRONG)
        )
        findings.append(Finding(status, Problem(code, {"expected": want, "found": have})))
    published_addresses = {
        (report_address(uri) or "").lower() for uri in published.get("rua", "").split(",") if uri.strip()
    }
    for uri in expected.get("rua", "").split(","):
        address = report_address(uri.strip())
        if address and address.lower() not in published_addresses:
            findings.append(Finding(Status.WARNING, Problem("dmarc_rua_missing", {"address": address})))
    return findings
