"""Admin: dedicated IP pools and warm-up schedules (the XES team's side of dedicated IPs).

IPs are assigned through "Assign a dedicated IP", which calls :func:`deliverability.warmup.assign_ip`
(provider first, then the rows), so a pool is never edited by hand. Warm-up caps are edited day by
day in the schedule's inline, or regenerated from a target with an action.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Max, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from accounts.models import SendingAccount, User
from accounts.services import ServiceError
from deliverability import warmup
from deliverability.models import DedicatedIp, IpPool, WarmupDay, WarmupSchedule
from deliverability.providers import ProviderError
from xes_portal.lib.admin import admin_link

BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


def _schedule_state(starts_on: date, last_day: int | None) -> str:
    """Day N of M, not started or finished, on today's UTC date."""
    if not last_day:
        return "—"
    number = (warmup.today_utc() - starts_on).days + 1
    if number < 1:
        return _("starts %(date)s") % {"date": starts_on.isoformat()}
    if number > last_day:
        return _("finished")
    return _("day %(n)s of %(m)s") % {"n": number, "m": last_day}


# --- pools and IPs ------------------------------------------------------------------------


class AssignIpForm(forms.Form):
    sending_account = forms.ModelChoiceField(
        queryset=SendingAccount.objects.select_related("organisation"), label=gettext_lazy("Sending account")
    )
    address = forms.GenericIPAddressField(label=gettext_lazy("IP address"))
    starts_on = forms.DateField(
        label=gettext_lazy("Warm-up starts on"),
        required=False,
        help_text=gettext_lazy(
            "Only for the account's first IP (a further IP joins the running warm-up). Empty: today (UTC). "
            "Until then, day 1's cap applies."
        ),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )

    def __init__(self, *args: Any, admin_site: admin.AdminSite, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["sending_account"]
        assert isinstance(field, forms.ModelChoiceField)
        field.widget = AutocompleteSelect(IpPool._meta.get_field("sending_account"), admin_site)
        field.widget.choices = field.choices  # the autocomplete widget renders the chosen value from them

    def clean_address(self) -> str:
        address: str = self.cleaned_data["address"]
        taken = DedicatedIp.objects.filter(address=address).select_related("pool").first()
        if taken is not None:
            raise ValidationError(
                _("%(address)s is already assigned to the pool %(pool)s.") % {"address": address, "pool": taken.pool}
            )
        return address


class DedicatedIpInline(admin.TabularInline):
    """IPs arrive through "Assign a dedicated IP" (provider first), never by editing the pool."""

    model = DedicatedIp
    extra = 0
    can_delete = False
    fields = ("address", "assigned_at", "assigned_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[DedicatedIp]:
        return super().get_queryset(request).select_related("assigned_by")


@admin.register(IpPool)
class IpPoolAdmin(admin.ModelAdmin):
    """One pool per sending account, created with its first IP; read-only apart from assigning IPs.

    Pools are not deleted here: the provider's pool and the account's routing would stay behind.
    """

    list_display = ("name", "account_link", "organisation_link", "ip_count", "warmup_link")
    search_fields = ("name", "sending_account__name", "sending_account__organisation__name", "ips__address")
    list_select_related = ("sending_account__organisation", "warmup")
    fields = ("name", "sending_account", "created_at", "warmup_link", "todays_cap")
    readonly_fields = fields
    inlines = (DedicatedIpInline,)
    actions = ("assign_another_ip",)
    change_list_template = "deliverability/ips/admin/pool_change_list.html"
    change_form_template = "deliverability/ips/admin/pool_change_form.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_assign_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliverability.add_dedicatedip")

    def get_queryset(self, request: HttpRequest) -> QuerySet[IpPool]:
        return super().get_queryset(request).annotate(ip_total=Count("ips"))

    def get_urls(self) -> list[URLPattern]:  # type: ignore[override]
        wrap = self.admin_site.admin_view
        return [path("assign/", wrap(self.assign_view), name="deliverability_ippool_assign"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"can_assign": self.has_assign_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"can_assign": self.has_assign_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra)

    @admin.display(description=gettext_lazy("sending account"), ordering="sending_account__name")
    def account_link(self, obj: IpPool) -> str:
        return admin_link(obj.sending_account)

    @admin.display(description=gettext_lazy("organisation"), ordering="sending_account__organisation__name")
    def organisation_link(self, obj: IpPool) -> str:
        return admin_link(obj.sending_account.organisation)

    @admin.display(description=gettext_lazy("IPs"), ordering="ip_total")
    def ip_count(self, obj: IpPool) -> int:
        return getattr(obj, "ip_total", 0)

    @admin.display(description=gettext_lazy("warm-up"))
    def warmup_link(self, obj: IpPool) -> str:
        schedule = getattr(obj, "warmup", None)
        if schedule is None:
            return "—"
        return admin_link(schedule, _("starts %(date)s") % {"date": schedule.starts_on.isoformat()})

    @admin.display(description=gettext_lazy("today's cap (UTC)"))
    def todays_cap(self, obj: IpPool) -> str:
        cap = warmup.daily_cap(obj.sending_account_id)
        return _("none") if cap is None else f"{cap:,}"

    @admin.action(
        description=gettext_lazy("Assign another IP to this pool…"),
        permissions=["assign"],
        location=BOTH_LOCATIONS,
    )
    def assign_another_ip(self, request: HttpRequest, queryset: QuerySet[IpPool]) -> HttpResponse | None:
        pools = list(queryset[:2])
        if len(pools) != 1:
            self.message_user(request, _("Choose exactly one pool to assign an IP to."), messages.WARNING)
            return None
        query = urlencode({"sending_account": pools[0].sending_account_id})
        return HttpResponseRedirect(f"{reverse('admin:deliverability_ippool_assign')}?{query}")

    def assign_view(self, request: HttpRequest) -> HttpResponse:
        """Assign an IP to an account's pool through :func:`warmup.assign_ip`; provider errors become messages."""
        if not self.has_assign_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else None
        form = AssignIpForm(data, initial=request.GET.dict(), admin_site=self.admin_site)
        if form.is_bound and form.is_valid():
            account = form.cleaned_data["sending_account"]
            try:
                ip = warmup.assign_ip(
                    account, form.cleaned_data["address"], by=_user(request), starts_on=form.cleaned_data["starts_on"]
                )
            except ProviderError as exc:
                self.message_user(
                    request,
                    _("The provider refused; nothing was changed. %(error)s") % {"error": exc.user_message},
                    messages.ERROR,
                )
            except ServiceError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, self._assigned_message(ip, account), messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:deliverability_ippool_change", args=[ip.pool_id]))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Assign a dedicated IP"),
            "opts": self.opts,
            "form": form,
            "media": self.media + form.media,
        }
        return TemplateResponse(request, "deliverability/ips/admin/assign.html", context)

    @staticmethod
    def _assigned_message(ip: DedicatedIp, account: SendingAccount) -> str:
        progress = warmup.progress(account)
        text = _("%(address)s is assigned to %(account)s (pool %(pool)s).") % {
            "address": ip.address,
            "account": account,
            "pool": ip.pool.name,
        }
        if progress is None:
            return text
        if progress.started:
            state = _("The warm-up is on day %(n)s of %(m)s; today's cap is %(cap)s.")
        else:
            state = _("The warm-up starts on %(date)s; until then day 1's cap of %(cap)s applies.")
        cap = "—" if progress.cap is None else f"{progress.cap:,}"
        return f"{text} " + state % {
            "n": progress.day,
            "m": progress.days,
            "cap": cap,
            "date": progress.starts_on.isoformat(),
        }


