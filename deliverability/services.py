"""The domain wizard: adding a domain, the records it needs, live checks, staged DMARC and drift.

A domain goes through these steps (the wizard's pages follow them):

1. **Add**: the name is normalised (IDN → punycode); the provider creates the identity with Easy DKIM
   or with our own 2048-bit key; each domain row gets its own ownership token.
2. **Verify and DKIM**: the ownership TXT record and the DKIM record(s). When all are correct the
   domain is verified. Included in every plan.
3. With the **Advanced Sender Package** for this domain: custom MAIL FROM (MX + SPF), SPF for the
   root domain, DMARC with a staged rollout and a branded tracking domain. Without it these records
   are not expected, and the pages say what the package adds.

Every record is checked live (:func:`check_domain`); the daily job re-checks all domains and e-mails
the owners when a record that was correct breaks. A lookup that times out is "unknown, will retry"
and changes nothing: one failed lookup never un-verifies a domain.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Membership, SendingAccount, User
from accounts.services import ServiceError, normalise_email
from deliverability import records as generators
from deliverability.dns.checks import Verdict, check_record
from deliverability.models import DnsCheck, DnsRecord, Domain
from deliverability.providers import DeliveryProvider, ProviderError, ensure_setup, get_provider, provider_for
from plans import entitlements
from plans.models import AddOnProduct
from xes_portal.lib import emails
from xes_portal.lib.domains import normalise_domain

Kind = DnsRecord.Kind
Status = DnsRecord.Status

OWNERSHIP_PREFIX = "_xes-verification"
DMARC_STAGES: list[str] = [Domain.DmarcPolicy.NONE, Domain.DmarcPolicy.QUARANTINE, Domain.DmarcPolicy.REJECT]
# How long a stage should run (with reports read) before the next, stricter one is advised.
DMARC_STAGE_DAYS = 14
# A verified domain loses its verification only after its ownership or DKIM records have been
# definitively wrong or missing for this long: DNS changes propagate, and mistakes get fixed.
UNVERIFY_AFTER = timedelta(hours=72)
# Checks of one domain run in parallel, so that a slow resolver costs one timeout, not seven.
CHECK_THREADS = 8
SUBDOMAIN_LABEL_MAX = 63


class DomainError(ServiceError):
    """A wizard step could not be done; the message says why in plain words."""


@dataclass(frozen=True)
class ExpectedRecord:
    kind: str
    name: str
    rtype: str
    value: str
    priority: int | None = None


def has_advanced_sender(domain: Domain, at: datetime | None = None) -> bool:
    """Whether the Advanced Sender Package is active for this domain now."""
    return entitlements.has_addon(
        domain.sending_account.organisation, AddOnProduct.Kind.ADVANCED_SENDER, domain.name, at
    )


def expected_records(domain: Domain, advanced: bool) -> list[ExpectedRecord]:
    """The records this domain needs, in the order the wizard shows them."""
    provider = domain_provider(domain)
    wanted = [
        ExpectedRecord(Kind.OWNERSHIP, f"{OWNERSHIP_PREFIX}.{domain.name}", "TXT", ownership_value(domain)),
    ]
    if domain.dkim_mode == Domain.DkimMode.BYO:
        wanted.append(
            ExpectedRecord(
                Kind.DKIM,
                f"{domain.dkim_selector}._domainkey.{domain.name}",
                "TXT",
                generators.dkim_record_value(domain.dkim_public_key),
            )
        )
    else:
        for token in domain.dkim_tokens:
            name, target = provider.dkim_cname(domain.name, token)
            wanted.append(ExpectedRecord(Kind.DKIM, name, "CNAME", target))
    if not advanced:
        return wanted
    if domain.mail_from_subdomain:
        wanted += [
            ExpectedRecord(Kind.MAIL_FROM_MX, domain.mail_from_domain, "MX", provider.mail_from_mx(), 10),
            ExpectedRecord(
                Kind.MAIL_FROM_SPF, domain.mail_from_domain, "TXT", generators.spf_record([provider.spf_include])
            ),
        ]
    wanted.append(ExpectedRecord(Kind.SPF, domain.name, "TXT", generators.spf_record([provider.spf_include])))
    wanted.append(
        ExpectedRecord(
            Kind.DMARC,
            f"_dmarc.{domain.name}",
            "TXT",
            generators.dmarc_record(domain.dmarc_policy, [domain.dmarc_rua] if domain.dmarc_rua else None),
        )
    )
    if domain.tracking_subdomain:
        wanted.append(ExpectedRecord(Kind.TRACKING, domain.tracking_domain, "CNAME", settings.TRACKING_CNAME_TARGET))
    return wanted


def ownership_value(domain: Domain) -> str:
    return f"xes-verification={domain.verification_token}"


def domain_provider(domain: Domain) -> DeliveryProvider:
    """The provider of the domain's sending account (the default one before its set-up exists)."""
    setup = getattr(domain.sending_account, "delivery", None)
    return get_provider(setup.provider if setup is not None else None)


