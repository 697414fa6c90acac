"""The XES team's back office for tenancy: organisations with their members, clients and accounts."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

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
from accounts.signals import organisation_flags_changed
from xes_portal.lib.admin import admin_link


class SameOrganisationClientForm(forms.ModelForm):
    """A row's client must be one of the row's organisation's clients: the back office lists every
    tenant's clients, and a client of another organisation would leak data across tenants."""

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        client = data.get("client")
        organisation = data.get("organisation") if "organisation" in self.fields else None
        organisation_id = organisation.pk if organisation is not None else self.instance.organisation_id
        if client is not None and client.organisation_id != organisation_id:
            self.add_error("client", _("This client belongs to another organisation."))
        return data


class MembershipAdminForm(SameOrganisationClientForm):
    """Staff follow the portal's rule too: an organisation always keeps at least one owner."""

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        instance = self.instance
        if (
            instance.pk
            and instance.role == Membership.Role.OWNER
            and data.get("role") != Membership.Role.OWNER
            and not Membership.objects.filter(organisation_id=instance.organisation_id, role=Membership.Role.OWNER)
            .exclude(pk=instance.pk)
            .exists()
        ):
            self.add_error("role", _("An organisation needs at least one owner. Make someone else owner first."))
        return data


class _OrganisationClientsFormSet(BaseInlineFormSet):
    """On an organisation's page, offer only that organisation's clients."""

    def add_fields(self, form: forms.ModelForm[Any], index: int | None) -> None:
        super().add_fields(form, index)
        if "client" in form.fields:
            form.fields["client"].queryset = Client.objects.filter(organisation=self.instance.pk)  # type: ignore[attr-defined]


class _ClientAccountsFormSet(BaseInlineFormSet):
    """On a client's page, new sending accounts belong to the client's organisation."""

    def add_fields(self, form: forms.ModelForm[Any], index: int | None) -> None:
        super().add_fields(form, index)
        form.instance.organisation_id = self.instance.organisation_id


class _ClientAccountForm(forms.ModelForm):
    def clean_name(self) -> str:
        # The organisation is not a field of this form, so Django skips the (organisation, name) constraint.
        name = self.cleaned_data["name"]
        clash = SendingAccount.objects.filter(organisation_id=self.instance.organisation_id, name__iexact=name)
        if clash.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(_("The organisation already has a sending account with this name."))
        return name


class MembershipInline(admin.TabularInline):
    """Members on an organisation's page."""

    model = Membership
    form = SameOrganisationClientForm
    extra = 0
    fields = ("user", "role", "client", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user", "client")
    show_change_link = True


class UserMembershipInline(MembershipInline):
    """Memberships on a user's page: here the organisation is the field to choose."""

    fields = ("organisation", "role", "client", "created_at")
    autocomplete_fields = ("organisation", "client")


class ClientInline(admin.TabularInline):
    model = Client
    extra = 0
    fields = ("name", "contact_email", "is_active")
    show_change_link = True


class SendingAccountInline(admin.TabularInline):
    """Sending accounts on an organisation's page."""

    model = SendingAccount
    form = SameOrganisationClientForm
    formset = _OrganisationClientsFormSet
    extra = 0
    fields = ("name", "client", "standing", "standing_changed_at")
    # The standing changes through the reputation review (history, e-mails, campaigns paused).
    readonly_fields = ("standing", "standing_changed_at")
    show_change_link = True


class ClientSendingAccountInline(admin.TabularInline):
    """Sending accounts on a client's page (the client is the page's; the organisation follows)."""

    model = SendingAccount
    form = _ClientAccountForm
    formset = _ClientAccountsFormSet
    extra = 0
    fields = ("name", "standing", "standing_changed_at")
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
    inlines = (UserMembershipInline,)


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

    def save_model(self, request: HttpRequest, obj: Organisation, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        flags = {"has_cross_media_configuration", "is_cloud_emedia_customer"}
        if not change or flags & set(form.changed_data):
            # The plans app re-evaluates the included STARTER plan (after commit, through the queue).
            organisation_flags_changed.send(sender=Organisation, organisation=obj)

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
    inlines = (ClientSendingAccountInline,)

    @admin.display(description=_("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Client) -> str:
        return admin_link(obj.organisation)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    form = MembershipAdminForm
    list_display = ("user", "organisation_link", "role", "client", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organisation__name", "client__name")
    list_select_related = ("user", "organisation", "client")
    autocomplete_fields = ("user", "organisation", "client")

    @admin.display(description=_("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Membership) -> str:
        return admin_link(obj.organisation)

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        try:
            services.remove_member(obj)
        except services.ServiceError as exc:
            self.message_user(request, f"{obj}: {exc}", messages.ERROR)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for membership in queryset:
            self.delete_model(request, membership)


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    form = SameOrganisationClientForm
    list_display = ("email", "organisation", "role", "client", "invited_by", "created_at", "accepted_at")
    list_filter = ("role", ("accepted_at", admin.EmptyFieldListFilter))
    search_fields = ("email", "organisation__name")
    list_select_related = ("organisation", "client", "invited_by")
    readonly_fields = ("nonce", "created_at", "accepted_at")
    autocomplete_fields = ("organisation", "client", "invited_by")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # An invitation made here would get no link and no e-mail; members invite from the portal.
        return False


class SenderAddressInline(admin.TabularInline):
    model = SenderAddress
    extra = 0
    fields = ("email", "display_name", "verified_at", "created_at")
    readonly_fields = ("email", "display_name", "verified_at", "created_at")
    show_change_link = True
    can_delete = False


@admin.register(SendingAccount)
class SendingAccountAdmin(admin.ModelAdmin):
    form = SameOrganisationClientForm
    list_display = ("name", "organisation_link", "client", "standing", "standing_changed_at", "created_at")
    list_filter = ("standing",)
    search_fields = ("name", "organisation__name", "client__name")
    list_select_related = ("organisation", "client")
    autocomplete_fields = ("organisation", "client")
    # The standing changes only through the reputation review (Reputation › accounts under watch),
    # which keeps its history, e-mails the owners and pauses campaigns.
    readonly_fields = ("standing", "standing_changed_at", "reputation_link")
    inlines = (SenderAddressInline,)

    @admin.display(description=_("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: SendingAccount) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=_("reputation"))
    def reputation_link(self, obj: SendingAccount) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:reputation_watchedaccount_change", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Review the standing, lift or suspend"))


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
        return admin_link(obj.sending_account)

    @admin.display(description=_("organisation"))
    def organisation(self, obj: SenderAddress) -> str:
        return admin_link(obj.sending_account.organisation)

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
            self.message_user(
                request,
                ngettext("%(n)d verification link sent.", "%(n)d verification links sent.", sent) % {"n": sent},
                messages.SUCCESS,
            )


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
        return admin_link(obj.sending_account)

    @admin.display(description=_("active"), boolean=True)
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    @admin.action(description=_("Revoke selected keys"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        n = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(
            request, ngettext("%(n)d key revoked.", "%(n)d keys revoked.", n) % {"n": n}, messages.SUCCESS
        )
