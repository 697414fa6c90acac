"""Signals of :mod:`deliverability`.

Business logic does not live in receivers (STYLE.md): a signal here only hands data from one part of
the portal to another that must not import it.
"""

from __future__ import annotations

from django.dispatch import Signal

provider_event = Signal()
"""A delivery provider produced an event for a sent message (sent only after the transaction that
recorded it has committed).

The sender is the provider class (for example ``SandboxProvider``). Keyword arguments:

- ``event``: the event as a ``dict`` in the Amazon SES event-publishing JSON format
  (``{"eventType": "Delivery", "mail": {...}, "delivery": {...}}``), exactly what the SNS webhook
  receives from SES, so one code path can process both;
- ``sending_account_id``: the ``pk`` of the :class:`~accounts.models.SendingAccount` that sent it.

The sandbox provider sends it for every event it simulates; real SES events arrive through the SNS
webhook instead.
"""

standing_changed = Signal()
"""A sending account's standing changed (sent only after the transaction that changed it has
committed), by the reputation monitor or by the XES team.

The sender is :class:`~accounts.models.SendingAccount`. Keyword arguments: ``sending_account_id``,
``old`` and ``new`` (values of ``SendingAccount.Standing``) and ``reason`` (the text shown in the
account's history). :mod:`campaigns.standing_hooks` pauses campaigns on it.
"""
