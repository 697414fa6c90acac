"""Helpers of the tracking and event tests: messages in a given state, SES-format provider events,
and the per-process caches of the tracking code emptied around each test."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from django.utils import timezone

from accounts.models import SendingAccount
from campaigns.events import _DETAIL_KEYS, PROVIDER_TYPES, on_provider_event
from campaigns.models import Message
from campaigns.tracking import links, middleware, views
from deliverability.providers.sandbox import SandboxProvider
from deliverability.signals import provider_event
from tests.campaigns.fixtures_sending import Setup

_seq = count(1)


@pytest.fixture(autouse=True)
def _fresh_tracking_caches() -> Iterator[None]:
    links.clear_caches()
    views.clear_cache()
    middleware.forget_hosts()
    yield
    links.clear_caches()
    views.clear_cache()
    middleware.forget_hosts()


def make_message(setup: Setup, status: str = Message.Status.SENT, **fields: Any) -> Message:
    """A message of ``setup``'s account in ``status`` (with a provider id once sent)."""
    n = next(_seq)
    values: dict[str, Any] = {
        "organisation": setup.organisation,
        "sending_account": setup.account,
        "template": setup.template,
        "sender": setup.sender,
        "to_email": f"reader{n}@Example.ORG",
        "status": status,
    }
    if status in ("sent", "delivered", "bounced", "complained"):
        values.setdefault("provider_message_id", f"ses-{n:06d}")
        values.setdefault("sent_at", timezone.now() - timedelta(hours=1))
    values.update(fields)
    return Message.objects.create(**values)


def iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def ses_event(
    message: Message | None,
    event_type: str,
    *,
    provider_id: str | None = None,
    account: SendingAccount | int | None = None,
    message_tag: str | None = None,
    at: datetime | None = None,
    sent: datetime | None = None,
    **detail: Any,
) -> dict[str, Any]:
    """An event as SES publishes it (``eventType``, ``mail`` with our tags, the type's details)."""
    at = at or timezone.now()
    account_id = account.pk if isinstance(account, SendingAccount) else account
    if account_id is None and message is not None:
        account_id = message.sending_account_id
    tags: dict[str, list[str]] = {"ses:configuration-set": ["xes-test"]}
    if account_id is not None:
        tags["xes_account"] = [str(account_id)]
    if message_tag is not None:
        tags["xes_message"] = [message_tag]
    elif message is not None:
        tags["xes_message"] = [str(message.pk)]
    pid = provider_id if provider_id is not None else (message.provider_message_id if message else "") or "ses-x"
    event: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "timestamp": iso(sent or at),
            "messageId": pid,
            "destination": [message.to_email if message else "nobody@example.org"],
            "tags": tags,
        },
    }
    kind = PROVIDER_TYPES.get(event_type)
    if kind is not None:
        body = {"timestamp": iso(at), **detail}
        if event_type == "Bounce":
            body.setdefault("bounceType", "Permanent")
            body.setdefault("bounceSubType", "General")
        event[_DETAIL_KEYS[kind]] = body
    return event


def announce(event: dict[str, Any], sending_account_id: int | None = None) -> None:
    """What the sandbox provider and the SNS webhook do: send ``provider_event`` (an error of our
    receiver fails the test; other apps' receivers are not under test here)."""
    for receiver, result in provider_event.send_robust(
        sender=SandboxProvider, event=event, sending_account_id=sending_account_id
    ):
        if receiver is on_provider_event and isinstance(result, Exception):
            raise result
