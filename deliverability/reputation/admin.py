"""Admin of reputation: the XES team's side.

- Accounts under watch (on warning, probation or suspended, or with an open review), with actions
  that each ask for a note on a page of their own: lift probation, lift suspension, put on
  probation, suspend, add a note. Every decision goes through :mod:`deliverability.reputation.services`.
- The history of standing changes and the counters: read-only.
- Alarms: open ones first; closed with a note.
- The thresholds: one row, validated (warning < probation < suspension).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from accounts.models import SendingAccount, User
from accounts.services import ServiceError
from deliverability.reputation import services
from deliverability.reputation.models import (
    Alarm,
    DailyCounter,
    ReputationState,
    StandingChange,
    Thresholds,
    WatchedAccount,
)
from deliverability.reputation.services import percent
from xes_portal.lib.admin import admin_link

BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]
Standing = SendingAccount.Standing


def _user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)
    return user


class NoteForm(forms.Form):
    note = forms.CharField(
        label=gettext_lazy("Note"),
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text=gettext_lazy("Required. Kept in the account's history with your name; the customer does not see it."),
    )

    def clean_note(self) -> str:
        note = self.cleaned_data["note"].strip()
        if not note:
            raise forms.ValidationError(_("A note is required."))
        return note


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows that only the reputation services write."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def note_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: list[Any],
    *,
    action: str,
    title: str,
    intro: str,
    button: str,
    apply: Callable[[Any, User, str], Any],
    done: Callable[[int], str],
) -> HttpResponse | None:
    """Ask for a note on a page of its own, then apply the decision to each object with it."""
    changelist = reverse(f"admin:{modeladmin.opts.app_label}_{modeladmin.opts.model_name}_changelist")
    form = NoteForm(request.POST if request.POST.get("confirm") == "yes" else None)
    if form.is_bound and form.is_valid():
        ok = 0
        for obj in objects:
            try:
                apply(obj, _user(request), form.cleaned_data["note"])
            except ServiceError as exc:
                modeladmin.message_user(request, f"{obj}: {exc}", messages.ERROR)
            else:
                ok += 1
        if ok:
            modeladmin.message_user(request, done(ok), messages.SUCCESS)
        if len(objects) == 1:
            return HttpResponseRedirect(
                reverse(f"admin:{modeladmin.opts.app_label}_{modeladmin.opts.model_name}_change", args=[objects[0].pk])
            )
        return HttpResponseRedirect(changelist)
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "button": button,
        "opts": modeladmin.opts,
        "objects": objects,
        "form": form,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "changelist_url": changelist,
    }
    return TemplateResponse(request, "deliverability/reputation/admin/note_action.html", context)


# --- accounts under watch -----------------------------------------------------------------------


class StandingChangeInline(admin.TabularInline):
    model = StandingChange
    extra = 0
    fields = ("at", "kind", "old", "new", "reason", "notes", "by")
    readonly_fields = fields
    can_delete = False
    ordering = ("-at", "-pk")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class UnderReviewFilter(admin.SimpleListFilter):
    title = gettext_lazy("open review")
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(open_review=True)
        return queryset


@admin.register(WatchedAccount)
class WatchedAccountAdmin(admin.ModelAdmin):
    """Accounts not in good standing, or with an open review: the XES team's to-do list."""

    list_display = (
        "name",
        "organisation_link",
        "standing",
        "standing_changed_at",
        "bounce_rate",
        "complaint_rate",
        "deliveries",
        "review",
    )
    list_filter = ("standing", UnderReviewFilter)
    search_fields = ("name", "organisation__name", "client__name")
    list_select_related = ("organisation", "reputation")
    fields = (
        "name",
        "organisation_link",
        "client",
        "standing",
        "standing_changed_at",
        "window",
        "open_alarms",
    )
    readonly_fields = fields
    inlines = (StandingChangeInline,)
    actions = ("lift_probation", "lift_suspension", "add_note", "put_on_probation", "suspend")

    def get_queryset(self, request: HttpRequest) -> QuerySet[WatchedAccount]:
        review = Alarm.objects.filter(sending_account=OuterRef("pk"), kind=Alarm.Kind.REVIEW, resolved_at__isnull=True)
        return (
            super()
            .get_queryset(request)
            .annotate(open_review=Exists(review))
            .filter(Q(open_review=True) | ~Q(standing=Standing.GOOD))
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reputation.change_watchedaccount")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # Nothing here is edited by hand: decisions are the actions, each with its note.
        extra_context = {**(extra_context or {}), "show_save": False, "show_save_and_continue": False}
        return super().change_view(request, object_id, form_url, extra_context)

    def _state(self, obj: WatchedAccount) -> ReputationState | None:
        try:
            return obj.reputation
        except ReputationState.DoesNotExist:
            return None

    @admin.display(description=gettext_lazy("organisation"), ordering="organisation__name")
    def organisation_link(self, obj: WatchedAccount) -> str:
        return admin_link(obj.organisation)

    @admin.display(description=gettext_lazy("bounce rate"), ordering="reputation__bounce_rate")
    def bounce_rate(self, obj: WatchedAccount) -> str:
        state = self._state(obj)
        return percent(state.bounce_rate) if state else "–"

    @admin.display(description=gettext_lazy("complaint rate"), ordering="reputation__complaint_rate")
    def complaint_rate(self, obj: WatchedAccount) -> str:
        state = self._state(obj)
        return percent(state.complaint_rate, 3) if state else "–"

    @admin.display(description=gettext_lazy("delivered"), ordering="reputation__delivered")
    def deliveries(self, obj: WatchedAccount) -> str:
        state = self._state(obj)
        return f"{state.delivered:,}" if state else "–"

    @admin.display(description=gettext_lazy("review"), boolean=True, ordering="open_review")
    def review(self, obj: WatchedAccount) -> bool:
        return bool(getattr(obj, "open_review", False))

    @admin.display(description=gettext_lazy("window"))
    def window(self, obj: WatchedAccount) -> str:
        state = self._state(obj)
        if state is None or state.evaluated_at is None:
            return _("Not evaluated yet.")
        return _(
            "%(sent)s sent, %(delivered)s delivered, %(hard)s hard bounces (%(bounce)s), %(complaints)s complaints "
            "(%(complaint)s); evaluated %(at)s"
        ) % {
            "sent": f"{state.sent:,}",
            "delivered": f"{state.delivered:,}",
            "hard": f"{state.hard_bounces:,}",
            "bounce": percent(state.bounce_rate),
            "complaints": f"{state.complaints:,}",
            "complaint": percent(state.complaint_rate, 3),
            "at": timezone.localtime(state.evaluated_at).strftime("%Y-%m-%d %H:%M"),
        }

    @admin.display(description=gettext_lazy("open alarms"))
    def open_alarms(self, obj: WatchedAccount) -> str:
        alarms = Alarm.objects.filter(sending_account=obj, resolved_at__isnull=True)
        if not alarms:
            return "–"
        return format_html_join(mark_safe("<br>"), "{}: {}", ((a.get_kind_display(), a.message) for a in alarms))

    def _decide(
        self,
        request: HttpRequest,
        queryset: QuerySet[WatchedAccount],
        *,
        action: str,
        title: str,
        intro: str,
        button: str,
        apply: Callable[[Any, User, str], Any],
        done: Callable[[int], str],
    ) -> HttpResponse | None:
        return note_action(
            self,
            request,
            list(queryset.select_related("organisation")),
            action=action,
            title=title,
            intro=intro,
            button=button,
            apply=apply,
            done=done,
        )

    @admin.action(description=gettext_lazy("Lift the probation…"), permissions=["decide"], location=BOTH_LOCATIONS)
    def lift_probation(self, request: HttpRequest, queryset: QuerySet[WatchedAccount]) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            action="lift_probation",
            title=_("Lift the probation"),
            intro=_(
                "These accounts return to good standing now; their window restarts, so the events that led to the "
                "probation no longer count. The owners are e-mailed."
            ),
            button=_("Lift the probation"),
            apply=lambda account, user, note: services.lift_probation(account, by=user, note=note),
            done=lambda n: (
                ngettext("Probation lifted for %(n)d account.", "Probation lifted for %(n)d accounts.", n) % {"n": n}
            ),
        )

    @admin.action(description=gettext_lazy("Lift the suspension…"), permissions=["decide"], location=BOTH_LOCATIONS)
    def lift_suspension(self, request: HttpRequest, queryset: QuerySet[WatchedAccount]) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            action="lift_suspension",
            title=_("Lift the suspension"),
            intro=_(
                "These accounts return to good standing now and may send again; their window restarts. Paused "
                "campaigns stay paused until the customer resumes them. The owners are e-mailed."
            ),
            button=_("Lift the suspension"),
            apply=lambda account, user, note: services.lift_suspension(account, by=user, note=note),
            done=lambda n: (
                ngettext("Suspension lifted for %(n)d account.", "Suspension lifted for %(n)d accounts.", n) % {"n": n}
            ),
        )

    @admin.action(description=gettext_lazy("Add a note…"), permissions=["decide"], location=BOTH_LOCATIONS)
    def add_note(self, request: HttpRequest, queryset: QuerySet[WatchedAccount]) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            action="add_note",
            title=_("Add a note"),
            intro=_("The note goes into each account's history. Nothing else changes."),
            button=_("Add the note"),
            apply=lambda account, user, note: services.add_note(account, by=user, note=note),
            done=lambda n: ngettext("Note added to %(n)d account.", "Note added to %(n)d accounts.", n) % {"n": n},
        )

    @admin.action(description=gettext_lazy("Put on probation…"), permissions=["decide"], location=BOTH_LOCATIONS)
    def put_on_probation(self, request: HttpRequest, queryset: QuerySet[WatchedAccount]) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            action="put_on_probation",
            title=_("Put on probation"),
            intro=_(
                "Promotional campaigns of these accounts pause and sending slows down; transactional e-mail "
                "continues. The probation ends after the clean days, or when you lift it. The owners are e-mailed."
            ),
            button=_("Put on probation"),
            apply=lambda account, user, note: services.put_on_probation(account, by=user, note=note),
            done=lambda n: (
                ngettext("%(n)d account put on probation.", "%(n)d accounts put on probation.", n) % {"n": n}
            ),
        )

    @admin.action(description=gettext_lazy("Suspend…"), permissions=["decide"], location=BOTH_LOCATIONS)
    def suspend(self, request: HttpRequest, queryset: QuerySet[WatchedAccount]) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            action="suspend",
            title=_("Suspend"),
            intro=_(
                "All sending of these accounts stops and their campaigns pause, until you lift the suspension. "
                "The owners are e-mailed."
            ),
            button=_("Suspend"),
            apply=lambda account, user, note: services.suspend(account, by=user, note=note),
            done=lambda n: ngettext("%(n)d account suspended.", "%(n)d accounts suspended.", n) % {"n": n},
        )


