"""Campaign data: contacts with typed custom fields, lists, segments, business rules, templates,
campaigns (bulk) and messages (one outbox row per recipient, also for triggered sends).

Tenancy: contacts, lists, segments and templates belong to the organisation and optionally to one
client; campaigns and messages belong to a sending account. Views fetch through ``for_membership``.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Client, Organisation, SenderAddress, SendingAccount
from plans.models import Reservation
from xes_portal.lib.tenancy import TenantManager

# Names that templates and rules use (``{{ contact.points }}``, ``{% if rules.vip %}``).
identifier = RegexValidator(
    r"^[a-z][a-z0-9_]{0,39}$",
    _("Use 1 to 40 lower-case letters, digits and underscores, starting with a letter."),
)


def new_token() -> str:
    """An unguessable token for tracking and unsubscribe links."""
    return secrets.token_urlsafe(18)


class CustomField(models.Model):
    """A typed field of the organisation's contacts, beyond e-mail and names."""

    class Type(models.TextChoices):
        TEXT = "text", _("Text")
        NUMBER = "number", _("Number")
        DATE = "date", _("Date")
        BOOLEAN = "boolean", _("Yes/no")
        CHOICE = "choice", _("Choice")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="custom_fields")
    key = models.CharField(_("key"), max_length=40, validators=[identifier])
    label = models.CharField(_("label"), max_length=100)
    type = models.CharField(_("type"), max_length=10, choices=Type.choices, default=Type.TEXT)
    choices = models.JSONField(_("choices"), default=list, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("custom field")
        verbose_name_plural = _("custom fields")
        ordering = ("label",)
        constraints = [models.UniqueConstraint(fields=("organisation", "key"), name="customfield_unique_key")]

    def __str__(self) -> str:
        return self.label


class Contact(models.Model):
    """A recipient. ``fields`` holds the custom fields' values (numbers as numbers, dates as ISO
    strings, booleans as booleans); ``email`` is unique per organisation and client, ignoring case."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="contacts")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="contacts")
    email = models.CharField(_("e-mail address"), max_length=254)
    first_name = models.CharField(_("first name"), max_length=100, blank=True)
    last_name = models.CharField(_("last name"), max_length=100, blank=True)
    fields = models.JSONField(_("fields"), default=dict, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("contact")
        verbose_name_plural = _("contacts")
        ordering = ("email",)
        constraints = [
            models.UniqueConstraint(
                "organisation", "client", Lower("email"), name="contact_unique_email", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        return self.email


class ContactList(models.Model):
    """A named list of contacts (a contact may be on several lists)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="contact_lists")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="contact_lists")
    name = models.CharField(_("name"), max_length=100)
    contacts = models.ManyToManyField(Contact, through="ListMembership", related_name="lists")
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("list")
        verbose_name_plural = _("lists")
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class ListMembership(models.Model):
    contact_list = models.ForeignKey(ContactList, on_delete=models.CASCADE, related_name="memberships")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="list_memberships")
    added_at = models.DateTimeField(_("added"), default=timezone.now)

    class Meta:
        verbose_name = _("list membership")
        verbose_name_plural = _("list memberships")
        constraints = [models.UniqueConstraint(fields=("contact_list", "contact"), name="listmembership_unique")]

    def __str__(self) -> str:
        return f"{self.contact_id} in {self.contact_list_id}"


