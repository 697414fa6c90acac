"""Segments: recipients chosen by criteria, compiled to one SQL query over ``Contact``.

Definition format (``Segment.definition``, JSON)
-----------------------------------------------
A group is ``{"op": "and" | "or", "items": [item, ...]}``; an item is a condition or a group.
The root is a group; the builder nests one level (the root holds conditions and groups of
conditions), the engine accepts up to :data:`MAX_DEPTH` levels. An empty root matches every contact
of the segment's scope (its base list, if it has one). Conditions:

``{"type": "field", "field": <name>, "operator": <op>, "value": <value>}``
    ``field`` is ``email``, ``first_name``, ``last_name`` (text) or the key of one of the
    organisation's custom fields, whose type decides the operators:

    * text: ``equals``, ``not_equals``, ``contains``, ``not_contains``, ``starts_with``,
      ``is_empty``, ``is_not_empty`` (case-insensitive; the negations include contacts without a value)
    * number: ``eq``, ``ne``, ``lt``, ``lte``, ``gt``, ``gte`` (only contacts holding a number
      match), ``is_empty``, ``is_not_empty``
    * date: ``before``, ``after``, ``on`` (value ``"YYYY-MM-DD"``), ``within_last_days`` (value: a
      whole number of days, counted in the organisation's time zone, today included),
      ``is_empty``, ``is_not_empty``
    * boolean: ``is_true``, ``is_false`` (false or not set)
    * choice: ``in``, ``not_in`` (value: a list of the field's choices; ``not_in`` includes
      contacts without a value), ``is_empty``, ``is_not_empty``

``{"type": "rule", "rule": <name>, "operator": "is_true" | "is_false"}``
    A business rule of kind *condition* (:mod:`campaigns.rules`).

``{"type": "list", "list": <id>, "operator": "in" | "not_in"}``
    Membership of one of the organisation's lists.

``{"type": "campaign", "campaign": <id>, "operator": <op>, "link": <url, optional>}``
    Behaviour towards one campaign: ``received`` (a message of the campaign reached the contact:
    sent, delivered or complained), ``opened`` / ``clicked`` (an ``open`` / ``click`` event; with
    ``link``, a click on that URL), ``not_opened`` / ``not_clicked`` (received but no such event).

``{"type": "unsubscribed" | "bounced", "operator": "is_true" | "is_false", "campaign": <id, optional>}``
    Unsubscribed: an unsubscribe suppression of the campaign's sending account, or of any account
    of the organisation without a campaign. Bounced: a hard-bounce suppression (same scope) or a
    bounced message (of the campaign, or any of the organisation's).

Scope: a segment covers the contacts of its organisation and its client (organisation-level
segments cover the contacts without a client), and only those on its base list when it has one.
Every condition becomes a column test or an ``EXISTS`` subquery, so a contact appears once and
nothing is evaluated in Python per contact.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import math
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.db.models import CharField, Exists, Func, JSONField, OuterRef, Q, QuerySet, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Cast, Collate
from django.db.models.lookups import (
    Exact,
    GreaterThan,
    GreaterThanOrEqual,
    IContains,
    IExact,
    IsNull,
    IStartsWith,
    LessThan,
    LessThanOrEqual,
    Lookup,
    Regex,
)
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from campaigns.models import (
    Campaign,
    Contact,
    ContactList,
    CustomField,
    ListMembership,
    Message,
    MessageEvent,
    Rule,
    TrackedLink,
    url_hash,
)
from deliverability.models import Suppression

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

    from accounts.models import Client, Organisation
    from campaigns.models import Segment

MAX_DEPTH = 3
MAX_CONDITIONS = 100
COUNT_CACHE_SECONDS = 300

CONTACT_FIELDS: dict[str, StrOrPromise] = {
    "email": gettext_lazy("E-mail address"),
    "first_name": gettext_lazy("First name"),
    "last_name": gettext_lazy("Last name"),
}

OPERATOR_LABELS: dict[str, StrOrPromise] = {
    "equals": gettext_lazy("is"),
    "not_equals": gettext_lazy("is not"),
    "contains": gettext_lazy("contains"),
    "not_contains": gettext_lazy("does not contain"),
    "starts_with": gettext_lazy("starts with"),
    "is_empty": gettext_lazy("is empty"),
    "is_not_empty": gettext_lazy("is not empty"),
    "eq": "=",
    "ne": "≠",
    "lt": "<",
    "lte": "≤",
    "gt": ">",
    "gte": "≥",
    "before": gettext_lazy("is before"),
    "after": gettext_lazy("is after"),
    "on": pgettext_lazy("date condition", "is on"),
    "within_last_days": gettext_lazy("is within the last … days"),
    "is_true": gettext_lazy("is true"),
    "is_false": gettext_lazy("is false"),
    "in": gettext_lazy("is one of"),
    "not_in": gettext_lazy("is none of"),
    "received": gettext_lazy("received"),
    "opened": gettext_lazy("opened"),
    "clicked": gettext_lazy("clicked"),
    "not_opened": gettext_lazy("did not open"),
    "not_clicked": gettext_lazy("did not click"),
}

FIELD_OPERATORS: dict[str, tuple[str, ...]] = {
    CustomField.Type.TEXT: (
        "equals",
        "not_equals",
        "contains",
        "not_contains",
        "starts_with",
        "is_empty",
        "is_not_empty",
    ),
    CustomField.Type.NUMBER: ("eq", "ne", "lt", "lte", "gt", "gte", "is_empty", "is_not_empty"),
    CustomField.Type.DATE: ("before", "after", "on", "within_last_days", "is_empty", "is_not_empty"),
    CustomField.Type.BOOLEAN: ("is_true", "is_false"),
    CustomField.Type.CHOICE: ("in", "not_in", "is_empty", "is_not_empty"),
}
CAMPAIGN_OPERATORS = ("received", "opened", "clicked", "not_opened", "not_clicked")
LIST_OPERATORS = ("in", "not_in")
FLAG_OPERATORS = ("is_true", "is_false")
CONDITION_TYPES = ("field", "rule", "list", "campaign", "unsubscribed", "bounced")
# Operators that take no value.
VALUELESS = frozenset({"is_empty", "is_not_empty", "is_true", "is_false"})
# A message "reached" the contact in these states (a complaint proves delivery).
RECEIVED_STATUSES = (Message.Status.SENT, Message.Status.DELIVERED, Message.Status.COMPLAINED)
OPEN_EVENT = "open"
CLICK_EVENT = "click"
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Stored dates are ISO strings; anything else in the field never matches a date test.
_DATE_PREFIX_SQL_RE = r"^\d{4}-\d{2}-\d{2}"
MAX_DAYS = 36_500


class SegmentError(ValueError):
    """A definition that cannot be compiled (invalid, or refers to something that is gone)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def empty_definition() -> dict[str, Any]:
    return {"op": "and", "items": []}


