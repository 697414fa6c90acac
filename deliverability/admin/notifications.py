"""Admin: raw SNS notifications as ``POST /webhooks/ses/`` stored them.

Read-only: only the webhook and its job write them. The team filters by type, outcome and event,
reads the raw body, and puts failed or ignored notifications back in the queue ("Reprocess"):
processed ones stay as they are, because announcing an event twice would count it twice.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html
from django.utils.translation import gettext_lazy, ngettext

from deliverability.models import SnsNotification
from deliverability.webhooks import processing
from xes_portal.lib.admin import admin_link


class EventTypeFilter(admin.SimpleListFilter):
    """The SES event types as fixed choices: no ``SELECT DISTINCT`` over a table of every event."""

    title = gettext_lazy("event")
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in sorted(processing.EVENT_TYPES)]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SnsNotification]) -> QuerySet[SnsNotification]:
        value = self.value()
        return queryset.filter(event_type=value) if value else queryset


@admin.register(SnsNotification)
class SnsNotificationAdmin(admin.ModelAdmin):
    list_display = (
        "received_at",
        "type",
        "event_type",
        "outcome",
        "account_link",
        "provider_message_id",
        "sns_message_id",
    )
    list_filter = ("outcome", "type", EventTypeFilter, "received_at")
    search_fields = ("=sns_message_id", "=provider_message_id")
    list_select_related = ("sending_account",)
    # The table takes every provider event: no full count and no date drill-down over all of it.
    show_full_result_count = False
    actions = ("reprocess",)
    fields = (
        "sns_message_id",
        "type",
        "topic_arn",
        "event_type",
        "provider_message_id",
        "account_link",
        "outcome",
        "error",
        "attempts",
        "received_at",
        "claimed_at",
        "processed_at",
        "message_shown",
        "body_shown",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("deliverability.change_snsnotification")

    @admin.display(description=gettext_lazy("sending account"))
    def account_link(self, obj: SnsNotification) -> str:
        return admin_link(obj.sending_account)

    @admin.display(description=gettext_lazy("message (SES event)"))
    def message_shown(self, obj: SnsNotification) -> str:
        try:
            message = str(json.loads(obj.body).get("Message", ""))
        except (ValueError, AttributeError):
            message = ""
        try:
            shown = json.dumps(json.loads(message), indent=2, ensure_ascii=False)
        except ValueError:
            shown = message  # not JSON: shown as it came
        return format_html("<pre>{}</pre>", shown)  # escaped: never rendered as HTML

    @admin.display(description=gettext_lazy("raw body"))
    def body_shown(self, obj: SnsNotification) -> str:
        return format_html("<pre>{}</pre>", obj.body)

    @admin.action(description=gettext_lazy("Reprocess failed or ignored notifications"), permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[SnsNotification]) -> None:
        chosen = list(queryset.values_list("pk", flat=True))
        queued = processing.reprocess(chosen)
        skipped = len(chosen) - queued
        self.message_user(
            request,
            ngettext("%(n)d notification queued again.", "%(n)d notifications queued again.", queued) % {"n": queued},
            messages.SUCCESS if queued else messages.WARNING,
        )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(n)d notification was left alone: only failed or ignored ones are reprocessed.",
                    "%(n)d notifications were left alone: only failed or ignored ones are reprocessed.",
                    skipped,
                )
                % {"n": skipped},
                messages.WARNING,
            )
