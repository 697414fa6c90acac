"""Deliverability data: domains and their DNS records, delivery-provider set-up per sending account,
dedicated IP pools with warm-up schedules, suppression lists and the sandbox provider's outbox.

Every model is tenant-owned through its sending account (``tenant_organisation_path``); views fetch
them with ``for_membership`` / ``get_for_membership`` only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import SendingAccount
from xes_portal.lib.domains import domain_display
from xes_portal.lib.tenancy import TenantManager

ACCOUNT_ORG = "sending_account__organisation"
ACCOUNT_CLIENT = "sending_account__client"


class ProviderSetup(models.Model):
    """How one sending account reaches its delivery provider: its own configuration set (and SES
    tenant) so that events, suppressions and reputation stay per account (DESIGN.md)."""

    class Provider(models.TextChoices):
        SANDBOX = "sandbox", _("Sandbox (local, nothing leaves the portal)")
        SES = "ses", _("Amazon SES")

    sending_account = models.OneToOneField(SendingAccount, on_delete=models.CASCADE, related_name="delivery")
    provider = models.CharField(_("provider"), max_length=20, choices=Provider.choices)
    configuration_set = models.CharField(_("configuration set"), max_length=64)
    tenant = models.CharField(_("provider tenant"), max_length=64, blank=True)
    ready_at = models.DateTimeField(_("set up"), null=True, blank=True)
    last_error = models.TextField(_("last provider error"), blank=True)

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("provider set-up")
        verbose_name_plural = _("provider set-ups")

    def __str__(self) -> str:
        return f"{self.sending_account} · {self.get_provider_display()}"


class Domain(models.Model):
    """A sending domain of one sending account, with what the wizard has set up for it.

    The name is stored as ASCII (IDN as punycode). The same name may exist in another organisation
    (or another account): each row needs its own proof of ownership, the ``verification_token`` TXT
    record, because a provider identity alone would be shared.
    """

    class DkimMode(models.TextChoices):
        EASY = "easy", _("Easy DKIM (CNAME records, keys managed by the provider)")
        BYO = "byo", _("Your own 2048-bit key (one TXT record)")

    class DmarcPolicy(models.TextChoices):
        NONE = "none", _("Monitor only (p=none)")
        QUARANTINE = "quarantine", _("Quarantine (p=quarantine)")
        REJECT = "reject", _("Reject (p=reject)")

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="domains")
    name = models.CharField(_("domain"), max_length=253)
    verification_token = models.CharField(_("ownership token"), max_length=64, unique=True)
    dkim_mode = models.CharField(_("DKIM"), max_length=10, choices=DkimMode.choices, default=DkimMode.EASY)
    dkim_selector = models.CharField(_("DKIM selector"), max_length=63, blank=True)
    dkim_public_key = models.TextField(_("DKIM public key (base64)"), blank=True)
    dkim_tokens = models.JSONField(_("Easy DKIM tokens"), default=list, blank=True)
    mail_from_subdomain = models.CharField(_("MAIL FROM subdomain"), max_length=63, blank=True)
    dmarc_policy = models.CharField(
        _("DMARC policy"), max_length=12, choices=DmarcPolicy.choices, default=DmarcPolicy.NONE
    )
    dmarc_rua = models.CharField(_("DMARC report address"), max_length=254, blank=True)
    dmarc_stage_started_at = models.DateTimeField(_("DMARC stage since"), null=True, blank=True)
    tracking_subdomain = models.CharField(_("tracking subdomain"), max_length=63, blank=True)
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    last_checked_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("domain")
        verbose_name_plural = _("domains")
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("sending_account", "name"), name="domain_unique_per_account"),
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """The name as people read it (Unicode for IDNs)."""
        return domain_display(self.name)

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def mail_from_domain(self) -> str:
        return f"{self.mail_from_subdomain}.{self.name}" if self.mail_from_subdomain else ""

    @property
    def tracking_domain(self) -> str:
        return f"{self.tracking_subdomain}.{self.name}" if self.tracking_subdomain else ""


class DnsRecord(models.Model):
    """One record the customer must publish for a domain, with the verdict of its latest check.

    ``problems`` holds machine-readable findings (``{"code": ..., "params": {...}}``) that
    :mod:`deliverability.dns.messages` turns into plain words in the reader's language.
    """

    class Kind(models.TextChoices):
        OWNERSHIP = "ownership", _("Ownership")
        DKIM = "dkim", _("DKIM")
        MAIL_FROM_MX = "mail_from_mx", _("MAIL FROM (MX)")
        MAIL_FROM_SPF = "mail_from_spf", _("MAIL FROM (SPF)")
        SPF = "spf", _("SPF")
        DMARC = "dmarc", _("DMARC")
        TRACKING = "tracking", _("Branded links")

    class Status(models.TextChoices):
        PENDING = "pending", _("Not checked yet")
        OK = "ok", _("Found and correct")
        WARNING = "warning", _("Found, with warnings")
        MISSING = "missing", _("Missing")
        WRONG = "wrong", _("Wrong value")
        CONFLICT = "conflict", _("Conflicting records")
        UNKNOWN = "unknown", _("Unknown, will retry")

    GOOD = frozenset({Status.OK, Status.WARNING})
    BROKEN = frozenset({Status.MISSING, Status.WRONG, Status.CONFLICT})

    domain = models.ForeignKey(Domain, on_delete=models.CASCADE, related_name="records")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    name = models.CharField(_("name"), max_length=253)
    rtype = models.CharField(_("type"), max_length=10)
    value = models.TextField(_("value"))
    priority = models.PositiveSmallIntegerField(_("priority"), null=True, blank=True)
    position = models.PositiveSmallIntegerField(default=0)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    problems = models.JSONField(default=list, blank=True)
    found = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(_("last checked"), null=True, blank=True)
    ok_since = models.DateTimeField(_("correct since"), null=True, blank=True)
    unknown_since = models.DateTimeField(_("lookups failing since"), null=True, blank=True)

    tenant_organisation_path = "domain__" + ACCOUNT_ORG
    tenant_client_path = "domain__" + ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("DNS record")
        verbose_name_plural = _("DNS records")
        ordering = ("domain", "position", "pk")
        constraints = [
            models.UniqueConstraint(fields=("domain", "kind", "name", "rtype"), name="dnsrecord_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.rtype}"

    @property
    def is_good(self) -> bool:
        return self.status in self.GOOD


class DnsCheck(models.Model):
    """History: one row per lookup of one record (what was found, what we concluded)."""

    record = models.ForeignKey(DnsRecord, on_delete=models.CASCADE, related_name="checks")
    checked_at = models.DateTimeField(_("checked"), default=timezone.now, db_index=True)
    status = models.CharField(_("status"), max_length=10, choices=DnsRecord.Status.choices)
    problems = models.JSONField(default=list, blank=True)
    found = models.JSONField(default=list, blank=True)

    tenant_organisation_path = "record__domain__" + ACCOUNT_ORG
    tenant_client_path = "record__domain__" + ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("DNS check")
        verbose_name_plural = _("DNS check history")
        ordering = ("-checked_at", "-pk")

    def __str__(self) -> str:
        return f"{self.record} · {self.status}"


class IpPool(models.Model):
    """The dedicated IP pool of one sending account (the provider's pool of the same name)."""

    sending_account = models.OneToOneField(SendingAccount, on_delete=models.CASCADE, related_name="ip_pool")
    name = models.CharField(_("pool name"), max_length=64, unique=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("dedicated IP pool")
        verbose_name_plural = _("dedicated IP pools")

    def __str__(self) -> str:
        return self.name


class DedicatedIp(models.Model):
    """One dedicated IP address assigned to a pool by the XES team."""

    pool = models.ForeignKey(IpPool, on_delete=models.CASCADE, related_name="ips")
    address = models.GenericIPAddressField(_("IP address"), unique=True)
    assigned_at = models.DateTimeField(_("assigned"), default=timezone.now)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    tenant_organisation_path = "pool__" + ACCOUNT_ORG
    tenant_client_path = "pool__" + ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("dedicated IP")
        verbose_name_plural = _("dedicated IPs")
        ordering = ("address",)

    def __str__(self) -> str:
        return self.address


class WarmupSchedule(models.Model):
    """The warm-up of a pool: day N (from ``starts_on``, UTC) may send at most day N's cap.

    After the last day there is no warm-up cap any more.
    """

    pool = models.OneToOneField(IpPool, on_delete=models.CASCADE, related_name="warmup")
    starts_on = models.DateField(_("starts on"))
    target_daily_volume = models.PositiveIntegerField(_("normal daily volume"))
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "pool__" + ACCOUNT_ORG
    tenant_client_path = "pool__" + ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("warm-up schedule")
        verbose_name_plural = _("warm-up schedules")

    def __str__(self) -> str:
        return f"{self.pool} · {self.starts_on}"


class WarmupDay(models.Model):
    """The daily volume cap of one warm-up day (1-based)."""

    schedule = models.ForeignKey(WarmupSchedule, on_delete=models.CASCADE, related_name="days")
    day = models.PositiveSmallIntegerField(_("day"))
    daily_cap = models.PositiveIntegerField(_("daily cap"))

    class Meta:
        verbose_name = _("warm-up day")
        verbose_name_plural = _("warm-up days")
        ordering = ("schedule", "day")
        constraints = [
            models.UniqueConstraint(fields=("schedule", "day"), name="warmupday_unique_day"),
            models.CheckConstraint(condition=models.Q(day__gte=1), name="warmupday_day_from_one"),
        ]

    def __str__(self) -> str:
        return f"{self.day}: {self.daily_cap}"


class Suppression(models.Model):
    """An address this sending account must not send to (per account: reputation is per account)."""

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", _("Hard bounce")
        COMPLAINT = "complaint", _("Complaint")
        UNSUBSCRIBE = "unsubscribe", _("Unsubscribed")
        MANUAL = "manual", _("Added by hand")

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="suppressions")
    email = models.CharField(_("e-mail address"), max_length=254)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    note = models.CharField(_("note"), max_length=300, blank=True)
    created_at = models.DateTimeField(_("added"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("suppressed address")
        verbose_name_plural = _("suppression list")
        ordering = ("-created_at", "-pk")
        constraints = [
            models.UniqueConstraint(fields=("sending_account", "email"), name="suppression_unique_per_account"),
        ]
        indexes = [
            # Addresses are compared without regard to case (deliverability.suppressions): the
            # send-time batch check and the CSV import look up lower(email) per account.
            models.Index(F("sending_account"), Lower("email"), name="suppression_lower_email"),
        ]

    def __str__(self) -> str:
        return self.email


class SandboxMessage(models.Model):
    """A message 'sent' through the sandbox provider: kept here so the portal can show an outbox."""

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(_("provider message id"), max_length=100, unique=True)
    configuration_set = models.CharField(_("configuration set"), max_length=64, blank=True)
    from_address = models.CharField(_("from"), max_length=320)
    recipients = models.JSONField(_("recipients"), default=list)
    subject = models.CharField(_("subject"), max_length=998, blank=True)
    raw = models.BinaryField(_("raw message"))
    tags = models.JSONField(_("tags"), default=dict, blank=True)
    created_at = models.DateTimeField(_("sent"), default=timezone.now, db_index=True)

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("sandbox message")
        verbose_name_plural = _("sandbox outbox")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return self.message_id


class SandboxEvent(models.Model):
    """An event the sandbox produced for a message, in the SES event-publishing JSON shape."""

    message = models.ForeignKey(SandboxMessage, on_delete=models.CASCADE, related_name="events")
    event_type = models.CharField(_("event"), max_length=30)
    payload = models.JSONField()
    created_at = models.DateTimeField(_("when"), default=timezone.now)

    tenant_organisation_path = "message__" + ACCOUNT_ORG
    tenant_client_path = "message__" + ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("sandbox event")
        verbose_name_plural = _("sandbox events")
        ordering = ("created_at", "pk")

    def __str__(self) -> str:
        return f"{self.message} · {self.event_type}"


class SnsNotification(models.Model):
    """One Amazon SNS message as it reached ``POST /webhooks/ses/``, stored before anything else.

    Only messages whose signature checked out and whose topic is allowed are stored. The unique
    ``sns_message_id`` makes a retried or replayed delivery (sequential or concurrent) a no-op; the
    processing job (:mod:`deliverability.webhooks.processing`) claims a row with a conditional
    update, so each notification is processed once.
    """

    class Type(models.TextChoices):
        NOTIFICATION = "Notification", _("Notification")
        SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation", _("Subscription confirmation")
        UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation", _("Unsubscribe confirmation")

    class Outcome(models.TextChoices):
        PENDING = "pending", _("Waiting")
        PROCESSING = "processing", _("Being processed")
        PROCESSED = "processed", _("Processed")
        IGNORED = "ignored", _("Ignored")
        FAILED = "failed", _("Failed")

    sns_message_id = models.CharField(_("SNS message id"), max_length=100)
    topic_arn = models.CharField(_("topic"), max_length=256)
    type = models.CharField(_("type"), max_length=30, choices=Type.choices)
    body = models.TextField(_("raw body"))
    received_at = models.DateTimeField(_("received"), default=timezone.now, db_index=True)
    event_type = models.CharField(_("event"), max_length=40, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=100, blank=True)
    # Set by the job once it knows the account; no database constraint or index on a table that
    # takes every provider event (deleting an account is rare; Django still nulls the column).
    sending_account = models.ForeignKey(
        SendingAccount,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_constraint=False,
        db_index=False,
        related_name="+",
        verbose_name=_("sending account"),
    )
    outcome = models.CharField(_("outcome"), max_length=12, choices=Outcome.choices, default=Outcome.PENDING)
    error = models.TextField(_("error or note"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    claimed_at = models.DateTimeField(_("claimed"), null=True, blank=True)
    processed_at = models.DateTimeField(_("processed"), null=True, blank=True)

    class Meta:
        verbose_name = _("SNS notification")
        verbose_name_plural = _("SNS notifications")
        ordering = ("-received_at", "-pk")
        constraints = [
            # A constraint rather than unique=True: no extra LIKE index on PostgreSQL. The webhook
            # inserts with ON CONFLICT (sns_message_id) DO NOTHING against it.
            models.UniqueConstraint(fields=("sns_message_id",), name="snsnotification_unique_message"),
        ]
        indexes = [
            # The sweep looks for notifications whose job was lost; they are few at any time.
            models.Index(
                fields=("received_at",),
                name="snsnotification_unfinished",
                condition=models.Q(outcome__in=("pending", "processing")),
            ),
            # "What did SES report about this message?" in the admin.
            models.Index(
                fields=("provider_message_id",),
                name="snsnotification_provider_id",
                condition=~models.Q(provider_message_id=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.sns_message_id}"
