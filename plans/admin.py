"""The XES team's back office for plans and credits.

Orders are approved or rejected, custom plans created, terms granted and credits adjusted here,
always through :mod:`plans.services`, so that every change of credits has its ledger entry. The
ledger, the balances and reservations are read-only: the services alone write them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from accounts.models import Organisation, User
from accounts.services import ServiceError
from plans import resources, services
from plans.constants import CUSTOM_PLAN_MIN_EMAILS
from plans.models import (
    AddOnProduct,
    AddOnSubscription,
    ClientAllocation,
    CreditAccount,
    CreditEntry,
    Order,
    Plan,
    Reservation,
    ReservationPart,
    Subscription,
)
from xes_portal.lib.admin import admin_link

BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


def ledger_url(organisation_id: int, **filters: Any) -> str:
    """The ledger changelist filtered to one organisation (and optionally more)."""
    query = "&".join(f"{key}={value}" for key, value in {"organisation__id__exact": organisation_id, **filters}.items())
    return f"{reverse('admin:plans_creditentry_changelist')}?{query}"


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only :mod:`plans.services` may write: the team looks, never edits."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- plans --------------------------------------------------------------------------------


class PlanForm(forms.ModelForm):
    """Custom plans are one organisation's and above the catalogue's largest plan; others are nobody's.

    The database enforces the same with check constraints; checking here first turns a
    constraint violation into an error next to the field that causes it.
    """

    class Meta:
        model = Plan
        fields = (
            "code",
            "name",
            "emails_per_year",
            "price_per_1000",
            "annual_fee",
            "eligibility",
            "organisation",
            "free_first_year",
            "renewable",
            "orderable",
            "sort_order",
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        eligibility = data.get("eligibility")
        organisation = data.get("organisation")
        emails = data.get("emails_per_year")
        if eligibility == Plan.Eligibility.CUSTOM:
            if organisation is None:
                self.add_error("organisation", _("A custom plan is made for one organisation: choose it."))
            if emails is not None and emails <= CUSTOM_PLAN_MIN_EMAILS:
                self.add_error(
                    "emails_per_year",
                    _("Custom plans are for more than %(min)s e-mails a year; below that, use a catalogue plan.")
                    % {"min": f"{CUSTOM_PLAN_MIN_EMAILS:,}"},
                )
        elif eligibility and organisation is not None:
            self.add_error(
                "organisation",
                _("Only custom plans belong to an organisation: leave this empty, or make it a custom plan."),
            )
        return data


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    form = PlanForm
    list_display = (
        "name",
        "code",
        "emails_per_year",
        "price_per_1000",
        "annual_fee",
        "eligibility",
        "organisation_link",
        "orderable",
        "renewable",
    )
    list_filter = ("eligibility", "orderable", "renewable")
    search_fields = ("name", "code", "organisation__name")
    list_select_related = ("organisation",)
    autocomplete_fields = ("organisation",)
    readonly_fields = ("created_at",)
    fieldsets = (
        (None, {"fields": ("code", "name", "emails_per_year", "price_per_1000", "annual_fee")}),
        (
            gettext_lazy("Who may get it"),
            {
                "fields": ("eligibility", "organisation", "free_first_year", "renewable", "orderable", "sort_order"),
                "description": gettext_lazy(
                    "Custom plans: choose “Custom plan”, the organisation, and more than 30,000,000 e-mails a year; "
                    "then grant it from Subscription terms → Grant a plan term."
                ),
            },
        ),
        (None, {"fields": ("created_at",)}),
    )

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Plan) -> str:
        return admin_link(obj.organisation) if obj.organisation_id else "—"


# --- orders -------------------------------------------------------------------------------


class RejectOrderForm(forms.Form):
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=gettext_lazy("The customer sees this reason."),
    )


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    """Orders come from the portal; the team decides them with the actions (list or order page)."""

    list_display = (
        "created_at",
        "organisation_link",
        "item",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
    )
    list_filter = ("status", "plan", "addon", "created_at")
    search_fields = ("organisation__name", "domain", "plan__name", "requested_by__email")
    list_select_related = ("organisation", "plan", "addon", "requested_by", "decided_by")
    date_hierarchy = "created_at"
    fields = (
        "organisation",
        "plan",
        "addon",
        "domain",
        "note",
        "status",
        "requested_by",
        "created_at",
        "decided_by",
        "decided_at",
        "decision_note",
        "term_link",
    )
    readonly_fields = fields
    actions = ("approve", "reject")

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("plans.change_order")

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Order) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=gettext_lazy("ordered"))
    def item(self, obj: Order) -> str:
        return str(obj.plan) if obj.plan_id else f"{obj.addon} · {obj.domain}"

    @admin.display(description=gettext_lazy("term"))
    def term_link(self, obj: Order) -> str:
        term = Subscription.objects.filter(order=obj).first()
        if term is not None:
            return admin_link(term)
        addon = AddOnSubscription.objects.filter(order=obj).first()
        return admin_link(addon)

    @admin.action(
        description=gettext_lazy("Approve the order"),
        description_plural=gettext_lazy("Approve selected orders"),
        permissions=["decide"],
        location=BOTH_LOCATIONS,
    )
    def approve(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        approved = 0
        for order in queryset.select_related("organisation", "plan", "addon"):
            try:
                services.approve_order(order, by=_user(request))
            except ServiceError as exc:
                self.message_user(request, _("%(order)s: %(error)s") % {"order": order, "error": exc}, messages.ERROR)
            else:
                approved += 1
        if approved:
            self.message_user(
                request,
                ngettext("%(n)d order approved.", "%(n)d orders approved.", approved) % {"n": approved},
                messages.SUCCESS,
            )

    @admin.action(
        description=gettext_lazy("Reject the order…"),
        description_plural=gettext_lazy("Reject selected orders…"),
        permissions=["decide"],
        location=BOTH_LOCATIONS,
    )
    def reject(self, request: HttpRequest, queryset: QuerySet[Order]) -> HttpResponse | None:
        """Ask for the reason on a page of its own, then reject each order with it."""
        orders = list(queryset.select_related("organisation", "plan", "addon"))
        form = RejectOrderForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_bound and form.is_valid():
            rejected = 0
            for order in orders:
                try:
                    services.reject_order(order, by=_user(request), reason=form.cleaned_data["reason"])
                except ServiceError as exc:
                    self.message_user(
                        request, _("%(order)s: %(error)s") % {"order": order, "error": exc}, messages.ERROR
                    )
                else:
                    rejected += 1
            if rejected:
                self.message_user(
                    request,
                    ngettext("%(n)d order rejected.", "%(n)d orders rejected.", rejected) % {"n": rejected},
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(reverse("admin:plans_order_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Reject orders"),
            "opts": self.opts,
            "orders": orders,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:plans_order_changelist"),
        }
        return TemplateResponse(request, "admin/plans/order/reject.html", context)


# --- terms, adjustments, expiry -----------------------------------------------------------


class AdjustCreditsForm(forms.Form):
    emails = forms.IntegerField(
        label=gettext_lazy("E-mails"),
        min_value=-(10**12),
        max_value=10**12,
        help_text=gettext_lazy("Positive adds e-mails to this term; negative removes unused ones."),
    )
    reason = forms.CharField(
        label=gettext_lazy("Reason"),
        max_length=300,
        help_text=gettext_lazy("Required. Kept in the ledger with your name."),
    )

    def clean_emails(self) -> int:
        emails = self.cleaned_data["emails"]
        if emails == 0:
            raise forms.ValidationError(_("Enter a number of e-mails other than zero."))
        return emails


class PlanChoiceField(forms.ModelChoiceField):
    """Custom plans carry their organisation's name, so two “Custom” plans are told apart."""

    def label_from_instance(self, obj: Any) -> str:
        if obj.is_custom:
            return f"{obj.name} ({obj.organisation})"
        return str(obj)


