"""The per-sending-account rate limiter, shared by every worker on every machine (one Lua script).

Two limits apply to each sending account:

- the provider's maximum send rate (``provider.quota().max_send_rate``, messages per second): the
  script hands out *send slots* spaced exactly ``1 / rate`` apart (a GCRA-style "theoretical arrival
  time" kept in Redis), so no one-second window ever holds more than ``rate`` sends, whatever the
  number of workers. A worker books at most one slot per sending thread that is ready to use it,
  and never more than :data:`HORIZON` ahead, so a changed rate takes effect within that time. The
  slots are spaced for :func:`headroom` x the rate (99 % by default): the provider counts arrivals
  with its own clock, and the headroom absorbs the jitter between our slot and its arrival. A slot
  is used within :func:`late_slot` of its time (``1 - headroom`` seconds, 10 ms) or given up: at
  most ``(1 - headroom) x rate`` slots can then slip into the next second, which the headroom left
  free, so no one-second window receives more than the rate;
- the warm-up cap of the UTC day (``deliverability.warmup.daily_cap``), a counter per account and
  day that the same script increments.

The rate is kept in Redis for :data:`RATE_REFRESH` seconds (one provider call per refresh for all
workers), so a changed quota reaches every worker within ``RATE_REFRESH + HORIZON`` (0.75 s); slots already
booked ahead in Redis are re-spaced at the new rate.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import django_rq
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from deliverability.models import ProviderSetup
from deliverability.providers import DeliveryProvider
from deliverability.warmup import daily_cap

HORIZON = 0.25  # seconds: how far ahead a worker may book slots
RATE_REFRESH = 0.5  # seconds a provider's rate is trusted before it is asked again
CAP_CACHE_SECONDS = 60

# KEYS: [1] theoretical arrival time (µs), [2] today's counter, [3] the interval the time was booked at.
# ARGV: [1] interval between sends (µs, 0 = no rate limit), [2] slots wanted, [3] horizon (µs),
#       [4] daily cap (-1 = none), [5] counter lifetime (s).
# Returns {granted, wait_us}: granted > 0 -> the first slot is wait_us from now, the next ones follow
# every interval; granted = 0 -> try again in wait_us; granted = -1 -> the daily cap is reached.
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
if cap >= 0 then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used >= cap then return {-1, 0} end
  if want > cap - used then want = cap - used end
end
local first = now
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  if tat < now then tat = now end
  -- The rate changed: the slots booked ahead at the old spacing are re-spaced at the new one, so
  -- that a raised limit is used at once rather than after the old horizon has run out.
  local booked_at = tonumber(redis.call('GET', KEYS[3]) or '0')
  if booked_at > 0 and booked_at ~= interval and tat > now then
    tat = now + math.floor((tat - now) * interval / booked_at)
  end
  redis.call('SET', KEYS[3], tostring(interval), 'EX', 86400)
  local ahead = tat - now
  if ahead > horizon then return {0, string.format('%.0f', ahead - horizon)} end
  local room = math.floor((horizon - ahead) / interval) + 1
  if want > room then want = room end
  first = tat
  local new_tat = tat + want * interval
  redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 60000)
end
if cap >= 0 then
  redis.call('INCRBY', KEYS[2], want)
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5]))
end
return {want, string.format('%.0f', first - now)}
"""

# After a Throttled answer every worker of the account waits this long before its next slot.
_PENALISE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local until_us = now + tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < until_us then
  redis.call('SET', KEYS[1], string.format('%.0f', until_us), 'PX', math.floor(tonumber(ARGV[1]) / 1000) + 60000)
end
return 1
"""


class DailyCapReached(Exception):
    """The account's warm-up cap for today is used up; ``resume_at`` is the next UTC midnight."""

    def __init__(self, resume_at: datetime) -> None:
        super().__init__(f"daily warm-up cap reached; resumes at {resume_at.isoformat()}")
        self.resume_at = resume_at


def next_utc_midnight(now: datetime | None = None) -> datetime:
    now = (now or timezone.now()).astimezone(UTC)
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


_providers: dict[tuple[int, str], DeliveryProvider] = {}


def sending_provider(setup: ProviderSetup) -> DeliveryProvider:
    """The provider the pipeline sends ``setup``'s mail through, one object per process and provider
    name: an SES client costs about 70 ms of CPU to make and keeps its connection pool. Overriding
    providers (tests, benchmarks; see :mod:`campaigns.sending.providers`) are not kept."""
    from campaigns.sending.providers import overriding_provider, provider_for_setup

    if overriding_provider() is not None:
        return provider_for_setup(setup)
    key = (os.getpid(), setup.provider)  # never share a connection pool with a forked child
    provider = _providers.get(key)
    if provider is None:
        provider = _providers[key] = provider_for_setup(setup)
    return provider


def headroom() -> float:
    """The share of the provider's rate we aim for (``SENDING_RATE_HEADROOM``, default 0.99)."""
    return float(getattr(settings, "SENDING_RATE_HEADROOM", 0.99))


def late_slot() -> float:
    """Seconds after its time that a send slot may still be used (see the module's docstring)."""
    return max(0.001, 1.0 - headroom())


