"""Admin: domains with their records, the DNS check history and each account's provider set-up.

Records and checks are written by the checks only (read-only here); the XES team can run a check
now, and sees every lookup with what DNS answered.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from accounts.services import ServiceError, normalise_email
from deliverability import services
from deliverability.dns.messages import describe
from deliverability.models import DnsCheck, DnsRecord, Domain, ProviderSetup
from xes_portal.lib.admin import admin_link

BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


def _problems_html(problems: list[dict]) -> str:  # type: ignore[type-arg]
    return format_html_join("", "<div>{}</div>", ((describe(p),) for p in problems)) or "—"


class DnsRecordInline(admin.TabularInline):
    model = DnsRecord
    extra = 0
    can_delete = False
    fields = ("kind", "name", "rtype", "value", "priority", "status", "verdict", "checked_at", "ok_since")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("verdict"))
    def verdict(self, record: DnsRecord) -> str:
        return _problems_html(record.problems)


class DomainAdminForm(forms.ModelForm):
    """The team's edits go through the wizard's own rules, so the admin cannot store a record the
    portal would refuse."""

    class Meta:
        model = Domain
        fields = ("mail_from_subdomain", "dmarc_policy", "dmarc_rua", "dmarc_stage_started_at", "tracking_subdomain")

    def _label(self, field: str, what: str) -> str:
        value = self.cleaned_data.get(field, "")
        if not value:
            return ""
        try:
            return services.clean_label(value, what)
        except ServiceError as exc:
            raise ValidationError(str(exc)) from exc

    def clean_mail_from_subdomain(self) -> str:
        return self._label("mail_from_subdomain", _("MAIL FROM"))

    def clean_tracking_subdomain(self) -> str:
        return self._label("tracking_subdomain", _("branded links"))

    def clean_dmarc_rua(self) -> str:
        value = self.cleaned_data.get("dmarc_rua", "").strip()
        return normalise_email(value) if value else ""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        mail_from, tracking = data.get("mail_from_subdomain"), data.get("tracking_subdomain")
        if mail_from and mail_from == tracking:
            raise ValidationError(_("The MAIL FROM subdomain must differ from the tracking subdomain."))
        return data


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    form = DomainAdminForm
    list_display = ("__str__", "name", "account_link", "organisation", "dkim_mode", "verified_at", "last_checked_at")
    list_filter = ("dkim_mode", ("verified_at", admin.EmptyFieldListFilter), "dmarc_policy")
    search_fields = ("name", "sending_account__name", "sending_account__organisation__name")
    list_select_related = ("sending_account__organisation",)
    readonly_fields = (
        "sending_account",
        "name",
        "verification_token",
        "dkim_mode",
        "dkim_selector",
        "dkim_public_key",
        "dkim_tokens",
        "verified_at",
        "last_checked_at",
        "created_at",
    )
    fields = (
        *readonly_fields,
        "mail_from_subdomain",
        "dmarc_policy",
        "dmarc_rua",
        "dmarc_stage_started_at",
        "tracking_subdomain",
    )
    inlines = [DnsRecordInline]
    actions = ["check_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Domains are added through the wizard, which creates the provider identity.
        return False

    def save_model(self, request: HttpRequest, obj: Domain, form: object, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.sync_records(obj)

    @admin.display(description=gettext_lazy("sending account"), ordering="sending_account__name")
    def account_link(self, domain: Domain) -> str:
        return admin_link(domain.sending_account)

    @admin.display(description=gettext_lazy("organisation"), ordering="sending_account__organisation__name")
    def organisation(self, domain: Domain) -> str:
        return admin_link(domain.sending_account.organisation)

    @admin.action(
        description=gettext_lazy("Check the DNS records now"),
        permissions=["change"],
        location=BOTH_LOCATIONS,
    )
    def check_now(self, request: HttpRequest, queryset: QuerySet[Domain]) -> None:
        checked = 0
        for domain in queryset.select_related("sending_account__organisation"):
            services.check_domain(domain)
            checked += 1
        self.message_user(
            request,
            ngettext("%(n)d domain checked.", "%(n)d domains checked.", checked) % {"n": checked},
            messages.SUCCESS,
        )


@admin.register(DnsCheck)
class DnsCheckAdmin(admin.ModelAdmin):
    list_display = ("checked_at", "record_name", "kind", "domain_link", "status", "verdict")
    list_filter = ("status", "record__kind", "checked_at")
    search_fields = ("record__name", "record__domain__name")
    list_select_related = ("record__domain",)
    date_hierarchy = "checked_at"
    readonly_fields = ("record", "checked_at", "status", "problems", "found")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description=gettext_lazy("name"), ordering="record__name")
    def record_name(self, check: DnsCheck) -> str:
        return f"{check.record.name} {check.record.rtype}"

    @admin.display(description=gettext_lazy("kind"), ordering="record__kind")
    def kind(self, check: DnsCheck) -> str:
        return check.record.get_kind_display()

    @admin.display(description=gettext_lazy("domain"))
    def domain_link(self, check: DnsCheck) -> str:
        return admin_link(check.record.domain)

    @admin.display(description=gettext_lazy("verdict"))
    def verdict(self, check: DnsCheck) -> str:
        return _problems_html(check.problems)


@admin.register(ProviderSetup)
class ProviderSetupAdmin(admin.ModelAdmin):
    list_display = ("sending_account", "provider", "configuration_set", "tenant", "ready_at", "has_error")
    list_filter = ("provider",)
    search_fields = ("sending_account__name", "configuration_set", "tenant")
    readonly_fields = ("sending_account", "provider", "configuration_set", "tenant", "ready_at", "last_error")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=gettext_lazy("error"), boolean=True)
    def has_error(self, setup: ProviderSetup) -> bool:
        return bool(setup.last_error)


__all__ = ["DnsCheckAdmin", "DomainAdmin", "ProviderSetupAdmin"]