def sync_records(domain: Domain, at: datetime | None = None) -> list[DnsRecord]:
    """Make the stored records match :func:`expected_records`.

    A record whose value did not change keeps its status and history; a changed value starts again
    as "not checked yet"; records no longer needed (package ended, step undone) are removed.
    """
    advanced = has_advanced_sender(domain, at)
    wanted = expected_records(domain, advanced)
    existing = {(r.kind, r.name, r.rtype): r for r in domain.records.all()}
    keep: list[DnsRecord] = []
    for position, item in enumerate(wanted):
        record = existing.pop((item.kind, item.name, item.rtype), None)
        if record is None:
            record = DnsRecord(domain=domain, kind=item.kind, name=item.name, rtype=item.rtype)
        elif record.value != item.value or record.priority != item.priority:
            record.status, record.problems, record.found = Status.PENDING, [], []
            record.ok_since = record.unknown_since = None
        record.value, record.priority, record.position = item.value, item.priority, position
        record.save()
        keep.append(record)
    for stale in existing.values():
        stale.delete()
    return keep


# --- wizard steps ---------------------------------------------------------------------------


def clean_domain_name(raw: str) -> str:
    """The domain in its stored form, or a :class:`DomainError` saying what is wrong with it."""
    candidate = raw.strip().rstrip(".")
    if "@" in candidate:
        candidate = candidate.rsplit("@", 1)[1]
    if "://" in candidate:
        raise DomainError(_("Enter the domain only, without http:// or a path, for example example.com."))
    try:
        name = normalise_domain(candidate)
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages)) from exc
    if "." not in name:
        raise DomainError(_("Enter a full domain name such as example.com."))
    return name


def add_domain(account: SendingAccount, raw_name: str, dkim_mode: str, by: User | None = None) -> Domain:
    """Add a domain to a sending account and create its identity at the provider.

    With ``dkim_mode == BYO`` we generate a 2048-bit key pair; the private key goes to the provider
    and is never stored here. A provider error leaves no domain row behind.
    """
    name = clean_domain_name(raw_name)
    if Domain.objects.filter(sending_account=account, name=name).exists():
        raise DomainError(_("This account already has the domain %(domain)s.") % {"domain": name})
    try:
        setup = ensure_setup(account)
        provider = provider_for(setup)
        domain = Domain(sending_account=account, name=name, dkim_mode=dkim_mode, verification_token=_new_token())
        byo = None
        if dkim_mode == Domain.DkimMode.BYO:
            private_pem, public_b64 = generators.generate_dkim_keypair()
            domain.dkim_selector = f"xes{timezone.now():%Y%m}"
            domain.dkim_public_key = public_b64
            byo = (domain.dkim_selector, private_pem)
        with transaction.atomic():
            domain.save()
            dkim = provider.create_domain_identity(setup, name, byo)
            domain.dkim_tokens = list(dkim.tokens) if dkim_mode == Domain.DkimMode.EASY else []
            domain.save(update_fields=["dkim_tokens"])
            sync_records(domain)
    except ProviderError as exc:
        raise DomainError(str(exc.user_message)) from exc
    except IntegrityError as exc:  # a concurrent add of the same name
        raise DomainError(_("This account already has the domain %(domain)s.") % {"domain": name}) from exc
    return domain


def _new_token() -> str:
    return secrets.token_urlsafe(24)


def remove_domain(domain: Domain) -> None:
    """Remove the domain here and its identity at the provider (the provider first: no orphan)."""
    setup = ensure_setup(domain.sending_account)
    others = Domain.objects.filter(name=domain.name).exclude(pk=domain.pk)
    try:
        # Another account of the same provider set-up may still use the identity.
        if not others.filter(sending_account__delivery__provider=setup.provider).exists():
            provider_for(setup).delete_domain_identity(setup, domain.name)
    except ProviderError as exc:
        raise DomainError(str(exc.user_message)) from exc
    domain.delete()


def clean_label(raw: str, field_label: str) -> str:
    label = raw.strip().lower().rstrip(".")
    if not label:
        raise DomainError(_("Enter a subdomain for %(what)s.") % {"what": field_label})
    if "." in label:
        raise DomainError(_("Enter a single label such as “mail”, without dots."))
    try:
        normalise_domain(f"{label}.example.com")
    except ValidationError as exc:
        raise DomainError(" ".join(exc.messages)) from exc
    if len(label) > SUBDOMAIN_LABEL_MAX:
        raise DomainError(_("A subdomain label can have at most 63 characters."))
    return label


def _require_advanced(domain: Domain) -> None:
    if not has_advanced_sender(domain):
        raise DomainError(
            _("This step needs the Advanced Sender Package for %(domain)s. Order it on Plan & usage.")
            % {"domain": domain.display_name}
        )


