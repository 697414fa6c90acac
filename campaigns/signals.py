"""Signals of :mod:`campaigns`.

Business logic does not live in receivers (STYLE.md): a signal here only tells other parts of the
portal (analytics, automation) what happened, without :mod:`campaigns` importing them.
"""

from __future__ import annotations

from django.dispatch import Signal

message_events = Signal()
"""Message events were durably stored (sent after the transaction that stored them committed).

Sent once per stored batch (a provider event, an unsubscribe, or a flush of buffered opens and
clicks), with the keyword argument ``events``: a ``list`` of
:class:`campaigns.events.EventRecord`, one per stored :class:`~campaigns.models.MessageEvent` row
(``EventRecord.id`` is the row's ``pk``). The sender is :class:`~campaigns.models.MessageEvent`.

Delivery is at most once: a process that dies between the commit and the signal loses the signal,
never the rows; consumers that keep counters rebuild them from the rows.
"""
