"""Campaigns follow their sending account's standing (the reputation monitor or the XES team
changed it): suspension pauses every sending campaign of the account, probation pauses the
promotional ones; transactional campaigns keep going on probation. Paused, never failed: the
customer resumes them once the account may send them again."""

from __future__ import annotations

from typing import Any

from accounts.models import SendingAccount
from campaigns.sending.control import pause_account_campaigns
from deliverability.signals import standing_changed

Standing = SendingAccount.Standing


def pause_for_standing(
    sender: Any, *, sending_account_id: int, old: str, new: str, reason: str = "", **kwargs: Any
) -> int:
    """Receiver of :data:`deliverability.signals.standing_changed`; returns the campaigns paused."""
    if new not in (Standing.PROBATION, Standing.SUSPENDED):
        return 0
    return pause_account_campaigns(sending_account_id, reason, only_promotional=new == Standing.PROBATION)


standing_changed.connect(pause_for_standing, dispatch_uid="campaigns.pause_for_standing")
