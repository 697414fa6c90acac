"""Tenancy and identity: who the customer is, who may act for it, and what it may send from."""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from typing import Any, ClassVar

from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.constants import API_KEY_PREFIX, ROLE_PERMS, Perm
from xes_portal.lib.domains import domain_display
from xes_portal.lib.tenancy import TenantManager, TenantQuerySet


class UserManager(BaseUserManager["User"]):
    """Users are identified by e-mail address; there is no username."""

    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who logs in. XES team members are ``is_staff``; customers have memberships."""

    username = None  # type: ignore[assignment]
    email = models.EmailField(_("e-mail address"), unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects: ClassVar[UserManager] = UserManager()  # type: ignore[assignment]

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")
        ordering = ("email",)

    def __str__(self) -> str:
        return self.email


DEFAULT_TIME_ZONE = "Europe/Berlin"


def validate_time_zone(value: str) -> None:
    """An IANA time zone name such as Europe/Berlin (not in the migration as choices: the list
    changes with each tzdata release)."""
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("%(zone)s is not a time zone we know, e.g. Europe/Berlin.") % {"zone": value})


def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name.replace("_", " ")) for name in sorted(zoneinfo.available_timezones()) if "/" in name]


class Organisation(models.Model):
    """A service provider: holds the plans and credits, owns clients and sending accounts."""

    name = models.CharField(_("name"), max_length=200)
    billing_email = models.EmailField(_("billing e-mail"), blank=True)
    # Set by the XES team; they decide which plans the organisation may get (PRODUCT.md).
    has_cross_media_configuration = models.BooleanField(
        _("has a cross-media configuration"),
        default=False,
        help_text=_("PersonalEffect TransMedia, TransMedia Pro or Enterprise Cross Media: may get BASIC."),
    )
    is_cloud_emedia_customer = models.BooleanField(
        _("is a cloud e-media customer"),
        default=False,
        help_text=_("Pays for PersonalEffect eMedia Cloud: STARTER is included while this holds."),
    )
    # Times are stored in UTC; pages show scheduled sends in the organisation's own time zone.
    time_zone = models.CharField(
        _("time zone"), max_length=64, default=DEFAULT_TIME_ZONE, validators=[validate_time_zone]
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "pk"

    objects = TenantManager()

    class Meta:
        verbose_name = _("organisation")
        verbose_name_plural = _("organisations")
        ordering = ("name",)

    def __str__(self) -> str:
        return self.name


class Client(models.Model):
    """A customer of a service provider; shares the organisation's e-mail volume."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="clients")
    name = models.CharField(_("name"), max_length=200)
    contact_email = models.EmailField(_("contact e-mail"), blank=True)
    notes = models.TextField(_("notes"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "pk"

    objects = TenantManager()

    class Meta:
        verbose_name = _("client")
        verbose_name_plural = _("clients")
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("organisation", "name"), name="client_unique_name_per_org"),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in one organisation; client-users are bound to one client."""

    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        MEMBER = "member", _("Member")
        CLIENT_USER = "client_user", _("Client user")

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(_("role"), max_length=20, choices=Role.choices, default=Role.MEMBER)
    client = models.ForeignKey(
        Client,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="memberships",
        help_text=_("Only for client users: the one client whose data they see."),
    )
    created_at = models.DateTimeField(_("joined"), default=timezone.now)

    tenant_organisation_path = "organisation"

    objects = TenantManager()

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        ordering = ("organisation", "user__email")
        constraints = [
            models.UniqueConstraint(fields=("user", "organisation"), name="membership_unique_user_org"),
            models.CheckConstraint(
                condition=(Q(role="client_user") & Q(client__isnull=False))
                | (~Q(role="client_user") & Q(client__isnull=True)),
                name="membership_client_iff_client_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.organisation} ({self.get_role_display()})"

    @property
    def is_client_user(self) -> bool:
        return self.role == self.Role.CLIENT_USER

    def can(self, perm: Perm | str) -> bool:
        return Perm(perm) in ROLE_PERMS[self.role]


class Invitation(models.Model):
    """An e-mailed invitation to join an organisation with a role; accepted once."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField(_("e-mail address"))
    role = models.CharField(_("role"), max_length=20, choices=Membership.Role.choices)
    client = models.ForeignKey(Client, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    nonce = models.CharField(max_length=32, default="", editable=False)
    created_at = models.DateTimeField(_("sent"), default=timezone.now)
    accepted_at = models.DateTimeField(_("accepted"), null=True, blank=True)

    tenant_organisation_path = "organisation"

    objects = TenantManager()

    class Meta:
        verbose_name = _("invitation")
        verbose_name_plural = _("invitations")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.email} → {self.organisation}"


class SendingAccount(models.Model):
    """The unit of reputation: its own SES configuration set, its own standing.

    Belongs to the organisation and optionally to one client, so that one client's bad
    list hygiene cannot hurt the others (PRODUCT.md, "Additional accounts").
    """

    class Standing(models.TextChoices):
        GOOD = "good", _("Good")
        WARNING = "warning", _("Warning")
        PROBATION = "probation", _("Probation")
        SUSPENDED = "suspended", _("Suspended")

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="sending_accounts")
    client = models.ForeignKey(Client, on_delete=models.PROTECT, null=True, blank=True, related_name="sending_accounts")
    name = models.CharField(_("name"), max_length=100)
    standing = models.CharField(_("standing"), max_length=20, choices=Standing.choices, default=Standing.GOOD)
    standing_changed_at = models.DateTimeField(_("standing changed"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    tenant_organisation_path = "organisation"
    tenant_client_path = "client"

    objects = TenantManager()

    class Meta:
        verbose_name = _("sending account")
        verbose_name_plural = _("sending accounts")
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(fields=("organisation", "name"), name="sendingaccount_unique_name_per_org"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def may_send(self) -> bool:
        return self.standing != self.Standing.SUSPENDED


class SenderAddress(models.Model):
    """A From address of a sending account. Usable only after its owner clicked the e-mailed link."""

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="sender_addresses")
    email = models.EmailField(_("e-mail address"), max_length=254)
    display_name = models.CharField(_("display name"), max_length=100, blank=True)
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    # Rotated with every new link and cleared on success: older links stop working (single use).
    verification_nonce = models.CharField(max_length=32, default="", editable=False)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(_("added"), default=timezone.now)

    tenant_organisation_path = "sending_account__organisation"
    tenant_client_path = "sending_account__client"

    objects = TenantManager()

    class Meta:
        verbose_name = _("sender address")
        verbose_name_plural = _("sender addresses")
        ordering = ("email",)
        constraints = [
            models.UniqueConstraint(fields=("sending_account", "email"), name="sender_unique_per_account"),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None

    @property
    def email_display(self) -> str:
        """The address with an IDN domain shown readable (stored as punycode)."""
        local, _sep, domain = self.email.rpartition("@")
        return f"{local}@{domain_display(domain)}"


class SenderVerificationEmail(models.Model):
    """One verification e-mail sent for a sender address: the audit trail and the rate limit."""

    sender = models.ForeignKey(SenderAddress, on_delete=models.CASCADE, related_name="verification_emails")
    sent_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("verification e-mail")
        verbose_name_plural = _("verification e-mails")
        ordering = ("-sent_at",)

    def __str__(self) -> str:
        return f"{self.sender} @ {self.sent_at:%Y-%m-%d %H:%M}"


class ApiKeyQuerySet(TenantQuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A secret for the REST API, bound to one sending account. Shown once, stored as a hash."""

    sending_account = models.ForeignKey(SendingAccount, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(_("name"), max_length=100)
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    tenant_organisation_path = "sending_account__organisation"
    tenant_client_path = "sending_account__client"

    objects = models.Manager.from_queryset(ApiKeyQuerySet)()

    class Meta:
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def hash(raw_key: str) -> str:
        # The key has 256 bits of entropy, so a fast hash is safe and keeps lookups O(1).
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def generate(cls) -> tuple[str, str]:
        """Return (prefix, raw key). The raw key is ``xes_<prefix>_<secret>``."""
        prefix = secrets.token_hex(4)
        return prefix, f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
