"""Reputation data: the editable thresholds, per-day counters, the account's evaluation state, the
history of standing changes and the XES team's alarms."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import SendingAccount
from xes_portal.lib.tenancy import TenantManager

Standing = SendingAccount.Standing
ACCOUNT_ORG = "sending_account__organisation"
ACCOUNT_CLIENT = "sending_account__client"


def _percent(label: Any, default: str, help_text: Any = "") -> models.DecimalField:
    return models.DecimalField(
        label,
        max_digits=6,
        decimal_places=3,
        default=Decimal(default),
        validators=[MinValueValidator(Decimal("0.001")), MaxValueValidator(Decimal("100"))],
        help_text=help_text,
    )


class Thresholds(models.Model):
    """The numbers of the reputation rules, one row (``pk`` 1), edited by the XES team.

    Seeded with the defaults of PRODUCT.md by a data migration. Rates are percentages. Each
    level must be stricter than the one below it (warning < probation < suspended)."""

    SINGLETON_PK = 1

    warning_bounce_rate = _percent(_("warning: bounce rate (%)"), "2")
    probation_bounce_rate = _percent(_("probation: bounce rate (%)"), "4")
    suspended_bounce_rate = _percent(_("suspension: bounce rate (%)"), "8")
    warning_complaint_rate = _percent(_("warning: complaint rate (%)"), "0.08")
    probation_complaint_rate = _percent(_("probation: complaint rate (%)"), "0.1")
    suspended_complaint_rate = _percent(_("suspension: complaint rate (%)"), "0.3")
    window_days = models.PositiveSmallIntegerField(
        _("window (days)"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(30)],
        help_text=_("Rates are computed over this many UTC days, today included."),
    )
    min_deliveries = models.PositiveIntegerField(
        _("deliveries before rates apply"),
        default=500,
        help_text=_(
            "Below this many deliveries in the window, rates change no standing; the counts below open a review."
        ),
    )
    review_complaints = models.PositiveIntegerField(
        _("complaints that open a review"), default=3, validators=[MinValueValidator(1)]
    )
    review_hard_bounces = models.PositiveIntegerField(
        _("hard bounces that open a review"), default=25, validators=[MinValueValidator(1)]
    )
    clean_days = models.PositiveSmallIntegerField(
        _("clean days that end a probation"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(60)],
        help_text=_("Consecutive days below the warning levels."),
    )
    probations_to_suspend = models.PositiveSmallIntegerField(
        _("probation that suspends"),
        default=3,
        validators=[MinValueValidator(2), MaxValueValidator(10)],
        help_text=_("The n-th probation within the period below suspends instead."),
    )
    probation_period_days = models.PositiveSmallIntegerField(
        _("probation period (days)"), default=90, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    probation_rate_factor = models.DecimalField(
        _("sending speed on probation"),
        max_digits=3,
        decimal_places=2,
        default=Decimal("0.50"),
        validators=[MinValueValidator(Decimal("0.05")), MaxValueValidator(Decimal("1"))],
        help_text=_("Share of the normal sending rate while on probation (0.5 = half speed)."),
    )
    platform_bounce_alarm = _percent(
        _("platform alarm: bounce rate (%)"),
        "4",
        _("Over all accounts; SES reviews the whole SES account at 5%."),
    )
    platform_complaint_alarm = _percent(
        _("platform alarm: complaint rate (%)"),
        "0.08",
        _("Over all accounts; SES reviews the whole SES account at 0.1%."),
    )
    count_simulator_traffic = models.BooleanField(
        _("count mailbox-simulator traffic"),
        default=False,
        help_text=_("Only for demos and tests: mail to @simulator.amazonses.com is not real mail."),
    )
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("reputation thresholds")
        verbose_name_plural = _("reputation thresholds")
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="reputation_thresholds_singleton"),
            models.CheckConstraint(
                condition=Q(warning_bounce_rate__lt=F("probation_bounce_rate"))
                & Q(probation_bounce_rate__lt=F("suspended_bounce_rate")),
                name="reputation_bounce_levels_rise",
                violation_error_message=_("Bounce rates must rise: warning < probation < suspension."),
            ),
            models.CheckConstraint(
                condition=Q(warning_complaint_rate__lt=F("probation_complaint_rate"))
                & Q(probation_complaint_rate__lt=F("suspended_complaint_rate")),
                name="reputation_complaint_levels_rise",
                violation_error_message=_("Complaint rates must rise: warning < probation < suspension."),
            ),
        ]

    def __str__(self) -> str:
        return str(_("Reputation thresholds"))

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        forget_thresholds()

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        for kind in ("bounce", "complaint"):
            warning, probation, suspended = (getattr(self, f"{level}_{kind}_rate") for level in LEVEL_PREFIXES)
            if None in (warning, probation, suspended):
                continue
            if probation <= warning:
                errors[f"probation_{kind}_rate"] = _("Must be higher than the warning level (%(value)s%%).") % {
                    "value": warning
                }
            if suspended <= probation:
                errors[f"suspended_{kind}_rate"] = _("Must be higher than the probation level (%(value)s%%).") % {
                    "value": probation
                }
        if errors:
            raise ValidationError(errors)

    @classmethod
    def current(cls) -> Thresholds:
        """The stored row, or the defaults when it is missing (never fails a send or a job)."""
        return cls.objects.filter(pk=cls.SINGLETON_PK).first() or cls(pk=cls.SINGLETON_PK)

    @classmethod
    def cached(cls) -> Thresholds:
        """:meth:`current`, read at most once per :data:`THRESHOLDS_MAX_AGE` seconds per process: for
        the hot paths (every provider event, every rate-limiter call). Jobs use :meth:`current`."""
        now = time.monotonic()
        held = _THRESHOLDS_CACHE.get("row")
        if held is None or now - held[0] > THRESHOLDS_MAX_AGE:
            held = (now, cls.current())
            _THRESHOLDS_CACHE["row"] = held
        return held[1]

    def levels(self, kind: str) -> list[tuple[str, Decimal]]:
        """``[(standing, rate), ...]`` from the strictest level down, for ``bounce`` or ``complaint``."""
        return [
            (Standing.SUSPENDED, getattr(self, f"suspended_{kind}_rate")),
            (Standing.PROBATION, getattr(self, f"probation_{kind}_rate")),
            (Standing.WARNING, getattr(self, f"warning_{kind}_rate")),
        ]


LEVEL_PREFIXES = ("warning", "probation", "suspended")
THRESHOLDS_MAX_AGE = 60.0
_THRESHOLDS_CACHE: dict[str, tuple[float, Thresholds]] = {}


def forget_thresholds() -> None:
    """Drop this process's cached thresholds (after an edit, and between tests)."""
    _THRESHOLDS_CACHE.clear()