def provider_rate(setup: ProviderSetup, provider: DeliveryProvider | None = None) -> float:
    """Messages per second the account may send (0: unlimited), kept in Redis for :data:`RATE_REFRESH`.

    ``SENDING_RATE_LIMIT = False`` in settings switches the limit off (benchmarks)."""
    if not getattr(settings, "SENDING_RATE_LIMIT", True):
        return 0.0
    provider = provider or sending_provider(setup)
    redis = django_rq.get_connection("sending")
    key = f"xes:sending:rate:{provider.name}"
    cached = redis.get(key)
    if cached is not None:
        return float(cached)
    rate = float(provider.quota().max_send_rate)
    redis.set(key, repr(rate), px=int(RATE_REFRESH * 1000))
    return rate


def warmup_cap(sending_account_id: int) -> int | None:
    """Today's warm-up cap of the account (None: none), cached for a minute."""
    key = f"xes:sending:cap:{sending_account_id}:{timezone.now().astimezone(UTC):%Y%m%d}"
    cached = cache.get(key)
    if cached is None:
        cap = daily_cap(sending_account_id)
        cache.set(key, -1 if cap is None else cap, CAP_CACHE_SECONDS)
        return cap
    return None if cached < 0 else int(cached)


@dataclass
class Limiter:
    """Books send slots for one sending account; :meth:`wait_for_slot` before every provider call.

    Safe to share between the sending threads of one batch. ``cap`` is today's warm-up cap when
    ``read_cap`` is false (the caller read it on its own thread, because it comes from the database);
    by default it is read here. ``provider`` answers the rate question (default: :func:`sending_provider`)."""

    setup: ProviderSetup
    provider: DeliveryProvider | None = None
    cap: int | None = None
    read_cap: bool = True
    slots: int = 0  # booked and not used yet
    next_slot: float = 0.0  # time.monotonic() of the next booked slot
    interval: float = 0.0
    dropped: int = 0  # slots given up because no thread could use them in time
    sleep: Callable[[float], None] = time.sleep
    factor: float = 1.0  # share of the provider's rate this account may use (lower on probation)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _count_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _waiting: int = 0

    def __post_init__(self) -> None:
        self.redis = django_rq.get_connection("sending")
        self.script = self.redis.register_script(_SCRIPT)
        self.penalty = self.redis.register_script(_PENALISE)
        self.account_id = self.setup.sending_account_id
        if self.read_cap:
            self.cap = warmup_cap(self.account_id)

    def wait_for_slot(self, want: int = 1) -> None:
        """Block until the account may send one message.

        With a rate limit, one booking covers the threads waiting right now (at most ``want``), so
        every booked slot has a thread ready for it; without one, ``want`` slots are counted at once.
        Raises :class:`DailyCapReached` when today's warm-up cap is used up.
        """
        late = late_slot()
        while True:
            at = self._take(want, late)
            delay = at - time.monotonic()
            if delay > 0:
                self.sleep(delay)
            # A thread can wake late (another one held the interpreter); used late, the slot would
            # crowd the next ones into the same second, so it is given up and another one taken.
            if not self.interval or time.monotonic() - at <= late:
                return
            with self._lock:
                self.dropped += 1

    def _take(self, want: int, late: float) -> float:
        """The time (``time.monotonic()``) of the next booked slot that is not already late."""
        with self._count_lock:
            self._waiting += 1
        try:
            with self._lock:
                while True:
                    if self.slots <= 0:
                        with self._count_lock:
                            waiting = self._waiting
                        self._book(max(1, want), waiting)
                    at = self.next_slot
                    self.slots -= 1
                    self.next_slot += self.interval
                    if self.interval and time.monotonic() - at > late:
                        self.dropped += 1
                        continue
                    return at
        finally:
            with self._count_lock:
                self._waiting -= 1

    def _book(self, want: int, waiting: int) -> None:
        while True:
            rate = provider_rate(self.setup, self.provider) * headroom() * self.factor
            cap = self.cap
            interval_us = int(1_000_000 / rate) if rate > 0 else 0
            wanted = min(want, waiting) if interval_us else want
            day = timezone.now().astimezone(UTC)
            granted, wait_us = self.script(
                keys=[
                    f"xes:sending:tat:{self.account_id}",
                    f"xes:sending:day:{self.account_id}:{day:%Y%m%d}",
                    f"xes:sending:interval:{self.account_id}",
                ],
                args=[interval_us, wanted, int(HORIZON * 1_000_000), -1 if cap is None else cap, 2 * 86_400],
            )
            granted, wait = int(granted), int(wait_us) / 1_000_000
            if granted < 0:
                raise DailyCapReached(next_utc_midnight())
            if granted == 0:
                time.sleep(min(wait, HORIZON))
                continue
            self.slots = granted
            self.interval = interval_us / 1_000_000
            self.next_slot = time.monotonic() + wait
            return

    def penalise(self, seconds: float) -> None:
        """The provider throttled us: every worker of this account pauses for ``seconds``."""
        with self._lock:
            self.slots = 0
        self.penalty(keys=[f"xes:sending:tat:{self.account_id}"], args=[int(seconds * 1_000_000)])
