"""Domain actions of the accounts app. Views and the admin call these; they hold the rules."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from hashlib import sha256
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.constants import DISPLAY_NAME_MAX_LENGTH
from accounts.models import (
    ApiKey,
    Client,
    Invitation,
    Membership,
    Organisation,
    SenderAddress,
    SenderVerificationEmail,
    SendingAccount,
    User,
)
from xes_portal.lib import emails
from xes_portal.lib.domains import normalise_domain

SENDER_TOKEN_SALT = "accounts.sender-verification"
INVITATION_TOKEN_SALT = "accounts.invitation"
API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)
EMAIL_MAX_LENGTH = 254


class ServiceError(Exception):
    """A rule refused the action; ``str(exc)`` is a message fit for the user."""


class RateLimited(ServiceError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnverifiedSender(ServiceError):
    pass


# --- organisations and signup -------------------------------------------------------------


def create_organisation(owner: User, name: str) -> Organisation:
    """A new service provider with ``owner`` as its owner (what sign-up does)."""
    with transaction.atomic():
        organisation = Organisation.objects.create(name=name.strip(), billing_email=owner.email)
        Membership.objects.create(user=owner, organisation=organisation, role=Membership.Role.OWNER)
    return organisation


# --- e-mail addresses ---------------------------------------------------------------------


def normalise_email(raw: str) -> str:
    """Trim, lower-case the domain and turn an IDN domain into punycode; refuse what is not an address.

    The local part keeps its case: RFC 5321 lets the receiving server decide about it.
    """
    invalid = ValidationError(_("Enter a valid e-mail address, like name@example.com."))
    value = raw.strip()
    if _has_control_character(value):
        raise invalid
    local, sep, domain = value.rpartition("@")
    if not sep or not local or not domain:
        raise invalid
    address = f"{local}@{normalise_domain(domain)}"
    try:
        validate_email(address)
    except ValidationError as exc:
        raise invalid from exc
    # RFC 5321's limit, checked after punycode: an IDN domain grows when encoded.
    if len(address) > EMAIL_MAX_LENGTH:
        raise ValidationError(
            _("The address is too long (at most %(max)d characters, counting an international domain encoded).")
            % {"max": EMAIL_MAX_LENGTH}
        )
    return address


def _has_control_character(value: str) -> bool:
    """CR, LF and the other controls or invisible line/paragraph separators that can break a header."""
    return any(unicodedata.category(char) in {"Cc", "Cf", "Zl", "Zp"} for char in value)


def clean_display_name(raw: str) -> str:
    """Refuse characters that could break or inject into a mail header (CR, LF and other controls)."""
    # Checked before trimming: a trailing CR/LF is refused too, never silently dropped.
    if _has_control_character(raw):
        raise ValidationError(
            _("The display name contains a line break or another invisible control character; remove it.")
        )
    value = raw.strip()
    if len(value) > DISPLAY_NAME_MAX_LENGTH:
        raise ValidationError(
            _("The display name is too long (at most %(max)d characters).") % {"max": DISPLAY_NAME_MAX_LENGTH}
        )
    return value


# --- sender addresses and their verification ----------------------------------------------


class LinkStatus(StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    USED = "used"
    INVALID = "invalid"


@dataclass(frozen=True)
class LinkCheck:
    status: LinkStatus
    sender: SenderAddress | None = None


def _email_fingerprint(email: str) -> str:
    return sha256(email.lower().encode()).hexdigest()[:16]


def make_sender_token(sender: SenderAddress) -> str:
    """A signed, timestamped token naming the address, its e-mail and the current nonce."""
    payload = {"s": sender.pk, "e": _email_fingerprint(sender.email), "n": sender.verification_nonce}
    return signing.dumps(payload, salt=SENDER_TOKEN_SALT)


def check_sender_token(token: str) -> LinkCheck:
    """Classify a verification link: valid, expired, used (or superseded), or invalid (tampered)."""
    expired = False
    try:
        payload = signing.loads(token, salt=SENDER_TOKEN_SALT, max_age=settings.SENDER_VERIFICATION_MAX_AGE)
    except signing.SignatureExpired:
        expired = True
        payload = signing.loads(token, salt=SENDER_TOKEN_SALT)
    except signing.BadSignature:
        return LinkCheck(LinkStatus.INVALID)
    if not isinstance(payload, dict):
        return LinkCheck(LinkStatus.INVALID)
    sender = SenderAddress.objects.select_related("sending_account__organisation").filter(pk=payload.get("s")).first()
    if sender is None or payload.get("e") != _email_fingerprint(sender.email):
        return LinkCheck(LinkStatus.INVALID)
    if sender.is_verified or not sender.verification_nonce or payload.get("n") != sender.verification_nonce:
        return LinkCheck(LinkStatus.USED, sender)
    if expired:
        return LinkCheck(LinkStatus.EXPIRED, sender)
    return LinkCheck(LinkStatus.VALID, sender)


def add_sender_address(
    account: SendingAccount, email: str, display_name: str, created_by: User | None
) -> SenderAddress:
    """Register a From address (unverified) and e-mail its confirmation link."""
    address = normalise_email(email)
    name = clean_display_name(display_name)
    duplicate = ValidationError(
        _("%(email)s is already a sender address of this account.")
        % {"email": SenderAddress(email=address).email_display}
    )
    if SenderAddress.objects.filter(sending_account=account, email__iexact=address).exists():
        raise duplicate
    try:
        with transaction.atomic():
            sender = SenderAddress.objects.create(
                sending_account=account, email=address, display_name=name, created_by=created_by
            )
            send_sender_verification(sender)
    except IntegrityError as exc:
        # A double-submitted form: the unique constraint catches what the check above raced past.
        raise duplicate from exc
    return sender


def send_sender_verification(sender: SenderAddress) -> None:
    """Issue a new link (older ones stop working) and e-mail it after commit. Rate-limited."""
    if sender.is_verified:
        raise ServiceError(_("%(email)s is already verified.") % {"email": sender.email_display})
    now = timezone.now()
    with transaction.atomic():
        locked = SenderAddress.objects.select_for_update().get(pk=sender.pk)
        recent = SenderVerificationEmail.objects.filter(sender=locked, sent_at__gt=now - timedelta(hours=1))
        last = recent.order_by("-sent_at").first()
        interval = settings.SENDER_VERIFICATION_RESEND_INTERVAL
        if last is not None and (now - last.sent_at).total_seconds() < interval:
            wait = interval - int((now - last.sent_at).total_seconds())
            raise RateLimited(
                ngettext(
                    "A link was sent moments ago. Please wait %(seconds)d second before asking for another.",
                    "A link was sent moments ago. Please wait %(seconds)d seconds before asking for another.",
                    wait,
                )
                % {"seconds": wait},
                retry_after=wait,
            )
        if recent.count() >= settings.SENDER_VERIFICATION_MAX_PER_HOUR:
            oldest = recent.order_by("sent_at").first()
            assert oldest is not None
            wait = int((oldest.sent_at + timedelta(hours=1) - now).total_seconds()) + 1
            raise RateLimited(
                ngettext(
                    "Too many links were sent for this address in the last hour. "
                    "Please try again in %(minutes)d minute.",
                    "Too many links were sent for this address in the last hour. "
                    "Please try again in %(minutes)d minutes.",
                    max(1, wait // 60),
                )
                % {"minutes": max(1, wait // 60)},
                retry_after=wait,
            )
        locked.verification_nonce = secrets.token_hex(16)
        locked.save(update_fields=["verification_nonce"])
        SenderVerificationEmail.objects.create(sender=locked, sent_at=now)
        sender.verification_nonce = locked.verification_nonce
        token = make_sender_token(locked)
        account = locked.sending_account
        url = settings.SITE_URL + reverse("verify_sender", args=[token])
        transaction.on_commit(
            lambda: emails.sender_verification(
                locked.email,
                verify_url=url,
                sender_display=locked.email_display,
                account_name=account.name,
                organisation_name=account.organisation.name,
                valid_hours=settings.SENDER_VERIFICATION_MAX_AGE // 3600,
            )
        )


def confirm_sender(token: str) -> LinkCheck:
    """Verify the address named by a valid link; the link cannot be used again."""
    with transaction.atomic():
        check = check_sender_token(token)
        if check.status != LinkStatus.VALID or check.sender is None:
            return check
        # The conditional UPDATE makes two simultaneous clicks verify once.
        updated = SenderAddress.objects.filter(
            pk=check.sender.pk, verified_at__isnull=True, verification_nonce=check.sender.verification_nonce
        ).update(verified_at=timezone.now(), verification_nonce="")
        if not updated:
            return LinkCheck(LinkStatus.USED, check.sender)
        check.sender.refresh_from_db()
        return check


def assert_sender_can_send(sender: SenderAddress) -> None:
    """The one gate every send passes: only verified addresses of accounts that may send."""
    if not sender.is_verified:
        raise UnverifiedSender(
            _("%(email)s is not verified yet. Click the link in the verification e-mail first.")
            % {"email": sender.email_display}
        )
    if not sender.sending_account.may_send:
        raise ServiceError(_("Sending account “%(name)s” is suspended.") % {"name": sender.sending_account.name})


# --- members and invitations --------------------------------------------------------------


def invite_member(
    organisation: Organisation, email: str, role: str, client: Client | None, invited_by: User
) -> Invitation:
    """Create an invitation and e-mail its link after commit."""
    address = normalise_email(email).lower()
    if role == Membership.Role.CLIENT_USER and client is None:
        raise ValidationError(_("Choose the client whose data this client user may see."))
    if role != Membership.Role.CLIENT_USER:
        client = None
    if client is not None and client.organisation_id != organisation.pk:
        raise ValidationError(_("Choose one of your own clients."))
    if Membership.objects.filter(organisation=organisation, user__email__iexact=address).exists():
        raise ValidationError(_("%(email)s is already a member.") % {"email": address})
    # A new invitation replaces any open one for the same address: only the newest link works.
    Invitation.objects.filter(organisation=organisation, email__iexact=address, accepted_at__isnull=True).delete()
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=address,
        role=role,
        client=client,
        invited_by=invited_by,
        nonce=secrets.token_hex(16),
    )
    token = signing.dumps({"i": invitation.pk, "n": invitation.nonce}, salt=INVITATION_TOKEN_SALT)
    url = settings.SITE_URL + reverse("accept_invitation", args=[token])
    role_label = str(Membership.Role(role).label)
    transaction.on_commit(
        lambda: emails.invitation(
            address,
            accept_url=url,
            organisation_name=organisation.name,
            role_label=role_label,
            invited_by=invited_by.email,
            valid_days=settings.INVITATION_MAX_AGE // 86400,
        )
    )
    return invitation


def load_invitation(token: str) -> Invitation | None:
    """The open invitation a link names, or None if it is invalid, expired or already used."""
    try:
        payload: Any = signing.loads(token, salt=INVITATION_TOKEN_SALT, max_age=settings.INVITATION_MAX_AGE)
    except signing.BadSignature:
        return None
    invitation = Invitation.objects.select_related("organisation", "client").filter(pk=payload.get("i")).first()
    if invitation is None or invitation.accepted_at is not None or invitation.nonce != payload.get("n"):
        return None
    return invitation


def accept_invitation(invitation: Invitation, user: User) -> Membership:
    """Turn an invitation into a membership for ``user`` (whose e-mail must match)."""
    if user.email.lower() != invitation.email.lower():
        raise ServiceError(
            _("This invitation is for %(email)s. Log in with that address to accept it.") % {"email": invitation.email}
        )
    with transaction.atomic():
        claimed = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
            accepted_at=timezone.now()
        )
        if not claimed:
            raise ServiceError(_("This invitation has already been used."))
        membership, _created = Membership.objects.get_or_create(
            user=user,
            organisation=invitation.organisation,
            defaults={"role": invitation.role, "client": invitation.client},
        )
    return membership


def change_role(membership: Membership, role: str, client: Client | None) -> Membership:
    """Change a member's role; an organisation always keeps at least one owner."""
    if role == Membership.Role.CLIENT_USER and client is None:
        raise ValidationError(_("Choose the client whose data this client user may see."))
    if client is not None and client.organisation_id != membership.organisation_id:
        raise ValidationError(_("Choose one of your own clients."))
    with transaction.atomic():
        _lock_owners(membership.organisation)
        if membership.role == Membership.Role.OWNER and role != Membership.Role.OWNER:
            _ensure_other_owner(membership)
        membership.role = role
        membership.client = client if role == Membership.Role.CLIENT_USER else None
        membership.save(update_fields=["role", "client"])
    return membership


