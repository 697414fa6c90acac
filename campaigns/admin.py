"""The XES team's view of campaigns: contacts and content (read-mostly), campaigns, the searchable
message log with each message's events, and the outbox state per campaign.

Two repairs of stuck work, as actions: "Reconcile stuck messages" on the message log (the same pass
as the minute tick: rows of dead workers become ``unknown`` and are resolved from the provider), and
"Requeue" on campaigns (batch jobs for the sending accounts of sending campaigns). Both are safe to
run at any time: the pipeline never sends a row twice, whatever runs it."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, ngettext

from campaigns.models import (
    Campaign,
    Contact,
    ContactList,
    CustomField,
    ImportJob,
    Message,
    MessageEvent,
    Rule,
    Segment,
    Template,
    TrackedLink,
)
from xes_portal.lib.admin import admin_link


class ReadOnlyAdmin(admin.ModelAdmin):
    """Customer data: the team looks, customers change it in the portal."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Contact)
class ContactAdmin(ReadOnlyAdmin):
    list_display = ("email", "first_name", "last_name", "organisation", "client", "created_at")
    list_filter = ("created_at",)
    search_fields = ("email", "first_name", "last_name", "organisation__name")
    list_select_related = ("organisation", "client")
    show_full_result_count = False


@admin.register(ContactList)
class ContactListAdmin(ReadOnlyAdmin):
    list_display = ("name", "organisation", "client", "created_at")
    search_fields = ("name", "organisation__name")
    list_select_related = ("organisation", "client")


@admin.register(CustomField)
class CustomFieldAdmin(ReadOnlyAdmin):
    list_display = ("label", "key", "type", "organisation")
    list_filter = ("type",)
    search_fields = ("key", "label", "organisation__name")


@admin.register(Segment)
class SegmentAdmin(ReadOnlyAdmin):
    list_display = ("name", "organisation", "client", "created_at")
    search_fields = ("name", "organisation__name")


@admin.register(Rule)
class RuleAdmin(ReadOnlyAdmin):
    list_display = ("name", "kind", "organisation", "updated_at")
    list_filter = ("kind",)
    search_fields = ("name", "expression", "organisation__name")


@admin.register(Template)
class TemplateAdmin(ReadOnlyAdmin):
    list_display = ("name", "slug", "source_format", "organisation", "updated_at")
    list_filter = ("source_format",)
    search_fields = ("name", "slug", "subject", "organisation__name")


@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin):
    list_display = (
        "original_name",
        "organisation",
        "status",
        "processed_rows",
        "total_rows",
        "error_count",
        "created_at",
    )
    list_filter = ("status",)
    search_fields = ("original_name", "organisation__name")


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdmin):
    list_display = ("name", "organisation", "account_link", "status", "promotional", "recipients", "created_at")
    list_filter = ("status", "promotional")
    search_fields = ("name", "organisation__name", "sending_account__name")
    list_select_related = ("organisation", "sending_account")
    readonly_fields = ("outbox_state",)
    actions = ["requeue"]

    @admin.action(description=gettext_lazy("Requeue (enqueue batch jobs for its account)"))
    def requeue(self, request: HttpRequest, queryset: QuerySet[Campaign]) -> None:
        """Batch jobs for the sending accounts of the selected campaigns that are sending (one call
        per account: the jobs serve every campaign and triggered message of the account)."""
        from campaigns.sending import jobs

        sending = queryset.filter(status=Campaign.Status.SENDING)
        accounts = sorted(set(sending.values_list("sending_account_id", flat=True)))
        skipped = queryset.exclude(status=Campaign.Status.SENDING).count()
        added = sum(jobs.enqueue_batches(account_id) for account_id in accounts)
        if accounts:
            self.message_user(
                request,
                gettext("Sending accounts requeued: %(accounts)d; batch jobs enqueued: %(jobs)d.")
                % {"jobs": added, "accounts": len(accounts)}
                + ("" if added else " " + gettext("Their jobs were already queued or running.")),
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(n)d campaign skipped: only sending campaigns are requeued.",
                    "%(n)d campaigns skipped: only sending campaigns are requeued.",
                    skipped,
                )
                % {"n": skipped},
                messages.WARNING,
            )

    @admin.display(description=gettext_lazy("sending account"))
    def account_link(self, campaign: Campaign) -> str:
        return admin_link(campaign.sending_account)

    @admin.display(description=gettext_lazy("outbox"))
    def outbox_state(self, campaign: Campaign) -> str:
        counts = campaign.messages.values("status").annotate(n=Count("pk")).order_by("status")
        return ", ".join(f"{row['status']}: {row['n']}" for row in counts) or "—"


