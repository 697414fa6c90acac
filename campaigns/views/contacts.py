"""Contacts, custom fields, lists, exports and the import wizard.

Every member may work with the contacts of their scope (client-users: their client's only); adding
or removing custom fields is for the organisation's staff (:func:`campaigns.contacts.can_manage_fields`).
Objects outside the caller's tenant answer 404 (``get_for_membership``).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.models import Client
from accounts.services import ServiceError
from campaigns import contacts as services
from campaigns import imports
from campaigns.models import Contact, ContactList, CustomField, ImportJob
from plans.resources import content_type
from xes_portal.lib.tenancy import get_for_membership

CONTACTS_PER_PAGE = 50
RECENT_IMPORTS = 10
LIST_FIELD_COLUMNS = 3  # custom fields shown as columns of the contact list


def _contact(request: AuthedRequest, pk: int) -> Contact:
    return get_for_membership(Contact.objects.select_related("client"), request.membership, pk=pk)


def _list(request: AuthedRequest, pk: int) -> ContactList:
    return get_for_membership(ContactList.objects.select_related("client"), request.membership, pk=pk)


def _import(request: AuthedRequest, pk: int) -> ImportJob:
    return get_for_membership(ImportJob.objects.select_related("client", "contact_list"), request.membership, pk=pk)


def _clients(request: AuthedRequest) -> QuerySet[Client]:
    if request.membership.is_client_user:
        return Client.objects.none()
    return Client.objects.filter(organisation=request.membership.organisation).order_by("name")


def _chosen_client(request: AuthedRequest, raw: str | None) -> Client | None:
    """The client picked in a form (staff only); an id outside the organisation answers 404."""
    if not raw or request.membership.is_client_user:
        return None
    if not raw.isdigit():
        raise Http404
    client = _clients(request).filter(pk=int(raw)).first()
    if client is None:
        raise Http404
    return client


# --- contacts -----------------------------------------------------------------------------


def _filtered_contacts(request: AuthedRequest) -> tuple[QuerySet[Contact], ContactList | None, str]:
    contacts = services.contacts_for(request.membership)
    contact_list = None
    if list_id := request.GET.get("list", ""):
        if not list_id.isdigit():
            raise Http404
        contact_list = _list(request, int(list_id))
        contacts = contacts.filter(list_memberships__contact_list=contact_list)
    query = request.GET.get("q", "").strip()[:200]
    return services.search_contacts(contacts, query), contact_list, query


@membership_required()
def contact_list(request: AuthedRequest) -> HttpResponse:
    contacts, current_list, query = _filtered_contacts(request)
    page = Paginator(contacts, CONTACTS_PER_PAGE).get_page(request.GET.get("page"))
    shown = list(services.fields_for(request.membership.organisation)[:LIST_FIELD_COLUMNS])
    for contact in page:  # evaluates the page once; the template iterates the same objects
        contact.cells = [contact.fields.get(f.key) for f in shown]  # type: ignore[attr-defined]
    context = {
        "page": page,
        "query": query,
        "current_list": current_list,
        "lists": ContactList.objects.for_membership(request.membership),
        "custom_fields": shown,
    }
    template = "campaigns/contacts/list.html"
    htmx: Any = getattr(request, "htmx", None)
    if htmx and not htmx.history_restore_request:
        template += "#results"
    return render(request, template, context)


def _contact_form_context(
    request: AuthedRequest, values: dict[str, Any], errors: dict[str, list[str]]
) -> dict[str, Any]:
    custom_fields = list(services.fields_for(request.membership.organisation))
    return {
        "values": values,
        "errors": errors,
        "field_rows": [
            {"field": f, "value": values.get(f.key), "errors": errors.get(f.key, [])} for f in custom_fields
        ],
        "clients": _clients(request),
        "types": CustomField.Type,
    }


def _posted_values(request: AuthedRequest) -> dict[str, Any]:
    return {key: request.POST.get(key, "") for key in request.POST if key != "csrfmiddlewaretoken"}


@membership_required()
def contact_create(request: AuthedRequest) -> HttpResponse:
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = _posted_values(request)
        try:
            contact = services.create_contact(
                request.membership, values, client=_chosen_client(request, values.get("client"))
            )
        except ValidationError as exc:
            errors = exc.message_dict
        except ServiceError as exc:
            errors = {"client": [str(exc)]}
        else:
            messages.success(request, _("Contact %(email)s added.") % {"email": contact.email})
            return redirect("campaigns:contact_detail", pk=contact.pk)
    context = _contact_form_context(request, values, errors)
    return render(request, "campaigns/contacts/form.html", context, status=400 if errors else 200)


def _display_values(contact: Contact) -> dict[str, Any]:
    values: dict[str, Any] = {"email": contact.email, "first_name": contact.first_name, "last_name": contact.last_name}
    for key, value in contact.fields.items():
        values[key] = ("yes" if value else "no") if isinstance(value, bool) else value
    return values


@membership_required()
def contact_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    contact = _contact(request, pk)
    values = _display_values(contact)
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        values = _posted_values(request)
        try:
            services.update_contact(contact, values)
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            messages.success(request, _("Contact %(email)s saved.") % {"email": contact.email})
            return redirect("campaigns:contact_detail", pk=contact.pk)
    context = _contact_form_context(request, values, errors)
    on_lists = ContactList.objects.filter(memberships__contact=contact).order_by("name")
    context.update(
        contact=contact,
        on_lists=on_lists,
        other_lists=services.lists_for_contact(contact).exclude(pk__in=on_lists.values("pk")),
    )
    return render(request, "campaigns/contacts/detail.html", context, status=400 if errors else 200)


@require_POST
@membership_required()
def contact_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    contact = _contact(request, pk)
    services.delete_contacts(Contact.objects.filter(pk=contact.pk))
    messages.success(request, _("Contact %(email)s deleted.") % {"email": contact.email})
    return redirect("campaigns:contact_list")


@require_POST
@membership_required()
def contact_lists_change(request: AuthedRequest, pk: int) -> HttpResponse:
    """Put the contact on a list (``add``) or take it off one (``remove``)."""
    contact = _contact(request, pk)
    raw = request.POST.get("list", "")
    if not raw.isdigit():
        messages.error(request, _("Choose a list."))
        return redirect("campaigns:contact_detail", pk=contact.pk)
    target = _list(request, int(raw))
    one = Contact.objects.filter(pk=contact.pk)
    if request.POST.get("action") == "remove":
        services.remove_from_list(target, one)
        messages.success(request, _("Removed from “%(list)s”.") % {"list": target.name})
    elif services.add_to_list(target, one) or target.memberships.filter(contact=contact).exists():
        messages.success(request, _("Added to “%(list)s”.") % {"list": target.name})
    else:
        messages.error(request, _("“%(list)s” belongs to another client than this contact.") % {"list": target.name})
    return redirect("campaigns:contact_detail", pk=contact.pk)


@membership_required()
def contact_export(request: AuthedRequest) -> HttpResponse:
    """The contacts shown (search and list filter applied) as CSV or XLSX."""
    fmt = request.GET.get("format", "csv")
    if fmt not in services.EXPORT_FORMATS:
        raise Http404
    contacts, current_list, _query = _filtered_contacts(request)
    data = services.export_contacts(contacts, request.membership.organisation, fmt)
    response = HttpResponse(data, content_type=content_type(fmt))
    name = "contacts" if current_list is None else f"contacts-list-{current_list.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


# --- custom fields ------------------------------------------------------------------------


@membership_required()
def field_list(request: AuthedRequest) -> HttpResponse:
    organisation = request.membership.organisation
    values: dict[str, Any] = {"type": CustomField.Type.TEXT}
    errors: dict[str, list[str]] = {}
    may_manage = services.can_manage_fields(request.membership)
    if request.method == "POST":
        if not may_manage:
            raise PermissionDenied
        values = _posted_values(request)
        try:
            created = services.create_custom_field(
                organisation,
                key=values.get("key", ""),
                label=values.get("label", ""),
                type=values.get("type", ""),
                choices=values.get("choices", ""),
            )
        except ValidationError as exc:
            errors = exc.message_dict
        else:
            messages.success(request, _("Field “%(label)s” added.") % {"label": created.label})
            return redirect("campaigns:field_list")
    return render(
        request,
        "campaigns/contacts/fields.html",
        {
            "custom_fields": services.fields_for(organisation),
            "values": values,
            "errors": errors,
            "types": CustomField.Type.choices,
            "may_manage": may_manage,
        },
        status=400 if errors else 200,
    )


@require_POST
@membership_required()
def field_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    if not services.can_manage_fields(request.membership):
        raise PermissionDenied
    custom = services.fields_for(request.membership.organisation).filter(pk=pk).first()
    if custom is None:
        raise Http404
    services.delete_custom_field(custom)
    messages.success(request, _("Field “%(label)s” and its values deleted.") % {"label": custom.label})
    return redirect("campaigns:field_list")


# --- lists --------------------------------------------------------------------------------


@membership_required()
def list_list(request: AuthedRequest) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    name = ""
    if request.method == "POST":
        name = request.POST.get("name", "")
        try:
            created = services.create_list(
                request.membership, name, client=_chosen_client(request, request.POST.get("client"))
            )
        except ValidationError as exc:
            errors = exc.message_dict
        except ServiceError as exc:
            errors = {"client": [str(exc)]}
        else:
            messages.success(request, _("List “%(name)s” created.") % {"name": created.name})
            return redirect("campaigns:list_list")
    lists = (
        ContactList.objects.for_membership(request.membership)
        .select_related("client")
        .annotate(size=Count("memberships"))
    )
    return render(
        request,
        "campaigns/contacts/lists.html",
        {"lists": lists, "errors": errors, "name": name, "clients": _clients(request)},
        status=400 if errors else 200,
    )


@require_POST
@membership_required()
def list_delete(request: AuthedRequest, pk: int) -> HttpResponse:
    target = _list(request, pk)
    if target.campaigns.exists():
        messages.error(request, _("“%(name)s” is used by a campaign and stays.") % {"name": target.name})
    else:
        target.delete()
        messages.success(request, _("List “%(name)s” deleted; its contacts stay.") % {"name": target.name})
    return redirect("campaigns:list_list")


# --- import wizard ------------------------------------------------------------------------


class UploadForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV or XLSX file"),
        help_text=gettext_lazy(
            "The first row names the columns. CSV in UTF-8 (with or without BOM) or UTF-16, separated by "
            "semicolons, commas or tabs."
        ),
    )


@membership_required()
def import_start(request: AuthedRequest) -> HttpResponse:
    form = UploadForm(request.POST or None, request.FILES or None)
    lists = ContactList.objects.for_membership(request.membership).select_related("client")
    if request.method == "POST" and form.is_valid():
        contact_list = None
        if (raw := request.POST.get("contact_list", "")) and raw.isdigit():
            contact_list = _list(request, int(raw))
        try:
            job = imports.start_import(
                request.membership,
                form.cleaned_data["file"],
                contact_list=contact_list,
                client=_chosen_client(request, request.POST.get("client")),
                user=request.user,
            )
        except ServiceError as exc:
            form.add_error("file", str(exc))
        else:
            return redirect("campaigns:import_detail", pk=job.pk)
    return render(
        request,
        "campaigns/contacts/import_start.html",
        {
            "form": form,
            "lists": lists,
            "clients": _clients(request),
            "max_mb": imports.MAX_IMPORT_BYTES // (1024 * 1024),
            "recent": ImportJob.objects.for_membership(request.membership)[:RECENT_IMPORTS],
        },
        status=400 if form.errors else 200,
    )


def _posted_columns(request: AuthedRequest, count: int) -> list[dict[str, Any]]:
    columns = []
    for index in range(count):
        raw = request.POST.get(f"col-{index}", "ignore")
        if raw.startswith("field:"):
            columns.append({"target": "field", "key": raw.removeprefix("field:")})
        elif raw == "new":
            columns.append(
                {
                    "target": "new",
                    "key": request.POST.get(f"col-{index}-key", ""),
                    "label": request.POST.get(f"col-{index}-label", ""),
                    "type": request.POST.get(f"col-{index}-type", CustomField.Type.TEXT),
                    "choices": request.POST.get(f"col-{index}-choices", ""),
                }
            )
        else:
            columns.append({"target": raw})
    return columns


@membership_required()
def import_detail(request: AuthedRequest, pk: int) -> HttpResponse:
    """The wizard's page for the import's state: mapping (+ preview), progress, result."""
    job = _import(request, pk)
    mapping_errors: imports.MappingError | None = None
    status = 200
    headers = job.mapping.get("headers", [])
    columns = job.mapping.get("columns", [])
    if request.method == "POST":
        columns = _posted_columns(request, len(headers))
        try:
            imports.set_mapping(job, request.membership, columns)
            imports.preview_import(job)
        except imports.MappingError as exc:
            mapping_errors, status = exc, 400
        except ServiceError as exc:
            messages.error(request, str(exc))
            status = 400
        else:
            return redirect("campaigns:import_detail", pk=job.pk)
    rows = []
    sample = job.mapping.get("sample", [])
    for index, header in enumerate(headers):
        column = columns[index] if index < len(columns) else {"target": "ignore"}
        rows.append(
            {
                "index": index,
                "header": header,
                "examples": [r[index] for r in sample if index < len(r) and r[index]][:3],
                "column": column,
                "selected": f"field:{column['key']}" if column.get("target") == "field" else column.get("target"),
                "errors": mapping_errors.columns.get(index, []) if mapping_errors else [],
            }
        )
    context = {
        "job": job,
        "rows": rows,
        "custom_fields": services.fields_for(job.organisation),
        "types": CustomField.Type.choices,
        "may_add_fields": services.can_manage_fields(request.membership),
        "mapping_errors": mapping_errors,
        "preview": job.mapping.get("preview"),
        "editable": job.status in (ImportJob.Status.UPLOADED, ImportJob.Status.PREVIEWED),
        "encoding": imports.ENCODING_LABELS.get(job.mapping.get("encoding", ""), ""),
        "delimiter": {";": _("semicolon"), ",": _("comma"), "\t": _("tab")}.get(job.mapping.get("delimiter", "")),
        **_progress_context(job),
    }
    return render(request, "campaigns/contacts/import_detail.html", context, status=status)


def _progress_context(job: ImportJob) -> dict[str, Any]:
    result = job.mapping.get("result") or {}
    return {
        "job": job,
        "percent": imports.progress_percent(job),
        "unchanged": result.get("unchanged", 0),
        "duplicates": result.get("duplicates", 0),
        "first_errors": result.get("first_errors", []),
        "working": job.status in (ImportJob.Status.QUEUED, ImportJob.Status.RUNNING),
    }


@require_POST
@membership_required()
def import_run(request: AuthedRequest, pk: int) -> HttpResponse:
    job = _import(request, pk)
    if imports.queue_import(job):
        messages.success(request, _("The import has started. You can leave this page; it continues."))
    elif job.status == ImportJob.Status.UPLOADED:
        messages.error(request, _("Check the mapping first: the preview shows what the import will do."))
    return redirect("campaigns:import_detail", pk=job.pk)


@membership_required()
def import_progress(request: AuthedRequest, pk: int) -> HttpResponse:
    """The progress panel, polled by htmx while the import runs (then it shows the result and stops)."""
    job = _import(request, pk)
    return render(request, "campaigns/contacts/import_detail.html#progress", _progress_context(job))


@membership_required()
def import_errors(request: AuthedRequest, pk: int) -> HttpResponse:
    """The rows that were not imported, with their row numbers and reasons, as CSV."""
    job = _import(request, pk)
    if not job.errors_file:
        raise Http404
    # Streamed from storage (a million-row import may have a large errors file); the guard's
    # annotation says HttpResponse, which FileResponse is not for the type checker.
    return FileResponse(  # type: ignore[return-value]
        job.errors_file.open("rb"),
        as_attachment=True,
        filename=f"import-{job.pk}-errors.csv",
        content_type="text/csv; charset=utf-8",
    )


def import_url(job: ImportJob) -> str:
    return reverse("campaigns:import_detail", kwargs={"pk": job.pk})


urlpatterns: list[URLPattern] = [
    path("contacts/", contact_list, name="contact_list"),
    path("contacts/new/", contact_create, name="contact_create"),
    path("contacts/export/", contact_export, name="contact_export"),
    path("contacts/<int:pk>/", contact_detail, name="contact_detail"),
    path("contacts/<int:pk>/delete/", contact_delete, name="contact_delete"),
    path("contacts/<int:pk>/lists/", contact_lists_change, name="contact_lists_change"),
    path("contacts/fields/", field_list, name="field_list"),
    path("contacts/fields/<int:pk>/delete/", field_delete, name="field_delete"),
    path("contacts/lists/", list_list, name="list_list"),
    path("contacts/lists/<int:pk>/delete/", list_delete, name="list_delete"),
    path("contacts/imports/", import_start, name="import_start"),
    path("contacts/imports/<int:pk>/", import_detail, name="import_detail"),
    path("contacts/imports/<int:pk>/run/", import_run, name="import_run"),
    path("contacts/imports/<int:pk>/progress/", import_progress, name="import_progress"),
    path("contacts/imports/<int:pk>/errors.csv", import_errors, name="import_errors"),
]