# --- history, counters, alarms, thresholds ------------------------------------------------------


@admin.register(StandingChange)
class StandingChangeAdmin(ReadOnlyAdmin):
    list_display = ("at", "account_link", "organisation", "kind", "old", "new", "short_reason", "by")
    list_filter = ("kind", "new", "old", "at")
    search_fields = ("sending_account__name", "sending_account__organisation__name", "reason", "notes")
    list_select_related = ("sending_account__organisation", "by")
    date_hierarchy = "at"
    fields = ("sending_account", "kind", "old", "new", "reason", "notes", "figures", "at", "by")
    readonly_fields = fields

    @admin.display(description=gettext_lazy("sending account"), ordering="sending_account__name")
    def account_link(self, obj: StandingChange) -> str:
        return admin_link(obj.sending_account)

    @admin.display(description=gettext_lazy("organisation"))
    def organisation(self, obj: StandingChange) -> str:
        return str(obj.sending_account.organisation)

    @admin.display(description=gettext_lazy("reason"))
    def short_reason(self, obj: StandingChange) -> str:
        text = obj.notes if obj.kind == StandingChange.Kind.NOTE else obj.reason
        return text if len(text) <= 120 else text[:119] + "…"


@admin.register(DailyCounter)
class DailyCounterAdmin(ReadOnlyAdmin):
    list_display = ("day", "sending_account", "sent", "delivered", "hard_bounces", "soft_bounces", "complaints")
    search_fields = ("sending_account__name", "sending_account__organisation__name")
    list_select_related = ("sending_account",)
    date_hierarchy = "day"