class MessageEventInline(admin.TabularInline):
    model = MessageEvent
    extra = 0
    can_delete = False
    fields = ("at", "type", "subtype", "machine", "link", "data")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class NeedsReconcilingFilter(admin.SimpleListFilter):
    """Shortcut to the rows the reconciler is about: outcome unknown, or a worker's lease expired."""

    title = gettext_lazy("needs reconciling")
    parameter_name = "reconcile"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [
            ("unknown", gettext("Outcome unknown")),
            ("expired", gettext("Sending, lease expired")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Message]) -> QuerySet[Message]:
        if self.value() == "unknown":
            return queryset.filter(status=Message.Status.UNKNOWN)
        if self.value() == "expired":
            return queryset.filter(status=Message.Status.SENDING, lease_until__lt=timezone.now())
        return queryset


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    """The message log: search by recipient, provider id or token; filter by state."""

    list_display = ("to_email", "status", "campaign_link", "account_link", "promotional", "created_at", "sent_at")
    list_filter = (NeedsReconcilingFilter, "status", "promotional", "created_at")
    actions = ["reconcile_stuck"]
    search_fields = ("=to_email", "=provider_message_id", "=token", "=idempotency_key", "campaign__name")
    list_select_related = ("campaign", "sending_account")
    date_hierarchy = "created_at"
    show_full_result_count = False
    inlines = [MessageEventInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("campaign", "sending_account")

    @admin.display(description=gettext_lazy("campaign"))
    def campaign_link(self, message: Message) -> str:
        return admin_link(message.campaign)

    @admin.display(description=gettext_lazy("sending account"))
    def account_link(self, message: Message) -> str:
        return admin_link(message.sending_account)

    @admin.action(description=gettext_lazy("Reconcile stuck messages (all accounts, whatever is selected)"))
    def reconcile_stuck(self, request: HttpRequest, queryset: QuerySet[Message]) -> None:
        """The reconciler's pass over every account: a Django action needs a selection, but stuck
        rows are found by their state, not picked by hand."""
        from campaigns.sending import reconcile_expired_leases

        result = reconcile_expired_leases()
        self.message_user(
            request,
            gettext(
                "Reconciled: %(expired)d messages of dead workers marked unknown, %(sent)d confirmed sent by "
                "the provider, %(requeued)d queued again."
            )
            % result,
            messages.SUCCESS,
        )


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin):
    """Every stored event (provider events, opens, clicks, unsubscribes): filter by type, machine
    flag and time; search by message id (the message log finds messages by address or provider id).

    The table is large: no full count, no joins in the list, and lookups by indexed columns only
    (the message id, or time through the BRIN index)."""

    list_display = ("at", "type", "subtype", "machine", "message_link", "organisation_id", "recipient_domain")
    list_filter = ("type", "machine", "at")
    search_fields = ("=message_id",)
    ordering = ("-id",)  # newest first through the primary key (sorting by time would sort the table)
    show_full_result_count = False
    readonly_fields = (
        "message_link",
        "organisation",
        "sending_account",
        "campaign",
        "type",
        "subtype",
        "at",
        "machine",
        "link",
        "recipient_domain",
        "data",
    )
    exclude = ("message",)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[MessageEvent], search_term: str
    ) -> tuple[QuerySet[MessageEvent], bool]:
        """A message id (the indexed column); anything else finds nothing rather than scan the table."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit() and len(term) < 19:
            return queryset.filter(message_id=int(term)), False
        return queryset.none(), False

    @admin.display(description=gettext_lazy("message"))
    def message_link(self, event: MessageEvent) -> str:
        from django.urls import reverse
        from django.utils.html import format_html

        url = reverse("admin:campaigns_message_change", args=[event.message_id])
        return format_html('<a href="{}">{}</a>', url, event.message_id)


@admin.register(TrackedLink)
class TrackedLinkAdmin(ReadOnlyAdmin):
    """Tracked destinations per organisation. Read-only: a click goes only to the URL stored when
    the message was built (an edited row would no longer match its hash and answer 404)."""

    list_display = ("url", "organisation", "created_at")
    search_fields = ("=url_hash", "url")
    list_select_related = ("organisation",)
    show_full_result_count = False