def set_mail_from(domain: Domain, subdomain: str | None) -> Domain:
    """Use ``<subdomain>.<domain>`` as the envelope sender (custom MAIL FROM), or stop using one."""
    _require_advanced(domain)
    label = clean_label(subdomain, _("MAIL FROM")) if subdomain else ""
    if label and label == domain.tracking_subdomain:
        raise DomainError(_("The MAIL FROM subdomain must differ from the tracking subdomain."))
    setup = ensure_setup(domain.sending_account)
    try:
        with transaction.atomic():
            domain.mail_from_subdomain = label
            domain.save(update_fields=["mail_from_subdomain"])
            sync_records(domain)
            provider_for(setup).set_mail_from(setup, domain.name, domain.mail_from_domain or None)
    except ProviderError as exc:
        domain.refresh_from_db()
        raise DomainError(str(exc.user_message)) from exc
    return domain


def set_dmarc(domain: Domain, policy: str, report_address: str) -> Domain:
    """Set the DMARC stage and report address. Stages go none → quarantine → reject; going back
    a stage is allowed (a fault found in the reports), skipping one is not."""
    _require_advanced(domain)
    if policy not in DMARC_STAGES:
        raise DomainError(_("Choose one of the DMARC stages."))
    current, wanted = DMARC_STAGES.index(domain.dmarc_policy), DMARC_STAGES.index(policy)
    if wanted > current + 1:
        raise DomainError(
            _("Move one stage at a time: first %(next)s, and read the reports before going further.")
            % {"next": Domain.DmarcPolicy(DMARC_STAGES[current + 1]).label}
        )
    rua = ""
    if report_address.strip():
        try:
            rua = normalise_email(report_address)
        except ValidationError as exc:
            raise DomainError(" ".join(exc.messages)) from exc
    with transaction.atomic():
        if policy != domain.dmarc_policy or domain.dmarc_stage_started_at is None:
            domain.dmarc_stage_started_at = timezone.now()
        domain.dmarc_policy, domain.dmarc_rua = policy, rua
        domain.save(update_fields=["dmarc_policy", "dmarc_rua", "dmarc_stage_started_at"])
        sync_records(domain)
    return domain


def dmarc_next_stage(domain: Domain, now: datetime | None = None) -> tuple[str | None, datetime | None]:
    """The stricter stage to advise next and from when (after :data:`DMARC_STAGE_DAYS`)."""
    index = DMARC_STAGES.index(domain.dmarc_policy)
    if index + 1 >= len(DMARC_STAGES):
        return None, None
    since = domain.dmarc_stage_started_at or domain.created_at
    return DMARC_STAGES[index + 1], since + timedelta(days=DMARC_STAGE_DAYS)


def set_tracking(domain: Domain, subdomain: str | None) -> Domain:
    """Use ``<subdomain>.<domain>`` for the tracked links (a CNAME to the portal's tracking host)."""
    _require_advanced(domain)
    label = clean_label(subdomain, _("branded links")) if subdomain else ""
    if label and label == domain.mail_from_subdomain:
        raise DomainError(_("The tracking subdomain must differ from the MAIL FROM subdomain."))
    with transaction.atomic():
        domain.tracking_subdomain = label
        domain.save(update_fields=["tracking_subdomain"])
        sync_records(domain)
    return domain


# --- checks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """What one check of a domain changed: records that broke, and whether verification changed."""

    broke: list[DnsRecord]
    verified_now: bool
    unverified_now: bool


def apply_verdict(record: DnsRecord, verdict: Verdict, at: datetime) -> bool:
    """Store a verdict on the record and in its history. Returns True when a good record broke.

    An "unknown" verdict (timeout, SERVFAIL) is kept in the history only: the record keeps its
    last definitive status and the next check tries again.
    """
    problems = [p.as_json() for p in verdict.problems]
    DnsCheck.objects.create(record=record, checked_at=at, status=verdict.status, problems=problems, found=verdict.found)
    record.checked_at = at
    if verdict.status == Status.UNKNOWN:
        record.unknown_since = record.unknown_since or at
        if record.status == Status.PENDING:
            record.status, record.problems = Status.UNKNOWN, problems
        record.save(update_fields=["checked_at", "unknown_since", "status", "problems"])
        return False
    was_good = record.status in DnsRecord.GOOD
    record.status, record.problems, record.found = verdict.status, problems, verdict.found
    record.unknown_since = None
    if record.status in DnsRecord.GOOD:
        record.ok_since = record.ok_since or at
    else:
        record.ok_since = None
    record.save(update_fields=["checked_at", "unknown_since", "status", "problems", "found", "ok_since"])
    return was_good and verdict.status in DnsRecord.BROKEN


