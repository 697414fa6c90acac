"""Plans, subscriptions with 12-month terms, add-ons, orders and the append-only credit ledger.

Balances are kept on :class:`Subscription` (per term) and :class:`CreditAccount` (overage) for speed,
always changed in the same transaction as the ledger entry that explains them, and can be rebuilt
from the ledger alone (:func:`plans.services.rebuild_balances`).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from accounts.models import Client, Organisation, SendingAccount, User
from plans.constants import CUSTOM_PLAN_MIN_EMAILS
from xes_portal.lib.tenancy import TenantManager, TenantQuerySet


class Plan(models.Model):
    """A product of the catalogue: e-mails per year and the price per 1,000 beyond them."""

    class Eligibility(models.TextChoices):
        ANY = "any", _("Any customer")
        NEW_CROSS_MEDIA = "new_cross_media", _("New customers with a cross-media configuration, once")
        CLOUD_EMEDIA = "cloud_emedia", _("Included for cloud e-media customers")
        CUSTOM = "custom", _("Custom plan for one organisation (XES team only)")

    code = models.SlugField(_("code"), max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=100)
    emails_per_year = models.PositiveBigIntegerField(_("e-mails per year"), validators=[MinValueValidator(1)])
    price_per_1000 = models.DecimalField(
        _("price per 1,000 extra e-mails (USD)"), max_digits=8, decimal_places=2, validators=[MinValueValidator(0)]
    )
    annual_fee = models.DecimalField(
        _("annual fee (USD)"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=_("Leave empty for “price on request”; 0 for free."),
    )
    eligibility = models.CharField(_("who may get it"), max_length=20, choices=Eligibility.choices)
    free_first_year = models.BooleanField(_("free for the first year"), default=False)
    renewable = models.BooleanField(_("renewable"), default=True)
    orderable = models.BooleanField(_("orderable in the portal"), default=True)
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="custom_plans",
        help_text=_("Custom plans only: the organisation it was made for."),
    )
    sort_order = models.PositiveIntegerField(_("order in the catalogue"), default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("plan")
        verbose_name_plural = _("plans")
        ordering = ("sort_order", "emails_per_year")
        constraints = [
            models.CheckConstraint(
                condition=~Q(eligibility="custom")
                | (Q(emails_per_year__gt=CUSTOM_PLAN_MIN_EMAILS) & Q(organisation__isnull=False)),
                name="plan_custom_needs_org_and_volume",
                violation_error_message=_(
                    "A custom plan belongs to one organisation and includes more than 30,000,000 e-mails a year."
                ),
            ),
            models.CheckConstraint(
                condition=Q(eligibility="custom") | Q(organisation__isnull=True),
                name="plan_only_custom_has_org",
                violation_error_message=_("Only custom plans belong to one organisation."),
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_custom(self) -> bool:
        return self.eligibility == self.Eligibility.CUSTOM


class CreditAccount(models.Model):
    """Per organisation: overage settings, overage balances and the row every credit change locks.

    Locking this one row serialises all credit movements of an organisation, which keeps the
    balances exact under any number of concurrent workers.
    """

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="credit_account")
    allow_overage = models.BooleanField(
        _("allow overage"),
        default=True,
        help_text=_("Keep sending beyond the included e-mails, at your plan's price per 1,000."),
    )
    monthly_overage_limit = models.DecimalField(
        _("monthly overage limit (USD)"),
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(0)],
        help_text=_("Optional. Sending that would cost more overage in a calendar month is refused."),
    )
    overage_reserved = models.BigIntegerField(default=0)
    overage_used = models.BigIntegerField(default=0)
    # Pool notifications already sent: the highest level (80, 100) for the current set of terms.
    notified_level = models.PositiveSmallIntegerField(default=0)
    notified_pool_key = models.CharField(max_length=200, blank=True, default="")

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("credit account")
        verbose_name_plural = _("credit accounts")

    def __str__(self) -> str:
        return str(self.organisation)


class Order(models.Model):
    """An owner's order of a plan or an add-on; the XES team approves it (no online payment)."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting for approval")
        APPROVED = "approved", _("Approved")
        REJECTED = "rejected", _("Rejected")
        CANCELLED = "cancelled", _("Cancelled")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="orders")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, null=True, blank=True, related_name="orders")
    addon = models.ForeignKey("AddOnProduct", on_delete=models.PROTECT, null=True, blank=True, related_name="orders")
    domain = models.CharField(_("domain"), max_length=253, blank=True)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    note = models.TextField(_("note from the customer"), blank=True)
    requested_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(_("ordered"), default=timezone.now)
    decided_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    decision_note = models.TextField(_("reason or note from the XES team"), blank=True)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(
                condition=(Q(plan__isnull=False) & Q(addon__isnull=True))
                | (Q(plan__isnull=True) & Q(addon__isnull=False) & ~Q(domain="")),
                name="order_plan_xor_addon_with_domain",
            ),
        ]

    def __str__(self) -> str:
        item = self.plan or f"{self.addon} ({self.domain})"
        return f"{self.organisation}: {item}"