class Segment(models.Model):
    """Recipients chosen by criteria: ``definition`` is a tree of AND/OR groups over custom fields,
    rules and behaviour (see :mod:`campaigns.segments`)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="segments")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="segments")
    name = models.CharField(_("name"), max_length=100)
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.CASCADE, null=True, blank=True, related_name="segments"
    )
    definition = models.JSONField(_("criteria"), default=dict)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("segment")
        verbose_name_plural = _("segments")
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Rule(models.Model):
    """A named business rule, defined once per organisation and usable in content, subjects and
    segments: a condition (``points > 100``) or a computed value (a Liquid expression or template)."""

    class Kind(models.TextChoices):
        CONDITION = "condition", _("Condition (true or false)")
        VALUE = "value", _("Computed value")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="rules")
    name = models.CharField(_("name"), max_length=40, validators=[identifier])
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    expression = models.TextField(_("definition"))
    description = models.CharField(_("description"), max_length=200, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("business rule")
        verbose_name_plural = _("business rules")
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=("organisation", "name"), name="rule_unique_name")]

    def __str__(self) -> str:
        return self.name


class Template(models.Model):
    """An e-mail template: Liquid in subject, preheader, HTML (or MJML) and text."""

    class Format(models.TextChoices):
        HTML = "html", _("HTML")
        MJML = "mjml", _("MJML")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="templates")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="templates")
    name = models.CharField(_("name"), max_length=100)
    slug = models.SlugField(_("slug"), max_length=60)
    subject = models.CharField(_("subject"), max_length=300)
    preheader = models.CharField(_("preheader"), max_length=300, blank=True)
    source_format = models.CharField(_("format"), max_length=10, choices=Format.choices, default=Format.HTML)
    body = models.TextField(_("HTML or MJML"))
    text = models.TextField(_("text version"), blank=True, help_text=_("Generated from the HTML when empty."))
    # None: the default (opens and clicks tracked on promotional mail only). See tracking_enabled().
    tracking = models.BooleanField(
        _("track opens and clicks"),
        null=True,
        blank=True,
        help_text=_("Empty: tracked on promotional e-mail, not on transactional e-mail."),
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("template")
        verbose_name_plural = _("templates")
        ordering = ("name",)
        constraints = [models.UniqueConstraint(fields=("organisation", "slug"), name="template_unique_slug")]

    def __str__(self) -> str:
        return self.name


class Campaign(models.Model):
    """A bulk send to a list or segment through one sending account."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SCHEDULED = "scheduled", _("Scheduled")
        QUEUEING = "queueing", _("Preparing")
        SENDING = "sending", _("Sending")
        PAUSED = "paused", _("Paused")
        CANCELLED = "cancelled", _("Cancelled")
        DONE = "done", _("Sent")

    class Resend(models.TextChoices):
        NOT_OPENED = "not_opened", _("Did not open")
        NOT_CLICKED = "not_clicked", _("Did not click")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="campaigns")
    sending_account = models.ForeignKey(SendingAccount, on_delete=models.PROTECT, related_name="campaigns")
    sender = models.ForeignKey(SenderAddress, on_delete=models.PROTECT, related_name="campaigns")
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="campaigns")
    name = models.CharField(_("name"), max_length=150)
    contact_list = models.ForeignKey(
        ContactList, on_delete=models.PROTECT, null=True, blank=True, related_name="campaigns"
    )
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, null=True, blank=True, related_name="campaigns")
    promotional = models.BooleanField(_("promotional"), default=True)
    # None: as the template says (see tracking_enabled()).
    tracking = models.BooleanField(
        _("track opens and clicks"), null=True, blank=True, help_text=_("Empty: as the template says.")
    )
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.DRAFT)
    scheduled_at = models.DateTimeField(_("send at"), null=True, blank=True)
    started_at = models.DateTimeField(_("started"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)
    paused_reason = models.CharField(_("why paused"), max_length=300, blank=True)
    resend_of = models.ForeignKey("self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resends")
    resend_filter = models.CharField(_("send again to"), max_length=12, choices=Resend.choices, blank=True)
    reservation = models.ForeignKey(
        Reservation, on_delete=models.PROTECT, null=True, blank=True, related_name="campaigns"
    )
    recipients = models.PositiveIntegerField(_("recipients"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "sending_account__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        ordering = ("-created_at", "-pk")
        constraints = [
            models.CheckConstraint(
                condition=~(Q(contact_list__isnull=False) & Q(segment__isnull=False)), name="campaign_list_or_segment"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Message(models.Model):
    """One e-mail to one recipient: the outbox row of the sending pipeline and its log entry.

    Life: ``queued`` → claimed by a worker (``sending``, with a lease) → ``sent`` with the provider's
    id; or ``unknown`` when a worker died between handing the message to the provider and recording
    the answer (reconciled from the provider's events, never sent twice); ``failed``, ``suppressed``
    or ``cancelled`` otherwise. Provider events then move it on (``delivered``, ``bounced``,
    ``complained``) and never back.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENDING = "sending", _("Sending")
        UNKNOWN = "unknown", _("Unknown (being reconciled)")
        SENT = "sent", _("Sent")
        DELIVERED = "delivered", _("Delivered")
        BOUNCED = "bounced", _("Bounced")
        COMPLAINED = "complained", _("Complained")
        FAILED = "failed", _("Failed")
        SUPPRESSED = "suppressed", _("Suppressed")
        CANCELLED = "cancelled", _("Cancelled")

    # The outbox takes a million rows in one INSERT ... SELECT, so every index and constraint on it
    # costs. Its foreign keys keep Django's on_delete behaviour, which Django enforces itself, but
    # have no database-level constraint (each row would be checked at commit: seconds per million);
    # the columns that are the same for a whole campaign have no index of their own where a
    # composite index below starts with them, or where nothing looks rows up by them.
    # Never looked up by organisation alone (always with a campaign, contact or id): no index of its own.
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="+", db_constraint=False, db_index=False
    )
    sending_account = models.ForeignKey(
        SendingAccount, on_delete=models.CASCADE, related_name="messages", db_constraint=False, db_index=False
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="messages",
        db_constraint=False,
        db_index=False,
    )
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", db_constraint=False
    )
    template = models.ForeignKey(
        Template, on_delete=models.PROTECT, related_name="messages", db_constraint=False, db_index=False
    )
    sender = models.ForeignKey(
        SenderAddress, on_delete=models.PROTECT, related_name="+", db_constraint=False, db_index=False
    )
    to_email = models.CharField(_("to"), max_length=254)
    data = models.JSONField(_("data"), default=dict, blank=True)
    promotional = models.BooleanField(_("promotional"), default=True)
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.QUEUED)
    token = models.CharField(max_length=32, default=new_token)
    # NULL, not "", for messages without a key: the unique constraint then only binds real keys.
    idempotency_key = models.CharField(_("idempotency key"), max_length=200, null=True, blank=True)  # noqa: DJ001
    reservation = models.ForeignKey(
        Reservation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    claimed_by = models.CharField(max_length=100, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    not_before = models.DateTimeField(null=True, blank=True)
    provider_message_id = models.CharField(_("provider message id"), max_length=100, blank=True)
    error = models.TextField(_("error"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "sending_account__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ("-created_at", "-pk")
        indexes = [
            models.Index(fields=("campaign", "status"), name="message_campaign_status"),
            models.Index(
                fields=("provider_message_id",),
                name="message_provider_id",
                condition=~Q(provider_message_id=""),
            ),
            models.Index(
                fields=("sending_account", "created_at"),
                name="message_queued_claim",
                condition=Q(status="queued"),
            ),
            # The reconciler's scan for rows whose worker died.
            models.Index(
                fields=("status", "lease_until"),
                name="message_inflight",
                condition=Q(status__in=["sending", "unknown"]),
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=("token",), name="message_unique_token"),
            models.UniqueConstraint(
                fields=("campaign", "contact"),
                name="message_once_per_campaign_contact",
                condition=Q(campaign__isnull=False),
            ),
            models.UniqueConstraint(
                fields=("sending_account", "idempotency_key"),
                name="message_idempotency_key",
                condition=Q(idempotency_key__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.to_email} · {self.get_status_display()}"


def tracking_enabled(campaign_tracking: bool | None, template_tracking: bool | None, promotional: bool) -> bool:
    """Whether a message's opens and clicks are tracked: the campaign's setting, else the template's,
    else on for promotional and off for transactional e-mail."""
    if campaign_tracking is not None:
        return campaign_tracking
    if template_tracking is not None:
        return template_tracking
    return promotional


def url_hash(url: str) -> str:
    """The SHA-256 (hex) of a tracked URL, its identity within an organisation."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


class TrackedLink(models.Model):
    """A destination URL of tracked clicks, stored once per organisation.

    A click token names the message and one of these rows; the redirect goes only to ``url`` of
    the row, and only while ``url_hash`` still matches it (an edited row answers 404)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    url = models.TextField(_("URL"))
    url_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("tracked link")
        verbose_name_plural = _("tracked links")
        constraints = [
            models.UniqueConstraint(fields=("organisation", "url_hash"), name="trackedlink_unique_url"),
        ]

    def __str__(self) -> str:
        return self.url

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.url_hash:
            self.url_hash = url_hash(self.url)
        super().save(*args, **kwargs)


class BrinIndex(models.Index):
    """A BRIN index on PostgreSQL (tiny, for append-only time columns); a plain index elsewhere
    (the SQLite database of ``make run``)."""

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor == "postgresql":
            using = " USING brin"
        return super().create_sql(model, schema_editor, using=using, **kwargs)


class MessageEvent(models.Model):
    """Something that happened to a message: provider events (send, delivery, bounce, ...), opens,
    clicks and unsubscribes. The message's organisation, sending account and campaign are copied
    onto each row so that reports never join the outbox.

    The table takes tens of millions of rows, written in batches with ``COPY``: only one b-tree
    (message, at) and a BRIN index on ``at``; foreign keys are not enforced by the database, and
    the copied ones do nothing on delete (the rows go with their message)."""

    class Type(models.TextChoices):
        SEND = "send", _("Sent")
        DELIVERY = "delivery", _("Delivered")
        BOUNCE = "bounce", _("Bounced")
        COMPLAINT = "complaint", _("Complaint")
        REJECT = "reject", _("Rejected")
        DELIVERY_DELAY = "delivery_delay", _("Delivery delayed")
        RENDERING_FAILURE = "rendering_failure", _("Rendering failed")
        OPEN = "open", _("Opened")
        CLICK = "click", _("Clicked")
        UNSUBSCRIBE = "unsubscribe", _("Unsubscribed")
        SUBSCRIPTION = "subscription", _("Subscription preferences")

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="events", db_constraint=False, db_index=False
    )
    organisation = models.ForeignKey(
        Organisation, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    sending_account = models.ForeignKey(
        SendingAccount, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    type = models.CharField(_("event"), max_length=20, choices=Type.choices)
    # bounce: permanent / transient / undetermined; complaint: the feedback type.
    subtype = models.CharField(_("detail"), max_length=40, blank=True)
    at = models.DateTimeField(_("when"), default=timezone.now)
    machine = models.BooleanField(_("machine"), default=False, help_text=_("Opened or clicked by a machine."))
    link = models.ForeignKey(
        TrackedLink,
        on_delete=models.DO_NOTHING,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    recipient_domain = models.CharField(_("recipient domain"), max_length=253, blank=True)
    data = models.JSONField(default=dict, blank=True)

    tenant_organisation_path = "organisation"
    tenant_client_path = "sending_account__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("message event")
        verbose_name_plural = _("message events")
        ordering = ("at", "pk")
        indexes = [
            models.Index(fields=("message", "at"), name="messageevent_message_at"),
            BrinIndex(fields=("at",), name="messageevent_at_brin"),
        ]

    def __str__(self) -> str:
        return f"{self.message_id} · {self.type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Copies what the row repeats from its message when it was not given."""
        if self.message_id is not None and (self.organisation_id is None or self.sending_account_id is None):
            message = Message.objects.only("organisation_id", "sending_account_id", "campaign_id", "to_email").get(
                pk=self.message_id
            )
            self.organisation_id = message.organisation_id
            self.sending_account_id = message.sending_account_id
            self.campaign_id = message.campaign_id
            if not self.recipient_domain:
                self.recipient_domain = recipient_domain(message.to_email)
        super().save(*args, **kwargs)


def recipient_domain(address: str) -> str:
    """The lower-case domain of an address ("" without one), for reports by recipient domain."""
    return address.rpartition("@")[2].strip().lower()[:253]


class EventBatch(models.Model):
    """One batch of buffered tracking events written to :class:`MessageEvent`: the flusher inserts
    this row in the same transaction as the batch, so a batch that a killed flusher takes up again
    is recognised as already stored (see :mod:`campaigns.tracking.buffer`). Old rows are pruned."""

    id = models.UUIDField(primary_key=True)
    stored_at = models.DateTimeField(default=timezone.now)
    events = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = _("stored event batch")
        verbose_name_plural = _("stored event batches")

    def __str__(self) -> str:
        return str(self.id)


class ImportJob(models.Model):
    """A contact import: the uploaded file, the column mapping, progress and per-row errors."""

    class Status(models.TextChoices):
        UPLOADED = "uploaded", _("Uploaded")
        PREVIEWED = "previewed", _("Checked")
        QUEUED = "queued", _("Queued")
        RUNNING = "running", _("Importing")
        DONE = "done", _("Done")
        FAILED = "failed", _("Failed")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="import_jobs")
    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    contact_list = models.ForeignKey(ContactList, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    file = models.FileField(_("file"), upload_to="imports/%Y/%m/")
    original_name = models.CharField(_("file name"), max_length=255)
    mapping = models.JSONField(_("column mapping"), default=dict, blank=True)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.UPLOADED)
    total_rows = models.PositiveIntegerField(default=0)
    processed_rows = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    errors_file = models.FileField(upload_to="imports/errors/%Y/%m/", blank=True)
    message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("contact import")
        verbose_name_plural = _("contact imports")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return self.original_name
