"""Admin: suppression lists and the sandbox outbox.

The XES team may add and remove any suppression (customers can remove only manual entries), export
selected entries as CSV (formula-safe) and import a CSV file into any account's list (the same
service as the portal's import, with the same dry run). The sandbox outbox is read-only: the
sandbox provider alone writes it.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.translation import gettext_lazy as _

from accounts.models import SendingAccount, User
from accounts.services import ServiceError, normalise_email
from deliverability import suppressions
from deliverability.models import SandboxEvent, SandboxMessage, Suppression
from deliverability.suppressions import already_suppressed_message
from xes_portal.lib.admin import admin_link


class SuppressionAdminForm(forms.ModelForm):
    """The same normalisation and duplicate rule as the portal and the services."""

    class Meta:
        model = Suppression
        fields = ("sending_account", "email", "reason", "note")

    def clean_email(self) -> str:
        return normalise_email(self.cleaned_data["email"])

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        account, email = data.get("sending_account"), data.get("email")
        if account is not None and email:
            clash = Suppression.objects.filter(sending_account=account, email__iexact=email).exclude(
                pk=self.instance.pk
            )
            if clash.exists():
                self.add_error("email", already_suppressed_message(clash.get()))
        return data


class SuppressionImportAdminForm(forms.Form):
    sending_account = forms.ModelChoiceField(
        queryset=SendingAccount.objects.select_related("organisation"), label=_("Sending account")
    )
    file = forms.FileField(
        label=_("CSV file"),
        help_text=_("A column named “email” (or addresses in the first column); an optional “note” column."),
    )
    note = forms.CharField(label=_("Note for rows without one"), required=False, max_length=300)

    def __init__(self, *args: Any, admin_site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["sending_account"]
        assert isinstance(field, forms.ModelChoiceField)
        field.widget = AutocompleteSelect(Suppression._meta.get_field("sending_account"), admin_site)
        field.widget.choices = field.choices


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    form = SuppressionAdminForm
    actions = ("export_csv",)
    change_list_template = "deliverability/admin/suppression_change_list.html"
    list_display = ("email", "reason", "account_link", "organisation", "created_at", "created_by")
    list_filter = ("reason", "created_at")
    search_fields = ("email", "note", "sending_account__name", "sending_account__organisation__name")
    list_select_related = ("sending_account__organisation", "created_by")
    autocomplete_fields = ("sending_account",)
    readonly_fields = ("created_at", "created_by")
    date_hierarchy = "created_at"

    @admin.display(description=_("sending account"), ordering="sending_account__name")
    def account_link(self, obj: Suppression) -> str:
        return admin_link(obj.sending_account)

    @admin.display(description=_("organisation"), ordering="sending_account__organisation__name")
    def organisation(self, obj: Suppression) -> str:
        return admin_link(obj.sending_account.organisation)

    def save_model(self, request: HttpRequest, obj: Suppression, form: Any, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user  # type: ignore[assignment]
        super().save_model(request, obj, form, change)

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliverability.add_suppression")

    def get_urls(self) -> list[URLPattern]:  # type: ignore[override]
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="deliverability_suppression_import"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_import": self.has_import_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    @admin.action(description=_("Export selected as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Suppression]) -> HttpResponse:
        out = io.StringIO()
        writer = csv.writer(out)
        for row in suppressions.export_rows(queryset):
            writer.writerow(row)
        response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        name = f"suppressions-{timezone.now():%Y%m%d-%H%M}.csv"
        response["Content-Disposition"] = content_disposition_header(True, name)
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Import a CSV file into one account's list: "check" is a dry run, "import" adds."""
        if not self.has_import_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else None
        form = SuppressionImportAdminForm(data, request.FILES or None, admin_site=self.admin_site)
        result = None
        if form.is_bound and form.is_valid():
            user = request.user
            try:
                result = suppressions.import_csv(
                    form.cleaned_data["sending_account"],
                    form.cleaned_data["file"].read(suppressions.IMPORT_MAX_BYTES + 1),
                    dry_run=request.POST.get("action") != "import",
                    by=user if isinstance(user, User) else None,
                    note=form.cleaned_data["note"],
                )
            except ServiceError as exc:
                form.add_error("file", str(exc))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Import suppressed addresses"),
            "opts": self.opts,
            "form": form,
            "result": result,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "deliverability/admin/suppression_import.html", context)


class ReadOnlyMixin:
    """Rows that only the sandbox provider writes: the team looks, never edits."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SandboxEventInline(ReadOnlyMixin, admin.TabularInline):
    model = SandboxEvent
    fields = ("event_type", "created_at", "payload")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(SandboxMessage)
class SandboxMessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("subject", "recipients_shown", "from_address", "account_link", "created_at", "events_shown")
    list_filter = ("created_at",)
    search_fields = ("subject", "message_id", "from_address", "recipients", "sending_account__name")
    list_select_related = ("sending_account",)
    date_hierarchy = "created_at"
    inlines = (SandboxEventInline,)
    fields = (
        "message_id",
        "account_link",
        "configuration_set",
        "from_address",
        "recipients_shown",
        "subject",
        "tags",
        "created_at",
        "raw_text",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[SandboxMessage]:
        queryset = super().get_queryset(request).prefetch_related("events")
        match = request.resolver_match
        if match is not None and match.url_name == "deliverability_sandboxmessage_changelist":
            queryset = queryset.defer("raw")  # raw messages can be large; the list never shows them
        return queryset

    @admin.display(description=_("recipients"))
    def recipients_shown(self, obj: SandboxMessage) -> str:
        return ", ".join(obj.recipients or [])

    @admin.display(description=_("sending account"), ordering="sending_account__name")
    def account_link(self, obj: SandboxMessage) -> str:
        return admin_link(obj.sending_account)

    @admin.display(description=_("events"))
    def events_shown(self, obj: SandboxMessage) -> str:
        return ", ".join(event.event_type for event in obj.events.all())

    @admin.display(description=_("raw message"))
    def raw_text(self, obj: SandboxMessage) -> str:
        # Decoded and escaped: the team reads the MIME source, never a rendered message.
        text = bytes(obj.raw).decode("utf-8", errors="replace")
        return format_html("<pre>{}</pre>", text)


@admin.register(SandboxEvent)
class SandboxEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("event_type", "message_link", "created_at")
    list_filter = ("event_type", "created_at")
    search_fields = ("message__message_id", "message__subject")
    list_select_related = ("message",)
    readonly_fields = ("message", "event_type", "payload", "created_at")

    @admin.display(description=_("message"), ordering="message__created_at")
    def message_link(self, obj: SandboxEvent) -> str:
        return admin_link(obj.message, obj.message.subject or obj.message.message_id)
