"""Pre-aggregated counters of message events.

Every counter table repeats the organisation and sending account of its rows, so that reports are
scoped with the portal's one tenancy mechanism (``for_membership``: the organisation, and for
client-users the sending account's client) without joining the raw events. A sending account's
client is read through the account at query time, so moving an account to another client moves its
history with it.

The tables only ever hold what :mod:`campaigns.analytics.aggregation` computed from
:class:`campaigns.models.MessageEvent`; they can be emptied and rebuilt at any time.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import Organisation, SendingAccount
from campaigns.models import Campaign, Message, TrackedLink
from xes_portal.lib.tenancy import TenantManager

# The counter columns, in report order. Each is the number of events of one kind, except the
# ``unique_*`` ones: the number of messages whose *first* such activity falls into the row
# (``*_all`` counts machine opens and clicks too; the others leave them out).
COUNTERS = (
    "sent",
    "delivered",
    "hard_bounces",
    "soft_bounces",
    "complaints",
    "rejects",
    "delays",
    "rendering_failures",
    "opens",
    "machine_opens",
    "unique_opens",
    "unique_opens_all",
    "clicks",
    "machine_clicks",
    "unique_clicks",
    "unique_clicks_all",
    "unsubscribes",
)
LINK_COUNTERS = ("clicks", "machine_clicks", "unique_clicks", "unique_clicks_all")


def _fk(model: type[models.Model], **kwargs: object) -> models.ForeignKey:  # type: ignore[type-arg]
    """A reference that the database does not enforce: counters outlive nothing, and a deleted
    campaign's rows go with the next rebuild."""
    options: dict[str, object] = {
        "on_delete": models.DO_NOTHING,
        "related_name": "+",
        "db_constraint": False,
        "db_index": False,
    }
    options.update(kwargs)
    return models.ForeignKey(model, **options)  # type: ignore[arg-type]


class CounterColumns(models.Model):
    """The counter columns shared by the hourly, daily and domain tables."""

    sent = models.IntegerField(_("sent"), default=0, db_default=0)
    delivered = models.IntegerField(_("delivered"), default=0, db_default=0)
    hard_bounces = models.IntegerField(_("hard bounces"), default=0, db_default=0)
    soft_bounces = models.IntegerField(_("soft bounces"), default=0, db_default=0)
    complaints = models.IntegerField(_("complaints"), default=0, db_default=0)
    rejects = models.IntegerField(_("rejected"), default=0, db_default=0)
    delays = models.IntegerField(_("delivery delays"), default=0, db_default=0)
    rendering_failures = models.IntegerField(_("rendering failures"), default=0, db_default=0)
    opens = models.IntegerField(_("opens"), default=0, db_default=0)
    machine_opens = models.IntegerField(_("machine opens"), default=0, db_default=0)
    unique_opens = models.IntegerField(_("unique opens"), default=0, db_default=0)
    unique_opens_all = models.IntegerField(_("unique opens incl. machines"), default=0, db_default=0)
    clicks = models.IntegerField(_("clicks"), default=0, db_default=0)
    machine_clicks = models.IntegerField(_("machine clicks"), default=0, db_default=0)
    unique_clicks = models.IntegerField(_("unique clicks"), default=0, db_default=0)
    unique_clicks_all = models.IntegerField(_("unique clicks incl. machines"), default=0, db_default=0)
    unsubscribes = models.IntegerField(_("unsubscribes"), default=0, db_default=0)

    class Meta:
        abstract = True


class Counters(CounterColumns):
    """Counters of one sending account (and so of one organisation and at most one client)."""

    organisation = _fk(Organisation)
    sending_account = _fk(SendingAccount)

    tenant_organisation_path = "organisation"
    tenant_client_path = "sending_account__client"
    objects = TenantManager()

    class Meta:
        abstract = True


class CampaignHour(Counters):
    """One hour (UTC) of one campaign's events; ``campaign`` is empty for triggered messages."""

    campaign = _fk(Campaign, null=True, blank=True)
    hour = models.DateTimeField(_("hour"))

    class Meta:
        verbose_name = _("campaign hour")
        verbose_name_plural = _("campaign hours")
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "sending_account", "hour"), name="analytics_campaignhour_key", nulls_distinct=False
            ),
        ]
        indexes = [models.Index(fields=("organisation", "hour"), name="analytics_campaignhour_org")]

    def __str__(self) -> str:
        return f"{self.campaign_id or '-'} · {self.hour:%Y-%m-%d %H:00}"


class AccountHour(Counters):
    """One hour (UTC) of one sending account's events, campaigns and triggered messages together."""

    hour = models.DateTimeField(_("hour"))

    class Meta:
        verbose_name = _("account hour")
        verbose_name_plural = _("account hours")
        constraints = [
            models.UniqueConstraint(fields=("sending_account", "hour"), name="analytics_accounthour_key"),
        ]
        indexes = [models.Index(fields=("organisation", "hour"), name="analytics_accounthour_org")]

    def __str__(self) -> str:
        return f"{self.sending_account_id} · {self.hour:%Y-%m-%d %H:00}"


class CampaignDomain(Counters):
    """One campaign's events to one recipient domain, over the whole campaign."""

    campaign = _fk(Campaign, null=True, blank=True)
    recipient_domain = models.CharField(_("recipient domain"), max_length=253)

    class Meta:
        verbose_name = _("campaign domain")
        verbose_name_plural = _("campaign domains")
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "sending_account", "recipient_domain"),
                name="analytics_campaigndomain_key",
                nulls_distinct=False,
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id or '-'} · {self.recipient_domain}"


