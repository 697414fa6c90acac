"""Segment pages: list (counts loaded lazily and cached), the builder (create/edit) with a live
recipient count, and removal.

The builder is one server-rendered form. Each condition row is a set of inputs named
``item-<n>-…`` (top level) or ``item-<n>-<m>-…`` (inside group ``n``); buttons post an ``action``
(``add-condition``, ``add-group``, ``add-condition:item-2``, ``remove:item-2-1``, ``refresh``)
that reshapes the criteria without saving. With htmx only the builder is re-rendered; without
JavaScript the whole page is. Saving validates through :mod:`campaigns.segments`.

Permissions: every member of the tenant may view; building, saving and deleting need
``Perm.MANAGE_CAMPAIGNS`` (contacts, segments, templates, rules and campaigns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import forms
from django.contrib import messages
from django.db.models import Count, ProtectedError, QuerySet
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from django.views.decorators.http import require_GET, require_POST

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Client
from campaigns import segments
from campaigns.models import Campaign, ContactList, CustomField, Rule, Segment
from xes_portal.lib.tenancy import get_for_membership

FORM_TEMPLATE = "campaigns/segments/form.html"
MAX_ROWS = segments.MAX_CONDITIONS

# Builder subjects that are not fields, and the condition type each stands for.
OTHER_SUBJECTS: dict[str, Any] = {
    "rule": gettext_lazy("Business rule"),
    "list": gettext_lazy("List membership"),
    "campaign": gettext_lazy("Campaign activity"),
    "unsubscribed": gettext_lazy("Unsubscribed"),
    "bounced": gettext_lazy("Bounced"),
}
LIST_LABELS = {"in": pgettext_lazy("list membership", "is on"), "not_in": pgettext_lazy("list membership", "is not on")}
FLAG_LABELS = {"is_true": gettext_lazy("yes"), "is_false": gettext_lazy("no")}


# --- form data <-> definition ---------------------------------------------------------------


def _row_from_post(data: QueryDict, prefix: str) -> dict[str, Any]:
    """A condition (raw strings, typed later by :func:`segments.clean_definition`)."""
    subject = data.get(f"{prefix}-subject", "")
    operator = data.get(f"{prefix}-operator", "")
    cond: dict[str, Any] = {"operator": operator}
    if subject.startswith("field:"):
        cond["type"] = "field"
        cond["field"] = subject.removeprefix("field:")
        values = [v for v in data.getlist(f"{prefix}-value") if v != ""]
        cond["value"] = values if data.get(f"{prefix}-multi") else (values[0] if values else "")
    else:
        cond["type"] = subject
    if subject == "rule":
        cond["rule"] = data.get(f"{prefix}-rule", "")
    elif subject == "list":
        cond["list"] = data.get(f"{prefix}-list", "")
    elif subject in ("campaign", "unsubscribed", "bounced"):
        cond["campaign"] = data.get(f"{prefix}-campaign", "")
        if subject == "campaign" and data.get(f"{prefix}-link", "").strip():
            cond["link"] = data.get(f"{prefix}-link", "").strip()
    return cond


def _indices(data: QueryDict, prefix: str) -> list[int]:
    """The item numbers present under ``prefix`` (gaps allowed: rows get removed), in order."""
    found: set[int] = set()
    start = f"{prefix}-"
    for key in data:
        if key.startswith(start) and key.endswith("-kind"):
            middle = key[len(start) : -len("-kind")]
            if middle.isdigit():
                found.add(int(middle))
    return sorted(found)[:MAX_ROWS]


def definition_from_post(data: QueryDict) -> dict[str, Any]:
    """The criteria as posted by the builder."""
    items: list[dict[str, Any]] = []
    for n in _indices(data, "item"):
        prefix = f"item-{n}"
        if data.get(f"{prefix}-kind") == "group":
            conditions = [_row_from_post(data, f"{prefix}-{m}") for m in _indices(data, prefix)]
            items.append({"op": _op(data.get(f"{prefix}-op")), "items": conditions})
        else:
            items.append(_row_from_post(data, prefix))
    return {"op": _op(data.get("op")), "items": items}


def _op(value: str | None) -> str:
    return "or" if value == "or" else "and"


def _blank_condition() -> dict[str, Any]:
    return {"type": "field", "field": "email", "operator": "contains", "value": ""}


def apply_action(definition: dict[str, Any], action: str) -> dict[str, Any]:
    """Reshape the criteria for a builder button (nothing is saved)."""
    items: list[dict[str, Any]] = definition["items"]
    if action == "add-condition" and len(items) < MAX_ROWS:
        items.append(_blank_condition())
    elif action == "add-group" and len(items) < MAX_ROWS:
        items.append({"op": "or", "items": [_blank_condition(), _blank_condition()]})
    elif action.startswith("add-condition:item-"):
        index = action.removeprefix("add-condition:item-")
        if index.isdigit() and int(index) < len(items) and "items" in items[int(index)]:
            items[int(index)]["items"].append(_blank_condition())
    elif action.startswith("remove:item-"):
        parts = action.removeprefix("remove:item-").split("-")
        if all(p.isdigit() for p in parts):
            numbers = [int(p) for p in parts]
            if len(numbers) == 1 and numbers[0] < len(items):
                del items[numbers[0]]
            elif len(numbers) == 2 and numbers[0] < len(items) and "items" in items[numbers[0]]:
                group = items[numbers[0]]["items"]
                if numbers[1] < len(group):
                    del group[numbers[1]]
                if not group:
                    del items[numbers[0]]
    return definition


# --- rendering the builder ------------------------------------------------------------------


@dataclass
class Options:
    """What the builder offers, for the segment's organisation and client."""

    fields: list[CustomField]
    rules: list[str]
    lists: list[ContactList]
    campaigns: list[Campaign]
    subjects: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    @classmethod
    def load(cls, membership: Any, client: Client | None) -> Options:
        organisation = membership.organisation
        client_id = client.pk if client else None
        custom = list(CustomField.objects.filter(organisation=organisation).order_by("label"))
        rules = list(
            Rule.objects.filter(organisation=organisation, kind=Rule.Kind.CONDITION).values_list("name", flat=True)
        )
        lists = list(ContactList.objects.filter(organisation=organisation, client_id=client_id).order_by("name"))
        campaigns_qs = Campaign.objects.filter(organisation=organisation).order_by("-created_at")
        campaigns_qs = campaigns_qs.filter(sending_account__client_id=client_id) if client else campaigns_qs
        options = cls(custom, rules, lists, list(campaigns_qs[:200]))
        contact = [(f"field:{key}", str(label)) for key, label in segments.CONTACT_FIELDS.items()]
        options.subjects.append((_("Contact"), contact))
        if custom:
            options.subjects.append((_("Custom fields"), [(f"field:{f.key}", f.label) for f in custom]))
        others = [("campaign", str(OTHER_SUBJECTS["campaign"]))]
        others += [(key, str(OTHER_SUBJECTS[key])) for key in ("unsubscribed", "bounced")]
        if lists:
            others.insert(0, ("list", str(OTHER_SUBJECTS["list"])))
        if rules and segments._rules_module() is not None:
            others.insert(0, ("rule", str(OTHER_SUBJECTS["rule"])))
        options.subjects.append((_("Behaviour and more"), others))
        return options

    def field_type(self, key: str) -> str | None:
        if key in segments.CONTACT_FIELDS:
            return CustomField.Type.TEXT
        return next((f.type for f in self.fields if f.key == key), None)