class GrantPlanForm(forms.Form):
    organisation = forms.ModelChoiceField(queryset=Organisation.objects.all(), label=gettext_lazy("Organisation"))
    plan = PlanChoiceField(queryset=Plan.objects.select_related("organisation"), label=gettext_lazy("Plan"))

    def __init__(self, *args: Any, admin_site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["organisation"]
        assert isinstance(field, forms.ModelChoiceField)
        field.widget = AutocompleteSelect(Subscription._meta.get_field("organisation"), admin_site)
        field.widget.choices = field.choices  # the autocomplete widget renders the chosen value from them

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        plan, organisation = data.get("plan"), data.get("organisation")
        if plan is not None and organisation is not None and plan.is_custom and plan.organisation_id != organisation.pk:
            self.add_error("plan", _("This custom plan belongs to another organisation."))
        return data


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """Plan terms with their balances. Terms start from orders or from “Grant a plan term”."""

    list_display = (
        "__str__",
        "organisation_link",
        "origin",
        "starts_at",
        "ends_at",
        "included_emails",
        "available",
        "reserved",
        "used",
        "state",
        "adjust_link",
    )
    list_filter = ("origin", "plan", ("expired_at", admin.EmptyFieldListFilter))
    search_fields = ("organisation__name", "plan__name")
    list_select_related = ("organisation", "plan")
    date_hierarchy = "ends_at"
    fields = (
        "organisation",
        "plan",
        "origin",
        "order",
        "starts_at",
        "ends_at",
        "ended_early_at",
        "expired_at",
        "included_emails",
        "price_per_1000",
        "available",
        "reserved",
        "used",
        "created_at",
        "ledger_link",
    )
    readonly_fields = fields
    actions = ("run_expiry",)

    def has_adjust_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("plans.change_subscription")

    def has_grant_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("plans.add_subscription")

    def get_urls(self) -> list[URLPattern]:  # type: ignore[override]
        wrap = self.admin_site.admin_view
        return [
            path("grant/", wrap(self.grant_view), name="plans_subscription_grant"),
            path("run-expiry/", wrap(self.run_expiry_view), name="plans_subscription_run_expiry"),
            path("<int:pk>/adjust/", wrap(self.adjust_view), name="plans_subscription_adjust"),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {
            "can_grant": self.has_grant_permission(request),
            "can_run_expiry": self.has_adjust_permission(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"can_adjust": self.has_adjust_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Subscription) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=gettext_lazy("state"))
    def state(self, obj: Subscription) -> str:
        now = timezone.now()
        if obj.expired_at is not None:
            return _("Expired")
        if obj.starts_at > now:
            return _("Upcoming")
        if obj.ends_at <= now:
            return _("Ended, expiry pending")
        return _("Active")

    @admin.display(description=gettext_lazy("credits"))
    def adjust_link(self, obj: Subscription) -> str:
        if obj.expired_at is not None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:plans_subscription_adjust", args=[obj.pk]), _("Adjust")
        )

    @admin.display(description=gettext_lazy("ledger"))
    def ledger_link(self, obj: Subscription) -> str:
        url = ledger_url(obj.organisation_id, subscription__id__exact=obj.pk)
        return format_html('<a href="{}">{}</a>', url, _("Ledger entries of this term"))

    def adjust_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """Add or remove e-mails of one term, with a reason, through ``services.adjust_credits``."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        term = get_object_or_404(Subscription.objects.select_related("organisation", "plan"), pk=pk)
        form = AdjustCreditsForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            try:
                services.adjust_credits(
                    term, form.cleaned_data["emails"], form.cleaned_data["reason"], by=_user(request)
                )
            except ServiceError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    _("Adjusted %(term)s by %(delta)s e-mails; %(available)s available now.")
                    % {
                        "term": term,
                        "delta": f"{form.cleaned_data['emails']:+,}",
                        "available": f"{term.available:,}",
                    },
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:plans_subscription_change", args=[term.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Adjust credits"),
            "opts": self.opts,
            "original": term,
            "term": term,
            "form": form,
            "ledger_url": ledger_url(term.organisation_id, subscription__id__exact=term.pk),
        }
        return TemplateResponse(request, "admin/plans/subscription/adjust.html", context)

    def grant_view(self, request: HttpRequest) -> HttpResponse:
        """Start a term of any plan (custom plans included) for an organisation, as the XES team."""
        if not self.has_grant_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else None
        form = GrantPlanForm(data, initial=request.GET.dict(), admin_site=self.admin_site)
        if form.is_bound and form.is_valid():
            try:
                term = services.grant_plan(
                    form.cleaned_data["organisation"],
                    form.cleaned_data["plan"],
                    origin=Subscription.Origin.XES_TEAM,
                    by=_user(request),
                )
            except ServiceError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(
                    request,
                    _("Granted %(term)s to %(organisation)s.") % {"term": term, "organisation": term.organisation},
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:plans_subscription_change", args=[term.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Grant a plan term"),
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "admin/plans/subscription/grant.html", context)

    def run_expiry_view(self, request: HttpRequest) -> HttpResponse:
        """GET: how many terms are due; POST: expire them now (the hourly job does the same)."""
        if not self.has_adjust_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            self._run_expiry(request)
            return HttpResponseRedirect(reverse("admin:plans_subscription_changelist"))
        due = Subscription.objects.filter(expired_at__isnull=True, ends_at__lte=timezone.now()).count()
        context = {
            **self.admin_site.each_context(request),
            "title": _("Run expiry now"),
            "opts": self.opts,
            "due": due,
        }
        return TemplateResponse(request, "admin/plans/subscription/run_expiry.html", context)

    def _run_expiry(self, request: HttpRequest) -> None:
        count = services.expire_due_terms()
        self.message_user(
            request,
            ngettext("%(n)d ended term expired.", "%(n)d ended terms expired.", count) % {"n": count},
            messages.SUCCESS,
        )

    @admin.action(
        description=gettext_lazy("Run expiry now (every ended term, not only the selected)"),
        permissions=["adjust"],
    )
    def run_expiry(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
        self._run_expiry(request)


# --- the ledger ---------------------------------------------------------------------------


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    """The append-only ledger of every organisation; filter by organisation to read one."""

    list_display = (
        "created_at",
        "organisation_link",
        "kind",
        "emails",
        "term_link",
        "client",
        "sending_account",
        "price_per_1000",
        "reason",
        "created_by",
    )
    list_filter = ("kind", ("organisation", admin.RelatedOnlyFieldListFilter))
    ordering = ("-created_at", "-pk")
    date_hierarchy = "created_at"
    search_fields = ("organisation__name", "reason")
    list_select_related = ("organisation", "subscription__plan", "client", "sending_account", "created_by")
    actions = ("export_csv", "export_xlsx")

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: CreditEntry) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=gettext_lazy("term"))
    def term_link(self, obj: CreditEntry) -> str:
        if obj.subscription_id is None:
            return _("overage") if obj.is_overage else "—"
        return admin_link(obj.subscription)

    def _export(self, queryset: QuerySet[CreditEntry], fmt: str) -> HttpResponse:
        dataset = resources.LedgerResource().export_entries(queryset, fmt)
        response = HttpResponse(resources.render(dataset, fmt), content_type=resources.content_type(fmt))
        name = f"xes-ledger-{timezone.now():%Y%m%d-%H%M%S}.{fmt}"
        response["Content-Disposition"] = content_disposition_header(True, name)
        return response

    @admin.action(description=gettext_lazy("Export selected entries as CSV"))
    def export_csv(self, request: HttpRequest, queryset: QuerySet[CreditEntry]) -> HttpResponse:
        return self._export(queryset, "csv")

    @admin.action(description=gettext_lazy("Export selected entries as Excel"))
    def export_xlsx(self, request: HttpRequest, queryset: QuerySet[CreditEntry]) -> HttpResponse:
        return self._export(queryset, "xlsx")


@admin.register(CreditAccount)
class CreditAccountAdmin(admin.ModelAdmin):
    """Overage settings per organisation; the overage balances are the ledger's."""

    list_display = (
        "organisation_link",
        "allow_overage",
        "monthly_overage_limit",
        "overage_reserved",
        "overage_used",
        "ledger_link",
    )
    list_filter = ("allow_overage",)
    search_fields = ("organisation__name",)
    list_select_related = ("organisation",)
    fields = (
        "organisation",
        "allow_overage",
        "monthly_overage_limit",
        "overage_reserved",
        "overage_used",
        "ledger_link",
    )
    readonly_fields = ("organisation", "overage_reserved", "overage_used", "ledger_link")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Created with the first credit movement.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: CreditAccount, form: Any, change: bool) -> None:
        # Only the settings: a full save would write back balances read before a concurrent movement.
        obj.save(update_fields=["allow_overage", "monthly_overage_limit"])

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: CreditAccount) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=gettext_lazy("ledger"))
    def ledger_link(self, obj: CreditAccount) -> str:
        return format_html('<a href="{}">{}</a>', ledger_url(obj.organisation_id), _("Ledger"))


