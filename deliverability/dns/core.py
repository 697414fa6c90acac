"""What every DNS check shares: the result types and the lookups.

A lookup either answers (possibly with nothing: NXDOMAIN and "no records of that type" are
definitive answers) or raises :class:`DnsUnknown` when DNS could not be asked (timeout, SERVFAIL,
no reachable nameserver). Checks let ``DnsUnknown`` propagate so that a single failed lookup turns
the whole verdict into "unknown, will retry" instead of a wrong conclusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
from dns.rdata import Rdata

from deliverability.models import DnsRecord

Status = DnsRecord.Status

# Which status wins when a record has several findings: the first thing to fix comes first.
_RANK: dict[str, int] = {Status.CONFLICT: 4, Status.WRONG: 3, Status.MISSING: 2, Status.WARNING: 1}


@dataclass(frozen=True)
class Problem:
    """One machine-readable finding about a record; :mod:`deliverability.dns.messages` words it."""

    code: str
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "params": dict(self.params)}


@dataclass(frozen=True)
class Finding:
    """A problem together with the status it earns the record on its own."""

    status: str
    problem: Problem


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking one expected record against what DNS publishes."""

    status: str
    problems: list[Problem]
    found: list[str]

    @classmethod
    def from_findings(cls, findings: list[Finding], found: list[str]) -> Verdict:
        """OK without findings, else the status of the most serious finding."""
        if not findings:
            return cls(Status.OK, [], found)
        worst = max(findings, key=lambda finding: _RANK.get(finding.status, 0))
        return cls(worst.status, [finding.problem for finding in findings], found)

    @classmethod
    def unknown(cls, exc: DnsUnknown) -> Verdict:
        return cls(Status.UNKNOWN, [Problem("dns_unknown", {"name": exc.name, "reason": exc.reason})], [])


class DnsUnknown(Exception):
    """DNS gave no usable answer for ``name``; ``reason`` is timeout, servfail, no_nameservers or
    error."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def plain_name(name: str | dns.name.Name) -> str:
    """A domain name as we store and compare it: lower-case, without the trailing dot."""
    return str(name).rstrip(".").lower()


def query(resolver: dns.resolver.Resolver, name: str, rtype: str) -> list[Rdata]:
    """The records of type ``rtype`` at ``name`` (following CNAMEs as resolvers do), ``[]`` when
    the name or the type does not exist. Raises :class:`DnsUnknown` when DNS cannot tell."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException:
        return []  # a name that cannot exist in DNS (empty label, too long) has no records
    try:
        answer = resolver.resolve(qname, rtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.resolver.NoAnswer:
        return []
    except dns.exception.Timeout as exc:
        raise DnsUnknown(plain_name(name), "timeout") from exc
    except dns.resolver.NoNameservers as exc:
        raise DnsUnknown(plain_name(name), _no_nameservers_reason(exc)) from exc
    except dns.exception.DNSException as exc:
        raise DnsUnknown(plain_name(name), "error") from exc
    if answer.rrset is None:
        return []
    return list(answer.rrset)


def _no_nameservers_reason(exc: dns.resolver.NoNameservers) -> str:
    """``servfail`` when a nameserver answered SERVFAIL, else ``no_nameservers`` (unreachable)."""
    for error in exc.kwargs.get("errors") or []:
        if len(error) > 3 and error[3] == dns.rcode.to_text(dns.rcode.SERVFAIL):
            return "servfail"
    return "no_nameservers"


def txt_texts(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The TXT records at ``name``, each one's character-strings joined (as SPF, DKIM and DMARC
    require) and decoded."""
    texts = []
    for rdata in query(resolver, name, "TXT"):
        chunks: tuple[bytes, ...] = rdata.strings  # type: ignore[attr-defined]
        texts.append(b"".join(chunks).decode("utf-8", errors="replace"))
    return texts


def cname_targets(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The CNAME target(s) at ``name``, plain."""
    return [plain_name(rdata.target) for rdata in query(resolver, name, "CNAME")]  # type: ignore[attr-defined]


def mx_hosts(resolver: dns.resolver.Resolver, name: str) -> list[tuple[int, str]]:
    """The MX records at ``name`` as (preference, host), lowest preference first."""
    hosts = [
        (int(rdata.preference), plain_name(rdata.exchange))  # type: ignore[attr-defined]
        for rdata in query(resolver, name, "MX")
    ]
    return sorted(hosts)


def addresses(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The A and AAAA addresses at ``name`` (AAAA asked only when there is no A)."""
    found = [rdata.to_text() for rdata in query(resolver, name, "A")]
    if not found:
        found = [rdata.to_text() for rdata in query(resolver, name, "AAAA")]
    return found
