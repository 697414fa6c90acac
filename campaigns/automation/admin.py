"""The XES team's view of automation: trigger rules (can switch them off), their firings, webhook
endpoints (secrets never shown) and the delivery log, read-only, with a "retry now" action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy, ngettext

from campaigns.automation import webhooks
from campaigns.automation.models import Firing, TriggerRule, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from xes_portal.lib.admin import admin_link


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(TriggerRule)
class TriggerRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "organisation", "campaign", "event", "template", "enabled", "created_at")
    list_filter = ("enabled", "event")
    search_fields = ("name", "organisation__name", "campaign__name")
    list_select_related = ("organisation", "campaign", "template")
    readonly_fields = (
        "organisation",
        "name",
        "campaign",
        "event",
        "link_url",
        "delay_days",
        "template",
        "sender",
        "promotional",
        "scanned_until",
        "created_by",
        "created_at",
        "updated_at",
    )
    fields = (*readonly_fields[:9], "enabled", *readonly_fields[9:])
    actions = ("switch_off",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description=gettext_lazy("Switch off (nothing more is sent)"))
    def switch_off(self, request: HttpRequest, queryset: QuerySet[TriggerRule]) -> None:
        count = queryset.update(enabled=False)
        self.message_user(request, ngettext("%d rule switched off.", "%d rules switched off.", count) % count)


@admin.register(Firing)
class FiringAdmin(ReadOnly):
    list_display = ("fired_at", "rule", "email", "status", "error", "message_link")
    list_filter = ("status", "fired_at")
    search_fields = ("email", "rule__name", "organisation__name")
    list_select_related = ("rule",)
    show_full_result_count = False

    @admin.display(description=gettext_lazy("message"))
    def message_link(self, firing: Firing) -> str:
        return admin_link(firing.message) if firing.message_id else "—"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    list_display = ("url", "organisation", "client", "enabled", "health", "consecutive_failures", "last_success_at")
    list_filter = ("enabled",)
    search_fields = ("url", "organisation__name", "description")
    list_select_related = ("organisation", "client")
    # The secret is the customer's: never displayed here.
    exclude = ("secret",)
    readonly_fields = (
        "organisation",
        "client",
        "url",
        "description",
        "event_types",
        "include_machine",
        "consecutive_failures",
        "failing_since",
        "last_success_at",
        "last_failure_at",
        "created_by",
        "created_at",
        "updated_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description=gettext_lazy("health"))
    def health(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.get_health_display()


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("number", "started_at", "status_code", "duration_ms", "succeeded", "error", "response_body")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnly):
    list_display = (
        "created_at",
        "endpoint",
        "kind",
        "event_count",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
    )
    list_filter = ("status", "kind", "created_at")
    search_fields = ("uid", "endpoint__url", "endpoint__organisation__name")
    list_select_related = ("endpoint",)
    inlines = (WebhookAttemptInline,)
    show_full_result_count = False
    actions = ("retry",)

    @admin.action(description=gettext_lazy("Retry now"))
    def retry(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        count = sum(webhooks.retry_now(delivery) for delivery in queryset)
        self.message_user(
            request,
            ngettext("%d delivery queued again.", "%d deliveries queued again.", count) % count,
            messages.SUCCESS if count else messages.WARNING,
        )
