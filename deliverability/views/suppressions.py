"""Views: importing a CSV file into an account's suppression list, and exporting the list as CSV.

- Import needs ``Perm.MANAGE_SENDING_ACCOUNTS`` (owners and admins): one file changes whom the whole
  account may mail. "Check the file" is a dry run that only counts; "Import" adds the good rows
  and reports every bad row by number. Imported addresses are manual entries.
- Export: everybody who sees the account sees its list, so everybody may download it (the search
  and reason filter of the list apply). Cells are formula-safe.
Both fetch the account through the tenancy mechanism: an outsider gets 404.
"""

from __future__ import annotations

import csv
from typing import Any

from django import forms
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django.utils.translation import gettext_lazy

from accounts.constants import Perm
from accounts.decorators import membership_required
from accounts.http import AuthedRequest
from accounts.services import ServiceError
from deliverability import suppressions
from deliverability.models import Suppression
from deliverability.views.accounts import SuppressionFilterForm, _account


class SuppressionImportForm(forms.Form):
    file = forms.FileField(
        label=gettext_lazy("CSV file"),
        help_text=gettext_lazy(
            "One address per row, in a column named “email” (or in the first column, without a header). "
            "An optional “note” column is kept with each address."
        ),
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv,text/plain"}),
    )
    note = forms.CharField(
        label=gettext_lazy("Note for rows without one"),
        required=False,
        max_length=300,
        help_text=gettext_lazy("Optional, e.g. “unsubscribes from our old newsletter tool”."),
    )


@membership_required(Perm.MANAGE_SENDING_ACCOUNTS)
def suppression_import(request: AuthedRequest, pk: int) -> HttpResponse:
    """GET: the form. POST: a dry run (``action=check``) or the import (``action=import``)."""
    account = _account(request, pk)
    result = None
    status = 200
    form = SuppressionImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST":
        if form.is_valid():
            # One byte more than allowed is enough for read_csv to say "too large".
            data = form.cleaned_data["file"].read(suppressions.IMPORT_MAX_BYTES + 1)
            try:
                result = suppressions.import_csv(
                    account,
                    data,
                    dry_run=request.POST.get("action") != "import",
                    by=request.user,
                    note=form.cleaned_data["note"],
                )
            except ServiceError as exc:
                form.add_error("file", str(exc))
        if result is None:
            status = 400
    return render(
        request,
        "deliverability/accounts/suppression_import.html",
        {
            "account": account,
            "form": form,
            "result": result,
            "max_mb": suppressions.IMPORT_MAX_BYTES // (1024 * 1024),
            "max_rows": suppressions.IMPORT_MAX_ROWS,
        },
        status=status,
    )


class _Echo:
    """A write-only file for ``csv.writer`` that hands each line back (streamed responses)."""

    def write(self, value: str) -> str:
        return value


@membership_required()
def suppression_export(request: AuthedRequest, pk: int) -> HttpResponse:
    """The account's list (filtered like the page) as CSV, streamed: a list may be long."""
    account = _account(request, pk)
    listed = Suppression.objects.for_membership(request.membership).filter(sending_account=account)
    filters = SuppressionFilterForm(request.GET or None)
    if filters.is_valid():
        if query := filters.cleaned_data["q"].strip():
            listed = listed.filter(email__icontains=query)
        if reason := filters.cleaned_data["reason"]:
            listed = listed.filter(reason=reason)
    writer: Any = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in suppressions.export_rows(listed)), content_type="text/csv; charset=utf-8"
    )
    name = f"suppressions-{slugify(account.name) or account.pk}-{timezone.now():%Y%m%d}.csv"
    response["Content-Disposition"] = content_disposition_header(True, name)
    return response  # type: ignore[return-value]


urlpatterns: list[URLPattern] = [
    path("accounts/<int:pk>/suppressions/import/", suppression_import, name="suppression_import"),
    path("accounts/<int:pk>/suppressions/export.csv", suppression_export, name="suppression_export"),
]
