"""Sinks of the end-to-end benchmark that only count messages and bytes, one per side.

- :class:`CountingProvider` (``XES_SENDING_PROVIDER=counting``): our pipeline's provider. It sends
  nothing and counts the message and its size, in memory, added to two Redis counters every few
  hundred messages and at the end of each RQ job;
- :class:`CountingEmailBackend`: django-post-office's e-mail backend. It builds each message's
  bytes, as every real backend (SMTP, SES) must, and adds them to the same kind of counters.

:class:`BenchWorker` is RQ's worker; ``manage.py rqworker sending --worker-class
campaigns.benchmarks.counting.BenchWorker`` imports this module and so registers the provider in the
worker process (the registry of :mod:`campaigns.sending.providers` is per process).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import django_rq
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend
from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from campaigns.sending.providers import TAG_MESSAGE, register
from deliverability.models import ProviderSetup
from deliverability.providers import Quota
from deliverability.providers.sandbox import SandboxProvider

PREFIX = "xes:bench:count:"
_redis: list[Redis] = []  # one client per process (a new client per call would connect each time)


def _connection() -> Redis:
    if not _redis:
        _redis.append(django_rq.get_connection("sending"))
    return _redis[0]


def counter_keys(side: str) -> tuple[str, str]:
    """Redis keys of (messages, bytes) of one side (``xes`` or ``post_office``)."""
    return f"{PREFIX}{side}:messages", f"{PREFIX}{side}:bytes"


def reset_counters(side: str) -> None:
    _connection().delete(*counter_keys(side))


def read_counters(side: str) -> tuple[int, int]:
    """(messages, bytes) counted for ``side`` since its last reset."""
    values = _connection().mget(counter_keys(side))
    return int(values[0] or 0), int(values[1] or 0)


def _count(side: str, size: int) -> None:
    messages, size_key = counter_keys(side)
    pipe = _connection().pipeline(transaction=False)
    pipe.incr(messages)
    pipe.incrby(size_key, size)
    pipe.execute()


# The provider counts in memory and adds to Redis every FLUSH_EVERY messages and when its job ends
# (:meth:`BenchWorker.perform_job`): a Redis round trip per message would be a cost of the sink,
# not of the pipeline being measured.
FLUSH_EVERY = 500
_pending = [0, 0]  # messages, bytes not yet in Redis (this process)


def flush_counts() -> None:
    """Add this process's uncounted messages and bytes to the ``xes`` counters."""
    if _pending[0]:
        messages, size_key = counter_keys("xes")
        pipe = _connection().pipeline(transaction=False)
        pipe.incrby(messages, _pending[0])
        pipe.incrby(size_key, _pending[1])
        pipe.execute()
        _pending[0] = _pending[1] = 0


class CountingProvider(SandboxProvider):
    """Accepts every message, counts it and its bytes; no rate limit of its own."""

    name = "counting"
    uses_tenants = False

    def quota(self) -> Quota:
        return Quota(max_24_hour_send=10**9, max_send_rate=0, sent_last_24_hours=0, sending_enabled=True)

    def send_raw(
        self,
        setup: ProviderSetup,
        raw: bytes,
        *,
        from_address: str,
        recipients: list[str],
        tags: dict[str, str],
    ) -> str:
        _pending[0] += 1
        _pending[1] += len(raw)
        if _pending[0] >= FLUSH_EVERY:
            flush_counts()
        return f"count-{tags.get(TAG_MESSAGE, '0')}-{uuid.uuid4().hex[:8]}"


class CountingEmailBackend(BaseEmailBackend):
    """A Django e-mail backend that builds every message's bytes and counts them."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            _count("post_office", len(message.message().as_bytes()))
        return len(email_messages)


class BenchWorker(Worker):
    """RQ's worker; naming it with ``--worker-class`` registers the counting provider, and each job
    adds what it counted to Redis before its work-horse exits (``os._exit`` skips ``atexit``)."""

    def perform_job(self, job: Job, queue: Queue) -> bool:
        try:
            return bool(super().perform_job(job, queue))
        finally:
            flush_counts()


register(CountingProvider.name, CountingProvider)