class OpenFilter(admin.SimpleListFilter):
    title = gettext_lazy("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("open", _("Open")), ("resolved", _("Resolved"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alarm)
class AlarmAdmin(ReadOnlyAdmin):
    list_display = ("opened_at", "kind", "account_link", "message", "resolved_at", "resolved_by")
    list_filter = (OpenFilter, "kind", "opened_at")
    search_fields = ("sending_account__name", "sending_account__organisation__name", "message")
    list_select_related = ("sending_account", "resolved_by")
    fields = ("kind", "sending_account", "message", "figures", "opened_at", "resolved_at", "resolved_by", "resolution")
    readonly_fields = fields
    actions = ("resolve",)

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reputation.view_alarm") and request.user.has_perm(
            "reputation.change_watchedaccount"
        )

    @admin.display(description=gettext_lazy("sending account"), ordering="sending_account__name")
    def account_link(self, obj: Alarm) -> str:
        if obj.sending_account is None:
            return str(_("all accounts"))
        url = reverse("admin:reputation_watchedaccount_change", args=[obj.sending_account_id])
        return format_html('<a href="{}">{}</a>', url, obj.sending_account)

    @admin.action(description=gettext_lazy("Close with a note…"), permissions=["decide"], location=BOTH_LOCATIONS)
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alarm]) -> HttpResponse | None:
        return note_action(
            self,
            request,
            list(queryset.filter(resolved_at__isnull=True).select_related("sending_account")),
            action="resolve",
            title=_("Close alarms"),
            intro=_(
                "Closing an alarm does not change any standing. A closed review opens again only when more complaints "
                "or hard bounces arrive."
            ),
            button=_("Close"),
            apply=lambda alarm, user, note: services.resolve_alarm(alarm, by=user, note=note),
            done=lambda n: ngettext("%(n)d alarm closed.", "%(n)d alarms closed.", n) % {"n": n},
        )