class DailyCounter(models.Model):
    """What one sending account's mail did on one UTC day, counted from the provider's events.

    Written only with ``INSERT ... ON CONFLICT DO UPDATE SET x = x + n`` (see
    :mod:`deliverability.reputation.counters`), so concurrent workers never lose an increment."""

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(_("day (UTC)"))
    sent = models.BigIntegerField(_("sent"), default=0)
    delivered = models.BigIntegerField(_("delivered"), default=0)
    hard_bounces = models.BigIntegerField(_("hard bounces"), default=0)
    soft_bounces = models.BigIntegerField(_("transient bounces"), default=0)
    complaints = models.BigIntegerField(_("complaints"), default=0)

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("daily reputation counter")
        verbose_name_plural = _("daily reputation counters")
        ordering = ("-day", "sending_account")
        constraints = [
            models.UniqueConstraint(fields=("sending_account", "day"), name="reputation_counter_one_per_day"),
        ]

    def __str__(self) -> str:
        return f"{self.sending_account_id} · {self.day}"


class CountedEvent(models.Model):
    """The identity of a provider event already counted: the same event delivered twice (SES
    publishes at least once) is counted once. Kept a little longer than the window, then purged."""

    key = models.UUIDField(primary_key=True)
    counted_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = _("counted event")
        verbose_name_plural = _("counted events")

    def __str__(self) -> str:
        return str(self.key)


