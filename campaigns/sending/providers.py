"""Which delivery provider the sending pipeline talks to, and how it learns what a provider accepted.

Normally a sending account's :class:`~deliverability.models.ProviderSetup` decides
(``deliverability.providers.provider_for``). Tests and ``make bench`` need a provider of their own
without touching deliverability code, so the pipeline asks :func:`provider_for_setup`, which
consults, in this order:

1. :func:`override` — a context manager for the current process (in-process tests);
2. the ``XES_SENDING_PROVIDER`` environment variable naming a provider registered here with
   :func:`register` (worker subprocesses of the fault tests and benchmarks; unset in production);
3. the account's own set-up.

:class:`RecordingProvider` ("recording") is the provider registered here: it sends nothing, keeps a
log of every ``send_raw`` call in Redis (which message, how often, how many bytes) and can inject
faults (throttling for a fraction of calls, rejected addresses, a paused account, a SIGKILL right
after accepting a message). It is real code of ours, used by the fault tests and the benchmark.

:func:`accepted_message_ids` answers the reconciler's question "did the provider accept these
messages?" for the sandbox (its outbox rows carry our tags), the recording provider (its log) and
SES (not yet: events arrive with issue 6; until then it answers "cannot tell").
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import django_rq
from django.core.exceptions import ImproperlyConfigured
from redis import Redis

from deliverability.models import ProviderSetup, SandboxMessage
from deliverability.providers import (
    DeliveryProvider,
    MessageRejected,
    Quota,
    SendingPaused,
    Throttled,
    provider_for,
)
from deliverability.providers.sandbox import SandboxProvider

ENV_VARIABLE = "XES_SENDING_PROVIDER"
# Message tags the pipeline puts on every message (see :func:`message_tags`).
TAG_ACCOUNT = "xes_account"
TAG_CAMPAIGN = "xes_campaign"
TAG_MESSAGE = "xes_message"

_registry: dict[str, Callable[[], DeliveryProvider]] = {}
_override: list[DeliveryProvider] = []


def register(name: str, factory: Callable[[], DeliveryProvider]) -> None:
    """Make a provider selectable with ``XES_SENDING_PROVIDER=<name>``."""
    _registry[name] = factory


@contextmanager
def override(provider: DeliveryProvider) -> Iterator[DeliveryProvider]:
    """Send every message of this process through ``provider`` while the block runs."""
    _override.append(provider)
    try:
        yield provider
    finally:
        _override.pop()


def overriding_provider() -> DeliveryProvider | None:
    """The provider that replaces every account's own, if any (see the module docstring)."""
    if _override:
        return _override[-1]
    name = os.environ.get(ENV_VARIABLE, "")
    if not name:
        return None
    try:
        return _registry[name]()
    except KeyError as exc:
        raise ImproperlyConfigured(f"{ENV_VARIABLE}={name!r} is not a registered sending provider.") from exc


def provider_for_setup(setup: ProviderSetup) -> DeliveryProvider:
    """The provider the pipeline sends ``setup``'s mail through."""
    return overriding_provider() or provider_for(setup)


def message_tags(sending_account_id: int, campaign_id: int | None, message_id: int) -> dict[str, str]:
    """Tags that let provider events (and the reconciler) find the message again."""
    tags = {TAG_ACCOUNT: str(sending_account_id), TAG_MESSAGE: str(message_id)}
    if campaign_id is not None:
        tags[TAG_CAMPAIGN] = str(campaign_id)
    return tags


def accepted_message_ids(setup: ProviderSetup, message_ids: list[int]) -> dict[int, str] | None:
    """Of ``message_ids`` (our ids), those the provider accepted, with the provider's message id.

    ``None`` means the provider cannot tell (SES until its events are stored, issue 6): the caller
    then leaves the messages alone rather than guess, because guessing wrong sends twice.
    """
    if not message_ids:
        return {}
    provider = provider_for_setup(setup)
    accepted = getattr(provider, "accepted_message_ids", None)
    if accepted is not None:
        result: dict[int, str] = accepted(setup, message_ids)
        return result
    if provider.name == ProviderSetup.Provider.SANDBOX:
        rows = SandboxMessage.objects.filter(
            sending_account_id=setup.sending_account_id,
            tags__xes_message__in=[str(pk) for pk in message_ids],
        ).values_list("tags", "message_id")
        return {int(tags[TAG_MESSAGE]): provider_id for tags, provider_id in rows}
    return None