# --- warm-up schedules --------------------------------------------------------------------


class WarmupDayForm(forms.ModelForm):
    class Meta:
        model = WarmupDay
        fields = ("day", "daily_cap")

    def clean_daily_cap(self) -> int:
        cap: int = self.cleaned_data["daily_cap"]
        if cap < 1:
            raise ValidationError(_("A cap must be at least 1 e-mail."))
        return cap


class WarmupDayFormSet(BaseInlineFormSet):
    """The days, taken together: numbered 1, 2, 3… without gaps, caps that never go down."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        rows: list[tuple[int, int]] = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or (self.can_delete and self._should_delete_form(form)):  # type: ignore[attr-defined]
                continue
            rows.append((data["day"], data["daily_cap"]))
        rows.sort()
        days = [day for day, _cap in rows]
        duplicates = sorted({day for day in days if days.count(day) > 1})
        if duplicates:
            raise ValidationError(
                _("Each day appears once; these appear more often: %(days)s.")
                % {"days": ", ".join(str(d) for d in duplicates)}
            )
        missing = sorted(set(range(1, (days[-1] if days else 0) + 1)) - set(days))
        if missing:
            raise ValidationError(
                _("Days run 1, 2, 3… without gaps; missing: %(days)s.") % {"days": ", ".join(str(d) for d in missing)}
            )
        problems = warmup.cap_problems([cap for _day, cap in rows])
        if problems:
            raise ValidationError(problems)


class WarmupDayInline(admin.TabularInline):
    model = WarmupDay
    form = WarmupDayForm
    formset = WarmupDayFormSet
    extra = 0
    fields = ("day", "daily_cap")
    ordering = ("day",)


class RegenerateForm(forms.Form):
    target_daily_volume = forms.IntegerField(
        label=gettext_lazy("Target e-mails per day"),
        min_value=1,
        required=False,
        help_text=gettext_lazy("The last day's cap. Empty: each schedule keeps its own target."),
    )
    days = forms.IntegerField(
        label=gettext_lazy("Days"),
        min_value=1,
        max_value=365,
        initial=warmup.WARMUP_DAYS,
        help_text=gettext_lazy("Length of the warm-up; the start date stays."),
    )


@admin.register(WarmupSchedule)
class WarmupScheduleAdmin(admin.ModelAdmin):
    """Warm-ups start with an account's first IP; the team edits the caps or regenerates them."""

    list_display = ("__str__", "account_link", "starts_on", "target_daily_volume", "day_count", "state")
    search_fields = ("pool__name", "pool__sending_account__name", "pool__sending_account__organisation__name")
    list_select_related = ("pool__sending_account",)
    date_hierarchy = "starts_on"
    fields = ("pool", "starts_on", "target_daily_volume", "todays_cap", "created_at")
    readonly_fields = ("pool", "todays_cap", "created_at")
    inlines = (WarmupDayInline,)
    actions = ("regenerate",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Created by assign_ip with the pool's first IP.
        return False

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change, **kwargs)
        if "target_daily_volume" in form.base_fields:
            form.base_fields["target_daily_volume"].help_text = _(
                "Changing it does not change the caps: run “Regenerate the caps from a target” for that."
            )
        return form

    def get_queryset(self, request: HttpRequest) -> QuerySet[WarmupSchedule]:
        return super().get_queryset(request).annotate(day_total=Count("days"), last_day=Max("days__day"))

    @admin.display(description=gettext_lazy("sending account"), ordering="pool__sending_account__name")
    def account_link(self, obj: WarmupSchedule) -> str:
        return admin_link(obj.pool.sending_account)

    @admin.display(description=gettext_lazy("days"), ordering="day_total")
    def day_count(self, obj: WarmupSchedule) -> int:
        return getattr(obj, "day_total", 0)

    @admin.display(description=gettext_lazy("today (UTC)"))
    def state(self, obj: WarmupSchedule) -> str:
        return _schedule_state(obj.starts_on, getattr(obj, "last_day", None))

    @admin.display(description=gettext_lazy("today's cap (UTC)"))
    def todays_cap(self, obj: WarmupSchedule) -> str:
        cap = warmup.daily_cap(obj.pool.sending_account_id)
        state = _schedule_state(obj.starts_on, getattr(obj, "last_day", None))
        return format_html("{} · {}", _("none") if cap is None else f"{cap:,}", state)

    @admin.action(
        description=gettext_lazy("Regenerate the caps from a target…"),
        permissions=["change"],
        location=BOTH_LOCATIONS,
    )
    def regenerate(self, request: HttpRequest, queryset: QuerySet[WarmupSchedule]) -> HttpResponse | None:
        """Ask for the target and the length on a page of its own, then rewrite each schedule's days."""
        schedules = list(queryset.select_related("pool"))
        form = RegenerateForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_bound and form.is_valid():
            for schedule in schedules:
                target = form.cleaned_data["target_daily_volume"] or schedule.target_daily_volume
                warmup.regenerate_schedule(schedule, target, form.cleaned_data["days"])
            self.message_user(
                request,
                ngettext("%(n)d warm-up schedule regenerated.", "%(n)d warm-up schedules regenerated.", len(schedules))
                % {"n": len(schedules)},
                messages.SUCCESS,
            )
            if len(schedules) == 1:
                return HttpResponseRedirect(
                    reverse("admin:deliverability_warmupschedule_change", args=[schedules[0].pk])
                )
            return HttpResponseRedirect(reverse("admin:deliverability_warmupschedule_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": _("Regenerate warm-up caps"),
            "opts": self.opts,
            "schedules": schedules,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "changelist_url": reverse("admin:deliverability_warmupschedule_changelist"),
        }
        return TemplateResponse(request, "deliverability/ips/admin/regenerate.html", context)
