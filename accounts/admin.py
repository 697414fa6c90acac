"""The XES team's back office for tenancy: organisations with their members, clients and accounts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts import services
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


def _link(obj: Any, label: str | None = None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label or str(obj))


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role", "client", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user", "client")
    show_change_link = True


class ClientInline(admin.TabularInline):
    model = Client
    extra = 0
    fields = ("name", "contact_email", "is_active")
    show_change_link = True


class SendingAccountInline(admin.TabularInline):
    model = SendingAccount
    extra = 0
    fields = ("name", "client", "standing", "standing_changed_at")
    readonly_fields = ("standing_changed_at",)
    show_change_link = True


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ("email",)
    list_display = ("email", "first_name", "last_name", "is_staff", "is_active", "last_login", "date_joined")
    list_filter = ("is_staff", "is_superuser", "is_active")
    search_fields = ("email", "first_name", "last_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Personal info"), {"fields": ("first_name", "last_name")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        (_("Important dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = (MembershipInline,)


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "billing_email",
        "has_cross_media_configuration",
        "is_cloud_emedia_customer",
        "members_count",
        "clients_count",
        "accounts_count",
        "created_at",
    )
    list_filter = ("has_cross_media_configuration", "is_cloud_emedia_customer", "created_at")
    search_fields = ("name", "billing_email", "memberships__user__email")
    date_hierarchy = "created_at"
    inlines = (MembershipInline, ClientInline, SendingAccountInline)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organisation]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_members=Count("memberships", distinct=True),
                n_clients=Count("clients", distinct=True),
                n_accounts=Count("sending_accounts", distinct=True),
            )
        )

    @admin.display(description=_("members"), ordering="n_members")
    def members_count(self, obj: Any) -> int:
        return obj.n_members

    @admin.display(description=_("clients"), ordering="n_clients")
    def clients_count(self, obj: Any) -> int:
        return obj.n_clients

    @admin.display(description=_("sending accounts"), ordering="n_accounts")
    def accounts_count(self, obj: Any) -> int:
        return obj.n_accounts


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ("name", "organisation_link", "contact_email", "is_active", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "contact_email", "organisation__name")
    list_select_related = ("organisation",)
    autocomplete_fields = ("organisation",)
    inlines = (SendingAccountInline,)

    @admin.display(description=_("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Client) -> str:
        return _link(obj.organisation)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "organisation_link", "role", "client", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organisation__name", "client__name")
    list_select_related = ("user", "organisation", "client")
    autocomplete_fields = ("user", "organisation", "client")

    @admin.display(description=_("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Membership) -> str:
        return _link(obj.organisation)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    list_display = ("email", "organisation", "role", "client", "invited_by", "created_at", "accepted_at")
    list_filter = ("role", ("accepted_at", admin.EmptyFieldListFilter))
    search_fields = ("email", "organisation__name")
    list_select_related = ("organisation", "client", "invited_by")
    readonly_fields = ("nonce", "created_at", "accepted_at")
    autocomplete_fields = ("organisation", "client", "invited_by")


class SenderAddressInline(admin.TabularInline):
    model = SenderAddress
    extra = 0
    fields = ("email", "display_name", "verified_at", "created_at")
    readonly_fields = ("email", "display_name", "verified_at", "created_at")
    show_change_link = True
    can_delete = False


@admin.register(SendingAccount)
class SendingAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "organisation_link", "client", "standing", "standing_changed_at", "created_at")
    list_filter = ("standing",)
    search_fields = ("name", "organisation__name", "client__name")
    list_select_related = ("organisation", "client")
    autocomplete_fields = ("organisation", "client")
    readonly_fields = ("standing_changed_at",)
    inlines = (SenderAddressInline,)

    @admin.display(description=_("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: SendingAccount) -> str:
        return _link(obj.organisation)

    def save_model(self, request: HttpRequest, obj: SendingAccount, form: Any, change: bool) -> None:
        if change and "standing" in form.changed_data:
            obj.standing_changed_at = timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(SenderAddress)
class SenderAddressAdmin(admin.ModelAdmin):
    list_display = ("email", "display_name", "account_link", "organisation", "is_verified", "verified_at", "created_at")
    list_filter = (("verified_at", admin.EmptyFieldListFilter),)
    search_fields = ("email", "display_name", "sending_account__name", "sending_account__organisation__name")
    list_select_related = ("sending_account__organisation",)
    readonly_fields = ("verified_at", "created_at", "created_by")
    autocomplete_fields = ("sending_account",)
    actions = ("resend_verification",)

    @admin.display(description=_("sending account"), ordering="sending_account__name")
    def account_link(self, obj: SenderAddress) -> str:
        return _link(obj.sending_account)

    @admin.display(description=_("organisation"))
    def organisation(self, obj: SenderAddress) -> str:
        return _link(obj.sending_account.organisation)

    @admin.display(description=_("verified"), boolean=True)
    def is_verified(self, obj: SenderAddress) -> bool:
        return obj.is_verified

    @admin.action(description=_("Send a new verification link"))
    def resend_verification(self, request: HttpRequest, queryset: QuerySet[SenderAddress]) -> None:
        sent = 0
        for sender in queryset.select_related("sending_account__organisation"):
            try:
                services.send_sender_verification(sender)
            except services.ServiceError as exc:
                self.message_user(request, f"{sender.email}: {exc}", messages.WARNING)
            else:
                sent += 1
        if sent:
            self.message_user(request, _("%(n)d verification link(s) sent.") % {"n": sent}, messages.SUCCESS)


@admin.register(SenderVerificationEmail)
class SenderVerificationEmailAdmin(admin.ModelAdmin):
    list_display = ("sender", "sent_at")
    search_fields = ("sender__email",)
    list_select_related = ("sender",)
    date_hierarchy = "sent_at"


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "prefix", "account_link", "is_active", "created_at", "last_used_at", "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "prefix", "sending_account__name", "sending_account__organisation__name")
    list_select_related = ("sending_account",)
    readonly_fields = ("prefix", "hashed_key", "created_at", "created_by", "last_used_at", "revoked_at")
    fields = ("sending_account", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at")
    actions = ("revoke",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Keys are created in the portal, where the secret can be shown once to its owner.
        return False

    @admin.display(description=_("sending account"), ordering="sending_account__name")
    def account_link(self, obj: ApiKey) -> str:
        return _link(obj.sending_account)

    @admin.display(description=_("active"), boolean=True)
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    @admin.action(description=_("Revoke selected keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        n = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, _("%(n)d key(s) revoked.") % {"n": n}, messages.SUCCESS)
