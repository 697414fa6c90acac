"""SPF analysis (RFC 7208) of what a domain publishes: the record, its syntax, the DNS lookups a
receiver needs to evaluate it (limit 10, void lookups limit 2), the ``all`` policy and which
``include:`` targets it authorises, directly or through nested includes and redirects.

This does not evaluate SPF for a sender IP; it answers "will receivers accept this record and does
it authorise our provider?".
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import dns.resolver

from deliverability.dns.core import Finding, Problem, Status, plain_name, txt_texts
from deliverability.dns.core import addresses as query_addresses
from deliverability.dns.core import mx_hosts as query_mx_hosts

LOOKUP_LIMIT = 10  # RFC 7208 section 4.6.4
VOID_LOOKUP_LIMIT = 2
# Beyond these we stop following includes: the record is already far over the limit, and a hostile
# record must not make us send hundreds of queries.
MAX_FOLLOWED_LOOKUPS = 30
MAX_DEPTH = 10

MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
QUALIFIERS = "+-~?"

_MACRO = re.compile(r"%\{[slodiphcrtv]\d*r?[.\-+,/_=]*\}|%%|%_|%-", re.IGNORECASE)
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$", re.IGNORECASE)
_MODIFIER = re.compile(r"^([a-z][a-z0-9_.-]*)=(.*)$", re.IGNORECASE)
_MECHANISM_NAME = re.compile(r"^([a-z][a-z0-9_.-]*)(.*)$", re.IGNORECASE)
_DUAL_CIDR = re.compile(r"^(?::(?P<spec>[^/]+))?(?:/(?P<cidr4>\d{1,2}))?(?://(?P<cidr6>\d{1,3}))?$")


class SpfSyntaxError(ValueError):
    """``term`` of an SPF record cannot be read (receivers answer "permerror" to the whole record)."""

    def __init__(self, term: str) -> None:
        super().__init__(term)
        self.term = term


@dataclass(frozen=True)
class SpfTerm:
    """One term of an SPF record: a mechanism (with its qualifier) or a modifier."""

    text: str
    name: str  # lower-case mechanism or modifier name
    qualifier: str = ""  # "+", "-", "~" or "?" for mechanisms, "" for modifiers
    spec: str = ""  # the domain-spec or address argument, "" when absent
    modifier: bool = False

    @property
    def has_macro(self) -> bool:
        return "%" in self.spec

    @property
    def target(self) -> str:
        return plain_name(self.spec)


def is_spf_record(text: str) -> bool:
    """Whether a TXT string is an SPF record: ``v=spf1`` then a space or nothing (RFC 7208 4.5)."""
    lowered = text.strip().lower()
    return lowered == "v=spf1" or lowered.startswith("v=spf1 ")


def parse_spf(record: str) -> list[SpfTerm]:
    """The terms of an SPF record. Raises :class:`SpfSyntaxError` naming the first bad term."""
    words = record.split()
    if not words or words[0].lower() != "v=spf1":
        raise SpfSyntaxError(words[0] if words else record)
    terms = []
    seen_modifiers: set[str] = set()
    for word in words[1:]:
        term = _parse_term(word)
        if term.modifier and term.name in ("redirect", "exp"):
            if term.name in seen_modifiers:  # section 6: each may appear at most once
                raise SpfSyntaxError(word)
            seen_modifiers.add(term.name)
        terms.append(term)
    return terms


def _parse_term(word: str) -> SpfTerm:
    modifier = _MODIFIER.match(word)
    if modifier:
        name, value = modifier.group(1).lower(), modifier.group(2)
        if name in ("redirect", "exp") and not _valid_domain_spec(value):
            raise SpfSyntaxError(word)
        if "%" in value and not _macros_valid(value):
            raise SpfSyntaxError(word)
        return SpfTerm(text=word, name=name, spec=value, modifier=True)

    qualifier = word[0] if word[0] in QUALIFIERS else ""
    body = word[1:] if qualifier else word
    match = _MECHANISM_NAME.match(body)
    if not match:
        raise SpfSyntaxError(word)
    name, rest = match.group(1).lower(), match.group(2)
    if name not in MECHANISMS:
        raise SpfSyntaxError(word)
    qualifier = qualifier or "+"
    spec = _mechanism_spec(name, rest)
    if spec is None:
        raise SpfSyntaxError(word)
    return SpfTerm(text=word, name=name, qualifier=qualifier, spec=spec)


def _mechanism_spec(name: str, rest: str) -> str | None:
    """The argument of a mechanism, "" when it has none, ``None`` when ``rest`` is not valid."""
    if name == "all":
        return "" if rest == "" else None
    if name in ("include", "exists"):
        spec = rest[1:] if rest.startswith(":") else ""
        return spec if spec and _valid_domain_spec(spec) else None
    if name == "ptr":
        if rest == "":
            return ""
        spec = rest[1:] if rest.startswith(":") else ""
        return spec if spec and _valid_domain_spec(spec) else None
    if name in ("a", "mx"):
        match = _DUAL_CIDR.match(rest)
        if not match:
            return None
        if match.group("cidr4") and int(match.group("cidr4")) > 32:
            return None
        if match.group("cidr6") and int(match.group("cidr6")) > 128:
            return None
        spec = match.group("spec") or ""
        return spec if not spec or _valid_domain_spec(spec) else None
    # ip4 / ip6
    if not rest.startswith(":"):
        return None
    address = rest[1:]
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return None
    if (name == "ip4") != (network.version == 4):
        return None
    return address


def _macros_valid(text: str) -> bool:
    return "%" not in _MACRO.sub("", text)


def _valid_domain_spec(spec: str) -> bool:
    """RFC 7208 domain-spec: macros allowed; without macros, a name with at least two labels."""
    if not spec or any(not 0x21 <= ord(char) <= 0x7E for char in spec):
        return False
    if "%" in spec:
        return _macros_valid(spec)
    labels = spec.rstrip(".").split(".")
    if len(labels) < 2 or len(spec.rstrip(".")) > 253:
        return False
    if not all(_LABEL.match(label) for label in labels):
        return False
    return not labels[-1].isdigit()


@dataclass(frozen=True)
class SpfReport:
    """What :func:`analyse_spf` found at one domain."""

    domain: str
    records: list[str]  # the SPF records published there (more than one is a conflict)
    lookups: int = 0  # DNS-querying terms, counted through includes and redirects
    void_lookups: int = 0
    authorised: frozenset[str] = frozenset()  # include/redirect targets reached, plain names
    findings: list[Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        return [finding.problem for finding in self.findings]


def spf_records(resolver: dns.resolver.Resolver, domain: str) -> tuple[list[str], bool]:
    """The SPF records at ``domain`` and whether the TXT lookup was void (no TXT at all)."""
    texts = txt_texts(resolver, domain)
    return [text.strip() for text in texts if is_spf_record(text)], not texts


def analyse_spf(domain: str, resolver: dns.resolver.Resolver) -> SpfReport:
    """Fetch and analyse the SPF record of ``domain`` (raises ``DnsUnknown`` when DNS cannot tell).

    1. Exactly one SPF record must exist (none: ``records`` is empty; two or more: conflict).
    2. Walk it like a receiver would: every include/a/mx/ptr/exists/redirect costs one lookup,
       includes and redirects are followed (loops and targets without SPF are errors), lookups
       that find nothing are void.
    3. Judge the totals (over 10 lookups is an error, over 2 void lookups a warning) and the
       ``all`` policy of the record (``+all`` allows the whole internet to send as the domain).
    """
    domain = plain_name(domain)
    records, _void = spf_records(resolver, domain)
    if not records:
        return SpfReport(domain=domain, records=[])
    if len(records) > 1:
        problem = Problem("spf_multiple", {"name": domain, "count": len(records), "records": records})
        return SpfReport(domain=domain, records=records, findings=[Finding(Status.CONFLICT, problem)])

    walk = _Walk(resolver)
    walk.evaluate(domain, records[0], chain=(domain,), top=True)
    findings = walk.findings
    if walk.lookups > LOOKUP_LIMIT:
        problem = Problem("spf_too_many_lookups", {"name": domain, "count": walk.lookups, "limit": LOOKUP_LIMIT})
        findings.insert(0, Finding(Status.WRONG, problem))
    if walk.voids > VOID_LOOKUP_LIMIT:
        problem = Problem(
            "spf_too_many_void_lookups", {"name": domain, "count": walk.voids, "limit": VOID_LOOKUP_LIMIT}
        )
        findings.append(Finding(Status.WARNING, problem))
    return SpfReport(
        domain=domain,
        records=records,
        lookups=walk.lookups,
        void_lookups=walk.voids,
        authorised=frozenset(walk.authorised),
        findings=findings,
    )


class _Walk:
    """The state of one recursive walk through an SPF record and everything it includes."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver
        self.lookups = 0
        self.voids = 0
        self.authorised: set[str] = set()
        self.findings: list[Finding] = []

    def add(self, status: str, code: str, **params: object) -> None:
        problem = Problem(code, dict(params))
        if all(finding.problem != problem for finding in self.findings):
            self.findings.append(Finding(status, problem))

    def evaluate(self, domain: str, record: str, *, chain: tuple[str, ...], top: bool) -> None:
        """Count and follow the terms of ``record`` (published at ``domain``).

        ``top`` is true for the checked domain's own record and for what it redirects to: only
        there does the ``all`` term decide the domain's policy."""
        try:
            terms = parse_spf(record)
        except SpfSyntaxError as exc:
            self.add(Status.WRONG, "spf_syntax", name=domain, term=exc.term)
            return
        mechanisms = [term for term in terms if not term.modifier]
        has_all = any(term.name == "all" for term in mechanisms)
        redirect = next((term for term in terms if term.name == "redirect"), None)

        for index, term in enumerate(mechanisms):
            if term.name == "all":
                self._judge_all(domain, term, top=top)
                ignored = [later.text for later in mechanisms[index + 1 :]]
                if ignored:  # receivers stop at "all"; what follows is dead weight
                    self.add(Status.WARNING, "spf_terms_after_all", name=domain, terms=ignored)
                break
            self._mechanism(domain, term, chain=chain)

        # A redirect only applies when the record has no "all" (RFC 7208 section 6.1).
        if redirect is not None and not has_all:
            self.lookups += 1
            if not redirect.has_macro:
                self._follow(domain, redirect.target, via="redirect", chain=chain, top=top)
        elif top and not has_all:
            self.add(Status.WARNING, "spf_no_all", name=domain)

    def _judge_all(self, domain: str, term: SpfTerm, *, top: bool) -> None:
        if term.qualifier == "+":
            # Nested "+all" is as bad: the include then matches every sender.
            self.add(Status.WRONG, "spf_plus_all", name=domain)
        elif term.qualifier == "?" and top:
            self.add(Status.WARNING, "spf_neutral_all", name=domain)

    def _mechanism(self, domain: str, term: SpfTerm, *, chain: tuple[str, ...]) -> None:
        if term.name in ("ip4", "ip6"):
            return
        self.lookups += 1
        if term.name == "ptr":
            # RFC 7208 5.5: "ptr" SHOULD NOT be used; slow, and many receivers ignore it.
            self.add(Status.WARNING, "spf_ptr", name=domain)
            return
        if term.has_macro or self.lookups > MAX_FOLLOWED_LOOKUPS:
            return  # macros depend on the sender; we cannot resolve them here
        if term.name == "include":
            self._follow(domain, term.target, via="include", chain=chain, top=False)
            return
        # a, mx, exists: a lookup that finds nothing is void
        target = term.target or domain
        found = query_mx_hosts(self.resolver, target) if term.name == "mx" else query_addresses(self.resolver, target)
        if not found:
            self.voids += 1

    def _follow(self, domain: str, target: str, *, via: str, chain: tuple[str, ...], top: bool) -> None:
        """Evaluate the SPF record that an include or redirect points at."""
        self.authorised.add(target)
        if target in chain:
            self.add(Status.WRONG, "spf_loop", name=domain, target=target)
            return
        if len(chain) >= MAX_DEPTH or self.lookups > MAX_FOLLOWED_LOOKUPS:
            return
        records, void = spf_records(self.resolver, target)
        if void:
            self.voids += 1
        if not records:
            self.add(Status.WRONG, f"spf_{via}_without_spf", name=domain, target=target)
            return
        if len(records) > 1:
            self.add(Status.WRONG, "spf_target_multiple", name=domain, target=target, count=len(records))
            return
        self.evaluate(target, records[0], chain=(*chain, target), top=top)


def required_includes(value: str) -> list[str]:
    """The ``include:`` targets of an SPF record we suggest (the ones the published record must
    authorise)."""
    try:
        terms = parse_spf(value)
    except SpfSyntaxError:
        return []
    return [term.target for term in terms if term.name == "include" and not term.has_macro]
