"""Contacts, typed custom fields and lists: the rules, for the views, the import and the API.

Values of custom fields are stored in ``Contact.fields`` as JSON: numbers as numbers, dates as ISO
strings, booleans as booleans, choices as the defined spelling. :func:`coerce_value` is the one
place that turns typed-in or imported text into those values, with messages fit for the user.

Who may do what: every member of the organisation may manage contacts and lists in their scope
(client-users only their client's: ``for_membership``). Custom fields are organisation-wide
definitions and shape every client's data, so only the organisation's own staff (not client-users)
may add or remove them (:func:`can_manage_fields`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import tablib
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from import_export import fields as ie_fields
from import_export import resources

from accounts.models import Client, Membership, Organisation
from accounts.services import EMAIL_MAX_LENGTH, ServiceError, normalise_email
from campaigns.models import Contact, ContactList, CustomField, ListMembership, identifier
from plans.resources import FormulaSafeMixin, NativeNumberWidget, UtcDateTimeWidget
from plans.resources import render as render_dataset

# Columns every contact has; a custom field may not take these keys.
BUILTIN_KEYS = ("email", "first_name", "last_name")
RESERVED_KEYS = frozenset({*BUILTIN_KEYS, "id", "client", "lists", "created_at", "updated_at", "rules"})
NAME_MAX_LENGTH = 100
TEXT_MAX_LENGTH = 2000
MAX_CHOICES = 100

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "x", "on", "ja", "j", "wahr"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off", "nein", "falsch"})
# ISO first; then the day-first forms of our (European) customers. Month-first US dates are
# deliberately not guessed: 03/04/2025 would silently mean the wrong day for half the users.
DATE_FORMATS = ("%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%d.%m.%y")
NUMBER_RE = re.compile(r"^[+-]?(\d+|\d{1,3}([ ,.'’]\d{3})+)?([.,]\d+)?$")


def can_manage_fields(membership: Membership) -> bool:
    """Whether the membership may add or remove custom fields (organisation staff, not client-users)."""
    return not membership.is_client_user


# --- custom fields ------------------------------------------------------------------------


def fields_for(organisation: Organisation | int) -> QuerySet[CustomField]:
    """The organisation's custom fields (readable by every member, client-users included)."""
    return CustomField.objects.filter(organisation=organisation).order_by("label", "pk")


def _parse_number(raw: str) -> int | float:
    text = raw.strip().replace("\u00a0", " ")
    if not NUMBER_RE.match(text) or not any(c.isdigit() for c in text):
        raise ValidationError(_("“%(value)s” is not a number.") % {"value": raw})
    # The last "." or "," followed by 1-2 or 4+ digits, or the only separator, is the decimal mark.
    body = text.replace(" ", "").replace("'", "").replace("’", "")
    last = max(body.rfind("."), body.rfind(","))
    if last >= 0:
        head, tail = body[:last], body[last + 1 :]
        grouped = len(tail) == 3 and ("." in head or "," in head or body.count(body[last]) > 1)
        if grouped:
            body = head.replace(".", "").replace(",", "") + tail
        else:
            body = head.replace(".", "").replace(",", "") + "." + tail
    try:
        number = Decimal(body)
    except InvalidOperation as exc:
        raise ValidationError(_("“%(value)s” is not a number.") % {"value": raw}) from exc
    if not number.is_finite() or abs(number) >= Decimal(10) ** 15:
        raise ValidationError(_("“%(value)s” is too large a number.") % {"value": raw})
    return int(number) if number == number.to_integral_value() else float(number)