def _operators(values: tuple[str, ...], labels: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    labels = labels or segments.OPERATOR_LABELS
    return [(v, str(labels[v])) for v in values]


def _row_context(cond: Any, prefix: str, errors: list[str], options: Options) -> dict[str, Any]:
    """Everything one condition row shows: its subject decides the operators and the value input."""
    cond = cond if isinstance(cond, dict) else {}
    kind = cond.get("type")
    operator = str(cond.get("operator") or "")
    row: dict[str, Any] = {
        "prefix": prefix,
        "errors": errors,
        "operator": operator,
        "value": cond.get("value", ""),
        "widget": "none",
        "campaign": str(cond.get("campaign") or ""),
        "list": str(cond.get("list") or ""),
        "rule": cond.get("rule", ""),
        "link": cond.get("link", ""),
    }
    if kind == "field":
        key = str(cond.get("field") or "")
        row["subject"] = f"field:{key}"
        ftype = options.field_type(key) or CustomField.Type.TEXT
        operators = segments.FIELD_OPERATORS[ftype]
        if operator not in operators:
            operator = row["operator"] = operators[0]
        row["operators"] = _operators(operators)
        if operator not in segments.VALUELESS:
            row["widget"] = {"within_last_days": "days"}.get(operator, ftype)
        if ftype == CustomField.Type.CHOICE:
            chosen = cond.get("value") or []
            chosen = chosen if isinstance(chosen, list) else [chosen]
            field_choices: list[Any] = next((f.choices for f in options.fields if f.key == key), [])
            row["choices"] = [(str(c), str(c) in map(str, chosen)) for c in field_choices]
        return row
    row["subject"] = kind if kind in OTHER_SUBJECTS else "field:email"
    ops: tuple[str, ...]
    labels: dict[str, Any]
    if kind == "list":
        ops, labels = segments.LIST_OPERATORS, LIST_LABELS
    elif kind == "campaign":
        ops, labels = segments.CAMPAIGN_OPERATORS, segments.OPERATOR_LABELS
        row["show_link"] = operator in ("clicked", "not_clicked")
    elif kind in ("rule", "unsubscribed", "bounced"):
        ops, labels = segments.FLAG_OPERATORS, FLAG_LABELS
    else:
        return _row_context(_blank_condition(), prefix, errors, options)
    if operator not in ops:
        row["operator"] = ops[0]
        row["show_link"] = False
    row["operators"] = _operators(ops, labels)
    return row


def builder_context(definition: dict[str, Any], errors: dict[str, list[str]], options: Options) -> dict[str, Any]:
    items = []
    for n, item in enumerate(definition.get("items", [])):
        prefix = f"item-{n}"
        if isinstance(item, dict) and "items" in item:
            rows = [
                _row_context(c, f"{prefix}-{m}", errors.get(f"{n}.{m}", []), options)
                for m, c in enumerate(item["items"])
            ]
            items.append(
                {
                    "kind": "group",
                    "prefix": prefix,
                    "op": item.get("op"),
                    "rows": rows,
                    "errors": errors.get(str(n), []),
                }
            )
        else:
            items.append({"kind": "condition", "row": _row_context(item, prefix, errors.get(str(n), []), options)})
    return {
        "op": definition.get("op", "and"),
        "items": items,
        "options": options,
        "general_errors": errors.get("", []),
        "can_add": sum(1 for _c in segments._iter_conditions(definition)) < MAX_ROWS,
    }


# --- the form around the builder -------------------------------------------------------------


class SegmentForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    client = forms.ModelChoiceField(
        queryset=Client.objects.none(),
        required=False,
        label=gettext_lazy("Client"),
        empty_label=gettext_lazy("— the organisation’s own contacts —"),
        help_text=gettext_lazy("Whose contacts the segment chooses from."),
    )
    contact_list = forms.ModelChoiceField(
        queryset=ContactList.objects.none(),
        required=False,
        label=gettext_lazy("Base list"),
        empty_label=gettext_lazy("— all contacts —"),
        help_text=gettext_lazy("Optional: choose only among the contacts of this list."),
    )

    def __init__(self, *args: Any, membership: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.membership = membership
        if membership.is_client_user:
            del self.fields["client"]
        else:
            self.fields["client"].queryset = Client.objects.for_membership(membership)  # type: ignore[attr-defined]
        self.fields["contact_list"].queryset = ContactList.objects.for_membership(membership)  # type: ignore[attr-defined]

    def chosen_client(self) -> Client | None:
        """The client as posted (before full validation), for the builder's options."""
        if self.membership.is_client_user:
            return self.membership.client  # type: ignore[no-any-return]
        raw = self.data.get("client") if self.is_bound else self.initial.get("client")
        if isinstance(raw, Client):
            return raw
        if raw and str(raw).isdigit():
            return Client.objects.for_membership(self.membership).filter(pk=int(raw)).first()
        return None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        chosen = self.chosen_client()
        contact_list = data.get("contact_list")
        if contact_list is not None and contact_list.client_id != (chosen.pk if chosen else None):
            self.add_error("contact_list", _("Choose a list of the same client as the segment."))
        return data


def _segments(request: AuthedRequest) -> QuerySet[Segment]:
    return Segment.objects.for_membership(request.membership).select_related("client", "contact_list", "organisation")


def _render_form(
    request: AuthedRequest,
    form: SegmentForm,
    definition: dict[str, Any],
    errors: dict[str, list[str]],
    segment: Segment | None,
    status: int = 200,
) -> HttpResponse:
    options = Options.load(request.membership, form.chosen_client())
    builder_url = request.path
    if "client" in form.fields:
        # Another client offers other lists and campaigns: re-render the builder's choices.
        form.fields["client"].widget.attrs.update(
            {
                "hx-post": builder_url,
                "hx-trigger": "change",
                "hx-target": "#segment-builder",
                "hx-swap": "outerHTML",
                "hx-vals": '{"action": "refresh"}',
            }
        )
    context = {
        "form": form,
        "segment": segment,
        "builder_url": builder_url,
        **builder_context(definition, errors, options),
    }
    if request.htmx and request.POST.get("action", "save") != "save":  # type: ignore[attr-defined]
        response = render(request, f"{FORM_TEMPLATE}#builder", context)
        response["HX-Trigger-After-Settle"] = "segment-changed"
        return response
    return render(request, FORM_TEMPLATE, context, status=status)


def _edit(request: AuthedRequest, segment: Segment | None) -> HttpResponse:
    membership = request.membership
    if request.method != "POST":
        initial: dict[str, Any] = {}
        definition = segments.empty_definition()
        if segment is not None:
            initial = {"name": segment.name, "client": segment.client, "contact_list": segment.contact_list}
            definition = segment.definition if isinstance(segment.definition, dict) else definition
        else:
            definition["items"].append(_blank_condition())
        form = SegmentForm(membership=membership, initial=initial)
        return _render_form(request, form, definition, {}, segment)

    form = SegmentForm(request.POST, membership=membership)
    definition = definition_from_post(request.POST)
    action = request.POST.get("action", "save")
    if action != "save":
        return _render_form(request, form, apply_action(definition, action), {}, segment)

    client = form.chosen_client()
    cleaned = segments.clean_definition(definition, membership.organisation, client)
    if not form.is_valid() or cleaned.errors:
        # The user's input comes back as typed, with the problems next to their conditions.
        return _render_form(request, form, definition, cleaned.errors, segment, status=400)
    if segment is None:
        segment = Segment(organisation=membership.organisation)
    segment.name = form.cleaned_data["name"]
    segment.client = client
    segment.contact_list = form.cleaned_data["contact_list"]
    segment.definition = cleaned.definition
    segment.save()
    messages.success(request, _("Segment “%(name)s” saved.") % {"name": segment.name})
    return redirect("campaigns:segment_list")


# --- views ----------------------------------------------------------------------------------


@membership_required()
def segment_list(request: AuthedRequest) -> HttpResponse:
    items = list(_segments(request).annotate(campaign_count=Count("campaigns")))
    described = segments.summaries(items, request.membership.organisation)
    rows = [{"segment": segment, "summary": described[segment.pk]} for segment in items]
    return render(request, "campaigns/segments/list.html", {"rows": rows})


@membership_required(Perm.MANAGE_CAMPAIGNS)
def segment_create(request: AuthedRequest) -> HttpResponse:
    return _edit(request, None)


@membership_required(Perm.MANAGE_CAMPAIGNS)
def segment_edit(request: AuthedRequest, pk: int) -> HttpResponse:
    return _edit(request, get_for_membership(_segments(request), request.membership, pk=pk))


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def segment_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    segment = get_for_membership(_segments(request), request.membership, pk=pk)
    names = list(segment.campaigns.values_list("name", flat=True)[:3])
    if names:
        messages.error(
            request,
            _("“%(name)s” cannot be deleted: campaigns use it (%(campaigns)s).")
            % {"name": segment.name, "campaigns": ", ".join(names)},
        )
        return redirect("campaigns:segment_list")
    try:
        segment.delete()
    except ProtectedError:  # a campaign was created meanwhile
        messages.error(request, _("“%(name)s” cannot be deleted: a campaign uses it.") % {"name": segment.name})
        return redirect("campaigns:segment_list")
    messages.success(request, _("Segment “%(name)s” deleted.") % {"name": segment.name})
    return redirect("campaigns:segment_list")


@require_POST
@membership_required(Perm.MANAGE_CAMPAIGNS)
def segment_count(request: AuthedRequest) -> HttpResponse:
    """The live count of the builder: the posted criteria, counted now (not saved)."""
    form = SegmentForm(request.POST, membership=request.membership)
    client = form.chosen_client()
    definition = definition_from_post(request.POST)
    cleaned = segments.clean_definition(definition, request.membership.organisation, client)
    context: dict[str, Any] = {"count": None, "invalid": bool(cleaned.errors)}
    if not cleaned.errors:
        organisation = request.membership.organisation
        raw_list = request.POST.get("contact_list", "")
        contact_list = None
        if raw_list.isdigit():
            contact_list = (
                ContactList.objects.for_membership(request.membership)
                .filter(pk=int(raw_list), client_id=client.pk if client else None)
                .first()
            )
        context["count"] = segments.scope(organisation, client, contact_list).filter(cleaned.q()).count()
    return render(request, "campaigns/segments/partials/count.html", context)


@require_GET
@membership_required()
def segment_saved_count(request: AuthedRequest, pk: int) -> HttpResponse:
    """A saved segment's count for the list page (cached a few minutes)."""
    segment = get_for_membership(_segments(request), request.membership, pk=pk)
    try:
        context: dict[str, Any] = {"count": segments.cached_count(segment), "invalid": False}
    except segments.SegmentError:
        context = {"count": None, "invalid": True}
    return render(request, "campaigns/segments/partials/count.html", context)


urlpatterns = [
    path("segments/", segment_list, name="segment_list"),
    path("segments/new/", segment_create, name="segment_create"),
    path("segments/count/", segment_count, name="segment_count"),
    path("segments/<int:pk>/", segment_edit, name="segment_edit"),
    path("segments/<int:pk>/count/", segment_saved_count, name="segment_saved_count"),
    path("segments/<int:pk>/delete/", segment_delete, name="segment_delete"),
]
