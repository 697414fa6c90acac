"""The suppression list of each sending account: addresses it never sends to again.

Reputation is per sending account, so suppressions are too. Provider events (hard bounces,
complaints: :func:`suppress_from_event`), unsubscribes and people adding an address by hand (one
at a time, or a CSV file: :func:`import_csv`) all end up here through :func:`suppress` or in bulk;
the sending engine asks :func:`suppressed_set` (or :func:`suppression_reasons` for a batch that
mixes promotional and transactional mail) once per batch. Transactional mail ignores unsubscribes,
never hard bounces, complaints or manual entries (:data:`TRANSACTIONAL_IGNORES`).

Addresses are stored normalised (:func:`accounts.services.normalise_email`: trimmed, domain in
lower case and punycode) and compared without regard to case: mailbox names are case-sensitive in
theory, but suppressing ``Ann@x`` and still mailing ``ann@x`` would hurt the reputation in practice.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parseaddr
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.db.models.functions import Lower
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from accounts.models import SendingAccount, User
from accounts.services import ServiceError, normalise_email
from deliverability.models import Suppression
from plans.resources import FORMULA_TRIGGERS, escape_formula

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


def is_suppressed(account: SendingAccount, email: str, *, transactional: bool = False) -> bool:
    """Whether ``account`` must not send to ``email`` (see :func:`suppressed_set` for ``transactional``)."""
    return bool(suppressed_set(account, [email], transactional=transactional))


# Transactional mail (receipts, password resets) is what the recipient asked for: an unsubscribe
# from promotions does not stop it. What the recipient's side reported (hard bounce, complaint)
# does, and so does a manual entry: the customer decided not to mail that address at all.
TRANSACTIONAL_IGNORES = frozenset({Reason.UNSUBSCRIBE})


def blocks(reason: str, *, transactional: bool = False) -> bool:
    """Whether a suppression for ``reason`` stops a message (``transactional`` or promotional)."""
    return bool(reason) and not (transactional and reason in TRANSACTIONAL_IGNORES)


def blocking_reasons(*, transactional: bool = False) -> frozenset[str]:
    """The reasons that stop a message of that kind (for queries that filter in SQL)."""
    return frozenset(reason for reason in _STRENGTH if blocks(reason, transactional=transactional))


def suppression_reasons(account: SendingAccount, emails: Iterable[str]) -> dict[str, str]:
    """The suppression reason of each address of ``emails`` (as given) that ``account`` has listed, in
    one query: for a batch that mixes promotional and transactional messages, with :func:`blocks`."""
    by_key: dict[str, list[str]] = {}
    for email in emails:
        by_key.setdefault(_key(email), []).append(email)
    if not by_key:
        return {}
    found = (
        Suppression.objects.filter(sending_account=account)
        .annotate(key=Lower("email"))
        .filter(key__in=list(by_key))
        .values_list("key", "reason")
    )
    reasons: dict[str, str] = {}
    for key, reason in found:
        for email in by_key[key]:
            # Two entries differing only in case: the stronger reason counts.
            if _STRENGTH.get(reason, 0) >= _STRENGTH.get(reasons.get(email, ""), 0):
                reasons[email] = reason
    return reasons


def suppressed_set(account: SendingAccount, emails: Iterable[str], *, transactional: bool = False) -> set[str]:
    """The addresses of ``emails`` (as given) that ``account`` must not send to, in one query.

    Promotional mail (the default) stops at every suppression; ``transactional=True`` ignores
    unsubscribes (:data:`TRANSACTIONAL_IGNORES`) but never hard bounces, complaints or manual
    entries. An address that does not parse is compared as it is; the sending engine refuses it anyway.
    """
    return {
        email
        for email, reason in suppression_reasons(account, emails).items()
        if blocks(reason, transactional=transactional)
    }


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


# --- from provider events -----------------------------------------------------------------

# What SES reports that puts an address on the list. A transient or undetermined bounce does not
# (the mailbox may be full today); a complaint whose feedback type says "not-spam" is no complaint.
NOT_SPAM_FEEDBACK = "not-spam"
EVENT_NOTE_MAX = 200


def suppress_from_event(event: dict[str, Any], sending_account_id: int | None) -> list[Suppression]:
    """Put what a provider event reports on the sending account's list: the recipients of a
    permanent bounce (``HARD_BOUNCE``) and of a complaint (``COMPLAINT``); returns the entries.

    Idempotent per address (:func:`suppress`). SES mailbox-simulator addresses are listed like any
    other, as SES's own suppression list would: the simulator is how customers try the list out;
    only the reputation counters leave simulator traffic out (PRODUCT.md).
    """
    if sending_account_id is None or not isinstance(event, dict):
        return []
    kind = event.get("eventType") or event.get("notificationType")
    if kind == "Bounce":
        details = event.get("bounce")
        if not isinstance(details, dict) or details.get("bounceType") != "Permanent":
            return []
        reason, recipients = Reason.HARD_BOUNCE, details.get("bouncedRecipients")
        note = _event_note(event, "bounce", details.get("bounceSubType"))
    elif kind == "Complaint":
        details = event.get("complaint")
        if not isinstance(details, dict) or details.get("complaintFeedbackType") == NOT_SPAM_FEEDBACK:
            return []
        reason, recipients = Reason.COMPLAINT, details.get("complainedRecipients")
        note = _event_note(event, "complaint", details.get("complaintFeedbackType") or details.get("complaintSubType"))
    else:
        return []
    account = SendingAccount.objects.filter(pk=sending_account_id).first()
    if account is None or not isinstance(recipients, list):
        return []
    entries = []
    for recipient in recipients:
        address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(address, str):
            continue
        try:
            entries.append(suppress(account, parseaddr(address)[1] or address, reason, note=note))
        except ValidationError:
            logger.warning("provider event for account %s names an invalid address %r", account.pk, address[:100])
    return entries


def _event_note(event: dict[str, Any], what: str, subtype: Any) -> str:
    mail = event.get("mail") if isinstance(event.get("mail"), dict) else {}
    message_id = mail.get("messageId") if isinstance(mail, dict) else None
    parts = [what]
    if isinstance(subtype, str) and subtype:
        parts.append(f"({subtype[:40]})")
    if isinstance(message_id, str) and message_id:
        parts.append(f"message {message_id[:100]}")
    return " ".join(parts)[:EVENT_NOTE_MAX]


# --- CSV import and export ----------------------------------------------------------------

IMPORT_MAX_BYTES = 5 * 1024 * 1024
IMPORT_MAX_ROWS = 100_000
IMPORT_BATCH = 1000
IMPORT_ERRORS_KEPT = 200  # the page lists these; the counts cover every row
DELIMITERS = (",", ";", "\t", "|")
# Header names (lower case, letters and digits only) of the address and note columns.
EMAIL_HEADERS = frozenset(
    {"email", "emailaddress", "mail", "mailaddress", "address", "recipient", "emailadresse", "mailadresse", "adresse"}
)
NOTE_HEADERS = frozenset({"note", "notes", "comment", "comments", "notiz", "bemerkung", "kommentar"})
EXPORT_COLUMNS = ("email", "reason", "note", "added_at", "added_by")


@dataclass
class ImportResult:
    """What an import did, or would do (``dry_run``). Row numbers are those a spreadsheet shows."""

    dry_run: bool
    rows: int = 0
    new: int = 0
    already: int = 0  # listed before, for any reason (their entry stays as it is)
    duplicates: int = 0  # repeated within the file (any case)
    error_count: int = 0
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (row, value, message)

    def error(self, row: int, value: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < IMPORT_ERRORS_KEPT:
            self.errors.append((row, value[:254], message))


def _squash(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _unescape(value: str) -> str:
    """Undo our export's formula escape (a leading apostrophe before ``= + - @``)."""
    if value.startswith("'") and value[1:2] and value[1] in FORMULA_TRIGGERS:
        return value[1:]
    return value


