"""DMARC analysis of what a domain publishes at ``_dmarc.<domain>``.

Reads both generations of the specification: RFC 7489 (tags v, p, sp, pct, rua, ruf, adkim,
aspf, fo, rf, ri) and RFC 9989, DMARCbis (v, p, sp, np, psd, t, rua, ruf, adkim, aspf, fo), so a
record written for either is understood, and what only one generation knows is pointed out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import dns.resolver

from deliverability.dns.core import Finding, Problem, Status, plain_name, txt_texts

TAGS_7489 = frozenset({"v", "p", "sp", "pct", "rua", "ruf", "adkim", "aspf", "fo", "rf", "ri"})
TAGS_9989 = frozenset({"v", "p", "sp", "np", "psd", "t", "rua", "ruf", "adkim", "aspf", "fo"})
KNOWN_TAGS = TAGS_7489 | TAGS_9989

POLICIES = ("none", "quarantine", "reject")
# Strictness, for the staged rollout none -> quarantine -> reject.
POLICY_RANK = {policy: rank for rank, policy in enumerate(POLICIES)}

_TAG_NAME = re.compile(r"^[a-z][a-z0-9_]*$", re.IGNORECASE)
_CANDIDATE = re.compile(r"(?:^|;)\s*v\s*=\s*dmarc", re.IGNORECASE)
_LOCAL_PART = re.compile(r"^[^@\s]+@([^@\s]+)$")


class DmarcSyntaxError(ValueError):
    """A part of a DMARC record is not ``tag=value``."""

    def __init__(self, term: str) -> None:
        super().__init__(term)
        self.term = term


def is_dmarc_candidate(text: str) -> bool:
    """Whether a TXT string is meant as a DMARC record (a ``v=DMARC...`` tag anywhere): such a
    record counts even when it is broken, so that we can say what is wrong with it."""
    return bool(_CANDIDATE.search(text.strip()))


def parse_dmarc_tags(record: str) -> list[tuple[str, str]]:
    """The ``(tag, value)`` pairs of a DMARC record in order, tag names lower-case, duplicates kept.

    Raises :class:`DmarcSyntaxError` for a part that is not ``tag=value``."""
    pairs = []
    for part in record.split(";"):
        part = part.strip()
        if not part:
            continue  # "p=none;" ends with an empty part, which is allowed
        name, equals, value = part.partition("=")
        name = name.strip()
        if not equals or not _TAG_NAME.match(name):
            raise DmarcSyntaxError(part)
        pairs.append((name.lower(), value.strip()))
    return pairs


@dataclass(frozen=True)
class DmarcReport:
    """What :func:`analyse_dmarc` found at one ``_dmarc`` name."""

    name: str
    records: list[str]  # DMARC records published there (more than one is a conflict)
    tags: dict[str, str] = field(default_factory=dict)  # of the single record, when readable
    findings: list[Finding] = field(default_factory=list)

    @property
    def policy(self) -> str | None:
        """The published ``p`` (missing ``p`` reads as none under RFC 9989 when rua is given)."""
        return self.tags.get("p", "").lower() or None

    @property
    def problems(self) -> list[Problem]:
        return [finding.problem for finding in self.findings]


def dmarc_records(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    return [text.strip() for text in txt_texts(resolver, name) if is_dmarc_candidate(text)]


def analyse_dmarc(name: str, domain: str, resolver: dns.resolver.Resolver) -> DmarcReport:
    """Fetch and analyse the DMARC record at ``name`` (normally ``_dmarc.<domain>``).

    Raises ``DnsUnknown`` when DNS cannot tell (also for the report-authorisation lookups)."""
    name = plain_name(name)
    records = dmarc_records(resolver, name)
    if not records:
        return DmarcReport(name=name, records=[])
    if len(records) > 1:
        problem = Problem("dmarc_multiple", {"name": name, "count": len(records), "records": records})
        return DmarcReport(name=name, records=records, findings=[Finding(Status.CONFLICT, problem)])
    tags, findings = read_dmarc(records[0])
    findings += _report_authorisation(tags, plain_name(domain), resolver)
    return DmarcReport(name=name, records=records, tags=tags, findings=findings)


def read_dmarc(record: str) -> tuple[dict[str, str], list[Finding]]:
    """Parse and validate one DMARC record without DNS: its tags (first occurrence wins) and
    findings."""
    findings: list[Finding] = []

    def add(status: str, code: str, **params: object) -> None:
        findings.append(Finding(status, Problem(code, dict(params))))

    try:
        pairs = parse_dmarc_tags(record)
    except DmarcSyntaxError as exc:
        add(Status.WRONG, "dmarc_syntax", term=exc.term)
        return {}, findings

    tags: dict[str, str] = {}
    for tag, value in pairs:
        if tag in tags:
            if not any(finding.problem.params.get("tag") == tag for finding in findings):
                add(Status.WRONG, "dmarc_duplicate_tag", tag=tag)
            continue
        tags[tag] = value

    # 1. The version: receivers ignore a record that does not start with v=DMARC1.
    if not pairs or pairs[0][0] != "v":
        add(Status.WRONG, "dmarc_version_not_first")
    if "v" in tags and tags["v"].upper() != "DMARC1":
        add(Status.WRONG, "dmarc_bad_version", found=tags["v"])

    # 2. Unknown tags are ignored by receivers: probably a typo that loses a setting.
    for tag in tags:
        if tag not in KNOWN_TAGS:
            add(Status.WARNING, "dmarc_unknown_tag", tag=tag)

    # 3. The policy.
    if "p" not in tags:
        add(Status.WARNING, "dmarc_missing_p", has_rua="rua" in tags)
    for tag in ("p", "sp", "np"):
        if tag in tags and tags[tag].lower() not in POLICIES:
            add(Status.WRONG, "dmarc_invalid_value", tag=tag, value=tags[tag])

    # 4. The other tags' values; receivers fall back to the default for a bad one.
    for tag, valid in _VALIDATORS.items():
        if tag in tags and not valid(tags[tag].lower()):
            add(Status.WARNING, "dmarc_invalid_value", tag=tag, value=tags[tag])

    # 5. Partial enforcement (7489 pct, 9989 t=y) is worth saying out loud.
    pct = tags.get("pct", "")
    if pct.isdigit() and int(pct) < 100:
        add(Status.WARNING, "dmarc_pct", pct=int(pct))
    if tags.get("t", "").lower() == "y":
        add(Status.WARNING, "dmarc_testing")

    for tag in ("rua", "ruf"):
        for uri in _uris(tags.get(tag, "")):
            if report_address(uri) is None:
                add(Status.WARNING, "dmarc_invalid_report_uri", tag=tag, uri=uri)
    return tags, findings


def _valid_fo(value: str) -> bool:
    options = value.split(":")
    return all(option in ("0", "1", "d", "s") for option in options) and len(options) == len(set(options))


def _valid_pct(value: str) -> bool:
    return value.isdigit() and 0 <= int(value) <= 100


_VALIDATORS = {
    "adkim": lambda value: value in ("r", "s"),
    "aspf": lambda value: value in ("r", "s"),
    "fo": _valid_fo,
    "pct": _valid_pct,
    "ri": lambda value: value.isdigit(),
    "rf": lambda value: all(part in ("afrf", "iodef") for part in value.split(":")),
    "psd": lambda value: value in ("y", "n", "u"),
    "t": lambda value: value in ("y", "n"),
}


def _uris(value: str) -> list[str]:
    return [uri.strip() for uri in value.split(",") if uri.strip()]


def report_address(uri: str) -> str | None:
    """The e-mail address of a ``mailto:`` report URI (without a ``!size`` suffix), else ``None``."""
    if not uri.lower().startswith("mailto:"):
        return None
    address = uri[len("mailto:") :].split("!", 1)[0].strip()
    return address if _LOCAL_PART.match(address) else None


def is_external(report_domain: str, domain: str) -> bool:
    """Whether reports for ``domain`` sent to ``report_domain`` go to someone else.

    The domain itself, its subdomains and its parents count as the same owner (a parent that is
    not a public suffix shares the organisational domain; nobody receives mail at a public
    suffix). Anything else needs the receiver's permission record (RFC 7489 section 7.1)."""
    report_domain, domain = plain_name(report_domain), plain_name(domain)
    return not (report_domain == domain or report_domain.endswith("." + domain) or domain.endswith("." + report_domain))


def authorisation_name(domain: str, report_domain: str) -> str:
    return f"{plain_name(domain)}._report._dmarc.{plain_name(report_domain)}"


def _report_authorisation(tags: dict[str, str], domain: str, resolver: dns.resolver.Resolver) -> list[Finding]:
    """Warn for every external report domain that has not published that it accepts our reports."""
    findings: list[Finding] = []
    checked: set[str] = set()
    for tag in ("rua", "ruf"):
        for uri in _uris(tags.get(tag, "")):
            address = report_address(uri)
            if address is None:
                continue
            report_domain = plain_name(address.rsplit("@", 1)[1])
            if report_domain in checked or not is_external(report_domain, domain):
                continue
            checked.add(report_domain)
            record = authorisation_name(domain, report_domain)
            if not any(text.strip().upper().startswith("V=DMARC1") for text in txt_texts(resolver, record)):
                problem = Problem(
                    "dmarc_report_not_authorised",
                    {"address": address, "report_domain": report_domain, "record": record},
                )
                findings.append(Finding(Status.WARNING, problem))
    return findings
