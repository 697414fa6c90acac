"""Trigger rules and their firing log; webhook endpoints, deliveries and delivery attempts.

Tenancy: a rule belongs to the organisation and, through its campaign's sending account, to that
account's client; a webhook endpoint belongs to the organisation and optionally to one client (it
then receives only that client's events, and only that client's users see it). Views fetch through
``for_membership``.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from accounts.models import Client, Organisation, SenderAddress
from campaigns.models import Campaign, Contact, Message, MessageEvent, Template, url_hash
from xes_portal.lib.tenancy import TenantManager

SECRET_PREFIX = "whsec_"


def new_webhook_secret() -> str:
    """A signing secret: 32 random bytes, URL-safe, with a recognisable prefix."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


class TriggerRule(models.Model):
    """ "When a recipient of campaign C clicks link L / opens / does not open within N days, send
    template T from sender S": one triggered e-mail per rule and recipient (see :class:`Firing`)."""

    class Event(models.TextChoices):
        CLICK = "click", _("clicks a link")
        OPEN = "open", _("opens the e-mail")
        NOT_OPENED = "not_opened", _("does not open it within some days")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(_("name"), max_length=100)
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="+", verbose_name=_("campaign"))
    event = models.CharField(_("when a recipient"), max_length=12, choices=Event.choices, default=Event.CLICK)
    # Empty: any link of the campaign. The hash is what a click's TrackedLink is compared with.
    link_url = models.TextField(_("link"), blank=True)
    link_url_hash = models.CharField(max_length=64, blank=True)
    delay_days = models.PositiveSmallIntegerField(_("days"), null=True, blank=True)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="+", verbose_name=_("template"))
    sender = models.ForeignKey(SenderAddress, on_delete=models.PROTECT, related_name="+", verbose_name=_("sender"))
    promotional = models.BooleanField(_("promotional"), default=True)
    enabled = models.BooleanField(_("enabled"), default=True)
    # The "not opened" scan has looked at every message sent up to here (see triggers.fire_not_opened).
    scanned_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "campaign__sending_account__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("trigger rule")
        verbose_name_plural = _("trigger rules")
        ordering = ("name", "pk")
        indexes = [
            models.Index(fields=("campaign", "event"), name="triggerrule_campaign_event", condition=Q(enabled=True))
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(event="not_opened") | Q(delay_days__gte=1), name="triggerrule_not_opened_has_days"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        self.link_url_hash = url_hash(self.link_url) if self.link_url else ""
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    @property
    def delay(self) -> timedelta:
        return timedelta(days=self.delay_days or 0)

    @property
    def condition(self) -> str:
        """The rule's "when" in words (without the campaign)."""
        if self.event == self.Event.CLICK:
            if self.link_url:
                return gettext("clicks %(link)s") % {"link": self.link_url}
            return gettext("clicks any link")
        if self.event == self.Event.OPEN:
            return gettext("opens the e-mail")
        return ngettext(
            "has not opened it %(days)d day after sending",
            "has not opened it %(days)d days after sending",
            self.delay_days or 0,
        ) % {"days": self.delay_days or 0}


class Firing(models.Model):
    """One rule fired for one recipient (lower-case address): at most one row per (rule, recipient),
    enforced by the database, written in the same transaction as the triggered message."""

    class Status(models.TextChoices):
        QUEUED = "queued", _("Sent to the pipeline")
        SUPPRESSED = "suppressed", _("Suppressed")
        REFUSED = "refused", _("Refused")

    rule = models.ForeignKey(TriggerRule, on_delete=models.CASCADE, related_name="firings")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    email = models.CharField(_("recipient"), max_length=254)
    contact = models.ForeignKey(
        Contact, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    # The campaign message whose event fired the rule, and the event (a MessageEvent id).
    source_message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    source_event_id = models.BigIntegerField(null=True, blank=True)
    # The triggered message.
    message = models.ForeignKey(
        Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_constraint=False
    )
    status = models.CharField(_("status"), max_length=12, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(_("why refused"), max_length=300, blank=True)
    fired_at = models.DateTimeField(_("fired"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "rule__campaign__sending_account__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("trigger firing")
        verbose_name_plural = _("trigger firings")
        ordering = ("-fired_at", "-pk")
        constraints = [models.UniqueConstraint(fields=("rule", "email"), name="firing_once_per_recipient")]

    def __str__(self) -> str:
        return f"{self.rule_id} → {self.email}"


# --- outgoing webhooks ----------------------------------------------------------------------------

# The message event types an endpoint may subscribe to (MessageEvent.Type), in display order.
WEBHOOK_EVENT_TYPES = [
    MessageEvent.Type.SEND,
    MessageEvent.Type.DELIVERY,
    MessageEvent.Type.BOUNCE,
    MessageEvent.Type.COMPLAINT,
    MessageEvent.Type.REJECT,
    MessageEvent.Type.DELIVERY_DELAY,
    MessageEvent.Type.RENDERING_FAILURE,
    MessageEvent.Type.OPEN,
    MessageEvent.Type.CLICK,
    MessageEvent.Type.UNSUBSCRIBE,
    MessageEvent.Type.SUBSCRIPTION,
]
DEFAULT_WEBHOOK_EVENT_TYPES = [
    MessageEvent.Type.DELIVERY,
    MessageEvent.Type.BOUNCE,
    MessageEvent.Type.COMPLAINT,
    MessageEvent.Type.UNSUBSCRIBE,
]


class WebhookEndpoint(models.Model):
    """A URL of the customer's that receives the organisation's (or one client's) message events."""

    class Health(models.TextChoices):
        NEW = "new", _("No deliveries yet")
        HEALTHY = "healthy", _("Healthy")
        FAILING = "failing", _("Failing")
        DISABLED = "disabled", _("Disabled")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey(
        Client,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("client"),
        help_text=_("Empty: events of every sending account of the organisation."),
    )
    url = models.CharField(_("URL"), max_length=2000)
    description = models.CharField(_("description"), max_length=200, blank=True)
    event_types = models.JSONField(_("events"), default=list)
    include_machine = models.BooleanField(
        _("include machine opens and clicks"),
        default=False,
        help_text=_('Opens and clicks by privacy proxies and security scanners, flagged with "machine": true.'),
    )
    secret = models.CharField(max_length=100, default=new_webhook_secret)
    enabled = models.BooleanField(_("enabled"), default=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ("created_at", "pk")

    def __str__(self) -> str:
        return self.url

    @property
    def health(self) -> str:
        if not self.enabled:
            return self.Health.DISABLED
        if self.failing_since is not None:
            return self.Health.FAILING
        if self.last_success_at is None:
            return self.Health.NEW
        return self.Health.HEALTHY

    def get_health_display(self) -> str:
        return str(self.Health(self.health).label)

    @property
    def secret_hint(self) -> str:
        """The secret's prefix and last four characters, to recognise it without showing it."""
        return f"{SECRET_PREFIX}…{self.secret[-4:]}"


class WebhookDelivery(models.Model):
    """One POST of one or more events to one endpoint, retried with backoff until it succeeds or
    gives up. ``payload`` is the exact body sent (the signature covers it)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        RETRYING = "retrying", _("Retrying")
        SUCCEEDED = "succeeded", _("Delivered")
        FAILED = "failed", _("Gave up")

    class Kind(models.TextChoices):
        EVENTS = "events", _("Events")
        TEST = "test", _("Test event")

    id = models.BigAutoField(primary_key=True)
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.EVENTS)
    event_types = models.CharField(_("events"), max_length=200, blank=True)
    event_count = models.PositiveIntegerField(_("events"), default=0)
    payload = models.TextField(_("payload"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # pending: when the tick enqueues the job again if it was lost; sending: when the claim expires;
    # retrying: when the next attempt is due. The minute tick enqueues every row past it.
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)
    last_error = models.CharField(_("error"), max_length=500, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished"), null=True, blank=True)

    tenant_organisation_path = "endpoint__organisation"
    tenant_client_path = "endpoint__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ("-created_at", "-pk")
        indexes = [
            models.Index(fields=("endpoint", "-created_at"), name="webhookdelivery_log"),
            # The minute tick's scan for due retries and lost jobs.
            models.Index(
                fields=("next_attempt_at",),
                name="webhookdelivery_due",
                condition=Q(status__in=["pending", "sending", "retrying"]),
            ),
        ]

    def __str__(self) -> str:
        return str(self.uid)


class WebhookAttempt(models.Model):
    """One HTTP request of a delivery: what came back (status, a truncated body) or what failed."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField(_("attempt"))
    started_at = models.DateTimeField(_("at"), default=timezone.now)
    status_code = models.PositiveSmallIntegerField(_("HTTP status"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), default=0)
    succeeded = models.BooleanField(_("succeeded"), default=False)
    error = models.CharField(_("error"), max_length=500, blank=True)
    response_body = models.TextField(_("response (start)"), blank=True)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ("delivery", "number")

    def __str__(self) -> str:
        return f"{self.delivery_id} #{self.number}"