class Subscription(models.Model):
    """One 12-month term of a plan: its included e-mails and what is left of them.

    ``available`` + ``reserved`` + ``used`` + expired e-mails always equal what was granted
    (plus adjustments); unused e-mails expire at ``ends_at`` and never roll over.
    """

    class Origin(models.TextChoices):
        ORDER = "order", pgettext_lazy("origin of a term", "Order")
        STARTER = "starter", _("Included with cloud e-media")
        XES_TEAM = "xes_team", _("Created by the XES team")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    origin = models.CharField(_("origin"), max_length=20, choices=Origin.choices, default=Origin.ORDER)
    order = models.OneToOneField(Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="subscription")
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    included_emails = models.PositiveBigIntegerField(_("included e-mails"))
    price_per_1000 = models.DecimalField(_("price per 1,000 extra"), max_digits=8, decimal_places=2)
    ended_early_at = models.DateTimeField(_("ended early"), null=True, blank=True)
    expired_at = models.DateTimeField(_("expiry processed"), null=True, blank=True)
    available = models.BigIntegerField(_("available"), default=0)
    reserved = models.BigIntegerField(_("reserved"), default=0)
    used = models.BigIntegerField(_("used"), default=0)
    created_at = models.DateTimeField(default=timezone.now)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("subscription term")
        verbose_name_plural = _("subscription terms")
        ordering = ("ends_at", "starts_at", "pk")
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="subscription_ends_after_start"
            ),
            models.CheckConstraint(condition=Q(available__gte=0), name="subscription_available_not_negative"),
            models.CheckConstraint(condition=Q(reserved__gte=0), name="subscription_reserved_not_negative"),
        ]
        indexes = [models.Index(fields=("organisation", "ends_at"))]

    def __str__(self) -> str:
        return f"{self.plan} {self.starts_at:%Y-%m-%d}–{self.ends_at:%Y-%m-%d}"

    def is_active(self, at: datetime | None = None) -> bool:
        at = at or timezone.now()
        return self.starts_at <= at < self.ends_at and self.expired_at is None


class AddOnProduct(models.Model):
    """An extra sold per domain with a 12-month term (PRODUCT.md: ASP, dedicated IP, extra account)."""

    class Kind(models.TextChoices):
        ADVANCED_SENDER = "advanced_sender", _("Advanced Sender Package")
        DEDICATED_IP = "dedicated_ip", _("Dedicated IP")
        ADDITIONAL_ACCOUNT = "additional_account", _("Additional sending account")

    kind = models.CharField(_("kind"), max_length=30, choices=Kind.choices, unique=True)
    name = models.CharField(_("name"), max_length=100)
    description = models.TextField(_("description"), blank=True)
    annual_fee = models.DecimalField(
        _("annual fee per domain (USD)"), max_digits=12, decimal_places=2, null=True, blank=True
    )
    orderable = models.BooleanField(_("orderable in the portal"), default=True)

    class Meta:
        verbose_name = _("add-on")
        verbose_name_plural = _("add-ons")
        ordering = ("kind",)

    def __str__(self) -> str:
        return self.name


class AddOnSubscription(models.Model):
    """An add-on for one domain, valid for 12 months."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="addons")
    product = models.ForeignKey(AddOnProduct, on_delete=models.PROTECT, related_name="subscriptions")
    domain = models.CharField(_("domain"), max_length=253)
    order = models.OneToOneField(
        Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="addon_subscription"
    )
    starts_at = models.DateTimeField(_("starts"))
    ends_at = models.DateTimeField(_("ends"))
    created_at = models.DateTimeField(default=timezone.now)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("add-on term")
        verbose_name_plural = _("add-on terms")
        ordering = ("domain", "ends_at")
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="addon_ends_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.product} · {self.domain}"

    def is_active(self, at: datetime | None = None) -> bool:
        at = at or timezone.now()
        return self.starts_at <= at < self.ends_at


class ClientAllocation(models.Model):
    """A yearly cap on what one client may draw from the organisation's pool."""

    class Mode(models.TextChoices):
        HARD = "hard", _("Hard: refuse sending beyond the cap")
        SOFT = "soft", _("Soft: warn the owner, keep sending")

    client = models.OneToOneField(Client, on_delete=models.CASCADE, related_name="allocation")
    yearly_cap = models.PositiveBigIntegerField(_("e-mails per year"), validators=[MinValueValidator(1)])
    mode = models.CharField(_("kind of cap"), max_length=10, choices=Mode.choices, default=Mode.HARD)
    period_start = models.DateField(
        _("cap year starts"), help_text=_("The cap counts from this day, then again every 12 months.")
    )
    warned_period_start = models.DateField(null=True, blank=True, editable=False)

    tenant_organisation_path = "client__organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("client cap")
        verbose_name_plural = _("client caps")

    def __str__(self) -> str:
        return f"{self.client}: {self.yearly_cap:,} ({self.mode})"