def read_csv(data: bytes) -> list[list[str]]:
    """The records of an uploaded CSV file (UTF-8 with or without BOM, or UTF-16 with BOM; the
    delimiter is guessed from the first line). Raises ``ServiceError`` for a file it cannot read."""
    if len(data) > IMPORT_MAX_BYTES:
        raise ServiceError(
            _("The file is larger than %(size)d MB. Split it into smaller files.")
            % {"size": IMPORT_MAX_BYTES // (1024 * 1024)}
        )
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise ServiceError(_("The file is not valid UTF-16 text.")) from exc
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ServiceError(
                _("Line %(line)d is not valid UTF-8 text. Save the file as “CSV UTF-8” and upload it again.")
                % {"line": line}
            ) from exc
    if "\x00" in text:
        raise ServiceError(_("This is not a CSV file."))
    first_line = text.split("\n", 1)[0]
    delimiter = max(DELIMITERS, key=first_line.count) if any(d in first_line for d in DELIMITERS) else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[list[str]] = []
    try:
        for record in reader:
            records.append(record)
            if len(records) > IMPORT_MAX_ROWS + 1:
                raise ServiceError(
                    _("The file has more than %(max)s rows. Split it into smaller files.")
                    % {"max": f"{IMPORT_MAX_ROWS:,}"}
                )
    except csv.Error as exc:
        raise ServiceError(
            _("Line %(line)d cannot be read as CSV: %(error)s") % {"line": reader.line_num, "error": exc}
        ) from exc
    return records


def _columns(first: list[str]) -> tuple[int, int | None, bool]:
    """(address column, note column, whether ``first`` is a header)."""
    names = [_squash(cell) for cell in first]
    for index, name in enumerate(names):
        if name in EMAIL_HEADERS:
            note = next((i for i, n in enumerate(names) if n in NOTE_HEADERS), None)
            return index, note, True
    for index, cell in enumerate(first):
        if "@" in cell:
            return index, None, False
    raise ServiceError(
        _("No column of e-mail addresses found. Name the column “email”, or start the file with an address.")
    )


def import_csv(
    account: SendingAccount, data: bytes, *, dry_run: bool, by: User | None = None, note: str = ""
) -> ImportResult:
    """Add the addresses of a CSV file to ``account``'s list as manual entries.

    Every row is checked on its own: an empty or invalid address is reported with its row number and
    skipped, the other rows still count (and, unless ``dry_run``, are added). Addresses are
    normalised like everywhere (:func:`accounts.services.normalise_email`); one already listed, for
    whatever reason, keeps its entry. A ``note`` column is used when there is one, else ``note``.
    Raises ``ServiceError`` (nothing added) for a file that cannot be read at all.
    """
    records = read_csv(data)
    result = ImportResult(dry_run=dry_run)
    if not records:
        raise ServiceError(_("The file is empty."))
    email_column, note_column, has_header = _columns(records[0])
    note_max = Suppression._meta.get_field("note").max_length or 300
    default_note = note.strip()[:note_max]
    stamp = timezone.now()
    seen: set[str] = set()
    batch: list[tuple[str, str]] = []
    with transaction.atomic():
        for number, cells in enumerate(records, start=1):
            if (has_header and number == 1) or not any(cell.strip() for cell in cells):
                continue
            result.rows += 1
            raw = _unescape(cells[email_column].strip()) if email_column < len(cells) else ""
            if not raw:
                result.error(number, "", _("No e-mail address in this row."))
                continue
            try:
                address = normalise_email(raw)
            except ValidationError as exc:
                result.error(number, raw, " ".join(exc.messages))
                continue
            if address.lower() in seen:
                result.duplicates += 1
                continue
            seen.add(address.lower())
            row_note = cells[note_column].strip() if note_column is not None and note_column < len(cells) else ""
            batch.append((address, (_unescape(row_note) or default_note)[:note_max]))
            if len(batch) >= IMPORT_BATCH:
                _import_batch(account, batch, result, stamp=stamp, by=by)
                batch = []
        _import_batch(account, batch, result, stamp=stamp, by=by)
    if not dry_run:
        logger.info(
            "suppression import: account=%s new=%s by=%s", account.pk, result.new, by.pk if by is not None else None
        )
    return result


def _import_batch(
    account: SendingAccount, batch: list[tuple[str, str]], result: ImportResult, *, stamp: Any, by: User | None
) -> None:
    """Count (and unless a dry run, insert) one batch: one look-up of the listed addresses, one insert."""
    if not batch:
        return
    keys = [address.lower() for address, _note in batch]
    listed = set(
        Suppression.objects.filter(sending_account=account)
        .annotate(key=Lower("email"))
        .filter(key__in=keys)
        .values_list("key", flat=True)
    )
    fresh = [(address, note) for address, note in batch if address.lower() not in listed]
    result.already += len(batch) - len(fresh)
    if result.dry_run:
        result.new += len(fresh)
        return
    Suppression.objects.bulk_create(
        [
            Suppression(
                sending_account=account, email=address, reason=Reason.MANUAL, note=note, created_at=stamp, created_by=by
            )
            for address, note in fresh
        ],
        ignore_conflicts=True,  # an address suppressed meanwhile keeps its own entry
    )
    inserted = Suppression.objects.filter(
        sending_account=account, email__in=[address for address, _note in fresh], created_at=stamp
    ).count()
    result.new += inserted
    result.already += len(fresh) - inserted


def export_rows(listed: QuerySet[Suppression]) -> Iterator[list[str]]:
    """The header and one row per entry for a CSV export, every text cell formula-safe
    (:func:`plans.resources.escape_formula`): addresses and notes are typed by people."""
    yield list(EXPORT_COLUMNS)
    for entry in listed.select_related("created_by").order_by("pk").iterator(chunk_size=2000):
        yield [
            escape_formula(entry.email),
            entry.reason,
            escape_formula(entry.note),
            entry.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            escape_formula(entry.created_by.email if entry.created_by else ""),
        ]