def remove_member(membership: Membership) -> None:
    with transaction.atomic():
        _lock_owners(membership.organisation)
        if membership.role == Membership.Role.OWNER:
            _ensure_other_owner(membership)
        membership.delete()


def _lock_owners(organisation: Organisation) -> None:
    # Lock the organisation row: two owners demoting each other at once cannot leave none.
    Organisation.objects.select_for_update().get(pk=organisation.pk)


def _ensure_other_owner(membership: Membership) -> None:
    others = Membership.objects.filter(organisation=membership.organisation, role=Membership.Role.OWNER).exclude(
        pk=membership.pk
    )
    if not others.exists():
        raise ServiceError(_("An organisation needs at least one owner. Make someone else owner first."))


# --- sending accounts: how many an organisation may have --------------------------------

# Plans decide the allowance (the first account is included, each Additional-account add-on adds
# one), but accounts must not import plans (DESIGN.md: dependencies point one way). So plans
# registers its rule here at start-up; without one, there is no limit.
SendingAccountLimit = Callable[[Organisation], int]
_sending_account_limit: SendingAccountLimit | None = None


def set_sending_account_limit(func: SendingAccountLimit | None) -> None:
    """Register the function that tells how many sending accounts an organisation may have
    (``None`` removes it). Called from ``plans.apps.PlansConfig.ready``."""
    global _sending_account_limit  # a one-slot registry, set once at start-up
    _sending_account_limit = func


def sending_accounts_allowed(organisation: Organisation) -> int | None:
    """How many sending accounts ``organisation`` may have now; ``None`` when no rule is registered."""
    return None if _sending_account_limit is None else _sending_account_limit(organisation)


# --- API keys -----------------------------------------------------------------------------


def create_api_key(account: SendingAccount, name: str, created_by: User | None) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw secret, which is never stored or shown again."""
    prefix, raw = ApiKey.generate()
    key = ApiKey.objects.create(
        sending_account=account, name=name.strip(), prefix=prefix, hashed_key=ApiKey.hash(raw), created_by=created_by
    )
    return key, raw


def revoke_api_key(key: ApiKey) -> None:
    ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    key.refresh_from_db()


def authenticate_api_key(raw: str) -> ApiKey | None:
    """The active key for a raw secret, recording when it was last used (at most once a minute)."""
    key = (
        ApiKey.objects.active()
        .select_related("sending_account__organisation", "sending_account__client")
        .filter(hashed_key=ApiKey.hash(raw))
        .first()
    )
    if key is None:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > API_KEY_TOUCH_INTERVAL:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