class Reservation(models.Model):
    """Credits set aside for messages about to be sent; consumed on acceptance, else released."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="reservations")
    client = models.ForeignKey(Client, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    sending_account = models.ForeignKey(
        SendingAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    purpose = models.CharField(_("purpose"), max_length=200, blank=True)
    quantity = models.PositiveBigIntegerField(_("reserved"))
    consumed = models.PositiveBigIntegerField(_("consumed"), default=0)
    released = models.PositiveBigIntegerField(_("released"), default=0)
    created_at = models.DateTimeField(default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("reservation")
        verbose_name_plural = _("reservations")
        ordering = ("-created_at",)
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=models.F("consumed") + models.F("released")), name="reservation_not_overdrawn"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity:,} for {self.purpose or self.organisation}"

    @property
    def outstanding(self) -> int:
        return self.quantity - self.consumed - self.released


class ReservationPart(models.Model):
    """The share of a reservation drawn from one term, or from overage (``subscription`` empty)."""

    reservation = models.ForeignKey(Reservation, on_delete=models.CASCADE, related_name="parts")
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    price_per_1000 = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    quantity = models.PositiveBigIntegerField()
    consumed = models.PositiveBigIntegerField(default=0)
    released = models.PositiveBigIntegerField(default=0)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ("reservation", "position")
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=models.F("consumed") + models.F("released")), name="part_not_overdrawn"
            ),
            models.CheckConstraint(
                condition=Q(subscription__isnull=False) | Q(price_per_1000__isnull=False), name="overage_part_has_price"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity:,} from {self.subscription or 'overage'}"

    @property
    def outstanding(self) -> int:
        return self.quantity - self.consumed - self.released


class LedgerIsAppendOnly(Exception):
    """Raised on any attempt to change or delete a ledger entry."""


class CreditEntryQuerySet(TenantQuerySet["CreditEntry"]):
    """The ledger's queryset: no bulk update or delete (cascades use the base manager and still work)."""

    def update(self, **kwargs: Any) -> int:
        raise LedgerIsAppendOnly("The credit ledger is append-only: add an adjust entry instead.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise LedgerIsAppendOnly("The credit ledger is append-only: entries are never deleted.")


class CreditEntryManager(models.Manager.from_queryset(CreditEntryQuerySet)):  # type: ignore[misc]
    """Default manager of the ledger."""


class CreditEntry(models.Model):
    """One movement of credits. Append-only: never updated, never deleted.

    ``emails`` is positive, except for ``adjust``. Its effect on the term (or, without a term, on
    the overage balance) follows from ``kind``; see :data:`plans.services.EFFECTS`.
    """

    class Kind(models.TextChoices):
        GRANT = "grant", pgettext_lazy("ledger entry kind", "Grant")
        RESERVE = "reserve", _("Reserve")
        CONSUME = "consume", _("Consume")
        RELEASE = "release", _("Release")
        EXPIRE = "expire", _("Expire")
        ADJUST = "adjust", pgettext_lazy("ledger entry kind", "Adjust")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="credit_entries")
    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    reservation = models.ForeignKey(
        Reservation, on_delete=models.PROTECT, null=True, blank=True, related_name="entries"
    )
    client = models.ForeignKey(Client, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    sending_account = models.ForeignKey(
        SendingAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(_("kind"), max_length=10, choices=Kind.choices)
    emails = models.BigIntegerField(_("e-mails"))
    price_per_1000 = models.DecimalField(
        _("overage price per 1,000"), max_digits=8, decimal_places=2, null=True, blank=True
    )
    reason = models.CharField(_("reason"), max_length=300, blank=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"
    objects = CreditEntryManager()

    class Meta:
        verbose_name = _("ledger entry")
        verbose_name_plural = _("credit ledger")
        ordering = ("created_at", "pk")
        indexes = [models.Index(fields=("organisation", "kind", "created_at"))]
        constraints = [
            models.CheckConstraint(condition=Q(kind="adjust") | Q(emails__gt=0), name="entry_positive_unless_adjust"),
            models.CheckConstraint(condition=~Q(kind="adjust") | ~Q(reason=""), name="entry_adjust_has_reason"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.emails:,}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise LedgerIsAppendOnly("The credit ledger is append-only: add an adjust entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise LedgerIsAppendOnly("The credit ledger is append-only: entries are never deleted.")

    @property
    def is_overage(self) -> bool:
        return self.subscription_id is None and self.kind in {"reserve", "consume", "release"}


def overage_amount(emails: int, price_per_1000: Decimal) -> Decimal:
    """Overage cost: pro rata per e-mail, rounded half up to the cent (stated in the UI)."""
    from plans.constants import CENT, PRICE_UNIT

    return (Decimal(emails) * price_per_1000 / PRICE_UNIT).quantize(CENT, rounding="ROUND_HALF_UP")