class AccountDomainDay(Counters):
    """One day (UTC) of one sending account's events to one recipient domain."""

    day = models.DateField(_("day"))
    recipient_domain = models.CharField(_("recipient domain"), max_length=253)

    class Meta:
        verbose_name = _("account domain day")
        verbose_name_plural = _("account domain days")
        constraints = [
            models.UniqueConstraint(
                fields=("sending_account", "day", "recipient_domain"), name="analytics_accountdomainday_key"
            ),
        ]
        indexes = [models.Index(fields=("organisation", "day"), name="analytics_domainday_org")]

    def __str__(self) -> str:
        return f"{self.sending_account_id} · {self.day} · {self.recipient_domain}"


class OrgDomainDay(CounterColumns):
    """One day (UTC) of a whole organisation's events to one recipient domain: the organisation's
    report reads these instead of adding up every sending account's rows. Organisation-wide, so
    invisible to client-users (their reports read :class:`AccountDomainDay`)."""

    organisation = _fk(Organisation)
    day = models.DateField(_("day"))
    recipient_domain = models.CharField(_("recipient domain"), max_length=253)

    tenant_organisation_path = "organisation"
    objects = TenantManager()

    class Meta:
        verbose_name = _("organisation domain day")
        verbose_name_plural = _("organisation domain days")
        constraints = [
            models.UniqueConstraint(
                fields=("organisation", "day", "recipient_domain"), name="analytics_orgdomainday_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organisation_id} · {self.day} · {self.recipient_domain}"


class CampaignLink(models.Model):
    """Clicks on one tracked link in one campaign (or in the triggered messages of one account)."""

    organisation = _fk(Organisation)
    sending_account = _fk(SendingAccount)
    campaign = _fk(Campaign, null=True, blank=True)
    link = _fk(TrackedLink)
    clicks = models.IntegerField(_("clicks"), default=0, db_default=0)
    machine_clicks = models.IntegerField(_("machine clicks"), default=0, db_default=0)
    unique_clicks = models.IntegerField(_("unique clicks"), default=0, db_default=0)
    unique_clicks_all = models.IntegerField(_("unique clicks incl. machines"), default=0, db_default=0)

    tenant_organisation_path = "organisation"
    tenant_client_path = "sending_account__client"
    objects = TenantManager()

    class Meta:
        verbose_name = _("campaign link")
        verbose_name_plural = _("campaign links")
        constraints = [
            models.UniqueConstraint(
                fields=("campaign", "sending_account", "link"), name="analytics_campaignlink_key", nulls_distinct=False
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id or '-'} · {self.link_id}"


class MessageActivity(models.Model):
    """When a message was first opened and first clicked, by a person and by anyone (machines too).

    One row per message with at least one open or click. Unique opens and clicks are the numbers of
    these rows, counted in the hour of the first activity, so they stay exact however often and in
    whatever order the events arrive."""

    message = models.OneToOneField(
        Message, on_delete=models.DO_NOTHING, primary_key=True, related_name="+", db_constraint=False
    )
    organisation = _fk(Organisation)
    sending_account = _fk(SendingAccount)
    campaign = _fk(Campaign, null=True, blank=True)
    recipient_domain = models.CharField(_("recipient domain"), max_length=253, blank=True)
    first_open = models.DateTimeField(_("first opened"), null=True, blank=True)
    first_open_any = models.DateTimeField(_("first opened, machines included"), null=True, blank=True)
    first_click = models.DateTimeField(_("first clicked"), null=True, blank=True)
    first_click_any = models.DateTimeField(_("first clicked, machines included"), null=True, blank=True)

    class Meta:
        verbose_name = _("message activity")
        verbose_name_plural = _("message activities")

    def __str__(self) -> str:
        return str(self.message_id)


class LinkActivity(models.Model):
    """When a message's recipient first clicked one link (per-link unique clicks)."""

    pk = models.CompositePrimaryKey("message", "link")
    message = _fk(Message)
    link = _fk(TrackedLink)
    organisation = _fk(Organisation)
    sending_account = _fk(SendingAccount)
    campaign = _fk(Campaign, null=True, blank=True)
    first_click = models.DateTimeField(_("first clicked"), null=True, blank=True)
    first_click_any = models.DateTimeField(_("first clicked, machines included"), null=True, blank=True)

    class Meta:
        verbose_name = _("link activity")
        verbose_name_plural = _("link activities")

    def __str__(self) -> str:
        return f"{self.message_id} · {self.link_id}"


class AggregationState(models.Model):
    """Bookkeeping of the aggregator (one row): every event with an id up to ``done_upto`` is counted.

    ``pending_upto`` and ``pending_lockers`` hold a barrier that is not passed yet: the highest
    event id handed out when it was taken, and the transactions that could still commit events
    with lower ids (see :mod:`campaigns.analytics.aggregation`)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    done_upto = models.BigIntegerField(_("events counted up to id"), default=0)
    pending_upto = models.BigIntegerField(null=True, blank=True)
    pending_lockers = models.JSONField(default=list, blank=True)
    pending_since = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(_("last run"), null=True, blank=True)
    last_run_events = models.BigIntegerField(_("events in the last run"), default=0)
    last_run_seconds = models.FloatField(_("seconds of the last run"), default=0)
    rebuilt_at = models.DateTimeField(_("last rebuilt"), null=True, blank=True)
    rebuild_seconds = models.FloatField(_("seconds of the last rebuild"), default=0)
    updated_at = models.DateTimeField(_("updated"), default=timezone.now)

    class Meta:
        verbose_name = _("analytics aggregation")
        verbose_name_plural = _("analytics aggregation")

    def __str__(self) -> str:
        return str(_("Events counted up to #%(id)s") % {"id": self.done_upto})