class ReputationState(models.Model):
    """The latest evaluation of an account, and two baselines that make windows start at a moment:

    - after the XES team lifted a probation or suspension, the events that led to it must not put
      the account straight back: the window then ignores the days before ``floor_day`` and, on that
      day, what had been counted before the lift (``floor_counts``);
    - a probation ends after clean days judged on the mail sent since it began: those windows start
      at ``probation_day`` / ``probation_counts`` (taken when the probation began)."""

    sending_account = models.OneToOneField(
        SendingAccount, on_delete=models.CASCADE, primary_key=True, related_name="reputation"
    )
    evaluated_at = models.DateTimeField(_("evaluated"), null=True, blank=True)
    sent = models.BigIntegerField(_("sent in the window"), default=0)
    delivered = models.BigIntegerField(_("delivered in the window"), default=0)
    hard_bounces = models.BigIntegerField(_("hard bounces in the window"), default=0)
    complaints = models.BigIntegerField(_("complaints in the window"), default=0)
    bounce_rate = models.DecimalField(_("bounce rate (%)"), max_digits=7, decimal_places=3, null=True, blank=True)
    complaint_rate = models.DecimalField(_("complaint rate (%)"), max_digits=7, decimal_places=3, null=True, blank=True)
    floor_day = models.DateField(_("window starts on"), null=True, blank=True)
    floor_counts = models.JSONField(default=dict, blank=True)
    probation_day = models.DateField(_("probation began on"), null=True, blank=True)
    probation_counts = models.JSONField(default=dict, blank=True)

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("reputation state")
        verbose_name_plural = _("reputation states")

    def __str__(self) -> str:
        return str(self.sending_account_id)


class StandingChange(models.Model):
    """One entry of an account's reputation history: a change of standing, or a note of the XES team.

    ``reason`` is shown to the customer (with the numbers); ``notes`` are the XES team's own."""

    class Kind(models.TextChoices):
        AUTOMATIC = "automatic", _("Automatic")
        TEAM = "team", _("XES team")
        NOTE = "note", _("Note")

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="standing_changes")
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices, default=Kind.AUTOMATIC)
    old = models.CharField(_("from"), max_length=20, choices=Standing.choices)
    new = models.CharField(_("to"), max_length=20, choices=Standing.choices)
    reason = models.TextField(_("reason"))
    notes = models.TextField(_("XES team notes"), blank=True)
    figures = models.JSONField(_("figures"), default=dict, blank=True)
    at = models.DateTimeField(_("at"), default=timezone.now)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("by"),
        help_text=_("Empty: the reputation monitor."),
    )

    tenant_organisation_path = ACCOUNT_ORG
    tenant_client_path = ACCOUNT_CLIENT
    objects = TenantManager()

    class Meta:
        verbose_name = _("standing change")
        verbose_name_plural = _("standing changes")
        ordering = ("-at", "-pk")
        indexes = [models.Index(fields=("sending_account", "-at"), name="reputation_history_by_account")]

    def __str__(self) -> str:
        if self.kind == self.Kind.NOTE:
            return f"{self.sending_account} · {_('note')}"
        return f"{self.sending_account}: {self.get_old_display()} → {self.get_new_display()}"

    @property
    def is_change(self) -> bool:
        return self.kind != self.Kind.NOTE


class Alarm(models.Model):
    """Something the XES team must look at: a review opened on few e-mails, an account on probation
    or suspended, or the platform's own rates approaching SES's review levels.

    At most one open alarm per kind and account (the platform alarm has no account)."""

    class Kind(models.TextChoices):
        REVIEW = "review", _("Review")
        PROBATION = "probation", _("Probation")
        SUSPENSION = "suspension", _("Suspension")
        PLATFORM = "platform", _("Platform rates")

    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    sending_account = models.ForeignKey(
        SendingAccount, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    message = models.TextField(_("message"))
    figures = models.JSONField(_("figures"), default=dict, blank=True)
    opened_at = models.DateTimeField(_("opened"), default=timezone.now)
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolution = models.TextField(_("resolution"), blank=True)

    class Meta:
        verbose_name = _("alarm")
        verbose_name_plural = _("alarms")
        ordering = (F("resolved_at").desc(nulls_first=True), "-opened_at")
        constraints = [
            models.UniqueConstraint(
                fields=("kind", "sending_account"),
                condition=Q(resolved_at__isnull=True),
                nulls_distinct=False,
                name="reputation_one_open_alarm",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.sending_account or _('all accounts')}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class WatchedAccount(SendingAccount):
    """Sending accounts as the XES team reviews them (the admin's reputation list and its actions)."""

    class Meta:
        proxy = True
        verbose_name = _("account under watch")
        verbose_name_plural = _("accounts under watch")