# --- add-ons, caps, reservations ----------------------------------------------------------


@admin.register(AddOnProduct)
class AddOnProductAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "annual_fee", "orderable")
    list_filter = ("orderable",)
    search_fields = ("name",)


@admin.register(AddOnSubscription)
class AddOnSubscriptionAdmin(ReadOnlyAdmin):
    """Add-on terms start when an add-on order is approved."""

    list_display = ("domain", "product", "organisation_link", "starts_at", "ends_at", "order")
    list_filter = ("product",)
    search_fields = ("domain", "organisation__name")
    list_select_related = ("product", "organisation", "order__organisation", "order__plan", "order__addon")
    date_hierarchy = "ends_at"

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: AddOnSubscription) -> str:
        return admin_link(obj.organisation)


@admin.register(ClientAllocation)
class ClientAllocationAdmin(admin.ModelAdmin):
    list_display = ("client", "organisation_link", "yearly_cap", "mode", "period_start")
    list_filter = ("mode",)
    search_fields = ("client__name", "client__organisation__name")
    list_select_related = ("client__organisation",)
    autocomplete_fields = ("client",)

    def save_model(self, request: HttpRequest, obj: ClientAllocation, form: Any, change: bool) -> None:
        # Not ``warned_period_start``: the sending path sets it, and a stale copy would warn twice.
        obj.save(update_fields=["client", "yearly_cap", "mode", "period_start"] if change else None)

    @admin.display(description=gettext_lazy("organisation"), ordering="client__organisation__name")
    def organisation_link(self, obj: ClientAllocation) -> str:
        return admin_link(obj.client.organisation)


class ReservationPartInline(admin.TabularInline):
    model = ReservationPart
    extra = 0
    can_delete = False
    fields = ("position", "subscription", "price_per_1000", "quantity", "consumed", "released")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReservationPart]:
        return super().get_queryset(request).select_related("subscription__plan")


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "organisation_link",
        "client",
        "sending_account",
        "purpose",
        "quantity",
        "consumed",
        "released",
        "outstanding",
    )
    search_fields = ("organisation__name", "purpose")
    list_select_related = ("organisation", "client", "sending_account")
    date_hierarchy = "created_at"
    inlines = (ReservationPartInline,)

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: Reservation) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=gettext_lazy("outstanding"))
    def outstanding(self, obj: Reservation) -> int:
        return obj.outstanding