# --- the recording provider ---------------------------------------------------------------


class RecordingProvider(SandboxProvider):
    """Accepts every message without sending it and logs the call in Redis; faults on request.

    Redis keys (prefix ``xes:recording:``): ``calls`` (list of our message ids, one entry per
    accepted call: a duplicate send shows as a repeated id), ``accepted`` (hash: our id -> provider
    id), ``bytes`` (total size), ``throttled`` (count of injected throttling answers) and the fault
    settings of :meth:`configure`.
    """

    name = "recording"
    uses_tenants = False
    prefix = "xes:recording:"

    def __init__(self, region: str | None = None, connection: Redis | None = None) -> None:
        super().__init__(region)
        self.redis: Redis = connection or django_rq.get_connection("sending")

    def key(self, name: str) -> str:
        return self.prefix + name

    # -- fault injection and inspection (tests, bench) --

    def configure(
        self,
        *,
        throttle_fraction: float | None = None,
        reject: list[str] | None = None,
        paused: bool | None = None,
        die_after: int | None = None,
        max_send_rate: float | None = None,
        delay_ms: int | None = None,
    ) -> None:
        """Set faults, shared by every process using this Redis database.

        ``die_after=N``: the process that makes the N-th accepted call SIGKILLs itself right after
        logging it, i.e. between the provider's acceptance and the pipeline's commit.
        """
        settings: dict[str, Any] = {
            "throttle_fraction": throttle_fraction,
            "paused": None if paused is None else int(paused),
            "die_after": die_after,
            "max_send_rate": max_send_rate,
            "delay_ms": delay_ms,
        }
        for name, value in settings.items():
            if value is not None:
                self.redis.hset(self.key("config"), name, value)
        if reject is not None:
            self.redis.delete(self.key("reject"))
            if reject:
                self.redis.sadd(self.key("reject"), *[address.lower() for address in reject])

    def calls(self) -> list[int]:
        """Our message ids of every accepted call, in order (repeats mean double sends)."""
        return [int(value) for value in self.redis.lrange(self.key("calls"), 0, -1)]

    def throttled_count(self) -> int:
        return int(self.redis.get(self.key("throttled")) or 0)

    def reset(self) -> None:
        self.redis.delete(*[self.key(name) for name in ("calls", "accepted", "bytes", "throttled", "config", "reject")])

    def _config(self) -> dict[str, str]:
        raw: dict[bytes, bytes] = self.redis.hgetall(self.key("config"))  # type: ignore[assignment]
        return {k.decode(): v.decode() for k, v in raw.items()}

    # -- the provider interface --

    def quota(self) -> Quota:
        rate = float(self._config().get("max_send_rate", 0) or 0)
        return Quota(max_24_hour_send=10**9, max_send_rate=rate, sent_last_24_hours=0, sending_enabled=True)

    def send_raw(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> str:
        config = self._config()
        if config.get("paused") == "1":
            raise SendingPaused(code="SendingPausedException", detail="Recording provider paused.")
        if float(config.get("throttle_fraction", 0) or 0) > random.random():  # noqa: S311 - fault injection
            self.redis.incr(self.key("throttled"))
            raise Throttled(code="TooManyRequestsException", detail="Injected throttling.")
        if any(self.redis.sismember(self.key("reject"), r.lower()) for r in recipients):
            raise MessageRejected(code="MessageRejected", detail="Injected rejection: address refused.")
        delay = int(config.get("delay_ms", 0) or 0)
        if delay:
            time.sleep(delay / 1000)
        message_id = tags.get(TAG_MESSAGE, "0")
        provider_id = f"rec-{uuid.uuid4()}"
        pipe = self.redis.pipeline()
        pipe.rpush(self.key("calls"), message_id)
        pipe.hset(self.key("accepted"), message_id, provider_id)
        pipe.incrby(self.key("bytes"), len(raw))
        count = pipe.execute()[0]
        die_after = int(config.get("die_after", 0) or 0)
        if die_after and count == die_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return provider_id

    def accepted_message_ids(self, setup: ProviderSetup, message_ids: list[int]) -> dict[int, str]:
        values: list[bytes | None] = self.redis.hmget(self.key("accepted"), [str(pk) for pk in message_ids])  # type: ignore[assignment]
        return {pk: value.decode() for pk, value in zip(message_ids, values, strict=True) if value is not None}

    # Account and identity management: nothing to do, like the sandbox.


register(RecordingProvider.name, RecordingProvider)