def coerce_value(field: CustomField, raw: Any) -> Any:
    """The stored value of ``raw`` for ``field``, or ``None`` for an empty input.

    ``raw`` is usually text (a form or a CSV cell); XLSX cells may also be numbers, dates or booleans.
    Raises ``ValidationError`` with a message that names the problem and what would be accepted.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    kind = field.type
    if kind == CustomField.Type.NUMBER:
        if isinstance(raw, bool):
            raise ValidationError(_("“%(value)s” is not a number.") % {"value": raw})
        if isinstance(raw, int | float | Decimal):
            return _parse_number(str(raw))
        return _parse_number(str(raw))
    if kind == CustomField.Type.DATE:
        if isinstance(raw, datetime):
            return raw.date().isoformat()
        if isinstance(raw, date):
            return raw.isoformat()
        text = str(raw).strip()
        for fmt in DATE_FORMATS:
            try:
                return datetime.strptime(text, fmt).date().isoformat()  # noqa: DTZ007 - a calendar date
            except ValueError:
                continue
        raise ValidationError(
            _("“%(value)s” is not a date. Use the form 2025-03-31 (or 31.03.2025).") % {"value": text}
        )
    if kind == CustomField.Type.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS:
            return False
        raise ValidationError(_("“%(value)s” is not yes or no (use yes/no, true/false or 1/0).") % {"value": raw})
    if kind == CustomField.Type.CHOICE:
        text = str(raw).strip()
        for choice in field.choices:
            if choice.casefold() == text.casefold():
                return choice
        raise ValidationError(
            _("“%(value)s” is not one of the choices: %(choices)s.")
            % {"value": text, "choices": ", ".join(field.choices)}
        )
    text = str(raw).strip()
    if len(text) > TEXT_MAX_LENGTH:
        raise ValidationError(_("The text is too long (at most %(max)d characters).") % {"max": TEXT_MAX_LENGTH})
    return text


# Plain ASCII addresses, the overwhelming majority of any import, whose normalised form is just the
# address with its domain lower-cased: a dot-atom local part (Django's ``validate_email`` syntax)
# and LDH domain labels with an alphabetic top-level domain. Anything else (IDN, quoted local parts,
# trailing dots, "--" in a label, IP literals, errors) goes through ``normalise_email`` itself.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_EMAIL_RE = re.compile(
    rf"^{_ATOM}(?:\.{_ATOM})*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,63}}\Z"
)
_PLAIN_INTEGER_RE = re.compile(r"^[+-]?[0-9]{1,15}\Z")
DOMAIN_MAX_LENGTH = 253


def normalise_email_fast(raw: str) -> str:
    """What :func:`accounts.services.normalise_email` returns (or raises) for ``raw``, at a fraction
    of its cost for plain ASCII addresses: those skip the IDNA codec and the per-call message
    translation. The import calls this once per row."""
    value = raw.strip()
    if len(value) <= EMAIL_MAX_LENGTH and _PLAIN_EMAIL_RE.match(value):
        local, _at, domain = value.rpartition("@")
        # IDNA refuses "--" in the third and fourth place of a label (and decodes "xn--" labels).
        if "--" not in domain and len(domain) <= DOMAIN_MAX_LENGTH:
            return f"{local}@{domain.lower()}"
    return normalise_email(raw)


def value_coercer(field: CustomField) -> Callable[[Any], Any]:
    """A function doing what ``coerce_value(field, raw)`` does, with shortcuts for the common cases
    (plain text, whole numbers) that skip the general parsing; everything else goes to
    :func:`coerce_value`, so results and messages are the same."""
    if field.type == CustomField.Type.TEXT:

        def coerce_text(raw: Any) -> Any:
            if isinstance(raw, str):
                text = raw.strip()
                if not text:
                    return None
                if len(text) <= TEXT_MAX_LENGTH:
                    return text
            return coerce_value(field, raw)

        return coerce_text
    if field.type == CustomField.Type.NUMBER:

        def coerce_number(raw: Any) -> Any:
            if isinstance(raw, str):
                text = raw.strip()
                if _PLAIN_INTEGER_RE.match(text):
                    return int(text)
            elif type(raw) is int and abs(raw) < 10**15:
                return raw
            return coerce_value(field, raw)

        return coerce_number
    return lambda raw: coerce_value(field, raw)


def parse_choices(raw: str | Iterable[str]) -> list[str]:
    """Choices typed one per line or separated by commas; trimmed, without duplicates (any case)."""
    items = re.split(r"[\n,]", raw) if isinstance(raw, str) else list(raw)
    seen: set[str] = set()
    result = []
    for item in (i.strip() for i in items):
        if item and item.casefold() not in seen:
            seen.add(item.casefold())
            result.append(item[:100])
    return result


def suggest_key(label: str) -> str:
    """A field key from a column header or label: ``"Customer number"`` → ``customer_number``."""
    key = re.sub(r"[^a-z0-9]+", "_", label.strip().lower()).strip("_")
    if not key or not key[0].isalpha():
        key = f"f_{key}" if key else "field"
    return key[:40].rstrip("_")


def create_custom_field(
    organisation: Organisation, *, key: str, label: str, type: str, choices: Iterable[str] | str = ()
) -> CustomField:
    """A new custom field; raises ``ValidationError`` (keyed by form field) when something is wrong."""
    key = key.strip()
    label = label.strip() or key
    errors: dict[str, list[str]] = {}
    try:
        identifier(key)
    except ValidationError as exc:
        errors.setdefault("key", []).extend(exc.messages)
    if key in RESERVED_KEYS:
        errors.setdefault("key", []).append(_("“%(key)s” is a built-in column; choose another key.") % {"key": key})
    if type not in CustomField.Type.values:
        errors.setdefault("type", []).append(_("Choose a type."))
    parsed = parse_choices(choices) if type == CustomField.Type.CHOICE else []
    if type == CustomField.Type.CHOICE and not parsed:
        errors.setdefault("choices", []).append(_("A choice field needs at least one choice."))
    if len(parsed) > MAX_CHOICES:
        errors.setdefault("choices", []).append(_("At most %(max)d choices.") % {"max": MAX_CHOICES})
    if not errors and CustomField.objects.filter(organisation=organisation, key=key).exists():
        errors.setdefault("key", []).append(_("A field with the key “%(key)s” already exists.") % {"key": key})
    if errors:
        raise ValidationError(errors)
    try:
        with transaction.atomic():
            return CustomField.objects.create(
                organisation=organisation, key=key, label=label[:100], type=type, choices=parsed
            )
    except IntegrityError as exc:  # created meanwhile by someone else
        raise ValidationError({"key": [_("A field with the key “%(key)s” already exists.") % {"key": key}]}) from exc


def delete_custom_field(field: CustomField) -> int:
    """Remove the field and its values from every contact of the organisation; returns contacts changed."""
    with transaction.atomic():
        changed = (
            Contact.objects.filter(organisation_id=field.organisation_id, fields__has_key=field.key)
            # One UPDATE: jsonb's "-" drops the key in the database, whatever the number of contacts.
            .update(fields=RawSQL("fields - %s", (field.key,)), updated_at=timezone.now())
        )
        field.delete()
    return changed


# --- contacts -----------------------------------------------------------------------------


def contacts_for(membership: Membership) -> QuerySet[Contact]:
    return Contact.objects.for_membership(membership).select_related("client")


def search_contacts(queryset: QuerySet[Contact], query: str) -> QuerySet[Contact]:
    """Contacts whose address or name contains ``query`` (any case)."""
    query = query.strip()
    if not query:
        return queryset
    condition = Q(email__icontains=query) | Q(first_name__icontains=query) | Q(last_name__icontains=query)
    if " " in query:
        first, _sep, last = query.partition(" ")
        condition |= Q(first_name__icontains=first.strip(), last_name__icontains=last.strip())
    return queryset.filter(condition)


def client_for_new(membership: Membership, chosen: Client | None) -> Client | None:
    """The client of a contact, list or import a membership creates: a client-user's own, always."""
    if membership.is_client_user:
        return membership.client
    if chosen is not None and chosen.organisation_id != membership.organisation_id:
        raise ServiceError(_("Choose one of your organisation's clients."))
    return chosen


