"""The XES team's view of the analytics counters: how far the aggregator has counted, and a full
rebuild from the raw events (an action; the same as ``manage.py rebuild_analytics``)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext, gettext_lazy

from campaigns.analytics.aggregation import aggregation_state
from campaigns.analytics.jobs import schedule_rebuild
from campaigns.analytics.models import AggregationState


@admin.register(AggregationState)
class AggregationStateAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "last_run_at",
        "last_run_events",
        "last_run_seconds",
        "pending_since",
        "rebuilt_at",
        "rebuild_seconds",
    )
    readonly_fields = (
        "done_upto",
        "pending_upto",
        "pending_lockers",
        "pending_since",
        "last_run_at",
        "last_run_events",
        "last_run_seconds",
        "rebuilt_at",
        "rebuild_seconds",
        "updated_at",
    )
    fields = readonly_fields
    actions = ("rebuild",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AggregationState]:
        aggregation_state()  # the one row exists from the first look on
        return super().get_queryset(request)

    @admin.action(description=gettext_lazy("Rebuild all analytics from the raw events"), permissions=["change"])
    def rebuild(self, request: HttpRequest, queryset: QuerySet[AggregationState]) -> None:
        schedule_rebuild()
        self.message_user(
            request,
            gettext("The rebuild runs in the background; reports show the old numbers until it is done."),
            messages.SUCCESS,
        )