# --- what a definition may refer to -------------------------------------------------------


@dataclass
class Catalogue:
    """The organisation's objects a definition may name, loaded once per validation or compile."""

    organisation: Organisation
    client: Client | None
    fields: dict[str, CustomField]
    rules: dict[str, Rule]
    lists: dict[int, ContactList]
    campaigns: dict[int, Campaign]
    tz: dt.tzinfo = field(default=dt.UTC)

    @classmethod
    def load(cls, organisation: Organisation, client: Client | None, definition: Any) -> Catalogue:
        list_ids, campaign_ids = _referenced_ids(definition)
        client_id = client.pk if client else None
        lists = ContactList.objects.filter(organisation=organisation, client_id=client_id, pk__in=list_ids)
        campaigns = Campaign.objects.filter(organisation=organisation, pk__in=campaign_ids).select_related(
            "sending_account"
        )
        if client is not None:
            campaigns = campaigns.filter(sending_account__client=client)
        try:
            tz: dt.tzinfo = zoneinfo.ZoneInfo(organisation.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz = dt.UTC
        return cls(
            organisation=organisation,
            client=client,
            fields={f.key: f for f in CustomField.objects.filter(organisation=organisation)},
            rules={r.name: r for r in Rule.objects.filter(organisation=organisation, kind=Rule.Kind.CONDITION)},
            lists={c.pk: c for c in lists},
            campaigns={c.pk: c for c in campaigns},
            tz=tz,
        )

    def field_type(self, name: str) -> str | None:
        if name in CONTACT_FIELDS:
            return CustomField.Type.TEXT
        custom = self.fields.get(name)
        return custom.type if custom else None

    def field_label(self, name: str) -> str:
        if name in CONTACT_FIELDS:
            return str(CONTACT_FIELDS[name])
        custom = self.fields.get(name)
        return custom.label if custom else name


def _iter_conditions(node: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(node, Mapping):
        if "items" in node and isinstance(node["items"], list):
            for item in node["items"]:
                yield from _iter_conditions(item)
        else:
            yield node


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _referenced_ids(definition: Any) -> tuple[set[int], set[int]]:
    lists: set[int] = set()
    campaigns: set[int] = set()
    for cond in _iter_conditions(definition):
        if (pk := _as_int(cond.get("list"))) is not None:
            lists.add(pk)
        if (pk := _as_int(cond.get("campaign"))) is not None:
            campaigns.add(pk)
    return lists, campaigns


# --- validation -----------------------------------------------------------------------------


def condition_label(path: tuple[int, ...]) -> str:
    """How messages name a condition: "Condition 2" or "Condition 1 in group 3" (1-based)."""
    if len(path) == 1:
        return _("Condition %(n)s") % {"n": path[0] + 1}
    if len(path) == 2:
        return _("Condition %(n)s in group %(g)s") % {"n": path[1] + 1, "g": path[0] + 1}
    return _("Condition %(path)s") % {"path": ".".join(str(i + 1) for i in path)}


def path_key(path: tuple[int, ...]) -> str:
    """The key of a condition's errors in :func:`clean_definition`'s result ("0", "2.1")."""
    return ".".join(str(i) for i in path)


@dataclass
class Cleaned:
    """A definition with values brought to their types, and the errors found, by condition path."""

    definition: dict[str, Any]
    errors: dict[str, list[str]]
    catalogue: Catalogue

    def q(self) -> Q:
        """The criteria as a ``Q`` over ``Contact`` (raises :class:`SegmentError` when invalid)."""
        if self.errors:
            raise SegmentError(self.messages)
        return _group_q(self.definition, self.catalogue)

    @property
    def messages(self) -> list[str]:
        out: list[str] = []
        for key, errors in self.errors.items():
            if key == "":
                out.extend(errors)
                continue
            label = condition_label(tuple(int(i) for i in key.split(".")))
            out.extend(f"{label}: {e}" for e in errors)
        return out


def clean_definition(definition: Any, organisation: Organisation, client: Client | None = None) -> Cleaned:
    """Check a definition against the organisation's fields, rules, lists and campaigns, and
    bring its values to their types (``"5"`` → ``5`` for a number field, list ids to integers)."""
    catalogue = Catalogue.load(organisation, client, definition)
    errors: dict[str, list[str]] = {}
    if not isinstance(definition, Mapping):
        problem = _("The criteria must be a group with an operator and items.")
        return Cleaned(empty_definition(), {"": [problem]}, catalogue)
    count = sum(1 for _c in _iter_conditions(definition))
    if count > MAX_CONDITIONS:
        errors[""] = [_("Use at most %(n)s conditions.") % {"n": MAX_CONDITIONS}]
    cleaned = _clean_group(definition, (), catalogue, errors)
    return Cleaned(cleaned, errors, catalogue)


def validate_definition(definition: Any, organisation: Organisation, client: Client | None = None) -> list[str]:
    """The problems of a definition, each naming its condition ("Condition 2 in group 1: …")."""
    return clean_definition(definition, organisation, client).messages


def _clean_group(
    node: Mapping[str, Any], path: tuple[int, ...], catalogue: Catalogue, errors: dict[str, list[str]]
) -> dict[str, Any]:
    op = node.get("op", "and")
    items = node.get("items", [])
    key = path_key(path)
    if op not in ("and", "or"):
        errors.setdefault(key, []).append(_("Combine conditions with “and” or “or”."))
        op = "and"
    if not isinstance(items, list):
        errors.setdefault(key, []).append(_("A group needs a list of conditions."))
        items = []
    if len(path) >= MAX_DEPTH:
        errors.setdefault(key, []).append(_("Groups may be nested at most %(n)s deep.") % {"n": MAX_DEPTH})
        return {"op": op, "items": []}
    out: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        sub = (*path, index)
        if isinstance(item, Mapping) and "items" in item:
            out.append(_clean_group(item, sub, catalogue, errors))
        elif isinstance(item, Mapping):
            cond, problems = _clean_condition(item, catalogue)
            if problems:
                errors.setdefault(path_key(sub), []).extend(problems)
            out.append(cond)
        else:
            errors.setdefault(path_key(sub), []).append(_("Not a condition."))
    return {"op": op, "items": out}


def _clean_condition(cond: Mapping[str, Any], catalogue: Catalogue) -> tuple[dict[str, Any], list[str]]:
    kind = cond.get("type")
    operator = cond.get("operator", "")
    out: dict[str, Any] = {"type": kind, "operator": operator}
    if kind == "field":
        return _clean_field(cond, catalogue, out)
    if kind == "rule":
        name = str(cond.get("rule") or "")
        out["rule"] = name
        if operator not in FLAG_OPERATORS:
            return out, [_("Choose “is true” or “is false”.")]
        if not name:
            return out, [_("Choose a business rule.")]
        if name not in catalogue.rules:
            return out, [_("There is no condition rule named “%(name)s”.") % {"name": name}]
        rules = _rules_module()
        if rules is None:
            return out, [_("Business rules cannot be used in segments yet.")]
        try:
            rules.condition_to_q(rules.parse_condition(catalogue.rules[name].expression), catalogue.rules)
        except ValueError as exc:  # rules.RuleError: the rule itself is broken
            return out, [_("The rule “%(name)s” has an error: %(error)s") % {"name": name, "error": exc}]
        return out, []
    if kind == "list":
        pk = _as_int(cond.get("list"))
        out["list"] = pk
        if operator not in LIST_OPERATORS:
            return out, [_("Choose “is on” or “is not on” the list.")]
        if pk is None:
            return out, [_("Choose a list.")]
        if pk not in catalogue.lists:
            return out, [_("That list does not exist (any more).")]
        return out, []
    if kind == "campaign":
        pk = _as_int(cond.get("campaign"))
        out["campaign"] = pk
        link = str(cond.get("link") or "").strip()
        problems: list[str] = []
        if operator not in CAMPAIGN_OPERATORS:
            problems.append(_("Choose what the contact did with the campaign."))
        if pk is None:
            problems.append(_("Choose a campaign."))
        elif pk not in catalogue.campaigns:
            problems.append(_("That campaign does not exist (any more)."))
        if link:
            if operator not in ("clicked", "not_clicked"):
                problems.append(_("A link only applies to “clicked” and “did not click”."))
            elif len(link) > 2000:
                problems.append(_("The link is too long."))
            out["link"] = link
        return out, problems
    if kind in ("unsubscribed", "bounced"):
        problems = []
        if operator not in FLAG_OPERATORS:
            problems.append(_("Choose “is true” or “is false”."))
        raw = cond.get("campaign")
        if raw in (None, ""):
            out["campaign"] = None
        else:
            pk = _as_int(raw)
            out["campaign"] = pk
            if pk is None or pk not in catalogue.campaigns:
                problems.append(_("That campaign does not exist (any more)."))
        return out, problems
    return out, [_("Choose what to test.")]


def _clean_field(
    cond: Mapping[str, Any], catalogue: Catalogue, out: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    name = str(cond.get("field") or "")
    operator = out["operator"]
    out["field"] = name
    ftype = catalogue.field_type(name)
    if ftype is None:
        return out, [_("There is no field “%(name)s”.") % {"name": name} if name else _("Choose a field.")]
    label = catalogue.field_label(name)
    if operator not in FIELD_OPERATORS[ftype]:
        return out, [_("Choose how to compare %(field)s.") % {"field": label}]
    if operator in VALUELESS:
        return out, []
    value = cond.get("value")
    if ftype == CustomField.Type.TEXT:
        text = "" if value is None else str(value)
        if not text.strip():
            return out, [_("Enter the text to compare %(field)s with.") % {"field": label}]
        if len(text) > 500:
            return out, [_("The text is too long (500 characters at most).")]
        out["value"] = text
        return out, []
    if ftype == CustomField.Type.NUMBER:
        number = _to_number(value)
        if number is None:
            return out, [_("Enter a number for %(field)s.") % {"field": label}]
        out["value"] = number
        return out, []
    if ftype == CustomField.Type.DATE:
        if operator == "within_last_days":
            days = _as_int(value)
            if days is None or not 0 <= days <= MAX_DAYS:
                return out, [_("Enter a whole number of days (0 to %(max)s).") % {"max": MAX_DAYS}]
            out["value"] = days
            return out, []
        text = str(value or "").strip()
        if not _DATE_RE.match(text) or _parse_date(text) is None:
            return out, [_("Enter a date for %(field)s as YYYY-MM-DD.") % {"field": label}]
        out["value"] = text
        return out, []
    # choice
    values = value if isinstance(value, list) else ([value] if value not in (None, "") else [])
    values = [str(v) for v in values]
    if not values:
        return out, [_("Choose at least one value of %(field)s.") % {"field": label}]
    allowed = {str(c) for c in catalogue.fields[name].choices}
    unknown = [v for v in values if v not in allowed]
    if unknown:
        return out, [_("%(values)s is not a choice of %(field)s.") % {"values": ", ".join(unknown), "field": label}]
    out["value"] = values
    return out, []


def _to_number(value: Any) -> int | float | None:
    """A finite number from JSON or from a form ("12", "1.5", "1,5"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # a decimal comma, as many of our users write it
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


# --- compiling to SQL -----------------------------------------------------------------------


def _rules_module() -> Any:
    """``campaigns.rules`` (business rules), when it provides what segments need."""
    try:
        rules = importlib.import_module("campaigns.rules")
    except ImportError:
        return None
    if hasattr(rules, "parse_condition") and hasattr(rules, "condition_to_q"):
        return rules
    return None


def segment_q(
    segment_or_definition: Segment | Mapping[str, Any],
    organisation: Organisation | None = None,
    client: Client | None = None,
) -> Q:
    """The criteria as a ``Q`` over ``Contact`` (tenancy scope not included: see :func:`recipients`).

    Raises :class:`SegmentError` when the definition is invalid or names something that is gone."""
    from campaigns.models import Segment  # noqa: PLC0415 (runtime import only for isinstance)

    if isinstance(segment_or_definition, Segment):
        definition: Any = segment_or_definition.definition
        organisation = segment_or_definition.organisation
        client = segment_or_definition.client
    else:
        definition = segment_or_definition
    if organisation is None:
        raise TypeError("segment_q needs the organisation with a bare definition")
    return clean_definition(definition, organisation, client).q()


def scope(
    organisation: Organisation, client: Client | None, contact_list: ContactList | int | None = None
) -> QuerySet[Contact]:
    """The contacts a segment may choose from: its organisation's and client's, on its base list."""
    qs = Contact.objects.filter(organisation=organisation, client_id=client.pk if client else None)
    if contact_list is not None:
        list_id = contact_list if isinstance(contact_list, int) else contact_list.pk
        qs = qs.filter(Exists(ListMembership.objects.filter(contact_list_id=list_id, contact_id=OuterRef("pk"))))
    return qs


def recipients(segment: Segment) -> QuerySet[Contact]:
    """The segment's contacts: one row per contact (EXISTS subqueries only, no joins)."""
    return scope(segment.organisation, segment.client, segment.contact_list_id).filter(segment_q(segment))


def count(
    definition: Mapping[str, Any],
    organisation: Organisation,
    client: Client | None = None,
    contact_list: ContactList | int | None = None,
) -> int:
    """How many contacts the definition chooses now."""
    q = segment_q(definition, organisation, client)
    return scope(organisation, client, contact_list).filter(q).count()


def cached_count(segment: Segment) -> int:
    """The segment's count, cached for a few minutes (list pages show many segments at once).

    The key covers everything the count depends on but the data, so an edit shows at once."""
    payload = json.dumps(
        [segment.pk, segment.organisation_id, segment.client_id, segment.contact_list_id, segment.definition],
        sort_keys=True,
        default=str,
    )
    key = "segment-count:" + hashlib.sha256(payload.encode()).hexdigest()
    value = cache.get(key)
    if value is None:
        value = recipients(segment).count()
        cache.set(key, value, COUNT_CACHE_SECONDS)
    return int(value)


def _group_q(node: Mapping[str, Any], catalogue: Catalogue) -> Q:
    parts = [_group_q(item, catalogue) if "items" in item else _condition_q(item, catalogue) for item in node["items"]]
    if not parts:
        return Q()
    combined = parts[0]
    for part in parts[1:]:
        combined = (combined | part) if node["op"] == "or" else (combined & part)
    # Wrap so that an empty Q() inside never widens an OR to "everything" by accident.
    return Q(combined)


def _condition_q(cond: Mapping[str, Any], catalogue: Catalogue) -> Q:
    kind = cond["type"]
    operator = cond["operator"]
    if kind == "field":
        return _field_q(cond, catalogue)
    if kind == "list":
        exists = Exists(ListMembership.objects.filter(contact_list_id=cond["list"], contact_id=OuterRef("pk")))
        return Q(exists) if operator == "in" else ~Q(exists)
    if kind == "campaign":
        return _campaign_q(cond, catalogue)
    if kind == "rule":
        rules = _rules_module()
        rule = catalogue.rules[cond["rule"]]
        q = rules.condition_to_q(rules.parse_condition(rule.expression), catalogue.rules)
        return q if operator == "is_true" else ~q
    flag = _unsubscribed_exists(cond, catalogue) if kind == "unsubscribed" else _bounced_q(cond, catalogue)
    return flag if operator == "is_true" else ~flag


# jsonb compared with a jsonb literal: numbers order numerically.
_JSON_ORDER: dict[str, type[Lookup[Any]]] = {
    "lt": LessThan,
    "lte": LessThanOrEqual,
    "gt": GreaterThan,
    "gte": GreaterThanOrEqual,
}


def _json_typeof(key: str) -> Func:
    return Func(KeyTransform(key, "fields"), function="jsonb_typeof", output_field=CharField())


def _field_q(cond: Mapping[str, Any], catalogue: Catalogue) -> Q:
    name: str = cond["field"]
    operator: str = cond["operator"]
    value: Any = cond.get("value")
    ftype = catalogue.field_type(name)
    if name in CONTACT_FIELDS:
        return _text_q(name, operator, value, column=True)
    if ftype == CustomField.Type.TEXT:
        return _text_q(name, operator, value, column=False)
    text = KeyTextTransform(name, "fields")
    empty = Q(IsNull(text, True)) | Q(Exact(text, ""))
    if operator == "is_empty":
        return empty
    if operator == "is_not_empty":
        return ~empty
    if ftype == CustomField.Type.NUMBER:
        if operator == "eq":
            # Containment is answered by a GIN index on ``fields`` (see the module's notes).
            return Q(fields__contains={name: value})
        is_number = Q(Exact(_json_typeof(name), "number"))
        if operator == "ne":
            return is_number & ~Q(fields__contains={name: value})
        # jsonb orders numbers numerically; the type test keeps strings (ordered below numbers) out.
        literal = Cast(Value(json.dumps(value)), output_field=JSONField())
        return is_number & Q(_JSON_ORDER[operator](KeyTransform(name, "fields"), literal))
    if ftype == CustomField.Type.DATE:
        return _date_q(name, operator, value, catalogue)
    if ftype == CustomField.Type.BOOLEAN:
        is_true = Q(fields__contains={name: True})
        return is_true if operator == "is_true" else ~is_true
    # choice
    any_of = Q()
    for choice in value:
        any_of |= Q(fields__contains={name: choice})
    return any_of if operator == "in" else ~any_of


_TEXT_LOOKUPS: dict[str, type[Lookup[Any]]] = {
    "equals": IExact,
    "not_equals": IExact,
    "contains": IContains,
    "not_contains": IContains,
}


def _text_q(name: str, operator: str, value: Any, *, column: bool) -> Q:
    lhs: Any = name if column else KeyTextTransform(name, "fields")
    if column:
        # Contact columns are NOT NULL; "" is their empty value.
        def test(lookup: type[Lookup[Any]], rhs: Any) -> Q:
            return Q(**{f"{name}__{lookup.lookup_name}": rhs})

        empty = Q(**{name: ""})
    else:

        def test(lookup: type[Lookup[Any]], rhs: Any) -> Q:
            return Q(lookup(lhs, rhs))

        empty = Q(IsNull(lhs, True)) | Q(Exact(lhs, ""))
    if operator == "is_empty":
        return empty
    if operator == "is_not_empty":
        return ~empty
    positive = _TEXT_LOOKUPS.get(operator, IStartsWith)
    q = test(positive, value)
    if operator.startswith("not_"):
        # A contact without a value "is not" anything and "does not contain" anything.
        return (~q | empty) if not column else ~q
    return q


def _date_q(name: str, operator: str, value: Any, catalogue: Catalogue) -> Q:
    # ISO dates compare as text in the "C" collation (byte order); datetimes stored as ISO strings
    # start with their date, so they fall on the right day.
    text = Collate(KeyTextTransform(name, "fields"), "C")
    is_date = Q(Regex(KeyTextTransform(name, "fields"), _DATE_PREFIX_SQL_RE))
    if operator == "within_last_days":
        today = timezone.now().astimezone(catalogue.tz).date()
        start, end = today - dt.timedelta(days=int(value)), today + dt.timedelta(days=1)
        return is_date & Q(GreaterThanOrEqual(text, start.isoformat())) & Q(LessThan(text, end.isoformat()))
    day = dt.date.fromisoformat(value)
    next_day = (day + dt.timedelta(days=1)).isoformat()
    if operator == "before":
        return is_date & Q(LessThan(text, day.isoformat()))
    if operator == "after":
        return is_date & Q(GreaterThanOrEqual(text, next_day))
    return is_date & Q(GreaterThanOrEqual(text, day.isoformat())) & Q(LessThan(text, next_day))


def _messages(catalogue: Catalogue) -> QuerySet[Message]:
    return Message.objects.filter(organisation=catalogue.organisation, contact_id=OuterRef("pk"))


def _campaign_q(cond: Mapping[str, Any], catalogue: Catalogue) -> Q:
    operator: str = cond["operator"]
    campaign_id: int = cond["campaign"]
    received = Exists(_messages(catalogue).filter(campaign_id=campaign_id, status__in=RECEIVED_STATUSES))
    if operator == "received":
        return Q(received)
    events = MessageEvent.objects.filter(
        message__organisation=catalogue.organisation,
        message__campaign_id=campaign_id,
        message__contact_id=OuterRef("pk"),
        type=OPEN_EVENT if operator in ("opened", "not_opened") else CLICK_EVENT,
        machine=False,  # privacy proxies and link scanners open everything: not a response
    )
    if cond.get("link"):
        # Tracked clicks name their TrackedLink; events stored before tracking links carry the URL.
        links = TrackedLink.objects.filter(organisation=catalogue.organisation, url_hash=url_hash(cond["link"]))
        events = events.filter(Q(link__in=links) | Q(data__link=cond["link"]))
    did = Exists(events)
    if operator in ("opened", "clicked"):
        return Q(did)
    return Q(received) & ~Q(did)


def _suppressions(cond: Mapping[str, Any], catalogue: Catalogue, reason: str) -> QuerySet[Suppression]:
    qs = Suppression.objects.filter(reason=reason, email__iexact=OuterRef("email"))
    if cond.get("campaign"):
        return qs.filter(sending_account_id=catalogue.campaigns[cond["campaign"]].sending_account_id)
    return qs.filter(sending_account__organisation=catalogue.organisation)


def _unsubscribed_exists(cond: Mapping[str, Any], catalogue: Catalogue) -> Q:
    return Q(Exists(_suppressions(cond, catalogue, Suppression.Reason.UNSUBSCRIBE)))


def _bounced_q(cond: Mapping[str, Any], catalogue: Catalogue) -> Q:
    messages = _messages(catalogue).filter(status=Message.Status.BOUNCED)
    if cond.get("campaign"):
        messages = messages.filter(campaign_id=cond["campaign"])
    return Q(Exists(_suppressions(cond, catalogue, Suppression.Reason.HARD_BOUNCE))) | Q(Exists(messages))


# --- describing a definition (list pages) ---------------------------------------------------


def summary(definition: Any, organisation: Organisation, client: Client | None = None) -> str:
    """A one-line, human description of the criteria, for list pages ("Points > 5 and …")."""
    if not isinstance(definition, Mapping) or not definition.get("items"):
        return _("All contacts")
    catalogue = Catalogue.load(organisation, client, definition)
    return _describe_group(definition, catalogue, top=True)


def summaries(items: Iterable[Segment], organisation: Organisation) -> dict[int, str]:
    """:func:`summary` of many segments of one organisation in a fixed number of queries."""
    items = list(items)
    both = {"op": "and", "items": [s.definition for s in items if isinstance(s.definition, Mapping)]}
    list_ids, campaign_ids = _referenced_ids(both)
    catalogue = Catalogue(
        organisation=organisation,
        client=None,
        fields={f.key: f for f in CustomField.objects.filter(organisation=organisation)},
        rules={},
        lists={c.pk: c for c in ContactList.objects.filter(organisation=organisation, pk__in=list_ids)},
        campaigns={c.pk: c for c in Campaign.objects.filter(organisation=organisation, pk__in=campaign_ids)},
    )
    out: dict[int, str] = {}
    for segment in items:
        definition = segment.definition
        if not isinstance(definition, Mapping) or not definition.get("items"):
            out[segment.pk] = _("All contacts")
        else:
            out[segment.pk] = _describe_group(definition, catalogue, top=True)
    return out


def _describe_group(node: Mapping[str, Any], catalogue: Catalogue, *, top: bool = False) -> str:
    joiner = f" {_('or') if node.get('op') == 'or' else _('and')} "
    text = joiner.join(
        _describe_group(i, catalogue) if isinstance(i, Mapping) and "items" in i else _describe(i, catalogue)
        for i in node.get("items", [])
    )
    return text if top else f"({text})"


def _describe(cond: Any, catalogue: Catalogue) -> str:
    if not isinstance(cond, Mapping):
        return "?"
    op = str(OPERATOR_LABELS.get(str(cond.get("operator")), cond.get("operator", "")))
    kind = cond.get("type")
    if kind == "field":
        value = cond.get("value")
        shown = ", ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else str(value))
        return f"{catalogue.field_label(str(cond.get('field')))} {op} {shown}".strip()
    if kind == "rule":
        return f"{cond.get('rule')} {op}"
    if kind == "list":
        contact_list = catalogue.lists.get(_as_int(cond.get("list")) or 0)
        verb = _("on list") if cond.get("operator") == "in" else _("not on list")
        return f"{verb} {contact_list.name if contact_list else '?'}"
    campaign = catalogue.campaigns.get(_as_int(cond.get("campaign")) or 0)
    if kind == "campaign":
        return f"{op} {campaign.name if campaign else '?'}"
    name = _("unsubscribed") if kind == "unsubscribed" else _("bounced")
    where = f" ({campaign.name})" if campaign else ""
    return f"{name}{where}" if cond.get("operator") == "is_true" else f"{_('not')} {name}{where}"