def clean_contact_values(
    organisation: Organisation, data: dict[str, Any], custom_fields: Iterable[CustomField] | None = None
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Validate a contact's inputs (``email``, ``first_name``, ``last_name`` and custom-field keys).

    Returns ``(values, errors)``: values has the normalised e-mail, names and a ``fields`` dict of
    coerced, non-empty custom values; errors maps an input name to its messages."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {"fields": {}}
    try:
        values["email"] = normalise_email(str(data.get("email") or ""))
    except ValidationError as exc:
        errors["email"] = exc.messages
    for name in ("first_name", "last_name"):
        text = str(data.get(name) or "").strip()
        if len(text) > NAME_MAX_LENGTH:
            errors[name] = [_("At most %(max)d characters.") % {"max": NAME_MAX_LENGTH}]
        values[name] = text
    for field in custom_fields if custom_fields is not None else fields_for(organisation):
        try:
            value = coerce_value(field, data.get(field.key))
        except ValidationError as exc:
            errors[field.key] = exc.messages
        else:
            if value is not None:
                values["fields"][field.key] = value
    return values, errors


def _duplicate_error(email: str) -> ValidationError:
    return ValidationError({"email": [_("A contact with the address %(email)s already exists.") % {"email": email}]})


def create_contact(membership: Membership, data: dict[str, Any], *, client: Client | None = None) -> Contact:
    """A new contact in the membership's scope; ``ValidationError`` (keyed by input) when invalid."""
    organisation = membership.organisation
    client = client_for_new(membership, client)
    values, errors = clean_contact_values(organisation, data)
    if errors:
        raise ValidationError(errors)
    existing = Contact.objects.filter(organisation=organisation, client=client, email__iexact=values["email"])
    if existing.exists():
        raise _duplicate_error(values["email"])
    try:
        with transaction.atomic():
            return Contact.objects.create(organisation=organisation, client=client, **values)
    except IntegrityError as exc:
        raise _duplicate_error(values["email"]) from exc


def update_contact(contact: Contact, data: dict[str, Any]) -> Contact:
    """Change a contact from a complete form: an empty custom input clears that value."""
    values, errors = clean_contact_values(contact.organisation, data)
    if errors:
        raise ValidationError(errors)
    clash = (
        Contact.objects.filter(
            organisation_id=contact.organisation_id, client_id=contact.client_id, email__iexact=values["email"]
        )
        .exclude(pk=contact.pk)
        .exists()
    )
    if clash:
        raise _duplicate_error(values["email"])
    # Values of fields deleted meanwhile are gone; values of unknown keys are kept as they were.
    known = set(fields_for(contact.organisation_id).values_list("key", flat=True))
    kept = {k: v for k, v in contact.fields.items() if k not in known}
    contact.email = values["email"]
    contact.first_name = values["first_name"]
    contact.last_name = values["last_name"]
    contact.fields = {**kept, **values["fields"]}
    contact.updated_at = timezone.now()
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError as exc:
        raise _duplicate_error(values["email"]) from exc
    return contact


def delete_contacts(queryset: QuerySet[Contact]) -> int:
    """Delete contacts (their list memberships go with them); returns how many."""
    return queryset.delete()[1].get(Contact._meta.label, 0)


# --- lists --------------------------------------------------------------------------------


def create_list(membership: Membership, name: str, *, client: Client | None = None) -> ContactList:
    name = name.strip()
    if not name:
        raise ValidationError({"name": [_("Give the list a name.")]})
    return ContactList.objects.create(
        organisation=membership.organisation, client=client_for_new(membership, client), name=name[:100]
    )


def _same_scope(contact_list: ContactList, contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    """A list holds the contacts of its own client (or the organisation's own, without client)."""
    return contacts.filter(organisation_id=contact_list.organisation_id, client=contact_list.client_id)


def add_to_list(contact_list: ContactList, contacts: QuerySet[Contact]) -> int:
    """Add contacts to a list (those already on it stay as they are); returns how many were added."""
    ids = list(_same_scope(contact_list, contacts).values_list("pk", flat=True))
    before = contact_list.memberships.count()
    ListMembership.objects.bulk_create(
        [ListMembership(contact_list=contact_list, contact_id=pk) for pk in ids], ignore_conflicts=True
    )
    return contact_list.memberships.count() - before


def remove_from_list(contact_list: ContactList, contacts: QuerySet[Contact]) -> int:
    """Take contacts off a list (the contacts themselves stay); returns how many."""
    deleted, _by_model = ListMembership.objects.filter(contact_list=contact_list, contact__in=contacts).delete()
    return deleted


def lists_for_contact(contact: Contact) -> QuerySet[ContactList]:
    """Lists the contact could be on: same organisation and client."""
    return ContactList.objects.filter(organisation_id=contact.organisation_id, client_id=contact.client_id)


# --- export -------------------------------------------------------------------------------

EXPORT_FORMATS = ("csv", "xlsx")


class ContactResource(FormulaSafeMixin, resources.ModelResource):
    """Contacts with one column per custom field; every text cell escaped against formula injection
    (:class:`plans.resources.FormulaSafeMixin`), numbers stay numbers."""

    email = ie_fields.Field(attribute="email", column_name=gettext_lazy("E-mail"))
    first_name = ie_fields.Field(attribute="first_name", column_name=gettext_lazy("First name"))
    last_name = ie_fields.Field(attribute="last_name", column_name=gettext_lazy("Last name"))
    client = ie_fields.Field(attribute="client__name", column_name=gettext_lazy("Client"))
    created_at = ie_fields.Field(
        attribute="created_at", column_name=gettext_lazy("Created (UTC)"), widget=UtcDateTimeWidget()
    )

    class Meta:
        model = Contact
        fields = ("email", "first_name", "last_name", "client", "created_at")
        export_order = fields

    def __init__(self, custom_fields: Iterable[CustomField]) -> None:
        super().__init__()
        self.custom_fields = list(custom_fields)
        for field in self.custom_fields:
            widget = NativeNumberWidget() if field.type == CustomField.Type.NUMBER else None
            column = ie_fields.Field(column_name=field.label, widget=widget, dehydrate_method=self._dehydrator(field))
            self.fields[f"cf_{field.key}"] = column

    @staticmethod
    def _dehydrator(field: CustomField) -> Any:
        def dehydrate(contact: Contact) -> Any:
            value = contact.fields.get(field.key)
            if isinstance(value, bool):
                return str(_("yes") if value else _("no"))
            return "" if value is None else value

        return dehydrate

    def get_export_order(self) -> tuple[str, ...]:
        return (*self._meta.export_order, *(f"cf_{f.key}" for f in self.custom_fields))


def export_contacts(contacts: QuerySet[Contact], organisation: Organisation, fmt: str) -> bytes:
    """The contacts as a CSV (UTF-8) or XLSX file, safe to open in a spreadsheet."""
    if fmt not in EXPORT_FORMATS:
        raise ServiceError(_("Choose CSV or XLSX."))
    resource = ContactResource(fields_for(organisation))
    queryset = contacts.select_related("client").order_by(Lower("email"), "pk")
    dataset: tablib.Dataset = resource.export(queryset.iterator(chunk_size=2000), force_native_type=fmt == "xlsx")
    return render_dataset(dataset, fmt)
