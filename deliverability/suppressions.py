"""The suppression list of each sending account: addresses it never sends to again.

Reputation is per sending account, so suppressions are too. Provider events (hard bounces,
complaints), unsubscribes and people adding an address by hand all end up here through
:func:`suppress`; the sending engine asks :func:`suppressed_set` once per batch.

Addresses are stored normalised (:func:`accounts.services.normalise_email`: trimmed, domain in
lower case and punycode) and compared without regard to case: mailbox names are case-sensitive in
theory, but suppressing ``Ann@x`` and still mailing ``ann@x`` would hurt the reputation in practice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import formats
from django.utils.translation import gettext as _

from accounts.models import SendingAccount, User
from accounts.services import ServiceError, normalise_email
from deliverability.models import Suppression

logger = logging.getLogger(__name__)

Reason = Suppression.Reason

# What the recipient's side told us outranks what the sender decided: a later complaint or hard
# bounce replaces an unsubscribe or a manual entry (and then can no longer be removed).
_STRENGTH: dict[str, int] = {
    Reason.HARD_BOUNCE: 2,
    Reason.COMPLAINT: 2,
    Reason.UNSUBSCRIBE: 1,
    Reason.MANUAL: 1,
}
REMOVABLE = frozenset({Reason.MANUAL})


def find(account: SendingAccount, email: str) -> Suppression | None:
    """The suppression of ``email`` (any case) for ``account``, if there is one."""
    return Suppression.objects.filter(sending_account=account, email__iexact=email.strip()).first()


def is_suppressed(account: SendingAccount, email: str) -> bool:
    """Whether ``account`` must not send to ``email``."""
    return bool(suppressed_set(account, [email]))


def suppressed_set(account: SendingAccount, emails: Iterable[str]) -> set[str]:
    """The addresses of ``emails`` (as given) that ``account`` must not send to, in one query.

    An address that does not parse is compared as it is; the sending engine refuses it anyway.
    """
    by_key: dict[str, list[str]] = {}
    for email in emails:
        by_key.setdefault(_key(email), []).append(email)
    if not by_key:
        return set()
    found = (
        Suppression.objects.filter(sending_account=account)
        .annotate(key=Lower("email"))
        .filter(key__in=list(by_key))
        .values_list("key", flat=True)
    )
    return {email for key in found for email in by_key[key]}


def _key(email: str) -> str:
    # The sending engine asks for every message; its addresses were normalised when stored, and
    # for a plain ASCII address normalising would only lower-case the domain.
    if email.isascii() and email == email.strip():
        return email.lower()
    try:
        return normalise_email(email).lower()
    except ValidationError:
        return email.strip().lower()


def suppress(account: SendingAccount, email: str, reason: str, note: str = "", by: User | None = None) -> Suppression:
    """Put ``email`` on the account's suppression list; idempotent.

    An address already listed keeps its entry (and its date); only a stronger reason replaces the
    reason: a complaint or hard bounce beats an unsubscribe or a manual entry. Raises
    ``ValidationError`` for what is not an e-mail address.
    """
    address = normalise_email(email)
    if reason not in _STRENGTH:
        raise ValueError(f"unknown suppression reason {reason!r}")
    note = note.strip()[: Suppression._meta.get_field("note").max_length]
    with transaction.atomic():
        existing = (
            Suppression.objects.select_for_update().filter(sending_account=account, email__iexact=address).first()
        )
        if existing is None:
            try:
                # A savepoint: a concurrent suppress of the same address may win the insert.
                with transaction.atomic():
                    return Suppression.objects.create(
                        sending_account=account, email=address, reason=reason, note=note, created_by=by
                    )
            except IntegrityError:
                existing = Suppression.objects.select_for_update().get(sending_account=account, email=address)
        if _STRENGTH[reason] > _STRENGTH[existing.reason]:
            existing.reason = reason
            existing.note = note or existing.note
            existing.save(update_fields=["reason", "note"])
        return existing


def add_manual(account: SendingAccount, email: str, note: str = "", by: User | None = None) -> Suppression:
    """A person adds an address by hand. Raises ``ValidationError`` for an invalid address or one
    that is already listed (saying since when and why)."""
    address = normalise_email(email)
    existing = find(account, address)
    if existing is not None:
        raise ValidationError(already_suppressed_message(existing), code="duplicate")
    return suppress(account, address, Reason.MANUAL, note=note, by=by)


def already_suppressed_message(suppression: Suppression) -> str:
    return _("%(email)s is already suppressed since %(date)s (%(reason)s).") % {
        "email": suppression.email,
        "date": formats.date_format(suppression.created_at, "DATE_FORMAT"),
        "reason": suppression.get_reason_display(),
    }


def why_not_removable(suppression: Suppression) -> str:
    """Why customers may not take ``suppression`` off the list (empty when they may)."""
    reasons = {
        Reason.HARD_BOUNCE: _(
            "The receiving server said this address does not exist. Sending to it again would count as "
            "another hard bounce against this account's reputation."
        ),
        Reason.COMPLAINT: _(
            "The recipient marked your e-mail as spam. Mailing them again risks more complaints, which can "
            "put the account on probation."
        ),
        Reason.UNSUBSCRIBE: _(
            "The recipient unsubscribed. Only they can undo that, by subscribing again; the law and the "
            "mailbox providers require it."
        ),
    }
    return "" if suppression.reason in REMOVABLE else str(reasons.get(Reason(suppression.reason), ""))


def unsuppress(suppression: Suppression, by: User | None) -> None:
    """Take a manual entry off the list. Other reasons stay (raises ``ServiceError`` with why):
    the XES team can remove any entry in the admin."""
    reason = why_not_removable(suppression)
    if reason:
        raise ServiceError(reason)
    deleted, _rows = Suppression.objects.filter(pk=suppression.pk, reason__in=REMOVABLE).delete()
    if deleted:
        logger.info(
            "suppression removed: account=%s email=%s by=%s",
            suppression.sending_account_id,
            suppression.email,
            by.pk if by else None,
        )