@admin.register(Thresholds)
class ThresholdsAdmin(admin.ModelAdmin):
    """One row; the list goes straight to it."""

    readonly_fields = ("updated_at", "updated_by")
    fieldsets = (
        (
            gettext_lazy("Bounce rate (hard bounces / sent)"),
            {"fields": ("warning_bounce_rate", "probation_bounce_rate", "suspended_bounce_rate")},
        ),
        (
            gettext_lazy("Complaint rate (complaints / delivered)"),
            {"fields": ("warning_complaint_rate", "probation_complaint_rate", "suspended_complaint_rate")},
        ),
        (
            gettext_lazy("Window and volume"),
            {"fields": ("window_days", "min_deliveries", "review_complaints", "review_hard_bounces")},
        ),
        (
            gettext_lazy("Probation"),
            {"fields": ("clean_days", "probations_to_suspend", "probation_period_days", "probation_rate_factor")},
        ),
        (gettext_lazy("Platform alarm"), {"fields": ("platform_bounce_alarm", "platform_complaint_alarm")}),
        (gettext_lazy("Demos"), {"fields": ("count_simulator_traffic",)}),
        (None, {"fields": ("updated_at", "updated_by")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return not Thresholds.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        row = Thresholds.objects.first()
        if row is not None:
            return HttpResponseRedirect(reverse("admin:reputation_thresholds_change", args=[row.pk]))
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: Thresholds, form: Any, change: bool) -> None:
        obj.pk = Thresholds.SINGLETON_PK
        obj.updated_at = timezone.now()
        obj.updated_by = _user(request)
        super().save_model(request, obj, form, change)
