"""Analytics: pre-aggregated counters of message events and the reports built on them.

:mod:`campaigns.analytics.aggregation` folds new :class:`~campaigns.models.MessageEvent` rows into
hourly counters per sending account and campaign, counters per recipient domain and per link, and
per-message "first activity" rows that keep unique opens and clicks exact. A job runs it every 30
seconds and whenever :data:`campaigns.signals.message_events` reports stored events; a full rebuild
from the raw events gives the same numbers. :mod:`campaigns.analytics.reports` reads the counters
for the portal's reports (campaign, sending account, client, organisation), their charts and CSV
exports; nothing in a report reads the raw events except per-message and per-contact timelines.
"""