def check_domain(domain: Domain, kinds: Iterable[str] | None = None, at: datetime | None = None) -> CheckOutcome:
    """Look up the domain's records now (all, or only ``kinds``) and store the verdicts.

    1. Sync the expected records (the package may have started or ended).
    2. Query DNS for each record, in parallel threads.
    3. Store each verdict (:func:`apply_verdict`), collecting records that broke.
    4. Verify the domain when ownership and DKIM are correct; un-verify it only after those have
       been definitively broken for :data:`UNVERIFY_AFTER`.
    """
    at = at or timezone.now()
    records = sync_records(domain, at)
    if kinds is not None:
        wanted = set(kinds)
        records = [r for r in records if r.kind in wanted]
    verdicts = _run_checks(domain, records)
    broke = [record for record, verdict in zip(records, verdicts, strict=True) if apply_verdict(record, verdict, at)]
    domain.last_checked_at = at
    verified_now = unverified_now = False
    proof = list(domain.records.filter(kind__in=(Kind.OWNERSHIP, Kind.DKIM)))
    if domain.verified_at is None and proof and all(r.is_good for r in proof):
        domain.verified_at, verified_now = at, True
    elif domain.verified_at is not None and any(_broken_for(r, at) >= UNVERIFY_AFTER for r in proof):
        domain.verified_at, unverified_now = None, True
    domain.save(update_fields=["last_checked_at", "verified_at"])
    return CheckOutcome(broke=broke, verified_now=verified_now, unverified_now=unverified_now)


def _run_checks(domain: Domain, records: list[DnsRecord]) -> list[Verdict]:
    def one(record: DnsRecord) -> Verdict:
        return check_record(
            record.kind, record.name, record.rtype, record.value, domain=domain.name, priority=record.priority
        )

    if len(records) <= 1:
        return [one(r) for r in records]
    with ThreadPoolExecutor(max_workers=min(CHECK_THREADS, len(records))) as pool:
        return list(pool.map(_without_db(one), records))


def _without_db(func):  # type: ignore[no-untyped-def]
    """DNS work in a thread never touches the database, but Django opens a connection per thread
    on first use; closing them keeps PostgreSQL's connection count flat."""

    def wrapper(record: DnsRecord) -> Verdict:
        try:
            return func(record)
        finally:
            close_old_connections()

    return wrapper


def _broken_for(record: DnsRecord, at: datetime) -> timedelta:
    """How long the record has been definitively broken (zero when it is good or unknown)."""
    if record.status not in DnsRecord.BROKEN:
        return timedelta(0)
    last_good = record.checks.filter(status__in=[s.value for s in DnsRecord.GOOD]).order_by("-checked_at").first()
    first_bad = record.checks.filter(status__in=[s.value for s in DnsRecord.BROKEN])
    if last_good is not None:
        first_bad = first_bad.filter(checked_at__gt=last_good.checked_at)
    earliest = first_bad.order_by("checked_at").values_list("checked_at", flat=True).first()
    return at - earliest if earliest else timedelta(0)


def recheck_domain(domain_id: int, at: datetime | None = None) -> CheckOutcome | None:
    """The scheduled re-check of one domain: check everything, tell the owners about drift."""
    domain = Domain.objects.select_related("sending_account__organisation").filter(pk=domain_id).first()
    if domain is None:
        return None
    outcome = check_domain(domain, at=at)
    if outcome.broke or outcome.unverified_now:
        _notify_drift(domain, outcome)
    return outcome


def _notify_drift(domain: Domain, outcome: CheckOutcome) -> None:
    organisation = domain.sending_account.organisation
    owners = list(
        Membership.objects.filter(organisation=organisation, role=Membership.Role.OWNER).select_related("user")
    )
    broken = [
        {
            "kind": record.get_kind_display(),
            "name": record.name,
            "rtype": record.rtype,
            "status": record.status,
            "problems": record.problems,
        }
        for record in outcome.broke
    ]

    def send() -> None:
        for membership in owners:
            emails.dns_drift(
                membership.user.email,
                organisation_name=organisation.name,
                domain=domain.display_name,
                account_name=domain.sending_account.name,
                records=broken,
                unverified=outcome.unverified_now,
                url=f"{settings.SITE_URL}/deliverability/domains/{domain.pk}/",
            )

    transaction.on_commit(send)


def domains_due_for_recheck() -> list[int]:
    """Every domain, oldest check first (the daily job checks them all)."""
    return list(Domain.objects.order_by("last_checked_at", "pk").values_list("pk", flat=True))


def domains_with_unknown_records() -> list[int]:
    """Domains whose last lookup of some record failed: retried hourly until DNS answers."""
    return list(
        DnsRecord.objects.filter(unknown_since__isnull=False)
        .order_by("domain_id")
        .values_list("domain_id", flat=True)
        .distinct()
    )
